//! One workload instance in one mode: natively on the host, in a vessel
//! container, a vessel microVM, or a runc or crun container.
//!
//! Container modes share one rootfs (see [`make_rootfs`]): symlinks
//! `bin`, `lib`, `lib64`, `sbin` into `usr`, the host's `/usr` bind-mounted
//! read-only over it, the host's `/etc/ld.so.cache`, and the instance's
//! scratch directory bind-mounted read-write at `/work`. So every mode runs
//! the same Debian binaries, reads the same page cache and writes to the
//! same file system; only the isolation differs. Each instance runs
//! `/bin/sh -c SCRIPT` and its stdout and stderr are captured.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::sys;

/// Where and how a workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Directly on the host: the baseline every figure is normalized to.
    Native,
    /// A vessel container.
    Vessel,
    /// A vessel microVM (`io.vessel.isolation=vm`).
    VesselVm,
    /// A runc container (anchor).
    Runc,
    /// A crun container (anchor).
    Crun,
}

impl Mode {
    /// Every mode in report order.
    pub const ALL: [Mode; 5] = [
        Mode::Native,
        Mode::Vessel,
        Mode::VesselVm,
        Mode::Runc,
        Mode::Crun,
    ];

    /// The name in tables, JSON and `--modes`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Vessel => "vessel",
            Mode::VesselVm => "vessel-vm",
            Mode::Runc => "runc",
            Mode::Crun => "crun",
        }
    }

    /// The mode called `name`.
    pub fn parse(name: &str) -> Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                anyhow!("unknown mode {name:?} (known: native, vessel, vessel-vm, runc, crun)")
            })
    }
}

/// The runtime binaries and state roots of the container modes.
#[derive(Debug, Clone)]
pub struct Runtimes {
    /// vessel (container and VM modes).
    pub vessel: PathBuf,
    /// runc, when installed.
    pub runc: Option<PathBuf>,
    /// crun, when installed.
    pub crun: Option<PathBuf>,
    /// Directory holding one `--root` state directory per runtime.
    pub state_dir: PathBuf,
    /// The shared rootfs.
    pub rootfs: PathBuf,
    /// The base config.json (from `vessel spec`).
    pub base_config: Value,
    /// vCPUs of a microVM.
    pub vm_cpus: u32,
    /// The rootfs of the VM mode (see [`crate::vm_rootfs`]).
    pub vm_rootfs: Option<PathBuf>,
}

/// What one instance is asked to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Container id (unique among running instances).
    pub id: String,
    /// The shell script.
    pub script: String,
    /// The host directory seen as `$WORK` (`/work` in a container).
    pub work_dir: PathBuf,
    /// Network namespace to join (by path) instead of a fresh one.
    pub netns: Option<PathBuf>,
    /// Memory limit (container cgroup, or guest memory in VM mode).
    pub memory_mib: Option<u64>,
    /// `$THREADS` for the script.
    pub threads: u32,
}

impl Runtimes {
    /// The runtime binary of a container mode.
    pub fn binary(&self, mode: Mode) -> Option<&Path> {
        match mode {
            Mode::Native => None,
            Mode::Vessel | Mode::VesselVm => Some(&self.vessel),
            Mode::Runc => self.runc.as_deref(),
            Mode::Crun => self.crun.as_deref(),
        }
    }

    /// The `--root` of a container mode.
    pub fn root(&self, mode: Mode) -> PathBuf {
        self.state_dir.join(mode.name())
    }

