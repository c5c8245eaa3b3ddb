//! containerd drives vessel: a private containerd (Debian's 1.6) runs a
//! busybox image imported with `ctr image import` through the stock
//! `io.containerd.runc.v2` shim, whose runc binary (`BinaryName`, set by
//! `ctr run --runc-binary`) is vessel and whose runc root (`--runc-root`)
//! is in the test's scratch directory.

use std::path::PathBuf;
use std::time::Duration;

use vessel_tests::clients::{self, Containerd, Run, Scratch, IMAGE};

const NS: &str = "vessel-test";
const LIMIT: Duration = Duration::from_secs(30);

/// Fields drop in order: containerd (tasks, daemon, shims) before the
/// scratch directory (vessel containers, mounts, files).
struct Env {
    containerd: Containerd,
    vessel: PathBuf,
    /// The shim's `--root` for vessel; the shim adds the namespace.
    vroot: PathBuf,
    scratch: Scratch,
    /// The containerd namespace (also the parent cgroup of its tasks).
    ns: &'static str,
}

impl Env {
    fn new(tag: &str) -> Option<Env> {
        Env::in_namespace(tag, NS)
    }

    /// An environment whose tasks live in namespace (and cgroup) `ns`: a
    /// test that creates its cgroup slowly (a VM) must not share the parent
    /// cgroup that another test's cleanup removes once empty.
    fn in_namespace(tag: &str, ns: &'static str) -> Option<Env> {
        let bins = clients::require_clients(&["containerd", "ctr", "containerd-shim-runc-v2"])?;
        let mut scratch = Scratch::new(tag);
        let vroot = scratch.join("runc");
        scratch.vessel_root(vroot.clone());
        scratch.cgroup(ns);
        let containerd = Containerd::start(&bins[0], &bins[1], &scratch.path);
        let env = Env {
            containerd,
            vessel: clients::vessel_abs(),
            vroot,
            scratch,
            ns,
        };
        let archive = clients::busybox_image_archive(&env.scratch.path);
        let r = env
            .ctr(&["image", "import", archive.to_str().unwrap()])
            .check();
        assert!(r.stdout.contains(IMAGE), "ctr image import: {r}");
        Some(env)
    }

    fn ctr(&self, args: &[&str]) -> Run {
        self.containerd.ctr_ns(self.ns, args, LIMIT)
    }

    /// `ctr run` through the runc v2 shim with vessel as its runc.
    fn ctr_run(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Run {
        let vessel = self.vessel.to_string_lossy().into_owned();
        let vroot = self.vroot.to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            &vessel,
            "--runc-root",
            &vroot,
        ];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// vessel's root for this namespace, as the shim passes it.
    fn vessel_ns_root(&self) -> PathBuf {
        self.vroot.join(self.ns)
    }

    /// The task's status column in `ctr task ls`.
    fn task_status(&self, id: &str) -> Option<String> {
        let r = self.ctr(&["task", "ls"]).check();
        r.stdout.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    }

    fn wait_status(&self, id: &str, want: &str) {
        let ok = clients::wait_until(Duration::from_secs(10), || {
            self.task_status(id).as_deref() == Some(want)
        });
        assert!(
            ok,
            "task {id} never became {want}: {:?}\n{}",
            self.task_status(id),
            self.containerd.log_tail()
        );
    }
}

#[test]
fn ctr_run_prints_output_and_returns_exit_status() {
    let Some(env) = Env::new("ctr-run") else {
        return;
    };

    let r = env.ctr_run(
        &["--rm"],
        "vessel-run",
        &["sh", "-c", "echo hello from vessel; echo pid=$$; exit 5"],
    );
    assert_eq!(
        r.code,
        Some(5),
        "ctr run --rm returns the task's exit status: {r}"
    );
    assert_eq!(r.stdout, "hello from vessel\npid=1\n", "{r}");

    let r = env.ctr_run(&["--rm"], "vessel-true", &["true"]);
    assert_eq!(r.code, Some(0), "{r}");

    // The shim ran vessel: it wrote its runc root (per namespace) and
    // vessel deleted its state again.
    assert!(
        env.vessel_ns_root().is_dir(),
        "no vessel root at {}",
        env.vessel_ns_root().display()
    );
    let left: Vec<_> = std::fs::read_dir(env.vessel_ns_root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "vessel state left after ctr run --rm: {left:?}"
    );
    let cs = env.ctr(&["containers", "ls", "-q"]).check();
    assert_eq!(cs.stdout.trim(), "", "{cs}");
}

#[test]
fn ctr_detached_exec_ps_pause_kill() {
    let Some(env) = Env::new("ctr-life") else {
        return;
    };
    let id = "vessel-life";

    // The init exits 42 on SIGTERM, so `ctr task kill` shows the signal arrived.
    env.ctr_run(
        &["-d", "--memory-limit", "67108864"],
        id,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.1; done",
        ],
    )
    .check();
    env.wait_status(id, "RUNNING");

