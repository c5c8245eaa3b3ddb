//! `vessel run`

use vessel::container;

use super::create::CreateFlags;
use super::Cli;

/// `vessel run [flags] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    flags: CreateFlags,
    /// Return once the container runs instead of waiting for it.
    #[arg(short, long)]
    detach: bool,
    /// Keep the stopped container instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Container id.
    id: String,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    if a.detach {
        let created = container::create(&a.flags.options(cli, &a.id, false)?)?;
        drop(created);
        if let Err(e) = container::start(&cli.root, &a.id) {
            let _ = container::delete(&cli.root, &a.id, true);
            return Err(e.into());
        }
        return Ok(0);
    }
    let code = container::run_foreground(&a.flags.options(cli, &a.id, true)?, a.keep)?;
    Ok(code.clamp(0, 255) as u8)
}
