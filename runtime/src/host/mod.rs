//! Container mode: the workload runs on the host kernel, isolated by
//! namespaces, a root filesystem of its own, capabilities, seccomp and
//! cgroups. [`prepare`] checks what only this mode needs and
//! [`spawn`](spawn::HostSpawner) forks the setup stage and init
//! ([`init`]); [`HostBackend`] is the mode's [`Backend`] for every command
//! after `create`.

mod exec;
mod init;
mod ps;
mod spawn;

pub use ps::PsError;
pub use spawn::{prepare, HostSpawner};

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use crate::container::{kill_all, stop_processes, Container, Error, ExecOptions, ExecPlan};
use crate::isolation::Backend;
use crate::process::channel::{Channel, ChannelError, Msg};
use crate::state::{exe_of, HostState, Status, EXEC_FIFO, START_STATUS_FIFO};

/// The [`Backend`] of container mode, with the mode's recorded data.
#[derive(Debug, Clone)]
pub struct HostBackend(pub HostState);

impl Backend for HostBackend {
    fn live_status(&self, recorded: Status, dir: &Path, pid: i32) -> Status {
        match recorded {
            Status::Creating | Status::Created => match self.0.init_exe {
                Some(exe) if exe_of(pid).is_some() => {
                    if exe_of(pid) == Some(exe) {
                        Status::Created
                    } else {
                        Status::Running
                    }
                }
                _ if dir.join(EXEC_FIFO).exists() => Status::Created,
                _ => Status::Running,
            },
            s => s,
        }
    }

    fn own_pid_ns(&self) -> bool {
        self.0.own_pid_ns
    }

    fn start(&self, c: &Container, sync: Option<&Channel>) -> Result<(), Error> {
        match sync {
            Some(chan) => start_over(c, chan),
            None => start_through_fifo(c),
        }
    }

    fn signal(&self, c: &Container, sig: Signal, all: bool) -> Result<(), Error> {
        if all {
            return kill_all(c, sig);
        }
        send_signal(Pid::from_raw(c.state.pid), sig)
            .map_err(|e| Error::io(c.id(), "kill", None, e.into()))
    }

    fn stop(&self, c: &Container) -> Result<(), Error> {
        stop_processes(c, None)
    }

    fn ps(&self, c: Container, format: &str, args: &[String]) -> Result<String, Error> {
        let pids = c.cgroup()?.pids().map_err(|e| c.cgroup_error(e))?;
        let id = c.state.id.clone();
        drop(c);
        ps::render(&pids, format, args).map_err(|source| Error::Ps { id, source })
    }

    fn exec(&self, c: Container, opts: &ExecOptions, plan: ExecPlan) -> Result<i32, Error> {
        exec::exec(c, opts, plan)
    }
}

/// Starts a foreground `run`'s init over the sync channel, then waits until
/// it has exec'd the workload (its end of the channel closes on exec) or
/// reports why it could not.
fn start_over(c: &Container, chan: &Channel) -> Result<(), Error> {
    let id = c.id();
    chan.send(&Msg::Start)
        .map_err(|e| Error::io(id, "start", None, e))?;
    match chan.expect_close() {
        Ok(()) => Ok(()),
        Err(ChannelError::Io(e)) => Err(Error::io(id, "start", None, e)),
        Err(e) => Err(Error::setup(id, e)),
    }
}

/// Releases init through the exec fifo and waits for its verdict on the
/// start-status fifo.
fn start_through_fifo(c: &Container) -> Result<(), Error> {
    let id = c.id();
    let fifo = c.dir.join(EXEC_FIFO);
    let status_fifo = c.dir.join(START_STATUS_FIFO);
    // Opened before releasing init, so its verdict cannot be missed.
    let status_file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&status_fifo)
        .map_err(|e| Error::io(id, "start:", Some(&status_fifo), e))?;
    // Non-blocking: if init is gone there is no reader and open fails (ENXIO)
    // instead of hanging.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .map_err(|e| Error::io(id, "start: init is not waiting", None, e))?;
    f.write_all(&[0])
        .map_err(|e| Error::io(id, "start", None, e))?;
    drop(f);
    let verdict = wait_for_exec(status_file).map_err(|e| Error::io(id, "start", None, e));
    let _ = fs::remove_file(&fifo);
    let _ = fs::remove_file(&status_fifo);
    match verdict? {
        Some(msg) => Err(Error::setup(id, ChannelError::Reported(msg))),
        None => Ok(()),
    }
}

/// Waits until init has exec'd the workload (end-of-file on the status
/// fifo: init's descriptor closed on exec) or failed (its message).
fn wait_for_exec(f: fs::File) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut f = f;
    let mut msg = Vec::new();
    loop {
        let mut fds = [nix::poll::PollFd::new(
            f.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => msg.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((!msg.is_empty()).then(|| String::from_utf8_lossy(&msg).into_owned()))
}
