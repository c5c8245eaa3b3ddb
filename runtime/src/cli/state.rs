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
    let c = Container::load(&cli.root, &a.id)?;
    let status = c.status();
    println!("{}", serde_json::to_string_pretty(&c.state.oci(status))?);
    Ok(0)
}
