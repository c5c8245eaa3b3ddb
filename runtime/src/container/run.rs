//! `run` in the foreground: create, start over the sync channel (no exec
//! fifo round trip), wait with signals forwarded, then delete.

use super::{create, delete, err, CreateOptions, Error};
use crate::hooks::{self, Phase};
use crate::process::channel::Msg;
use crate::process::tty_proxy::relay_and_wait;
use crate::process::wait::forward_and_wait;
use crate::state::Status;

/// Runs the container to completion; returns the workload's exit code.
/// With `keep`, the stopped container is left for the caller to delete.
pub fn run_foreground(opts: &CreateOptions, keep: bool) -> Result<i32, Error> {
    let id = opts.id.as_str();
    let created = create(opts)?;
    if created.state.vm.is_some() {
        return run_vm(opts, created, keep);
    }
    let chan = created
        .channel
        .as_ref()
        .ok_or_else(|| err(id, "no sync channel"))?;
    // No exec fifo in the foreground: the recorded `created` already reads as
    // running once init is released, so the state is not written again.
    // Start, then wait until init has exec'd the workload (its end of the
    // channel closes on exec) or reports why it could not.
    // From here on a SIGTERM or SIGINT is for the workload, not for us.
    crate::process::wait::block_forwarded().map_err(|e| err(id, format!("block signals: {e}")))?;
    let started = match chan.send(&Msg::Start) {
        Err(e) => Err(format!("start: {e}")),
        Ok(()) => match chan.recv() {
            Ok(None) => Ok(()),
            Ok(Some(Msg::Error(e))) => Err(e),
            Ok(Some(m)) => Err(format!("protocol error: {m:?}")),
            Err(e) => Err(format!("start: {e}")),
        },
    };
    if let Err(e) = started {
        drop(created);
        let _ = delete(&opts.root, id, true);
        return Err(err(id, e));
    }
    let poststart = match &created.hooks {
        Some(h) if !Phase::Poststart.of(h).is_empty() => hooks::run(
            Some(h),
            Phase::Poststart,
            &serde_json::to_vec(&created.state.oci(Status::Running)).unwrap_or_default(),
        ),
        _ => Ok(()),
    };
    let pid = created.pid;
    let master = console_master(id, &created)?;
    // Other vessel commands (state, kill, exec) may run while we wait.
    drop(created);
    let code = match (poststart, master) {
        (Ok(()), Some(m)) => relay_and_wait(pid, m).map_err(|e| err(id, format!("wait: {e}"))),
        (Ok(()), None) => forward_and_wait(pid).map_err(|e| err(id, format!("wait: {e}"))),
        (Err(e), _) => Err(err(id, e)),
    };
    tracing::debug!("run {id}: workload exited");
    if !keep {
        delete(&opts.root, id, true)?;
    }
    code
}

/// `run` of a vm-mode container: start through the supervisor, then wait
/// for it (it exits as the workload does) with signals forwarded to it.
fn run_vm(opts: &CreateOptions, created: super::Created, keep: bool) -> Result<i32, Error> {
    let id = opts.id.as_str();
    crate::process::wait::block_forwarded().map_err(|e| err(id, format!("block signals: {e}")))?;
    let pid = created.pid;
    let master = console_master(id, &created)?;
    drop(created);
    if let Err(e) = super::start(&opts.root, id) {
        let _ = delete(&opts.root, id, true);
        return Err(e);
    }
    let code = match master {
        Some(m) => relay_and_wait(pid, m).map_err(|e| err(id, format!("wait: {e}"))),
        None => forward_and_wait(pid).map_err(|e| err(id, format!("wait: {e}"))),
    };
    tracing::debug!("run {id}: workload exited");
    if !keep {
        delete(&opts.root, id, true)?;
    }
    code
}

/// The pty master sent to our own console socket, when `run` relays the
/// terminal itself.
fn console_master(
    id: &str,
    created: &super::Created,
) -> Result<Option<std::os::fd::OwnedFd>, Error> {
    created
        .console
        .as_ref()
        .map(|sock| {
            crate::terminal::recv_fd(std::os::fd::AsFd::as_fd(sock))
                .map_err(|e| err(id, format!("receive the pty master: {e}")))
        })
        .transpose()
}
