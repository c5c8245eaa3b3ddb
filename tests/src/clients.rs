//! Helpers for tests where real clients (podman, containerd, docker) drive
//! vessel: a scratch directory that cleans up after itself (processes that
//! mention it, mounts under it, vessel containers in it), daemons stopped by
//! pid, commands with a time limit, and a busybox image archive made at test
//! time.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// vessel's state root when a client passes no `--root` (podman, docker
/// without its own exec root).
pub const VESSEL_DEFAULT_ROOT: &str = "/run/vessel";

/// The image name every client test imports.
pub const IMAGE: &str = "localhost/busybox-vessel:latest";

/// The first executable called `name` on `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Returns the paths of all `names` or prints `SKIP: <reason>` and returns
/// `None` (also when not root).
pub fn require_clients(names: &[&str]) -> Option<Vec<PathBuf>> {
    if !crate::is_root() {
        eprintln!("SKIP: this test needs root (real clients run containers)");
        return None;
    }
    let mut found = Vec::new();
    for n in names {
        match which(n) {
            Some(p) => found.push(p),
            None => {
                eprintln!("SKIP: {n} is not installed");
                return None;
            }
        }
    }
    if crate::bundle::busybox().is_none() {
        eprintln!("SKIP: busybox-static is not installed");
        return None;
    }
    Some(found)
}

