//! containerd drives vessel through vessel's own shim: a private
//! containerd (Debian's 1.6) runs `ctr run --runtime io.containerd.vessel.v2`,
//! which starts `containerd-shim-vessel-v2` (the build under test, on
//! containerd's `$PATH`), which runs the vessel under test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vessel_tests::clients::{self, Run, Scratch, IMAGE};
use vessel_tests::shim_client::{ShimContainerd, RUNTIME, SHIM_VESSEL_ROOT};
use vessel_tests::vm;

const LIMIT: Duration = Duration::from_secs(60);

/// Removes an (empty) directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fields drop in order: containerd (tasks, daemon, shims) before the
/// scratch directory (vessel containers, mounts, files) and vessel's
/// per-namespace root.
struct Env {
    containerd: ShimContainerd,
    ns: String,
    scratch: Scratch,
    _root: RemoveDir,
}

impl Env {
    fn new(tag: &str) -> Option<Env> {
        Env::with_vessel(tag, &clients::vessel_abs())
    }

    /// An environment whose shim runs `vessel`.
    fn with_vessel(tag: &str, vessel: &Path) -> Option<Env> {
        let bins = clients::require_clients(&["containerd", "ctr"])?;
        let mut scratch = Scratch::new(&format!("shim-{tag}"));
        // A namespace per test: containers' cgroups are /<ns>/<id> and
        // vessel's root is <SHIM_VESSEL_ROOT>/<ns>, so tests running at
        // once never meet.
        let ns = format!("vshim-{tag}");
        let root = Path::new(SHIM_VESSEL_ROOT).join(&ns);
        scratch.vessel_root(root.clone());
        scratch.cgroup(&ns);
        let containerd =
            ShimContainerd::start_with_vessel(&bins[0], &bins[1], &scratch.path, vessel);
        let env = Env {
            containerd,
            ns,
            scratch,
            _root: RemoveDir(root),
        };
        let archive = clients::busybox_image_archive(&env.scratch.path);
        let r = env
            .ctr(&["image", "import", archive.to_str().unwrap()])
            .check();
        assert!(r.stdout.contains(IMAGE), "ctr image import: {r}");
        Some(env)
    }

    fn ctr(&self, args: &[&str]) -> Run {
        self.containerd.ctr(&self.ns, args, LIMIT)
    }

    /// `ctr run --runtime io.containerd.vessel.v2 <opts> IMAGE <id> <cmd>`.
    fn run(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Run {
        let mut args = vec!["run", "--runtime", RUNTIME];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// vessel's root for this namespace, as the shim passes it.
    fn vessel_root(&self) -> PathBuf {
        Path::new(SHIM_VESSEL_ROOT).join(&self.ns)
    }

    fn task_row(&self, id: &str) -> Option<(String, String)> {
        let r = self.ctr(&["task", "ls"]).check();
        r.stdout.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| {
                (
                    f.get(1).unwrap_or(&"").to_string(),
                    f.get(2).unwrap_or(&"").to_string(),
                )
            })
        })
    }

    fn wait_status(&self, id: &str, want: &str) {
        let ok = clients::wait_until(Duration::from_secs(20), || {
            self.task_row(id).map(|r| r.1).as_deref() == Some(want)
        });
        assert!(
            ok,
            "task {id} never became {want}: {:?}\n{}",
            self.task_row(id),
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let s = self.containerd.log_text();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// How many events of `topic` containerd forwarded for this namespace.
    fn events(&self, topic: &str) -> usize {
        let ns = format!("ns={} ", self.ns);
        let t = format!("topic={topic} ");
        self.containerd
            .log_text()
            .lines()
            .filter(|l| l.contains("event forwarded") && l.contains(&ns) && l.contains(&t))
            .count()
    }

    /// vessel's containers left in this namespace's root.
    fn vessel_left(&self) -> Vec<String> {
        clients::vessel_containers_under(&self.vessel_root(), 0)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// The exit status `ctr task delete` reports ("exit code N").
    fn delete_task(&self, id: &str) -> Option<i32> {
        let r = self.ctr(&["task", "delete", id]).check();
        let s = r.stderr.split("exit code ").nth(1)?;
        s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }
}

/// True when `pid` is alive (not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn shim_run_prints_output_and_returns_exit_status() {
    let Some(env) = Env::new("run") else {
        return;
    };
    let r = env.run(
        &["--rm"],
        "run1",
        &[
            "sh",
            "-c",
            "echo hello from the shim; echo pid=$$; echo to-stderr >&2; exit 5",
        ],
    );
    assert_eq!(
        r.code,
        Some(5),
        "ctr run returns the task's exit status: {r}"
    );
    assert_eq!(r.stdout, "hello from the shim\npid=1\n", "{r}");
    assert!(r.stderr.contains("to-stderr"), "{r}");

    let r = env.run(&["--rm"], "run2", &["true"]);
    assert_eq!(r.code, Some(0), "{r}");

    // The shim ran vessel (its root for the namespace exists) and deleted
    // every vessel container again; no shim outlives its task.
    assert!(
        env.vessel_root().is_dir(),
        "no vessel root at {}",
        env.vessel_root().display()
    );
    assert_eq!(env.vessel_left(), Vec::<String>::new());
    assert!(
        clients::wait_until(Duration::from_secs(10), || env
            .containerd
            .shim_pids()
            .is_empty()),
        "shims left after ctr run --rm: {:?}",
        env.containerd.shim_pids()
    );
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert_eq!(env.events(topic), 2, "{topic} events\n{}", env.log_tail());
    }
}

