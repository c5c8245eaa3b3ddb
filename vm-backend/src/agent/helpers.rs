//! Helper commands of a process runner in a guest whose PID 1 reaps every
//! child. The agent's reaper thread calls `waitpid(-1)`, so a runner that
//! spawned a helper (the guest's `vessel create`, say) would never see its
//! status through `Child::wait`. A helper is registered here under a lock
//! held across the spawn; the reaper hands a registered pid's status over
//! instead of treating it as a workload exit.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

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

/// Like [`wait_helper`], capturing stdout and stderr.
pub fn helper_output(cmd: &mut Command) -> Result<(i32, Vec<u8>, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (pid, mut out, mut err) = {
        let mut waiters = lock();
        let mut child = cmd
            .spawn()
            .ctx(|| format!("starting {:?}", cmd.get_program()))?;
        let pid = child.id() as i32;
        waiters.get_or_insert_with(HashMap::new).insert(pid, tx);
        (pid, child.stdout.take(), child.stderr.take())
    };
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(o) = out.as_mut() {
        let _ = o.read_to_end(&mut stdout);
    }
    let stderr = err_reader.join().unwrap_or_default();
    let status = rx
        .recv()
        .map_err(|_| crate::Error::Agent(format!("helper pid {pid} was never reaped")))?;
    Ok((exit_code(status), stdout, stderr))
}
