//! `vessel-bench <suite> [flags]`: vessel's benchmark programs.
//!
//! `vessel bench <suite> [flags]` runs this binary from next to `vessel`.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vessel_bench::instance::Mode;
use vessel_bench::io_isolation::{self, Mechanism, Rw};
use vessel_bench::workloads::{self, Size};
use vessel_bench::{consolidation, cri_start, lifecycle, overhead, reliability, sys};

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
    /// "Virtualization of Linux servers": each workload natively, in vessel
    /// containers and microVMs and in runc and crun, normalized to native.
    Overhead(OverheadArgs),
    /// n = 1..32 concurrent instances of a workload in each mode:
    /// aggregate and per-instance throughput, memory split as Table 4.
    Consolidation(ConsolidationArgs),
    /// vm mode: create to first output and to exit, beside a bare QEMU boot
    /// of the same guest, with the image builds split out.
    VmStartup(VmStartupArgs),
    /// vessel's kvm engine against QEMU microvm (-accel kvm) on the same
    /// guest, side by side in the nested harness's outer VM (or directly
    /// where this host's KVM runs Linux).
    VmEngines(VmEnginesArgs),
    /// N concurrent lifecycles and M SIGKILLed create/run/delete per
    /// runtime: failures and leaks (cgroups, mounts, processes, state) by kind.
    Reliability(ReliabilityArgs),
    /// Pod start through containerd's CRI: RunPodSandbox and the first
    /// container's create + start, for the vessel, vessel-vm and runc
    /// handlers, interleaved.
    CriStart(CriStartArgs),
}