#[test]
fn shim_detached_exec_ps_metrics_pause_kill() {
    let Some(env) = Env::new("life") else {
        return;
    };
    let id = "life";
    // The init exits 42 on SIGTERM, so `ctr task kill` shows the signal arrived.
    env.run(
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

    let st = clients::vessel_state(&env.vessel_root(), id)
        .unwrap_or_else(|| panic!("vessel does not know {id}\n{}", env.log_tail()));
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["isolation"], "container", "{st}");
    let pid = st["pid"].as_i64().unwrap_or(0);
    let (task_pid, _) = env.task_row(id).unwrap();
    assert_eq!(
        task_pid,
        pid.to_string(),
        "ctr task ls shows vessel's init pid"
    );

    // exec: output and exit status, and it sees the init as pid 1.
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
    assert!(r.stdout.starts_with("sh\0-c\0trap"), "{r}");
    assert_eq!(env.events("/tasks/exec-added"), 2, "{}", env.log_tail());
    assert_eq!(env.events("/tasks/exec-started"), 2, "{}", env.log_tail());

    // ctr task ps: the init and a running exec's process.
    env.ctr(&["task", "exec", "-d", "--exec-id", "bg", id, "sleep", "1000"])
        .check();
    let ps = clients::wait_until(Duration::from_secs(10), || {
        env.ctr(&["task", "ps", id])
            .check()
            .stdout
            .lines()
            .skip(1)
            .count()
            >= 2
    });
    let out = env.ctr(&["task", "ps", id]).check();
    assert!(ps, "ctr task ps lists init and exec: {out}");
    assert!(
        out.stdout
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "ctr task ps lists the init {pid}: {out}"
    );
    env.ctr(&["task", "kill", "--exec-id", "bg", "-s", "SIGKILL", id])
        .check();

    // Metrics: the memory limit vessel applied, and live counters.
    let m = env.ctr(&["task", "metrics", id]).check();
    let limit = m
        .stdout
        .lines()
        .find(|l| l.starts_with("memory.limit_in_bytes"))
        .and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(limit, Some("67108864"), "{m}");
    let pids_current: u64 = m
        .stdout
        .lines()
        .find(|l| l.starts_with("pids.current"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(pids_current >= 1, "{m}");

    env.ctr(&["task", "pause", id]).check();
    env.wait_status(id, "PAUSED");
    let st = clients::vessel_state(&env.vessel_root(), id).expect("state while paused");
    assert_eq!(st["status"], "paused", "{st}");
    env.ctr(&["task", "resume", id]).check();
    env.wait_status(id, "RUNNING");
    assert!(env.events("/tasks/paused") >= 1, "{}", env.log_tail());
    assert!(env.events("/tasks/resumed") >= 1, "{}", env.log_tail());

    env.ctr(&["task", "kill", id]).check();
    env.wait_status(id, "STOPPED");
    assert_eq!(env.delete_task(id), Some(42), "exit status after SIGTERM");
    assert!(clients::vessel_state(&env.vessel_root(), id).is_none());

    // Again, with SIGKILL: 128 + 9.
    env.ctr(&["task", "start", "-d", id]).check();
    env.wait_status(id, "RUNNING");
    env.ctr(&["task", "kill", "-s", "SIGKILL", id]).check();
    env.wait_status(id, "STOPPED");
    assert_eq!(env.delete_task(id), Some(137));
    env.ctr(&["containers", "rm", id]).check();
    assert_eq!(env.vessel_left(), Vec::<String>::new());
}

#[test]
fn shim_task_that_exits_on_its_own() {
    let Some(env) = Env::new("exit") else {
        return;
    };
    let id = "self-exit";
    env.run(&["-d"], id, &["sh", "-c", "sleep 0.5; exit 9"])
        .check();
    // Nobody kills it: the shim sees the exit and reports it.
    env.wait_status(id, "STOPPED");
    assert_eq!(env.events("/tasks/exit"), 1, "{}", env.log_tail());
    assert_eq!(env.delete_task(id), Some(9));
    env.ctr(&["containers", "rm", id]).check();
    assert_eq!(env.vessel_left(), Vec::<String>::new());
}

/// `ctr run -t` and `ctr task exec -t`: vessel sends the shim a pty master
/// over the console socket; ctr needs a terminal of its own (`script`).
#[test]
fn shim_terminal() {
    let Some(env) = Env::new("tty") else {
        return;
    };
    let Some(script) = clients::which("script") else {
        eprintln!("SKIP: script (bsdutils) is not installed");
        return;
    };
    let under_script = |args: &[&str]| {
        clients::run(
            std::process::Command::new(&script).args([
                "-eqc",
                &env.containerd.ctr_cmdline(&env.ns, args),
                "/dev/null",
            ]),
            LIMIT,
        )
    };
    let r = under_script(&[
        "run",
        "-t",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "tty1",
        "sh",
        "-c",
        "tty; [ -t 0 ] && echo is-a-tty; stty size; exit 3",
    ]);
    assert_eq!(r.code, Some(3), "exit status through the terminal: {r}");
    assert!(r.stdout.contains("/dev/pts/0"), "{r}");
    assert!(r.stdout.contains("is-a-tty"), "{r}");

    env.run(&["-d"], "tty2", &["sleep", "1000"]).check();
    env.wait_status("tty2", "RUNNING");
    let r = under_script(&[
        "task",
        "exec",
        "-t",
        "--exec-id",
        "t1",
        "tty2",
        "sh",
        "-c",
        "tty; exit 5",
    ]);
    assert_eq!(r.code, Some(5), "{r}");
    assert!(r.stdout.contains("/dev/pts/"), "{r}");
    env.ctr(&["task", "kill", "-s", "SIGKILL", "tty2"]).check();
    env.wait_status("tty2", "STOPPED");
    env.ctr(&["task", "delete", "tty2"]).check();
}

#[test]
fn shim_stdin_and_log_uris() {
    let Some(env) = Env::new("logs") else {
        return;
    };
    // stdin through the fifo, closed at end of input.
    let mut cmd = std::process::Command::new(&env.containerd.ctr);
    cmd.arg("-a")
        .arg(&env.containerd.sock)
        .args([
            "-n",
            &env.ns,
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            IMAGE,
            "in1",
        ])
        .args(["sh", "-c", "cat; echo done"]);
    let r = clients::run_with_input(&mut cmd, b"line one\nline two\n", LIMIT);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(r.stdout, "line one\nline two\ndone\n", "{r}");

    // file://: stdout and stderr appended to one file.
    let file = env.scratch.join("task.log");
    let uri = format!("file://{}", file.display());
    let r = env.run(
        &["--rm", "--log-uri", &uri],
        "file1",
        &["sh", "-c", "echo out-line; echo err-line >&2; exit 2"],
    );
    assert_eq!(r.code, Some(2), "{r}");
    let logged = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        logged.contains("out-line\n") && logged.contains("err-line\n"),
        "{logged:?}"
    );

    // binary://: containerd's logging-driver protocol (stdout on fd 3,
    // stderr on fd 4, fd 5 closed when ready, the container's id and
    // namespace in the environment, query pairs as arguments).
    let driver = env.scratch.join("log-driver.sh");
    let out = env.scratch.join("driver");
    std::fs::write(
        &driver,
        format!(
            "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $*\" > {o}.meta\ncat <&3 > {o}.out &\ncat <&4 > {o}.err\nwait\n",
            o = out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&driver, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?tag=web", driver.display());
    let r = env.run(
        &["--rm", "--log-uri", &uri],
        "bin1",
        &["sh", "-c", "echo to-driver; echo err-driver >&2"],
    );
    assert_eq!(r.code, Some(0), "{r}");
    let read = |ext: &str| {
        let p = out.with_extension(ext);
        clients::wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&p)
                .map(|s| !s.is_empty())
                .unwrap_or(false)
        });
        std::fs::read_to_string(&p).unwrap_or_default()
    };
    assert_eq!(read("out"), "to-driver\n");
    assert_eq!(read("err"), "err-driver\n");
    assert_eq!(read("meta"), format!("{}/bin1 tag web\n", env.ns));
}

