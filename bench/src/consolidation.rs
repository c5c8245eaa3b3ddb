//! `vessel-bench consolidation`: n = 1, 2, 4, 8, 16, 32 concurrent
//! instances of one workload in each mode, as the scalability step of
//! "Virtualization of Linux servers" (seed 003, Table 4 and Figure 10).
//!
//! Every instance gets the memory of Table 4 for its n (2039 MiB alone,
//! then 3244/n MiB: 1622, 811, 405, 202, 101) as its container's memory
//! limit or its microVM's memory. All n instances are started, each prints
//! a line and waits for a `go` file in its scratch directory; when all are
//! up the suite measures their memory, creates the `go` files and the
//! workloads start together. Per-instance throughput is the mean of the n
//! figures, aggregate throughput their sum (the paper's "average throughput
//! per VM x number of VMs"). Each (n, mode) is run `--runs` times, the first
//! dropped, the median of the rest with min and max. The most instances a
//! mode holds: the largest n that completed, and how many instances the
//! host's available memory would fit at the measured RSS per instance.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::instance::{self, Mode, Running, Runtimes, Spec};
use crate::lifecycle::rotation;
use crate::overhead::{col_label, last_lines, one_line, setup_runtimes, RuntimeFlags};
use crate::report::{self, Status};
use crate::sys::{self, Cleanup};
use crate::table::{num, Table};
use crate::workloads::{self, Params, Size, Workload};

/// Flags of the consolidation suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vessel binary.
    pub vessel: PathBuf,
    /// runc binary name or path.
    pub runc: String,
    /// crun binary name or path.
    pub crun: String,
    /// Modes besides native.
    pub modes: Vec<Mode>,
    /// The workload of every instance.
    pub workload: Workload,
    /// Instance counts.
    pub instances: Vec<usize>,
    /// Largest n run in VM mode.
    pub vm_max_instances: usize,
    /// Runs per point; the first is dropped.
    pub runs: usize,
    /// Full or quick sizing.
    pub size: Size,
    /// vCPUs of each microVM.
    pub vm_cpus: u32,
    /// Directory on disk for rootfs, bundles and scratch files.
    pub tmpdir: PathBuf,
    /// Where to write the JSON.
    pub json: PathBuf,
    /// Plot files without extension.
    pub plot: PathBuf,
    /// The command line, for the record.
    pub command: String,
}

/// Memory per instance for `n` instances, MiB: the paper's Table 4 (2039
/// alone, 3244/n from two on).
pub fn table4_mib(n: usize) -> u64 {
    if n <= 1 {
        2039
    } else {
        (3244 / n as u64).max(1)
    }
}

/// Samples of one (mode, n) point.
#[derive(Debug, Clone, Default)]
struct Point {
    per_instance: Vec<f64>,
    aggregate: Vec<f64>,
    rss_mib: Vec<f64>,
    error: Option<String>,
}

