//! docker drives vessel: a private dockerd (`--add-runtime vessel=<path>`)
//! on a private containerd runs a busybox image loaded with `docker load`,
//! with `docker run --runtime vessel --network none`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vessel_tests::clients::{self, run, Containerd, Daemon, Run, Scratch, IMAGE};

const LIMIT: Duration = Duration::from_secs(30);

/// A private dockerd; dropping it removes its containers, then stops it.
struct Dockerd {
    docker: PathBuf,
    sock: PathBuf,
    daemon: Daemon,
    /// Whether /run/docker existed before: dockerd always makes
    /// /run/docker/plugins (plugin discovery), whatever its exec root.
    run_docker_existed: bool,
}

impl Dockerd {
    fn docker(&self, args: &[&str]) -> Run {
        let mut c = Command::new(&self.docker);
        c.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        run(&mut c, LIMIT)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.sock.exists() {
            let ids = self.docker(&["ps", "--all", "--quiet"]);
            for id in ids.stdout.split_whitespace() {
                let _ = self.docker(&["rm", "--force", id]);
            }
        }
        self.daemon.stop(Duration::from_secs(15));
        if !self.run_docker_existed {
            // Only if empty: another test's dockerd may have put sockets there.
            let _ = fs::remove_dir("/run/docker/plugins");
            let _ = fs::remove_dir("/run/docker");
        }
    }
}

/// Fields drop in order: dockerd, containerd, then the scratch directory.
struct Env {
    dockerd: Dockerd,
    containerd: Containerd,
    vessel: PathBuf,
    cgroup_parent: String,
    scratch: Scratch,
}

