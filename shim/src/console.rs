//! Terminals: the console socket vessel sends a pty master to
//! (`--console-socket`), and window-size changes on that master.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::ShimError;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A listening unix socket for one `vessel create` or `vessel exec
/// --console-socket`; removed when dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens on a fresh path under the temporary directory (short:
    /// socket paths must stay under 108 bytes, bundles may be deep).
    pub fn new() -> Result<ConsoleSocket, ShimError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vessel-pty-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| ShimError::io(&path, e))?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts vessel's connection and receives the pty master it sends
    /// (`SCM_RIGHTS`), waiting at most `limit`.
    pub fn receive(&self, limit: Duration) -> Result<OwnedFd, ShimError> {
        let err = |m: String| ShimError::io(&self.path, std::io::Error::other(m));
        self.listener
            .set_nonblocking(true)
            .map_err(|e| ShimError::io(&self.path, e))?;
        let start = Instant::now();
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() > limit {
                        return Err(err(format!("no terminal received within {limit:?}")));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(ShimError::io(&self.path, e)),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| ShimError::io(&self.path, e))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| err(format!("receive the terminal: {e}")))?;
        for c in msg
            .cmsgs()
            .map_err(|e| err(format!("receive the terminal: {e}")))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for us alone; nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(err("vessel sent no terminal descriptor".into()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

nix::ioctl_write_ptr_bad!(
    /// `ioctl(fd, TIOCSWINSZ, &winsize)`.
    set_winsize,
    libc::TIOCSWINSZ,
    libc::winsize
);

/// Sets the window size of the terminal whose master is `master`.
pub fn resize(master: &OwnedFd, width: u32, height: u32) -> Result<(), ShimError> {
    let ws = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points
    // at a live local; the descriptor is open for the call's duration.
    unsafe { set_winsize(master.as_raw_fd(), &ws) }.map_err(|e| {
        ShimError::io(
            Path::new("pty master"),
            std::io::Error::from_raw_os_error(e as i32),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::{IoSlice, Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_a_descriptor_and_cleans_up() {
        let sock = ConsoleSocket::new().unwrap();
        let path = sock.path().to_path_buf();
        let (r, w) = nix::unistd::pipe().unwrap();
        let s = UnixStream::connect(&path).unwrap();
        let fds = [w.as_raw_fd()];
        sendmsg::<()>(
            s.as_raw_fd(),
            &[IoSlice::new(b"pty")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(w);
        let got = sock.receive(Duration::from_secs(5)).unwrap();
        std::fs::File::from(got).write_all(b"through").unwrap();
        let mut buf = String::new();
        std::fs::File::from(r).read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "through");
        drop(sock);
        assert!(!path.exists(), "{} left", path.display());
    }

    #[test]
    fn gives_up_without_a_sender() {
        let sock = ConsoleSocket::new().unwrap();
        let e = sock.receive(Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("no terminal received"), "{e}");
    }
}
