//! `vessel-iosim`: run job files, rerun the "IO Containment" experiments,
//! benchmark the simulator.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use vessel_iosim::disk::DiskParams;
use vessel_iosim::experiments::{run_paper, PaperSettings};
use vessel_iosim::output::{self, TextTable};
use vessel_iosim::schedulers::SchedulerConfig;
use vessel_iosim::workload::{DiskSpec, JobFile, SchedSpec};

#[derive(Parser)]
#[command(
    name = "vessel-iosim",
    version,
    about = "Disk and IO-scheduler simulator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rerun the paper's Tables 1-4 and Figures 1-6 and print them beside the published numbers.
    Paper {
        /// PRNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Longest simulated run per table case (seconds); a case ends
        /// earlier when the foreground has read its file once.
        #[arg(long, default_value_t = 1800)]
        runtime: u64,
        /// Simulated seconds per figure point.
        #[arg(long, default_value_t = 30)]
        figure_runtime: u64,
        /// Device preset or TOML/JSON file.
        #[arg(long, default_value = "sata2008")]
        disk: String,
        /// Page cache size.
        #[arg(long, default_value = "7500m")]
        page_cache: String,
        /// CPU time per IO outside the measured latency.
        #[arg(long, default_value = "250us")]
        syscall: String,
        /// Scheduler for every case.
        #[arg(long, default_value = "priority")]
        scheduler: String,
        /// Only the tables.
        #[arg(long)]
        tables_only: bool,
        /// Directory for JSON and SVG output.
        #[arg(long, default_value = "iosim-out/paper")]
        out: PathBuf,
    },
    /// Run a job file.
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Override the seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the scheduler (name).
        #[arg(long)]
        scheduler: Option<String>,
        /// Override the device (preset or file).
        #[arg(long)]
        disk: Option<String>,
        /// Override the runtime (e.g. 30s).
        #[arg(long)]
        runtime: Option<String>,
        /// Directory for JSON and SVG output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure simulated requests per second and the paper run's wall time.
    Bench {
        /// Skip timing the full paper run.
        #[arg(long)]
        no_paper: bool,
        /// Where to write the JSON report.
        #[arg(long, default_value = "iosim-out/bench.json")]
        out: PathBuf,
    },
    /// Run a job file under every scheduler and compare the jobs' latency.
    Compare {
        /// The job file (TOML).
        job: PathBuf,
        /// Override the seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the runtime (e.g. 30s).
        #[arg(long)]
        runtime: Option<String>,
        /// Write all results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Print a device preset as TOML (a starting point for your own disk file).
    Disk {
        /// Preset name.
        #[arg(default_value = "sata2008")]
        preset: String,
    },
    /// Print a scheduler's default tunables as TOML.
    Scheduler {
        /// Scheduler name.
        #[arg(default_value = "priority")]
        name: String,
    },
}