    // ctr's cgroupsPath is /<namespace>/<id>: vessel applied the limit there.
    let limit_file = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        format!("/sys/fs/cgroup/{NS}/{id}/memory.max")
    } else {
        format!("/sys/fs/cgroup/memory/{NS}/{id}/memory.limit_in_bytes")
    };
    let limit =
        std::fs::read_to_string(&limit_file).unwrap_or_else(|e| panic!("{limit_file}: {e}"));
    assert_eq!(limit.trim(), "67108864", "{limit_file}");

    // vessel is the runtime behind the shim: its state has the task, with
    // vessel's own `isolation` field, and the pid containerd reports.
    let st = clients::vessel_state(&env.vessel_ns_root(), id).unwrap_or_else(|| {
        panic!(
            "vessel --root {} does not know {id}\n{}",
            env.vessel_ns_root().display(),
            env.containerd.log_tail()
        )
    });
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["isolation"], "container", "{st}");
    let tasks = env.ctr(&["task", "ls"]).check();
    let pid = st["pid"].as_i64().unwrap_or(0);
    assert!(
        pid > 1 && tasks.stdout.contains(&pid.to_string()),
        "pid {pid} vs {tasks}"
    );

    let r = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in exec; exit 4",
    ]);
    assert_eq!(r.code, Some(4), "exec's exit status: {r}");
    assert_eq!(r.stdout, "in exec\n", "{r}");
    let r = env
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e2",
            id,
            "cat",
            "/proc/1/cmdline",
        ])
        .check();
    assert!(
        r.stdout.starts_with("sh\0-c\0trap"),
        "exec sees the task's init as pid 1: {r}"
    );

    let ps = env.ctr(&["task", "ps", id]).check();
    assert!(
        ps.stdout
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "ctr task ps lists the init {pid}: {ps}"
    );

    env.ctr(&["task", "pause", id]).check();
    env.wait_status(id, "PAUSED");
    let st = clients::vessel_state(&env.vessel_ns_root(), id).expect("state while paused");
    assert_eq!(st["status"], "paused", "{st}");
    env.ctr(&["task", "resume", id]).check();
    env.wait_status(id, "RUNNING");

    env.ctr(&["task", "kill", id]).check();
    env.wait_status(id, "STOPPED");
    let r = env.ctr(&["task", "delete", id]).check();
    assert!(
        r.stderr.contains("exit code 42"),
        "the task's exit status is 42: {r}"
    );
    assert!(
        clients::vessel_state(&env.vessel_ns_root(), id).is_none(),
        "vessel state survives ctr task delete"
    );

    // SIGKILL: exit status 128 + 9.
    env.ctr(&["task", "start", "-d", id]).check();
    env.wait_status(id, "RUNNING");
    env.ctr(&["task", "kill", "-s", "SIGKILL", id]).check();
    env.wait_status(id, "STOPPED");
    let r = env.ctr(&["task", "delete", id]).check();
    assert!(r.stderr.contains("exit code 137"), "{r}");
    env.ctr(&["containers", "rm", id]).check();
}

