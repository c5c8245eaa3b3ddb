//! The container lifecycle through the runc-compatible CLI: create, start,
//! state, ps, exec, pause/resume, kill, events, update, delete, run, list.

use std::fs;
use std::time::Duration;

use serde_json::{json, Value};
use vessel_tests::harness::{cgroup_value, fails, ok, stderr, stdout, wait_for, Ctr};
use vessel_tests::require_root;

const SLEEPER: &[&str] = &["sleep", "1000"];

/// A running `sleep 1000` container.
fn running(tag: &str) -> Ctr {
    let c = Ctr::new(tag, SLEEPER);
    c.create();
    c.start();
    c
}

#[test]
fn create_start_state_ps_list_kill_delete() {
    require_root!();
    let c = Ctr::new("life", SLEEPER);
    let pidfile = c.bundle.path().join("init.pid");
    ok(&c.create_with(&["--pid-file", pidfile.to_str().unwrap()]));
    let st = c.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(
        st["ociVersion"].as_str().map(|s| s.starts_with("1.")),
        Some(true)
    );
    assert_eq!(
        fs::canonicalize(st["bundle"].as_str().unwrap()).unwrap(),
        fs::canonicalize(c.bundle.path()).unwrap()
    );
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 1, "{st}");
    let from_file = fs::read_to_string(&pidfile).unwrap();
    assert_eq!(from_file.trim(), pid.to_string(), "--pid-file content");
    assert!(
        fs::metadata(format!("/proc/{pid}")).is_ok(),
        "init alive while created"
    );

    // The created container's process has not run the workload yet.
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmd).starts_with("sleep"),
        "workload ran before start"
    );

    c.start();
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid() as i64, pid, "pid stable across start");
    assert!(wait_for(5, || fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| b.starts_with(b"sleep\0"))
        .unwrap_or(false)));
    // Starting twice is refused.
    fails(&c.v(&["start", &c.id]));

    // ps: table and JSON.
    let table = ok(&c.v(&["ps", &c.id]));
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(table.contains(&pid.to_string()), "{table}");
    let js: Value = serde_json::from_str(&ok(&c.v(&["ps", "--format", "json", &c.id]))).unwrap();
    assert_eq!(js, json!([pid]), "ps --format json");

    // list: table and JSON.
    let table = ok(&c.v(&["list"]));
    assert!(table.lines().next().unwrap().contains("ID"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&c.id))
        .expect("list row");
    assert!(
        row.contains("running") && row.contains(&pid.to_string()),
        "{row}"
    );
    let js: Value = serde_json::from_str(&ok(&c.v(&["list", "--format", "json"]))).unwrap();
    let arr = js.as_array().unwrap();
    assert_eq!(arr.len(), 1, "{js}");
    assert_eq!(arr[0]["id"], c.id.as_str());
    assert_eq!(arr[0]["status"], "running");
    assert_eq!(arr[0]["pid"], pid);

    // A running container is not deleted without --force (runc's wording).
    let err = fails(&c.v(&["delete", &c.id]));
    assert!(err.contains(&c.id) && err.contains("running"), "{err}");
    assert_eq!(c.status(), "running");

    ok(&c.v(&["kill", &c.id, "KILL"]));
    assert!(c.wait_status("stopped"), "not stopped after SIGKILL");
    ok(&c.v(&["delete", &c.id]));
    let err = fails(&c.v(&["state", &c.id]));
    assert!(err.contains(&c.id), "state of a deleted id names it: {err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn state_unknown_and_create_existing() {
    require_root!();
    let c = Ctr::new("dup", SLEEPER);
    let err = fails(&c.v(&["state", "no-such-container-xyz"]));
    assert!(err.contains("no-such-container-xyz"), "{err}");
    let err = fails(&c.v(&["kill", "no-such-container-xyz", "KILL"]));
    assert!(err.contains("no-such-container-xyz"), "{err}");
    let err = fails(&c.v(&["delete", "no-such-container-xyz"]));
    assert!(err.contains("no-such-container-xyz"), "{err}");
    c.create();
    let pid = c.pid();
    let err = fails(&c.create_with(&[]));
    assert!(
        err.contains(&c.id) && err.to_lowercase().contains("exist"),
        "{err}"
    );
    // The first container is untouched by the refused create.
    assert_eq!(c.status(), "created");
    assert_eq!(c.pid(), pid);
}

