//! `vessel checkpoint` (CRIU; container mode)

use std::path::PathBuf;

use vessel::checkpoint::{CgroupMode, CheckpointOptions, CriuFlags};

use super::Cli;

/// The CRIU flags `checkpoint` and `restore` share, as runc spells them.
#[derive(clap::Args, Debug)]
pub struct SharedFlags {
    /// Directory for the image files.
    #[arg(long = "image-path", default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Directory for CRIU's logs and work files (default: the image path).
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow a shell job.
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks.
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// How CRIU treats cgroups: soft, full, strict or ignore.
    #[arg(long = "manage-cgroups-mode", value_enum, default_value = "soft")]
    pub manage_cgroups_mode: CgroupMode,
}

impl SharedFlags {
    /// The library's flags.
    pub fn criu(&self, cli: &Cli) -> CriuFlags {
        CriuFlags {
            program: cli.criu.clone(),
            image_path: self.image_path.clone(),
            work_path: self.work_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            manage_cgroups_mode: self.manage_cgroups_mode,
        }
    }
}

/// `vessel checkpoint [flags] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    shared: SharedFlags,
    /// Leave the container running after the checkpoint.
    #[arg(long = "leave-running")]
    leave_running: bool,
    /// Dump memory only, for a later checkpoint with --parent-path.
    #[arg(long = "pre-dump")]
    pre_dump: bool,
    /// The previous pre-dump, relative to the image path.
    #[arg(long = "parent-path")]
    parent_path: Option<PathBuf>,
    /// Create this namespace empty on restore (network only).
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Lazy migration: pages served after restore.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// Accepted for runc compatibility: vessel always restores into a new
    /// mount namespace from the image.
    #[arg(long = "auto-dedup", hide = true)]
    auto_dedup: bool,
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let _ = a.auto_dedup;
    vessel::checkpoint::checkpoint(
        &cli.root,
        &a.id,
        &CheckpointOptions {
            criu: a.shared.criu(cli),
            leave_running: a.leave_running,
            pre_dump: a.pre_dump,
            parent_path: a.parent_path.clone(),
            empty_ns: a.empty_ns.clone(),
            lazy_pages: a.lazy_pages,
        },
    )?;
    Ok(0)
}
