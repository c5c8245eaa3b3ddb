//! Networking for vm mode: the guest gets the container's network.
//!
//! A container's network namespace is prepared by podman, a CNI plugin or
//! another tool before the runtime starts the workload: typically a veth
//! with addresses and routes. In vm mode the VMM runs inside that namespace
//! and the guest must end up with the same network. vessel does this the
//! way Kata Containers' "tcfilter" model does:
//!
//! - **Host** ([`attach`]): for each Ethernet interface of the namespace, a
//!   persistent tap (`vt-<ifname>`) is created next to it, and two tc
//!   redirects join them: an ingress qdisc on each side with a u32
//!   match-everything filter whose `mirred egress redirect` action sends
//!   every frame the veth receives out of the tap (to the guest) and every
//!   frame the guest sends out of the veth. Nothing is bridged or routed;
//!   the veth keeps its addresses but its frames are taken before the
//!   namespace's IP stack sees them.
//! - **Guest** ([`configure`]): the guest NIC carries the veth's MAC (the
//!   VMM is given it through [`crate::engine::NetTap::mac`]), so the agent
//!   finds it by MAC, gives it the veth's name, MTU and addresses, brings it
//!   and loopback up and adds the namespace's routes. Peers see the same
//!   MAC and IP as before.
//! - **Teardown** ([`detach`]): removes the filters and qdiscs it added and
//!   deletes the taps; a namespace already gone is not an error.
//!
//! Everything goes through rtnetlink (netlink-packet-route on a blocking
//! netlink-sys socket; no `ip` or `tc` is run), so the guest side works in
//! the static agent running as PID 1. The host side works from a dedicated
//! thread that `setns()`es into the container's namespace, so the caller's
//! namespace never changes.
//!
//! ```no_run
//! # fn main() -> vessel_vm::Result<()> {
//! use std::path::Path;
//! // host, before booting the VMM in the namespace:
//! let att = vessel_vm::net::attach(Path::new("/proc/1234/ns/net"), "mybox")?;
//! // config.taps = att.taps.clone(); agent: send att.guest to the guest
//! // guest (PID 1, after loading virtio_net):
//! vessel_vm::net::configure(&att.guest)?;
//! // host, at delete:
//! vessel_vm::net::detach(&att)?;
//! # Ok(()) }
//! ```
//!
//! The kernel needs `CONFIG_NET_SCH_INGRESS`, `CONFIG_NET_CLS_U32`,
//! `CONFIG_NET_ACT_MIRRED` and `CONFIG_TUN` on the host (u32 rather than
//! matchall because matchall is often not built, as on the project's
//! machines).

mod guest;
mod host;
pub mod move_link;
mod netns;
mod rtnl;
mod tap;
mod tc;

use std::net::IpAddr;
use std::path::PathBuf;

pub use guest::configure;
pub use host::{attach, detach};

use crate::engine::NetTap;

/// The network the guest must configure: sent by the host to the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestNetwork {
    /// Interfaces, each matched to a guest NIC by MAC.
    pub interfaces: Vec<GuestInterface>,
    /// Routes of the namespace's main table (those the kernel does not
    /// derive from addresses by itself).
    pub routes: Vec<GuestRoute>,
}

/// One guest NIC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestInterface {
    /// Name to give the NIC (the container interface's name, e.g. `eth0`).
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`: the VMM gives it to the NIC and
    /// the guest finds the NIC by it.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Addresses with their prefix length (IPv4 and global IPv6;
    /// link-local IPv6 is left to the guest kernel, which derives the same
    /// one from the same MAC).
    pub addresses: Vec<(IpAddr, u8)>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestRoute {
    /// Destination network with its prefix length; `None` is the default
    /// route.
    pub destination: Option<(IpAddr, u8)>,
    /// Next hop; `None` for a route on the link itself.
    pub gateway: Option<IpAddr>,
    /// Interface name (a [`GuestInterface::name`]).
    pub device: String,
    /// Route metric (priority), when the namespace's route had one; two
    /// routes to the same destination differ only by it.
    #[serde(default)]
    pub metric: Option<u32>,
}

/// What [`attach`] set up in a namespace: kept in the container's state and
/// given back to [`detach`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetAttachment {
    /// The network namespace, as given to [`attach`].
    pub netns: PathBuf,
    /// Device and inode of that namespace when attached: [`detach`] does
    /// nothing in another namespace found at the same path (a reused pid).
    pub netns_id: (u64, u64),
    /// Container the attachment belongs to (for messages).
    pub container_id: String,
    /// Taps for the VMM's command line, one per interface, each with the
    /// MAC the guest NIC must carry.
    pub taps: Vec<NetTap>,
    /// What the guest agent configures.
    pub guest: GuestNetwork,
    /// One entry per joined interface: what to undo.
    pub links: Vec<AttachedLink>,
}

/// An interface of the namespace joined to its tap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachedLink {
    /// The namespace's interface (e.g. `eth0`).
    pub interface: String,
    /// Its index in the namespace.
    pub ifindex: u32,
    /// The tap's name.
    pub tap: String,
    /// Whether [`attach`] added the interface's ingress qdisc (one that was
    /// there before is left in place, only vessel's filter is removed).
    pub created_qdisc: bool,
}
