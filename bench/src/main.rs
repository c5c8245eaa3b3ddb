//! `vessel-bench <suite> [flags]`: vessel's benchmark programs.
//!
//! `vessel bench <suite> [flags]` runs this binary from next to `vessel`.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vessel_bench::io_isolation::{self, Mechanism, Rw};
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
    /// The "IO Containment" Table 3 experiment: a random-read foreground
    /// container against sequential antagonists, with and without priority.
    IoIsolation(IoArgs),
    /// vm mode: create to first output and to exit, beside a bare QEMU boot
    /// of the same guest, with the image builds split out.
    VmStartup(VmStartupArgs),
}

#[derive(clap::Args, Debug)]
struct VmStartupArgs {
    /// Measured runs of each step.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The static vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// Scratch directory (bundle and image caches).
    #[arg(long, default_value = "/var/tmp")]
    tmpdir: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/vm-startup.json")]
    json: PathBuf,
}

#[derive(clap::Args, Debug)]
struct IoArgs {
    /// Measured seconds per case (after the ramp).
    #[arg(long, default_value_t = 12)]
    runtime: u64,
    /// Seconds of ramp before fio starts counting.
    #[arg(long, default_value_t = 2)]
    ramp: u64,
    /// Antagonist counts to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    antagonists: Vec<usize>,
    /// A 1-2 minute smoke run: --runtime 5 --ramp 1 --antagonists 2.
    #[arg(long)]
    quick: bool,
    /// Size of the loop device, MiB.
    #[arg(long = "size-mib", default_value_t = 2048)]
    size_mib: u64,
    /// Antagonists do sequential reads (Table 3) or writes (Table 4).
    #[arg(long = "antagonist-rw", value_enum, default_value = "read")]
    rw: RwArg,
    /// The foreground's priority in the priority cases.
    #[arg(long = "fg-priority", default_value = "rt:0")]
    fg_priority: String,
    /// The antagonists' priority in the priority cases.
    #[arg(long = "bg-priority", default_value = "idle")]
    bg_priority: String,
    /// How priorities are given: the io.vessel.blockio.priority annotation
    /// (IO priority + BFQ weight) or process.ioPriority (IO priority only).
    #[arg(long, value_enum, default_value = "annotation")]
    mechanism: MechanismArg,
    /// Memory limit of each antagonist container, MiB (keeps buffered
    /// antagonists from re-reading their region out of the page cache).
    #[arg(long = "antagonist-memory-mib", default_value_t = 64)]
    antagonist_memory_mib: u64,
    /// The vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// Directory on a disk for the backing file and bundles.
    #[arg(long, default_value = "/var/tmp")]
    tmpdir: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/io-isolation.json")]
    json: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RwArg {
    Read,
    Write,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum MechanismArg {
    Annotation,
    Spec,
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
        Suite::VmStartup(a) => vessel_bench::vm_startup::run(&vessel_bench::vm_startup::Options {
            vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
            runs: a.runs.max(1),
            tmpdir: a.tmpdir,
            json: a.json,
        }),
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
        Suite::IoIsolation(a) => lifecycle::require_root().and_then(|()| {
            let (runtime_s, ramp_s, antagonists) = if a.quick {
                (5, 1, vec![2])
            } else {
                (a.runtime, a.ramp, a.antagonists)
            };
            io_isolation::run(&io_isolation::Options {
                vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
                runtime_s,
                ramp_s,
                antagonists,
                size_mib: a.size_mib,
                rw: match a.rw {
                    RwArg::Read => Rw::Read,
                    RwArg::Write => Rw::Write,
                },
                fg_priority: a.fg_priority,
                bg_priority: a.bg_priority,
                mechanism: match a.mechanism {
                    MechanismArg::Annotation => Mechanism::Annotation,
                    MechanismArg::Spec => Mechanism::Spec,
                },
                antagonist_memory_mib: a.antagonist_memory_mib,
                tmpdir: a.tmpdir,
                json: a.json,
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
