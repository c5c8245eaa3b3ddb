//! vessel's microVM mode: what the runtime's vm backend (`vessel::vm`)
//! uses to run an OCI workload inside a lightweight virtual machine instead
//! of a set of host namespaces.
//!
//! - [`engine`]: the small [`engine::Engine`] interface every VMM
//!   implements, and its two engines: [`engine::kvm`], vessel's own
//!   monitor on `/dev/kvm` (run as `vessel vmm`; its x86_64 specifics in
//!   `arch/x86_64`, its devices created and wired by its device manager
//!   from the models in [`devices`]), and [`engine::qemu`] (QEMU `microvm` with a
//!   KVM-or-TCG accelerator probe). The runtime probes which one can boot
//!   the guest kernel on this host and records the choice per container.
//! - [`devices`]: the kvm engine's device models: the port-IO and MMIO
//!   buses, legacy serial/i8042/ACPI PM, and virtio (block, console, net,
//!   vsock) behind the virtio-mmio transport.
//! - [`guest`]: locating the guest kernel and its modules, building the
//!   initramfs (the static vessel as `/init` plus the modules it loads) and
//!   the root filesystem images (erofs, ext4 scratch), cached by content.
//! - [`agent`]: the versioned, length-prefixed protocol spoken over one byte
//!   stream (a virtio-serial port under QEMU, vsock under the kvm engine)
//!   between the host's supervisor and the guest agent, the host-side
//!   client, and the guest-side agent loop run by PID 1.
//! - [`net`]: the guest gets the container's network: taps mirrored from
//!   the container's network namespace on the host, configured alike in
//!   the guest; and moving links between namespaces.
#![warn(missing_docs)]

pub mod agent;
pub mod devices;
pub mod engine;
mod error;
pub mod guest;
pub mod net;

pub use error::{Error, Result};
