//! `vessel-iosim paper`: every table and figure, plus checks of the paper's
//! qualitative findings.

use super::{
    figure_specs, run_compare, run_figure, run_table, table_specs, CompareRow, FigureResult,
    PaperSettings, TableResult,
};
use crate::Result;
use serde::Serialize;
use std::time::Instant;

/// A finding of the paper, checked against the simulation.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is claimed.
    pub claim: String,
    /// Whether the simulation shows it.
    pub pass: bool,
    /// The numbers behind the verdict.
    pub detail: String,
}

/// Everything `paper` produces.
#[derive(Debug, Clone, Serialize)]
pub struct PaperReport {
    /// Settings used.
    pub settings: PaperSettings,
    /// Tables 1-4.
    pub tables: Vec<TableResult>,
    /// Figures 1-6.
    pub figures: Vec<FigureResult>,
    /// The Table 3 workload under every scheduler.
    pub schedulers: Vec<CompareRow>,
    /// Checks of the findings.
    pub checks: Vec<Check>,
    /// Requests simulated in total.
    pub requests: u64,
    /// Wall-clock seconds.
    pub wall_s: f64,
}

fn mean_of(t: &TableResult, case: &str) -> f64 {
    t.rows
        .iter()
        .find(|r| r.case == case)
        .map(|r| r.lat.mean)
        .unwrap_or(f64::NAN)
}

fn table_checks(t: &TableResult, out: &mut Vec<Check>) {
    let n = t.spec.number;
    let base = mean_of(t, "no-load");
    let d = mean_of(t, "direct-64k");
    let dp = mean_of(t, "direct-64k-prio");
    out.push(Check {
        claim: format!(
            "Table {n}: a low-priority direct antagonist hurts far less than an equal one"
        ),
        pass: dp * 2.0 < d,
        detail: format!("direct-64k {d:.2} ms vs direct-64k-prio {dp:.2} ms"),
    });
    let prio_rows = ["buf-prio", "buf-prio-fadv", "direct-64k-prio"];
    let worst = prio_rows
        .iter()
        .map(|c| mean_of(t, c))
        .fold(0.0f64, f64::max);
    if !t.spec.writes {
        out.push(Check {
            claim: format!(
                "Table {n}: without priority the foreground's mean grows about 10x (>= 4x)"
            ),
            pass: d >= 4.0 * base && mean_of(t, "buf") >= 4.0 * base,
            detail: format!(
                "no-load {base:.2}, direct-64k {d:.2} ({:.1}x), buf {:.2} ({:.1}x)",
                d / base,
                mean_of(t, "buf"),
                mean_of(t, "buf") / base
            ),
        });
        // The paper's own prio rows lie at 1.25x-1.56x of no-load.
        let limit = 1.5;
        out.push(Check {
            claim: format!(
                "Table {n}: with a low-priority antagonist the mean stays near no-load (<= {limit}x)"
            ),
            pass: worst <= limit * base,
            detail: format!("worst prio row {worst:.2} ms vs no-load {base:.2} ms ({:.2}x)", worst / base),
        });
    }
    if n == 3 {
        let bad: Vec<String> = t
            .rows
            .iter()
            .filter(|r| !(0.7..=1.3).contains(&r.mean_ratio))
            .map(|r| format!("{} {:.2}x", r.case, r.mean_ratio))
            .collect();
        out.push(Check {
            claim: "Table 3: every row's mean within 30% of the paper's".into(),
            pass: bad.is_empty(),
            detail: if bad.is_empty() {
                let r: Vec<String> = t
                    .rows
                    .iter()
                    .map(|r| format!("{} {:.2}x", r.case, r.mean_ratio))
                    .collect();
                r.join(", ")
            } else {
                format!("outside: {}", bad.join(", "))
            },
        });
    }
}

fn point(f: &FigureResult, series: usize, i: usize) -> (f64, f64, f64) {
    f.series[series].points[i]
}

fn figure_checks(f: &FigureResult, out: &mut Vec<Check>) {
    let n = f.spec.number;
    match n {
        1..=3 => {
            // Compare at 64k (index 2 of the block-size list).
            let (_, single, _) = point(f, 0, 2);
            let (_, anta, _) = point(f, 1, 2);
            let (_, low, _) = point(f, 2, 2);
            out.push(Check {
                claim: format!("Figure {n}: an equal antagonist roughly doubles the mean (>= 1.5x); a low-priority one leaves it near single-thread (<= 1.5x)"),
                pass: anta >= 1.5 * single && low <= 1.5 * single,
                detail: format!("64k: single {single:.2}, antagonist {anta:.2}, low-prio {low:.2} ms"),
            });
        }
        4 | 5 => {
            let last = f.series[0].points.len() - 1;
            let (_, np1, _) = point(f, 0, 0);
            let (_, npn, _) = point(f, 0, last);
            let (_, p1, _) = point(f, 1, 0);
            let (_, pn, _) = point(f, 1, last);
            out.push(Check {
                claim: format!("Figure {n}: without priority latency grows with the antagonists (16 vs 1: >= 4x); with priority it stays flat (<= 1.5x)"),
                pass: npn >= 4.0 * np1 && pn <= 1.5 * p1,
                detail: format!("no-prio {np1:.2} -> {npn:.2} ms, prio {p1:.2} -> {pn:.2} ms"),
            });
        }
        _ => {
            // The rate-limited sequential reader is served mostly from its
            // read-ahead, so its mean is tiny; the max shows the interference.
            let last = f.series[0].points.len() - 1;
            let (_, _, np_first) = point(f, 0, 0);
            let (_, _, np_full) = point(f, 0, last);
            let (_, _, p_full) = point(f, 1, last);
            out.push(Check {
                claim: "Figure 6: without priority the foreground's max latency grows with the background rate (>= 5x); with priority it stays a fraction of that at full rate (<= 1/4)".into(),
                pass: np_full >= 5.0 * np_first && p_full * 4.0 <= np_full,
                detail: format!(
                    "no-prio max {np_first:.1} -> {np_full:.1} ms; prio max at full rate {p_full:.1} ms"
                ),
            });
        }
    }
}

/// Runs the paper's experiments; `figures` = false runs only the tables.
pub fn run_paper(s: &PaperSettings, figures: bool) -> Result<PaperReport> {
    let t0 = Instant::now();
    let mut tables = Vec::new();
    let mut checks = Vec::new();
    let mut requests = 0;
    for spec in table_specs() {
        let t = run_table(&spec, s)?;
        requests += t.requests;
        table_checks(&t, &mut checks);
        tables.push(t);
    }
    let mut figs = Vec::new();
    let mut schedulers = Vec::new();
    if figures {
        schedulers = run_compare(s)?;
        requests += schedulers.iter().map(|r| r.requests).sum::<u64>();
        for spec in figure_specs() {
            let f = run_figure(&spec, s)?;
            requests += f.requests;
            figure_checks(&f, &mut checks);
            figs.push(f);
        }
    }
    Ok(PaperReport {
        settings: s.clone(),
        tables,
        figures: figs,
        schedulers,
        checks,
        requests,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}