    /// The config.json of `spec` in `mode`.
    pub fn config(&self, mode: Mode, spec: &Spec) -> Value {
        let mut c = self.base_config.clone();
        let vm = mode == Mode::VesselVm;
        c["root"] = match (&self.vm_rootfs, vm) {
            // The guest's overlay makes the image writable; /work is in it.
            (Some(r), true) => json!({"path": r, "readonly": false}),
            _ => json!({"path": self.rootfs, "readonly": true}),
        };
        c["hostname"] = json!("vessel-bench");
        let p = &mut c["process"];
        p["terminal"] = json!(false);
        p["args"] = json!(["/bin/sh", "-c", spec.script]);
        p["cwd"] = json!("/work");
        p["env"] = json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "WORK=/work",
            "HOME=/work",
            format!("THREADS={}", spec.threads),
        ]);
        // Below this host's hard limit (no CAP_SYS_RESOURCE), enough for MariaDB.
        p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 16384, "soft": 16384}]);
        if !vm {
            crate::bundle::add_mount(&mut c, "/usr", "bind", "/usr", &["rbind", "ro"]);
            // Debian's alternatives (awk, cc, ...) are links through /etc.
            crate::bundle::add_mount(
                &mut c,
                "/etc/alternatives",
                "bind",
                "/etc/alternatives",
                &["rbind", "ro"],
            );
            let work = spec.work_dir.to_string_lossy();
            crate::bundle::add_mount(&mut c, "/work", "bind", &work, &["rbind", "rw"]);
        }
        crate::bundle::add_mount(
            &mut c,
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", "size=256m"],
        );
        if let Some(ns) = &spec.netns {
            if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
                for n in list.iter_mut() {
                    if n["type"] == "network" {
                        n["path"] = json!(ns);
                    }
                }
            }
        }
        if let Some(mib) = spec.memory_mib {
            c["linux"]["resources"]["memory"] = json!({"limit": mib << 20});
        }
        if vm {
            // The memory limit sizes the VM (guest = limit - the VMM's share),
            // so an instance costs the host at most the same as a container.
            crate::bundle::set_annotation(&mut c, "io.vessel.isolation", "vm");
            crate::bundle::set_annotation(&mut c, "io.vessel.vm.cpus", &self.vm_cpus.to_string());
        }
        c
    }

    /// Starts `spec` in `mode`; output is captured from the first byte on.
    pub fn launch(&self, mode: Mode, spec: &Spec) -> Result<Running> {
        let mut cmd;
        let bundle;
        match self.binary(mode) {
            None if mode == Mode::Native => {
                cmd = Command::new("/bin/sh");
                cmd.arg("-c")
                    .arg(&spec.script)
                    .current_dir(&spec.work_dir)
                    .env("WORK", &spec.work_dir)
                    .env("HOME", &spec.work_dir)
                    .env("THREADS", spec.threads.to_string());
                // A session of its own, as a container's init has: with
                // sched_autogroup every session is one scheduling entity, so
                // without it all native instances would share the bench's.
                // SAFETY: setsid is async-signal-safe and touches no memory
                // of the parent; it runs in the child between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                bundle = None;
            }
            None => bail!("{} is not installed", mode.name()),
            Some(bin) => {
                let b = spec.work_dir.with_extension("bundle");
                crate::bundle::write_config(&b, &self.config(mode, spec))?;
                cmd = Command::new(bin);
                cmd.arg("--root")
                    .arg(self.root(mode))
                    .args(["run", "--bundle"])
                    .arg(&b)
                    .arg(&spec.id);
                bundle = Some(b);
            }
        }
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} instance {}", mode.name(), spec.id))?;
        let first = Arc::new(Mutex::new(None));
        let out = reader(child.stdout.take(), Some(first.clone()));
        let err = reader(child.stderr.take(), None);
        Ok(Running {
            mode,
            id: spec.id.clone(),
            runtime: self.binary(mode).map(Path::to_path_buf),
            root: self.root(mode),
            bundle,
            child: Some(child),
            start,
            first_byte: first,
            out: Some(out),
            err: Some(err),
        })
    }
}

type Captured = JoinHandle<Vec<u8>>;

fn reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    first: Option<Arc<Mutex<Option<Instant>>>>,
) -> Captured {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let Some(mut p) = pipe else { return buf };
        let mut chunk = [0u8; 8192];
        loop {
            match p.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(f) = &first {
                        let mut g = f.lock().unwrap_or_else(|e| e.into_inner());
                        if g.is_none() {
                            *g = Some(Instant::now());
                        }
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        buf
    })
}

