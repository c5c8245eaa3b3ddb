//! podman drives vessel (`podman --runtime <vessel>`): a busybox image
//! imported from a rootfs tar is run, exec'd into, stopped and removed.
//! podman's storage, run root and tmpdir live in a private scratch
//! directory. vessel keeps its state in its default root: podman 4.3 does not
//! pass `--runtime-flag`s to `delete`, so a private `--root` would leak.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use vessel_tests::clients::{self, run, Run, Scratch, IMAGE};

const LIMIT: Duration = Duration::from_secs(40);

/// A podman with private storage whose runtime is vessel.
struct Podman {
    bin: PathBuf,
    vessel: PathBuf,
    vroot: PathBuf,
    cgroup_parent: String,
    scratch: RefCell<Scratch>,
    runs: Cell<u32>,
    /// `--runtime-flag`s (podman passes them to create, start, exec...).
    runtime_flags: Vec<String>,
}

impl Podman {
    fn new(bin: PathBuf, tag: &str) -> Podman {
        let mut scratch = Scratch::new(tag);
        let cgroup_parent = format!(
            "vessel-test-{}",
            scratch.path.file_name().unwrap().to_string_lossy()
        );
        scratch.cgroup(&cgroup_parent);
        // conmon's own cgroup under --cgroup-manager cgroupfs: podman leaves
        // it behind; removed when empty (another test's conmon keeps it).
        scratch.cgroup("libpod_parent");
        Podman {
            bin,
            vessel: clients::vessel_abs(),
            vroot: PathBuf::from(clients::VESSEL_DEFAULT_ROOT),
            cgroup_parent,
            scratch: RefCell::new(scratch),
            runs: Cell::new(0),
            runtime_flags: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let s = self.scratch.borrow();
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(s.join("storage"))
            .arg("--runroot")
            .arg(s.join("run"))
            .arg("--tmpdir")
            .arg(s.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--runtime")
            .arg(&self.vessel);
        for f in &self.runtime_flags {
            c.arg("--runtime-flag").arg(f);
        }
        c.args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(&mut self.cmd(args), LIMIT)
    }

    /// `podman run` with the flags this host needs, then `rest`; the
    /// container's id is registered for cleanup.
    fn run_container(&self, opts: &[&str], rest: &[&str]) -> Run {
        let parent = format!("--cgroup-parent=/{}", self.cgroup_parent);
        self.runs.set(self.runs.get() + 1);
        let cidfile = self
            .scratch
            .borrow()
            .join(&format!("cid{}", self.runs.get()));
        let cidarg = format!("--cidfile={}", cidfile.display());
        let mut args = vec![
            "run",
            &cidarg,
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            &parent,
        ];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.extend_from_slice(rest);
        let r = self.run(&args);
        if let Ok(id) = std::fs::read_to_string(&cidfile) {
            self.scratch
                .borrow_mut()
                .vessel_container(&self.vroot, id.trim());
        }
        r
    }

    fn import_busybox(&self) {
        let tar = clients::busybox_rootfs_tar(&self.scratch.borrow().path);
        let r = self.run(&["import", tar.to_str().unwrap(), IMAGE]).check();
        assert!(r.stdout.contains("sha256:"), "podman import: {r}");
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.run(&["inspect", "--format", format, name])
            .check()
            .stdout
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (conmon, vessel state), then the storage's mounts
        // go with the scratch directory.
        let _ = run(
            &mut self.cmd(&["rm", "--all", "--force", "--time", "0"]),
            LIMIT,
        );
        let _ = run(&mut self.cmd(&["rmi", "--all", "--force"]), LIMIT);
    }
}

fn podman() -> Option<PathBuf> {
    clients::require_clients(&["podman"]).map(|mut v| v.remove(0))
}

#[test]
fn podman_run_prints_output_and_returns_exit_code() {
    let Some(bin) = podman() else { return };
    let p = Podman::new(bin, "pm-run");
    p.import_busybox();

    let r = p.run_container(
        &["--name", "vessel-run"],
        &[
            "sh",
            "-c",
            "echo hello from vessel; echo pid=$$; hostname; exit 7",
        ],
    );
    assert_eq!(r.code, Some(7), "exit code of the container's process: {r}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from vessel"), "{r}");
    assert_eq!(
        lines.get(1),
        Some(&"pid=1"),
        "the process is pid 1 of its own namespace: {r}"
    );

    let id = p.inspect("vessel-run", "{{.Id}}");
    // podman names the container's host after its short id (UTS namespace).
    assert_eq!(lines.get(2).copied(), Some(&id[..12]), "hostname: {r}");
    assert_eq!(p.inspect("vessel-run", "{{.State.ExitCode}}"), "7");

    // vessel, not another runtime, ran it.
    assert_eq!(
        p.inspect("vessel-run", "{{.OCIRuntime}}"),
        p.vessel.to_string_lossy(),
        "podman's runtime for the container"
    );
    // podman deletes an exited container from the runtime (vessel delete)
    // by itself; `podman rm` must leave nothing in vessel's state either.
    p.run(&["rm", "vessel-run"]).check();
    assert!(
        clients::vessel_state(&p.vroot, &id).is_none(),
        "podman rm leaves vessel state for {id}"
    );

    // --rm and a command that fails to start.
    let r = p.run_container(&["--rm"], &["true"]);
    assert_eq!(r.code, Some(0), "{r}");
    let ps = p.run(&["ps", "--all", "--quiet"]).check();
    assert_eq!(ps.stdout.trim(), "", "--rm left containers: {ps}");
}

/// podman maps the runtime's create error to 127 (not found) or 126 (not
/// executable), as with runc: vessel must fail `create` when process.args[0]
/// cannot be executed, with the errno text podman looks for.
#[test]
fn podman_missing_executable_is_127_and_directory_is_126() {
    let Some(bin) = podman() else { return };
    let p = Podman::new(bin, "pm-enoent");
    p.import_busybox();
    for (prog, want) in [
        ("nosuchbinary", 127),
        ("/no/such/binary", 127),
        ("/etc", 126),
    ] {
        let r = p.run_container(&["--rm"], &[prog]);
        assert_eq!(r.code, Some(want), "podman run {prog}: {r}");
        assert!(
            !r.stderr.trim().is_empty(),
            "an error message for {prog}: {r}"
        );
    }
    // The same for `podman exec` (runc: 127, 127, 126).
    p.run_container(&["-d", "--name", "vessel-exec"], &["sleep", "1000"])
        .check();
    for (prog, want) in [
        ("nosuchbinary", 127),
        ("/no/such/binary", 127),
        ("/etc", 126),
    ] {
        let r = p.run(&["exec", "vessel-exec", prog]);
        assert_eq!(r.code, Some(want), "podman exec {prog}: {r}");
    }
    p.run(&["rm", "--force", "--time", "0", "vessel-exec"])
        .check();
    let ps = p.run(&["ps", "--all", "--quiet"]).check();
    assert_eq!(ps.stdout.trim(), "", "--rm left containers: {ps}");
}

#[test]
fn podman_detached_exec_stop_rm() {
    let Some(bin) = podman() else { return };
    let p = Podman::new(bin, "pm-life");
    p.import_busybox();

    // The init exits 42 on SIGTERM, so `podman stop` shows the signal arrived.
    let r = p
        .run_container(
            &["-d", "--name", "vessel-life"],
            &[
                "sh",
                "-c",
                "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
            ],
        )
        .check();
    let id = r.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "podman run -d prints the id: {r}");
    assert_eq!(p.inspect("vessel-life", "{{.State.Status}}"), "running");

