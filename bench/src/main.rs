//! `vessel-bench <suite> [flags]`: vessel's benchmark programs.
//!
//! `vessel bench <suite> [flags]` runs this binary from next to `vessel`.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vessel_bench::{lifecycle, sys};

/// vessel's benchmarks: print a table, write JSON.
#[derive(Parser, Debug)]
#[command(name = "vessel-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand, Debug)]
enum Suite {
    /// create + start + wait + delete of /bin/true: vessel vs crun vs runc.
    Lifecycle(LifecycleArgs),
}

#[derive(clap::Args, Debug)]
struct LifecycleArgs {
    /// Runs per runtime (in hyperfine and again in the wait4 loop).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// hyperfine rounds the runs are split into; the runtime order rotates
    /// every round so the runtimes interleave.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// hyperfine warm-up runs per round.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// The vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// crun binary (name in PATH or path); skipped with a reason if missing.
    #[arg(long, default_value = "crun")]
    crun: String,
    /// runc binary (name in PATH or path); skipped with a reason if missing.
    #[arg(long, default_value = "runc")]
    runc: String,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/lifecycle.json")]
    json: PathBuf,
    /// Directory for the temporary bundle and state roots.
    #[arg(long)]
    tmpdir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sys::install_interrupt_handler();
    let result = match cli.suite {
        Suite::Lifecycle(a) => lifecycle::require_root().and_then(|()| {
            lifecycle::run(&lifecycle::Options {
                runs: a.runs,
                rounds: a.rounds,
                warmup: a.warmup,
                vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
                crun: a.crun,
                runc: a.runc,
                json: a.json,
                tmpdir: a.tmpdir,
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vessel-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
