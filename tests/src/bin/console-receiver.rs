//! console-receiver: the other end of `--console-socket`, for the nested
//! harness's terminal scenario (its outer VM has busybox, which has no
//! script(1), and no python).
//!
//!   console-receiver SOCKET ROWS COLS INPUT [SECONDS]
//!
//! Listens on SOCKET, receives one pty master, sets its window size to
//! ROWS x COLS and creates SOCKET.ready; once the first output arrives it
//! writes INPUT and a newline. Everything read from the master goes to
//! stdout (CR LF as LF) until the other side closes it or SECONDS (default
//! 300) pass. Exits 0 once it got a master and its peer closed it, 1 on a
//! timeout, 2 on an error.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

const USAGE: &str = "usage: console-receiver SOCKET ROWS COLS INPUT [SECONDS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("console-receiver: {e}");
            ExitCode::from(2)
        }
    }
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not a number"))
}

/// Receives the pty master sent over `listener`'s first connection.
fn recv_master(listener: &UnixListener) -> Result<File, String> {
    let (stream, _) = listener
        .accept()
        .map_err(|e| format!("accepting on the console socket: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the pty master: {e}"))?;
    let cmsgs = msg
        .cmsgs()
        .map_err(|e| format!("reading the control message: {e}"))?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave us this descriptor; we own it now.
                return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Err("the console socket's message carried no descriptor".into())
}

fn run(args: &[String]) -> Result<bool, String> {
    let socket = &args[0];
    let rows: u16 = number(&args[1], "ROWS")?;
    let cols: u16 = number(&args[2], "COLS")?;
    let input = format!("{}\n", args[3]);
    let seconds: u64 = match args.get(4) {
        Some(s) => number(s, "SECONDS")?,
        None => 300,
    };
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| format!("binding {socket}: {e}"))?;
    let mut master = recv_master(&listener)?;
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a pointer valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(format!("TIOCSWINSZ: {}", std::io::Error::last_os_error()));
    }
    File::create(format!("{socket}.ready")).map_err(|e| format!("{socket}.ready: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut sent = false;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        match master.read(&mut buf) {
            // EIO: every descriptor of the pty's other side is closed.
            Ok(0) | Err(_) => return Ok(true),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).replace("\r\n", "\n");
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                if !sent {
                    sent = true;
                    master
                        .write_all(input.as_bytes())
                        .map_err(|e| format!("writing to the pty: {e}"))?;
                }
            }
        }
    }
    eprintln!("console-receiver: no end of output within {seconds}s");
    Ok(false)
}
