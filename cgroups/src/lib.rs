//! vessel's resource control: one cgroup per container on libcgroups, on
//! cgroup v1 (including the v1/v2 hybrid layout) and v2.
//!
//! The runtime talks only to [`Cgroup`]; what libcgroups cannot express, or
//! what the host cannot honour, is reported as an error naming the setting.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
    FreezerState,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

/// Root of the cgroup filesystems on the host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Errors of the cgroups crate; each names the cgroup or setting involved.
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
    /// The cgroup path this container uses: `cgroupsPath`, or runc's
    /// default (`/<id>`, or `system.slice:vessel:<id>` with systemd).
    pub fn resolved_path(&self) -> PathBuf {
        match &self.cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.clone(),
            _ if self.systemd => PathBuf::from(format!("system.slice:vessel:{}", self.container_id)),
            _ => PathBuf::from(format!("/{}", self.container_id)),
        }
    }
}

/// A container's cgroup.
pub struct Cgroup {
    manager: AnyCgroupManager,
    path: PathBuf,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("path", &self.path).finish()
    }
}

impl Cgroup {
    /// Opens (without creating anything yet) the cgroup named by `opts`.
    pub fn open(opts: &CgroupOptions) -> Result<Self, CgroupError> {
        let path = opts.resolved_path();
        if opts.systemd && !Path::new("/run/systemd/system").exists() {
            return Err(CgroupError::Systemd(
                "systemd is not running on this host (no /run/systemd/system); run without --systemd-cgroup".into(),
            ));
        }
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: path.clone(),
            systemd_cgroup: opts.systemd,
            container_name: opts.container_id.clone(),
        })
        .map_err(|e| CgroupError::Setup {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        Ok(Self { manager, path })
    }

    /// The cgroup path (relative to each hierarchy's root).
    pub fn path(&self) -> &Path {
        &self.path
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
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| self.op_err("add task", e))
    }

    /// Applies `linux.resources`.
    pub fn apply(
        &self,
        resources: &LinuxResources,
        disable_oom_killer: bool,
    ) -> Result<(), CgroupError> {
        let opt = ControllerOpt {
            resources,
            disable_oom_killer,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager
            .apply(&opt)
            .map_err(|e| self.op_err("apply resources", e))
    }

    /// Freezes every process in the cgroup.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.manager
            .freeze(FreezerState::Frozen)
            .map_err(|e| self.op_err("freeze", e))
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.manager
            .freeze(FreezerState::Thawed)
            .map_err(|e| self.op_err("thaw", e))
    }

    /// Every pid in the cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.manager
            .get_all_pids()
            .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
            .map_err(|e| self.op_err("list pids", e))
    }

    /// Resource statistics, as JSON in the shape `runc events --stats` prints.
    pub fn stats(&self) -> Result<serde_json::Value, CgroupError> {
        let s = self.manager.stats().map_err(|e| self.op_err("stats", e))?;
        serde_json::to_value(&s).map_err(|e| self.op_err("stats", e))
    }

    /// Removes the cgroup directories.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.manager
            .remove()
            .map_err(|e| self.op_err("remove", e))
    }
}
