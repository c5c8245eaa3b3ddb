//! `vessel delete`

use super::Cli;

/// `vessel delete [--force] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill the container first if it still runs.
    #[arg(short, long)]
    force: bool,
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    match vessel::container::delete(&cli.root, &a.id, a.force) {
        // Deleting what is already gone succeeds with --force, as in runc.
        Err(vessel::container::Error::NotFound(_)) if a.force => Ok(0),
        r => r.map(|_| 0).map_err(Into::into),
    }
}