/// A started instance. Dropping it kills and deletes what is left.
pub struct Running {
    /// Its mode.
    pub mode: Mode,
    /// Its container id.
    pub id: String,
    runtime: Option<PathBuf>,
    root: PathBuf,
    bundle: Option<PathBuf>,
    child: Option<Child>,
    start: Instant,
    first_byte: Arc<Mutex<Option<Instant>>>,
    out: Option<Captured>,
    err: Option<Captured>,
}

/// How an instance ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code (128 + signal when killed).
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (and the runtime's).
    pub stderr: String,
    /// Spawn to exit.
    pub wall: Duration,
}

impl Running {
    /// The launcher's pid (the shell natively, the runtime otherwise).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Time from spawn to the first byte on stdout, waiting up to
    /// `timeout` for it; an error if the instance exits first.
    pub fn wait_first_output(&mut self, timeout: Duration) -> Result<Duration> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(t) = *self.first_byte.lock().unwrap_or_else(|e| e.into_inner()) {
                return Ok(t - self.start);
            }
            if let Some(c) = self.child.as_mut() {
                if c.try_wait()?.is_some() {
                    let f = self.wait(Duration::from_secs(5))?;
                    bail!(
                        "{} instance {} exited ({}) before any output: {}",
                        self.mode.name(),
                        self.id,
                        f.code,
                        f.stderr.trim()
                    );
                }
            }
            sys::check_interrupted()?;
            if Instant::now() >= end {
                bail!(
                    "{} instance {} printed nothing within {timeout:?}",
                    self.mode.name(),
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The pid the runtime reports in `state` (container init, or the VMM
    /// in VM mode).
    pub fn state_pid(&self) -> Option<u32> {
        let rt = self.runtime.as_ref()?;
        let out = Command::new(rt)
            .arg("--root")
            .arg(&self.root)
            .args(["state", &self.id])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["pid"].as_u64().filter(|p| *p > 0).map(|p| p as u32)
    }

    /// Runs `args` in the running container with `<runtime> exec` (used
    /// where the host cannot write the instance's files: VM mode).
    pub fn exec(&self, args: &[&str]) -> Result<()> {
        let rt = self
            .runtime
            .as_ref()
            .ok_or_else(|| anyhow!("exec into a native instance"))?;
        sys::output(
            Command::new(rt)
                .arg("--root")
                .arg(&self.root)
                .args(["exec", &self.id])
                .args(args),
        )
        .map(|_| ())
        .with_context(|| format!("exec into {} instance {}", self.mode.name(), self.id))
    }

    /// Waits for the instance to exit, up to `timeout` (then kills it).
    pub fn wait(&mut self, timeout: Duration) -> Result<Finished> {
        let Some(mut child) = self.child.take() else {
            bail!(
                "{} instance {} was already reaped",
                self.mode.name(),
                self.id
            );
        };
        let what = format!("{} instance {}", self.mode.name(), self.id);
        let res = sys::wait_timeout(&mut child, timeout, &what);
        if res.is_err() {
            self.force_delete();
        }
        let code = res?;
        let stdout = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let wall = self.start.elapsed();
        self.force_delete();
        Ok(Finished {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            wall,
        })
    }

    /// Kills the instance (the workload, then the runtime) and reaps it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(rt) = &self.runtime {
            let _ = Command::new(rt)
                .arg("--root")
                .arg(&self.root)
                .args(["kill", &self.id, "KILL"])
                .output();
        } else if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        if self.child.is_some() {
            self.wait(Duration::from_secs(60))?;
        }
        Ok(())
    }

    fn force_delete(&mut self) {
        if let Some(rt) = &self.runtime {
            let _ = Command::new(rt)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &self.id])
                .output();
        }
        if let Some(b) = self.bundle.take() {
            let _ = fs::remove_dir_all(b);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.force_delete();
    }
}

