//! `vessel state`

use vessel::container::Container;

use super::Cli;

/// `vessel state <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    // A read: never waits behind a command holding the container's lock.
    let c = Container::peek(&cli.root, &a.id)?;
    let status = c.status();
    println!("{}", serde_json::to_string_pretty(&c.state.oci(status))?);
    Ok(0)
}
