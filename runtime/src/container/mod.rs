//! Container lifecycle: create, start, kill, delete, exec, pause, and the
//! state store they share.

mod create;
mod exec;
mod init;
mod lifecycle;
mod run;

pub use create::{create, CreateOptions, Created};
pub use exec::{exec, ExecOptions};
pub use lifecycle::{delete, kill, kill_all, parse_signal, pause, resume, start};
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
    /// The recorded state.
    pub state: State,
    _lock: Lock,
}

impl Container {
    /// Locks and loads container `id` under `root`.
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
        let state = match State::load(&dir) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::WrongState {
                    id: id.into(),
                    status: Status::Creating,
                    msg: "still being created".into(),
                })
            }
            Err(e) => return Err(err(id, e)),
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
        Cgroup::open(&CgroupOptions {
            cgroups_path: Some(self.state.cgroup_path.clone()),
            systemd: self.state.systemd_cgroup,
            container_id: self.state.id.clone(),
        })
        .map_err(|e| err(self.id(), e))
    }

    /// Persists the state.
    pub fn save(&self) -> Result<(), Error> {
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
                if e.file_type().is_ok_and(|t| t.is_dir()) {
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
