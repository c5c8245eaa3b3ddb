//! Crash safety of the state store (issue 12): a vessel command SIGKILLed at
//! any instant leaves a container that `state` reports truthfully and
//! `delete --force` removes with everything it owns; a corrupt state.json
//! does not hide a container; reads never wait behind a create; concurrent
//! deletes both succeed; `kill ID 0` checks the process.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vessel_tests::harness::{fails, ok, stderr, stdout, wait_for, Ctr};
use vessel_tests::leaks;
use vessel_tests::require_root;

/// A small deterministic generator: the seed is printed, so a failing
/// sequence of delays can be replayed (`VESSEL_KILL_SEED`).
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("VESSEL_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("kill-injection seed: {seed} (VESSEL_KILL_SEED={seed} replays it)");
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `args` (with the container's `--root`) and SIGKILLs it after
/// `delay`, unless it ended before. Returns whether it was killed.
fn kill_after(c: &Ctr, args: &[&str], delay: Duration) -> bool {
    let mut cmd = c.cmd();
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn vessel");
    let end = Instant::now() + delay;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if Instant::now() >= end {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The median of 3 runs of `args` then `undo` (the range kill delays cover).
fn duration_of(c: &Ctr, args: &[&str], undo: &[&str]) -> Duration {
    let mut d: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            ok(&c.v(args));
            let d = t.elapsed();
            ok(&c.v(undo));
            d
        })
        .collect();
    d.sort();
    d[1]
}

/// After a killed command: `state` must say what the container is (never
/// "creating" with nobody creating it), and `delete --force` must remove it.
#[track_caller]
fn check_removable(c: &Ctr, id: &str, what: &str) {
    let o = c.v(&["state", id]);
    if o.status.success() {
        let s: Value = serde_json::from_slice(&o.stdout).expect("state JSON");
        let status = s["status"].as_str().unwrap_or("");
        assert_ne!(
            status, "creating",
            "{what}: nobody creates it any more: {s}"
        );
        if s.get("reason").is_some() {
            assert_eq!(status, "stopped", "{what}: {s}");
        }
    } else {
        assert!(
            stderr(&o).contains("does not exist"),
            "{what}: state failed: {}",
            stderr(&o)
        );
    }
    let d = c.v(&["delete", "--force", id]);
    assert!(
        d.status.success(),
        "{what}: delete --force failed: {}",
        stderr(&d)
    );
    let o = c.v(&["state", id]);
    assert!(
        stderr(&o).contains("does not exist"),
        "{what}: still there after delete --force: {}",
        stdout(&o)
    );
}

/// Everything left by containers whose ids start with `prefix`.
fn leftovers(root: &Path, prefix: &str, bundle: &Path) -> Vec<String> {
    let mut left: Vec<String> = leaks::state_entries(root)
        .into_iter()
        .map(|e| format!("state entry {e}"))
        .collect();
    left.extend(
        leaks::cgroup_dirs_with_prefix(prefix)
            .into_iter()
            .map(|d| format!("cgroup {d}")),
    );
    for needle in [prefix.to_string(), bundle.display().to_string()] {
        left.extend(
            leaks::mounts_mentioning(&needle)
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        left.extend(
            leaks::processes_mentioning(&needle)
                .into_iter()
                .map(|(p, c)| format!("process {p}: {c}")),
        );
    }
    left
}

const KILLS: usize = 30;

/// 30 random-delay SIGKILLs each of `create`, `run` and `delete`: every
/// container left is removable, and nothing is left after.
#[test]
fn killed_commands_leave_nothing_delete_force_cannot_remove() {
    require_root!();
    let mut rng = Rng::from_env();
    let mut base = Ctr::new("kill", &["sleep", "1000"]);
    let prefix = base.id.clone();
    // The marker in the workload's command line finds its processes.
    base.config()["process"]["args"] = json!(["sh", "-c", "sleep 1000", &prefix]);
    base.config()["linux"]["resources"] = json!({"pids": {"limit": 20}});
    base.write();
    let bundle = base.bundle.path().to_str().unwrap().to_string();
    // Every case runs in `base`'s root, with ids `<prefix>-<kind>-<n>`.
    let probe = format!("{prefix}-probe");
    let create_span = duration_of(
        &base,
        &["create", "--bundle", &bundle, &probe],
        &["delete", "--force", &probe],
    );
    let delete_span = {
        let t = Instant::now();
        ok(&base.v(&["create", "--bundle", &bundle, &probe]));
        ok(&base.v(&["start", &probe]));
        let _ = t;
        let t = Instant::now();
        ok(&base.v(&["delete", "--force", &probe]));
        t.elapsed()
    };
    let mut killed = [0usize; 3];
    for (k, kind) in ["create", "run", "delete"].iter().enumerate() {
        for n in 0..KILLS {
            let id = format!("{prefix}-{kind}-{n}");
            // Up to 1.2x the whole command: kills land at every step, and
            // some after it ended.
            let u = 1.2 * rng.unit();
            let delay = create_span.mul_f64(u);
            let was_killed = match *kind {
                "create" => kill_after(&base, &["create", "--bundle", &bundle, &id], delay),
                "run" => kill_after(&base, &["run", "--bundle", &bundle, &id], delay),
                _ => {
                    ok(&base.v(&["create", "--bundle", &bundle, &id]));
                    ok(&base.v(&["start", &id]));
                    kill_after(&base, &["delete", "--force", &id], delete_span.mul_f64(u))
                }
            };
            killed[k] += was_killed as usize;
            check_removable(&base, &id, &format!("{kind} #{n} killed after {delay:?}"));
        }
    }
    eprintln!(
        "killed: create {}, run {}, delete {}",
        killed[0], killed[1], killed[2]
    );
    // A kill that never lands tests nothing: most of them must.
    assert!(
        killed.iter().all(|&k| k >= KILLS / 4),
        "too few commands were killed: {killed:?}"
    );
    let left = {
        let mut left = leftovers(base.root(), &prefix, base.bundle.path());
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = leftovers(base.root(), &prefix, base.bundle.path());
        }
        left
    };
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A `start` killed right after it released init (the workload runs, the
/// state was never saved) must read as running, not created. The release
/// is done here as `start` does it, by writing to the exec fifo.
#[test]
fn a_killed_start_reads_as_running_once_the_workload_runs() {
    require_root!();
    let c = Ctr::new("kstart", &["sleep", "1000"]);
    c.create();
    let pid = c.pid();
    let fifo = c.root().join(&c.id).join("exec.fifo");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[0]))
        .unwrap();
    assert!(
        wait_for(10, || std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.to_string_lossy().contains("busybox"))),
        "the workload never started"
    );
    assert_eq!(c.status(), "running");
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}

/// A corrupt state.json: `list` shows the container with a warning, `state`
/// says why, and `delete --force` removes it and its processes and cgroup.
#[test]
fn a_corrupt_state_is_listed_and_removable() {
    require_root!();
    let mut c = Ctr::new("corrupt", &["sleep", "1000"]);
    c.config()["linux"]["resources"] = json!({"pids": {"limit": 20}});
    c.write();
    c.create();
    c.start();
    let pid = c.pid();
    std::fs::write(c.root().join(&c.id).join("state.json"), b"{\"ociVers").unwrap();
    let l = c.v(&["list"]);
    assert!(ok(&l).contains(&c.id), "list hides it: {}", stdout(&l));
    assert!(
        stderr(&l).contains("state.json"),
        "no warning: {}",
        stderr(&l)
    );
    let s = c.state();
    assert_eq!(s["status"], "running", "{s}");
    assert!(
        s["reason"].as_str().unwrap_or("").contains("state.json"),
        "{s}"
    );
    assert_eq!(s["pid"], pid);
    let e = fails(&c.exec(&["true"]));
    assert!(e.contains("state.json"), "{e}");
    // Without --force a running container stays.
    fails(&c.v(&["delete", &c.id]));
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(
        wait_for(5, || !Path::new(&format!("/proc/{pid}")).exists()),
        "its init {pid} still runs"
    );
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}

/// `list` and `state` answer while a create is held up in a hook, and
/// report it as creating.
#[test]
fn reads_do_not_wait_behind_a_create() {
    require_root!();
    let mut c = Ctr::new("slowc", &["sleep", "1000"]);
    let gate = c.bundle.path().join("gate");
    c.config()["hooks"] = json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display())],
    }]});
    c.write();
    let b = c.bundle.path().to_str().unwrap().to_string();
    let mut create = c.cmd();
    create
        .args(["create", "--bundle", &b, &c.id])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = create.spawn().unwrap();
    // Opens the gate however the test ends, so the create never hangs.
    struct Gate<'a>(&'a Path);
    impl Drop for Gate<'_> {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0, "");
        }
    }
    let gate_guard = Gate(&gate);
    assert!(
        wait_for(10, || c.root().join(&c.id).exists()),
        "create never began"
    );
    // Each read runs in a thread: a read that blocks fails the test instead
    // of hanging it (the create waits for the gate as long as we want).
    let read = |args: Vec<String>| {
        let mut cmd = c.cmd();
        cmd.args(&args);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(vessel_tests::harness::output_via_files(&mut cmd));
        });
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{args:?} waited behind the create"))
    };
    let l = read(vec!["list".into(), "--format".into(), "json".into()]);
    let listed: Value = serde_json::from_str(&ok(&l)).unwrap();
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == c.id.as_str())
        .unwrap_or_else(|| panic!("not listed: {listed}"));
    assert_eq!(me["status"], "creating", "{me}");
    let s = read(vec!["state".into(), c.id.clone()]);
    let s: Value = serde_json::from_str(&ok(&s)).unwrap();
    assert_eq!(s["status"], "creating", "{s}");
    drop(gate_guard);
    assert!(child.wait().unwrap().success());
    assert_eq!(c.status(), "created");
}

