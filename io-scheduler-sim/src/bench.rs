//! `vessel-iosim bench`: simulated requests per second on one core for a few
//! workload/scheduler mixes, and the time of the whole `paper` run. Rates
//! use the thread's CPU time where Linux reports it (`/proc/thread-self/
//! schedstat`), so other processes on a shared machine do not skew them;
//! wall time is reported beside it.

use crate::engine;
use crate::experiments::{job, run_paper, PaperSettings, LOW};
use crate::workload::{DiskSpec, Global, JobFile, JobSpec, SchedSpec};
use crate::Result;
use serde::Serialize;
use std::time::Instant;

/// One benchmark line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Workload.
    pub workload: String,
    /// Scheduler.
    pub scheduler: String,
    /// Device preset.
    pub disk: String,
    /// Block requests submitted to the scheduler.
    pub requests: u64,
    /// IOs the jobs completed (served by the device or the page cache).
    pub ios: u64,
    /// Simulated seconds.
    pub simulated_s: f64,
    /// Wall seconds.
    pub wall_s: f64,
    /// CPU seconds of the simulating thread (wall seconds where unavailable).
    pub cpu_s: f64,
    /// Block requests per CPU second.
    pub requests_per_s: f64,
    /// Job IOs per CPU second.
    pub ios_per_s: f64,
}

/// The benchmark report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Per workload.
    pub rows: Vec<BenchRow>,
    /// Wall seconds of the whole `paper` run (tables and figures).
    pub paper_wall_s: f64,
    /// CPU seconds of the whole `paper` run.
    pub paper_cpu_s: f64,
    /// Requests simulated by `paper`.
    pub paper_requests: u64,
    /// The `paper` run's requests per CPU second.
    pub paper_requests_per_s: f64,
    /// Worker threads used (the simulator is single-threaded).
    pub threads: u32,
}

fn case(
    name: &str,
    disk: &str,
    sched: &str,
    runtime_s: u64,
    jobs: Vec<JobSpec>,
) -> Result<BenchRow> {
    let jf = JobFile {
        global: Global {
            runtime: format!("{runtime_s}s"),
            disk: DiskSpec::Name(disk.into()),
            scheduler: SchedSpec::Name(sched.into()),
            ..Global::default()
        },
        jobs,
    };
    let cfg = jf.resolve()?;
    let t0 = Instant::now();
    let c0 = cpu_time();
    let r = engine::run(&cfg);
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu_since(c0, wall);
    Ok(BenchRow {
        workload: name.into(),
        scheduler: sched.into(),
        disk: disk.into(),
        requests: r.submitted,
        ios: r.ios,
        simulated_s: runtime_s as f64,
        wall_s: wall,
        cpu_s: cpu,
        requests_per_s: r.submitted as f64 / cpu,
        ios_per_s: r.ios as f64 / cpu,
    })
}

fn direct(name: &str, rw: &str, bs: &str, n: u32) -> JobSpec {
    let mut j = job(name, rw, bs, "4g");
    j.direct = true;
    j.numjobs = n;
    j
}

/// Runs the benchmark; `paper` also times the full `paper` run.
pub fn run_bench(paper: bool) -> Result<BenchReport> {
    let mut rows = Vec::new();
    for sched in ["noop", "deadline", "priority", "cfq", "bfq"] {
        rows.push(case(
            "16 direct 4k random readers",
            "nvme",
            sched,
            20,
            vec![direct("r", "randread", "4k", 16)],
        )?);
    }
    for sched in ["anticipatory", "priority"] {
        let mut bg = direct("bg", "read", "64k", 2);
        bg.prio = LOW;
        rows.push(case(
            "64k random reader + 2 direct sequential readers",
            "sata2008",
            sched,
            600,
            vec![direct("fg", "randread", "64k", 1), bg],
        )?);
    }
    rows.push(case(
        "buffered sequential writer + random reader",
        "sata2008",
        "priority",
        300,
        vec![
            job("fg", "randread", "64k", "4g"),
            job("w", "write", "64k", "8g"),
        ],
    )?);
    let (paper_wall_s, paper_cpu_s, paper_requests) = if paper {
        // The table cases run on several threads: count the whole process.
        let c0 = process_cpu_time();
        let r = run_paper(&PaperSettings::default(), true)?;
        let cpu = match (c0, process_cpu_time()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => r.wall_s,
        };
        (r.wall_s, cpu, r.requests)
    } else {
        (0.0, 0.0, 0)
    };
    Ok(BenchReport {
        rows,
        paper_wall_s,
        paper_cpu_s,
        paper_requests,
        paper_requests_per_s: if paper_cpu_s > 0.0 {
            paper_requests as f64 / paper_cpu_s
        } else {
            0.0
        },
        threads: 1,
    })
}

/// CPU time of this thread in seconds, if the kernel reports it.
fn cpu_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// CPU time of the whole process (every thread, finished ones included) in
/// seconds, from /proc/self/stat's utime and stime in USER_HZ (100 on Linux).
fn process_cpu_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are the
    // 14th and 15th fields, i.e. the 12th and 13th after it.
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let ut: f64 = f.next()?.parse().ok()?;
    let st: f64 = f.next()?.parse().ok()?;
    Some((ut + st) / 100.0)
}

fn cpu_since(start: Option<f64>, wall: f64) -> f64 {
    match (start, cpu_time()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    }
}
