//! Figures 1-6: block-size sweeps, antagonist-count sweeps and the
//! rate-limited antagonist sweep. The paper shows these as plots without
//! numbers; what is checked is their shape.

use super::{job, PaperSettings, LOW};
use crate::engine;
use crate::workload::JobSpec;
use crate::Result;
use serde::Serialize;

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct FigureSpec {
    /// Number in the paper.
    pub number: u32,
    /// Title.
    pub title: &'static str,
    /// Label of the x axis.
    pub x_label: &'static str,
}

/// One line of a figure.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Legend.
    pub label: String,
    /// (x, mean ms, max ms) per point.
    pub points: Vec<(f64, f64, f64)>,
}

/// A simulated figure.
#[derive(Debug, Clone, Serialize)]
pub struct FigureResult {
    /// Which figure.
    pub spec: FigureSpec,
    /// Its lines.
    pub series: Vec<Series>,
    /// Requests simulated.
    pub requests: u64,
}

/// The six figures.
pub fn figure_specs() -> Vec<FigureSpec> {
    vec![
        FigureSpec {
            number: 1,
            title: "Random read latency, varying block size",
            x_label: "block size (KiB)",
        },
        FigureSpec {
            number: 2,
            title: "Sequential read latency, varying block size",
            x_label: "block size (KiB)",
        },
        FigureSpec {
            number: 3,
            title: "Direct IO latency, varying block size",
            x_label: "block size (KiB)",
        },
        FigureSpec {
            number: 4,
            title: "Multiple threads in background, block size 4k",
            x_label: "background threads",
        },
        FigureSpec {
            number: 5,
            title: "Multiple threads in background, block size 1m",
            x_label: "background threads",
        },
        FigureSpec {
            number: 6,
            title: "Rate-limited background load",
            x_label: "background rate (KiB/s)",
        },
    ]
}

const BLOCK_SIZES: &[u64] = &[4, 16, 64, 256, 1024];
const THREADS: &[u32] = &[1, 2, 4, 8, 16];
const RATES_KB: &[u64] = &[100, 512, 1024, 2048, 4096, 8192, 16384, 32768, 0];

fn fg_mean_max(s: &PaperSettings, jobs: Vec<JobSpec>, n: &mut u64) -> Result<(f64, f64)> {
    let cfg = s.job_file(s.figure_runtime_s, jobs).resolve()?;
    let r = engine::run(&cfg);
    *n += r.submitted;
    let fg = r.job("fg").expect("fg job exists");
    Ok((fg.lat.mean, fg.lat.max))
}

fn block_sweep(s: &PaperSettings, rw: &str, direct: bool, n: &mut u64) -> Result<Vec<Series>> {
    let mut out = vec![
        Series {
            label: "single thread".into(),
            points: vec![],
        },
        Series {
            label: "antagonist".into(),
            points: vec![],
        },
        Series {
            label: "low priority antagonist".into(),
            points: vec![],
        },
    ];
    for &bs in BLOCK_SIZES {
        let b = format!("{bs}k");
        for (i, series) in out.iter_mut().enumerate() {
            let mut fg = job("fg", rw, &b, "10g");
            fg.direct = direct;
            let mut jobs = vec![fg];
            if i > 0 {
                let mut bg = job("bg", rw, &b, "10g");
                bg.direct = direct;
                if i == 2 {
                    bg.prio = LOW;
                }
                jobs.push(bg);
            }
            let (mean, max) = fg_mean_max(s, jobs, n)?;
            series.points.push((bs as f64, mean, max));
        }
    }
    Ok(out)
}

fn thread_sweep(s: &PaperSettings, bs: &str, count: &mut u64) -> Result<Vec<Series>> {
    let mut out = vec![
        Series {
            label: "No_Priority".into(),
            points: vec![],
        },
        Series {
            label: "Priority".into(),
            points: vec![],
        },
    ];
    for &threads in THREADS {
        for (i, series) in out.iter_mut().enumerate() {
            let mut fg = job("fg", "randread", bs, "10g");
            fg.direct = true;
            let mut bg = job("bg", "randread", bs, "10g");
            bg.direct = true;
            bg.numjobs = threads;
            if i == 1 {
                bg.prio = LOW;
            }
            let (mean, max) = fg_mean_max(s, vec![fg, bg], count)?;
            series.points.push((threads as f64, mean, max));
        }
    }
    Ok(out)
}

fn rate_sweep(s: &PaperSettings, n: &mut u64) -> Result<Vec<Series>> {
    let mut out = vec![
        Series {
            label: "No_Priority".into(),
            points: vec![],
        },
        Series {
            label: "Priority".into(),
            points: vec![],
        },
    ];
    for &kb in RATES_KB {
        for (i, series) in out.iter_mut().enumerate() {
            // The paper used 2 GB files on a 400 GB disk for 300 s; here the
            // files are larger than the page cache so that, as in the paper
            // (background maximum ~66 MB/s), the background stays disk-bound
            // instead of re-reading its file from memory after one pass.
            let mut fg = job("fg", "read", "64k", "20g");
            fg.rate = Some("4096k".into());
            let mut bg = job("bg", "read", "64k", "20g");
            if kb > 0 {
                bg.rate = Some(format!("{kb}k"));
            }
            if i == 1 {
                bg.prio = LOW;
            }
            let cfg = s.job_file(s.figure_runtime_s, vec![fg, bg]).resolve()?;
            let r = engine::run(&cfg);
            *n += r.submitted;
            let fgr = r.job("fg").expect("fg job exists");
            // x: the background's achieved rate (the last point is "maximum").
            let x = r.job("bg").map(|b| b.bw_kb_s).unwrap_or(0.0);
            series.points.push((x, fgr.lat.mean, fgr.lat.max));
        }
    }
    Ok(out)
}

/// Runs one figure's sweep.
pub fn run_figure(spec: &FigureSpec, s: &PaperSettings) -> Result<FigureResult> {
    let mut n = 0;
    let series = match spec.number {
        1 => block_sweep(s, "randread", false, &mut n)?,
        2 => block_sweep(s, "read", false, &mut n)?,
        3 => block_sweep(s, "randread", true, &mut n)?,
        4 => thread_sweep(s, "4k", &mut n)?,
        5 => thread_sweep(s, "1m", &mut n)?,
        _ => rate_sweep(s, &mut n)?,
    };
    Ok(FigureResult {
        spec: spec.clone(),
        series,
        requests: n,
    })
}