#[derive(clap::Args, Debug)]
struct CriStartArgs {
    /// Measured rounds (each handler once per round; one warm-up round more).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Handlers, in interleaving order.
    #[arg(long, value_delimiter = ',', default_value = "vessel,vessel-vm,runc")]
    handlers: Vec<String>,
    /// The static vessel (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// vessel's shim (default: containerd-shim-vessel-v2 beside the vessel).
    #[arg(long)]
    shim: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/cri-start.json")]
    json: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ReliabilityArgs {
    /// Lifecycles running at once against one --root per runtime.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Lifecycles per runtime.
    #[arg(long, default_value_t = 50)]
    lifecycles: usize,
    /// SIGKILL injections per kind (create, run, delete) per runtime.
    #[arg(long, default_value_t = 30)]
    kills: usize,
    /// CI size: --concurrency 4 --lifecycles 20 --kills 10 (flags given
    /// explicitly still win).
    #[arg(long)]
    quick: bool,
    /// Seed of the kill delays (default: from the clock; the JSON records it).
    #[arg(long)]
    seed: Option<u64>,
    /// Runtimes, in interleaving order.
    #[arg(long, value_delimiter = ',', default_value = "vessel,runc,crun")]
    runtimes: Vec<String>,
    /// The vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// runc binary (name in PATH or path); skipped with a reason if missing.
    #[arg(long, default_value = "runc")]
    runc: String,
    /// crun binary (name in PATH or path); skipped with a reason if missing.
    #[arg(long, default_value = "crun")]
    crun: String,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench/results/reliability.json")]
    json: PathBuf,
    /// Directory for the bundle, state roots and captured output.
    #[arg(long)]
    tmpdir: Option<PathBuf>,
}

fn reliability_options(
    a: ReliabilityArgs,
    matches: &clap::ArgMatches,
) -> anyhow::Result<reliability::Options> {
    // --quick sets the sizes a flag on the command line did not.
    let given = |name: &str| {
        matches
            .subcommand_matches("reliability")
            .and_then(|m| m.value_source(name))
            == Some(clap::parser::ValueSource::CommandLine)
    };
    let pick = |name: &str, value: usize, quick: usize| {
        if a.quick && !given(name) {
            quick
        } else {
            value
        }
    };
    let opts = reliability::Options {
        concurrency: pick("concurrency", a.concurrency, 4),
        lifecycles: pick("lifecycles", a.lifecycles, 20),
        kills: pick("kills", a.kills, 10),
        runtimes: a.runtimes.into_iter().filter(|r| !r.is_empty()).collect(),
        vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
        runc: a.runc,
        crun: a.crun,
        seed: a.seed.unwrap_or_else(reliability::clock_seed),
        quick: a.quick,
        json: a.json,
        tmpdir: a.tmpdir,
        command: command_line(),
    };
    if opts.concurrency == 0 {
        anyhow::bail!("--concurrency: give at least 1");
    }
    Ok(opts)
}

/// Flags both suites share.
#[derive(clap::Args, Debug)]
struct CommonArgs {
    /// Modes besides native (always run: it is the baseline).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "vessel,vessel-vm,runc,crun"
    )]
    modes: Vec<String>,
    /// Runs per cell; the first is dropped, the median of the rest kept.
    #[arg(long, default_value_t = 4)]
    runs: usize,
    /// Smoke run for CI: short workloads, 2 runs (the first dropped).
    #[arg(long)]
    quick: bool,
    /// vCPUs of a microVM.
    #[arg(long = "vm-cpus", default_value_t = 2)]
    vm_cpus: u32,
    /// The vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// crun binary (name in PATH or path); "not run" with the reason if missing.
    #[arg(long, default_value = "crun")]
    crun: String,
    /// runc binary (name in PATH or path); "not run" with the reason if missing.
    #[arg(long, default_value = "runc")]
    runc: String,
    /// Directory on a disk for the rootfs, bundles and scratch files.
    #[arg(long, default_value = "/var/tmp")]
    tmpdir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct OverheadArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Workloads also run in VM mode, where the guest runs under TCG
    /// emulation here (startup and memory always run).
    #[arg(
        long = "vm-workloads",
        value_delimiter = ',',
        default_value = "sysbench-cpu,sysbench-memory,bzip2,dd-null,iperf3"
    )]
    vm_workloads: Vec<String>,
    /// Threads of sysbench and make -j.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Memory limit of each container and memory of each microVM, MiB (the
    /// paper gave its VMs 2 GiB).
    #[arg(long = "memory-mib", default_value_t = 2048)]
    memory_mib: u64,
    /// Skip the bare QEMU boot beside the VM mode.
    #[arg(long = "no-qemu-boot")]
    no_qemu_boot: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/overhead.json")]
    json: PathBuf,
    /// Plot files, without extension (.svg and .png are written).
    #[arg(long, default_value = "bench-results/overhead")]
    plot: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ConsolidationArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The workload every instance runs (a throughput workload).
    #[arg(long, default_value = "sysbench-cpu")]
    workload: String,
    /// Instance counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    instances: Vec<usize>,
    /// The largest instance count run in VM mode (TCG emulation is slow).
    #[arg(long = "vm-max-instances", default_value_t = 2)]
    vm_max_instances: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/consolidation.json")]
    json: PathBuf,
    /// Plot files, without extension (.svg and .png are written).
    #[arg(long, default_value = "bench-results/consolidation")]
    plot: PathBuf,
}

fn parse_modes(names: &[String]) -> anyhow::Result<Vec<Mode>> {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| Mode::parse(n).map_err(|e| anyhow::anyhow!("--modes: {e}")))
        .collect()
}

fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(a0) = args.first_mut() {
        if let Some(base) = std::path::Path::new(a0.as_str()).file_name() {
            *a0 = base.to_string_lossy().into_owned();
        }
    }
    args.join(" ")
}

