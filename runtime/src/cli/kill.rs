//! `vessel kill`

use vessel::container;

use super::Cli;

/// `vessel kill [--all] <id> [signal]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal every process in the container's cgroup.
    #[arg(short, long)]
    all: bool,
    /// Container id.
    id: String,
    /// Signal name (KILL, SIGKILL) or number (0: only check it runs); default TERM.
    #[arg(default_value = "TERM")]
    signal: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let sig = container::parse_signal(&a.signal).map_err(anyhow::Error::msg)?;
    container::kill(&cli.root, &a.id, sig, a.all)?;
    Ok(0)
}
