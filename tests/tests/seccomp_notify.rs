//! `SCMP_ACT_NOTIFY` with `linux.seccomp.listenerPath`: the listener gets
//! the container process state and the notify fd, and its answer is what
//! the workload sees.

use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};
use vessel_tests::harness::{fails, ok, Ctr};
use vessel_tests::require_root;

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
/// The errno the listener answers with: one no mkdir would give by itself.
const ANSWER: i32 = libc::EBADFD;

/// What the listener saw: the message and the pids of the notifications.
struct Seen {
    message: Value,
    notified_pids: Vec<u32>,
    notified_nrs: Vec<i32>,
}

/// Accepts connections, each served by its own thread.
fn listen_all(l: UnixListener, tx: mpsc::Sender<Seen>) {
    while let Ok((conn, _)) = l.accept() {
        let tx = tx.clone();
        std::thread::spawn(move || serve(conn, tx));
    }
}

/// Takes the state and the fd, answers every notification with -ANSWER
/// until the filter has no more users.
fn serve(conn: std::os::unix::net::UnixStream, tx: mpsc::Sender<Seen>) {
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&conn),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        (msg.bytes, fd.expect("no fd in the message"))
    };
    // SAFETY: the fd was just received and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let message: Value = serde_json::from_slice(&buf[..n]).unwrap();
    let mut seen = Seen {
        message,
        notified_pids: Vec::new(),
        notified_nrs: Vec::new(),
    };
    loop {
        let mut req = Notif::default();
        // SAFETY: NOTIF_RECV fills a seccomp_notif of this layout.
        let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), NOTIF_RECV, &mut req) };
        if rc < 0 {
            break; // The workload exited: no more users of the filter.
        }
        seen.notified_pids.push(req.pid);
        seen.notified_nrs.push(req.data.nr);
        let resp = NotifResp {
            id: req.id,
            val: 0,
            error: -ANSWER,
            flags: 0,
        };
        // SAFETY: NOTIF_SEND reads a seccomp_notif_resp of this layout.
        unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), NOTIF_SEND, &resp) };
    }
    let _ = tx.send(seen);
}

#[test]
fn listener_gets_the_state_and_answers_the_workloads_mkdir() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("listener.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || listen_all(l, tx));

    // mkdir is the container's init itself, so the notification comes
    // from the pid the listener's message names.
    let mut c = Ctr::new("secnotify", &["mkdir", "/made"]);
    c.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "meta-data-1",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    c.write();
    let o = c.run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("File descriptor in bad state"), "{err}");
    assert!(!c.bundle.rootfs().join("made").exists());

    let seen = rx.recv_timeout(Duration::from_secs(10)).expect("listener");
    let m = &seen.message;
    assert_eq!(m["fds"], json!(["seccompFd"]), "{m}");
    assert_eq!(m["metadata"], "meta-data-1", "{m}");
    assert!(m["ociVersion"].is_string(), "{m}");
    assert_eq!(m["state"]["id"], c.id.as_str(), "{m}");
    assert_eq!(m["state"]["status"], "creating", "{m}");
    let pid = m["pid"].as_u64().expect("pid") as u32;
    assert_eq!(m["state"]["pid"].as_u64(), Some(u64::from(pid)), "{m}");
    // The notification came from the process the message named, as the
    // host sees it (the workload is the exec'd container init).
    assert!(!seen.notified_pids.is_empty());
    assert_eq!(seen.notified_pids[0], pid);
    assert!(seen
        .notified_nrs
        .iter()
        .all(|&nr| nr == libc::SYS_mkdir as i32 || nr == libc::SYS_mkdirat as i32));
}

#[test]
fn notify_refused_without_listener_on_sendmsg_or_as_default() {
    require_root!();
    for (tag, profile, needle) in [
        (
            "ntf-nolist",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
        (
            "ntf-send",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent.sock",
                   "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}),
            "sendmsg",
        ),
        (
            "ntf-default",
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/nonexistent.sock"}),
            "linux.seccomp.defaultAction",
        ),
        (
            "ntf-nosock",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent.sock",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "/nonexistent.sock",
        ),
    ] {
        let mut c = Ctr::new(tag, &["true"]);
        c.config()["linux"]["seccomp"] = profile;
        c.write();
        let err = fails(&c.create_with(&[]));
        assert!(err.contains(needle) && err.contains(&c.id), "{tag}: {err}");
        assert_eq!(c.leftovers(), Vec::<String>::new(), "{tag}");
    }
}

/// A process started by `vessel exec` gets its own filter and listener
/// message: its own pid, and the container's state (running).
#[test]
fn exec_process_sends_its_own_notify_fd() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("listener.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || listen_all(l, tx));
    let mut c = Ctr::new("secnotify-exec", &["sleep", "1000"]);
    c.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    c.write();
    c.create();
    c.start();
    let init = c.pid();
    let o = c.exec(&["mkdir", "/made"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("File descriptor in bad state"), "{err}");
    assert!(!c.bundle.rootfs().join("made").exists());
    ok(&c.v(&["delete", "--force", &c.id]));
    // Two messages: the init's (no notification) and the exec'd process's.
    let mut seen: Vec<Seen> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("listener"))
        .collect();
    seen.sort_by_key(|s| s.notified_pids.len());
    assert_eq!(seen[0].message["pid"], init, "{}", seen[0].message);
    let m = &seen[1].message;
    let pid = m["pid"].as_u64().unwrap() as u32;
    assert_ne!(pid as i32, init);
    assert_eq!(seen[1].notified_pids, vec![pid]);
    assert_eq!(m["state"]["pid"], init, "{m}");
    assert_eq!(m["state"]["status"], "running", "{m}");
}
