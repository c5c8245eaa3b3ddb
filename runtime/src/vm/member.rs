//! The host side of a container of a VM pod (see [`super::pod`]): its
//! relay, `vessel vm-member <dir>`, started by `create`. It has the
//! sandbox's supervisor create the member in the guest, then is the
//! member's pid on the host for its whole life: it relays the member's
//! stdio (its own, inherited from `create`, or a pty sent over the console
//! socket) and the signals it gets, serves the member's control socket by
//! forwarding each request to the sandbox's supervisor, and exits as the
//! member does. When the pod's VM stops, its connection ends and it exits
//! as if killed (SIGKILL), so a shim waiting on it sees the container end.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use vessel_vm::agent::{Frame, Message, Stream};

use super::control::{self, Request};
use super::pod::{MemberLaunch, MEMBER_FILE};
use super::{VmError, READY_FD};

/// Starts `vessel vm-member <dir>` with our stdio and waits for its
/// report; returns the member's pid in the guest.
pub fn spawn_relay(root: &Path, dir: &Path, started: impl FnOnce(i32)) -> Result<i32, VmError> {
    let log = dir.join("member.log");
    let (_, report) = super::spawn_internal(root, dir, &log, "vm-member", started)?;
    match report.strip_prefix("ok ") {
        Some(rest) => rest
            .trim()
            .parse()
            .map_err(|_| VmError::Boot(format!("bad report from the member's relay: {report:?}"))),
        None if report.is_empty() => Err(VmError::NoReport { log }),
        None => Err(VmError::Boot(report)),
    }
}

/// Runs the relay of the member in `dir`; never returns.
pub fn run(dir: &Path) -> ! {
    // SAFETY: READY_FD was set up by `create` for us alone; we own it now.
    let mut ready = unsafe { File::from_raw_fd(READY_FD) };
    let _ = nix::fcntl::fcntl(
        READY_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut mask = SigSet::empty();
    for s in super::RELAYED_SIGNALS {
        mask.add(s);
    }
    // Blocked before any thread starts: the signal thread alone gets them.
    let _ = mask.thread_block();
    let relay = match setup(dir) {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(ready, "{e}");
            std::process::exit(1)
        }
    };
    if writeln!(ready, "ok {}", relay.guest_pid).is_err() {
        // `create` is gone: its cleanup removes the member; so do we.
        std::process::exit(1)
    }
    drop(ready);
    let (code, signal) = relay.serve(mask);
    let _ = std::fs::remove_file(control::socket_path(dir));
    super::exit_like(code, signal)
}

struct Relay {
    launch: MemberLaunch,
    /// The agent's id of the member's init (its frames carry it).
    id: u32,
    guest_pid: i32,
    conn: UnixStream,
    writer: Mutex<UnixStream>,
    tty: Option<OwnedFd>,
}

