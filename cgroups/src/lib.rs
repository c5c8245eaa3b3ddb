//! vessel's resource control: one cgroup per container on libcgroups, on
//! cgroup v1 (including the v1/v2 hybrid layout) and v2.
//!
//! The runtime talks only to [`Cgroup`]. libcgroups applies what it maps
//! correctly; what it skips or mis-maps (block IO weights on BFQ hosts,
//! per-device weights, net_prio, rdma, `unified`, hugetlb on the cgroup2
//! side of a hybrid host, `pids.limit` on v2, `cpu.burst` on v1) is written
//! here. What the host cannot honour is refused by [`validate`] with an
//! error naming the setting, before anything is created.
#![warn(missing_docs)]

pub mod blockio_mechanisms;
pub mod blockio_priority;
mod devices_v1;
pub mod host;
pub mod mapping;
pub mod placement;
mod split_v1;
mod stats;
pub mod validate;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::common::{
    create_cgroup_manager, create_cgroup_manager_with_root, AnyCgroupManager, CgroupConfig,
    CgroupManager, ControllerOpt, FreezerState,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use blockio_mechanisms::Mechanism as BlockIoMechanism;
pub use blockio_priority::{BlockIoPolicy, Enforcement, IoClass, IoPriority};
pub use host::{CgroupMode, Host};
pub use placement::{OwnCgroups, Placement};
pub use validate::{validate, validate_on};

/// Root of the cgroup filesystems on the host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers libcgroups joins (plus rdma, which vessel joins).
const JOINED_V1: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
    "rdma",
];

/// Errors of the cgroups crate; each names the cgroup path or setting.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// libcgroups could not set up a manager for the path.
    #[error("cgroup {path}: {msg}")]
    Setup {
        /// The cgroup path.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// An operation on an existing cgroup failed.
    #[error("cgroup {path}: {op}: {msg}")]
    Op {
        /// The cgroup path.
        path: PathBuf,
        /// The operation (apply, add task, freeze, ...).
        op: &'static str,
        /// What failed.
        msg: String,
    },
    /// The kernel refused a setting libcgroups wrote.
    #[error("cgroup {path}: {setting}: {msg}")]
    Apply {
        /// The cgroup path.
        path: PathBuf,
        /// The `linux.resources` setting, found from the file written.
        setting: String,
        /// libcgroups' message (names the file and the value).
        msg: String,
    },
    /// Writing a setting into a cgroup file failed.
    #[error("{setting}: cannot write {value:?} to {file}: {msg}")]
    Write {
        /// The `linux.resources` setting.
        setting: String,
        /// The cgroup interface file.
        file: PathBuf,
        /// The value written.
        value: String,
        /// The kernel's answer.
        msg: String,
    },
    /// A value is out of range or malformed.
    #[error("{setting}: {msg}")]
    Invalid {
        /// The setting (e.g. `linux.resources.cpu.shares`).
        setting: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A setting nothing on this host can honour.
    #[error("{setting}: not supported on this host: {msg}")]
    Unsupported {
        /// The setting.
        setting: String,
        /// Why the host cannot honour it.
        msg: String,
    },
    /// A malformed `io.vessel.blockio.*` annotation.
    #[error("annotation {key}={value:?}: {msg}")]
    Annotation {
        /// The annotation key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        msg: String,
    },
    /// The host's cgroup layout could not be read.
    #[error("cgroup layout: {0}")]
    Host(String),
    /// The systemd cgroup manager was asked for where it cannot work.
    #[error("--systemd-cgroup: {0}")]
    Systemd(String),
}

/// How the container's cgroup is named.
#[derive(Debug, Clone)]
pub struct CgroupOptions {
    /// `linux.cgroupsPath` from the spec, if any.
    pub cgroups_path: Option<PathBuf>,
    /// Use libcgroups' systemd manager (`--systemd-cgroup`).
    pub systemd: bool,
    /// The container id (default path and systemd unit name).
    pub container_id: String,
}

impl CgroupOptions {
    /// The cgroup path as the spec names it: `cgroupsPath`, or runc's
    /// default, the container id (relative: placed under the caller's
    /// cgroups, see [`placement`]), or `system.slice:vessel:<id>` with
    /// systemd.
    pub fn resolved_path(&self) -> PathBuf {
        match &self.cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.clone(),
            _ if self.systemd => {
                PathBuf::from(format!("system.slice:vessel:{}", self.container_id))
            }
            _ => PathBuf::from(&self.container_id),
        }
    }
}

