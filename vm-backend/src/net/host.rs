//! The host side: joining a namespace's interfaces to taps and undoing it.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use netlink_packet_route::address::AddressScope;
use netlink_packet_route::link::{LinkFlags, LinkLayerType};
use netlink_packet_route::route::{RouteProtocol, RouteType};

use super::netns::Netns;
use super::rtnl::{errno, Address, Link, Route, Rtnl};
use super::{tap, tc, AttachedLink, GuestInterface, GuestNetwork, GuestRoute, NetAttachment};
use crate::engine::NetTap;
use crate::error::IoContext;
use crate::{Error, Result};

/// Joins every Ethernet interface of the network namespace at `netns` to a
/// new tap and returns what the VMM and the guest need.
///
/// For each interface that is up, not loopback, not a tun/tap and has an
/// Ethernet MAC (a veth, macvlan, ...): reads its MAC, MTU and addresses,
/// creates the persistent tap `vt-<ifname>` (or `vt-<ifindex>` when that
/// does not fit in 15 bytes) with the same MTU, sets it up and installs the
/// two redirects (interface -> tap, tap -> interface). The namespace's
/// main-table routes through these interfaces, except those the kernel
/// derives from addresses, become [`GuestNetwork::routes`]. A namespace
/// with only loopback gives no taps and an empty [`GuestNetwork`].
///
/// Runs on a thread of its own inside the namespace. On error, what was
/// done is undone; the error names the container, the namespace and the
/// interface.
pub fn attach(netns: &Path, container_id: &str) -> Result<NetAttachment> {
    let ns = Netns::open(netns).map_err(|e| in_container(container_id, e))?;
    let place = format!(
        "container {container_id}: network namespace {}",
        netns.display()
    );
    let mut att = NetAttachment {
        netns: netns.to_path_buf(),
        netns_id: ns.id,
        container_id: container_id.to_string(),
        taps: Vec::new(),
        guest: GuestNetwork::default(),
        links: Vec::new(),
    };
    ns.run(netns, || {
        let mut rtnl = Rtnl::open().ctx(|| format!("{place}: opening rtnetlink"))?;
        let links = rtnl.links().ctx(|| format!("{place}: listing links"))?;
        let addresses = rtnl
            .addresses()
            .ctx(|| format!("{place}: listing addresses"))?;
        let routes = rtnl
            .main_routes()
            .ctx(|| format!("{place}: listing routes"))?;

        let mut taken: HashSet<String> = links.iter().map(|l| l.name.clone()).collect();
        for link in links.iter().filter(|l| joins_guest(l)) {
            let mac = link.mac.expect("joins_guest checks the MAC");
            let Some(tap) = tap::tap_name(&link.name, link.index, |n| taken.contains(n)) else {
                rollback(&mut rtnl, &att.links);
                return Err(Error::InvalidConfig(format!(
                    "{place}: interface {}: no free name for its tap",
                    link.name
                )));
            };
            taken.insert(tap.clone());
            let mut progress = Progress::default();
            if let Err(e) = join(&mut rtnl, link, &tap, &mut progress)
                .ctx(|| format!("{place}: interface {}: joining it to tap {tap}", link.name))
            {
                undo(&mut rtnl, link.index, &tap, &progress);
                rollback(&mut rtnl, &att.links);
                return Err(e);
            }
            att.links.push(AttachedLink {
                interface: link.name.clone(),
                ifindex: link.index,
                tap: tap.clone(),
                created_qdisc: progress.interface_qdisc,
            });
            att.taps.push(NetTap {
                tap,
                mac: Some(format_mac(&mac)),
            });
            att.guest.interfaces.push(GuestInterface {
                name: link.name.clone(),
                mac: format_mac(&mac),
                mtu: link.mtu,
                addresses: guest_addresses(link.index, &addresses),
            });
        }
        att.guest.routes = guest_routes(&routes, &att.links);
        Ok(())
    })?;
    Ok(att)
}

