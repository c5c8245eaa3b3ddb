//! The state store: `<root>/<id>/state.json`, written atomically, beside
//! the container's [ledger](crate::ledger), with a per-container lock
//! (flock on the container's directory) that writers take and readers
//! (`state`, `list`) never wait for.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use std::os::unix::fs::DirBuilderExt;

use serde::{Deserialize, Serialize};

use crate::ledger::{Entry, Ledger, Owned, ProcRef};
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
    /// The isolation mode and its own data, recorded once at `create`
    /// (stored as the fields `isolation`, `ownPidNs`, `initExe` and `vm`).
    #[serde(flatten)]
    pub mode: Mode,
    /// Set when this state was rebuilt from the ledger, because `state.json`
    /// was never written (its creator was killed) or cannot be read: why.
    #[serde(skip)]
    pub problem: Option<String>,
}

/// How a container is isolated, with what that mode needs to remember.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    from = "crate::isolation::ModeRecord",
    into = "crate::isolation::ModeRecord"
)]
pub enum Mode {
    /// Namespaces and cgroups on the host kernel.
    Container(HostState),
    /// A microVM.
    Vm(Box<VmState>),
    /// A later container of a VM pod: it runs inside its pod sandbox's VM
    /// (see [`crate::vm::pod`]).
    VmPodMember(Box<PodMemberState>),
}

/// What vessel remembers of a container created inside its pod's VM.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodMemberState {
    /// The pod sandbox: the vm-mode container (same state root) whose VM
    /// runs this one.
    pub sandbox: String,
    /// The sandbox's pod slot (virtio-blk disk) holding this container's
    /// root filesystem image.
    pub slot: u32,
    /// The pid of the container's init in the guest.
    #[serde(rename = "guestPid")]
    pub guest_pid: i32,
}

/// What vessel remembers of a container-mode container beyond [`State`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// Whether the container has its own pid namespace (then killing init
    /// kills everything; otherwise `delete --force` kills the whole cgroup).
    pub own_pid_ns: bool,
    /// Device and inode of init's executable while it waited for `start`
    /// (vessel's own): init runs the workload once they differ, whatever
    /// `status` says (a `start` killed after releasing init never saved it).
    pub init_exe: Option<(u64, u64)>,
}

/// What vessel remembers of a vm-mode container's VM.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VmState {
    /// The VMM process (a child of the supervisor, which is `pid`).
    #[serde(rename = "vmmPid")]
    pub vmm_pid: i32,
    /// Start time of `vmm_pid` (0: unknown, never signalled then).
    #[serde(rename = "vmmStartTime", default)]
    pub vmm_start_time: u64,
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
    /// A pod sandbox's slots: sparse disk images the VM got at boot, into
    /// which the root filesystems of the pod's later containers are
    /// written (outside the state directory, like `scratch`).
    #[serde(rename = "podSlots", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_slots: Vec<PathBuf>,
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
    pub isolation: crate::isolation::Isolation,
    /// Why the state is not what vessel recorded (a killed `create`, an
    /// unreadable `state.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

