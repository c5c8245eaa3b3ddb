//! `exec` in vm mode: the process runs in the guest; this side relays its
//! stdio (or terminal), window size and signals over the supervisor's
//! control socket and exits as it did. With `--detach` the relay is a
//! separate process (`vessel vm-exec <dir> <process.json>`), whose pid is
//! what `--pid-file` gets, so a caller that waits for that pid (conmon)
//! sees the process's exit status.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::SigSet;
use nix::sys::termios::{self, SetArg};
use oci_spec::runtime::Process;
use vessel_vm::agent::{Frame, Message, Stream};

use super::control::{self, ControlError, Request};
use super::supervisor::window_size;
use super::READY_FD;
use crate::terminal;

/// How the process ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// Exit code as a shell reports it.
    pub code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
}

/// Why an exec in a VM failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The supervisor refused or could not be reached.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Writing the process file the detached relay reads.
    #[error("{}: {source}", .path.display())]
    ProcessFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding the process.
    #[error("the exec process: {0}")]
    Json(#[source] serde_json::Error),
    /// Starting the detached relay.
    #[error("starting the exec relay: {0}")]
    SpawnRelay(#[source] std::io::Error),
    /// The detached relay failed before the process ran: its report.
    #[error("{0}")]
    Relay(String),
    /// The detached relay ended without a report.
    #[error("the exec relay exited without a report")]
    NoReport,
    /// `--console-socket` without `process.terminal`.
    #[error("--console-socket was given but process.terminal is false")]
    ConsoleWithoutTerminal,
    /// The supervisor's reply lacks the process id.
    #[error("the supervisor gave no process id")]
    NoProcessId,
    /// Setting up the terminal or stdin.
    #[error("{what}: {source}")]
    Terminal {
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to `--console-socket`.
    #[error("--console-socket {}: {source}", .path.display())]
    ConsoleSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection to the supervisor.
    #[error("the control connection: {0}")]
    Connection(#[source] std::io::Error),
    /// The guest reported an error about the process: its message.
    #[error("{0}")]
    Guest(String),
    /// The VM stopped before the process ended.
    #[error("the VM went away: {0}")]
    VmGone(#[source] vessel_vm::Error),
}

/// Starts a detached relay for `process`; returns (relay pid, guest pid).
pub fn spawn_detached(
    dir: &Path,
    process: &Process,
    console_socket: Option<&Path>,
) -> Result<i32, ExecError> {
    let file = dir.join(format!("exec-{}.json", crate::utils::now_nanos()));
    std::fs::write(&file, serde_json::to_vec(process).map_err(ExecError::Json)?).map_err(
        |source| ExecError::ProcessFile {
            path: file.clone(),
            source,
        },
    )?;
    let mut args = vec![
        std::ffi::OsStr::new("vm-exec"),
        dir.as_os_str(),
        file.as_os_str(),
    ];
    if let Some(s) = console_socket {
        args.push(s.as_os_str());
    }
    let spawned = super::spawn_reporting(&args, |_| {});
    let _ = std::fs::remove_file(&file);
    let (pid, report) = spawned.map_err(ExecError::SpawnRelay)?;
    if report.starts_with("ok") {
        Ok(pid)
    } else {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        Err(if report.is_empty() {
            ExecError::NoReport
        } else {
            ExecError::Relay(report)
        })
    }
}

/// The detached relay's main: reports on fd 3, then relays until the
/// process ends and exits like it.
pub fn relay_main(dir: &Path, process_file: &Path, console_socket: Option<PathBuf>) -> ! {
    // SAFETY: fd 3 was set up by `spawn_detached` for us alone.
    let ready = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(READY_FD) };
    let _ = nix::fcntl::fcntl(
        ready.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let process = std::fs::read(process_file)
        .map_err(|source| ExecError::ProcessFile {
            path: process_file.to_path_buf(),
            source,
        })
        .and_then(|d| serde_json::from_slice::<Process>(&d).map_err(ExecError::Json));
    let result = process.and_then(|p| relay(dir, &p, console_socket.as_deref(), Some(ready)));
    match result {
        Ok(ended) => super::exit_like(ended.code, ended.signal),
        Err(e) => {
            eprintln!("vessel: exec: {e}");
            std::process::exit(255)
        }
    }
}

/// Restores a terminal's mode on drop.
struct RawMode(OwnedFd, termios::Termios);

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.0.as_fd(), SetArg::TCSANOW, &self.1);
    }
}

fn make_raw(fd: &OwnedFd) -> Option<RawMode> {
    let saved = termios::tcgetattr(fd.as_fd()).ok()?;
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(fd.as_fd(), SetArg::TCSANOW, &raw).ok()?;
    Some(RawMode(fd.try_clone().ok()?, saved))
}

/// Runs `process` in the VM and relays it until it ends. `ready` (the
/// detached relay's report pipe) gets `ok` once the process runs.
pub fn relay(
    dir: &Path,
    process: &Process,
    console_socket: Option<&Path>,
    ready: Option<File>,
) -> Result<Ended, ExecError> {
    let terminal = process.terminal().unwrap_or(false);
    if terminal != console_socket.is_some() && console_socket.is_some() {
        return Err(ExecError::ConsoleWithoutTerminal);
    }
    let reply = control::request(
        dir,
        &Request::Exec {
            process: Box::new(process.clone()),
        },
        Some(Duration::from_secs(120)),
    );
    let (reply, conn) = match (reply, ready.as_ref()) {
        // A detached relay's caller learns why through the report (the
        // guest's error names what is wrong, such as a missing binary).
        (Err(e), Some(mut r)) => {
            let _ = write!(r, "{e}");
            return Err(e.into());
        }
        (r, _) => r?,
    };
    let id = reply.id.ok_or(ExecError::NoProcessId)?;
    // Our side of the terminal: a pty whose master goes to the console
    // socket, or our own stdin when it is a terminal.
    let mut _raw = None;
    let tty: Option<OwnedFd> = match (terminal, console_socket) {
        (true, Some(sock)) => {
            let (master, slave, name) =
                terminal::open_pty().map_err(|source| ExecError::Terminal {
                    what: "opening a pty",
                    source,
                })?;
            let c = UnixStream::connect(sock).map_err(|source| ExecError::ConsoleSocket {
                path: sock.to_path_buf(),
                source,
            })?;
            terminal::send_fd(c.as_fd(), &name, master.as_fd()).map_err(|source| {
                ExecError::Terminal {
                    what: "--console-socket: sending the pty master",
                    source,
                }
            })?;
            _raw = make_raw(&slave);
            Some(slave)
        }
        (true, None) if nix::unistd::isatty(0).unwrap_or(false) => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| ExecError::Terminal {
                    what: "duplicating stdin",
                    source,
                })?;
            _raw = make_raw(&fd);
            Some(fd)
        }
        _ => None,
    };
    if let Some(mut r) = ready {
        let _ = writeln!(r, "ok {}", reply.pid.unwrap_or(0));
    }
    let writer = Arc::new(Mutex::new(conn.try_clone().map_err(ExecError::Connection)?));
    let send = {
        let writer = Arc::clone(&writer);
        move |f: Frame| {
            let w = writer.lock().unwrap_or_else(|p| p.into_inner());
            f.write_to(&mut &*w).is_ok()
        }
    };
    // stdin
    let input: Option<File> = match &tty {
        Some(t) => t.try_clone().ok().map(File::from),
        None => std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from),
    };
    {
        let send = send.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 32 << 10];
            if let Some(mut input) = input {
                loop {
                    match input.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if !send(Frame::Data {
                                id,
                                stream: Stream::Stdin,
                                data: buf[..n].to_vec(),
                            }) {
                                return;
                            }
                        }
                    }
                }
            }
            send(Frame::Data {
                id,
                stream: Stream::Stdin,
                data: Vec::new(),
            });
        });
    }
    if let Some(t) = &tty {
        let raw = t.as_raw_fd();
        let send = send.clone();
        thread::spawn(move || {
            let mut last = None;
            loop {
                if let Some(size) = window_size(raw) {
                    if last != Some(size) && size.0 > 0 {
                        last = Some(size);
                        if !send(Frame::Control(Message::ResizeTerminal {
                            id,
                            rows: size.0,
                            cols: size.1,
                        })) {
                            return;
                        }
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
    }
    // Signals sent to us are for the process.
    let mut mask = SigSet::empty();
    for s in super::RELAYED_SIGNALS {
        mask.add(s);
    }
    if mask.thread_block().is_ok() {
        let send = send.clone();
        thread::spawn(move || loop {
            if let Ok(sig) = mask.wait() {
                send(Frame::Control(Message::Signal {
                    id,
                    signal: sig as i32,
                    all: false,
                }));
            }
        });
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut reader = conn;
    loop {
        match Frame::read_from(&mut reader) {
            Ok(Frame::Data { stream, data, .. }) => {
                if let Some(t) = &tty {
                    let _ = nix::unistd::write(t, &data);
                } else if stream == Stream::Stderr {
                    let _ = err.write_all(&data);
                } else {
                    let _ = out.write_all(&data);
                    let _ = out.flush();
                }
            }
            Ok(Frame::Control(Message::Exit { code, signal, .. })) => {
                return Ok(Ended { code, signal })
            }
            Ok(Frame::Control(Message::Error { message, .. })) => {
                return Err(ExecError::Guest(message))
            }
            Ok(_) => {}
            Err(e) => return Err(ExecError::VmGone(e)),
        }
    }
}