/// `ctr run -t` and `ctr task exec -t`: the shim hands vessel a console
/// socket; ctr needs a terminal of its own, which `script` provides.
#[test]
fn ctr_terminal() {
    let Some(env) = Env::new("ctr-tty") else {
        return;
    };
    let Some(script) = clients::which("script") else {
        eprintln!("SKIP: script (bsdutils) is not installed");
        return;
    };
    let ctr = |args: &[&str]| -> String {
        let mut v = vec![
            env.containerd.ctr.to_string_lossy().into_owned(),
            "-a".into(),
            env.containerd.sock.to_string_lossy().into_owned(),
            "-n".into(),
            NS.into(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        clients::shell_join(&v)
    };
    let vessel = env.vessel.to_string_lossy().into_owned();
    let vroot = env.vroot.to_string_lossy().into_owned();
    let runc = ["--runc-binary", &vessel, "--runc-root", &vroot];

    let mut args = vec!["run", "-t", "--rm"];
    args.extend_from_slice(&runc);
    args.extend_from_slice(&[
        IMAGE,
        "vessel-tty",
        "sh",
        "-c",
        "tty; [ -t 0 ] && echo is-a-tty; exit 3",
    ]);
    let r = clients::run(
        std::process::Command::new(&script).args(["-eqc", &ctr(&args), "/dev/null"]),
        LIMIT,
    );
    assert_eq!(r.code, Some(3), "exit status through the terminal: {r}");
    assert!(r.stdout.contains("/dev/pts/0"), "{r}");
    assert!(r.stdout.contains("is-a-tty"), "{r}");

    env.ctr_run(&["-d"], "vessel-tty2", &["sleep", "1000"])
        .check();
    env.wait_status("vessel-tty2", "RUNNING");
    let r = clients::run(
        std::process::Command::new(&script).args([
            "-eqc",
            &ctr(&[
                "task",
                "exec",
                "-t",
                "--exec-id",
                "t1",
                "vessel-tty2",
                "sh",
                "-c",
                "tty; exit 5",
            ]),
            "/dev/null",
        ]),
        LIMIT,
    );
    assert_eq!(r.code, Some(5), "{r}");
    assert!(r.stdout.contains("/dev/pts/"), "{r}");
    env.ctr(&["task", "kill", "-s", "SIGKILL", "vessel-tty2"])
        .check();
    env.wait_status("vessel-tty2", "STOPPED");
    env.ctr(&["task", "delete", "vessel-tty2"]).check();
}

/// vm mode through containerd's runc v2 shim (BinaryName = the static
/// vessel): the annotation selects it; output, exit status, exec and kill
/// behave as in container mode.
#[test]
fn ctr_runs_a_vm_mode_container_through_the_annotation() {
    let Some(mut env) = Env::in_namespace("ctr-vm", "vessel-test-vm") else {
        return;
    };
    if !vessel_tests::vm::vm_available() {
        return;
    }
    env.vessel = vessel_tests::vm::static_vessel();
    let vm = ["--annotation", "io.vessel.isolation=vm"];
    let id = "vessel-vm";
    let mut opts = vec!["-d"];
    opts.extend_from_slice(&vm);
    env.ctr_run(
        &opts,
        id,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while :; do sleep 0.1; done",
        ],
    )
    .check();
    env.wait_status(id, "RUNNING");
    let st = clients::vessel_state(&env.vessel_ns_root(), id).expect("vessel knows the task");
    assert_eq!(st["isolation"], "vm", "{st}");
    // The image this test made is removed at the end (default cache).
    let image = vessel_tests::vm::rootfs_image_of(&st, &vessel_vm::guest::default_cache_dir());
    let r = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in vm exec; uname -r; exit 4",
    ]);
    assert_eq!(r.code, Some(4), "{r}");
    assert!(r.stdout.starts_with("in vm exec\n"), "{r}");
    let host = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    assert!(
        !r.stdout
            .contains(String::from_utf8_lossy(&host.stdout).trim()),
        "exec ran on the host kernel: {r}"
    );
    env.ctr(&["task", "kill", id]).check();
    env.wait_status(id, "STOPPED");
    let tasks = env.ctr(&["task", "ls"]).check();
    assert!(tasks.stdout.contains("STOPPED"), "{tasks}");
    env.ctr(&["task", "rm", id]).check();
    env.ctr(&["container", "rm", id]).check();
    assert!(clients::vessel_state(&env.vessel_ns_root(), id).is_none());
    if let Some(img) = image {
        let _ = std::fs::remove_file(img);
    }

    // A vm-mode container that exits on its own: its status is ctr's.
    let mut opts = vec!["--rm"];
    opts.extend_from_slice(&vm);
    let r = env.ctr_run(
        &opts,
        "vessel-vm2",
        &["sh", "-c", "echo from the vm; exit 6"],
    );
    assert_eq!(r.code, Some(6), "{r}");
    assert_eq!(r.stdout, "from the vm\n", "{r}");
}
