//! OCI hooks: all six phases with the state on stdin and their env, in
//! order; a failing hook fails its command naming `hooks.<phase>[i]`; a
//! hanging hook is killed at its timeout.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use vessel_tests::harness::{fails, ok, Ctr};
use vessel_tests::leaks;
use vessel_tests::require_root;

/// A hook running `/bin/sh -c` (Debian's dash on the host, busybox in the
/// container) that saves its stdin, its env and its phase into `out` (or
/// /hookout when `out` is not visible, as for startContainer).
fn recorder(phase: &str, out: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
                 "d=\"$1\"; [ -d \"$d\" ] || d=/hookout; cat > \"$d/$0.json\"; \
                  echo \"$HOOKVAR\" > \"$d/$0.env\"; echo \"$0\" >> \"$d/order\"",
                 phase, out.to_str().unwrap()],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("HOOKVAR=var-{phase}")],
        "timeout": 10
    })
}

const PHASES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

#[test]
fn all_phases_get_state_and_env_in_order() {
    require_root!();
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let mut c = Ctr::new(
        "hooks",
        &["sh", "-c", "echo ran > /hookout/workload; sleep 1000"],
    );
    {
        let cfg = c.config();
        let mut hooks = json!({});
        for p in PHASES {
            hooks[p] = json!([recorder(p, o)]);
        }
        cfg["hooks"] = hooks;
        cfg["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hookout", "type": "bind", "source": o, "options": ["rbind", "rw"]
        }));
    }
    c.write();
    let order = || fs::read_to_string(o.join("order")).unwrap_or_default();
    c.create();
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    assert!(!o.join("workload").exists());
    c.start();
    assert!(vessel_tests::harness::wait_for(10, || o
        .join("workload")
        .exists()));
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n"
    );
    let pid = c.pid();
    ok(&c.v(&["kill", &c.id, "KILL"]));
    assert!(c.wait_status("stopped"));
    assert!(
        !o.join("poststop.json").exists(),
        "poststop ran before delete"
    );
    ok(&c.v(&["delete", &c.id]));
    assert_eq!(order(), PHASES.map(|p| format!("{p}\n")).concat());

    let bundle = fs::canonicalize(c.bundle.path()).unwrap();
    for p in PHASES {
        let raw = fs::read_to_string(o.join(format!("{p}.json"))).unwrap();
        let st: Value = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("{p}: state on stdin is not JSON ({e}): {raw:?}"));
        assert_eq!(st["id"], c.id.as_str(), "{p}: {st}");
        assert_eq!(
            fs::canonicalize(st["bundle"].as_str().unwrap()).unwrap(),
            bundle,
            "{p}: {st}"
        );
        assert!(st["ociVersion"].is_string(), "{p}: {st}");
        let want = match p {
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        // runc reports "created" to startContainer hooks; "creating" is
        // tolerated (the OCI spec does not pin it down).
        if p == "startContainer" {
            assert!(
                st["status"] == "created" || st["status"] == "creating",
                "{p}: {st}"
            );
        } else {
            assert_eq!(st["status"], want, "{p}: {st}");
        }
        if p != "poststop" {
            assert_eq!(st["pid"], pid, "{p}: {st}");
        }
        let env = fs::read_to_string(o.join(format!("{p}.env"))).unwrap();
        assert_eq!(env, format!("var-{p}\n"), "{p}: hook env");
    }
}

#[test]
fn hook_env_is_only_its_own() {
    require_root!();
    let out = tempfile::tempdir().unwrap();
    let mut c = Ctr::new("hookenv", &["true"]);
    c.config()["hooks"] = json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", "env > \"$0/env\"", out.path()],
        "env": ["ONLY=this"]
    }]});
    c.write();
    c.create();
    let env = fs::read_to_string(out.path().join("env")).unwrap();
    assert!(env.contains("ONLY=this"), "{env}");
    // The runtime's own environment does not leak into the hook.
    assert!(!env.contains("CARGO"), "{env}");
    assert!(!env.contains("RUST_"), "{env}");
}

