//! `vessel start`

use super::Cli;

/// `vessel start <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    vessel::container::start(&cli.root, &a.id)?;
    Ok(0)
}