/// Removes what [`attach`] added: vessel's filter on each interface (and
/// the ingress qdisc when `attach` created it) and the taps. A namespace
/// that no longer exists (or a different namespace now found at the same
/// path), an interface or a tap already gone are not errors.
pub fn detach(att: &NetAttachment) -> Result<()> {
    let ns = match Netns::open(&att.netns) {
        Ok(ns) => ns,
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(in_container(&att.container_id, e)),
    };
    if ns.id != att.netns_id {
        return Ok(());
    }
    let place = format!(
        "container {}: network namespace {}",
        att.container_id,
        att.netns.display()
    );
    ns.run(&att.netns, || {
        let mut rtnl = Rtnl::open().ctx(|| format!("{place}: opening rtnetlink"))?;
        let mut first_error = None;
        for link in &att.links {
            if let Err(e) = detach_link(&mut rtnl, link).ctx(|| {
                format!(
                    "{place}: interface {}: removing its tap {}",
                    link.interface, link.tap
                )
            }) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Whether a link is one the guest takes over.
fn joins_guest(link: &Link) -> bool {
    link.flags.contains(LinkFlags::Up)
        && !link.flags.contains(LinkFlags::Loopback)
        && link.link_type == LinkLayerType::Ether
        && link.mac.is_some_and(|mac| mac != [0; 6])
        && link.kind.as_deref() != Some("tun")
}

/// What [`join`] got done, so a failure can be undone exactly.
#[derive(Default)]
struct Progress {
    tap: bool,
    interface_qdisc: bool,
    interface_filter: bool,
}

fn join(rtnl: &mut Rtnl, link: &Link, tap: &str, progress: &mut Progress) -> io::Result<()> {
    tap::create_persistent_tap(tap)?;
    progress.tap = true;
    let tap_index = ifindex(tap)?;
    // The tap is a wire to the guest, not an interface of the namespace:
    // without IPv6 addresses the namespace sends the guest no router
    // solicitations of its own. A kernel without IPv6 has nothing to stop.
    match rtnl.no_ipv6_addresses(tap_index) {
        Err(e) if errno(&e) != Some(libc::EAFNOSUPPORT) => return Err(e),
        _ => {}
    }
    rtnl.set_link(tap_index, Some(true), Some(link.mtu), None)?;
    // Guest -> network first: the interface's traffic is diverted only once
    // the whole path exists.
    rtnl.add_qdisc(tc::ingress_qdisc(tap_index))?;
    // (The tap's qdisc and filter go with the tap.)
    rtnl.add_filter(tc::redirect_filter(tap_index, link.index))?;
    match rtnl.add_qdisc(tc::ingress_qdisc(link.index)) {
        Ok(()) => progress.interface_qdisc = true,
        // An ingress (or clsact) qdisc is already there: share it.
        Err(e) if errno(&e) == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    rtnl.add_filter(tc::redirect_filter(link.index, tap_index))?;
    progress.interface_filter = true;
    Ok(())
}

/// Best-effort rollback of a [`join`] that failed half way.
fn undo(rtnl: &mut Rtnl, index: u32, tap: &str, progress: &Progress) {
    if progress.interface_filter {
        let _ = rtnl.delete_filter(tc::redirect_filter_delete(index));
    }
    if progress.interface_qdisc {
        let _ = rtnl.delete_qdisc(tc::ingress_qdisc(index));
    }
    if progress.tap {
        if let Ok(tap_index) = ifindex(tap) {
            let _ = rtnl.delete_link(tap_index);
        }
    }
}

/// Best-effort undoing of the interfaces an [`attach`] that failed had
/// already joined.
fn rollback(rtnl: &mut Rtnl, joined: &[AttachedLink]) {
    for link in joined {
        let _ = detach_link(rtnl, link);
    }
}

fn detach_link(rtnl: &mut Rtnl, link: &AttachedLink) -> io::Result<()> {
    let links = rtnl.links()?;
    // The interface is still the one attach saw (same index and name).
    if links
        .iter()
        .any(|l| l.index == link.ifindex && l.name == link.interface)
    {
        tolerate_gone(rtnl.delete_filter(tc::redirect_filter_delete(link.ifindex)))?;
        if link.created_qdisc {
            tolerate_gone(rtnl.delete_qdisc(tc::ingress_qdisc(link.ifindex)))?;
        }
    }
    // Deleting the tap removes its qdisc and filter with it.
    if let Some(tap) = links
        .iter()
        .find(|l| l.name == link.tap && l.kind.as_deref() == Some("tun"))
    {
        tolerate_gone(rtnl.delete_link(tap.index))?;
    }
    Ok(())
}

/// Teardown succeeds when the object is already gone: `ENOENT` (no filter
/// of that priority, no qdisc), `ENODEV` (no link) and `EINVAL` (the kernel's
/// answer for a filter whose ingress qdisc is gone).
fn tolerate_gone(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)) => Ok(()),
        other => other,
    }
}

fn ifindex(name: &str) -> io::Result<u32> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the call.
    match unsafe { libc::if_nametoindex(cname.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// The addresses of link `index` the guest gets: all but host-scope ones
/// and IPv6 link-local ones (the guest kernel derives the same from the
/// same MAC).
fn guest_addresses(index: u32, addresses: &[Address]) -> Vec<(IpAddr, u8)> {
    addresses
        .iter()
        .filter(|a| a.index == index)
        .filter(|a| !matches!(a.scope, AddressScope::Host | AddressScope::Nowhere))
        .filter(|a| !is_ipv6_link_local(&a.ip))
        .map(|a| (a.ip, a.prefix_len))
        .collect()
}

fn is_ipv6_link_local(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// The routes the guest gets: unicast main-table routes through a joined
/// interface that the kernel did not add by itself (those come back in the
/// guest when its addresses are added). Multipath routes, which name no
/// single interface, are not carried.
fn guest_routes(routes: &[Route], links: &[AttachedLink]) -> Vec<GuestRoute> {
    routes
        .iter()
        .filter(|r| r.kind == RouteType::Unicast && r.protocol != RouteProtocol::Kernel)
        .filter_map(|r| {
            let device = links.iter().find(|l| Some(l.ifindex) == r.oif)?;
            Some(GuestRoute {
                destination: r.destination,
                gateway: r.gateway,
                device: device.interface.clone(),
                metric: r.metric,
            })
        })
        .collect()
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn in_container(container_id: &str, e: Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("container {container_id}: {context}"),
            source,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn route(
        dst: Option<(IpAddr, u8)>,
        gw: Option<IpAddr>,
        oif: u32,
        proto: RouteProtocol,
    ) -> Route {
        Route {
            destination: dst,
            gateway: gw,
            oif: Some(oif),
            metric: None,
            protocol: proto,
            kind: RouteType::Unicast,
        }
    }

    #[test]
    fn mac_is_lowercase_hex_with_colons() {
        assert_eq!(
            format_mac(&[0x02, 0, 0xab, 0x0c, 0xff, 1]),
            "02:00:ab:0c:ff:01"
        );
    }

    #[test]
    fn addresses_skip_link_local_v6_and_host_scope() {
        let v4: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        let v6: IpAddr = "fd00::2".parse::<Ipv6Addr>().unwrap().into();
        let ll: IpAddr = "fe80::1".parse::<Ipv6Addr>().unwrap().into();
        let addr = |index, ip, scope| Address {
            index,
            ip,
            prefix_len: 24,
            scope,
        };
        let list = [
            addr(2, v4, AddressScope::Universe),
            addr(2, ll, AddressScope::Link),
            addr(2, v6, AddressScope::Universe),
            addr(3, v4, AddressScope::Universe),
            addr(2, Ipv4Addr::new(10, 9, 9, 9).into(), AddressScope::Host),
        ];
        assert_eq!(guest_addresses(2, &list), vec![(v4, 24), (v6, 24)]);
    }

    #[test]
    fn routes_keep_static_ones_through_joined_links() {
        let links = [AttachedLink {
            interface: "eth0".into(),
            ifindex: 2,
            tap: "vt-eth0".into(),
            created_qdisc: true,
        }];
        let gw: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let net: IpAddr = Ipv4Addr::new(10, 0, 0, 0).into();
        let other: IpAddr = Ipv4Addr::new(192, 168, 0, 0).into();
        let routes = [
            route(None, Some(gw), 2, RouteProtocol::Boot),
            route(Some((net, 24)), None, 2, RouteProtocol::Kernel),
            route(Some((other, 16)), None, 2, RouteProtocol::Static),
            route(None, Some(gw), 1, RouteProtocol::Boot),
        ];
        assert_eq!(
            guest_routes(&routes, &links),
            vec![
                GuestRoute {
                    destination: None,
                    gateway: Some(gw),
                    device: "eth0".into(),
                    metric: None
                },
                GuestRoute {
                    destination: Some((other, 16)),
                    gateway: None,
                    device: "eth0".into(),
                    metric: None
                },
            ]
        );
    }
}