/// Hooks with one failing hook at `phase`, index 1 (index 0 succeeds).
fn failing_at(c: &mut Ctr, phase: &str) {
    c.config()["hooks"] = json!({
        phase: [
            {"path": "/bin/true"},
            {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-failed-on-purpose >&2; exit 3"]}
        ]
    });
    c.write();
}

#[test]
fn failing_create_hooks_fail_create_and_leave_nothing() {
    require_root!();
    for phase in ["prestart", "createRuntime", "createContainer"] {
        let mut c = Ctr::new("hookfail", &["sleep", "1000"]);
        let id = c.id.clone();
        c.config()["process"]["args"] = json!(["sh", "-c", "sleep 1000", id]);
        failing_at(&mut c, phase);
        let o = c.create_with(&[]);
        let err = fails(&o);
        assert!(err.contains(&format!("hooks.{phase}[1]")), "{phase}: {o:?}");
        assert!(err.contains(&c.id), "{phase}: {err}");
        assert_eq!(c.leftovers(), Vec::<String>::new(), "{phase}: {err}");
        assert!(leaks::state_entries(c.root()).is_empty(), "{phase}");
    }
}

#[test]
fn failing_start_container_hook_is_an_error_and_workload_never_runs() {
    require_root!();
    let mut c = Ctr::new("hookstart", &["sh", "-c", "touch /ran; sleep 1000"]);
    c.config()["root"]["readonly"] = json!(false);
    failing_at(&mut c, "startContainer");
    // runc runs startContainer hooks at the end of create; the OCI spec
    // says during start. Either command may report it, one of them must.
    let created = c.create_with(&[]);
    let err = if created.status.success() {
        fails(&c.v(&["start", &c.id]))
    } else {
        fails(&created)
    };
    assert!(err.contains("hooks.startContainer[1]"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !c.bundle.rootfs().join("ran").exists(),
        "workload ran after a failed startContainer hook"
    );
    let _ = c.v(&["delete", "--force", &c.id]);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn hooks_that_do_not_read_stdin_do_not_kill_the_runtime() {
    require_root!();
    // A hook that exits at once, before vessel writes the state to its
    // stdin: the write gets EPIPE, which must not kill vessel (SIGPIPE).
    // The race is lost only sometimes, so try it many times from threads.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let mut bad = Vec::new();
                for _ in 0..8 {
                    let mut c = Ctr::new("hookpipe", &["true"]);
                    c.config()["hooks"] = json!({
                        "createRuntime": [{"path": "/bin/true"}],
                        "createContainer": [{"path": "/bin/true"}]
                    });
                    c.write();
                    let o = c.create_with(&[]);
                    if !o.status.success() {
                        bad.push(format!(
                            "{:?} {}",
                            o.status,
                            String::from_utf8_lossy(&o.stderr)
                        ));
                    }
                    let _ = c.v(&["delete", "--force", &c.id]);
                    let left = c.leftovers();
                    if !left.is_empty() {
                        bad.push(format!("left: {left:?}"));
                    }
                }
                bad
            })
        })
        .collect();
    let bad: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // Remove cgroups a killed vessel could not remove, then report.
    for b in &bad {
        if let Some(i) = b.find("/sys/fs/cgroup/") {
            let p = b[i..].split(['"', ' ', ',']).next().unwrap();
            let _ = fs::remove_dir(p);
        }
    }
    assert!(
        bad.is_empty(),
        "create failed with hooks that exit at once: {bad:#?}"
    );
}

