//! Terminals: a pty opened inside the container, its master sent to the
//! engine over `--console-socket` (SCM_RIGHTS), its slave made the process's
//! controlling terminal and stdio.

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

mod ioctl {
    nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, nix::pty::Winsize);
}
use ioctl::set_winsize;

/// Opens a new pty in the current mount namespace (the container's devpts)
/// and returns (master, slave, slave path).
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd, String)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // SAFETY: into_raw_fd hands over ownership of the master's descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    Ok((master, slave, name))
}

/// A step of a container process's terminal that failed, named by the
/// field or option it serves.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Opening the pty.
    #[error("process.terminal: open pty: {0}")]
    Open(#[source] io::Error),
    /// Setting its size.
    #[error("process.consoleSize: {0}")]
    Size(#[source] io::Error),
    /// Handing the master to the engine.
    #[error("--console-socket: send pty: {0}")]
    Send(#[source] io::Error),
    /// Making the slave the controlling terminal and stdio.
    #[error("process.terminal: {0}")]
    Controlling(#[source] io::Error),
}

/// Opens a pty for a process with `process.terminal`, sizes it from
/// `process.consoleSize`, and sends its master over the console socket.
/// Returns the slave and its path; the caller makes it the controlling
/// terminal.
pub fn setup_console(
    console: BorrowedFd<'_>,
    size: Option<&oci_spec::runtime::Box>,
) -> Result<(OwnedFd, String), ConsoleError> {
    let (master, slave, name) = open_pty().map_err(ConsoleError::Open)?;
    if let Some(size) = size {
        resize(slave.as_fd(), size.height() as u16, size.width() as u16)
            .map_err(ConsoleError::Size)?;
    }
    send_fd(console, &name, master.as_fd()).map_err(ConsoleError::Send)?;
    Ok((slave, name))
}

/// Sets the window size of a terminal.
pub fn resize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which is valid.
    unsafe { set_winsize(fd.as_raw_fd(), &ws) }?;
    Ok(())
}

/// Sends `fd` over the unix socket `sock`, with `name` as the payload, the
/// way runc hands a pty master to its caller.
pub fn send_fd(sock: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Makes `slave` the controlling terminal of a new session and the stdio
/// of the current process.
pub fn make_controlling(slave: &OwnedFd) -> io::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument; the descriptor is valid.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    for target in 0..3 {
        dup2(slave.as_raw_fd(), target)?;
    }
    Ok(())
}

fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on descriptors we own; the target is replaced atomically.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`] on `sock`.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no descriptor received",
    ))
}

/// Copies the window size of `from` (our terminal) to `to` (the pty master).
pub fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into the valid pointer.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    resize(to, ws.ws_row, ws.ws_col)
}
