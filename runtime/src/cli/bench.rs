//! `vessel bench`: runs the benchmark suites of `vessel-bench`, kept in its
//! own binary so the runtime stays small (its size is paid on every create).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// `vessel bench <suite> [args...]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Suite and its arguments (lifecycle, io-isolation, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    let exe = std::env::current_exe()?;
    let bench = exe
        .parent()
        .map(|d| d.join("vessel-bench"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "vessel-bench not found next to {}: build it with cargo build --release -p vessel-bench",
                exe.display()
            )
        })?;
    let err = Command::new(&bench).args(&a.args).exec();
    anyhow::bail!("{}: {err}", bench.display())
}
