//! Output: text tables, JSON files and SVG plots.

mod svg;
mod table;

pub use svg::{LinePlot, PlotSeries};
pub use table::TextTable;

use crate::experiments::{CompareRow, FigureResult, TableResult, TARGET};
use crate::stats::{cdf_points, RunResult};
use crate::{Error, Result};
use std::path::Path;

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    write_text(path, &text)
}

/// Writes text to `path`, creating parent directories.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// A paper table with the simulated numbers beside the published ones: each
/// cell as sim, paper and relative error, then the table's mean relative
/// error per column against the targets.
pub fn render_table(t: &TableResult) -> String {
    let mut tt = TextTable::new(&[
        "case", "mean", "paper", "err", "max", "paper", "err", "rms", "paper", "err", "KB/s",
        "paper", "err", "bg KB/s",
    ]);
    for r in &t.rows {
        tt.row(vec![
            r.case.clone(),
            f2(r.lat.mean),
            f2(r.paper_mean),
            pct(r.err.mean),
            format!("{:.0}", r.lat.max),
            format!("{:.0}", r.paper_max),
            pct(r.err.max),
            f2(r.lat.rms),
            f2(r.paper_std),
            pct(r.err.std),
            format!("{:.0}", r.bw_kb_s),
            r.paper_bw_kb_s
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into()),
            r.err.bw.map(pct).unwrap_or_else(|| "-".into()),
            format!("{:.0}", r.antagonist_kb_s),
        ]);
    }
    let s = &t.summary;
    let verdict = |e: f64, target: f64| if e <= target { "ok" } else { "MISS" };
    let bw =
        s.bw.map(|b| format!("{} {}", pct(b), verdict(b, TARGET.bw.unwrap_or(0.0))))
            .unwrap_or_else(|| "-".into());
    format!(
        "Table {}: {} (foreground 64k random reads; latency in ms; \"rms\" is sqrt(mean^2 + std^2), compared with the paper's std column)\n{}\
         error (mean relative): mean {} {} (target {}), max {} {} (target {}), std {} {} (target {}), KB/s {} (target {})\n",
        t.spec.number,
        t.spec.title,
        tt.render(),
        pct(s.mean),
        verdict(s.mean, TARGET.mean),
        pct(TARGET.mean),
        pct(s.max),
        verdict(s.max, TARGET.max),
        pct(TARGET.max),
        pct(s.std),
        verdict(s.std, TARGET.std),
        pct(TARGET.std),
        bw,
        pct(TARGET.bw.unwrap_or(0.0)),
    )
}

/// A figure's sweep as a table of mean/max per series.
pub fn render_figure(f: &FigureResult) -> String {
    let mut header = vec![f.spec.x_label.to_string()];
    for s in &f.series {
        header.push(format!("{} mean", s.label));
        header.push(format!("{} max", s.label));
    }
    let refs: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let mut tt = TextTable::new(&refs);
    let n = f.series.first().map(|s| s.points.len()).unwrap_or(0);
    for i in 0..n {
        let mut row = vec![format!("{:.0}", f.series[0].points[i].0)];
        for s in &f.series {
            let (_, mean, max) = s.points[i];
            row.push(f2(mean));
            row.push(f1(max));
        }
        tt.row(row);
    }
    format!(
        "Figure {}: {} (foreground latency in ms)\n{}",
        f.spec.number,
        f.spec.title,
        tt.render()
    )
}

/// Latency CDFs of a table's cases (like the paper's Figures 7-10).
pub fn table_cdf_svg(t: &TableResult) -> String {
    let series = t
        .rows
        .iter()
        .map(|r| PlotSeries {
            label: r.case.clone(),
            points: cdf_points(&r.samples, 400)
                .into_iter()
                .map(|(x, y)| (x.max(0.01), y))
                .collect(),
        })
        .collect();
    LinePlot {
        title: format!("Table {}: foreground latency CDF", t.spec.number),
        x_label: "latency (ms, log scale)".into(),
        y_label: "fraction of IOs".into(),
        log_x: true,
        series,
    }
    .render()
}

/// A sweep plot (mean and max per series).
pub fn figure_svg(f: &FigureResult) -> String {
    let mut series = Vec::new();
    for s in &f.series {
        series.push(PlotSeries {
            label: format!("{} mean", s.label),
            points: s.points.iter().map(|p| (p.0.max(1.0), p.1)).collect(),
        });
        series.push(PlotSeries {
            label: format!("{} max", s.label),
            points: s.points.iter().map(|p| (p.0.max(1.0), p.2)).collect(),
        });
    }
    LinePlot {
        title: format!("Figure {}: {}", f.spec.number, f.spec.title),
        x_label: format!("{} (log scale)", f.spec.x_label),
        y_label: "foreground latency (ms)".into(),
        log_x: true,
        series,
    }
    .render()
}

/// Per-job summary of one run.
pub fn render_run(r: &RunResult) -> String {
    let mut tt = TextTable::new(&[
        "job", "kind", "prio", "ios", "KB/s", "mean", "p50", "p95", "p99", "max", "std",
    ]);
    for j in r.jobs.iter().filter(|j| j.report) {
        tt.row(vec![
            j.name.clone(),
            j.kind.clone(),
            j.prio.to_string(),
            j.ios.to_string(),
            format!("{:.0}", j.bw_kb_s),
            f2(j.lat.mean),
            f2(j.lat.p50),
            f2(j.lat.p95),
            f2(j.lat.p99),
            f1(j.lat.max),
            f2(j.lat.std),
        ]);
    }
    format!(
        "scheduler {}, {:.0} s simulated, device {:.0}% busy, {} requests ({} submitted), latency in ms\n{}",
        r.scheduler,
        r.runtime_s,
        r.device.utilization * 100.0,
        r.device.requests,
        r.submitted,
        tt.render()
    )
}

/// Latency CDF of every reported job of a run.
pub fn run_cdf_svg(r: &RunResult, title: &str) -> String {
    LinePlot {
        title: title.to_string(),
        x_label: "latency (ms, log scale)".into(),
        y_label: "fraction of IOs".into(),
        log_x: true,
        series: r
            .jobs
            .iter()
            .filter(|j| j.report && !j.samples.is_empty())
            .map(|j| PlotSeries {
                label: j.name.clone(),
                points: cdf_points(&j.samples, 400)
                    .into_iter()
                    .map(|(x, y)| (x.max(0.001), y))
                    .collect(),
            })
            .collect(),
    }
    .render()
}

/// The scheduler comparison table.
pub fn render_compare(rows: &[CompareRow]) -> String {
    let mut tt = TextTable::new(&[
        "scheduler",
        "alone mean",
        "equal: mean",
        "max",
        "bg KB/s",
        "bg be/7: mean",
        "max",
        "bg KB/s",
    ]);
    for r in rows {
        tt.row(vec![
            r.scheduler.clone(),
            f2(r.alone_mean),
            f2(r.equal.0),
            f1(r.equal.1),
            format!("{:.0}", r.equal.2),
            f2(r.low.0),
            f1(r.low.1),
            format!("{:.0}", r.low.2),
        ]);
    }
    format!(
        "Schedulers compared: 64k random reader vs 64k sequential direct reader (latency in ms)\n{}",
        tt.render()
    )
}
