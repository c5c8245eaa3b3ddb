//! vm mode: the container's workload runs in a microVM with its own guest
//! kernel (see `vessel-vm` for engines, images and the agent protocol).
//!
//! On the host, `create` plans the guest ([`guest_spec`]), finds what it
//! needs ([`resolve`]) and starts the [`supervisor`], which owns the VMM
//! and the agent connection and is the pid the state reports. The other
//! commands reach it over its [`control`] socket; `exec` relays through it
//! ([`exec`]). In the guest, the same binary is PID 1 and runs each
//! process with vessel's container code ([`guest_runner`]).

pub mod config;
pub mod control;
pub mod create;
pub mod exec;
pub mod guest_runner;
pub mod guest_spec;
pub mod lifecycle;
pub mod resolve;
pub mod supervisor;

pub use config::{Isolation, RuntimeConfig, VmDefaults};

use nix::sys::signal::{SigSet, Signal};

/// Exits as a process that ended this way: killed by the same signal, or
/// with the code.
pub fn exit_like(code: i32, signal: Option<i32>) -> ! {
    if let Some(sig) = signal.and_then(|s| Signal::try_from(s).ok()) {
        // SAFETY: resetting a disposition to SIG_DFL installs no handler.
        unsafe { libc::signal(sig as i32, libc::SIG_DFL) };
        let mut m = SigSet::empty();
        m.add(sig);
        let _ = m.thread_unblock();
        let _ = nix::sys::signal::raise(sig);
    }
    std::process::exit(code.clamp(0, 255))
}
