//! Checkpoint and restore of container-mode containers through CRIU.
//!
//! `checkpoint` dumps the container's process tree into an image
//! directory (the container's bind mounts and a joined network namespace
//! described as external, cgroups by `--manage-cgroups`) and records the
//! container stopped, unless `--leave-running`. `restore` goes through
//! `create`'s skeleton ([`crate::container::create_with`]) with CRIU
//! bringing the processes back: same checks, ledger and cleanup guard, so
//! a failed restore leaves nothing behind. VM containers are refused for
//! now (issue 22).

pub mod criu;
mod restore;

pub use criu::CgroupMode;
pub use restore::{restore, RestoreOptions};

use std::path::{Path, PathBuf};

use crate::container::{Container, Error as ContainerError};
use crate::state::Status;

/// The CRIU log of a dump or pre-dump, in the work directory.
pub const DUMP_LOG: &str = "dump.log";
/// The CRIU log of a restore, in the work directory.
pub const RESTORE_LOG: &str = "restore.log";
/// What vessel records beside CRIU's files: the container's stdio as
/// `/proc/<pid>/fd/{0,1,2}` named it, so restore can hand pipes back.
pub const DESCRIPTORS: &str = "descriptors.json";

/// Errors of checkpoint and restore; each names the container, and CRIU's
/// failures name its log.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Loading, locking or recording the container failed.
    #[error(transparent)]
    Container(Box<ContainerError>),
    /// vm mode has no checkpoint yet.
    #[error(
        "container {id:?} runs in a VM: checkpoint and restore are not supported yet for VM \
         containers (issue 22)"
    )]
    Vm {
        /// Container id.
        id: String,
    },
    /// A flag this kernel, CRIU or vessel cannot honour.
    #[error("container {id:?}: {flag} is not supported here: {why}")]
    Unsupported {
        /// Container id.
        id: String,
        /// The flag.
        flag: &'static str,
        /// Why (CRIU's `check` output when it is the kernel).
        why: String,
    },
    /// The image directory is missing or not a CRIU image.
    #[error("container {id:?}: image path {}: {why}", path.display())]
    Image {
        /// Container id.
        id: String,
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file or directory of checkpoint or restore.
    #[error("container {id:?}: {what} {}: {source}", path.display())]
    Io {
        /// Container id.
        id: String,
        /// What it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// CRIU itself failed.
    #[error(
        "container {id:?}: criu {action} failed ({status}): {errors} (CRIU's log: {})",
        log.display()
    )]
    Criu {
        /// Container id.
        id: String,
        /// dump, pre-dump or restore.
        action: &'static str,
        /// How criu ended.
        status: String,
        /// CRIU's log.
        log: PathBuf,
        /// Its error lines.
        errors: String,
    },
}

impl From<ContainerError> for CheckpointError {
    fn from(e: ContainerError) -> Self {
        CheckpointError::Container(Box::new(e))
    }
}

impl CheckpointError {
    fn io(id: &str, what: &'static str, path: &Path, source: std::io::Error) -> Self {
        CheckpointError::Io {
            id: id.into(),
            what,
            path: path.into(),
            source,
        }
    }

    fn criu(id: &str, action: &'static str, f: criu::Failure) -> Self {
        CheckpointError::Criu {
            id: id.into(),
            action,
            status: f.status,
            log: f.log,
            errors: f.errors,
        }
    }
}

/// The flags both `checkpoint` and `restore` take.
#[derive(Debug, Clone, Default)]
pub struct CriuFlags {
    /// The CRIU program (`--criu`; default `criu` on `PATH`).
    pub program: Option<PathBuf>,
    /// Where the image is (default `./checkpoint` in the CLI).
    pub image_path: PathBuf,
    /// Where CRIU's logs and work files go (default: the image path).
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    pub tcp_established: bool,
    /// Allow external unix sockets.
    pub ext_unix_sk: bool,
    /// Allow a shell job (a session leader on a terminal).
    pub shell_job: bool,
    /// Dump and restore file locks.
    pub file_locks: bool,
    /// `--manage-cgroups=<mode>`.
    pub manage_cgroups_mode: CgroupMode,
}

impl CriuFlags {
    fn work(&self) -> &Path {
        self.work_path.as_deref().unwrap_or(&self.image_path)
    }

    /// The CRIU options common to dump and restore.
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-D".to_string(),
            self.image_path.display().to_string(),
            "-W".to_string(),
            self.work().display().to_string(),
            format!("--manage-cgroups={}", self.manage_cgroups_mode.as_str()),
        ];
        for (on, flag) in [
            (self.tcp_established, "--tcp-established"),
            (self.ext_unix_sk, "--ext-unix-sk"),
            (self.shell_job, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }
}

/// Options of `vessel checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// The shared flags.
    pub criu: CriuFlags,
    /// Keep the container running after the dump.
    pub leave_running: bool,
    /// Only pre-dump memory (the container keeps running); a later dump
    /// names this image with `parent_path`.
    pub pre_dump: bool,
    /// The previous (pre-)dump, relative to the image path as CRIU wants.
    pub parent_path: Option<PathBuf>,
    /// Namespaces to restore empty (CRIU supports only `network`).
    pub empty_ns: Vec<String>,
    /// Lazy migration (memory fetched on demand after restore).
    pub lazy_pages: bool,
}

