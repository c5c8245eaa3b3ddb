//! Helpers shared by test files: a console socket that receives a pty
//! master, and reading a pty until some text appears.

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A console socket in a temp dir.
pub struct Console {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Console {
    pub fn new() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        Console {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Accepts one connection and receives the pty master it sends.
    pub fn recv_master(&self) -> std::fs::File {
        self.listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("no connection on the console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the fd was just received and is owned by nobody else.
                return std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        panic!("no SCM_RIGHTS message on the console socket");
    }
}

/// Reads from a pty master until `want` appears, EOF/EIO, or 10 s pass.
pub fn read_until(master: &mut std::fs::File, want: &str) -> String {
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end
        && !String::from_utf8_lossy(&out)
            .replace("\r\n", "\n")
            .contains(want)
    {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(200u16)).unwrap() == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}