impl State {
    /// The status now: the recorded one corrected by whether init still runs,
    /// whether it still waits for `start`, and whether the cgroup is frozen.
    pub fn live_status(&self, dir: &Path) -> Status {
        if self.problem.is_some() && self.status != Status::Running {
            // Rebuilt from the ledger: creating while its creator lives,
            // else stopped (what is left is only for `delete`).
            return self.status;
        }
        if !utils::process_alive(self.pid, self.pid_start_time) {
            return Status::Stopped;
        }
        self.mode.backend().live_status(self.status, dir, self.pid)
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
            isolation: self.mode.isolation(),
            reason: self.problem.as_deref(),
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

/// Device and inode of the executable `pid` runs.
pub fn exe_of(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Device and inode of this process's executable.
pub fn exe_of_self() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// How reading a container's state went.
#[derive(Debug)]
pub enum Loaded {
    /// `state.json`, as recorded.
    Recorded(State),
    /// Rebuilt from the ledger ([`State::problem`] says why).
    Recovered(State),
}

impl Loaded {
    /// The state, however it was obtained.
    pub fn into_state(self) -> State {
        match self {
            Loaded::Recorded(s) | Loaded::Recovered(s) => s,
        }
    }
}

/// Reads the state of container `id` in `dir`: `state.json`, or when it is
/// missing or unreadable, what the ledger says.
pub fn read(dir: &Path, id: &str) -> io::Result<Loaded> {
    let why = match State::load(dir) {
        Ok(s) => return Ok(Loaded::Recorded(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("{STATE_FILE} is unreadable ({e})")),
    };
    if !dir.is_dir() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let owned = Owned::from_entries(Ledger::read(dir)?);
    Ok(Loaded::Recovered(State::recover(id, &owned, why)))
}

impl State {
    /// A state rebuilt from a ledger. Without `corrupt` (no `state.json`):
    /// creating while the creator lives, else stopped. With it: running
    /// while the recorded init (or VM supervisor) lives, else stopped.
    pub fn recover(id: &str, owned: &Owned, corrupt: Option<String>) -> State {
        let (creator, bundle, created, isolation) = owned.begin.clone().unwrap_or((
            ProcRef { pid: 0, start: 0 },
            PathBuf::new(),
            String::new(),
            Default::default(),
        ));
        let (mode, main) = Mode::recover(isolation, owned);
        let main = main.unwrap_or(ProcRef { pid: 0, start: 0 });
        let (status, problem) = match corrupt {
            Some(why) if main.alive() => (Status::Running, why),
            Some(why) => (Status::Stopped, why),
            None if owned.begin.is_none() => (
                Status::Stopped,
                "nothing is recorded (a delete was interrupted)".to_string(),
            ),
            None if creator.alive() => (Status::Creating, "still being created".to_string()),
            None => (
                Status::Stopped,
                format!(
                    "{STATE_FILE} is missing: its create (pid {}) was killed, or a delete was",
                    creator.pid
                ),
            ),
        };
        let (cgroup_path, systemd_cgroup) = owned.cgroups.last().cloned().unwrap_or_default();
        State {
            oci_version: String::new(),
            id: id.into(),
            pid: main.pid,
            status,
            rootfs: PathBuf::new(),
            bundle,
            created,
            owner: String::new(),
            annotations: HashMap::new(),
            pid_start_time: main.start,
            cgroup_path,
            systemd_cgroup,
            mode,
            problem: Some(problem),
        }
    }
}

/// A new container's state directory, claimed: locked, its ledger begun.
#[derive(Debug)]
pub struct NewDir {
    /// `<root>/<id>`.
    pub dir: PathBuf,
    /// Held until `create` is done.
    pub lock: Lock,
    /// The container's ledger, its `begin` entry written.
    pub ledger: Ledger,
}

/// Why a state directory could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// `<root>/<id>` exists.
    #[error("already exists")]
    Exists,
    /// The root or the directory cannot be made or locked.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The directory (`--root`, or the one being prepared).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Prefix of directories being prepared by [`claim`].
pub const NEW_PREFIX: &str = ".new-";

/// Claims `<root>/<id>` for a new container. The directory is prepared
/// under a temporary name (locked, ledger begun) and renamed into place
/// only if the id is free, so `<root>/<id>` never exists without its lock
/// held or its ledger written: whoever finds it can tell what it is.
pub fn claim(root: &Path, id: &str, begin: &Entry) -> Result<NewDir, ClaimError> {
    let io = |what: &Path, source: io::Error| ClaimError::Io {
        path: what.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| io(root, e))?;
    let dir = root.join(id);
    if dir.exists() {
        return Err(ClaimError::Exists);
    }
    let tmp = root.join(format!(
        "{NEW_PREFIX}{}-{}",
        std::process::id(),
        utils::now_nanos()
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| io(&tmp, e))?;
    let prepared = (|| {
        let lock = Lock::acquire(&tmp)?;
        let mut ledger = Ledger::create(&tmp)?;
        ledger.record(begin)?;
        Ok::<_, io::Error>((lock, ledger))
    })();
    let (lock, ledger) = match prepared {
        Ok(x) => x,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io(&tmp, e));
        }
    };
    match nix::fcntl::renameat2(
        None,
        &tmp,
        None,
        &dir,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(NewDir { dir, lock, ledger }),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if e == nix::errno::Errno::EEXIST {
                Err(ClaimError::Exists)
            } else {
                Err(io(&dir, e.into()))
            }
        }
    }
}

/// Removes directories that a [`claim`] killed before its rename left
/// (nothing was created for them yet; `list` never shows them). Run by
/// `delete` of an id that does not exist, not on every create. One whose creator (the pid in its
/// name) still runs is in progress, even before it took its lock.
pub fn sweep_unclaimed(root: &Path) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NEW_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if utils::proc_start_time(pid).is_some_and(|(_, zombie)| !zombie) {
            continue;
        }
        if let Ok(Some(_lock)) = Lock::try_acquire(&e.path()) {
            let _ = fs::remove_dir_all(e.path());
        }
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
        Self::flock(dir, libc::LOCK_EX).map(|l| l.expect("a blocking flock"))
    }