fn overhead_options(a: OverheadArgs) -> anyhow::Result<overhead::Options> {
    let c = a.common;
    let workloads = if a.workloads.is_empty() {
        workloads::ALL.to_vec()
    } else {
        a.workloads
            .iter()
            .map(|n| workloads::by_name(n).map_err(|e| anyhow::anyhow!("--workloads: {e}")))
            .collect::<anyhow::Result<_>>()?
    };
    for n in &a.vm_workloads {
        workloads::by_name(n).map_err(|e| anyhow::anyhow!("--vm-workloads: {e}"))?;
    }
    Ok(overhead::Options {
        vessel: vessel_bench::find_vessel(c.vessel.as_deref()),
        runc: c.runc,
        crun: c.crun,
        modes: parse_modes(&c.modes)?,
        workloads,
        vm_workloads: if c.quick {
            a.vm_workloads
                .into_iter()
                .filter(|n| n == "sysbench-cpu")
                .collect()
        } else {
            a.vm_workloads
        },
        runs: if c.quick { 2 } else { c.runs },
        size: if c.quick { Size::Quick } else { Size::Full },
        threads: a.threads,
        memory_mib: a.memory_mib,
        vm_cpus: c.vm_cpus,
        qemu_boot: !a.no_qemu_boot,
        tmpdir: c.tmpdir,
        json: a.json,
        plot: a.plot,
        command: command_line(),
    })
}

fn consolidation_options(a: ConsolidationArgs) -> anyhow::Result<consolidation::Options> {
    let c = a.common;
    let workload =
        workloads::by_name(&a.workload).map_err(|e| anyhow::anyhow!("--workload: {e}"))?;
    if !workload.higher_is_better || workload.network {
        anyhow::bail!(
            "--workload: {} is not a throughput workload without network",
            workload.name
        );
    }
    if a.instances.is_empty() || a.instances.contains(&0) {
        anyhow::bail!("--instances: give counts of at least 1");
    }
    Ok(consolidation::Options {
        vessel: vessel_bench::find_vessel(c.vessel.as_deref()),
        runc: c.runc,
        crun: c.crun,
        modes: parse_modes(&c.modes)?,
        workload,
        instances: if c.quick { vec![1, 2, 4] } else { a.instances },
        vm_max_instances: if c.quick { 1 } else { a.vm_max_instances },
        runs: if c.quick { 2 } else { c.runs },
        size: if c.quick { Size::Quick } else { Size::Full },
        vm_cpus: c.vm_cpus,
        tmpdir: c.tmpdir,
        json: a.json,
        plot: a.plot,
        command: command_line(),
    })
}