#[test]
fn shim_survives_containerd_restart() {
    let Some(mut env) = Env::new("restart") else {
        return;
    };
    let id = "keep";
    env.run(
        &["-d"],
        id,
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
    )
    .check();
    env.wait_status(id, "RUNNING");
    let shim = env
        .containerd
        .shim_pid_of(&env.ns, id)
        .expect("the task's shim");
    let (pid, _) = env.task_row(id).unwrap();

    env.containerd.restart();

    // The same shim and task, reached again through the shim's socket.
    assert!(alive(shim), "the shim died with containerd");
    assert_eq!(env.containerd.shim_pid_of(&env.ns, id), Some(shim));
    assert_eq!(env.task_row(id), Some((pid, "RUNNING".to_string())));
    let r = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        id,
        "echo",
        "after restart",
    ]);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(r.stdout, "after restart\n");
    env.ctr(&["task", "kill", id]).check();
    env.wait_status(id, "STOPPED");
    assert_eq!(env.delete_task(id), Some(7));
    env.ctr(&["containers", "rm", id]).check();
    // Events reach the new containerd too (the shim reconnects).
    let after = env.containerd.logs.last().unwrap();
    let log = std::fs::read_to_string(after).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("topic=/tasks/exit") && l.contains("event forwarded")),
        "no TaskExit reached the restarted containerd:\n{}",
        env.log_tail()
    );
    assert!(
        clients::wait_until(Duration::from_secs(10), || !alive(shim)),
        "the shim outlives its deleted task"
    );
}