/// Two `delete --force` of one container at once both succeed.
#[test]
fn concurrent_force_deletes_both_succeed() {
    require_root!();
    for _ in 0..10 {
        let c = Ctr::new("ddel", &["sleep", "1000"]);
        c.create();
        c.start();
        let spawn = || {
            let mut cmd = c.cmd();
            cmd.args(["delete", "--force", &c.id]);
            std::thread::spawn(move || vessel_tests::harness::output_via_files(&mut cmd))
        };
        let (a, b) = (spawn(), spawn());
        for o in [a.join().unwrap(), b.join().unwrap()] {
            assert!(o.status.success(), "a delete failed: {}", stderr(&o));
            assert!(stderr(&o).is_empty(), "{}", stderr(&o));
        }
        assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
    }
}

/// `kill ID 0` succeeds while the workload runs and fails once it stopped.
#[test]
fn signal_zero_checks_the_process() {
    require_root!();
    let c = Ctr::new("sig0", &["sleep", "1000"]);
    c.create();
    ok(&c.v(&["kill", &c.id, "0"]));
    c.start();
    ok(&c.v(&["kill", &c.id, "0"]));
    assert_eq!(c.status(), "running", "signal 0 must not be delivered");
    ok(&c.v(&["kill", &c.id, "KILL"]));
    assert!(c.wait_status("stopped"));
    let e = fails(&c.v(&["kill", &c.id, "0"]));
    assert!(e.contains("not running"), "{e}");
}

