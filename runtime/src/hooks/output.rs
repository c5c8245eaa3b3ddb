//! The pipes of a running hook: the state written to its stdin, its stdout
//! and stderr read (their last few KiB kept), until it exits or its
//! deadline passes. One thread, poll(2): hooks also run inside the
//! container's init, which must stay single-threaded.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

/// How much of each stream is kept for the error message.
const KEEP: usize = 4096;

/// How often to look for the hook's exit without a pidfd (kernels < 5.3).
const NAP: Duration = Duration::from_millis(20);

/// The hook outlived its timeout.
#[derive(Debug)]
pub struct TimedOut;

/// A stream's last [`KEEP`] bytes.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
        if self.0.len() > KEEP {
            self.0.drain(..self.0.len() - KEEP);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim().to_string()
    }
}

/// The hook's side of the conversation.
pub struct Exchange<'a> {
    state: &'a [u8],
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    pidfd: Option<OwnedFd>,
    out: Tail,
    err: Tail,
}

fn nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: the kernel just returned this descriptor; we are its only owner.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl<'a> Exchange<'a> {
    /// Takes the pipes of `child` (spawned with all three piped).
    pub fn new(child: &mut Child, state: &'a [u8]) -> std::io::Result<Exchange<'a>> {
        let x = Exchange {
            state,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            pidfd: pidfd_open(child.id()),
            out: Tail::default(),
            err: Tail::default(),
        };
        if let Some(s) = &x.stdin {
            nonblocking(s.as_fd())?;
        }
        if let Some(s) = &x.stdout {
            nonblocking(s.as_fd())?;
        }
        if let Some(s) = &x.stderr {
            nonblocking(s.as_fd())?;
        }
        Ok(x)
    }

    /// Feeds and drains the hook until it exits; returns its status and
    /// what it printed (`; stderr: ...; stdout: ...`, empty when nothing).
    pub fn run(
        mut self,
        child: &mut Child,
        deadline: Option<Instant>,
    ) -> Result<(ExitStatus, String), TimedOut> {
        loop {
            if self.state.is_empty() {
                // All written: EOF for a hook that reads to the end.
                self.stdin = None;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Whatever is left in the pipes; a daemon the hook started
                // may hold them open, so no waiting for their end.
                self.drain();
                return Ok((status, self.printed()));
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if now >= d => return Err(TimedOut),
                Some(d) => Some(d - now),
                None => None,
            };
            let wait = match (&self.pidfd, left) {
                (Some(_), None) => None,
                (Some(_), Some(l)) => Some(l),
                (None, l) => Some(l.map_or(NAP, |l| l.min(NAP))),
            };
            self.poll(wait);
            self.drain();
        }
    }

    /// Blocks until a pipe is ready, the hook exits, or `wait` passes.
    fn poll(&self, wait: Option<Duration>) {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let mut fds = Vec::with_capacity(4);
        if let Some(p) = &self.pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        if let Some(s) = &self.stdin {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(s) = &self.stdout {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if let Some(s) = &self.stderr {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        let timeout = match wait {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d.as_millis().clamp(1, i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
        };
        let _ = nix::poll::poll(&mut fds, timeout);
    }

    /// Writes what the pipe takes and reads what is there, without blocking.
    fn drain(&mut self) {
        if let Some(s) = &mut self.stdin {
            match s.write(self.state) {
                Ok(n) => self.state = &self.state[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EPIPE: the hook does not read its stdin, which is its right.
                Err(_) => {
                    self.stdin = None;
                    self.state = &[];
                }
            }
        }
        read_into(&mut self.stdout, &mut self.out);
        read_into(&mut self.stderr, &mut self.err);
    }

    fn printed(&self) -> String {
        let mut s = String::new();
        for (name, t) in [("stderr", &self.err), ("stdout", &self.out)] {
            let text = t.text();
            if !text.is_empty() {
                s.push_str(&format!("; {name}: {text}"));
            }
        }
        s
    }
}

/// Reads `pipe` into `tail` until it would block; drops it at end of file.
fn read_into<R: Read>(pipe: &mut Option<R>, tail: &mut Tail) {
    let Some(p) = pipe else { return };
    let mut buf = [0u8; 4096];
    loop {
        match p.read(&mut buf) {
            Ok(0) => {
                *pipe = None;
                return;
            }
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                *pipe = None;
                return;
            }
        }
    }
}
