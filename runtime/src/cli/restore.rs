//! `vessel restore` (CRIU; container mode)

use std::path::PathBuf;

use vessel::checkpoint::RestoreOptions;

use super::checkpoint::SharedFlags;
use super::Cli;

/// `vessel restore [flags] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    shared: SharedFlags,
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Return once restored instead of waiting for the container to exit.
    #[arg(short, long)]
    detach: bool,
    /// File to write the restored init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to receive the pty master (terminal containers).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (no effect: the image says).
    #[arg(long = "no-subreaper", hide = true)]
    no_subreaper: bool,
    /// Accepted for runc compatibility (no effect).
    #[arg(long = "no-pivot", hide = true)]
    no_pivot: bool,
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let _ = (a.no_subreaper, a.no_pivot);
    let config = vessel::isolation::RuntimeConfig::load(cli.config.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let (isolation, isolation_from) = vessel::isolation::default_mode(cli.isolation, &config);
    let opts = RestoreOptions {
        create: vessel::container::CreateOptions {
            root: cli.root.clone(),
            id: a.id.clone(),
            bundle: a.bundle.clone(),
            console_socket: a.console_socket.clone(),
            pid_file: a.pid_file.clone(),
            systemd_cgroup: cli.systemd_cgroup,
            // restore sets its own status; no exec fifo is made.
            foreground: true,
            isolation,
            isolation_from,
            vm: config.vm,
            policy: config.policy,
            ..Default::default()
        },
        criu: a.shared.criu(cli),
    };
    let pid = vessel::checkpoint::restore(&opts)?;
    if a.detach {
        return Ok(0);
    }
    // Not our child (CRIU restored it detached), so its exit status is not
    // ours to collect: wait for its end by polling.
    let Some(init) = vessel::ledger::ProcRef::of(pid) else {
        return Ok(0);
    };
    while init.alive() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(0)
}
