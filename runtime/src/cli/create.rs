//! `vessel create`

use std::path::PathBuf;

use vessel::container::{self, CreateOptions};

use super::Cli;

/// Flags shared by `create` and `run`.
#[derive(clap::Args, Debug)]
pub struct CreateFlags {
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to receive the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Move the rootfs to / and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (from 3 on) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

impl CreateFlags {
    /// The library's options for container `id`.
    pub fn options(&self, cli: &Cli, id: &str, foreground: bool) -> anyhow::Result<CreateOptions> {
        let config = vessel::isolation::RuntimeConfig::load(cli.config.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
        let (isolation, isolation_from) = vessel::isolation::default_mode(cli.isolation, &config);
        Ok(CreateOptions {
            root: cli.root.clone(),
            id: id.to_string(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            systemd_cgroup: cli.systemd_cgroup,
            foreground,
            isolation,
            isolation_from,
            vm: config.vm,
            policy: config.policy,
        })
    }
}

/// `vessel create [flags] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    flags: CreateFlags,
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    container::create(&a.flags.options(cli, &a.id, false)?)?;
    Ok(0)
}