/// The absolute path of the vessel binary under test.
pub fn vessel_abs() -> PathBuf {
    let p = crate::vessel_bin();
    fs::canonicalize(&p).unwrap_or(p)
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal or by the time limit.
    pub code: Option<i32>,
    /// Whether the time limit killed it.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Whether it exited with 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole record unless it exited with 0; returns self.
    #[track_caller]
    pub fn check(self) -> Run {
        assert!(self.ok(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: code {:?}{}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.cmdline,
            self.code,
            if self.timed_out { " (timed out)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

fn cmdline_of(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with stdin closed and output captured; kills it after
/// `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    run_inner(cmd, None, limit)
}

/// Like [`run`], with `input` written to the command's stdin (then closed).
pub fn run_with_input(cmd: &mut Command, input: &[u8], limit: Duration) -> Run {
    run_inner(cmd, Some(input), limit)
}

fn run_inner(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Run {
    let cmdline = cmdline_of(cmd);
    eprintln!("+ {cmdline}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        thread::sleep(Duration::from_millis(20));
    };
    // A client may leave a child holding the pipes (a daemonized helper):
    // do not wait for the readers forever then.
    let stdout = join_within(t_out, Duration::from_secs(5));
    let stderr = join_within(t_err, Duration::from_secs(5));
    let r = Run {
        cmdline,
        code: status.code(),
        timed_out,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    if !r.ok() {
        eprintln!("  -> {:?}: {}", r.code, r.stderr.trim_end());
    }
    r
}

fn join_within(t: thread::JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    while !t.is_finished() && start.elapsed() < limit {
        thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        t.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Quotes `args` for `sh -c` (single quotes).
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until `path` exists (a daemon's socket), up to `limit`.
pub fn wait_for_path(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls `f` until it returns true, up to `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon started by a test: stopped by its pid (SIGTERM, then SIGKILL
/// after ten seconds) when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// Name for messages.
    pub name: String,
    /// The daemon process.
    pub child: Option<Child>,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`.
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> Daemon {
        let f = fs::File::create(log).expect("daemon log");
        let f2 = f.try_clone().unwrap();
        eprintln!("+ {} &", cmdline_of(&cmd));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of its log, for messages.
    pub fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits for `sock` to appear; panics with the log otherwise.
    #[track_caller]
    pub fn wait_ready(&mut self, sock: &Path, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if sock.exists() {
                return;
            }
            assert!(
                self.alive(),
                "{} exited early:\n{}",
                self.name,
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not create {} in {limit:?}:\n{}",
            self.name,
            sock.display(),
            self.log_tail()
        );
    }

    /// Stops the daemon by its pid: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = kill(pid, Signal::SIGTERM);
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < grace {
                thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("{} did not stop on SIGTERM; killing it", self.name);
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A scratch directory under /tmp for one client test. Dropping it kills
/// every process whose command line mentions it (shims, conmon), removes
/// the vessel containers in the state roots registered with
/// [`Scratch::vessel_root`], unmounts everything under it and removes it.
#[derive(Debug)]
pub struct Scratch {
    /// The directory.
    pub path: PathBuf,
    vessel_roots: Vec<PathBuf>,
    vessel_ids: Vec<(PathBuf, String)>,
    cgroups: Vec<String>,
}

impl Scratch {
    /// A new directory `/tmp/vessel-<tag>-XXXX`. Short on purpose: unix
    /// socket paths must stay under 108 bytes.
    pub fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vessel-{tag}-"))
            .tempdir_in("/tmp")
            .expect("scratch dir");
        Scratch {
            path: dir.keep(),
            vessel_roots: Vec::new(),
            vessel_ids: Vec::new(),
            cgroups: Vec::new(),
        }
    }

    /// `path/rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Registers a vessel `--root` whose containers are force-deleted on
    /// drop (also any one level below it, as the runc shim adds the
    /// namespace).
    pub fn vessel_root(&mut self, root: PathBuf) {
        self.vessel_roots.push(root);
    }

    /// Registers one container in a shared vessel `--root` (such as the
    /// default /run/vessel) to force-delete on drop.
    pub fn vessel_container(&mut self, root: &Path, id: &str) {
        self.vessel_ids.push((root.to_path_buf(), id.to_string()));
    }

    /// Registers a cgroup directory name (relative to each v1 hierarchy and
    /// the unified mount) to remove on drop if it is left empty.
    pub fn cgroup(&mut self, rel: &str) {
        self.cgroups.push(rel.trim_matches('/').to_string());
    }

    /// Force-deletes the registered vessel containers and those in the
    /// registered vessel roots.
    pub fn delete_vessel_containers(&self) {
        for (root, id) in &self.vessel_ids {
            if vessel_state(root, id).is_some() {
                eprintln!(
                    "cleanup: vessel --root {} delete --force {id}",
                    root.display()
                );
                let _ = crate::vessel(root, &["delete", "--force", id]);
            }
        }
        for root in &self.vessel_roots {
            for (r, id) in vessel_containers_under(root, 3) {
                eprintln!("cleanup: vessel --root {} delete --force {id}", r.display());
                let _ = crate::vessel(&r, &["delete", "--force", &id]);
            }
        }
    }
}

/// (root, id) of each vessel container state (`<root>/<id>/state.json`) at
/// most `depth` directories below `dir`.
pub fn vessel_containers_under(dir: &Path, depth: u32) -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return v;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if p.join("state.json").is_file() {
            v.push((
                dir.to_path_buf(),
                e.file_name().to_string_lossy().into_owned(),
            ));
        } else if depth > 0 {
            v.extend(vessel_containers_under(&p, depth - 1));
        }
    }
    v
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let needle = self.path.to_string_lossy().into_owned();
        kill_processes_mentioning(&needle);
        self.delete_vessel_containers();
        unmount_under(&self.path);
        for cg in &self.cgroups {
            remove_cgroup(cg);
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("cleanup: remove {}: {e}", self.path.display());
        }
    }
}

/// The pids (other than ours) whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs, by pid, each process whose command line contains `needle`
/// (a test's unique scratch path), and waits briefly for them to go.
pub fn kill_processes_mentioning(needle: &str) {
    let pids = processes_mentioning(needle);
    for &p in &pids {
        eprintln!("cleanup: killing leftover pid {p}");
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    if !pids.is_empty() {
        wait_until(Duration::from_secs(5), || {
            pids.iter().all(|p| {
                // Gone, or a zombie of somebody else's.
                fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                    .unwrap_or(true)
            })
        });
    }
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m == &dir || m.starts_with(&format!("{dir}/")))
        .map(PathBuf::from)
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything mounted at or under `dir`.
pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            return;
        }
        for m in ms {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("cleanup: umount {}: {e}", m.display());
            }
        }
    }
}

/// Removes the cgroup `rel` (and its empty children) from every hierarchy
/// under /sys/fs/cgroup; non-empty groups stay.
pub fn remove_cgroup(rel: &str) {
    if rel.is_empty() {
        return;
    }
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut bases: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    bases.push(PathBuf::from("/sys/fs/cgroup"));
    for base in bases {
        let p = base.join(rel);
        if p.is_dir() {
            rmdir_tree(&p);
        }
    }
    // A relative cgroup parent nests under the caller's own cgroup, which
    // can differ between hierarchies (e.g. a session's memory cgroup).
    for d in crate::leaks::cgroup_dirs(rel) {
        rmdir_tree(Path::new(&d));
    }
}

fn rmdir_tree(p: &Path) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(p);
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(
        out.status.success(),
        "sha256sum {}: {out:?}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

fn tar_dir(dir: &Path, out: &Path) {
    let st = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of {} failed", dir.display());
}

/// A tar of a busybox rootfs (for `podman import`), made in `work`.
pub fn busybox_rootfs_tar(work: &Path) -> PathBuf {
    let rootfs = work.join("image-rootfs");
    crate::bundle::make_rootfs(&rootfs);
    let tar = work.join("rootfs.tar");
    tar_dir(&rootfs, &tar);
    tar
}

/// A docker-archive (what `podman save` and `docker save` write) holding a
/// one-layer busybox image tagged [`IMAGE`], made in `work`; `ctr image
/// import` and `docker load` read it.
pub fn busybox_image_archive(work: &Path) -> PathBuf {
    image_archive(work, "image", IMAGE, &["sh"])
}

/// A docker-archive of a one-layer busybox image tagged `tag` whose
/// command is `cmd`, made as `<work>/<name>.tar` (the scratch directories
/// it builds from are removed).
pub fn image_archive(work: &Path, name: &str, tag: &str, cmd: &[&str]) -> PathBuf {
    let img = work.join(name);
    let rootfs = work.join(format!("{name}-rootfs"));
    crate::bundle::make_rootfs(&rootfs);
    fs::create_dir_all(&img).unwrap();
    tar_dir(&rootfs, &img.join("layer.tar"));
    let _ = fs::remove_dir_all(&rootfs);
    let diff_id = sha256_hex(&img.join("layer.tar"));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": cmd,
            "WorkingDir": "/"
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created": "2026-01-01T00:00:00Z", "created_by": "vessel-tests" }]
    });
    let cfg_tmp = img.join("config.tmp");
    fs::write(&cfg_tmp, serde_json::to_vec(&config).unwrap()).unwrap();
    let cfg_name = format!("{}.json", sha256_hex(&cfg_tmp));
    fs::rename(&cfg_tmp, img.join(&cfg_name)).unwrap();
    let manifest = serde_json::json!([{
        "Config": cfg_name,
        "RepoTags": [tag],
        "Layers": ["layer.tar"]
    }]);
    fs::write(
        img.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let archive = work.join(format!("{name}.tar"));
    tar_dir(&img, &archive);
    let _ = fs::remove_dir_all(&img);
    archive
}

/// Parses `vessel --root <root> state <id>` and returns the JSON, or `None`
/// when vessel does not know the container.
pub fn vessel_state(root: &Path, id: &str) -> Option<serde_json::Value> {
    let out = crate::vessel(root, &["state", id]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A private containerd (Debian's 1.6) with its root, state, sockets and
/// config in a scratch directory; the CRI plugin is off. Dropping it kills
/// and deletes the tasks it runs, stops it by pid and kills any shim left.
#[derive(Debug)]
pub struct Containerd {
    /// Its gRPC socket (`ctr -a`).
    pub sock: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
    /// Its `--state`.
    pub state: PathBuf,
    /// The `ctr` binary.
    pub ctr: PathBuf,
    daemon: Daemon,
}

/// Paths of a private containerd under `dir`: its root, state, socket and
/// config file, which this writes (CRI off, debug log).
pub fn write_containerd_config(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let root = dir.join("ctrd-root");
    let state = dir.join("ctrd-state");
    let sock = dir.join("ctrd.sock");
    let config = dir.join("containerd.toml");
    fs::write(
        &config,
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = root.display(),
            state = state.display(),
            sock = sock.display(),
            opt = dir.join("ctrd-opt").display(),
        ),
    )
    .unwrap();
    (root, state, sock, config)
}

impl Containerd {
    /// Starts containerd under `dir` and waits for its socket.
    pub fn start(bin: &Path, ctr: &Path, dir: &Path) -> Containerd {
        let (root, state, sock, config) = write_containerd_config(dir);
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&config);
        let mut daemon = Daemon::start("containerd", cmd, &dir.join("containerd.log"));
        daemon.wait_ready(&sock, Duration::from_secs(20));
        let c = Containerd {
            sock,
            root,
            state,
            ctr: ctr.to_path_buf(),
            daemon,
        };
        // The socket exists before the services are up: wait for an answer.
        let ok = wait_until(Duration::from_secs(10), || {
            c.ctr_ns("default", &["version"], Duration::from_secs(5))
                .ok()
        });
        assert!(ok, "containerd does not answer:\n{}", c.daemon.log_tail());
        c
    }

    /// `ctr -a <sock> -n <ns> <args>`.
    pub fn ctr_ns(&self, ns: &str, args: &[&str], limit: Duration) -> Run {
        let mut c = Command::new(&self.ctr);
        c.arg("-a").arg(&self.sock).args(["-n", ns]).args(args);
        run(&mut c, limit)
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// The unix socket addresses of the shims this containerd started.
    fn shim_sockets(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let base = self.state.join("io.containerd.runtime.v2.task");
        for ns in fs::read_dir(&base).into_iter().flatten().flatten() {
            for task in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                if let Ok(a) = fs::read_to_string(task.path().join("address")) {
                    if let Some(p) = a.trim().strip_prefix("unix://") {
                        v.push(PathBuf::from(p));
                    }
                }
            }
        }
        v
    }

    /// Kills and deletes every task and container in every namespace.
    pub fn remove_everything(&self) {
        let limit = Duration::from_secs(10);
        if !self.sock.exists() {
            return;
        }
        let nss = self.ctr_ns("default", &["namespaces", "ls", "-q"], limit);
        for ns in nss.stdout.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let tasks = self.ctr_ns(ns, &["task", "ls", "-q"], limit);
            for t in tasks
                .stdout
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let _ = self.ctr_ns(ns, &["task", "kill", "-a", "-s", "SIGKILL", t], limit);
                let _ = self.ctr_ns(ns, &["task", "delete", "-f", t], limit);
            }
            let cs = self.ctr_ns(ns, &["containers", "ls", "-q"], limit);
            for c in cs.stdout.lines().map(str::trim).filter(|s| !s.is_empty()) {
                let _ = self.ctr_ns(ns, &["containers", "rm", c], limit);
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_everything();
        let sockets = self.shim_sockets();
        self.daemon.stop(Duration::from_secs(10));
        // Shims outlive containerd by design: kill the ones it started.
        kill_processes_mentioning(&format!("-address {}", self.sock.display()));
        for s in sockets {
            let _ = fs::remove_file(s);
        }
    }
}