/// A container's cgroup.
pub struct Cgroup {
    /// libcgroups' manager, built on first use: building it reads mountinfo
    /// once per controller, which `state`, `delete` and `pids` never need.
    manager: std::cell::OnceCell<AnyCgroupManager>,
    config: CgroupConfig,
    /// The path recorded for the container ([`Placement::encode`]).
    path: PathBuf,
    /// Path relative to each hierarchy root (systemd names expanded); the
    /// main path when hierarchies differ.
    rel: PathBuf,
    /// Where the cgroup is in each hierarchy (none with systemd).
    placement: Option<Placement>,
    host: Host,
    /// Driven by libcgroups' systemd manager (unit properties).
    systemd: bool,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup")
            .field("path", &self.path)
            .field("mode", &self.host.mode)
            .finish()
    }
}

/// Whether systemd is the running init (as sd_booted(3) checks).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `slice:prefix:name` to the directory systemd creates for it.
fn systemd_rel_path(spec: &str) -> Option<PathBuf> {
    let mut parts = spec.splitn(3, ':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut rel = PathBuf::new();
    if slice != "-.slice" {
        let stem = slice.strip_suffix(".slice")?;
        let mut acc = String::new();
        for (i, part) in stem.split('-').enumerate() {
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(part);
            rel.push(format!("{acc}.slice"));
        }
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    rel.push(unit);
    Some(rel)
}

impl Cgroup {
    /// Opens (without creating anything yet) the cgroup named by `opts` on
    /// this host.
    pub fn open(opts: &CgroupOptions) -> Result<Self, CgroupError> {
        let host = Host::detect()?;
        Self::open_on(opts, host)
    }

    /// Opens the cgroup named by `opts` on the layout `host` (a unified
    /// `host` may be rooted at any cgroup2 mount, e.g. one made by a test).
    pub fn open_on(opts: &CgroupOptions, host: Host) -> Result<Self, CgroupError> {
        let mut path = opts.resolved_path();
        let mut placement = None;
        let named = path.clone();
        let setup = |msg: String| CgroupError::Setup {
            path: named.clone(),
            msg,
        };
        let rel = if opts.systemd {
            if !systemd_booted() {
                return Err(CgroupError::Systemd(
                    "systemd is not running on this host (no /run/systemd/system); run without --systemd-cgroup".into(),
                ));
            }
            if host.mode != CgroupMode::Unified {
                return Err(CgroupError::Systemd(format!(
                    "libcgroups' systemd manager needs a unified cgroup v2 host; this host is {}; run without --systemd-cgroup",
                    host.mode
                )));
            }
            let s = path.to_string_lossy();
            systemd_rel_path(&s).ok_or_else(|| {
                setup(format!(
                    "with --systemd-cgroup, cgroupsPath must be \"slice:prefix:name\", not {s:?}"
                ))
            })?
        } else {
            if path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            {
                return Err(setup(
                    "linux.cgroupsPath must not contain \".\" or \"..\" components".into(),
                ));
            }
            let placed = match Placement::decode(&host, &path) {
                Some(decoded) => decoded.map_err(|e| setup(format!("linux.cgroupsPath: {e}")))?,
                None => {
                    let own = if path.is_absolute() {
                        OwnCgroups::default()
                    } else {
                        OwnCgroups::of_self(&host).map_err(setup)?
                    };
                    Placement::resolve(&host, &path, &own)
                }
            };
            if placed.paths().any(|p| p.as_os_str().is_empty()) {
                return Err(setup(
                    "linux.cgroupsPath names the root cgroup; a container needs its own".into(),
                ));
            }
            path = placed.encode();
            let rel = placed.main();
            placement = Some(placed);
            rel
        };
        if rel.as_os_str().is_empty() {
            return Err(setup(
                "linux.cgroupsPath names the root cgroup; a container needs its own".into(),
            ));
        }
        let config = CgroupConfig {
            // libcgroups drives the main path; split_v1 writes the rest.
            cgroup_path: if placement.is_some() {
                Path::new("/").join(&rel)
            } else {
                path.clone()
            },
            systemd_cgroup: opts.systemd,
            container_name: opts.container_id.clone(),
        };
        Ok(Self {
            manager: std::cell::OnceCell::new(),
            config,
            path,
            rel,
            placement,
            host,
            systemd: opts.systemd,
        })
    }

    /// libcgroups' manager for this cgroup, built on first use.
    fn manager(&self) -> Result<&AnyCgroupManager, CgroupError> {
        if let Some(m) = self.manager.get() {
            return Ok(m);
        }
        let host = &self.host;
        let m = if host.mode == CgroupMode::Unified && host.root != Path::new(CGROUP_ROOT) {
            create_cgroup_manager_with_root(Some(&host.root), self.config.clone())
        } else {
            create_cgroup_manager(self.config.clone())
        }
        .map_err(|e| CgroupError::Setup {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        Ok(self.manager.get_or_init(|| m))
    }

    /// The cgroup path (relative to each hierarchy's root).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host layout this cgroup lives on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The directory of v1 controller `controller`, if it is mounted.
    pub fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        self.host
            .v1
            .get(controller)
            .map(|m| m.join(self.v1_rel(controller)))
    }

    /// The path of v1 controller `controller` below its hierarchy's root.
    fn v1_rel(&self, controller: &str) -> &Path {
        self.placement
            .as_ref()
            .and_then(|p| p.v1.get(controller))
            .unwrap_or(&self.rel)
    }

    /// The path in the cgroup2 hierarchy below its root.
    fn v2_rel(&self) -> &Path {
        self.placement
            .as_ref()
            .and_then(|p| p.v2.as_ref())
            .unwrap_or(&self.rel)
    }

    /// The mounted v1 controllers whose directory is not on the main path
    /// (libcgroups does not reach them; vessel writes their settings).
    fn v1_apart(&self) -> Vec<&str> {
        if self.host.mode == CgroupMode::Unified {
            return Vec::new();
        }
        self.host
            .v1
            .keys()
            .map(String::as_str)
            .filter(|c| self.v1_rel(c) != self.rel)
            .collect()
    }

    /// The cgroup2 directory: the cgroup itself on v2, its twin on the
    /// cgroup2 hierarchy of a hybrid host (joined like runc does, and where
    /// hugetlb and `unified` settings go), none on a pure v1 host.
    pub fn v2_dir(&self) -> Option<PathBuf> {
        match self.host.mode {
            CgroupMode::Unified => Some(self.host.root.join(self.v2_rel())),
            CgroupMode::Hybrid => self.host.unified.as_ref().map(|u| u.join(self.v2_rel())),
            CgroupMode::Legacy => None,
        }
    }

    /// The directory of every mounted v1 controller, by controller name
    /// (empty on a v2 host).
    pub fn v1_paths(&self) -> std::collections::BTreeMap<String, PathBuf> {
        self.host
            .v1
            .iter()
            .map(|(c, m)| (c.clone(), m.join(self.v1_rel(c))))
            .collect()
    }

    /// Every directory of this cgroup, one per hierarchy (v1 controllers
    /// first, then the cgroup2 one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        if self.host.mode != CgroupMode::Unified {
            for c in JOINED_V1 {
                if let Some(d) = self.v1_dir(c) {
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
        out.extend(self.v2_dir());
        out
    }

    fn op_err(&self, op: &'static str, e: impl std::fmt::Display) -> CgroupError {
        CgroupError::Op {
            path: self.path.clone(),
            op,
            msg: e.to_string(),
        }
    }

    /// Moves `pid` into the cgroup (creating the cgroup directories).
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        if self.host.mode != CgroupMode::Unified {
            // The cpuset directory needs cpus and mems before a task joins.
            self.ensure_created()
                .map_err(|e| self.op_err("add task", e))?;
        }
        let mut extra = Vec::new();
        if self.host.mode == CgroupMode::Unified || self.systemd {
            self.manager()?
                .add_task(Pid::from_raw(pid))
                .map_err(|e| self.op_err("add task", e))?;
        } else {
            // Every v1 hierarchy's directory is known (one mountinfo read,
            // placement included): joined directly, without building
            // libcgroups' v1 manager (which re-reads mountinfo and
            // /proc/self/cgroup for each of its twelve controllers).
            for c in JOINED_V1 {
                if let Some(d) = self.v1_dir(c).filter(|d| !extra.contains(d)) {
                    extra.push(d);
                }
            }
        }
        if self.host.mode == CgroupMode::Hybrid {
            extra.extend(self.v2_dir());
        }
        if self.host.mode != CgroupMode::Unified {
            extra.extend(self.v1_dir("rdma").filter(|d| !extra.contains(d)));
        }
        for dir in extra {
            fs::create_dir_all(&dir)
                .map_err(|e| self.op_err("add task", format!("{}: {e}", dir.display())))?;
            write_file(&dir.join("cgroup.procs"), &pid.to_string())
                .map_err(|e| self.op_err("add task", format!("{}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Creates the cgroup directories that do not exist yet; returns the
    /// ones it created, deepest last.
    fn ensure_created(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut created = Vec::new();
        if self.host.mode != CgroupMode::Unified {
            for c in JOINED_V1 {
                let Some(mount) = self.host.v1.get(*c) else {
                    continue;
                };
                let mut cur = mount.clone();
                for comp in self.v1_rel(c).components() {
                    let parent = cur.clone();
                    cur.push(comp);
                    if !cur.exists() {
                        match fs::create_dir(&cur) {
                            Ok(()) => created.push(cur.clone()),
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(annotate(e, &cur)),
                        }
                    }
                    if *c == "cpuset" {
                        for f in ["cpuset.cpus", "cpuset.mems"] {
                            let mine = fs::read_to_string(cur.join(f)).unwrap_or_default();
                            if mine.trim().is_empty() {
                                let theirs = fs::read_to_string(parent.join(f))
                                    .map_err(|e| annotate(e, &parent.join(f)))?;
                                write_file(&cur.join(f), theirs.trim())
                                    .map_err(|e| annotate(e, &cur.join(f)))?;
                            }
                        }
                    }
                }
            }
        }
        if let Some(root) = match self.host.mode {
            CgroupMode::Unified => Some(self.host.root.clone()),
            CgroupMode::Hybrid => self.host.unified.clone(),
            CgroupMode::Legacy => None,
        } {
            let mut cur = root;
            let comps: Vec<_> = self.v2_rel().components().collect();
            let available = fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
            for comp in &comps {
                if self.host.mode == CgroupMode::Unified {
                    // Best effort, as libcgroups does: enable what the parent offers.
                    for c in available.split_whitespace() {
                        let _ = write_file(&cur.join("cgroup.subtree_control"), &format!("+{c}"));
                    }
                }
                cur.push(comp);
                if !cur.exists() {
                    match fs::create_dir(&cur) {
                        Ok(()) => created.push(cur.clone()),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(annotate(e, &cur)),
                    }
                }
            }
        }
        Ok(created)
    }

    /// Enables `controller` in `cgroup.subtree_control` from the cgroup2
    /// root down to this cgroup's parent.
    fn enable_v2_controller(&self, controller: &str, setting: &str) -> Result<(), CgroupError> {
        let root = match self.host.mode {
            CgroupMode::Unified => self.host.root.clone(),
            _ => self
                .host
                .unified
                .clone()
                .ok_or_else(|| unsupported(setting, "no cgroup2 hierarchy"))?,
        };
        let mut cur = root;
        for comp in self.v2_rel().components() {
            let f = cur.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&f).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                write_file(&f, &format!("+{controller}")).map_err(|e| CgroupError::Write {
                    setting: setting.to_string(),
                    file: f.clone(),
                    value: format!("+{controller}"),
                    msg: e.to_string(),
                })?;
            }
            cur.push(comp);
        }
        Ok(())
    }

    /// Checks `resources` ([`validate_on`]) and applies them: nothing is
    /// created when they are invalid, and directories this call created
    /// are removed again when applying fails.
    pub fn apply(
        &self,
        resources: &LinuxResources,
        disable_oom_killer: bool,
    ) -> Result<(), CgroupError> {
        validate_on(&self.host, resources)?;
        if disable_oom_killer && self.host.mode == CgroupMode::Unified {
            return Err(unsupported(
                "linux.resources.memory.disableOOMKiller",
                "cgroup v2 has no switch to disable the OOM killer",
            ));
        }
        if disable_oom_killer && !self.host.has_v1("memory") {
            return Err(unsupported(
                "linux.resources.memory.disableOOMKiller",
                "the memory controller is not mounted",
            ));
        }
        let resources = &enforceable(&self.host, resources);
        let created = if self.systemd {
            Vec::new()
        } else {
            self.ensure_created()
                .map_err(|e| self.op_err("create", e))?
        };
        let result = self.apply_inner(resources, disable_oom_killer);
        if result.is_err() {
            for dir in created.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
        result
    }

    fn apply_inner(
        &self,
        resources: &LinuxResources,
        disable_oom_killer: bool,
    ) -> Result<(), CgroupError> {
        if self.systemd {
            // systemd owns the unit's cgroup: libcgroups turns every
            // setting into a unit property (or refuses it).
            return self
                .manager()?
                .apply(&ControllerOpt {
                    resources,
                    disable_oom_killer,
                    oom_score_adj: None,
                    freezer_state: None,
                })
                .map_err(|e| self.op_err("apply resources (systemd)", e));
        }
        let v2 = self.host.mode == CgroupMode::Unified;
        let hugetlb_on_v2_side =
            self.host.mode == CgroupMode::Hybrid && !self.host.has_v1("hugetlb");

        // What libcgroups maps correctly; the rest is written below.
        let mut lib = resources.clone();
        lib.set_block_io(None);
        lib.set_network(None);
        lib.set_rdma(None);
        lib.set_unified(None);
        if v2 {
            lib.set_pids(None);
        }
        if hugetlb_on_v2_side {
            lib.set_hugepage_limits(None);
        }
        let apart = if self.systemd {
            Vec::new()
        } else {
            self.v1_apart()
        };
        for c in &apart {
            split_v1::strip(&mut lib, c);
        }
        if let Some(cpu) = resources.cpu() {
            let mut cpu = cpu.clone();
            if cpu.cpus().as_deref().is_some_and(|s| s.trim().is_empty()) {
                cpu.set_cpus(None);
            }
            if cpu.mems().as_deref().is_some_and(|s| s.trim().is_empty()) {
                cpu.set_mems(None);
            }
            if !v2 {
                cpu.set_burst(None);
            }
            lib.set_cpu(Some(cpu));
        }
        let devices_dir = self.v1_dir("devices");
        // A devices controller off the main path is split_v1's business.
        let direct = !v2
            && !apart.contains(&"devices")
            && !disable_oom_killer
            && devices_v1::only_devices(&lib);
        if let (true, Some(dir)) = (direct, devices_dir) {
            // Only device rules for libcgroups: written directly (see
            // devices_v1 for why its v1 manager is not built for this).
            devices_v1::apply(&dir, lib.devices().as_deref()).map_err(|(what, e)| {
                CgroupError::Apply {
                    path: self.path.clone(),
                    setting: "linux.resources.devices".into(),
                    msg: format!("{what}: {e}"),
                }
            })?;
        } else {
            self.apply_with_libcgroups(&lib, disable_oom_killer)?;
        }
        self.apply_vessel_writes(resources, disable_oom_killer, &apart)
    }

    /// libcgroups' manager applies `lib`.
    fn apply_with_libcgroups(
        &self,
        lib: &LinuxResources,
        disable_oom_killer: bool,
    ) -> Result<(), CgroupError> {
        self.manager()?
            .apply(&ControllerOpt {
                resources: lib,
                disable_oom_killer,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| {
                let msg = e.to_string();
                match setting_in_message(&msg) {
                    Some(setting) => CgroupError::Apply {
                        path: self.path.clone(),
                        setting: setting.to_string(),
                        msg,
                    },
                    None => self.op_err("apply resources", msg),
                }
            })
    }

    /// The settings vessel writes itself (controllers off the main path,
    /// and what libcgroups does not map).
    fn apply_vessel_writes(
        &self,
        resources: &LinuxResources,
        disable_oom_killer: bool,
        apart: &[&str],
    ) -> Result<(), CgroupError> {
        let v2 = self.host.mode == CgroupMode::Unified;
        let hugetlb_on_v2_side =
            self.host.mode == CgroupMode::Hybrid && !self.host.has_v1("hugetlb");
        let mut writes: Vec<(PathBuf, String, String)> = Vec::new();
        let push =
            |w: &mut Vec<(PathBuf, String, String)>, dir: &Path, file: &str, v: String, s: &str| {
                w.push((dir.join(file), v, s.to_string()));
            };

        for c in apart {
            let Some(dir) = self.v1_dir(c) else { continue };
            for (file, v, s) in split_v1::writes(c, resources, disable_oom_killer) {
                push(&mut writes, &dir, file, v, &s);
            }
            if *c == "hugetlb" {
                for (file, v, s) in split_v1::hugetlb_writes(resources) {
                    push(&mut writes, &dir, &file, v, &s);
                }
            }
        }
        if !v2 {
            if let (Some(b), Some(dir)) = (
                resources.cpu().as_ref().and_then(|c| c.burst()),
                self.v1_dir("cpu"),
            ) {
                push(
                    &mut writes,
                    &dir,
                    "cpu.cfs_burst_us",
                    b.to_string(),
                    "linux.resources.cpu.burst",
                );
            }
            if disable_oom_killer && resources.memory().is_none() {
                if let Some(dir) = self.v1_dir("memory") {
                    push(
                        &mut writes,
                        &dir,
                        "memory.oom_control",
                        "1".into(),
                        "linux.resources.memory.disableOOMKiller",
                    );
                }
            }
            if let Some(net) = resources.network() {
                if let (Some(id), Some(dir)) = (net.class_id(), self.v1_dir("net_cls")) {
                    push(
                        &mut writes,
                        &dir,
                        "net_cls.classid",
                        id.to_string(),
                        "linux.resources.network.classID",
                    );
                }
                if let Some(dir) = self.v1_dir("net_prio") {
                    for (i, p) in net.priorities().iter().flatten().enumerate() {
                        push(
                            &mut writes,
                            &dir,
                            "net_prio.ifpriomap",
                            format!("{} {}", p.name(), p.priority()),
                            &format!("linux.resources.network.priorities[{i}]"),
                        );
                    }
                }
            }
        } else if let (Some(p), Some(dir)) = (resources.pids(), self.v2_dir()) {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            push(
                &mut writes,
                &dir,
                "pids.max",
                v,
                "linux.resources.pids.limit",
            );
        }

        if let Some(bio) = resources.block_io() {
            let dir = if v2 {
                self.v2_dir()
            } else {
                self.v1_dir("blkio")
            };
            if let Some(dir) = dir {
                let has = |f: &str| dir.join(f).exists();
                let plan = if v2 {
                    mapping::v2_io_writes(bio, &has)?
                } else {
                    mapping::v1_blkio_writes(bio, &has)?
                };
                for w in plan {
                    push(&mut writes, &dir, &w.file, w.value, &w.setting);
                }
            }
        }

        if hugetlb_on_v2_side {
            if let (Some(limits), Some(dir)) = (resources.hugepage_limits(), self.v2_dir()) {
                if !limits.is_empty() {
                    self.enable_v2_controller("hugetlb", "linux.resources.hugepageLimits")?;
                }
                for (i, l) in limits.iter().enumerate() {
                    let s = format!("linux.resources.hugepageLimits[{i}]");
                    push(
                        &mut writes,
                        &dir,
                        &format!("hugetlb.{}.max", l.page_size()),
                        l.limit().to_string(),
                        &s,
                    );
                    let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
                    if dir.join(&rsvd).exists() {
                        push(&mut writes, &dir, &rsvd, l.limit().to_string(), &s);
                    }
                }
            }
        }

        if let Some(rdma) = resources.rdma() {
            let dir = if v2 {
                self.v2_dir()
            } else {
                self.v1_dir("rdma")
            };
            if let Some(dir) = dir {
                for (dev, r) in rdma {
                    let h = r.hca_handles().map_or("max".into(), |v| v.to_string());
                    let o = r.hca_objects().map_or("max".into(), |v| v.to_string());
                    push(
                        &mut writes,
                        &dir,
                        "rdma.max",
                        format!("{dev} hca_handle={h} hca_object={o}"),
                        &format!("linux.resources.rdma[{dev:?}]"),
                    );
                }
            }
        }

        if let Some(unified) = resources.unified() {
            if let Some(dir) = self.v2_dir() {
                let mut keys: Vec<_> = unified.keys().collect();
                keys.sort();
                for key in keys {
                    let controller = key.split('.').next().unwrap_or("");
                    let setting = format!("linux.resources.unified[{key:?}]");
                    if controller != "cgroup" {
                        self.enable_v2_controller(controller, &setting)?;
                    }
                    push(&mut writes, &dir, key, unified[key].clone(), &setting);
                }
            }
        }

        for (file, value, setting) in writes {
            write_file(&file, &value).map_err(|e| CgroupError::Write {
                setting,
                file: file.clone(),
                value: value.clone(),
                msg: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Applies a container-level block IO policy (the
    /// `io.vessel.blockio.*` annotations) to this cgroup with what this
    /// host and its devices offer, and reports the mechanisms in force;
    /// its `ioprio` is what the runtime gives every process of the
    /// container.
    pub fn apply_blockio_policy(&self, policy: &BlockIoPolicy) -> Result<Enforcement, CgroupError> {
        if self.systemd {
            return Err(unsupported(
                "annotations io.vessel.blockio.priority/bandwidth",
                "not applied to systemd-managed cgroups; run without --systemd-cgroup",
            ));
        }
        let created = self
            .ensure_created()
            .map_err(|e| self.op_err("create", e))?;
        let r = blockio_priority::apply(self, policy);
        match &r {
            Ok(e) => tracing::info!(
                "cgroup {}: block IO policy enforced by: {}",
                self.path.display(),
                e.summary()
            ),
            Err(_) => {
                for dir in created.iter().rev() {
                    let _ = fs::remove_dir(dir);
                }
            }
        }
        r
    }

    /// How many processes of this cgroup the OOM killer has killed (v1
    /// `memory.oom_control`, v2 `memory.events`); 0 when unknown.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let file = match self.host.mode {
            CgroupMode::Unified => self.v2_dir().map(|d| d.join("memory.events")),
            _ => self.v1_dir("memory").map(|d| d.join("memory.oom_control")),
        };
        let Some(file) = file else { return Ok(0) };
        let text = std::fs::read_to_string(&file).map_err(|e| self.op_err("read oom count", e))?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Freezes every process in the cgroup.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        if self.v1_apart().contains(&"freezer") {
            return self.freeze_v1_apart("FROZEN");
        }
        self.manager()?
            .freeze(FreezerState::Frozen)
            .map_err(|e| self.op_err("freeze", e))
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        if self.v1_apart().contains(&"freezer") {
            return self.freeze_v1_apart("THAWED");
        }
        self.manager()?
            .freeze(FreezerState::Thawed)
            .map_err(|e| self.op_err("thaw", e))
    }

    /// Sets the v1 freezer off the main path to `state` and waits until the
    /// kernel reports it (FREEZING turns FROZEN once every task stopped).
    fn freeze_v1_apart(&self, state: &str) -> Result<(), CgroupError> {
        let op = if state == "FROZEN" { "freeze" } else { "thaw" };
        let f = self
            .v1_dir("freezer")
            .ok_or_else(|| self.op_err(op, "the freezer controller is not mounted"))?
            .join("freezer.state");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            write_file(&f, state).map_err(|e| self.op_err(op, format!("{}: {e}", f.display())))?;
            let now = fs::read_to_string(&f)
                .map_err(|e| self.op_err(op, format!("{}: {e}", f.display())))?;
            if now.trim() == state {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.op_err(op, format!("{} stays {}", f.display(), now.trim())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the cgroup is frozen (v1 `freezer.state` is `FROZEN`, v2
    /// `cgroup.events` says `frozen 1`). A missing cgroup is not frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.host.mode {
            CgroupMode::Unified => {
                let Some(dir) = self.v2_dir() else {
                    return Ok(false);
                };
                if !dir.exists() {
                    return Ok(false);
                }
                let ev = fs::read_to_string(dir.join("cgroup.events"))
                    .map_err(|e| self.op_err("freezer state", format!("{}: {e}", dir.display())))?;
                Ok(ev.lines().any(|l| l.trim() == "frozen 1"))
            }
            _ => {
                let Some(dir) = self.v1_dir("freezer") else {
                    return Err(
                        self.op_err("freezer state", "the freezer controller is not mounted")
                    );
                };
                let f = dir.join("freezer.state");
                if !dir.exists() {
                    return Ok(false);
                }
                let s = fs::read_to_string(&f)
                    .map_err(|e| self.op_err("freezer state", format!("{}: {e}", f.display())))?;
                Ok(s.trim() == "FROZEN")
            }
        }
    }

    /// Every pid in the cgroup and its descendant cgroups, sorted, without
    /// duplicates (empty when the cgroup does not exist).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut set = BTreeSet::new();
        for dir in self.dirs() {
            collect_pids(&dir, &mut set).map_err(|e| self.op_err("list pids", e))?;
        }
        Ok(set.into_iter().collect())
    }

    /// Resource statistics, as JSON in the shape `runc events --stats`
    /// prints under `data` (cpu, memory, pids, blkio, hugetlb).
    pub fn stats(&self) -> Result<serde_json::Value, CgroupError> {
        if !self.dirs().iter().any(|d| d.exists()) {
            return Err(self.op_err("stats", "the cgroup does not exist"));
        }
        Ok(stats::collect(self))
    }

    /// Kills every process left in the cgroup and removes its directories
    /// (with any child cgroups) in every hierarchy.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        if self.systemd {
            // Stopping the transient unit kills its processes.
            self.manager()?
                .remove()
                .map_err(|e| self.op_err("stop systemd unit", e))?;
        }
        let dirs: Vec<PathBuf> = self.dirs().into_iter().filter(|d| d.exists()).collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.op_err(
                    "remove",
                    format!("processes {pids:?} did not exit after SIGKILL"),
                ));
            }
            if let Some(d) = self.v2_dir().filter(|d| d.join("cgroup.kill").exists()) {
                let _ = write_file(&d.join("cgroup.kill"), "1");
            }
            for p in &pids {
                let _ = nix::sys::signal::kill(Pid::from_raw(*p), nix::sys::signal::SIGKILL);
            }
            // Frozen tasks only die once thawed.
            if let Some(d) = self.v1_dir("freezer").filter(|d| d.exists()) {
                let _ = write_file(&d.join("freezer.state"), "THAWED");
            }
            if let Some(d) = self.v2_dir().filter(|d| d.join("cgroup.freeze").exists()) {
                let _ = write_file(&d.join("cgroup.freeze"), "0");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in dirs {
            remove_tree(&dir).map_err(|e| self.op_err("remove", e))?;
        }
        Ok(())
    }
}

/// Finds the setting behind the first cgroup file named in `msg`.
fn setting_in_message(msg: &str) -> Option<&'static str> {
    msg.split_whitespace().find_map(|tok| {
        let tok = tok.trim_matches(|c: char| c == ':' || c == '"' || c == '\'' || c == ',');
        let name = tok.rsplit('/').next()?;
        mapping::setting_for_file(name)
    })
}

fn unsupported(setting: &str, msg: &str) -> CgroupError {
    CgroupError::Unsupported {
        setting: setting.to_string(),
        msg: msg.to_string(),
    }
}

fn annotate(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `value` to a cgroup interface file in one `write(2)`.
pub(crate) fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

fn collect_pids(dir: &Path, set: &mut BTreeSet<i32>) -> Result<(), String> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(s) => set.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", procs.display())),
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_pids(&entry.path(), set)?;
        }
    }
    Ok(())
}

/// Removes a cgroup directory and its child cgroups, deepest first,
/// retrying while the kernel still reports it busy.
fn remove_tree(dir: &Path) -> Result<(), String> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
            }
        }
    }
    let mut delay = Duration::from_millis(5);
    for _ in 0..10 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        }
    }
    fs::remove_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// `resources` without the deprecated kernel memory limits the host cannot
/// enforce, each dropped with a warning as runc 1.1 drops them: a separate
/// kernel memory limit (`memory.kernel`) exists on no current kernel (v1
/// accepts and ignores it since Linux 6.1; v2 counts kernel memory in
/// memory.max), and a TCP buffer limit (`memory.kernelTCP`) only where
/// v1's `memory.kmem.tcp.limit_in_bytes` exists.
fn enforceable(host: &Host, resources: &LinuxResources) -> LinuxResources {
    let mut r = resources.clone();
    let Some(mut mem) = *r.memory() else {
        return r;
    };
    if mem.kernel().is_some_and(|k| k != 0) {
        tracing::warn!(
            "linux.resources.memory.kernel is ignored: Linux no longer enforces a separate kernel memory limit (limit memory instead)"
        );
        mem.set_kernel(None);
    }
    let tcp_file = host.mode != CgroupMode::Unified
        && host.root_has_file("memory", "memory.kmem.tcp.limit_in_bytes");
    if mem.kernel_tcp().is_some_and(|k| k != 0) && !tcp_file {
        tracing::warn!(
            "linux.resources.memory.kernelTCP is ignored: this host has no TCP buffer limit (memory.kmem.tcp.limit_in_bytes)"
        );
        mem.set_kernel_tcp(None);
    }
    r.set_memory(Some(mem));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths() {
        assert_eq!(
            systemd_rel_path("system.slice:vessel:abc").unwrap(),
            PathBuf::from("system.slice/vessel-abc.scope")
        );
        assert_eq!(
            systemd_rel_path("a-b.slice::x").unwrap(),
            PathBuf::from("a.slice/a-b.slice/x.scope")
        );
        assert!(systemd_rel_path("nocolons").is_none());
    }

    #[test]
    fn default_paths() {
        let o = CgroupOptions {
            cgroups_path: None,
            systemd: false,
            container_id: "c1".into(),
        };
        assert_eq!(o.resolved_path(), PathBuf::from("c1"));
    }

    /// memory.kernel is dropped everywhere (no kernel enforces it);
    /// memory.kernelTCP is kept where the v1 TCP buffer limit exists.
    #[test]
    fn kernel_memory_is_dropped_where_unenforceable() {
        let d = tempfile::tempdir().unwrap();
        let mem = d.path().join("memory");
        fs::create_dir_all(&mem).unwrap();
        let info = format!(
            "30 1 0:30 / {} rw - cgroup cgroup rw,memory\n",
            mem.display()
        );
        let host = Host::from_mountinfo(&info, d.path()).unwrap();
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1 << 30, "kernel": 1 << 20, "kernelTCP": 1 << 20}
        }))
        .unwrap();
        let m = *enforceable(&host, &r).memory();
        let m = m.unwrap();
        assert_eq!(
            (m.limit(), m.kernel(), m.kernel_tcp()),
            (Some(1 << 30), None, None)
        );
        fs::write(mem.join("memory.kmem.tcp.limit_in_bytes"), "").unwrap();
        let m = enforceable(&host, &r).memory().unwrap();
        assert_eq!((m.kernel(), m.kernel_tcp()), (None, Some(1 << 20)));
        let v2 = Host::unified_at(d.path());
        let m = enforceable(&v2, &r).memory().unwrap();
        assert_eq!((m.kernel(), m.kernel_tcp()), (None, None));
    }
}
