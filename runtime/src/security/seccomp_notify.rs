//! Seccomp user notification (`SCMP_ACT_NOTIFY`, `linux.seccomp.listenerPath`).
//!
//! The filter holding the NOTIFY rules is installed with
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER`, which returns the notify fd. As the
//! runtime spec describes, that fd goes to the unix socket at
//! `listenerPath` in one message: the "container process state" JSON
//! (`ociVersion`, `fds: ["seccompFd"]`, `pid`, `metadata`, `state`) with
//! the fd in SCM_RIGHTS.
//!
//! The filter is loaded by the container process itself, right before
//! execve, after it pivoted into the rootfs (where `listenerPath`, a host
//! path, is gone) and without knowing its own pid on the host. So:
//! * `create` connects to the listener before forking the container
//!   ([`Listener::connect`]); the connected socket is inherited;
//! * once the pid is known, `create` writes the whole message body into a
//!   pipe the container process inherited too ([`Listener::send_state`]);
//! * the container process reads it before loading the filters, and after
//!   loading only calls sendmsg(2) ([`Listener::send_fd`]), with no
//!   allocation. The profile must therefore allow `sendmsg` (vessel
//!   refuses NOTIFY on it, which would deadlock).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::seccomp::SeccompError;

/// Largest message body (the pipe holds at least 64 KiB).
const MAX_BODY: usize = 60 * 1024;
/// How long a process waits for its message body.
const BODY_WAIT_MS: u64 = 10_000;

/// SECCOMP_FILTER_FLAG_NEW_LISTENER.
pub(crate) const FLAG_NEW_LISTENER: u64 = 1 << 3;
/// SECCOMP_FILTER_FLAG_TSYNC_ESRCH: TSYNC together with NEW_LISTENER.
pub(crate) const FLAG_TSYNC_ESRCH: u64 = 1 << 4;

/// The listener of one container process: connected, and the pipe through
/// which `create` hands over the message.
#[derive(Debug)]
pub struct Listener {
    path: PathBuf,
    metadata: String,
    sock: UnixStream,
    /// Non-blocking read end, read by the container process.
    body_rx: std::fs::File,
    /// Write end, used by `create`.
    body_tx: std::fs::File,
}

fn field_err(what: &str, e: impl std::fmt::Display) -> SeccompError {
    SeccompError::Invalid {
        field: "linux.seccomp.listenerPath".into(),
        reason: format!("{what}: {e}"),
    }
}

impl Listener {
    /// Connects to the socket at `path`, before the container process is
    /// forked (it inherits the connection, close-on-exec).
    pub(crate) fn connect(path: &Path, metadata: String) -> Result<Self, SeccompError> {
        let sock = UnixStream::connect(path)
            .map_err(|e| field_err(&format!("connect to {}", path.display()), e))?;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(field_err("pipe", io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Listener {
            path: path.to_path_buf(),
            metadata,
            sock,
            body_rx: rx.into(),
            body_tx: tx.into(),
        })
    }

    /// The message body for process `pid` (host pid) of the container
    /// whose OCI state is `state`, written (length first) for the process
    /// to pick up.
    pub(crate) fn send_state(
        &self,
        pid: i32,
        state: &serde_json::Value,
    ) -> Result<(), SeccompError> {
        let body = serde_json::json!({
            "ociVersion": state.get("ociVersion").cloned().unwrap_or_else(|| "1.0.2".into()),
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": self.metadata,
            "state": state,
        });
        let bytes = serde_json::to_vec(&body).map_err(|e| field_err("state", e))?;
        if bytes.len() > MAX_BODY {
            return Err(field_err(
                "state",
                format!("{} bytes, more than {MAX_BODY}", bytes.len()),
            ));
        }
        let mut msg = (bytes.len() as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&bytes);
        (&self.body_tx)
            .write_all(&msg)
            .map_err(|e| field_err("hand the state to the container process", e))
    }

    /// Reads the body the parent wrote (before the filters are loaded),
    /// waiting up to [`BODY_WAIT_MS`] for it: an exec'd process may get
    /// here before its parent learnt its pid.
    pub(crate) fn take_body(&self) -> Result<Vec<u8>, SeccompError> {
        let mut got = Vec::with_capacity(4096);
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(BODY_WAIT_MS);
        loop {
            if got.len() >= 4 {
                let len = u32::from_ne_bytes([got[0], got[1], got[2], got[3]]) as usize;
                if got.len() >= 4 + len {
                    got.drain(..4);
                    got.truncate(len);
                    return Ok(got);
                }
            }
            match (&self.body_rx).read(&mut buf) {
                Ok(0) => return Err(field_err("read the state", "end of file")),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err(field_err("read the state", "none arrived in time"));
                    }
                    let mut pfd = libc::pollfd {
                        fd: self.body_rx.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut pfd, 1, 100) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(field_err("read the state", e)),
            }
        }
    }

    /// Sends `body` and the notify fd in one sendmsg(2): the only system
    /// call after the filters are loaded (no allocation either).
    pub(crate) fn send_fd(&self, body: &[u8], notify_fd: RawFd) -> Result<(), i32> {
        const SPACE: usize = 64;
        #[repr(C, align(8))]
        struct Cmsg([u8; SPACE]);
        let mut cbuf = Cmsg([0; SPACE]);
        let mut iov = libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        };
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
        // SAFETY: the control buffer is aligned, zeroed and large enough for
        // one cmsghdr carrying one fd (CMSG_SPACE(4) <= 64); the macros
        // only compute addresses inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), notify_fd);
        }
        loop {
            // SAFETY: `msg` points at `iov` (into `body`) and `cbuf`, all
            // alive for the call.
            let rc = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if rc >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.raw_os_error().unwrap_or(libc::EIO));
            }
        }
    }

    /// The socket path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
