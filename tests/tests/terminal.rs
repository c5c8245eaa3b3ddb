//! Terminals: `create --console-socket` sends the pty master over
//! SCM_RIGHTS; the workload's stdio is the pty slave; `exec --tty
//! --console-socket` does the same for an exec'd process.

use std::io::Write;
use std::os::fd::AsRawFd;

use serde_json::json;
use vessel_tests::harness::{ok, Ctr};
use vessel_tests::require_root;

mod support;

use support::{read_until, Console};

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
