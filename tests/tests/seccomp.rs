//! The seccomp filter is the last thing vessel installs before `execve`:
//! under a default-deny profile that allows what a busybox workload needs
//! and nothing vessel itself used to call after the filter (close_range,
//! getcwd, openat2, statx, rt_sigprocmask), `run`, `create`+`start` and
//! `exec` (with and without a terminal) work, with noNewPrivileges true and
//! false; and a failure after the filter (execve) still reaches the caller.

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};
use support::{read_until, Console};
use vessel_tests::harness::{fails, ok, stdout, Ctr};
use vessel_tests::require_root;

/// What busybox `sh`, `echo`, `cat`, `sleep`, `tty`, `ls` and `id` call
/// (measured with strace on this busybox-static), with the usual variants.
const WORKLOAD: &[&str] = &[
    "arch_prctl",
    "brk",
    "clock_nanosleep",
    "clone",
    "clone3",
    "close",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "exit",
    "exit_group",
    "fcntl",
    "fstat",
    "futex",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "ioctl",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "openat",
    "pipe2",
    "poll",
    "prctl",
    "prlimit64",
    "read",
    "readlink",
    "readlinkat",
    "rseq",
    "rt_sigaction",
    "rt_sigreturn",
    "sendfile",
    "set_robust_list",
    "set_tid_address",
    "setpgid",
    "uname",
    "wait4",
    "write",
    "writev",
];

/// System calls the workload never makes and vessel used to make after the
/// filter: a call kills the process, so any use after the filter shows.
/// (getcwd is denied by the default action: busybox sh calls it at startup
/// without $PWD and goes on when it fails.)
const TRIPWIRES: &[&str] = &["close_range", "openat2", "statx", "rt_sigprocmask"];

/// A default-deny (EPERM) profile. Without noNewPrivileges the kernel needs
/// CAP_SYS_ADMIN to load the filter, which the container then drops with
/// capset: `extra` adds that.
fn profile(extra: &[&str]) -> Value {
    let mut allow: Vec<&str> = WORKLOAD.to_vec();
    allow.extend_from_slice(extra);
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": allow, "action": "SCMP_ACT_ALLOW"},
            {"names": TRIPWIRES, "action": "SCMP_ACT_KILL_PROCESS"}
        ]
    })
}

fn strict(c: &mut Ctr, nnp: bool) {
    std::fs::write(c.bundle.rootfs().join("etc/hostname"), "sccmp\n").unwrap();
    let cfg = c.config();
    cfg["hostname"] = json!("sccmp");
    cfg["process"]["noNewPrivileges"] = json!(nnp);
    cfg["linux"]["seccomp"] = profile(if nnp { &[] } else { &["capset"] });
    c.write();
}

const WORK: &[&str] = &["sh", "-c", "echo hi; cat /etc/hostname"];