    /// The lock on `dir` if nobody holds it.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<Lock>> {
        Self::flock(dir, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn flock(dir: &Path, how: libc::c_int) -> io::Result<Option<Lock>> {
        let f = fs::File::open(dir)?;
        let fd: OwnedFd = f.into();
        loop {
            // SAFETY: flock on a valid, owned descriptor; no memory is involved.
            let rc = unsafe { libc::flock(fd.as_raw_fd(), how) };
            if rc == 0 {
                return Ok(Some(Lock { _fd: fd }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Whether the locked directory is still the one at `dir` (a delete
    /// that held the lock before us may have removed it).
    pub fn is_at(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(here) = fs::metadata(dir) else {
            return false;
        };
        let Ok(locked) = nix::sys::stat::fstat(self._fd.as_raw_fd()) else {
            return false;
        };
        here.dev() == locked.st_dev && here.ino() == locked.st_ino
    }

    /// The descriptor holding the lock (forked children close their copy).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self._fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_spares_a_claim_in_progress_and_removes_an_abandoned_one() {
        let root = tempfile::tempdir().unwrap();
        // In progress: its creator (this process) runs, no lock taken yet.
        let ours = root
            .path()
            .join(format!("{NEW_PREFIX}{}-1", std::process::id()));
        fs::create_dir(&ours).unwrap();
        // Abandoned: its creator is gone (a child we reaped).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let theirs = root.path().join(format!("{NEW_PREFIX}{dead}-2"));
        fs::create_dir(&theirs).unwrap();
        sweep_unclaimed(root.path());
        assert!(ours.exists());
        assert!(!theirs.exists());
    }

    #[test]
    fn a_claimed_id_is_taken_once() {
        let root = tempfile::tempdir().unwrap();
        let begin = Entry::Begin {
            creator: ProcRef::current(),
            bundle: "/b".into(),
            created: "t".into(),
            isolation: crate::isolation::Isolation::Container,
        };
        let first = claim(root.path(), "c", &begin).unwrap();
        assert!(matches!(
            claim(root.path(), "c", &begin),
            Err(ClaimError::Exists)
        ));
        assert!(!first.lock.is_at(&root.path().join("other")));
        assert!(first.lock.is_at(&first.dir));
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("c")],
            "no temporary left"
        );
    }

    /// `state.json` as vessel wrote it before [`Mode`]: both modes read into
    /// the mode's record and are written back with the same fields.
    #[test]
    fn old_state_files_read_as_their_mode() {
        let base = r#""ociVersion":"1.2.0","id":"c","pid":7,"status":"running",
            "bundle":"/b","rootfs":"/b/rootfs","created":"t""#;
        let host: State = serde_json::from_str(&format!(
            r#"{{{base},"isolation":"container","ownPidNs":true,"initExe":[1,2]}}"#
        ))
        .unwrap();
        match &host.mode {
            Mode::Container(h) => {
                assert!(h.own_pid_ns);
                assert_eq!(h.init_exe, Some((1, 2)));
            }
            m => panic!("{m:?}"),
        }
        // Written before `isolation` existed: container mode.
        let oldest: State = serde_json::from_str(&format!("{{{base}}}")).unwrap();
        assert!(matches!(
            oldest.mode,
            Mode::Container(HostState {
                own_pid_ns: false,
                ..
            })
        ));
        let vm: State = serde_json::from_str(&format!(
            r#"{{{base},"isolation":"vm","ownPidNs":true,"vm":{{"vmmPid":9,"engine":"qemu",
                "accel":"tcg","vcpus":1,"memoryMiB":256,"scratch":"/s"}}}}"#
        ))
        .unwrap();
        match &vm.mode {
            Mode::Vm(v) => assert_eq!((v.vmm_pid, v.scratch.as_path()), (9, Path::new("/s"))),
            m => panic!("{m:?}"),
        }
        let back: serde_json::Value = serde_json::to_value(&vm).unwrap();
        assert_eq!(back["isolation"], "vm");
        assert_eq!(back["vm"]["vmmPid"], 9);
        assert_eq!(back["ownPidNs"], true);
        let back: serde_json::Value = serde_json::to_value(&host).unwrap();
        assert_eq!(back["isolation"], "container");
        assert_eq!(back["initExe"], serde_json::json!([1, 2]));
        assert!(back.get("vm").is_none());
    }
}