/// Runs the suite, prints the table, writes the JSON and the plots.
pub fn run(opts: &Options) -> Result<()> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let started = sys::now_utc();
    let t0 = std::time::Instant::now();
    let psi0 = sys::psi_some_total_us("cpu");
    let mut cleanup = Cleanup::new();
    fs::create_dir_all(&opts.tmpdir)
        .with_context(|| format!("creating {}", opts.tmpdir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("vessel-bench-consolidation-")
        .tempdir_in(&opts.tmpdir)
        .with_context(|| format!("creating a directory in {}", opts.tmpdir.display()))?;
    let (rt, mut status) = setup_runtimes(
        &RuntimeFlags {
            vessel: &opts.vessel,
            runc: &opts.runc,
            crun: &opts.crun,
            modes: &opts.modes,
            vm_cpus: opts.vm_cpus,
            vm_workloads: std::slice::from_ref(&opts.workload),
            size: opts.size,
        },
        tmp.path(),
        &mut cleanup,
    )?;
    let host = report::host_record(&rt.vessel, rt.runc.as_deref(), rt.crun.as_deref());
    let mem_available_kib = report::meminfo_kib("MemAvailable:").unwrap_or(0);
    let mut modes = vec![Mode::Native];
    modes.extend(
        Mode::ALL
            .into_iter()
            .filter(|m| *m != Mode::Native && opts.modes.contains(m)),
    );
    let work = tmp.path().join("work");
    let nmax = opts.instances.iter().copied().max().unwrap_or(1);
    for m in &modes {
        for i in 0..nmax {
            opts.workload
                .prepare(&work.join(m.name()).join(format!("i{i}")), opts.size)?;
        }
    }
    if modes.contains(&Mode::VesselVm) && !status.contains_key(&Mode::VesselVm) {
        eprintln!("probing vessel VM mode ...");
        if let Err(e) = probe(&rt, Mode::VesselVm, &work) {
            let reason = format!("vessel VM mode does not start here: {}", one_line(&e));
            eprintln!("  {reason}");
            status.insert(Mode::VesselVm, Status::NotRun(reason));
        }
    }
    let runnable: Vec<Mode> = modes
        .iter()
        .copied()
        .filter(|m| !matches!(status.get(m), Some(Status::NotRun(_))))
        .collect();
    let mut points: BTreeMap<(Mode, usize), Point> = BTreeMap::new();
    let mut broken: BTreeMap<Mode, usize> = BTreeMap::new();
    let mut ns = opts.instances.clone();
    ns.sort_unstable();
    ns.dedup();
    let total: usize = ns
        .iter()
        .map(|n| runnable.iter().filter(|m| in_sweep(opts, **m, *n)).count() * opts.runs)
        .sum();
    let mut step = 0;
    eprintln!(
        "consolidation: {} x n = {:?}, {} runs each (first dropped), modes {:?}",
        opts.workload.name,
        ns,
        opts.runs,
        runnable.iter().map(|m| m.name()).collect::<Vec<_>>()
    );
    for &n in &ns {
        for r in 0..opts.runs {
            for m in rotation(&runnable, r + n) {
                sys::check_interrupted()?;
                if !in_sweep(opts, m, n) || broken.get(&m).is_some_and(|b| n > *b) {
                    continue;
                }
                step += 1;
                let res = group(opts, &rt, m, n, r, &work);
                let p = points.entry((m, n)).or_default();
                match res {
                    Ok((per, agg, rss)) => {
                        eprintln!(
                            "[{step:>3}/{total}] n={n:<2} run {}/{}  {:<10} per instance {per:.1}, aggregate {agg:.1} {}, {rss:.1} MiB RSS each",
                            r + 1,
                            opts.runs,
                            m.name(),
                            opts.workload.unit
                        );
                        p.per_instance.push(per);
                        p.aggregate.push(agg);
                        p.rss_mib.push(rss);
                    }
                    Err(e) => {
                        eprintln!(
                            "[{step:>3}/{total}] n={n:<2} run {}/{}  {:<10} FAILED: {}",
                            r + 1,
                            opts.runs,
                            m.name(),
                            one_line(&e)
                        );
                        p.error.get_or_insert(one_line(&e));
                        broken.insert(m, n);
                        if n == ns[0] {
                            status
                                .entry(m)
                                .or_insert(Status::Failed(format!("n={n}: {}", one_line(&e))));
                        }
                    }
                }
            }
        }
    }
    for m in &modes {
        status.entry(*m).or_insert(Status::Ok);
    }
    let mut report = report_json(
        opts,
        &modes,
        &status,
        &points,
        &host,
        mem_available_kib,
        (&started, &sys::now_utc(), t0.elapsed().as_secs_f64()),
    );
    report["host"]["load_at_end"] = json!(sys::uptime());
    report["host"]["cpu_pressure_pct"] = json!(crate::overhead::cpu_pressure(psi0, t0));
    println!("{}", render_table(&report));
    crate::write_json(&opts.json, &report)?;
    println!("JSON: {}", opts.json.display());
    match crate::plot::lines_svg(&lines(&report)) {
        Ok(svg) => match crate::plot::write_svg_png(&svg, &opts.plot) {
            Ok(()) => println!(
                "plots: {}.svg, {}.png",
                opts.plot.display(),
                opts.plot.display()
            ),
            Err(e) => eprintln!("vessel-bench: plot: {e:#}"),
        },
        Err(e) => eprintln!("vessel-bench: plot: {e:#}"),
    }
    cleanup.run();
    let failed: Vec<String> = status
        .iter()
        .filter_map(|(m, s)| match s {
            Status::Failed(e) => Some(format!("{}: {e}", m.name())),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        bail!("some modes failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

fn in_sweep(opts: &Options, m: Mode, n: usize) -> bool {
    m != Mode::VesselVm || n <= opts.vm_max_instances
}

fn probe(rt: &Runtimes, m: Mode, work: &std::path::Path) -> Result<()> {
    let spec = Spec {
        id: format!("vbc-{}-probe", std::process::id()),
        script: "echo ready".into(),
        work_dir: work.join(m.name()).join("i0"),
        netns: None,
        memory_mib: Some(table4_mib(1)),
        threads: 1,
    };
    let mut i = rt.launch(m, &spec)?;
    let f = i.wait(Duration::from_secs(600))?;
    if f.code != 0 || !f.stdout.contains("ready") {
        bail!("exit {}: {}", f.code, last_lines(&f.stderr, 3));
    }
    Ok(())
}

/// Runs n instances of the workload in mode `m` together; returns the mean
/// per-instance figure, the aggregate, and the RSS per armed instance (MiB).
fn group(
    opts: &Options,
    rt: &Runtimes,
    m: Mode,
    n: usize,
    run: usize,
    work: &std::path::Path,
) -> Result<(f64, f64, f64)> {
    let params = Params {
        size: opts.size,
        threads: 1,
        iperf_server: "127.0.0.1".into(),
    };
    let body = opts.workload.script(&params);
    let script = format!(
        "echo armed; while [ ! -e \"$WORK/go\" ]; do sleep 0.01; done; rm -f \"$WORK/go\"; {body}"
    );
    let timeout = Duration::from_secs(match (opts.size, m) {
        (_, Mode::VesselVm) => 1200,
        (Size::Full, _) => 300 + 10 * n as u64,
        (Size::Quick, _) => 120,
    });
    let mut insts: Vec<Running> = Vec::with_capacity(n);
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| work.join(m.name()).join(format!("i{i}")))
        .collect();
    for (i, d) in dirs.iter().enumerate() {
        let _ = fs::remove_file(d.join("go"));
        let spec = Spec {
            id: format!("vbc-{}-{}-{n}-{run}-{i}", std::process::id(), m.name()),
            script: script.clone(),
            work_dir: d.clone(),
            netns: None,
            memory_mib: Some(table4_mib(n)),
            threads: 1,
        };
        insts.push(
            rt.launch(m, &spec)
                .with_context(|| format!("instance {i} of {n}"))?,
        );
    }
    for (i, inst) in insts.iter_mut().enumerate() {
        inst.wait_first_output(timeout)
            .with_context(|| format!("instance {i} of {n}"))?;
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut roots = Vec::new();
    for inst in &insts {
        roots.extend(inst.pid());
        roots.extend(inst.state_pid());
    }
    let mem = instance::memory_of(&instance::process_tree(&roots));
    if m == Mode::VesselVm {
        // The guest's /work is its own: signal through exec.
        for inst in &insts {
            inst.exec(&["/bin/sh", "-c", ": > /work/go"])?;
        }
    } else {
        for d in &dirs {
            fs::write(d.join("go"), b"").with_context(|| format!("writing {}/go", d.display()))?;
        }
    }
    let mut figures = Vec::with_capacity(n);
    for (i, inst) in insts.iter_mut().enumerate() {
        let f = inst.wait(timeout)?;
        if f.code != 0 {
            bail!(
                "instance {i} of {n} exited with {}: {}",
                f.code,
                last_lines(&format!("{}{}", f.stdout, f.stderr), 3)
            );
        }
        figures.push(
            workloads::parse_result(&f.stdout).with_context(|| format!("instance {i} of {n}"))?,
        );
    }
    let sum: f64 = figures.iter().sum();
    Ok((sum / n as f64, sum, mem.rss_kib as f64 / 1024.0 / n as f64))
}

fn report_json(
    opts: &Options,
    modes: &[Mode],
    status: &BTreeMap<Mode, Status>,
    points: &BTreeMap<(Mode, usize), Point>,
    host: &Value,
    mem_available_kib: u64,
    (started, finished, secs): (&str, &str, f64),
) -> Value {
    let mut pts = Vec::new();
    let mut capacity = serde_json::Map::new();
    for m in modes {
        let mut held = 0usize;
        let mut rss_at_held = None;
        for (&(pm, n), p) in points.iter().filter(|((pm, _), _)| pm == m) {
            let _ = pm;
            let ok = p.error.is_none();
            if ok && n > held {
                held = n;
                rss_at_held = report::kept(&p.rss_mib).map(|s| s.median);
            }
            pts.push(json!({
                "mode": m.name(),
                "n": n,
                "memory_mib_per_instance": table4_mib(n),
                "status": if ok { "ok" } else { "failed" },
                "error": p.error,
                "per_instance": report::kept(&p.per_instance),
                "aggregate": report::kept(&p.aggregate),
                "rss_mib_per_instance": report::kept(&p.rss_mib),
                "samples": {"per_instance": p.per_instance, "aggregate": p.aggregate, "rss_mib": p.rss_mib},
                "tcg": *m == Mode::VesselVm,
            }));
        }
        let st = status.get(m).cloned().unwrap_or(Status::Ok);
        let estimate = rss_at_held
            .filter(|r| *r > 0.0)
            .map(|r| (mem_available_kib as f64 / 1024.0 / r).floor() as u64);
        capacity.insert(
            m.name().to_string(),
            json!({
                "status": st,
                "largest_n_held": held,
                "largest_n_tried": points.keys().filter(|(pm, _)| pm == m).map(|(_, n)| *n).max(),
                "rss_mib_per_instance_at_largest": rss_at_held,
                "memory_bound_estimate": estimate,
            }),
        );
    }
    json!({
        "suite": "consolidation",
        "command": opts.command,
        "started": started,
        "finished": finished,
        "duration_s": secs,
        "quick": opts.size == Size::Quick,
        "workload": {"name": opts.workload.name, "what": opts.workload.what, "unit": opts.workload.unit, "threads_per_instance": 1},
        "method": {
            "runs": opts.runs,
            "dropped": usize::from(opts.runs > 1),
            "memory_split": opts.instances.iter().map(|n| json!({"n": n, "mib": table4_mib(*n)})).collect::<Vec<_>>(),
            "aggregate": "sum of the instances' figures (mean per instance x n)",
            "memory_bound_estimate": "host MemAvailable at start / RSS per armed instance at the largest n held",
            "vm_note": "VM figures are under QEMU TCG emulation on this host (no usable KVM)",
        },
        "host": host,
        "mem_available_kib": mem_available_kib,
        "modes": capacity,
        "points": pts,
    })
}

/// The terminal table: per n, each mode's aggregate and per-instance medians.
pub fn render_table(report: &Value) -> String {
    let pts = report["points"].as_array().cloned().unwrap_or_default();
    let mut modes: Vec<String> = Vec::new();
    let mut ns: Vec<u64> = Vec::new();
    for p in &pts {
        let m = p["mode"].as_str().unwrap_or("").to_string();
        if !modes.contains(&m) {
            modes.push(m);
        }
        let n = p["n"].as_u64().unwrap_or(0);
        if !ns.contains(&n) {
            ns.push(n);
        }
    }
    ns.sort_unstable();
    let unit = report["workload"]["unit"].as_str().unwrap_or("");
    let mut header = vec!["n".to_string(), "MiB each".to_string()];
    header.extend(
        modes
            .iter()
            .map(|m| format!("{} aggregate / per instance", col_label(m))),
    );
    let mut t = Table::new(&header);
    for n in &ns {
        let mut row = vec![n.to_string(), table4_mib(*n as usize).to_string()];
        for m in &modes {
            let p = pts.iter().find(|p| p["mode"] == m.as_str() && p["n"] == *n);
            row.push(match p {
                None => "-".into(),
                Some(p) if p["status"] == "failed" => "FAILED".into(),
                Some(p) => format!(
                    "{} [{}-{}] / {}",
                    num(p["aggregate"]["median"].as_f64(), 1),
                    num(p["aggregate"]["min"].as_f64(), 1),
                    num(p["aggregate"]["max"].as_f64(), 1),
                    num(p["per_instance"]["median"].as_f64(), 1)
                ),
            });
        }
        t.row(row);
    }
    let mut out = format!(
        "{} ({unit}), median [min-max] of the kept runs\n",
        report["workload"]["name"].as_str().unwrap_or("")
    );
    out.push_str(&t.render());
    if let Some(c) = report["modes"].as_object() {
        let mut t = Table::new(&[
            "mode",
            "largest n held",
            "RSS MiB/instance",
            "memory-bound estimate",
            "status",
        ]);
        for (m, v) in c {
            let st = match v["status"]["status"].as_str() {
                Some("ok") => "ok".to_string(),
                Some(s) => format!("{s}: {}", v["status"]["reason"].as_str().unwrap_or("")),
                None => String::new(),
            };
            t.row(vec![
                col_label(m),
                v["largest_n_held"].to_string(),
                num(v["rss_mib_per_instance_at_largest"].as_f64(), 1),
                v["memory_bound_estimate"]
                    .as_u64()
                    .map_or("-".into(), |e| e.to_string()),
                st,
            ]);
        }
        out.push_str(&t.render());
    }
    for p in pts.iter().filter(|p| p["status"] == "failed") {
        out.push_str(&format!(
            "  {} n={}: {}\n",
            p["mode"].as_str().unwrap_or(""),
            p["n"],
            p["error"].as_str().unwrap_or("")
        ));
    }
    out
}

/// The scaling curves: aggregate and per-instance throughput against n.
pub fn lines(report: &Value) -> Vec<crate::plot::Lines> {
    let pts = report["points"].as_array().cloned().unwrap_or_default();
    let unit = report["workload"]["unit"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = report["workload"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut modes: Vec<String> = Vec::new();
    for p in &pts {
        let m = p["mode"].as_str().unwrap_or("").to_string();
        if !modes.contains(&m) {
            modes.push(m);
        }
    }
    let series = |key: &str| -> Vec<crate::plot::LineSeries> {
        modes
            .iter()
            .map(|m| crate::plot::LineSeries {
                name: col_label(m),
                points: pts
                    .iter()
                    .filter(|p| p["mode"] == m.as_str() && p["status"] == "ok")
                    .filter_map(|p| Some((p["n"].as_f64()?, p[key]["median"].as_f64()?)))
                    .collect(),
            })
            .collect()
    };
    vec![
        crate::plot::Lines {
            title: format!("{name}: aggregate throughput (Fig. 10a)"),
            x_desc: "concurrent instances".into(),
            y_desc: unit.clone(),
            series: series("aggregate"),
        },
        crate::plot::Lines {
            title: format!("{name}: per instance (Fig. 10b)"),
            x_desc: "concurrent instances".into(),
            y_desc: unit,
            series: series("per_instance"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table4() {
        let got: Vec<u64> = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|n| table4_mib(*n))
            .collect();
        assert_eq!(got, vec![2039, 1622, 811, 405, 202, 101]);
    }

    #[test]
    fn table_and_lines() {
        let r = json!({
            "workload": {"name": "sysbench-cpu", "unit": "events/s"},
            "points": [
                {"mode": "native", "n": 1, "status": "ok", "aggregate": {"median": 10.0, "min": 9.0, "max": 11.0}, "per_instance": {"median": 10.0}},
                {"mode": "native", "n": 2, "status": "ok", "aggregate": {"median": 20.0, "min": 19.0, "max": 21.0}, "per_instance": {"median": 10.0}},
                {"mode": "vessel", "n": 1, "status": "failed", "error": "boom"},
            ],
            "modes": {"native": {"status": {"status": "ok"}, "largest_n_held": 2, "rss_mib_per_instance_at_largest": 3.0, "memory_bound_estimate": 100}},
        });
        let t = render_table(&r);
        assert!(t.contains("20.0 [19.0-21.0] / 10.0"), "{t}");
        assert!(t.contains("FAILED") && t.contains("boom"), "{t}");
        let l = lines(&r);
        assert_eq!(l[0].series[0].points, vec![(1.0, 10.0), (2.0, 20.0)]);
        assert!(l[1].series[1].points.is_empty());
    }
}