/// Makes the shared rootfs at `root`: the mount points, `bin`, `lib`,
/// `lib64` and `sbin` as links into `usr` (Debian's merged /usr), the
/// host's loader cache, and passwd/group/hosts.
pub fn make_rootfs(root: &Path) -> Result<()> {
    for d in [
        "usr",
        "work",
        "tmp",
        "proc",
        "sys",
        "dev",
        "etc/alternatives",
        "root",
        "run",
        "var/tmp",
    ] {
        fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {}", root.join(d).display()))?;
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        if Path::new("/").join(l).exists() {
            symlink(format!("usr/{l}"), root.join(l))
                .with_context(|| format!("linking {}", root.join(l).display()))?;
        }
    }
    if Path::new("/etc/ld.so.cache").exists() {
        fs::copy("/etc/ld.so.cache", root.join("etc/ld.so.cache"))
            .context("copying /etc/ld.so.cache into the rootfs")?;
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nmysql:x:100:101::/nonexistent:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nmysql:x:101:\n")?;
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost vessel-bench\n::1 localhost\n",
    )?;
    Ok(())
}

/// Resident memory of a set of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    /// Processes counted.
    pub processes: usize,
    /// Sum of VmRSS, KiB (shared pages counted in every process).
    pub rss_kib: u64,
    /// Sum of Pss, KiB (shared pages split among their users).
    pub pss_kib: u64,
}

/// `pid` and all its descendants (from `/proc/*/stat`).
pub fn process_tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(p) = stack.pop() {
        if out.contains(&p) {
            continue;
        }
        out.push(p);
        if let Some(c) = children.get(&p) {
            stack.extend(c);
        }
    }
    out
}

/// The parent pid field of a `/proc/<pid>/stat` line.
fn parse_ppid(stat: &str) -> Option<u32> {
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// RSS and PSS summed over `pids` (processes that vanished are skipped).
pub fn memory_of(pids: &[u32]) -> Memory {
    let mut m = Memory::default();
    for p in pids {
        let Ok(status) = fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        m.processes += 1;
        m.rss_kib += kib_field(&status, "VmRSS:").unwrap_or(0);
        if let Ok(r) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            m.pss_kib += kib_field(&r, "Pss:").unwrap_or(0);
        }
    }
    m
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_with_spaces_in_name() {
        assert_eq!(parse_ppid("12 (a b) c) S 7 12 12 0"), Some(7));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn own_tree_and_memory() {
        let me = std::process::id();
        let mut c = Command::new("sleep").arg("5").spawn().unwrap();
        let tree = process_tree(&[me]);
        assert!(tree.contains(&me) && tree.contains(&c.id()), "{tree:?}");
        let m = memory_of(&tree);
        assert!(m.processes >= 2 && m.rss_kib > 0 && m.pss_kib > 0, "{m:?}");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    #[test]
    fn modes_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()).unwrap(), m);
        }
        assert!(Mode::parse("kvm").is_err());
    }

    #[test]
    fn config_joins_netns_and_sets_vm_annotations() {
        let rt = Runtimes {
            vessel: "/x/vessel".into(),
            runc: None,
            crun: None,
            state_dir: "/s".into(),
            rootfs: "/r".into(),
            base_config: json!({"process": {}, "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}, "mounts": []}),
            vm_cpus: 2,
            vm_rootfs: Some("/vmr".into()),
        };
        let spec = Spec {
            id: "a".into(),
            script: "echo hi".into(),
            work_dir: "/w/a".into(),
            netns: Some("/var/run/netns/x".into()),
            memory_mib: Some(101),
            threads: 1,
        };
        let c = rt.config(Mode::VesselVm, &spec);
        assert_eq!(c["linux"]["namespaces"][1]["path"], "/var/run/netns/x");
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 101u64 << 20);
        assert_eq!(c["annotations"]["io.vessel.isolation"], "vm");
        assert_eq!(c["annotations"]["io.vessel.vm.cpus"], "2");
        assert_eq!(c["root"]["path"], "/vmr");
        assert!(c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["type"] != "bind"));
        assert_eq!(c["process"]["args"][2], "echo hi");
        let c = rt.config(Mode::Runc, &spec);
        assert!(c["annotations"].is_null());
        assert_eq!(c["root"]["path"], "/r");
        assert!(c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/work"));
    }
}
