//! A container's lifecycle, whatever isolates it: create, start, kill,
//! delete, exec, ps, pause, resume, update and stats. Each command loads
//! the [`Container`] and goes through its backend
//! ([`crate::isolation::Backend`]) for what the mode does differently.

pub mod create;
mod exec;
mod lifecycle;
mod run;

pub use create::{create, CreateOptions, Created};
pub use exec::{exec, ExecOptions, ExecPlan};
pub use lifecycle::{
    delete, kill, kill_all, parse_signal, pause, ps, resume, start, stats, stop_processes, update,
};
pub use run::run_foreground;

use std::path::{Path, PathBuf};

use vessel_cgroups::{Cgroup, CgroupOptions};

use crate::state::{Lock, State, Status};

/// Errors of container operations; each names the container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such container.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container {0:?} already exists")]
    Exists(String),
    /// The operation is not allowed in the container's status.
    #[error("container {id:?} is {status}: {msg}")]
    WrongState {
        /// Container id.
        id: String,
        /// Its status.
        status: Status,
        /// What cannot be done.
        msg: String,
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
    /// Anything else, already phrased for the user.
    #[error("container {id:?}: {msg}")]
    Other {
        /// Container id.
        id: String,
        /// What failed.
        msg: String,
    },
}

/// Shorthand for [`Error::Other`].
pub fn err(id: &str, msg: impl std::fmt::Display) -> Error {
    Error::Other {
        id: id.to_string(),
        msg: msg.to_string(),
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
        crate::utils::validate_id(id).map_err(|m| err(id, m))?;
        let dir = root.join(id);
        let lock = match Lock::acquire(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(err(id, format!("lock {}: {e}", dir.display()))),
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
                msg: "still being created".into(),
            });
        }
        Ok(c)
    }

    /// Loads container `id` without its lock, for commands that only read
    /// (`state`, `list`): they never wait behind a `create` in progress.
    pub fn peek(root: &Path, id: &str) -> Result<Container, Error> {
        crate::utils::validate_id(id).map_err(|m| err(id, m))?;
        Self::read(root.join(id), id, None)
    }

    fn read(dir: PathBuf, id: &str, lock: Option<Lock>) -> Result<Container, Error> {
        let state = match crate::state::read(&dir, id) {
            Ok(l) => l.into_state(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(err(id, format!("{}: {e}", dir.display()))),
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
        err(self.id(), e)
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
        self.recorded_cgroup()?
            .ok_or_else(|| err(self.id(), "no cgroup is recorded for it"))
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
        .map_err(|e| err(self.id(), e))
    }

    /// Persists the state. A state rebuilt from the ledger is never
    /// written back: only `delete` acts on such a container.
    pub fn save(&self) -> Result<(), Error> {
        if let Some(why) = &self.state.problem {
            return Err(err(self.id(), format!("{why}; only delete can act on it")));
        }
        self.state.save(&self.dir).map_err(|e| err(self.id(), e))
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
