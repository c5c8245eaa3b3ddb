//! `vessel ps`

use super::Cli;

/// `vessel ps [--format table|json] <id> [ps options]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: table (ps's) or json (pids).
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Container id.
    id: String,
    /// Options passed to ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    if !matches!(a.format.as_str(), "json" | "table") {
        anyhow::bail!(
            "--format: unknown format {:?} (use table or json)",
            a.format
        );
    }
    print!(
        "{}",
        vessel::container::ps(&cli.root, &a.id, &a.format, &a.ps_args)?
    );
    Ok(0)
}
