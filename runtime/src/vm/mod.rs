//! vm mode: the container's workload runs in a microVM with its own guest
//! kernel (see `vessel-vm` for engines, images and the agent protocol).
//!
//! On the host, `create` ([`create`], the mode's
//! [`Spawner`](crate::isolation::Spawner)) plans the guest ([`guest_spec`]),
//! finds what it needs ([`resolve`]) and starts the [`supervisor`], which
//! owns the VMM and the agent connection and is the pid the state reports.
//! The other commands go through [`VmBackend`], which reaches the
//! supervisor over its [`control`] socket; `exec` relays through it
//! ([`exec`]). In the guest, the same binary is PID 1 and runs each
//! process with vessel's container code ([`guest_runner`]).

mod backend;
pub mod config;
pub mod control;
pub mod create;
mod error;
pub mod exec;
pub mod guest_helper;
pub mod guest_runner;
pub mod guest_spec;
pub mod member;
pub mod pod;
pub mod resolve;
pub mod supervisor;

pub use backend::{recovered_state, VmBackend};
pub use config::VmDefaults;
pub use create::{prepare, VmSpawner};
pub use error::VmError;
// Kept where `cli/features.rs` finds them.
pub use crate::isolation::{Isolation, RuntimeConfig};

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::{SigSet, Signal};

/// The descriptor on which a helper started by [`spawn_reporting`] reports.
pub const READY_FD: i32 = 3;

/// Signals a relay forwards to the process it stands for (a detached
/// exec's, a pod member's init).
pub(crate) const RELAYED_SIGNALS: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Starts `vessel <command> <dir>`, one of this mode's internal
/// processes, logging as JSON to `log`, through [`spawn_reporting`].
fn spawn_internal(
    root: &Path,
    dir: &Path,
    log: &Path,
    command: &str,
    started: impl FnOnce(i32),
) -> Result<(i32, String), VmError> {
    let args: [&OsStr; 8] = [
        "--root".as_ref(),
        root.as_os_str(),
        "--log".as_ref(),
        log.as_os_str(),
        "--log-format".as_ref(),
        "json".as_ref(),
        command.as_ref(),
        dir.as_os_str(),
    ];
    spawn_reporting(&args, started).map_err(VmError::Spawn)
}

/// Starts this binary with `args` in a session of its own (a terminal's
/// ^C then reaches only the foreground vessel, which forwards it once),
/// with a pipe as [`READY_FD`]; `started` gets its pid at once. Returns
/// the pid and what the helper wrote on the pipe before closing it.
pub fn spawn_reporting<S: AsRef<OsStr>>(
    args: &[S],
    started: impl FnOnce(i32),
) -> std::io::Result<(i32, String)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("vessel").args(args);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (setsid, dup2) on plain integers.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::dup2(wfd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    started(pid);
    // Our copy of the write end goes, so the read sees the helper's close.
    drop(cmd);
    drop(w);
    let mut report = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut report);
    Ok((pid, report))
}

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
