//! Terminals: `create --console-socket` sends the pty master over
//! SCM_RIGHTS; the workload's stdio is the pty slave; `exec --tty
//! --console-socket` does the same for an exec'd process.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;
use vessel_tests::harness::{ok, Ctr};
use vessel_tests::require_root;

/// A console socket in a temp dir.
struct Console {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Console {
    fn new() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        Console {
            _dir: dir,
            path,
            listener,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Accepts one connection and receives the pty master it sends.
    fn recv_master(&self) -> std::fs::File {
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
                assert_eq!(fds.len(), 1, "one fd expected");
                // SAFETY: the fd was just received and is owned by nobody else.
                return std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        panic!("no SCM_RIGHTS message on the console socket");
    }
}

/// Reads from a pty master until `want` appears, EOF/EIO, or 10 s pass.
fn read_until(master: &mut std::fs::File, want: &str) -> String {
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end
        && !String::from_utf8_lossy(&out)
            .replace("\r\n", "\n")
            .contains(want)
    {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(200u16)).unwrap();
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the slave side is closed
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

fn is_tty_master(f: &std::fs::File) -> bool {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    link.to_string_lossy().contains("ptmx")
}

#[test]
fn create_console_socket_gives_a_pty() {
    require_root!();
    let con = Console::new();
    let mut c = Ctr::new(
        "tty",
        &[
            "sh",
            "-c",
            "tty; for f in 0 1 2; do readlink /proc/self/fd/$f; done; \
             [ -t 0 ] && echo stdin-is-tty; read line; echo \"got:$line\"; exit 5",
        ],
    );
    c.config()["process"]["terminal"] = json!(true);
    c.write();
    let sock = con.path().to_string();
    ok(&c.create_with(&["--console-socket", &sock]));
    let mut master = con.recv_master();
    assert!(is_tty_master(&master), "received fd is not a pty master");
    assert_eq!(c.status(), "created");
    c.start();
    let out = read_until(&mut master, "stdin-is-tty\n");
    assert!(out.contains("/dev/pts/0\n"), "{out:?}");
    assert_eq!(
        out.matches("/dev/pts/0").count(),
        4,
        "tty + three fds: {out:?}"
    );
    assert!(out.contains("stdin-is-tty"), "{out:?}");
    master.write_all(b"hello pty\n").unwrap();
    let out = read_until(&mut master, "got:hello pty");
    assert!(
        out.contains("got:hello pty"),
        "input through the master: {out:?}"
    );
    assert!(c.wait_status("stopped"));
}

#[test]
fn run_with_console_socket() {
    require_root!();
    let con = Console::new();
    let mut c = Ctr::new("ttyrun", &["sh", "-c", "stty size; echo bye"]);
    c.config()["process"]["terminal"] = json!(true);
    c.config()["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    c.write();
    let b = c.bundle.path().to_str().unwrap().to_string();
    let sock = con.path().to_string();
    let mut child = c
        .cmd()
        .args([
            "run",
            "--detach",
            "--bundle",
            &b,
            "--console-socket",
            &sock,
            &c.id,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut master = con.recv_master();
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    let out = read_until(&mut master, "bye");
    assert!(out.contains("33 101"), "consoleSize not applied: {out:?}");
    assert!(out.contains("bye"), "{out:?}");
}

#[test]
fn exec_tty_console_socket() {
    require_root!();
    let c = Ctr::new("ttyexec", &["sleep", "1000"]);
    c.create();
    c.start();
    // Detached.
    let con = Console::new();
    ok(&c.exec_opts(
        &["--tty", "--detach", "--console-socket", con.path()],
        &["sh", "-c", "tty; echo exec-done"],
    ));
    let mut master = con.recv_master();
    let out = read_until(&mut master, "exec-done");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("exec-done"), "{out:?}");

    // Foreground: exec waits and returns the exit code.
    let con = Console::new();
    let sock = con.path().to_string();
    let mut cmd = c.cmd();
    cmd.args([
        "exec",
        "--tty",
        "--console-socket",
        &sock,
        &c.id,
        "sh",
        "-c",
        "tty; exit 4",
    ])
    .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut master = con.recv_master();
    let out = read_until(&mut master, "\n");
    let st = child.wait().unwrap();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(st.code(), Some(4));
}