/// The killed commands in vm mode: a VM `create` killed while the VM boots
/// leaves a container that `delete --force` removes with its QEMU, scratch
/// image and cgroup.
#[test]
fn killed_vm_creates_are_removable() {
    require_root!();
    if !vessel_tests::vm::vm_available() {
        return;
    }
    let mut rng = Rng::from_env();
    for n in 0..3 {
        let v = vessel_tests::vm::VmCtr::new("kvm", &["sleep", "1000"]);
        let c = &v.ctr;
        let b = c.bundle.path().to_str().unwrap().to_string();
        // A boot takes seconds under TCG: kill somewhere in its first 4 s.
        let delay = Duration::from_millis(300 + (rng.unit() * 3700.0) as u64);
        kill_after(c, &["create", "--bundle", &b, &c.id], delay);
        check_removable(c, &c.id, &format!("vm create #{n} killed after {delay:?}"));
        let scratch = vessel_tests::vm::test_cache().join("scratch");
        let mine: Vec<_> = std::fs::read_dir(&scratch)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&c.id))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(mine.is_empty(), "scratch images left: {mine:?}");
        assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
        let qemu: Vec<_> = leaks::processes_mentioning(&c.root().display().to_string());
        assert!(qemu.is_empty(), "VM processes left: {qemu:?}");
    }
}