impl Env {
    fn new(tag: &str) -> Option<Env> {
        let bins = clients::require_clients(&[
            "dockerd",
            "docker",
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
        ])?;
        let mut scratch = Scratch::new(tag);
        let vessel = clients::vessel_abs();
        // dockerd gives the shim a runc root under its exec root.
        scratch.vessel_root(scratch.join("exec"));
        let cgroup_parent = format!(
            "vessel-test-{}",
            scratch.path.file_name().unwrap().to_string_lossy()
        );
        scratch.cgroup(&cgroup_parent);
        let containerd = Containerd::start(&bins[2], &bins[3], &scratch.path);

        let sock = scratch.join("docker.sock");
        let config = scratch.join("daemon.json");
        // Else dockerd 20.10 writes its trust key to /etc/docker/key.json.
        let daemon_json = serde_json::json!({ "deprecated-key-path": scratch.join("key.json") });
        fs::write(&config, daemon_json.to_string()).unwrap();
        let mut cmd = Command::new(&bins[0]);
        cmd.arg("--config-file")
            .arg(&config)
            .arg(format!("--containerd={}", containerd.sock.display()))
            .arg("--data-root")
            .arg(scratch.join("docker"))
            .arg("--exec-root")
            .arg(scratch.join("exec"))
            .arg("--pidfile")
            .arg(scratch.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg(format!("--add-runtime=vessel={}", vessel.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent={cgroup_parent}"));
        let run_docker_existed = Path::new("/run/docker").exists();
        let mut daemon = Daemon::start("dockerd", cmd, &scratch.join("dockerd.log"));
        daemon.wait_ready(&sock, Duration::from_secs(30));
        let dockerd = Dockerd {
            docker: bins[1].clone(),
            sock,
            daemon,
            run_docker_existed,
        };
        let ok = clients::wait_until(Duration::from_secs(15), || {
            dockerd.docker(&["version"]).ok()
        });
        assert!(
            ok,
            "dockerd does not answer:\n{}",
            dockerd.daemon.log_tail()
        );
        let env = Env {
            dockerd,
            containerd,
            vessel,
            cgroup_parent,
            scratch,
        };
        let archive = clients::busybox_image_archive(&env.scratch.path);
        let r = env
            .docker(&["load", "--input", archive.to_str().unwrap()])
            .check();
        assert!(r.stdout.contains(IMAGE), "docker load: {r}");
        Some(env)
    }

    fn docker(&self, args: &[&str]) -> Run {
        self.dockerd.docker(args)
    }

    /// `docker run --runtime vessel --network none <opts> IMAGE <cmd>`.
    fn docker_run(&self, opts: &[&str], cmd: &[&str]) -> Run {
        let mut args = vec!["run", "--runtime", "vessel", "--network", "none"];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.docker(&["inspect", "--format", format, name])
            .check()
            .stdout
            .trim()
            .to_string()
    }

    /// The runc root the shim passes to vessel for container `id`, from
    /// the shim's options in containerd's state (dockerd's namespace "moby").
    fn vessel_root_of(&self, id: &str) -> PathBuf {
        let opts = self
            .containerd
            .state
            .join("io.containerd.runtime.v2.task/moby")
            .join(id)
            .join("options.json");
        let text = fs::read_to_string(&opts)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", opts.display(), self.containerd.log_tail()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            Path::new(v["binary_name"].as_str().unwrap_or("")),
            self.vessel,
            "the shim's runc binary: {text}"
        );
        Path::new(v["root"].as_str().expect("root in shim options")).join("moby")
    }
}

#[test]
fn docker_run_prints_output_and_returns_exit_code() {
    let Some(env) = Env::new("dk-run") else {
        return;
    };

    let info = env
        .docker(&["info", "--format", "{{json .Runtimes}}"])
        .check();
    assert!(
        info.stdout.contains(&*env.vessel.to_string_lossy()),
        "{info}"
    );

    let r = env.docker_run(
        &["--rm"],
        &["sh", "-c", "echo hello from vessel; echo pid=$$; exit 6"],
    );
    assert_eq!(r.code, Some(6), "docker run returns the exit code: {r}");
    assert_eq!(r.stdout, "hello from vessel\npid=1\n", "{r}");

    let r = env.docker_run(
        &["--name", "vessel-run", "--hostname", "vessel-host"],
        &[
            "sh",
            "-c",
            "hostname; grep -c :/vessel-test- /proc/self/cgroup || true",
        ],
    );
    assert_eq!(r.code, Some(0), "{r}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"vessel-host"), "{r}");
    assert_eq!(
        env.inspect("vessel-run", "{{.HostConfig.Runtime}}"),
        "vessel"
    );
    assert_eq!(env.inspect("vessel-run", "{{.State.ExitCode}}"), "0");
    // dockerd's cgroup parent shows in the container's cgroup paths, so
    // vessel honoured cgroupsPath.
    assert_ne!(
        lines.get(1),
        Some(&"0"),
        "no cgroup under {}: {r}",
        env.cgroup_parent
    );
    env.docker(&["rm", "vessel-run"]).check();
    let ps = env.docker(&["ps", "--all", "--quiet"]).check();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

/// docker maps the runtime's create error to 127 (not found) or 126 (not
/// executable), as with runc: vessel must fail `create` when
/// process.args[0] cannot be executed.
#[test]
fn docker_missing_executable_is_127_and_directory_is_126() {
    let Some(env) = Env::new("dk-enoent") else {
        return;
    };
    for (prog, want) in [
        ("nosuchbinary", 127),
        ("/no/such/binary", 127),
        ("/etc", 126),
    ] {
        let r = env.docker_run(&["--rm"], &[prog]);
        assert_eq!(r.code, Some(want), "docker run {prog}: {r}");
    }
    // docker 20.10 reports any failed exec start as 126 (runc too).
    env.docker_run(&["-d", "--name", "vessel-exec"], &["sleep", "1000"])
        .check();
    for prog in ["nosuchbinary", "/no/such/binary", "/etc"] {
        let r = env.docker(&["exec", "vessel-exec", prog]);
        assert_eq!(r.code, Some(126), "docker exec {prog}: {r}");
    }
    env.docker(&["rm", "--force", "vessel-exec"]).check();
}

#[test]
fn docker_detached_exec_stop_rm() {
    let Some(env) = Env::new("dk-life") else {
        return;
    };

    // The init exits 42 on SIGTERM, so `docker stop` shows the signal arrived.
    let r = env
        .docker_run(
            &["-d", "--name", "vessel-life"],
            &[
                "sh",
                "-c",
                "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
            ],
        )
        .check();
    let id = r.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "docker run -d prints the id: {r}");
    assert_eq!(env.inspect("vessel-life", "{{.State.Status}}"), "running");

    let vroot = env.vessel_root_of(&id);
    let st = clients::vessel_state(&vroot, &id)
        .unwrap_or_else(|| panic!("vessel --root {} does not know {id}", vroot.display()));
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["isolation"], "container", "{st}");
    assert_eq!(
        st["pid"].to_string(),
        env.inspect("vessel-life", "{{.State.Pid}}"),
        "{st}"
    );

    let r = env.docker(&["exec", "vessel-life", "sh", "-c", "echo in exec; exit 3"]);
    assert_eq!(r.code, Some(3), "exec's exit code: {r}");
    assert_eq!(r.stdout, "in exec\n", "{r}");
    let r = env
        .docker(&[
            "exec",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "vessel-life",
            "sh",
            "-c",
            "echo $FOO $(pwd) $(cat /proc/1/cmdline | tr '\\0' ' ')",
        ])
        .check();
    assert!(r.stdout.starts_with("bar /tmp sh -c trap"), "{r}");
    let top = env.docker(&["top", "vessel-life"]).check();
    assert!(top.stdout.contains("trap"), "{top}");
    let logs = env.docker(&["logs", "vessel-life"]).check();
    assert_eq!(logs.stdout, "ready\n", "{logs}");

    env.docker(&["pause", "vessel-life"]).check();
    assert_eq!(env.inspect("vessel-life", "{{.State.Status}}"), "paused");
    assert_eq!(
        clients::vessel_state(&vroot, &id).expect("state")["status"],
        "paused"
    );
    env.docker(&["unpause", "vessel-life"]).check();

    env.docker(&["stop", "--time", "10", "vessel-life"]).check();
    assert_eq!(env.inspect("vessel-life", "{{.State.Status}}"), "exited");
    assert_eq!(
        env.inspect("vessel-life", "{{.State.ExitCode}}"),
        "42",
        "SIGTERM reached the container's init"
    );
    assert!(
        clients::vessel_state(&vroot, &id).is_none(),
        "vessel state after stop"
    );

    env.docker(&["start", "vessel-life"]).check();
    assert_eq!(env.inspect("vessel-life", "{{.State.Status}}"), "running");
    env.docker(&["rm", "--force", "vessel-life"]).check();
    assert!(
        clients::vessel_state(&vroot, &id).is_none(),
        "vessel state after rm -f"
    );
    let ps = env.docker(&["ps", "--all", "--quiet"]).check();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

/// What dockerd asks of the runtime beyond a plain process: a terminal
/// (through the shim's console socket), stdin, `docker update` (the shim
/// runs `vessel update --resources -`), docker-init as pid 1.
#[test]
fn docker_terminal_stdin_update_init() {
    let Some(env) = Env::new("dk-opts") else {
        return;
    };

    let r = env
        .docker_run(
            &["--rm", "-t"],
            &["sh", "-c", "tty; [ -t 1 ] && echo is-a-tty"],
        )
        .check();
    assert_eq!(r.stdout.replace('\r', ""), "/dev/pts/0\nis-a-tty\n", "{r}");

    let mut cmd = Command::new(&env.dockerd.docker);
    cmd.arg("-H")
        .arg(format!("unix://{}", env.dockerd.sock.display()))
        .args([
            "run",
            "--rm",
            "-i",
            "--runtime",
            "vessel",
            "--network",
            "none",
            IMAGE,
        ])
        .args(["sh", "-c", "read line; echo got $line"]);
    let r = clients::run_with_input(&mut cmd, b"hello\n", LIMIT);
    assert_eq!(r.stdout, "got hello\n", "{r}");

    let r = env
        .docker_run(&["--rm", "--init"], &["cat", "/proc/1/comm"])
        .check();
    assert_eq!(r.stdout.trim(), "docker-init", "{r}");

    env.docker_run(
        &["-d", "--name", "vessel-upd", "--memory", "64m"],
        &["sleep", "1000"],
    )
    .check();
    let read = "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then \
                  cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; \
                  cut -d' ' -f1 /sys/fs/cgroup/cpu.max; \
                else cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                  /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us; fi";
    let r = env
        .docker(&["exec", "vessel-upd", "sh", "-c", read])
        .check();
    assert_eq!(r.stdout.lines().next(), Some("67108864"), "{r}");
    env.docker(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "77",
        "vessel-upd",
    ])
    .check();
    let r = env
        .docker(&["exec", "vessel-upd", "sh", "-c", read])
        .check();
    assert_eq!(
        r.stdout, "134217728\n77\n50000\n",
        "docker update reached the cgroup: {r}"
    );
    env.docker(&["rm", "--force", "vessel-upd"]).check();
}
