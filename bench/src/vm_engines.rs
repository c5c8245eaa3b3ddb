//! vessel's kvm engine against QEMU `-M microvm -accel kvm`, side by side
//! in one run on a KVM that boots stock Linux.
//!
//! On these machines that KVM exists only inside the nested harness's
//! outer VM (QEMU TCG emulating SVM, see tests/nested): this program builds
//! that VM with `tests/nested/build-l1.sh`, boots it with
//! `nested_script=bench-engines.sh`, and reads the `BENCH` lines the script
//! prints (both engines, same kernel, same vessel guest initramfs, same
//! container, alternating). On a host whose own KVM runs the kvm engine the
//! script runs directly. Absolute times under TCG mean nothing; the ratios
//! of the two engines in the same outer VM do.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::stats::Summary;
use crate::table::{num, Table};

/// Options of the suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vessel CLI to run inside (a dynamic build is fine).
    pub vessel: PathBuf,
    /// The static vessel that becomes the guest's /init.
    pub agent: PathBuf,
    /// Runs per engine.
    pub runs: usize,
    /// Where to write the JSON results.
    pub json: PathBuf,
    /// Where the outer VM's image and console log go.
    pub workdir: PathBuf,
}

/// The figures, each a column of `BENCH` lines.
const METRICS: &[(&str, &str, &str)] = &[
    ("first_line_ms", "start to guest first line", "ms"),
    ("agent_ready_ms", "start to agent ready (create)", "ms"),
    (
        "first_output_ms",
        "start to container first output (run)",
        "ms",
    ),
    ("exit_deleted_ms", "run to exit, container deleted", "ms"),
    ("rss_kib", "VMM RSS outside guest RAM", "KiB"),
    ("pss_kib", "VMM PSS outside guest RAM", "KiB"),
    ("threads", "VMM threads", ""),
];

/// Goals as ratios kvm / qemu, by metric.
const GOALS: &[(&str, f64)] = &[("first_output_ms", 0.5), ("rss_kib", 0.3), ("pss_kib", 0.3)];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Samples per engine and metric.
pub type Samples = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

/// Parses the `BENCH` lines of the script's output.
pub fn parse(log: &str) -> Samples {
    let mut out: Samples = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.split("BENCH ").nth(1) else {
            continue;
        };
        let fields: BTreeMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let Some(engine) = fields.get("engine") else {
            continue;
        };
        let per = out.entry(engine.to_string()).or_default();
        for (m, _, _) in METRICS {
            if let Some(v) = fields.get(m).and_then(|v| v.parse::<f64>().ok()) {
                per.entry(m.to_string()).or_default().push(v);
            }
        }
    }
    out
}