/// Why the relay could not set the member up (reported to `create`).
#[derive(Debug, thiserror::Error)]
enum SetupError {
    /// The launch file or the member's control socket.
    #[error("{}: {source}", .path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The launch file is not what `create` writes.
    #[error("{MEMBER_FILE}: {0}")]
    Launch(#[source] serde_json::Error),
    /// The pod's supervisor refused or failed (`cause` names why; not a
    /// #[source], as in [`VmError::Request`]).
    #[error("creating the container in the pod {sandbox:?}: {cause}")]
    Create {
        /// The sandbox's id.
        sandbox: String,
        /// The supervisor's or the guest's answer.
        cause: control::ControlError,
    },
    /// The supervisor's reply named no process.
    #[error("the pod's supervisor gave no process id")]
    NoProcessId,
    /// The host side of the member's terminal.
    #[error(transparent)]
    Terminal(#[from] super::supervisor::SupervisorError),
    /// Duplicating the connection for the writer.
    #[error("the connection to the pod's supervisor: {0}")]
    Connection(#[source] std::io::Error),
}

fn setup(dir: &Path) -> Result<Arc<Relay>, SetupError> {
    let path = dir.join(MEMBER_FILE);
    let text = std::fs::read(&path).map_err(|source| SetupError::File {
        path: path.clone(),
        source,
    })?;
    let launch: MemberLaunch = serde_json::from_slice(&text).map_err(SetupError::Launch)?;
    let (reply, conn) = control::request(
        &launch.sandbox_dir,
        &Request::CreateMember {
            run: Box::new(launch.run.clone()),
            sandbox: launch.sandbox.clone(),
            join: launch.join.clone(),
        },
        Some(Duration::from_secs(120)),
    )
    .map_err(|cause| SetupError::Create {
        sandbox: launch.sandbox.clone(),
        cause,
    })?;
    let id = reply.id.ok_or(SetupError::NoProcessId)?;
    let guest_pid = reply.pid.unwrap_or(0);
    let tty = match &launch.console_socket {
        Some(sock) => Some(super::supervisor::host_terminal(sock)?),
        None => None,
    };
    let writer = Mutex::new(conn.try_clone().map_err(SetupError::Connection)?);
    // The member's own socket: `start`, `kill`, `exec`, `ps` of the member
    // reach it here and go on to the sandbox.
    let sock = control::socket_path(dir);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|source| SetupError::File {
        path: sock.clone(),
        source,
    })?;
    let relay = Arc::new(Relay {
        launch,
        id,
        guest_pid,
        conn,
        writer,
        tty,
    });
    let r = Arc::clone(&relay);
    thread::spawn(move || r.accept(listener));
    Ok(relay)
}

impl Relay {
    fn send(&self, frame: Frame) -> bool {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        frame.write_to(&mut &*w).is_ok()
    }

    /// Relays until the member exits: its exit code and signal.
    fn serve(self: &Arc<Self>, mask: SigSet) -> (i32, Option<i32>) {
        let r = Arc::clone(self);
        thread::spawn(move || r.pump_stdin());
        let r = Arc::clone(self);
        thread::spawn(move || loop {
            if let Ok(sig) = mask.wait() {
                r.send(Frame::Control(Message::Signal {
                    id: r.id,
                    signal: sig as i32,
                    all: false,
                }));
            }
        });
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let mut reader = &self.conn;
        loop {
            match Frame::read_from(&mut reader) {
                Ok(Frame::Data { data, .. }) if data.is_empty() => {}
                Ok(Frame::Data { stream, data, .. }) => {
                    if let Some(t) = &self.tty {
                        let _ = nix::unistd::write(t, &data);
                    } else if stream == Stream::Stderr {
                        let _ = err.write_all(&data);
                    } else {
                        let _ = out.write_all(&data);
                        let _ = out.flush();
                    }
                }
                Ok(Frame::Control(Message::Exit { code, signal, .. })) => return (code, signal),
                Ok(Frame::Control(Message::Error { message, .. })) => {
                    tracing::warn!("container {:?}: guest: {message}", self.launch.id);
                }
                Ok(_) => {}
                Err(e) => {
                    // The pod's VM stopped: the member was killed with it.
                    tracing::info!("container {:?}: the pod's VM is gone ({e})", self.launch.id);
                    return (128 + Signal::SIGKILL as i32, Some(Signal::SIGKILL as i32));
                }
            }
        }
    }

    /// Our stdin (or terminal) to the member's.
    fn pump_stdin(&self) {
        let input: Option<File> = match &self.tty {
            Some(t) => t.try_clone().ok().map(File::from),
            None => {
                // SAFETY: fd 0 is borrowed only for the duration of the dup.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
                fd.try_clone_to_owned().ok().map(File::from)
            }
        };
        if let Some(mut input) = input {
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !self.send(Frame::Data {
                            id: self.id,
                            stream: Stream::Stdin,
                            data: buf[..n].to_vec(),
                        }) {
                            return;
                        }
                    }
                }
            }
        }
        self.send(Frame::Data {
            id: self.id,
            stream: Stream::Stdin,
            data: Vec::new(),
        });
    }

    fn accept(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let r = Arc::clone(&self);
            thread::spawn(move || r.forward(conn));
        }
    }

    /// Forwards one client's request to the sandbox's supervisor as a
    /// request about this member, then splices the two connections (an
    /// `exec` carries frames both ways).
    fn forward(&self, client: UnixStream) {
        let Some(req) = control::read_request(&client) else {
            return;
        };
        let wrapped = Request::Member {
            container: self.launch.id.clone(),
            request: Box::new(req),
        };
        let sandbox = control::socket_path(&self.launch.sandbox_dir);
        let upstream = UnixStream::connect(&sandbox).and_then(|mut s| {
            let mut line = serde_json::to_vec(&wrapped).map_err(std::io::Error::other)?;
            line.push(b'\n');
            s.write_all(&line)?;
            Ok(s)
        });
        let upstream = match upstream {
            Ok(s) => s,
            Err(e) => {
                let msg = format!(
                    "the pod's VM supervisor is not reachable at {}: {e}",
                    sandbox.display()
                );
                let _ = control::write_reply(&client, &control::Reply::error(msg));
                return;
            }
        };
        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
            return;
        };
        let down = thread::spawn(move || copy_until_eof(u2, c2));
        copy_until_eof(client, upstream);
        let _ = down.join();
    }
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing.
fn copy_until_eof(mut from: UnixStream, mut to: UnixStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}