#[derive(clap::Args, Debug)]
struct VmEnginesArgs {
    /// Runs per engine (alternating).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// The static vessel for the guest's /init (default: --vessel).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where the outer VM's image and console log go.
    #[arg(long, default_value = "target/nested-bench")]
    workdir: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/vm-engines.json")]
    json: PathBuf,
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
    #[arg(long, default_value_t = 6)]
    runtime: u64,
    /// Seconds of ramp before fio starts counting.
    #[arg(long, default_value_t = 1)]
    ramp: u64,
    /// Antagonist counts to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    antagonists: Vec<usize>,
    /// A ~1 minute run for CI: --runtime 4 --ramp 1 --antagonists 4
    /// --size-mib 512.
    #[arg(long)]
    quick: bool,
    /// The device's scheduler (default: bfq if offered, else mq-deadline).
    #[arg(long)]
    scheduler: Option<String>,
    /// Requests the device takes at once (4 is the kernel's minimum).
    #[arg(long = "queue-depth", default_value_t = 4)]
    queue_depth: u32,
    /// Largest request the device takes, KiB.
    #[arg(long = "max-request-kib", default_value_t = 64)]
    max_request_kib: u32,
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
    /// Measured runs per runtime; the runtimes interleave, their order
    /// rotating every round (ABC, BCA, CAB, ...).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Unmeasured warm-up rounds (one run per runtime each).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Rounds of `sleep 1` containers whose runtime process's RSS and PSS
    /// are read while they run (0: none).
    #[arg(long, default_value_t = 5)]
    idle_runs: usize,
    /// The vessel binary (default: next to vessel-bench, else target/release/vessel).
    #[arg(long)]
    vessel: Option<PathBuf>,
    /// Another vessel build to compare in the same run, as NAME=PATH
    /// (repeatable), e.g. --also vessel-old=/tmp/vessel.
    #[arg(long, value_parser = lifecycle::parse_also)]
    also: Vec<(String, PathBuf)>,
    /// crun binary (name in PATH or path); skipped with a reason if missing.
    #[arg(long, default_value = "crun")]
    crun: String,
    /// runc binary (name in PATH or path); skipped with a reason if missing.
    #[arg(long, default_value = "runc")]
    runc: String,
    /// Extra tmpfs mounts made in the suite's private mount namespace (the
    /// host's table is untouched), to show cost against the mount count.
    #[arg(long, alias = "host-mounts", default_value_t = 0)]
    mounts: usize,
    /// The launcher (default: vessel-bench-launcher next to vessel-bench).
    #[arg(long)]
    launcher: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/lifecycle.json")]
    json: PathBuf,
    /// Directory for the temporary bundle and state roots.
    #[arg(long)]
    tmpdir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    sys::install_interrupt_handler();
    let result = match cli.suite {
        Suite::VmStartup(a) => vessel_bench::vm_startup::run(&vessel_bench::vm_startup::Options {
            vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
            runs: a.runs.max(1),
            tmpdir: a.tmpdir,
            json: a.json,
        }),
        Suite::VmEngines(a) => lifecycle::require_root().and_then(|()| {
            let vessel = vessel_bench::find_vessel(a.vessel.as_deref());
            vessel_bench::vm_engines::run(&vessel_bench::vm_engines::Options {
                agent: a.agent.unwrap_or_else(|| vessel.clone()),
                vessel,
                runs: a.runs.max(1),
                json: a.json,
                workdir: a.workdir,
            })
        }),
        Suite::Lifecycle(a) => lifecycle::require_root().and_then(|()| {
            lifecycle::run(&lifecycle::Options {
                runs: a.runs,
                warmup: a.warmup,
                idle_runs: a.idle_runs,
                vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
                also: a.also,
                crun: a.crun,
                runc: a.runc,
                mounts: a.mounts,
                launcher: a.launcher.unwrap_or_else(vessel_bench::find_launcher),
                json: a.json,
                tmpdir: a.tmpdir,
            })
        }),
        Suite::IoIsolation(a) => lifecycle::require_root().and_then(|()| {
            let (runtime_s, ramp_s, antagonists, size_mib) = if a.quick {
                (4, 1, vec![4], a.size_mib.min(512))
            } else {
                (a.runtime, a.ramp, a.antagonists, a.size_mib)
            };
            io_isolation::run(&io_isolation::Options {
                vessel: vessel_bench::find_vessel(a.vessel.as_deref()),
                runtime_s,
                ramp_s,
                antagonists,
                size_mib,
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
                scheduler: a.scheduler,
                queue_depth: a.queue_depth,
                max_request_kib: a.max_request_kib,
            })
        }),
        Suite::Overhead(a) => lifecycle::require_root()
            .and_then(|()| overhead_options(a))
            .and_then(|o| overhead::run(&o)),
        Suite::Reliability(a) => lifecycle::require_root()
            .and_then(|()| reliability_options(a, &matches))
            .and_then(|o| reliability::run(&o)),
        Suite::CriStart(a) => lifecycle::require_root().and_then(|()| {
            let vessel = vessel_bench::find_vessel(a.vessel.as_deref());
            let shim = a
                .shim
                .unwrap_or_else(|| vessel.with_file_name("containerd-shim-vessel-v2"));
            cri_start::run(&cri_start::Options {
                runs: a.runs.max(1),
                handlers: a.handlers.into_iter().filter(|h| !h.is_empty()).collect(),
                vessel,
                shim,
                json: a.json,
                command: command_line(),
            })
        }),
        Suite::Consolidation(a) => lifecycle::require_root()
            .and_then(|()| consolidation_options(a))
            .and_then(|o| consolidation::run(&o)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vessel-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
