//! Waiting for a container process in the foreground (`run`, `exec`):
//! signals sent to vessel are forwarded to it, and its exit status becomes
//! vessel's (128 + signal when killed, as shells report it).

use std::io;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals forwarded to the workload.
const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Blocks the signals vessel forwards (and SIGCHLD) in the calling thread,
/// so they queue for [`forward_and_wait`] instead of killing vessel before
/// it waits. Call it after forking the container's processes (a forked
/// child would inherit the mask) and before releasing the workload.
pub fn block_forwarded() -> io::Result<()> {
    forwarded_mask().thread_block()?;
    Ok(())
}

/// The forwarded signals plus SIGCHLD.
pub fn forwarded_mask() -> SigSet {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask
}

/// Makes the current process a child subreaper, so the container process
/// (a grandchild through the setup stage) is reparented to us.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Exit code a shell would report for a wait status.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Forwards signals to `pid` until it exits; returns its exit code.
/// Other children that exit meanwhile (reparented to us) are reaped too.
pub fn forward_and_wait(pid: i32) -> io::Result<i32> {
    let mask = forwarded_mask();
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?;
    let target = Pid::from_raw(pid);
    loop {
        // Reap first: a child may have exited before the mask was set.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(st) => {
                    if st.pid() == Some(target) {
                        if let Some(code) = exit_code(st) {
                            let _ = mask.thread_unblock();
                            return Ok(code);
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(info) = sfd.read_signal()? {
            let sig = info.ssi_signo as i32;
            if sig != libc::SIGCHLD {
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = kill(target, s);
                }
            }
        }
    }
}