/// Runs the comparison: where the script runs, the run itself, the table
/// and the JSON.
pub fn run(o: &Options) -> Result<()> {
    if !o.agent.exists() {
        bail!(
            "{} not found: the guest agent must be the static vessel (make release)",
            o.agent.display()
        );
    }
    let probe = vessel_vm::engine::kvm::probe::probe_host();
    let start = Instant::now();
    let (place, log) = if probe.usable {
        eprintln!("vm-engines: this host's KVM runs the kvm engine; running directly");
        (
            "host",
            run_direct(o).context("running bench-engines.sh directly")?,
        )
    } else {
        eprintln!(
            "vm-engines: this host's KVM cannot ({}); using the nested harness's outer VM",
            probe.detail
        );
        ("nested (QEMU TCG, SVM)", run_nested(o)?)
    };
    let elapsed = start.elapsed();
    for l in log.lines().filter(|l| l.contains("BENCH_ERROR")) {
        eprintln!("{l}");
    }
    let samples = parse(&log);
    if !samples.contains_key("kvm") || !samples.contains_key("qemu") {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        bail!(
            "no figures for both engines; the last lines were:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let (table, rows) = render(&samples);
    println!("vm engines, {place}, {} runs each, medians:", o.runs);
    println!("{table}");
    let doc = json!({
        "suite": "vm-engines",
        "place": place,
        "runs": o.runs,
        "wall_s": elapsed.as_secs_f64(),
        "kvm_probe_on_host": probe.detail,
        "samples": samples,
        "rows": rows,
        "note": "times under TCG are not absolute figures; the ratios of the two engines in one outer VM are",
    });
    if let Some(dir) = o.json.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&o.json, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", o.json.display()))?;
    eprintln!("wrote {}", o.json.display());
    Ok(())
}

fn median(v: Option<&Vec<f64>>) -> Option<f64> {
    v.and_then(|v| Summary::of(v)).map(|s| s.median)
}

/// The table (metric, kvm, qemu, ratio, goal, met) and its JSON rows.
pub fn render(samples: &Samples) -> (String, Vec<serde_json::Value>) {
    let mut t = Table::new(&["metric", "kvm engine", "qemu microvm", "kvm/qemu", "goal"]);
    let mut rows = Vec::new();
    for (key, label, unit) in METRICS {
        let k = median(samples.get("kvm").and_then(|m| m.get(*key)));
        let q = median(samples.get("qemu").and_then(|m| m.get(*key)));
        let ratio = match (k, q) {
            (Some(k), Some(q)) if q > 0.0 => Some(k / q),
            _ => None,
        };
        let goal = GOALS.iter().find(|(g, _)| g == key).map(|(_, r)| *r);
        let goal_text = match (goal, ratio) {
            (Some(g), Some(r)) => format!("<= {g} ({})", if r <= g { "met" } else { "missed" }),
            (Some(g), None) => format!("<= {g}"),
            _ => String::new(),
        };
        let label = if unit.is_empty() {
            label.to_string()
        } else {
            format!("{label} ({unit})")
        };
        t.row(vec![
            label.clone(),
            num(k, 0),
            num(q, 0),
            num(ratio, 2),
            goal_text,
        ]);
        rows.push(json!({"metric": key, "label": label, "kvm": k, "qemu": q, "ratio": ratio, "goal": goal}));
    }
    (t.render(), rows)
}

fn run_direct(o: &Options) -> Result<String> {
    let out = Command::new("sh")
        .arg(workspace().join("tests/nested/bench-engines.sh"))
        .env("VESSEL", &o.vessel)
        .env("VESSEL_AGENT", &o.agent)
        .env("BENCH_RUNS", o.runs.to_string())
        .stdin(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_nested(o: &Options) -> Result<String> {
    let out = &o.workdir;
    let build = Command::new("bash")
        .arg(workspace().join("tests/nested/build-l1.sh"))
        .arg(out)
        .arg(&o.vessel)
        .arg(&o.agent)
        .status()
        .context("running tests/nested/build-l1.sh")?;
    if !build.success() {
        bail!("tests/nested/build-l1.sh failed ({build})");
    }
    let console = out.join("bench-console.log");
    let file = fs::File::create(&console)?;
    let mut cmd = l1_command(out, o.runs);
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let deadline = Instant::now() + Duration::from_secs(600 + 120 * o.runs as u64);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline || crate::sys::interrupted() {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the outer VM did not finish in time; console: {}",
                console.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = fs::read_to_string(&console)?;
    for f in ["l1.cpio", "bzImage", "inputs"] {
        let _ = fs::remove_file(out.join(f));
    }
    Ok(log)
}

/// The outer VM as the nested harness boots it, running the benchmark script.
fn l1_command(out: &Path, runs: usize) -> Command {
    vessel_tests::nested::l1_command(
        out,
        &format!("nested_script=bench-engines.sh bench_runs={runs}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_renders_ratios() {
        let log = "x BENCH engine=kvm run=1 first_line_ms=100 agent_ready_ms=NA first_output_ms=400 rss_kib=1000 threads=4\n\
                   BENCH engine=qemu run=1 first_line_ms=200 first_output_ms=1000 rss_kib=5000 threads=6\n\
                   BENCH_ERROR engine=kvm nothing\n";
        let s = parse(log);
        assert_eq!(s["kvm"]["first_line_ms"], vec![100.0]);
        assert!(!s["kvm"].contains_key("agent_ready_ms"));
        let (table, rows) = render(&s);
        assert!(table.contains("<= 0.5 (met)"), "{table}");
        let fo = rows
            .iter()
            .find(|r| r["metric"] == "first_output_ms")
            .unwrap();
        assert_eq!(fo["ratio"], json!(0.4));
    }
}
