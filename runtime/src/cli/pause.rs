//! `vessel pause` and `vessel resume`

use super::Cli;

/// `vessel pause|resume <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id.
    id: String,
}

pub fn pause(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    vessel::container::pause(&cli.root, &a.id)?;
    Ok(0)
}

pub fn resume(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    vessel::container::resume(&cli.root, &a.id)?;
    Ok(0)
}
