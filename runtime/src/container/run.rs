//! `run` in the foreground: create, start (container mode over the sync
//! channel, no exec fifo round trip), wait with signals forwarded, then
//! delete.

use super::{create, delete, Container, CreateOptions, Error};
use crate::hooks::{self, Phase};
use crate::process::tty_proxy::relay_and_wait;
use crate::process::wait::forward_and_wait;
use crate::state::Status;

/// Runs the container to completion; returns the workload's exit code
/// (the VM supervisor exits as the workload does). With `keep`, the
/// stopped container is left for the caller to delete.
pub fn run_foreground(opts: &CreateOptions, keep: bool) -> Result<i32, Error> {
    let id = opts.id.as_str();
    let created = create(opts)?;
    // From here on a SIGTERM or SIGINT is for the workload, not for us.
    crate::process::wait::block_forwarded().map_err(|e| Error::io(id, "block signals", None, e))?;
    // The pty master sent to our own console socket, when `run` relays the
    // terminal itself.
    let master = created
        .console
        .as_ref()
        .map(|sock| {
            crate::terminal::recv_fd(std::os::fd::AsFd::as_fd(sock))
                .map_err(|e| Error::io(id, "receive the pty master", None, e))
        })
        .transpose();
    let pid = created.pid;
    let hooks = created.hooks;
    let channel = created.channel;
    let mut c = Container {
        dir: created.dir,
        state: created.state,
        _lock: Some(created.lock),
    };
    let started = master.and_then(|m| {
        c.backend().start(&c, channel.as_ref())?;
        c.state.status = Status::Running;
        c.save()?;
        match &hooks {
            Some(h) if !Phase::Poststart.of(h).is_empty() => hooks::run(
                Some(h),
                Phase::Poststart,
                &serde_json::to_vec(&c.state.oci(Status::Running)).unwrap_or_default(),
            )
            .map_err(|source| Error::Hook {
                id: id.into(),
                source,
            })?,
            _ => {}
        }
        Ok(m)
    });
    // Other vessel commands (state, kill, exec) may run while we wait.
    drop(c);
    drop(channel);
    let master = match started {
        Ok(m) => m,
        Err(e) => {
            let _ = delete(&opts.root, id, true);
            return Err(e);
        }
    };
    let code = match master {
        Some(m) => relay_and_wait(pid, m).map_err(|e| Error::io(id, "wait", None, e)),
        None => forward_and_wait(pid).map_err(|e| Error::io(id, "wait", None, e)),
    };
    tracing::debug!("run {id}: workload exited");
    if !keep {
        delete(&opts.root, id, true)?;
    }
    code
}