#[test]
fn shim_killed_with_sigkill_leaves_nothing() {
    let Some(env) = Env::new("kill9") else {
        return;
    };
    let id = "victim";
    env.run(&["-d"], id, &["sleep", "1000"]).check();
    env.wait_status(id, "RUNNING");
    let shim = env
        .containerd
        .shim_pid_of(&env.ns, id)
        .expect("the task's shim");
    let st = clients::vessel_state(&env.vessel_root(), id).expect("vessel state");
    let pid = st["pid"].as_i64().unwrap() as i32;
    let bundle = env
        .containerd
        .state
        .join("io.containerd.runtime.v2.task")
        .join(&env.ns)
        .join(id);
    assert!(
        !clients::mounts_under(&bundle).is_empty(),
        "the shim mounted the rootfs in {}",
        bundle.display()
    );

    let address = std::fs::read_to_string(bundle.join("address")).unwrap();
    let socket = PathBuf::from(address.trim().trim_start_matches("unix://"));
    assert!(socket.exists(), "{}", socket.display());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::SIGKILL).unwrap();

    // containerd notices, runs `containerd-shim-vessel-v2 delete`, which
    // runs `vessel delete --force`: no task, no vessel state, no process,
    // no cgroup, no mount, no bundle.
    let gone = clients::wait_until(Duration::from_secs(20), || env.task_row(id).is_none());
    assert!(gone, "task still listed\n{}", env.log_tail());
    assert!(
        clients::wait_until(Duration::from_secs(10), || !alive(pid)),
        "the container's init {pid} survived"
    );
    // containerd drops the task from its list before its cleanup ends.
    let clean = clients::wait_until(Duration::from_secs(20), || {
        env.vessel_left().is_empty()
            && !bundle.exists()
            && clients::mounts_under(&bundle).is_empty()
    });
    assert!(
        clean,
        "left behind: vessel {:?}, mounts {:?}, bundle exists {}\n{}",
        env.vessel_left(),
        clients::mounts_under(&bundle),
        bundle.exists(),
        env.log_tail()
    );
    for ctl in ["memory", "pids", "cpu"] {
        let cg = Path::new("/sys/fs/cgroup").join(ctl).join(&env.ns).join(id);
        assert!(!cg.exists(), "cgroup left: {}", cg.display());
    }
    let cg2 = Path::new("/sys/fs/cgroup").join(&env.ns).join(id);
    assert!(
        !cg2.join("cgroup.procs").exists(),
        "cgroup left: {}",
        cg2.display()
    );
    assert!(env.containerd.shim_pids().is_empty());
    assert!(
        !socket.exists(),
        "the dead shim's socket {} is left",
        socket.display()
    );
    env.ctr(&["containers", "rm", id]).check();
}

