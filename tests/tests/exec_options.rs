//! `vessel exec` as runc's: `--env` replaces the spec's value of a key,
//! `--cgroup` runs the process in a sub-cgroup, `--ignore-paused` execs
//! into a paused container, and only stdio and `--preserve-fds` reach a
//! container process (init or exec'd, with or without a terminal).

mod support;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::{read_until, Console};
use vessel_tests::harness::{fails, ok, stderr, Ctr};
use vessel_tests::require_root;

fn sleeper(tag: &str) -> Ctr {
    let c = Ctr::new(tag, &["sleep", "1000"]);
    c.create();
    c.start();
    c
}

#[test]
fn exec_env_replaces_the_spec_value() {
    require_root!();
    let mut c = Ctr::new("xenv", &["sleep", "1000"]);
    c.config()["process"]["env"] = json!(["PATH=/bin", "FOO=spec", "BAR=keep"]);
    c.write();
    c.create();
    c.start();
    let out = ok(&c.exec_opts(&["--env", "FOO=cli", "--env", "NEW=1"], &["env"]));
    let lines: Vec<&str> = out.lines().collect();
    let foo: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FOO=")).collect();
    assert_eq!(foo, [&"FOO=cli"], "{out}");
    assert!(lines.contains(&"BAR=keep"), "{out}");
    assert!(lines.contains(&"NEW=1"), "{out}");
    assert!(lines.contains(&"PATH=/bin"), "{out}");
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused() {
    require_root!();
    let c = sleeper("xpause");
    ok(&c.v(&["pause", &c.id]));
    assert_eq!(c.status(), "paused");
    let e = fails(&c.exec(&["true"]));
    assert!(e.contains("--ignore-paused"), "{e}");

    // With the flag the process is created and stays frozen until resume.
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let mut cmd = c.cmd();
    cmd.args(["exec", "--ignore-paused", &c.id, "echo", "resumed-ok"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let early = child.try_wait().unwrap();
    ok(&c.v(&["resume", &c.id]));
    let st = child.wait().unwrap();
    assert!(early.is_none(), "exec finished in a paused container");
    assert!(st.success(), "{st:?}");
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(out, "resumed-ok\n");
}

/// The container's cgroup path (relative to each hierarchy) from its init's
/// memory (v1) or unified (v2) line of /proc/<pid>/cgroup.
fn container_cgroup(pid: i32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls, path))
        })
        .collect();
    lines
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "memory"))
        .or_else(|| lines.iter().find(|(c, _)| c.is_empty()))
        .map(|(_, p)| p.to_string())
        .expect("no memory or unified cgroup line")
}

/// `(controllers, path)` of each line of a /proc/<pid>/cgroup file.
fn cgroup_lines(pid: i32) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            Some((c.to_string(), p.to_string()))
        })
        .collect()
}

/// Execs `sleep` detached with `opts` and returns its host pid.
fn exec_sleeper(c: &Ctr, opts: &[&str]) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let pf = pid_file.to_str().unwrap();
    let mut args = vec!["--detach", "--pid-file", pf];
    args.extend_from_slice(opts);
    ok(&c.exec_opts(&args, &["sleep", "1000"]));
    std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Removes the sub-cgroups made by a test, whatever its outcome.
struct SubCgroups(Vec<String>);

