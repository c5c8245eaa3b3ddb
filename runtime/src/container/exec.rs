//! `vessel exec`: a new process in a created, running or paused
//! container, run by the container's backend.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::{Container, Error};
use crate::spec;
use crate::state::Status;

/// Options of `vessel exec`.
#[derive(Debug)]
pub struct ExecOptions {
    /// State root.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// The process to run.
    pub process: Process,
    /// Where to send the pty master when `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// Where to write the new process's pid.
    pub pid_file: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    /// Extra descriptors passed on.
    pub preserve_fds: u32,
    /// `--cgroup` arguments: existing sub-cgroups of the container's cgroup
    /// to run the process in (see [`parse_sub_cgroups`]).
    pub sub_cgroups: Vec<String>,
    /// `--ignore-paused`: exec into a paused container (the process stays
    /// frozen with it until `resume`).
    pub ignore_paused: bool,
}

/// What is wrong with a `--cgroup` argument, or joining its sub-cgroup.
#[derive(Debug, thiserror::Error)]
pub enum SubCgroupError {
    /// The argument is malformed.
    #[error("--cgroup {arg:?}: {why}")]
    Bad {
        /// The argument.
        arg: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A controller is named twice.
    #[error("--cgroup {arg:?}: controller {controller} is given more than once")]
    Twice {
        /// The argument.
        arg: String,
        /// The controller.
        controller: String,
    },
    /// Per-controller paths on a cgroup v2 host.
    #[error(
        "--cgroup {controller}:...: per-controller paths need cgroup v1; this host has cgroup v2 only"
    )]
    NeedsV1 {
        /// The controller.
        controller: String,
    },
    /// The controller is not mounted.
    #[error("--cgroup {controller}:...: controller {controller} is not mounted")]
    NotMounted {
        /// The controller.
        controller: String,
    },
    /// The sub-cgroup cannot be joined (it must exist, as in runc).
    #[error("--cgroup: joining {} ({controller}): {source}", .dir.display())]
    Join {
        /// The sub-cgroup's directory.
        dir: PathBuf,
        /// Its controller (`cgroup2` for the unified hierarchy).
        controller: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Parses `--cgroup` arguments as runc does: one `path` for every
/// hierarchy, or any number of `controller[,controller...]:path`. Paths
/// are relative to the container's cgroup and must stay inside it.
fn parse_sub_cgroups(args: &[String]) -> Result<BTreeMap<String, PathBuf>, SubCgroupError> {
    let mut out = BTreeMap::new();
    for a in args {
        let bad = |why| SubCgroupError::Bad {
            arg: a.clone(),
            why,
        };
        let (ctrls, path) = match a.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None if args.len() == 1 => (None, a.as_str()),
            None => return Err(bad("give a <controller>: prefix when passing several")),
        };
        let path = PathBuf::from(path);
        let inside = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if path.as_os_str().is_empty() || !inside {
            return Err(bad(
                "the path must be relative to the container's cgroup, without \"..\"",
            ));
        }
        let Some(ctrls) = ctrls else {
            out.insert(String::new(), path);
            continue;
        };
        for c in ctrls.split(',') {
            if c.is_empty() {
                return Err(bad("empty controller name"));
            }
            if out.insert(c.to_string(), path.clone()).is_some() {
                return Err(SubCgroupError::Twice {
                    arg: a.clone(),
                    controller: c.into(),
                });
            }
        }
    }
    Ok(out)
}

/// What `exec` checked of its options before loading the container.
#[derive(Debug)]
pub struct ExecPlan {
    /// `process.execCPUAffinity`.
    pub affinity: spec::affinity::ExecAffinity,
    /// `--cgroup`: controller (empty for all) to sub-cgroup.
    pub sub_cgroups: BTreeMap<String, PathBuf>,
}

/// Runs `opts.process` in the container; returns its exit code, or 0 when
/// detached.
pub fn exec(opts: ExecOptions) -> Result<i32, Error> {
    let id = opts.id.as_str();
    let spec_error = |source| Error::Spec {
        id: id.into(),
        source,
    };
    spec::validate_process(&opts.process).map_err(spec_error)?;
    let plan = ExecPlan {
        affinity: spec::affinity::exec_affinity(&opts.process).map_err(spec_error)?,
        sub_cgroups: parse_sub_cgroups(&opts.sub_cgroups).map_err(|source| Error::SubCgroup {
            id: id.into(),
            source,
        })?,
    };
    let c = Container::load(&opts.root, id)?;
    if let Some(why) = &c.state.problem {
        // Its namespaces and rootfs are unknown: only kill and delete act.
        return Err(Error::OnlyDelete {
            id: id.into(),
            why: why.clone(),
            action: "cannot exec: ",
            after: "",
        });
    }
    let status = c.status();
    if status == Status::Paused && !opts.ignore_paused {
        return Err(Error::WrongState {
            id: id.into(),
            status,
            msg: "cannot exec in a paused container, use --ignore-paused to override",
        });
    }
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        return Err(Error::WrongState {
            id: id.into(),
            status,
            msg: "cannot exec in a container that is not running",
        });
    }
    let backend = c.backend();
    backend.exec(c, &opts, plan)
}