fn write_both(out: &Path, stem: &str, svg: &str) -> Result<()> {
    output::write_text(&out.join(format!("{stem}.svg")), svg)?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Paper {
            seed,
            runtime,
            figure_runtime,
            disk,
            page_cache,
            syscall,
            scheduler,
            tables_only,
            out,
        } => {
            SchedulerConfig::by_name(&scheduler)?;
            let s = PaperSettings {
                seed,
                table_runtime_s: runtime,
                figure_runtime_s: figure_runtime,
                disk,
                scheduler,
                page_cache,
                syscall,
            };
            let r = run_paper(&s, !tables_only)?;
            for t in &r.tables {
                println!("{}", output::render_table(t));
                write_both(
                    &out,
                    &format!("table{}-cdf", t.spec.number),
                    &output::table_cdf_svg(t),
                )?;
            }
            if !r.schedulers.is_empty() {
                println!("{}", output::render_compare(&r.schedulers));
            }
            for f in &r.figures {
                println!("{}", output::render_figure(f));
                write_both(
                    &out,
                    &format!("figure{}", f.spec.number),
                    &output::figure_svg(f),
                )?;
            }
            println!("Findings of the paper, checked");
            for c in &r.checks {
                println!(
                    "{:4}  {}\n      {}",
                    if c.pass { "ok" } else { "MISS" },
                    c.claim,
                    c.detail
                );
            }
            let passed = r.checks.iter().filter(|c| c.pass).count();
            println!("{passed}/{} findings reproduced\n", r.checks.len());
            output::write_json(&out.join("paper.json"), &r)?;
            println!(
                "{} requests simulated in {:.2} s ({:.2} M requests/s); JSON and SVG in {}",
                r.requests,
                r.wall_s,
                r.requests as f64 / r.wall_s / 1e6,
                out.display()
            );
        }
        Cmd::Run {
            job,
            seed,
            scheduler,
            disk,
            runtime,
            out,
            json,
        } => {
            let mut jf = JobFile::load(&job)?;
            if let Some(s) = seed {
                jf.global.seed = s;
            }
            if let Some(s) = scheduler {
                jf.global.scheduler = SchedSpec::Name(s);
            }
            if let Some(d) = disk {
                jf.global.disk = DiskSpec::Name(d);
            }
            if let Some(r) = runtime {
                jf.global.runtime = r;
            }
            let cfg = jf
                .resolve()
                .with_context(|| format!("in job file {}", job.display()))?;
            let t0 = std::time::Instant::now();
            let r = vessel_iosim::engine::run(&cfg);
            let wall = t0.elapsed().as_secs_f64();
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", output::render_run(&r));
                println!(
                    "{} requests in {:.3} s wall ({:.2} M requests/s)",
                    r.submitted,
                    wall,
                    r.submitted as f64 / wall.max(1e-9) / 1e6
                );
            }
            if let Some(dir) = out {
                let stem = job
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "run".into());
                output::write_json(&dir.join(format!("{stem}.json")), &r)?;
                write_both(
                    &dir,
                    &format!("{stem}-cdf"),
                    &output::run_cdf_svg(&r, &format!("{stem}: latency CDF ({})", r.scheduler)),
                )?;
                eprintln!("wrote {}/{stem}.json and {stem}-cdf.svg", dir.display());
            }
        }
        Cmd::Bench { no_paper, out } => {
            let r = vessel_iosim::bench::run_bench(!no_paper)?;
            let mut tt = TextTable::new(&[
                "workload",
                "scheduler",
                "disk",
                "block reqs",
                "job IOs",
                "sim s",
                "wall s",
                "cpu s",
                "M req/s",
                "M IO/s",
            ]);
            for row in &r.rows {
                tt.row(vec![
                    row.workload.clone(),
                    row.scheduler.clone(),
                    row.disk.clone(),
                    row.requests.to_string(),
                    row.ios.to_string(),
                    format!("{:.0}", row.simulated_s),
                    format!("{:.3}", row.wall_s),
                    format!("{:.3}", row.cpu_s),
                    format!("{:.2}", row.requests_per_s / 1e6),
                    format!("{:.2}", row.ios_per_s / 1e6),
                ]);
            }
            print!("{}", tt.render());
            if !no_paper {
                println!(
                    "paper (tables + figures): {} requests in {:.2} s wall, {:.2} s CPU ({:.2} M requests per CPU second)",
                    r.paper_requests,
                    r.paper_wall_s,
                    r.paper_cpu_s,
                    r.paper_requests_per_s / 1e6
                );
            }
            // A job IO served from the page cache is as much a simulated
            // request as one the device serves; block requests are shown too.
            let min = r
                .rows
                .iter()
                .map(|x| x.ios_per_s.max(x.requests_per_s))
                .fold(f64::INFINITY, f64::min);
            println!(
                "slowest mix: {:.2} M requests per CPU second on one core (max of block requests and job IOs; target >= 1)",
                min / 1e6
            );
            output::write_json(&out, &r)?;
            eprintln!("wrote {}", out.display());
        }
        Cmd::Compare {
            job,
            seed,
            runtime,
            json,
        } => {
            let mut jf = JobFile::load(&job)?;
            if let Some(s) = seed {
                jf.global.seed = s;
            }
            if let Some(r) = runtime {
                jf.global.runtime = r;
            }
            let mut tt =
                TextTable::new(&["scheduler", "job", "prio", "KB/s", "mean", "p99", "max"]);
            let mut all = Vec::new();
            for name in SchedulerConfig::NAMES {
                jf.global.scheduler = SchedSpec::Name(name.to_string());
                let cfg = jf
                    .resolve()
                    .with_context(|| format!("in job file {}", job.display()))?;
                let r = vessel_iosim::engine::run(&cfg);
                for j in r.jobs.iter().filter(|j| j.report) {
                    tt.row(vec![
                        name.to_string(),
                        j.name.clone(),
                        j.prio.to_string(),
                        format!("{:.0}", j.bw_kb_s),
                        format!("{:.2}", j.lat.mean),
                        format!("{:.2}", j.lat.p99),
                        format!("{:.1}", j.lat.max),
                    ]);
                }
                all.push(r);
            }
            println!("{} under each scheduler (latency in ms)", job.display());
            print!("{}", tt.render());
            if let Some(path) = json {
                output::write_json(&path, &all)?;
                eprintln!("wrote {}", path.display());
            }
        }
        Cmd::Disk { preset } => {
            let p = DiskParams::preset(&preset)?;
            print!("{}", toml::to_string(&p)?);
        }
        Cmd::Scheduler { name } => {
            let c = SchedulerConfig::by_name(&name)?;
            let t = toml::to_string(&c)?;
            if t.is_empty() {
                bail!("no tunables");
            }
            print!("{t}");
        }
    }
    Ok(())
}