#[test]
fn delete_created_and_force_running() {
    require_root!();
    let c = Ctr::new("delc", SLEEPER);
    c.create();
    let pid = c.pid();
    ok(&c.v(&["delete", &c.id]));
    assert!(wait_for(5, || fs::metadata(format!("/proc/{pid}"))
        .is_err()
        || fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)));
    assert_eq!(c.leftovers(), Vec::<String>::new());

    let c = running("delf");
    let pid = c.pid();
    ok(&c.v(&["delete", "--force", &c.id]));
    fails(&c.v(&["state", &c.id]));
    assert!(wait_for(5, || fs::metadata(format!("/proc/{pid}")).is_err()));
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn exec_args_env_cwd_user_cap_exit_codes() {
    require_root!();
    let c = running("exec");
    assert_eq!(ok(&c.exec(&["echo", "hello"])).trim(), "hello");
    let o = c.exec(&["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "exec exit code: {o:?}");
    let out = ok(&c.exec_opts(
        &["--env", "FOO=bar baz", "-e", "X=1"],
        &["sh", "-c", "echo \"$FOO/$X\""],
    ));
    assert_eq!(out.trim(), "bar baz/1");
    // The process env from config.json is kept alongside --env.
    let out = ok(&c.exec(&["sh", "-c", "echo $PATH"]));
    assert!(out.contains("/bin"), "{out}");
    assert_eq!(
        ok(&c.exec_opts(&["--cwd", "/tmp"], &["pwd"])).trim(),
        "/tmp"
    );
    assert_eq!(
        ok(&c.exec_opts(
            &["--user", "1000:1001"],
            &["sh", "-c", "echo $(id -u):$(id -g)"]
        ))
        .trim(),
        "1000:1001"
    );
    // The exec'd process joins the container's namespaces.
    let host_ns = fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ok(&c.exec(&["readlink", "/proc/self/ns/pid"]));
    assert_ne!(ns.trim(), host_ns.to_str().unwrap());
    assert_eq!(ok(&c.exec(&["hostname"])).trim(), "vessel");
    assert_eq!(
        ok(&c.exec(&["cat", "/proc/1/cmdline"])),
        "sleep\u{0}1000\u{0}"
    );

    // --cap adds a capability (CAP_SYS_ADMIN is bit 21) to the default set.
    let caps = |o: &str| -> u64 {
        let line = o
            .lines()
            .find(|l| l.starts_with("CapEff:"))
            .expect("CapEff");
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let without = caps(&ok(&c.exec(&["cat", "/proc/self/status"])));
    let with = caps(&ok(
        &c.exec_opts(&["--cap", "CAP_SYS_ADMIN"], &["cat", "/proc/self/status"])
    ));
    assert_eq!(without & (1 << 21), 0, "default set has no CAP_SYS_ADMIN");
    assert_ne!(with & (1 << 21), 0, "--cap CAP_SYS_ADMIN not effective");

    // --process file replaces the command.
    let pfile = c.bundle.path().join("process.json");
    let proc_json = json!({
        "args": ["sh", "-c", "echo $A; pwd; id -u; exit 3"],
        "env": ["PATH=/bin", "A=from-process-file"],
        "cwd": "/etc",
        "user": {"uid": 123, "gid": 456},
        "terminal": false
    });
    fs::write(&pfile, proc_json.to_string()).unwrap();
    let o = c.exec_opts(&["--process", pfile.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(stdout(&o), "from-process-file\n/etc\n123\n");

    // An executable that does not exist fails and names it.
    let o = c.exec(&["/bin/does-not-exist"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does-not-exist"), "{}", stderr(&o));
    assert_eq!(
        c.status(),
        "running",
        "a failed exec does not hurt the container"
    );
}

#[test]
fn exec_detach_pid_file() {
    require_root!();
    let c = running("execd");
    let pidfile = c.bundle.path().join("exec.pid");
    let o = c.exec_opts(
        &["--detach", "--pid-file", pidfile.to_str().unwrap()],
        &["sleep", "777"],
    );
    ok(&o);
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        cmd, b"sleep\x00777\x00",
        "pid file names the exec'd process"
    );
    // It is in the container's pid namespace and listed by ps.
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        fs::read_link(format!("/proc/{}/ns/pid", c.pid())).unwrap()
    );
    let js: Value = serde_json::from_str(&ok(&c.v(&["ps", "--format", "json", &c.id]))).unwrap();
    assert!(js.as_array().unwrap().contains(&json!(pid)), "{js}");
    // exec into a stopped container is refused.
    ok(&c.v(&["kill", "--all", &c.id, "KILL"]));
    assert!(c.wait_status("stopped"));
    assert!(
        wait_for(5, || fs::metadata(format!("/proc/{pid}")).is_err()),
        "--all left the exec'd process"
    );
    let err = fails(&c.exec(&["true"]));
    assert!(err.contains(&c.id), "{err}");
}

#[test]
fn pause_freezes_and_resume_thaws() {
    require_root!();
    let mut c = Ctr::new(
        "pause",
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.05; done",
        ],
    );
    c.config()["root"]["readonly"] = json!(false);
    c.write();
    c.create();
    c.start();
    let counter = c.bundle.rootfs().join("count");
    let read = || {
        fs::read_to_string(&counter)
            .unwrap_or_default()
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    assert!(wait_for(10, || read() > 2), "counter never advanced");
    ok(&c.v(&["pause", &c.id]));
    assert_eq!(c.status(), "paused");
    let state = cgroup_value("freezer", &c.id, "freezer.state");
    assert_eq!(state.as_deref(), Some("FROZEN"));
    std::thread::sleep(Duration::from_millis(200));
    let frozen = read();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(read(), frozen, "counter advanced while paused");
    // A paused container cannot be paused again; exec is refused or waits.
    fails(&c.v(&["pause", &c.id]));
    ok(&c.v(&["resume", &c.id]));
    assert_eq!(c.status(), "running");
    assert!(
        wait_for(10, || read() > frozen + 2),
        "counter stuck after resume"
    );
    fails(&c.v(&["resume", &c.id]));
}

#[test]
fn kill_signal_names_numbers_and_all() {
    require_root!();
    let mut c = Ctr::new(
        "kill",
        &[
            "sh",
            "-c",
            "trap 'echo USR1 >> /sig' USR1; trap 'echo USR2 >> /sig' USR2; \
             trap 'echo HUP >> /sig' HUP; echo ready > /ready; \
             while true; do sleep 0.05; done",
        ],
    );
    c.config()["root"]["readonly"] = json!(false);
    c.write();
    c.create();
    c.start();
    let rootfs = c.bundle.rootfs();
    assert!(wait_for(10, || rootfs.join("ready").exists()));
    let sigs = || fs::read_to_string(rootfs.join("sig")).unwrap_or_default();
    ok(&c.v(&["kill", &c.id, "USR1"]));
    assert!(wait_for(10, || sigs() == "USR1\n"), "{}", sigs());
    ok(&c.v(&["kill", &c.id, "SIGUSR2"]));
    assert!(wait_for(10, || sigs() == "USR1\nUSR2\n"), "{}", sigs());
    // SIGHUP reaches the trap even when vessel was started with it ignored
    // (under nohup, as CI was once): the workload's dispositions are reset.
    ok(&c.v(&["kill", &c.id, "1"]));
    assert!(wait_for(10, || sigs() == "USR1\nUSR2\nHUP\n"), "{}", sigs());
    let err = fails(&c.v(&["kill", &c.id, "SIGNOPE"]));
    assert!(
        err.contains("SIGNOPE") || err.to_lowercase().contains("signal"),
        "{err}"
    );
    assert_eq!(c.status(), "running");
    // The default signal is SIGTERM; sh as pid 1 without a TERM trap ignores
    // it (init semantics), so use KILL by number.
    ok(&c.v(&["kill", &c.id, "9"]));
    assert!(c.wait_status("stopped"));
}

#[test]
fn events_stats_json() {
    require_root!();
    let c = running("events");
    let out = ok(&c.v(&["events", "--stats", &c.id]));
    let line = out.lines().next().expect("one JSON line");
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.id.as_str());
    let d = &v["data"];
    for k in ["cpu", "memory", "pids"] {
        assert!(d[k].is_object(), "data.{k} missing: {v}");
    }
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{v}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(d["pids"]["current"], 1, "{v}");
}

#[test]
fn update_writes_cgroup_files() {
    require_root!();
    let c = running("update");
    ok(&c.v(&[
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        &c.id,
    ]));
    assert_eq!(
        cgroup_value("memory", &c.id, "memory.limit_in_bytes").as_deref(),
        Some("67108864")
    );
    assert_eq!(
        cgroup_value("pids", &c.id, "pids.max").as_deref(),
        Some("50")
    );
    assert_eq!(
        cgroup_value("cpu", &c.id, "cpu.cfs_quota_us").as_deref(),
        Some("50000")
    );
    assert_eq!(
        cgroup_value("cpu", &c.id, "cpu.cfs_period_us").as_deref(),
        Some("100000")
    );
    // --resources with an OCI linux.resources object.
    let f = c.bundle.path().join("res.json");
    fs::write(
        &f,
        json!({"memory": {"limit": 33554432}, "pids": {"limit": 20}, "cpu": {"shares": 512}})
            .to_string(),
    )
    .unwrap();
    ok(&c.v(&["update", "--resources", f.to_str().unwrap(), &c.id]));
    assert_eq!(
        cgroup_value("memory", &c.id, "memory.limit_in_bytes").as_deref(),
        Some("33554432")
    );
    assert_eq!(
        cgroup_value("pids", &c.id, "pids.max").as_deref(),
        Some("20")
    );
    assert_eq!(
        cgroup_value("cpu", &c.id, "cpu.shares").as_deref(),
        Some("512")
    );
    // The container sees the new limit from inside.
    let inside = ok(&c.exec(&["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]));
    assert_eq!(inside.trim(), "33554432");
    // Nonsense is refused and changes nothing.
    fails(&c.v(&["update", "--memory", "lots", &c.id]));
    assert_eq!(
        cgroup_value("memory", &c.id, "memory.limit_in_bytes").as_deref(),
        Some("33554432")
    );
    // The pids limit is enforced: 20 pids, try to fork 30 sleeps.
    let o = c.exec(&[
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 5 & done 2>/dev/null; echo spawned",
    ]);
    let cur: u64 = cgroup_value("pids", &c.id, "pids.current")
        .unwrap()
        .parse()
        .unwrap();
    assert!(cur <= 20, "pids.current {cur} above limit; {o:?}");
}

#[test]
fn run_exit_codes() {
    require_root!();
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("false", 1)] {
        let c = Ctr::new("runrc", &["sh", "-c", script]);
        let o = c.run();
        assert_eq!(o.status.code(), Some(code), "{script}: {o:?}");
        // A foreground run that exited leaves its state (runc keeps it
        // until delete) or nothing; delete then cleans everything.
        let _ = c.v(&["delete", "--force", &c.id]);
        assert_eq!(c.leftovers(), Vec::<String>::new());
    }
    // Killed by a signal: 128 + n.
    let c = Ctr::new("runsig", SLEEPER);
    let mut child = c
        .cmd()
        .args(["run", "--bundle", c.bundle.path().to_str().unwrap(), &c.id])
        .spawn()
        .unwrap();
    assert!(c.wait_status("running"));
    ok(&c.v(&["kill", &c.id, "KILL"]));
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137), "{st:?}");
}

#[test]
fn run_output_passes_through() {
    require_root!();
    let c = Ctr::new("runout", &["sh", "-c", "echo out; echo err >&2"]);
    let o = c.run();
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err\n"), "{}", stderr(&o));
}

#[test]
fn run_detach() {
    require_root!();
    let c = Ctr::new("rund", SLEEPER);
    let o = c.v(&[
        "run",
        "--detach",
        "--bundle",
        c.bundle.path().to_str().unwrap(),
        &c.id,
    ]);
    ok(&o);
    assert_eq!(c.status(), "running");
    let pid = c.pid();
    assert_eq!(
        fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        b"sleep\x001000\x00"
    );
}

#[test]
fn run_forwards_signals() {
    require_root!();
    let c = Ctr::new(
        "runfwd",
        &[
            "sh",
            "-c",
            "trap 'echo got-TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let mut child = c
        .cmd()
        .args(["run", "--bundle", c.bundle.path().to_str().unwrap(), &c.id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader};
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(rest, "got-TERM\n");
    assert_eq!(st.code(), Some(42), "{st:?}");
}

#[test]
fn ps_args_events_interval_and_json_log() {
    require_root!();
    let c = Ctr::new("misc", SLEEPER);
    let log = c.bundle.path().join("vessel.log");
    let b = c.bundle.path().to_str().unwrap().to_string();
    ok(&c.v(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--debug",
        "create",
        "--bundle",
        &b,
        &c.id,
    ]));
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty(), "--debug --log wrote nothing");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["msg"].is_string(), "{line}");
    }
    c.start();
    // ps passes its arguments to ps(1).
    let out = ok(&c.v(&["ps", &c.id, "-o", "pid,comm"]));
    let mut l = out.lines();
    assert_eq!(
        l.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    let row = l.next().unwrap();
    assert!(
        row.contains(&c.pid().to_string()) && row.contains("sleep"),
        "{out}"
    );
    // events --interval streams one stats object per interval.
    let mut child = c
        .cmd()
        .args(["events", "--interval", "1s", &c.id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("an events line").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "stats", "{line}");
        assert_eq!(v["id"], c.id.as_str());
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn workload_exit_makes_the_container_stopped() {
    require_root!();
    let c = Ctr::new("selfexit", &["sh", "-c", "exit 3"]);
    c.create();
    c.start();
    assert!(c.wait_status("stopped"));
    // kill of a stopped container fails; delete without --force works.
    fails(&c.v(&["kill", &c.id, "KILL"]));
    ok(&c.v(&["delete", &c.id]));
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn paused_container_refuses_exec_and_force_deletes() {
    require_root!();
    let c = running("pausedel");
    let pid = c.pid();
    ok(&c.v(&["pause", &c.id]));
    let err = fails(&c.exec(&["true"]));
    assert!(err.contains("paused"), "{err}");
    fails(&c.v(&["delete", &c.id]));
    assert_eq!(c.status(), "paused");
    // A frozen process cannot act on SIGKILL until thawed: delete --force
    // must still remove it.
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(wait_for(5, || fs::metadata(format!("/proc/{pid}")).is_err()));
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// The workload starts with every signal at its default and none blocked,
/// whatever vessel inherited (nohup ignores SIGHUP; a shell started with
/// SIGHUP ignored cannot even trap it).
#[test]
fn workload_gets_default_signal_dispositions_and_an_empty_mask() {
    use std::os::unix::process::CommandExt;
    require_root!();
    let c = Ctr::new(
        "sigdfl",
        &["sh", "-c", "exec grep -E '^Sig(Blk|Ign)' /proc/self/status"],
    );
    let b = c.bundle.path().to_str().unwrap().to_string();
    let mut cmd = c.cmd();
    cmd.args(["run", "--bundle", &b, &c.id]);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (signal, sigprocmask).
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let o = vessel_tests::harness::output_via_files(&mut cmd);
    let out = ok(&o);
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
}
