//! What the shim knows about one process: a container's init or an exec.

use std::os::fd::OwnedFd;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::types::task::Status as TaskStatus;

use crate::io::{ProcessIo, StdioSpec};

/// A process's state as the shim tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created (init) or added (exec), not started.
    Created,
    /// Running.
    Running,
    /// Frozen by `Pause`.
    Paused,
    /// Exited; see [`Process::exit`].
    Stopped,
}

impl Status {
    /// containerd's enum.
    pub fn to_task(self) -> TaskStatus {
        match self {
            Status::Created => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
            Status::Paused => TaskStatus::PAUSED,
            Status::Stopped => TaskStatus::STOPPED,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Exit status (128 + signal when killed).
    pub status: u32,
    /// When the shim saw it.
    pub at: Timestamp,
}

/// One process of a container.
#[derive(Debug)]
pub struct Process {
    /// The exec id; empty for the init process.
    pub exec_id: String,
    /// Its pid on the host (0 before it runs).
    pub pid: u32,
    /// Its stdio as containerd described it.
    pub stdio: StdioSpec,
    /// The shim's side of its stdio.
    pub io: Option<ProcessIo>,
    /// Its pty master, with a terminal.
    pub console: Option<OwnedFd>,
    /// An exec's OCI process JSON.
    pub spec: Vec<u8>,
    /// Its state.
    pub status: Status,
    /// Its exit, once seen.
    pub exit: Option<Exit>,
}

impl Process {
    /// A process not yet running.
    pub fn new(exec_id: &str, stdio: StdioSpec) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            stdio,
            io: None,
            console: None,
            spec: Vec::new(),
            status: Status::Created,
            exit: None,
        }
    }

    /// Records the exit; false when it was already recorded.
    pub fn set_exit(&mut self, status: u32, at: Timestamp) -> bool {
        if self.exit.is_some() {
            return false;
        }
        self.exit = Some(Exit { status, at });
        self.status = Status::Stopped;
        true
    }
}
