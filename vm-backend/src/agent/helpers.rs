//! Helper commands of a process runner in a guest whose PID 1 reaps every
//! child. The agent's reaper thread calls `waitpid(-1)`, so a runner that
//! spawned a helper (the guest's vessel creating a container, say) would
//! never see its status through `Child::wait`. A helper is registered here
//! under a lock held across the spawn; the reaper hands a registered pid's
//! status over instead of treating it as a workload exit. A helper reports
//! its result (a serialized reply or error) on a pipe of its own
//! ([`REPORT_FD`]), never through its log or its stdio, which belong to the
//! workload.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use nix::sys::wait::WaitStatus;

use crate::error::IoContext;
use crate::Result;

type Waiters = HashMap<i32, mpsc::Sender<WaitStatus>>;

static WAITERS: Mutex<Option<Waiters>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Waiters>> {
    WAITERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called by the reaper with every status it reaps: true if `pid` was a
/// helper, whose waiter now has the status.
pub(crate) fn claim(pid: i32, status: WaitStatus) -> bool {
    match lock().as_mut().and_then(|w| w.remove(&pid)) {
        Some(tx) => {
            let _ = tx.send(status);
            true
        }
        None => false,
    }
}

/// The exit code a shell would report for `status`.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 255,
    }
}

/// Spawns `cmd` as a registered helper and waits for it; returns its exit
/// code. Its stdio is whatever `cmd` was given.
pub fn wait_helper(cmd: &mut Command) -> Result<i32> {
    let (tx, rx) = mpsc::channel();
    let pid = {
        let mut waiters = lock();
        let child = cmd
            .spawn()
            .ctx(|| format!("starting {:?}", cmd.get_program()))?;
        let pid = child.id() as i32;
        waiters.get_or_insert_with(HashMap::new).insert(pid, tx);
        pid
    };
    let status = rx
        .recv()
        .map_err(|_| crate::Error::Agent(format!("helper pid {pid} was never reaped")))?;
    Ok(exit_code(status))
}

/// The descriptor on which a helper started by [`run_reporting`] writes
/// its report.
pub const REPORT_FD: i32 = 3;

/// Spawns `cmd` as a registered helper with a pipe as [`REPORT_FD`] and
/// waits for it; returns how it ended and the one report it wrote with
/// [`write_report`], if it wrote one. The report is read while the helper
/// runs (a large one cannot block it) and up to its announced length, not
/// to end of file: a process the helper forked (a container's init waiting
/// to be started) holds the descriptor until it execs.
pub fn run_reporting(cmd: &mut Command) -> Result<(WaitStatus, Option<Vec<u8>>)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| crate::Error::io("creating a helper's report pipe", e.into()))?;
    let wfd = w.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (dup2, fcntl) on plain integers.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            let rc = if wfd == REPORT_FD {
                libc::fcntl(wfd, libc::F_SETFD, 0)
            } else {
                libc::dup2(wfd, REPORT_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (report_tx, report_rx) = mpsc::channel();
    let mut pipe = File::from(r);
    thread::spawn(move || {
        let _ = report_tx.send(read_report(&mut pipe));
    });
    let (tx, rx) = mpsc::channel();
    let pid = {
        let mut waiters = lock();
        let child = cmd
            .spawn()
            .ctx(|| format!("starting {:?}", cmd.get_program()))?;
        let pid = child.id() as i32;
        waiters.get_or_insert_with(HashMap::new).insert(pid, tx);
        pid
    };
    // Only the helper holds the write end now.
    drop(w);
    let status = rx
        .recv()
        .map_err(|_| crate::Error::Agent(format!("helper pid {pid} was never reaped")))?;
    // A helper writes its report before it exits; one that died without
    // writing leaves the reader waiting for a length that never comes.
    let report = report_rx
        .recv_timeout(Duration::from_secs(2))
        .ok()
        .flatten();
    Ok((status, report))
}

/// Writes `report` on [`REPORT_FD`] as one message: its length (`u32`, big
/// endian), then the bytes. Called once, by the helper.
pub fn write_report(report: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(report.len()).map_err(std::io::Error::other)?;
    // SAFETY: REPORT_FD was set up for this process by `run_reporting`;
    // the File takes it over and closes it when dropped, once.
    let mut f = unsafe { File::from_raw_fd(REPORT_FD) };
    f.write_all(&len.to_be_bytes())?;
    f.write_all(report)
}

/// Reads one length-prefixed report; `None` if the pipe closed first.
fn read_report(pipe: &mut File) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    pipe.read_exact(&mut len).ok()?;
    let mut report = vec![0u8; u32::from_be_bytes(len) as usize];
    pipe.read_exact(&mut report).ok()?;
    Some(report)
}