#[test]
fn shim_oom_event_and_checkpoint_refused() {
    let Some(env) = Env::new("oom") else {
        return;
    };
    // 16 MiB limit, a 64 MiB buffer: the kernel OOM-kills dd.
    let r = env.run(
        &["--rm", "--memory-limit", "16777216"],
        "oom1",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    assert_eq!(r.code, Some(137), "{r}");
    assert!(
        clients::wait_until(Duration::from_secs(5), || env.events("/tasks/oom") >= 1),
        "no TaskOOM\n{}",
        env.log_tail()
    );

    env.run(&["-d"], "cp1", &["sleep", "1000"]).check();
    env.wait_status("cp1", "RUNNING");
    let r = env.ctr(&["task", "checkpoint", "cp1"]);
    assert_ne!(r.code, Some(0), "{r}");
    assert!(r.stderr.contains("vessel does not checkpoint"), "{r}");
    assert!(r.stderr.contains("not implemented"), "{r}");
    env.wait_status("cp1", "RUNNING");
}

const VM: &str = "io.vessel.isolation=vm";

/// A VM-mode environment: the shim runs the static vessel (the guest
/// agent must be static; `make test` builds it), with a runtime
/// configuration that uses the tests' image cache. Removes the rootfs
/// images its containers made from the cache when dropped.
struct VmEnv {
    env: Env,
    /// `--runtime-config-path`: `[vm] cache_dir` only.
    cache_config: String,
    images: Vec<PathBuf>,
}

impl VmEnv {
    /// `None` (with the reason printed) unless `vessel features` of the
    /// static vessel lists vm among its isolation modes.
    fn new(tag: &str) -> Option<VmEnv> {
        clients::require_clients(&["containerd", "ctr"])?;
        if !vm::vm_available() {
            return None;
        }
        let vessel = vm::static_vessel();
        let env = Env::with_vessel(tag, &vessel)?;
        let cfg = env.scratch.join("vessel-cache.toml");
        std::fs::write(
            &cfg,
            format!(
                "[vm]\ncache_dir = {:?}\n",
                vm::test_cache().display().to_string()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(&vessel)
            .arg("--config")
            .arg(&cfg)
            .arg("features")
            .output()
            .expect("vessel features");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let modes = v["annotations"]["io.vessel.isolation.modes"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !modes.split(',').any(|m| m.trim() == "vm") {
            eprintln!(
                "SKIP: {} features lists isolation modes {modes:?}, without vm ({}): \
                 VM-mode shim tests need it",
                vessel.display(),
                v["annotations"]["io.vessel.vm.unavailable"]
            );
            return None;
        }
        Some(VmEnv {
            env,
            cache_config: cfg.to_string_lossy().into_owned(),
            images: Vec::new(),
        })
    }

    /// Remembers the rootfs image vessel made for running task `id`.
    fn note_image(&mut self, id: &str) {
        let rootfs = self
            .env
            .containerd
            .state
            .join("io.containerd.runtime.v2.task")
            .join(&self.env.ns)
            .join(id)
            .join("rootfs");
        if let Ok((hash, _, _)) = vessel_vm::guest::tree_hash(&rootfs) {
            self.images
                .push(vm::test_cache().join(format!("rootfs-{hash}.erofs")));
        }
    }
}

impl Drop for VmEnv {
    fn drop(&mut self) {
        self.env.containerd.remove_everything();
        for i in &self.images {
            let _ = std::fs::remove_file(i);
        }
    }
}

/// VM mode through the annotation: output and exit status, a detached
/// task with exec, `ctr task ps`, metrics and kill, and a task that exits
/// on its own. Each boots a TCG guest.
#[test]
fn shim_vm_mode_by_annotation() {
    let Some(mut venv) = VmEnv::new("vm") else {
        return;
    };
    let cfg = venv.cache_config.clone();
    let vm_opts = ["--annotation", VM, "--runtime-config-path", cfg.as_str()];
    let env = &venv.env;
    let mut opts = vec!["--rm"];
    opts.extend(vm_opts);
    let r = env.run(
        &opts,
        "vm-run",
        &["sh", "-c", "echo hello from a microvm; exit 3"],
    );
    assert_eq!(r.code, Some(3), "{r}\n{}", env.log_tail());
    assert_eq!(r.stdout, "hello from a microvm\n", "{r}");

    let id = "vm-life";
    let mut opts = vec!["-d"];
    opts.extend(vm_opts);
    env.run(
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
    venv.note_image(id);
    let env = &venv.env;
    let st = clients::vessel_state(&env.vessel_root(), id).expect("vessel state");
    assert_eq!(st["isolation"], "vm", "{st}");
    let r = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in guest; exit 4",
    ]);
    assert_eq!(r.code, Some(4), "{r}");
    assert_eq!(r.stdout, "in guest\n", "{r}");
    let ps = env.ctr(&["task", "ps", id]).check();
    assert!(ps.stdout.lines().skip(1).count() >= 1, "{ps}");
    let m = env.ctr(&["task", "metrics", id]).check();
    assert!(m.stdout.contains("memory.usage_in_bytes"), "{m}");
    env.ctr(&["task", "kill", id]).check();
    env.wait_status(id, "STOPPED");
    assert_eq!(env.delete_task(id), Some(42));
    env.ctr(&["containers", "rm", id]).check();

    env.run(&opts, "vm-exit", &["sh", "-c", "sleep 1; exit 9"])
        .check();
    env.wait_status("vm-exit", "RUNNING");
    venv.note_image("vm-exit");
    let env = &venv.env;
    env.wait_status("vm-exit", "STOPPED");
    assert_eq!(env.delete_task("vm-exit"), Some(9));
    env.ctr(&["containers", "rm", "vm-exit"]).check();
    assert_eq!(env.vessel_left(), Vec::<String>::new());
}

/// VM mode for a whole runtime handler: `--runtime-config-path` hands the
/// shim CRI's runtime options with a config path, which the shim passes
/// as `vessel --config` (`isolation = "vm"`). Then containerd restarts
/// under the running microVM, and its shim is killed with SIGKILL.
#[test]
fn shim_vm_mode_by_config_restart_and_kill9() {
    let Some(mut venv) = VmEnv::new("vmcfg") else {
        return;
    };
    let cfg = venv.env.scratch.join("vessel-vm.toml");
    std::fs::write(
        &cfg,
        format!(
            "isolation = \"vm\"\n[vm]\ncache_dir = {:?}\n",
            vm::test_cache().display().to_string()
        ),
    )
    .unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let id = "vm-cfg";
    venv.env
        .run(
            &["-d", "--runtime-config-path", &cfg],
            id,
            &[
                "sh",
                "-c",
                "trap 'exit 7' TERM; while :; do sleep 0.1; done",
            ],
        )
        .check();
    venv.env.wait_status(id, "RUNNING");
    venv.note_image(id);
    let env = &mut venv.env;
    let st = clients::vessel_state(&env.vessel_root(), id).expect("vessel state");
    assert_eq!(
        st["isolation"], "vm",
        "the config file selected VM mode: {st}"
    );

    let shim = env.containerd.shim_pid_of(&env.ns, id).expect("shim");
    env.containerd.restart();
    assert!(alive(shim), "the shim died with containerd");
    env.wait_status(id, "RUNNING");
    let r = env.ctr(&["task", "exec", "--exec-id", "x", id, "echo", "still here"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(r.stdout, "still here\n");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::SIGKILL).unwrap();
    let gone = clients::wait_until(Duration::from_secs(30), || {
        env.task_row(id).is_none() && env.vessel_left().is_empty()
    });
    assert!(
        gone,
        "after kill -9 of the shim: task {:?}, vessel {:?}\n{}",
        env.task_row(id),
        env.vessel_left(),
        env.log_tail()
    );
    let pid = st["pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        clients::wait_until(Duration::from_secs(10), || !alive(pid)),
        "the microVM's process {pid} survived"
    );
    env.ctr(&["containers", "rm", id]).check();
}

/// Containers that carry the same CRI sandbox id share one shim, as a
/// Kubernetes pod's containers do; the shim stays while any of them is
/// left and exits after the last.
#[test]
fn shim_groups_a_pods_containers() {
    let Some(env) = Env::new("pod") else {
        return;
    };
    let pod = ["--annotation", "io.kubernetes.cri.sandbox-id=pod1"];
    let mut opts = vec!["-d"];
    opts.extend(pod);
    env.run(&opts, "pod1", &["sleep", "1000"]).check();
    env.wait_status("pod1", "RUNNING");
    env.run(
        &opts,
        "app",
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; while :; do sleep 0.1; done",
        ],
    )
    .check();
    env.wait_status("app", "RUNNING");
    let shims = env.containerd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    let r = env.ctr(&["task", "exec", "--exec-id", "x", "app", "echo", "in app"]);
    assert_eq!(r.stdout, "in app\n", "{r}");

    env.ctr(&["task", "kill", "app"]).check();
    env.wait_status("app", "STOPPED");
    assert_eq!(env.delete_task("app"), Some(3));
    env.ctr(&["containers", "rm", "app"]).check();
    assert!(
        alive(shims[0]),
        "the shim left while the pod's sandbox runs"
    );
    env.wait_status("pod1", "RUNNING");

    env.ctr(&["task", "kill", "-s", "SIGKILL", "pod1"]).check();
    env.wait_status("pod1", "STOPPED");
    assert_eq!(env.delete_task("pod1"), Some(137));
    env.ctr(&["containers", "rm", "pod1"]).check();
    assert!(
        clients::wait_until(Duration::from_secs(10), || !alive(shims[0])),
        "the shim outlives the pod"
    );
}