/// Checkpoints container `id` under `root` into `opts.criu.image_path`.
pub fn checkpoint(root: &Path, id: &str, opts: &CheckpointOptions) -> Result<(), CheckpointError> {
    let mut c = Container::load(root, id)?;
    if !c.state.mode.checkpoints_with_criu() {
        return Err(CheckpointError::Vm { id: id.into() });
    }
    let status = c.status();
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(ContainerError::WrongState {
            id: id.into(),
            status,
            msg: "only a running or paused container can be checkpointed",
        }
        .into());
    }
    if opts.lazy_pages {
        // Lazy pages need userfaultfd for another process's memory; without
        // it CRIU cannot serve pages on demand.
        let why = match criu::check(opts.criu.program.as_deref(), Some("uffd-noncoop")) {
            Err(why) => why.to_string(),
            Ok(()) => "vessel does not run CRIU's page server and lazy-pages daemon yet".into(),
        };
        return Err(CheckpointError::Unsupported {
            id: id.into(),
            flag: "--lazy-pages",
            why,
        });
    }
    for ns in &opts.empty_ns {
        if ns != "network" {
            return Err(CheckpointError::Unsupported {
                id: id.into(),
                flag: "--empty-ns",
                why: format!("CRIU restores only the network namespace empty, not {ns:?}"),
            });
        }
    }
    let spec = crate::spec::load(&c.state.bundle)
        .map_err(|source| ContainerError::Spec {
            id: id.into(),
            source,
        })
        .map_err(CheckpointError::from)?;
    let image = &opts.criu.image_path;
    for dir in [image.as_path(), opts.criu.work()] {
        std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(id, "image path", dir, e))?;
    }
    let stdio_external = if opts.pre_dump {
        Vec::new()
    } else {
        save_descriptors(id, c.state.pid, image)?
    };

    let action = if opts.pre_dump { "pre-dump" } else { "dump" };
    let mut args = vec![
        action.to_string(),
        "-t".into(),
        c.state.pid.to_string(),
        "--root".into(),
        c.state.rootfs.display().to_string(),
    ];
    args.extend(opts.criu.args());
    args.extend(criu::dump_mount_args(&spec));
    args.extend(stdio_external);
    if let Some(netns) = criu::joined_netns(&spec) {
        // A namespace the container joined outlives it: CRIU records only
        // its key, and restore hands the namespace back by that key.
        let ino = std::fs::metadata(&netns)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|e| CheckpointError::io(id, "network namespace", &netns, e))?;
        args.extend([
            "--external".into(),
            format!("net[{ino}]:{}", criu::NETNS_KEY),
        ]);
    }
    if status == Status::Paused {
        // The tree is frozen: CRIU must use the freezer rather than stop
        // each task by ptrace, and it leaves it frozen as it found it.
        let cg = c.cgroup()?;
        if let Some(dir) = cg.v1_dir("freezer").or_else(|| cg.v2_dir()) {
            args.extend(["--freeze-cgroup".into(), dir.display().to_string()]);
        }
    }
    if opts.pre_dump || opts.parent_path.is_some() {
        // Pre-dumps track memory changes so the next dump stores only those.
        args.push("--track-mem".into());
    }
    if let Some(parent) = &opts.parent_path {
        args.extend(["--prev-images-dir".into(), parent.display().to_string()]);
    }
    if opts.leave_running || opts.pre_dump {
        args.push("--leave-running".into());
    }
    for ns in &opts.empty_ns {
        args.extend(["--empty-ns".into(), ns.replace("network", "net")]);
    }
    let log = opts.criu.work().join(if opts.pre_dump {
        "pre-dump.log"
    } else {
        DUMP_LOG
    });
    let program = opts.criu.program.as_deref();
    criu::run(program, &args, &log, None)
        .map_err(|e| CheckpointError::io(id, "running", Path::new(&criu::program(program)), e))?
        .map_err(|f| CheckpointError::criu(id, action, f))?;

    if !opts.pre_dump && !opts.leave_running {
        // CRIU killed the tree after dumping it: the container is stopped
        // and `delete` (or `restore` into the same id) takes it from here.
        c.state.status = Status::Stopped;
        c.save()?;
    }
    Ok(())
}

/// Records the container's stdio (init's fds 0, 1, 2) under the keys CRIU
/// knows them by, and returns the `--external` options that keep CRIU
/// from looking for them: like runc, a restore hands its own stdio in
/// their place (the dumping side's pipes, and files of the host's mounts
/// outside the container, cannot be reopened by CRIU).
fn save_descriptors(id: &str, pid: i32, image: &Path) -> Result<Vec<String>, CheckpointError> {
    let mut keys = Vec::new();
    let mut external = Vec::new();
    for fd in 0..3 {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let key = if link.is_empty() {
            String::new()
        } else if link.starts_with("pipe:") || link.starts_with("socket:") {
            // CRIU names pipes and sockets by their link text.
            link
        } else {
            let key = file_key(pid, fd).map_err(|e| {
                CheckpointError::io(
                    id,
                    "reading",
                    Path::new(&format!("/proc/{pid}/fdinfo/{fd}")),
                    e,
                )
            })?;
            external.extend(["--external".to_string(), key.clone()]);
            key
        };
        keys.push(key);
    }
    let path = image.join(DESCRIPTORS);
    let json = serde_json::to_vec(&keys).expect("strings serialize");
    crate::utils::write_atomic(&path, &json)
        .map_err(|e| CheckpointError::io(id, "writing", &path, e))?;
    Ok(external)
}

/// CRIU's key of a regular file open as `fd` in `pid`: `file[<mnt_id>:<ino>]`
/// in hex, the mount from fdinfo and the inode of the open file.
fn file_key(pid: i32, fd: i32) -> std::io::Result<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
    let mnt: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no mnt_id"))?;
    let ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))?);
    Ok(format!("file[{mnt:x}:{ino:x}]"))
}
