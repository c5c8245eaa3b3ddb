//! A container's lifecycle, whatever isolates it: create, start, kill,
//! delete, exec, ps, pause, resume, update and stats. Each command loads
//! the [`Container`] and goes through its backend
//! ([`crate::isolation::Backend`]) for what the mode does differently.

pub mod create;
mod exec;
mod lifecycle;
mod run;

pub use create::{create, create_with, CreateOptions, Created};
pub use exec::{exec, ExecOptions, ExecPlan, SubCgroupError};
pub use lifecycle::{
    delete, kill, kill_all, parse_signal, pause, ps, resume, start, stats, stop_processes, update,
    UnknownSignal,
};
pub use run::run_foreground;

use std::path::{Path, PathBuf};

use vessel_cgroups::{Cgroup, CgroupOptions};

use crate::state::{Lock, State, Status};

/// Errors of container operations; each names the container, and the
/// field, file or step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Restoring from a checkpoint failed (the error names the container
    /// and CRIU's log).
    #[error(transparent)]
    Checkpoint(Box<crate::checkpoint::CheckpointError>),
    /// No such container.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container {0:?} already exists")]
    Exists(String),
    /// The id is not one vessel accepts.
    #[error("container {id:?}: {source}")]
    BadId {
        /// Container id.
        id: String,
        /// What is wrong with it.
        #[source]
        source: crate::utils::IdError,
    },
    /// The operation is not allowed in the container's status.
    #[error("container {id:?} is {status}: {msg}")]
    WrongState {
        /// Container id.
        id: String,
        /// Its status.
        status: Status,
        /// What cannot be done.
        msg: &'static str,
    },
    /// The state was rebuilt from the ledger (a killed `create`, an
    /// unreadable `state.json`): only `kill` and `delete` act on it.
    #[error("container {id:?}: {action}{why}{after}")]
    OnlyDelete {
        /// Container id.
        id: String,
        /// Why the state is not what vessel recorded.
        why: String,
        /// What was refused, as a prefix of `why`.
        action: &'static str,
        /// What is left to do, as a suffix.
        after: &'static str,
    },
    /// An update that vm mode cannot apply on the host.
    #[error(
        "container {id:?} runs in a VM: its pids limit and device rules apply in the guest \
         and cannot be updated (memory, CPU and block IO limits of the VMM can)"
    )]
    GuestOnlyUpdate {
        /// Container id.
        id: String,
    },
    /// The isolation mode the bundle asks for is not one.
    #[error("container {id:?}: {source}")]
    Mode {
        /// Container id.
        id: String,
        /// Which annotation, and what it says.
        #[source]
        source: Box<crate::isolation::config::ConfigError>,
    },
    /// A `--cgroup` argument of `exec`.
    #[error("container {id:?}: {source}")]
    SubCgroup {
        /// Container id.
        id: String,
        /// What is wrong.
        #[source]
        source: exec::SubCgroupError,
    },
    /// The bundle's configuration is invalid (the field is named).
    #[error("container {id:?}: {source}")]
    Spec {
        /// Container id.
        id: String,
        /// The field and what is wrong with it.
        #[source]
        source: crate::spec::SpecError,
    },
    /// The root filesystem or a mount is invalid or cannot be prepared.
    #[error("container {id:?}: {source}")]
    Rootfs {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: crate::rootfs::RootfsError,
    },
    /// `process.rlimits` is invalid.
    #[error("container {id:?}: {source}")]
    Rlimit {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: crate::security::rlimits::RlimitError,
    },
    /// `linux.seccomp` cannot be compiled or its listener reached.
    #[error("container {id:?}: {source}")]
    Seccomp {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: crate::security::seccomp::SeccompError,
    },
    /// `linux.netDevices` is invalid or a link could not be moved.
    #[error("container {id:?}: {source}")]
    NetDevice {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: crate::netdev::NetDevError,
    },
    /// The container's cgroup (or the block-IO annotations it applies).
    #[error("container {id:?}: {source}")]
    Cgroup {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: vessel_cgroups::CgroupError,
    },
    /// A hook failed.
    #[error("container {id:?}: {source}")]
    Hook {
        /// Container id.
        id: String,
        /// Which hook, and how.
        #[source]
        source: crate::hooks::HookError,
    },
    /// vm mode: the VM, its images, network or supervisor.
    #[error("container {id:?}: {source}")]
    Vm {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: crate::vm::VmError,
    },
    /// A file, option or system call failed: `what` names the step or
    /// option, `path` the file.
    #[error("container {id:?}: {}: {source}", io_what(.what, .path.as_deref()))]
    Io {
        /// Container id.
        id: String,
        /// The step or option (`--pid-file`, `start`, `clone`, ...).
        what: &'static str,
        /// The file, if one is involved.
        path: Option<PathBuf>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Options that contradict the bundle or each other.
    #[error("container {id:?}: {msg}")]
    Usage {
        /// Container id.
        id: String,
        /// What contradicts what.
        msg: &'static str,
    },
    /// The container's setup or start failed: what its init (or exec'd
    /// process) reported over the sync channel (its typed error, as text:
    /// see [`crate::process::channel`]), or what the channel itself saw.
    #[error("container {id:?}: {source}")]
    Setup {
        /// Container id.
        id: String,
        /// The report, or the channel's failure.
        #[source]
        source: crate::process::channel::ChannelError,
    },
    /// The OOM killer ended the container's init during setup.
    #[error(
        "container {id:?}: the container's init was killed by the OOM killer during setup: \
         linux.resources.memory.limit is too low"
    )]
    OomDuringSetup {
        /// Container id.
        id: String,
    },
    /// A process or cgroup of the container survived SIGKILL.
    #[error("container {id:?}: processes {pids:?} did not die after SIGKILL")]
    Undying {
        /// Container id.
        id: String,
        /// Those left.
        pids: Vec<i32>,
    },
    /// A process vessel just started is gone before it could be recorded.
    #[error("container {id:?}: {what} {pid} vanished")]
    Vanished {
        /// Container id.
        id: String,
        /// Which process.
        what: &'static str,
        /// Its pid.
        pid: i32,
    },
    /// `ps` failed.
    #[error("container {id:?}: {source}")]
    Ps {
        /// Container id.
        id: String,
        /// What failed.
        #[source]
        source: crate::host::PsError,
    },
    /// `linux.intelRdt` could not be applied or its group removed.
    #[error("container {id:?}: {source}")]
    IntelRdt {
        /// Container id.
        id: String,
        /// What failed, naming the field.
        #[source]
        source: crate::intel_rdt::RdtError,
    },
    /// No cgroup is recorded for the container (its create was killed).
    #[error("container {id:?}: no cgroup is recorded for it")]
    NoCgroup {
        /// Container id.
        id: String,
    },
    /// Encoding the state as JSON failed.
    #[error("container {id:?}: the state as JSON: {source}")]
    Json {
        /// Container id.
        id: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Checks a container id (see [`crate::utils::validate_id`]).
pub fn check_id(id: &str) -> Result<(), Error> {
    crate::utils::validate_id(id).map_err(|source| Error::BadId {
        id: id.into(),
        source,
    })
}

fn io_what(what: &str, path: Option<&Path>) -> String {
    match (what, path) {
        ("", Some(p)) => p.display().to_string(),
        (w, Some(p)) => format!("{w} {}", p.display()),
        (w, None) => w.to_string(),
    }
}

impl Error {
    /// An I/O error of step `what` on `path`.
    pub fn io(id: &str, what: &'static str, path: Option<&Path>, source: std::io::Error) -> Error {
        Error::Io {
            id: id.into(),
            what,
            path: path.map(Path::to_path_buf),
            source,
        }
    }

    /// A failure of the container's setup (see [`Error::Setup`]).
    pub fn setup(id: &str, source: crate::process::channel::ChannelError) -> Error {
        Error::Setup {
            id: id.into(),
            source,
        }
    }

    /// An error of the container's cgroup.
    pub fn cgroup(id: &str, source: vessel_cgroups::CgroupError) -> Error {
        Error::Cgroup {
            id: id.into(),
            source,
        }
    }

    /// A bundle configuration error.
    pub fn spec(id: &str, source: crate::spec::SpecError) -> Error {
        Error::Spec {
            id: id.into(),
            source,
        }
    }

    /// An Intel RDT (resctrl) error.
    pub fn rdt(id: &str, source: crate::intel_rdt::RdtError) -> Error {
        Error::IntelRdt {
            id: id.into(),
            source,
        }
    }

    /// A vm-mode error.
    pub fn vm(id: &str, source: crate::vm::VmError) -> Error {
        Error::Vm {
            id: id.into(),
            source,
        }
    }

    /// An error encoding JSON.
    pub fn json(id: &str, source: serde_json::Error) -> Error {
        Error::Json {
            id: id.into(),
            source,
        }
    }
}

/// An existing container: its directory, lock and recorded state.
#[derive(Debug)]
pub struct Container {
    /// `<root>/<id>`.
    pub dir: PathBuf,
    /// The recorded state (or, with [`State::problem`], the ledger's).
    pub state: State,
    /// Held by commands that change the container; `None` for readers.
    _lock: Option<Lock>,
}

impl Container {
    /// Locks and loads container `id` under `root`, for a command that
    /// changes it. A container still being created is refused; one whose
    /// creator died, or whose `state.json` is unreadable, loads from its
    /// ledger (see [`State::recover`]).
    pub fn load(root: &Path, id: &str) -> Result<Container, Error> {
        check_id(id)?;
        let dir = root.join(id);
        let lock = match Lock::acquire(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(Error::io(id, "lock", Some(&dir), e)),
        };
        // A concurrent delete held the lock before us and removed it all.
        if !lock.is_at(&dir) {
            return Err(Error::NotFound(id.into()));
        }
        let c = Self::read(dir, id, Some(lock))?;
        if c.state.problem.is_some() && c.state.status == Status::Creating {
            return Err(Error::WrongState {
                id: id.into(),
                status: Status::Creating,
                msg: "still being created",
            });
        }
        Ok(c)
    }

    /// Loads container `id` without its lock, for commands that only read
    /// (`state`, `list`): they never wait behind a `create` in progress.
    pub fn peek(root: &Path, id: &str) -> Result<Container, Error> {
        check_id(id)?;
        Self::read(root.join(id), id, None)
    }

    fn read(dir: PathBuf, id: &str, lock: Option<Lock>) -> Result<Container, Error> {
        let state = match crate::state::read(&dir, id) {
            Ok(l) => l.into_state(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(Error::io(id, "", Some(&dir), e)),
        };
        Ok(Container {
            dir,
            state,
            _lock: lock,
        })
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The backend of the container's isolation mode.
    pub fn backend(&self) -> Box<dyn crate::isolation::Backend> {
        self.state.mode.backend()
    }

    /// An error of the container's cgroup, naming the container.
    pub fn cgroup_error(&self, e: vessel_cgroups::CgroupError) -> Error {
        Error::cgroup(self.id(), e)
    }

    /// The live status (paused when the cgroup is frozen).
    pub fn status(&self) -> Status {
        let s = self.state.live_status(&self.dir);
        if s == Status::Running {
            if let Ok(cg) = self.cgroup() {
                if cg.is_frozen().unwrap_or(false) {
                    return Status::Paused;
                }
            }
        }
        s
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> Result<Cgroup, Error> {
        self.recorded_cgroup()?.ok_or_else(|| Error::NoCgroup {
            id: self.id().into(),
        })
    }

    /// The container's cgroup, `None` when its create was killed before
    /// recording one (never the root: an empty path is not "all").
    pub fn recorded_cgroup(&self) -> Result<Option<Cgroup>, Error> {
        let p = &self.state.cgroup_path;
        if p.as_os_str().is_empty() || p == Path::new("/") {
            return Ok(None);
        }
        Cgroup::open(&CgroupOptions {
            cgroups_path: Some(self.state.cgroup_path.clone()),
            systemd: self.state.systemd_cgroup,
            container_id: self.state.id.clone(),
        })
        .map(Some)
        .map_err(|e| self.cgroup_error(e))
    }

    /// Persists the state. A state rebuilt from the ledger is never
    /// written back: only `delete` acts on such a container.
    pub fn save(&self) -> Result<(), Error> {
        if let Some(why) = &self.state.problem {
            return Err(Error::OnlyDelete {
                id: self.id().into(),
                why: why.clone(),
                action: "",
                after: "; only delete can act on it",
            });
        }
        self.state
            .save(&self.dir)
            .map_err(|e| Error::io(self.id(), "write state", None, e))
    }

    /// The state as hooks receive it on stdin.
    pub fn state_json(&self, status: Status) -> Vec<u8> {
        serde_json::to_vec(&self.state.oci(status)).unwrap_or_default()
    }
}

/// Ids of every container under `root`, sorted.
pub fn list_ids(root: &Path) -> std::io::Result<Vec<String>> {
    let mut ids = Vec::new();
    match std::fs::read_dir(root) {
        Ok(rd) => {
            for e in rd.flatten() {
                // Directories being claimed (`.new-*`) are not containers yet.
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && !e
                        .file_name()
                        .to_string_lossy()
                        .starts_with(crate::state::NEW_PREFIX)
                {
                    ids.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    ids.sort();
    Ok(ids)
}