    let st = clients::vessel_state(&p.vroot, &id).expect("vessel knows the container");
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["isolation"], "container", "{st}");
    assert!(st["pid"].as_i64().unwrap_or(0) > 1, "{st}");

    let r = p.run(&[
        "exec",
        "vessel-life",
        "sh",
        "-c",
        "echo in exec; cat /proc/1/cmdline | tr '\\0' ' '; exit 3",
    ]);
    assert_eq!(r.code, Some(3), "exec's exit code: {r}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"in exec"), "{r}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("sh -c trap")),
        "exec runs beside the container's init: {r}"
    );
    let r = p
        .run(&[
            "exec",
            "--env",
            "FOO=bar",
            "--workdir",
            "/tmp",
            "vessel-life",
            "sh",
            "-c",
            "echo $FOO $(pwd)",
        ])
        .check();
    assert_eq!(r.stdout.trim(), "bar /tmp", "{r}");

    p.run(&["pause", "vessel-life"]).check();
    assert_eq!(p.inspect("vessel-life", "{{.State.Status}}"), "paused");
    let st = clients::vessel_state(&p.vroot, &id).expect("vessel state while paused");
    assert_eq!(st["status"], "paused", "{st}");
    p.run(&["unpause", "vessel-life"]).check();
    assert_eq!(p.inspect("vessel-life", "{{.State.Status}}"), "running");

    let logs = p.run(&["logs", "vessel-life"]).check();
    assert!(logs.stdout.contains("ready"), "{logs}");

    p.run(&["stop", "--time", "10", "vessel-life"]).check();
    assert_eq!(p.inspect("vessel-life", "{{.State.Status}}"), "exited");
    assert_eq!(
        p.inspect("vessel-life", "{{.State.ExitCode}}"),
        "42",
        "SIGTERM reached the container's init"
    );
    p.run(&["rm", "vessel-life"]).check();
    assert!(
        clients::vessel_state(&p.vroot, &id).is_none(),
        "vessel state survives rm"
    );
    let ps = p.run(&["ps", "--all", "--quiet"]).check();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