impl Drop for SubCgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn exec_cgroup_runs_in_a_sub_cgroup() {
    require_root!();
    let c = sleeper("xcg");
    let init = cgroup_lines(c.pid());
    let base = container_cgroup(c.pid());
    // The container's directory in each hierarchy, from init's own lines:
    // the path may differ between hierarchies (nested under the caller's).
    let mut dirs: Vec<String> = Vec::new();
    for (ctrls, path) in &init {
        let mount = match ctrls.split(',').next().unwrap_or("") {
            "" if std::path::Path::new("/sys/fs/cgroup/unified").is_dir() => "unified".to_string(),
            "" => String::new(),
            c => c.trim_start_matches("name=").to_string(),
        };
        let d = format!("/sys/fs/cgroup/{mount}{path}").replace("//", "/");
        if std::path::Path::new(&d).is_dir() && path != "/" && !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    assert!(!dirs.is_empty(), "no cgroup directories for {base}");
    let mut made = SubCgroups(Vec::new());
    for d in &dirs {
        for sub in ["sub", "all"] {
            let p = format!("{d}/{sub}");
            std::fs::create_dir(&p).unwrap();
            // A new v1 cpuset takes no task before it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(format!("{d}/{f}")) {
                    std::fs::write(format!("{p}/{f}"), v.trim()).unwrap();
                }
            }
            made.0.push(p);
        }
    }
    // Each line of the process's cgroup file against init's: in the
    // container's cgroup and moved (<its path>/sub), or as init's.
    let check = |pid: i32, sub: &str, moved: &dyn Fn(&str) -> bool| {
        let lines = cgroup_lines(pid);
        assert_eq!(lines.len(), init.len(), "{lines:?}");
        for ((ctrls, path), (_, init_path)) in lines.iter().zip(&init) {
            let in_container = init_path.rsplit('/').next() == Some(c.id.as_str());
            if in_container && moved(ctrls) {
                assert_eq!(path, &format!("{init_path}/{sub}"), "{ctrls}: {lines:?}");
            } else {
                assert_eq!(path, init_path, "{ctrls}: {lines:?}");
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    if v1 {
        // Per controller (cgroup v1): only memory and pids move.
        let pid = exec_sleeper(&c, &["--cgroup", "memory,pids:sub"]);
        check(pid, "sub", &|ctrls| {
            ctrls.split(',').any(|c| c == "memory" || c == "pids")
        });
        let e = fails(&c.exec_opts(&["--cgroup", "nosuchctl:sub"], &["true"]));
        assert!(e.contains("nosuchctl"), "{e}");
    } else {
        eprintln!("cgroup v2 host: per-controller --cgroup is refused there");
        let e = fails(&c.exec_opts(&["--cgroup", "memory:sub"], &["true"]));
        assert!(e.contains("cgroup v1"), "{e}");
    }
    // One path for every hierarchy the container is in.
    let pid = exec_sleeper(&c, &["--cgroup", "all"]);
    check(pid, "all", &|_| true);
    // Bad arguments and a sub-cgroup that does not exist.
    for (args, word) in [
        (vec!["--cgroup", "../escape"], "relative"),
        (vec!["--cgroup", "a", "--cgroup", "b"], "prefix"),
        (vec!["--cgroup", "missing"], "missing"),
    ] {
        let e = fails(&c.exec_opts(&args, &["true"]));
        assert!(e.contains(word) && e.contains("--cgroup"), "{args:?}: {e}");
    }
    ok(&c.v(&["kill", &c.id, "KILL"]));
    assert!(c.wait_status("stopped"));
    // The sub-cgroups empty out once every process is gone.
    assert!(vessel_tests::harness::wait_for(10, || {
        made.0.iter().all(|d| {
            std::fs::read_to_string(format!("{d}/cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
        })
    }));
    drop(made);
    ok(&c.v(&["delete", &c.id]));
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}

/// Lists the descriptors `ls` inherited from the shell vessel started: ls's
/// own directory descriptor shows without a target (its link is gone when
/// printed), every inherited one as `N -> target`.
const LIST_FDS: &str = "ls -l /proc/self/fd; echo end-of-list";

/// The descriptors with a target in `ls -l /proc/self/fd` output.
fn fds_of(out: &str) -> BTreeSet<u32> {
    out.lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(head, _)| head.split_whitespace().last()?.parse().ok())
        .collect()
}

fn set(v: &[u32]) -> BTreeSet<u32> {
    v.iter().copied().collect()
}

/// A vessel command with `n` extra descriptors (3, 4, ...) open on a file.
fn with_extra_fds(cmd: &mut std::process::Command, n: i32) -> std::fs::File {
    let f = tempfile::tempfile().unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls fcntl and dup2, which are async-signal-safe. The file is first
    // copied above the targets: dup2 onto itself would keep close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            let src = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
            if src < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for i in 0..n {
                if libc::dup2(src, 3 + i) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    f
}

#[test]
fn only_stdio_and_preserved_fds_reach_the_process() {
    require_root!();
    // The container's init, through `run`.
    for (preserve, want) in [(0, set(&[0, 1, 2])), (2, set(&[0, 1, 2, 3, 4]))] {
        let c = Ctr::new("xfd", &["sh", "-c", LIST_FDS]);
        let b = c.bundle.path().to_str().unwrap().to_string();
        let mut cmd = c.cmd();
        let p = preserve.to_string();
        cmd.args(["run", "--preserve-fds", &p, "--bundle", &b, &c.id]);
        let _f = with_extra_fds(&mut cmd, preserve + 2);
        let o = vessel_tests::harness::output_via_files(&mut cmd);
        let out = ok(&o);
        assert_eq!(fds_of(&out), want, "run --preserve-fds {preserve}: {out}");
    }
    // The init through `create` + `start`, and through `run --detach`:
    // each writes to a file the test reads once the container stopped.
    for (how, preserve, want) in [
        ("create", 0, set(&[0, 1, 2])),
        ("create", 1, set(&[0, 1, 2, 3])),
        ("run-detach", 0, set(&[0, 1, 2])),
        ("run-detach", 2, set(&[0, 1, 2, 3, 4])),
    ] {
        let c = Ctr::new("xfdbg", &["sh", "-c", LIST_FDS]);
        let b = c.bundle.path().to_str().unwrap().to_string();
        let out_file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = c.cmd();
        let p = preserve.to_string();
        match how {
            "create" => cmd.args(["create", "--preserve-fds", &p, "--bundle", &b, &c.id]),
            _ => cmd.args([
                "run",
                "--detach",
                "--preserve-fds",
                &p,
                "--bundle",
                &b,
                &c.id,
            ]),
        };
        let _f = with_extra_fds(&mut cmd, preserve + 2);
        let st = cmd
            .stdout(out_file.reopen().unwrap())
            .stderr(out_file.reopen().unwrap())
            .status()
            .unwrap();
        assert!(st.success(), "{how}: {st}");
        if how == "create" {
            c.start();
        }
        assert!(c.wait_status("stopped"), "{how}");
        let out = std::fs::read_to_string(out_file.path()).unwrap();
        assert!(out.contains("end-of-list"), "{how}: {out}");
        assert_eq!(fds_of(&out), want, "{how} --preserve-fds {preserve}: {out}");
    }
    // An exec'd process.
    let c = sleeper("xfdexec");
    for (preserve, want) in [(0, set(&[0, 1, 2])), (2, set(&[0, 1, 2, 3, 4]))] {
        let mut cmd = c.cmd();
        let p = preserve.to_string();
        cmd.args(["exec", "--preserve-fds", &p, &c.id, "sh", "-c", LIST_FDS]);
        let _f = with_extra_fds(&mut cmd, preserve + 2);
        let o = vessel_tests::harness::output_via_files(&mut cmd);
        let out = ok(&o);
        assert_eq!(fds_of(&out), want, "exec --preserve-fds {preserve}: {out}");
    }
    // An exec'd process with a terminal.
    let con = Console::new();
    ok(&c.exec_opts(
        &["--tty", "--detach", "--console-socket", con.path()],
        &["sh", "-c", LIST_FDS],
    ));
    let mut master = con.recv_master();
    let out = read_until(&mut master, "end-of-list");
    assert_eq!(fds_of(&out), set(&[0, 1, 2]), "exec --tty: {out}");
    // The container's init with a terminal.
    let mut t = Ctr::new("xfdtty", &["sh", "-c", LIST_FDS]);
    t.config()["process"]["terminal"] = json!(true);
    t.write();
    let con = Console::new();
    let o = t.create_with(&["--console-socket", con.path()]);
    ok(&o);
    let mut master = con.recv_master();
    t.start();
    let out = read_until(&mut master, "end-of-list");
    assert_eq!(
        fds_of(&out),
        set(&[0, 1, 2]),
        "init --tty: {out} {}",
        stderr(&o)
    );
    // `run --detach` with a terminal.
    let mut r = Ctr::new("xfdrtty", &["sh", "-c", LIST_FDS]);
    r.config()["process"]["terminal"] = json!(true);
    r.write();
    let con = Console::new();
    let b = r.bundle.path().to_str().unwrap().to_string();
    let o = r.v(&[
        "run",
        "--detach",
        "--console-socket",
        con.path(),
        "--bundle",
        &b,
        &r.id,
    ]);
    ok(&o);
    let mut master = con.recv_master();
    let out = read_until(&mut master, "end-of-list");
    assert_eq!(fds_of(&out), set(&[0, 1, 2]), "run --detach --tty: {out}");
}