#[test]
fn hanging_hook_is_killed_at_its_timeout() {
    require_root!();
    let marker = format!("1{:06}", std::process::id() % 1_000_000);
    let mut c = Ctr::new("hooktime", &["sleep", "1000"]);
    c.config()["hooks"] = json!({"createRuntime": [{
        "path": "/bin/sleep", "args": ["sleep", marker], "timeout": 1
    }]});
    c.write();
    let err = fails(&c.create_with(&[]));
    assert!(err.contains("hooks.createRuntime[0]"), "{err}");
    assert!(err.contains("time"), "{err}");
    assert_eq!(
        leaks::processes_mentioning(&format!("sleep {marker}")),
        vec![]
    );
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn missing_hook_binary_is_named() {
    require_root!();
    let mut c = Ctr::new("hookmiss", &["sleep", "1000"]);
    c.config()["hooks"] = json!({"prestart": [{"path": "/nonexistent/hook"}]});
    c.write();
    let err = fails(&c.create_with(&[]));
    assert!(
        err.contains("hooks.prestart[0]") && err.contains("/nonexistent/hook"),
        "{err}"
    );
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn poststop_runs_on_delete_force_and_its_failure_does_not_block_delete() {
    require_root!();
    let out = tempfile::tempdir().unwrap();
    let mut c = Ctr::new("hookpost", &["sleep", "1000"]);
    c.config()["hooks"] = json!({"poststop": [
        recorder("poststop", out.path()),
        {"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}
    ]});
    c.write();
    c.create();
    c.start();
    let _ = c.v(&["delete", "--force", &c.id]);
    // A poststop failure is a warning (OCI): the container is gone.
    fails(&c.v(&["state", &c.id]));
    let st: Value =
        serde_json::from_str(&fs::read_to_string(out.path().join("poststop.json")).unwrap())
            .unwrap();
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// Runs a vessel command whose stdout and stderr are pipes nobody reads
/// any more (a caller that went away); returns its exit status.
fn with_closed_stdio(c: &Ctr, args: &[&str]) -> std::process::ExitStatus {
    let (r1, w1) = nix::unistd::pipe().unwrap();
    let (r2, w2) = nix::unistd::pipe().unwrap();
    drop(r1);
    drop(r2);
    let mut cmd = c.cmd();
    cmd.args(args)
        .stdout(std::process::Stdio::from(w1))
        .stderr(std::process::Stdio::from(w2));
    cmd.status().unwrap()
}

/// A hook that prints a lot on both streams (more than a pipe holds).
fn noisy(path: &str) -> Value {
    json!({"path": path, "args": ["sh", "-c",
        "i=0; while [ $i -lt 3000 ]; do echo noise-$i; echo err-$i >&2; i=$((i+1)); done"]})
}

#[test]
fn hooks_writing_to_closed_streams_do_not_fail_the_container() {
    require_root!();
    let out = tempfile::tempdir().unwrap();
    let mut c = Ctr::new(
        "hookclosed",
        &["sh", "-c", "echo ran > /hookout/workload; sleep 1000"],
    );
    c.config()["hooks"] = json!({
        "createRuntime": [noisy("/bin/sh")],
        "createContainer": [noisy("/bin/sh")],
        "startContainer": [noisy("/bin/sh")],
        "poststart": [noisy("/bin/sh")]
    });
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hookout", "type": "bind", "source": out.path(), "options": ["rbind", "rw"]
    }));
    c.write();
    let b = c.bundle.path().to_str().unwrap().to_string();
    let st = with_closed_stdio(&c, &["create", "--bundle", &b, &c.id]);
    assert!(st.success(), "create failed: {st:?}");
    let st = with_closed_stdio(&c, &["start", &c.id]);
    assert!(st.success(), "start failed: {st:?}");
    assert!(vessel_tests::harness::wait_for(10, || out
        .path()
        .join("workload")
        .exists()));
    ok(&c.v(&["delete", "--force", &c.id]));
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn failing_hook_output_is_in_the_error() {
    require_root!();
    let mut c = Ctr::new("hookwhy", &["true"]);
    c.config()["hooks"] = json!({"createRuntime": [{"path": "/bin/sh",
        "args": ["sh", "-c", "echo said-on-stdout; echo the-reason-on-stderr >&2; exit 3"]}]});
    c.write();
    let err = fails(&c.create_with(&[]));
    assert!(err.contains("hooks.createRuntime[0]"), "{err}");
    assert!(err.contains("the-reason-on-stderr"), "{err}");
    assert!(err.contains("said-on-stdout"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn hook_env_defaults_empty_but_start_container_gets_the_process_env() {
    require_root!();
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let mut c = Ctr::new("hookdefenv", &["true"]);
    let dump = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("d={}; [ -d $d ] || d=/hookout; env > $d/{name}.env", o.display())]})
    };
    c.config()["process"]["env"] = json!(["PATH=/bin:/usr/bin", "MARK=from-process"]);
    c.config()["hooks"] = json!({
        "prestart": [dump("prestart")],
        "createContainer": [dump("createContainer")],
        "startContainer": [dump("startContainer")],
        "poststart": [dump("poststart")]
    });
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hookout", "type": "bind", "source": o, "options": ["rbind", "rw"]
    }));
    c.write();
    let mut cmd = c.cmd();
    let b = c.bundle.path().to_str().unwrap().to_string();
    cmd.args(["run", "--bundle", &b, &c.id])
        .env("VESSEL_CALLER_MARK", "leak");
    ok(&vessel_tests::harness::output_via_files(&mut cmd));
    let env = |p: &str| fs::read_to_string(o.join(format!("{p}.env"))).unwrap();
    for p in ["prestart", "createContainer", "poststart"] {
        let e = env(p);
        // sh itself adds PWD (and busybox SHLVL): nothing else is there.
        let vars: Vec<&str> = e
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        assert!(vars.is_empty(), "{p}: hook without env got {vars:?}");
    }
    let e = env("startContainer");
    assert!(e.contains("MARK=from-process"), "startContainer: {e}");
    assert!(e.contains("HOME=/root"), "startContainer: {e}");
    assert!(!e.contains("VESSEL_CALLER_MARK"), "startContainer: {e}");
}

