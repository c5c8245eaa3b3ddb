//! The state store: `<root>/<id>/state.json`, written atomically, with a
//! per-container lock (flock on the container's directory).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::utils;

/// File name of the state inside a container's directory.
pub const STATE_FILE: &str = "state.json";
/// The fifo a created container's init blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// The fifo through which init tells `start` how starting went: an error
/// message, or end-of-file once the workload has been exec'd.
pub const START_STATUS_FIFO: &str = "start.status";

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, init waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The init process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// Everything vessel remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// OCI version of the bundle.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the container's init (0 once stopped and unknown).
    pub pid: i32,
    /// Status as last recorded (the live one comes from [`State::live_status`]).
    pub status: Status,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Owner (user name), as runc shows it.
    #[serde(default)]
    pub owner: String,
    /// The bundle's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Start time of `pid`, to tell a recycled pid from ours.
    #[serde(rename = "pidStartTime", default)]
    pub pid_start_time: u64,
    /// The cgroup path in use.
    #[serde(rename = "cgroupPath", default)]
    pub cgroup_path: PathBuf,
    /// Whether the cgroup is managed through systemd.
    #[serde(rename = "systemdCgroup", default)]
    pub systemd_cgroup: bool,
    /// Isolation mode: `container` (or `vm`).
    #[serde(default = "default_isolation")]
    pub isolation: String,
    /// Whether the container has its own pid namespace (then killing init
    /// kills everything; otherwise `delete --force` kills the whole cgroup).
    #[serde(rename = "ownPidNs", default)]
    pub own_pid_ns: bool,
    /// vm mode: the VM behind the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmState>,
}

/// What vessel remembers of a vm-mode container's VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    /// The VMM process (a child of the supervisor, which is `pid`).
    #[serde(rename = "vmmPid")]
    pub vmm_pid: i32,
    /// Engine name.
    pub engine: String,
    /// Accelerator (`kvm` or `tcg`).
    pub accel: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory, MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u32,
    /// The writable layer image (outside the state directory).
    pub scratch: PathBuf,
    /// The taps joined to the container's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<vessel_vm::net::NetAttachment>,
}

fn default_isolation() -> String {
    "container".into()
}

/// The OCI state as `vessel state` prints it.
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    /// OCI version.
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    /// Container id.
    pub id: &'a str,
    /// Init pid (0 when stopped).
    pub pid: i32,
    /// Live status.
    pub status: Status,
    /// Bundle path.
    pub bundle: &'a Path,
    /// Rootfs path.
    pub rootfs: &'a Path,
    /// Creation time.
    pub created: &'a str,
    /// Owner.
    pub owner: &'a str,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
    /// vessel's isolation mode.
    pub isolation: &'a str,
}

impl State {
    /// The status now: the recorded one corrected by whether init still runs,
    /// whether it still waits for `start`, and whether the cgroup is frozen.
    pub fn live_status(&self, dir: &Path) -> Status {
        if !utils::process_alive(self.pid, self.pid_start_time) {
            return Status::Stopped;
        }
        if self.vm.is_some() {
            // No exec fifo: the supervisor waits for `start` itself.
            return match self.status {
                Status::Creating => Status::Created,
                s => s,
            };
        }
        match self.status {
            Status::Creating | Status::Created if dir.join(EXEC_FIFO).exists() => Status::Created,
            Status::Creating | Status::Created => Status::Running,
            s => s,
        }
    }

    /// The OCI view of this state with the given live status.
    pub fn oci(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: &self.oci_version,
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: &self.annotations,
            isolation: &self.isolation,
        }
    }

    /// Reads `<dir>/state.json`.
    pub fn load(dir: &Path) -> io::Result<State> {
        let data = fs::read(dir.join(STATE_FILE))?;
        serde_json::from_slice(&data).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.join(STATE_FILE).display()),
            )
        })
    }

    /// Writes `<dir>/state.json` atomically.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let data = serde_json::to_vec(self).map_err(io::Error::other)?;
        utils::write_atomic(&dir.join(STATE_FILE), &data)
    }
}

/// An exclusive lock on one container's directory, released on drop.
#[derive(Debug)]
pub struct Lock {
    _fd: OwnedFd,
}

impl Lock {
    /// Blocks until the lock on `dir` is held.
    pub fn acquire(dir: &Path) -> io::Result<Lock> {
        let f = fs::File::open(dir)?;
        let fd: OwnedFd = f.into();
        // SAFETY: flock on a valid, owned descriptor; no memory is involved.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Lock { _fd: fd })
    }

    /// The descriptor holding the lock (forked children close their copy).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self._fd.as_raw_fd()
    }
}
