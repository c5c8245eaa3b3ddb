//! The host/guest agent: protocol types shared by both sides, the host-side
//! client and the guest-side agent run by PID 1.
//!
//! One byte stream (a virtio-serial port in the guest, a unix socket on the
//! host) carries length-prefixed frames; see [`protocol`] for the wire format.

pub mod guest;
pub mod helpers;
pub mod host;
pub mod protocol;

pub use protocol::{
    Frame, GuestFile, GuestFileKind, GuestRootfs, Message, RunProcess, Stream, PROTOCOL_VERSION,
};

/// Name of the virtio-serial port that carries the agent stream. The host
/// gives it to QEMU's `virtserialport`; the guest finds it under
/// `/sys/class/virtio-ports/*/name`.
pub const AGENT_PORT_NAME: &str = "io.vessel.agent";
