//! Helpers shared by the integration tests: unique names, guards that
//! remove what a test created (also when it fails), child processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use oci_spec::runtime::LinuxResources;
use vessel_cgroups::{Cgroup, CgroupOptions, Host};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the tests can run here; prints why not.
pub fn can_run(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP {test}: needs root to create cgroups");
        return false;
    }
    true
}

/// A cgroup path no other test or run uses.
pub fn unique_path(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    PathBuf::from(format!("/vessel-test-{tag}-{}-{n}", std::process::id()))
}

/// Options for a cgroup at `path`.
pub fn opts(path: &Path) -> CgroupOptions {
    CgroupOptions {
        cgroups_path: Some(path.to_path_buf()),
        systemd: false,
        container_id: path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Destroys the cgroup and kills the children when dropped.
pub struct Guard {
    pub cg: Cgroup,
    pub children: Vec<Child>,
}

impl Guard {
    pub fn new(cg: Cgroup) -> Self {
        Self {
            cg,
            children: Vec::new(),
        }
    }

    /// Starts `sleep 600` and returns its pid.
    pub fn spawn_sleeper(&mut self) -> i32 {
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }

    /// Reaps the children (after the cgroup killed them).
    pub fn reap(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.destroy();
        self.reap();
        for d in self.cg.dirs() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Reads a cgroup file, trimmed.
pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Parses `linux.resources` from JSON.
pub fn resources(v: serde_json::Value) -> LinuxResources {
    serde_json::from_value(v).expect("resources JSON")
}

/// Asserts that no directory of the cgroup exists in any hierarchy.
pub fn assert_nothing_left(cg: &Cgroup) {
    for d in cg.dirs() {
        assert!(!d.exists(), "{} was left behind", d.display());
    }
}

/// Remembers whether `controller` was enabled in the subtree_control of
/// the cgroup2 root and puts it back when dropped.
pub struct SubtreeGuard {
    file: Option<PathBuf>,
    controller: &'static str,
    was_enabled: bool,
}

impl SubtreeGuard {
    pub fn new(host: &Host, controller: &'static str) -> Self {
        let file = host
            .unified
            .as_ref()
            .map(|u| u.join("cgroup.subtree_control"));
        let was_enabled = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .is_some_and(|s| s.split_whitespace().any(|c| c == controller));
        Self {
            file,
            controller,
            was_enabled,
        }
    }
}

impl Drop for SubtreeGuard {
    fn drop(&mut self) {
        if let (Some(f), false) = (&self.file, self.was_enabled) {
            let _ = std::fs::write(f, format!("-{}", self.controller));
        }
    }
}

/// A loop device on a sparse file, with the bfq scheduler; detached when
/// dropped.
pub struct LoopDev {
    pub dev: String,
    /// The scheduler selected: bfq where the kernel offers it, else
    /// mq-deadline (both order requests by IO priority class).
    pub scheduler: String,
    pub major: u64,
    pub minor: u64,
    _file: tempfile::NamedTempFile,
}

impl LoopDev {
    pub fn new() -> Option<Self> {
        let file = tempfile::NamedTempFile::new().ok()?;
        file.as_file().set_len(32 << 20).ok()?;
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file.path())
            .output()
            .ok()?;
        if !out.status.success() {
            println!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let st = nix::sys::stat::stat(Path::new(&dev)).ok()?;
        let mut me = Self {
            scheduler: String::new(),
            major: nix::sys::stat::major(st.st_rdev),
            minor: nix::sys::stat::minor(st.st_rdev),
            dev,
            _file: file,
        };
        let name = me.dev.trim_start_matches("/dev/");
        let sched = format!("/sys/block/{name}/queue/scheduler");
        let offered = std::fs::read_to_string(&sched).unwrap_or_default();
        let want = ["bfq", "mq-deadline"].into_iter().find(|s| {
            offered
                .split_whitespace()
                .any(|o| o.trim_matches(['[', ']']) == *s)
        });
        let Some(want) = want else {
            println!("{} offers neither bfq nor mq-deadline: {offered}", me.dev);
            return None;
        };
        if std::fs::write(&sched, want).is_err() {
            println!("cannot select {want} on {}", me.dev);
            return None;
        }
        me.scheduler = want.to_string();
        Some(me)
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A block device of this host as (major, minor): the first whole disk
/// under /sys/block that is not a loop, ram or zram device.
pub fn host_disk() -> (u64, u64) {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for n in names {
        if n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram") {
            continue;
        }
        if let Ok(dev) = std::fs::read_to_string(format!("/sys/block/{n}/dev")) {
            if let Some((a, b)) = dev.trim().split_once(':') {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    return (a, b);
                }
            }
        }
    }
    panic!("no block device found under /sys/block");
}