#[test]
fn run_under_a_default_deny_profile() {
    require_root!();
    for nnp in [true, false] {
        let mut c = Ctr::new("scrun", WORK);
        strict(&mut c, nnp);
        let out = ok(&c.run());
        assert_eq!(out, "hi\nsccmp\n", "noNewPrivileges {nnp}");
        let left = c.leftovers();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn create_start_and_exec_under_a_default_deny_profile() {
    require_root!();
    for nnp in [true, false] {
        let mut c = Ctr::new("sccse", &["sh", "-c", "echo up > /tmp/up; sleep 1000"]);
        c.config()["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        strict(&mut c, nnp);
        c.create();
        c.start();
        assert_eq!(c.status(), "running", "noNewPrivileges {nnp}");
        let out = ok(&c.exec(&["sh", "-c", "cat /tmp/up; echo hi; cat /etc/hostname"]));
        assert_eq!(out, "up\nhi\nsccmp\n", "noNewPrivileges {nnp}");
        // The exec'd process runs under the filter too.
        let status = ok(&c.exec(&["cat", "/proc/self/status"]));
        let line = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap_or("");
        assert!(line("Seccomp:").ends_with('2'), "{status}");
        assert!(
            line("NoNewPrivs:").ends_with(if nnp { '1' } else { '0' }),
            "{status}"
        );
        // Without noNewPrivileges, CAP_SYS_ADMIN held for the filter is gone.
        let eff = line("CapEff:").split_whitespace().nth(1).unwrap_or("");
        let eff = u64::from_str_radix(eff, 16).unwrap();
        assert_eq!(eff & (1 << 21), 0, "CAP_SYS_ADMIN kept: {status}");

        // With a terminal.
        let con = Console::new();
        ok(&c.exec_opts(
            &["--tty", "--detach", "--console-socket", con.path()],
            &["sh", "-c", "echo tty-hi; cat /etc/hostname"],
        ));
        let mut master = con.recv_master();
        let out = read_until(&mut master, "sccmp");
        assert!(out.contains("tty-hi\nsccmp"), "{out:?}");
        ok(&c.v(&["kill", &c.id, "KILL"]));
        assert!(c.wait_status("stopped"));
        ok(&c.v(&["delete", &c.id]));
    }
}

#[test]
fn terminal_init_under_a_default_deny_profile() {
    require_root!();
    for nnp in [true, false] {
        let mut c = Ctr::new("sctty", WORK);
        c.config()["process"]["terminal"] = json!(true);
        strict(&mut c, nnp);
        let con = Console::new();
        ok(&c.create_with(&["--console-socket", con.path()]));
        let mut master = con.recv_master();
        c.start();
        let out = read_until(&mut master, "sccmp");
        assert!(out.contains("hi\nsccmp"), "noNewPrivileges {nnp}: {out:?}");
    }
}

/// A program that passes vessel's checks (a regular, executable file) but
/// that execve refuses: ENOEXEC comes after the filter.
fn unexecutable(c: &Ctr) {
    let p = c.bundle.rootfs().join("bin/notelf");
    std::fs::write(&p, b"\x7fELF garbage").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The error line names the program and execve's error.
fn reports_enoexec(stderr: &str) -> bool {
    stderr.contains("level=error")
        && stderr.contains("process.args[0]: exec:")
        && stderr.contains("/bin/notelf")
        && stderr.contains("exec format error")
}

#[test]
fn execve_failure_after_the_filter_is_reported() {
    require_root!();
    for nnp in [true, false] {
        let what = format!("noNewPrivileges {nnp}");
        let mut c = Ctr::new("scfail", &["/bin/notelf"]);
        unexecutable(&c);
        strict(&mut c, nnp);
        // run: through the sync channel.
        let e = fails(&c.run());
        assert!(reports_enoexec(&e), "{what}: {e}");
        // create + start: through the start-status fifo.
        let mut c = Ctr::new("scfail", &["sleep", "1000"]);
        unexecutable(&c);
        c.config()["process"]["args"] = json!(["/bin/notelf"]);
        strict(&mut c, nnp);
        c.create();
        let e = fails(&c.v(&["start", &c.id]));
        assert!(reports_enoexec(&e), "{what}: {e}");
        // exec.
        let mut c = Ctr::new("scfail", &["sleep", "1000"]);
        unexecutable(&c);
        strict(&mut c, nnp);
        c.create();
        c.start();
        let e = fails(&c.exec(&["/bin/notelf"]));
        assert!(reports_enoexec(&e), "{what}: {e}");
        ok(&c.v(&["kill", &c.id, "KILL"]));
    }
}

#[test]
fn without_no_new_privileges_a_profile_without_capset_is_named() {
    require_root!();
    let mut c = Ctr::new("sccap", WORK);
    strict(&mut c, false);
    c.config()["linux"]["seccomp"] = profile(&[]);
    c.write();
    let e = fails(&c.run());
    assert!(
        e.contains("must allow capset when noNewPrivileges is false"),
        "{e}"
    );
    // A spec that keeps CAP_SYS_ADMIN needs no capset after the filter.
    let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    for set in ["bounding", "effective", "permitted"] {
        c.config()["process"]["capabilities"][set] = caps.clone();
    }
    c.write();
    let o = c.run();
    assert_eq!(stdout(&o), "hi\nsccmp\n", "{o:?}");
}