/// What podman asks of the runtime beyond a plain process: a terminal
/// (conmon's console socket), a user, a read-only rootfs, cgroup limits,
/// dropped capabilities, stdin.
#[test]
fn podman_terminal_user_readonly_limits() {
    let Some(bin) = podman() else { return };
    let p = Podman::new(bin, "pm-opts");
    p.import_busybox();

    let r = p
        .run_container(
            &["--rm", "-t"],
            &["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both"],
        )
        .check();
    // A terminal turns \n into \r\n.
    assert_eq!(r.stdout.replace('\r', ""), "/dev/pts/0\nboth\n", "{r}");

    let r = p
        .run_container(&["--rm", "--user", "65534:65534"], &["id"])
        .check();
    assert_eq!(
        r.stdout.trim(),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)",
        "{r}"
    );

    let r = p.run_container(
        &["--rm", "--read-only"],
        &[
            "sh",
            "-c",
            "touch /x 2>&1; touch /tmp/y && echo tmp writable",
        ],
    );
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("Read-only file system"), "{r}");
    assert!(r.stdout.contains("tmp writable"), "{r}");

    let r = p
        .run_container(
            &["--rm", "--cap-drop", "all"],
            &["grep", "CapEff", "/proc/self/status"],
        )
        .check();
    assert_eq!(
        r.stdout.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{r}"
    );

    let mut cmd = p.cmd(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        IMAGE,
        "sh",
        "-c",
        "read line; echo got $line",
    ]);
    let r = clients::run_with_input(&mut cmd, b"hello\n", LIMIT);
    assert_eq!(r.stdout, "got hello\n", "{r}");

    // Limits land in the container's cgroup (v1 here; v2 elsewhere).
    let r = p
        .run_container(
            &[
                "--rm",
                "--memory",
                "64m",
                "--pids-limit",
                "50",
                "--cpus",
                "0.5",
            ],
            &[
                "sh",
                "-c",
                "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then \
                   cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; \
                   cut -d' ' -f1 /sys/fs/cgroup/cpu.max; \
                 else cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                   /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us; fi",
            ],
        )
        .check();
    assert_eq!(r.stdout, "67108864\n50\n50000\n", "{r}");
}

/// vm mode through podman: the annotation selects it; podman's lifecycle
/// (run attached and detached, exec, logs, stop, rm) behaves as in
/// container mode. The static vessel is the runtime (the guest agent must
/// be static); its image cache is the tests'.
#[test]
fn podman_runs_a_vm_mode_container_through_the_annotation() {
    let Some(bin) = podman() else { return };
    if !vessel_tests::vm::vm_available() {
        return;
    }
    let mut p = Podman::new(bin, "pm-vm");
    p.vessel = vessel_tests::vm::static_vessel();
    let config = p.scratch.borrow().join("vessel.toml");
    std::fs::write(
        &config,
        format!(
            "[vm]\ncache_dir = {:?}\n",
            vessel_tests::vm::test_cache().display().to_string()
        ),
    )
    .unwrap();
    p.runtime_flags = vec![format!("config={}", config.display())];
    p.import_busybox();
    let vm = ["--annotation", "io.vessel.isolation=vm"];

    let r = p.run_container(
        &vm,
        &["sh", "-c", "echo hello from the vm; uname -r; exit 5"],
    );
    assert_eq!(r.code, Some(5), "{r}");
    assert!(r.stdout.contains("hello from the vm"), "{r}");
    let host = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    assert!(
        !r.stdout
            .contains(String::from_utf8_lossy(&host.stdout).trim()),
        "the workload ran on the host kernel: {r}"
    );

    let mut opts = vec!["-d", "--name", "vessel-vm"];
    opts.extend_from_slice(&vm);
    let r = p
        .run_container(
            &opts,
            &[
                "sh",
                "-c",
                "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
            ],
        )
        .check();
    let id = r.stdout.trim().to_string();
    let st = clients::vessel_state(&p.vroot, &id).expect("vessel knows the container");
    assert_eq!(st["isolation"], "vm", "{st}");
    assert_eq!(st["status"], "running", "{st}");
    let image = vessel_tests::vm::rootfs_image_of(&st, &vessel_tests::vm::test_cache());
    let r = p.run(&["exec", "vessel-vm", "sh", "-c", "echo in-vm-exec; exit 3"]);
    assert_eq!(r.code, Some(3), "{r}");
    assert!(r.stdout.contains("in-vm-exec"), "{r}");
    let logs = p.run(&["logs", "vessel-vm"]).check();
    assert!(logs.stdout.contains("ready"), "{logs}");
    p.run(&["stop", "--time", "20", "vessel-vm"]).check();
    assert_eq!(
        p.inspect("vessel-vm", "{{.State.ExitCode}}"),
        "42",
        "SIGTERM reached the workload"
    );
    p.run(&["rm", "vessel-vm"]).check();
    assert!(
        clients::vessel_state(&p.vroot, &id).is_none(),
        "vessel state survives rm"
    );
    if let Some(img) = image {
        let _ = std::fs::remove_file(img);
    }
}
