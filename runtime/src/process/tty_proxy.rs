//! `vessel run` with `process.terminal` and no `--console-socket`: vessel
//! itself holds the pty master and relays between it and its own stdio (raw
//! mode when stdin is a terminal, window size kept in sync), as `runc run`
//! does for an interactive shell.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::wait::exit_code;
use crate::terminal;

/// Restores the terminal mode on drop.
struct RawMode {
    saved: Option<termios::Termios>,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> RawMode {
        let saved = termios::tcgetattr(fd).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<usize> {
    let mut buf = [0u8; 8192];
    let n = match nix::unistd::read(from.as_raw_fd(), &mut buf) {
        Ok(n) => n,
        // EIO on the master: the slave side is closed (the workload is gone).
        Err(nix::errno::Errno::EIO) => 0,
        Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => return Ok(1),
        Err(e) => return Err(e.into()),
    };
    let mut off = 0;
    while off < n {
        off += nix::unistd::write(to, &buf[off..n])?;
    }
    Ok(n)
}

/// Relays between stdio and `master` until `pid` exits; returns its exit
/// code. Signals other than SIGWINCH and SIGCHLD are forwarded to `pid`.
pub fn relay_and_wait(pid: i32, master: OwnedFd) -> io::Result<i32> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let tty_in = nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false);
    let _raw = tty_in.then(|| RawMode::enter(stdin.as_fd()));
    if tty_in {
        let _ = terminal::copy_winsize(stdin.as_fd(), master.as_fd());
    }
    let mask = super::wait::forwarded_mask();
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let target = Pid::from_raw(pid);
    let mut stdin_open = true;
    let mut code = None;
    loop {
        if code.is_none() {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) if st.pid() == Some(target) => code = exit_code(st),
                    Ok(_) => {}
                }
            }
        }
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the workload is gone, drain what is left and stop.
        let timeout = if code.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (m, s, i) = (ready(0), ready(1), ready(2));
        if m && copy(master.as_fd(), stdout.as_fd())? == 0 && code.is_some() {
            break;
        }
        if s {
            while let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH if tty_in => {
                        let _ = terminal::copy_winsize(stdin.as_fd(), master.as_fd());
                    }
                    sig => {
                        if let Ok(s) = Signal::try_from(sig) {
                            let _ = kill(target, s);
                        }
                    }
                }
            }
        }
        if i && copy(stdin.as_fd(), master.as_fd())? == 0 {
            stdin_open = false;
        }
    }
    let _ = mask.thread_unblock();
    Ok(code.unwrap_or(0))
}