#[test]
fn hooks_start_with_default_signals_and_only_stdio() {
    require_root!();
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let mut c = Ctr::new("hooksig", &["true"]);
    let dump = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
            "d={}; [ -d $d ] || d=/hookout; grep -E '^Sig(Ign|Blk)' /proc/self/status > $d/{name}.sig; \
             ls /proc/self/fd > $d/{name}.fd", o.display())]})
    };
    c.config()["hooks"] = json!({
        "createRuntime": [dump("createRuntime")],
        "startContainer": [dump("startContainer")],
        "poststart": [dump("poststart")]
    });
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hookout", "type": "bind", "source": o, "options": ["rbind", "rw"]
    }));
    c.write();
    // vessel's caller ignores SIGHUP (as nohup does): the hooks
    // still start with defaults.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' HUP; exec \"$@\"")
        .arg("sh")
        .arg(&c.bin)
        .arg("--root")
        .arg(c.root())
        .args(["run", "--bundle", c.bundle.path().to_str().unwrap(), &c.id]);
    ok(&vessel_tests::harness::output_via_files(&mut cmd));
    for p in ["createRuntime", "startContainer", "poststart"] {
        let sig = fs::read_to_string(o.join(format!("{p}.sig"))).unwrap();
        assert_eq!(
            sig, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "{p}"
        );
        // ls's own descriptor for the directory is the only one past stdio.
        let fds: Vec<String> = fs::read_to_string(o.join(format!("{p}.fd")))
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect();
        assert!(
            fds.len() <= 4 && fds[..3] == ["0", "1", "2"],
            "{p}: {fds:?}"
        );
    }
}

#[test]
fn a_daemon_left_by_a_hook_does_not_hold_the_runtime() {
    require_root!();
    // The hook exits at once but leaves a process holding its stdout and
    // stderr: vessel goes on when the hook exits, not when the pipes close
    // (which is when the daemon ends: still running when create returns).
    let out = tempfile::tempdir().unwrap();
    let pidfile = out.path().join("daemon.pid");
    let mut c = Ctr::new("hookdaemon", &["true"]);
    c.config()["hooks"] = json!({"createRuntime": [{"path": "/bin/sh",
        "args": ["sh", "-c", "sleep 1000 & echo $! > \"$0\"; echo started", pidfile]}]});
    c.write();
    let o = c.create_with(&[]);
    let daemon = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .map(nix::unistd::Pid::from_raw);
    let alive = daemon.is_some_and(|p| nix::sys::signal::kill(p, None).is_ok());
    if let Some(p) = daemon {
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    }
    ok(&o);
    assert!(daemon.is_some(), "the hook did not run");
    assert!(alive, "create returned only after the hook's daemon ended");
}
