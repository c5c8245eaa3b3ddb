//! `vessel-bench overhead`: each workload natively, in a vessel container,
//! in a vessel microVM and in runc and crun containers, measured as
//! "Virtualization of Linux servers" did (seed 003): every experiment
//! `--runs` times (4), the first run dropped, the median of the rest with
//! its min and max, normalized to native (higher is better). Plus start-up
//! latency (spawn of `<runtime> run` to the first byte the workload prints)
//! and memory per instance (RSS summed over the runtime's process tree and
//! the container, or the VMM, while the workload idles), and a bare QEMU
//! boot of the guest kernel beside the VM mode.
//!
//! Modes interleave within every run (the order rotating run by run), so
//! drift of this shared machine hits them alike.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::instance::{self, Mode, Runtimes, Spec};
use crate::lifecycle::rotation;
use crate::netns::{self, Netns};
use crate::report::{self, Status};
use crate::stats::Summary;
use crate::sys::{self, Cleanup};
use crate::table::{num, Table};
use crate::workloads::{self, Params, Size, Workload};

/// Flags of the overhead suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vessel binary.
    pub vessel: PathBuf,
    /// runc binary name or path.
    pub runc: String,
    /// crun binary name or path.
    pub crun: String,
    /// Modes to run (native is always added: it is the baseline).
    pub modes: Vec<Mode>,
    /// Workloads to run.
    pub workloads: Vec<Workload>,
    /// Workloads also run in VM mode (TCG is slow); startup and memory
    /// always are.
    pub vm_workloads: Vec<String>,
    /// Runs per cell; the first is dropped.
    pub runs: usize,
    /// Full or quick sizing.
    pub size: Size,
    /// Threads of sysbench and make.
    pub threads: u32,
    /// Memory limit of a container and memory of a microVM, MiB.
    pub memory_mib: u64,
    /// vCPUs of a microVM.
    pub vm_cpus: u32,
    /// Whether to time a bare QEMU boot of the guest kernel.
    pub qemu_boot: bool,
    /// Directory (on disk) for the rootfs, bundles and scratch files.
    pub tmpdir: PathBuf,
    /// Where to write the JSON.
    pub json: PathBuf,
    /// Plot files without extension (`.svg` and `.png` are written).
    pub plot: PathBuf,
    /// The command line, for the record.
    pub command: String,
}

/// A row of the report.
#[derive(Debug, Clone)]
struct Row {
    name: &'static str,
    what: &'static str,
    unit: &'static str,
    higher_is_better: bool,
}

const STARTUP: Row = Row {
    name: "startup",
    what: "spawn of the runtime (or sh) to the workload's first byte of output",
    unit: "ms",
    higher_is_better: false,
};
const MEMORY: Row = Row {
    name: "memory",
    what: "RSS summed over the runtime's process tree and the container (or VMM), idle workload",
    unit: "MiB",
    higher_is_better: false,
};

/// Samples of one cell, or why it has none.
#[derive(Debug, Clone, Default)]
struct Cell {
    samples: Vec<f64>,
    pss: Vec<f64>,
    error: Option<String>,
    not_run: Option<String>,
}

/// The column of the bare QEMU boot (startup and memory rows only).
const QEMU_BARE: &str = "qemu-bare";

struct Suite<'a> {
    opts: &'a Options,
    rt: Runtimes,
    modes: Vec<Mode>,
    mode_status: BTreeMap<Mode, Status>,
    net: Option<Netns>,
    work: PathBuf,
    cells: BTreeMap<(String, String), Cell>,
    step: usize,
    steps: usize,
}

/// Runs the suite, prints the table, writes the JSON and plots; an error
/// when any mode that ran failed a cell.
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
        .prefix("vessel-bench-overhead-")
        .tempdir_in(&opts.tmpdir)
        .with_context(|| format!("creating a directory in {}", opts.tmpdir.display()))?;

    let vm_workloads: Vec<Workload> = opts
        .workloads
        .iter()
        .copied()
        .filter(|w| opts.vm_workloads.iter().any(|n| n == w.name))
        .collect();
    let (rt, mut mode_status) = setup_runtimes(
        &RuntimeFlags {
            vessel: &opts.vessel,
            runc: &opts.runc,
            crun: &opts.crun,
            modes: &opts.modes,
            vm_cpus: opts.vm_cpus,
            vm_workloads: &vm_workloads,
            size: opts.size,
        },
        tmp.path(),
        &mut cleanup,
    )?;
    let mut modes: Vec<Mode> = vec![Mode::Native];
    for m in Mode::ALL {
        if m != Mode::Native && opts.modes.contains(&m) {
            modes.push(m);
        }
    }
    for m in &modes {
        mode_status.entry(*m).or_insert(Status::Ok);
    }
    let host = report::host_record(&rt.vessel, rt.runc.as_deref(), rt.crun.as_deref());

    let net = if opts.workloads.iter().any(|w| w.network) {
        let n = Netns::create(std::process::id() % 10_000, &mut cleanup)?;
        netns::start_iperf_server(&n.host_ip, workloads::IPERF_PORT, &mut cleanup)?;
        netns::start_iperf_server("127.0.0.1", workloads::IPERF_PORT, &mut cleanup)?;
        Some(n)
    } else {
        None
    };

    let mut suite = Suite {
        opts,
        rt,
        modes,
        mode_status,
        net,
        work: tmp.path().join("work"),
        cells: BTreeMap::new(),
        step: 0,
        steps: 0,
    };
    suite.prepare()?;
    suite.probe_vm();
    let runnable = suite.runnable_modes();
    suite.steps = opts.runs
        * (runnable.len()
            + usize::from(opts.qemu_boot)
            + opts
                .workloads
                .iter()
                .map(|w| runnable.iter().filter(|m| suite.runs_in(w, **m)).count())
                .sum::<usize>());
    eprintln!(
        "overhead: {} runs x ({} modes, {} workloads), first run dropped; {}",
        opts.runs,
        runnable.len(),
        opts.workloads.len(),
        if opts.size == Size::Quick {
            "quick sizing"
        } else {
            "full sizing"
        }
    );
    for r in 0..opts.runs {
        let order = rotation(&runnable, r);
        for m in &order {
            suite.startup_and_memory(*m, r);
        }
        if opts.qemu_boot {
            suite.bare_qemu(r, tmp.path());
        }
        for w in &opts.workloads {
            for m in &order {
                sys::check_interrupted()?;
                if suite.runs_in(w, *m) {
                    suite.workload(w, *m, r);
                }
            }
        }
    }
    suite.mark_not_run();
    let finished = sys::now_utc();
    let mut report = suite.report(&host, &started, &finished, t0.elapsed().as_secs_f64());
    report["host"]["load_at_end"] = json!(sys::uptime());
    report["host"]["cpu_pressure_pct"] = json!(cpu_pressure(psi0, t0));
    println!("{}", render_table(&report));
    crate::write_json(&opts.json, &report)?;
    println!("JSON: {}", opts.json.display());
    match crate::plot::write_svg_png(&crate::plot::bars_svg(&bars(&report))?, &opts.plot) {
        Ok(()) => println!(
            "plots: {}.svg, {}.png",
            opts.plot.display(),
            opts.plot.display()
        ),
        Err(e) => eprintln!("vessel-bench: plot: {e:#}"),
    }
    let failed: Vec<String> = suite
        .mode_status
        .iter()
        .filter_map(|(m, s)| match s {
            Status::Failed(e) => Some(format!("{}: {e}", m.name())),
            _ => None,
        })
        .collect();
    drop(suite);
    cleanup.run();
    if !failed.is_empty() {
        bail!("some cells failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// The flags [`setup_runtimes`] needs.
pub(crate) struct RuntimeFlags<'a> {
    pub vessel: &'a Path,
    pub runc: &'a str,
    pub crun: &'a str,
    pub modes: &'a [Mode],
    pub vm_cpus: u32,
    /// Workloads whose inputs go into the VM rootfs's /work.
    pub vm_workloads: &'a [Workload],
    pub size: Size,
}

/// Finds the runtimes, makes the rootfs and base config, mounts hugetlb
/// for crun; missing anchors become "not run".
pub(crate) fn setup_runtimes(
    opts: &RuntimeFlags<'_>,
    tmp: &Path,
    cleanup: &mut Cleanup,
) -> Result<(Runtimes, BTreeMap<Mode, Status>)> {
    if !opts.vessel.is_file() {
        bail!(
            "vessel binary {} not found (cargo build --release -p vessel, or pass --vessel)",
            opts.vessel.display()
        );
    }
    let vessel = fs::canonicalize(opts.vessel)?;
    let mut status = BTreeMap::new();
    let mut find = |mode: Mode, name: &str| {
        let found = crate::which(name);
        if found.is_none() && opts.modes.contains(&mode) {
            status.insert(
                mode,
                Status::NotRun(format!(
                    "{name} not found in PATH (apt-get install -y {name})"
                )),
            );
        }
        found
    };
    let runc = find(Mode::Runc, opts.runc);
    let crun = find(Mode::Crun, opts.crun);
    if crun.is_some() && opts.modes.contains(&Mode::Crun) {
        crate::lifecycle::ensure_hugetlb(cleanup)?;
    }
    let rootfs = tmp.join("rootfs");
    instance::make_rootfs(&rootfs)?;
    let base_config = crate::bundle::vessel_spec(&vessel, &["true"])?;
    let state_dir = tmp.join("state");
    let vm_rootfs = if opts.modes.contains(&Mode::VesselVm) {
        let r = tmp.join("vm-rootfs");
        crate::vm_rootfs::make(&r)?;
        for w in opts.vm_workloads {
            w.prepare(&r.join("work"), opts.size)?;
        }
        Some(r)
    } else {
        None
    };
    let rt = Runtimes {
        vessel,
        runc,
        crun,
        state_dir: state_dir.clone(),
        rootfs,
        base_config,
        vm_cpus: opts.vm_cpus,
        vm_rootfs,
    };
    // Containers left behind by an error are force-deleted before the
    // state directories go.
    let rt2 = rt.clone();
    cleanup.push("delete leftover containers", move || {
        for m in [Mode::Vessel, Mode::VesselVm, Mode::Runc, Mode::Crun] {
            let (Some(bin), Ok(rd)) = (rt2.binary(m), fs::read_dir(rt2.root(m))) else {
                continue;
            };
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = std::process::Command::new(bin)
                    .arg("--root")
                    .arg(rt2.root(m))
                    .args(["delete", "--force", &id])
                    .output();
            }
        }
        Ok(())
    });
    Ok((rt, status))
}

impl Suite<'_> {
    fn runnable_modes(&self) -> Vec<Mode> {
        self.modes
            .iter()
            .copied()
            .filter(|m| !matches!(self.mode_status.get(m), Some(Status::NotRun(_))))
            .collect()
    }

    fn runs_in(&self, w: &Workload, m: Mode) -> bool {
        m != Mode::VesselVm || self.opts.vm_workloads.iter().any(|n| n == w.name)
    }

    fn work_dir(&self, m: Mode, name: &str) -> PathBuf {
        self.work.join(m.name()).join(name)
    }

    fn prepare(&self) -> Result<()> {
        for m in &self.modes {
            for w in &self.opts.workloads {
                w.prepare(&self.work_dir(*m, w.name), self.opts.size)
                    .with_context(|| format!("preparing {} for {}", w.name, m.name()))?;
            }
            fs::create_dir_all(self.work_dir(*m, "startup"))?;
        }
        Ok(())
    }

    /// One start of the VM mode before the runs: if it cannot start at all,
    /// the whole mode is "not run" with the reason.
    fn probe_vm(&mut self) {
        if !self.modes.contains(&Mode::VesselVm) {
            return;
        }
        eprintln!("probing vessel VM mode ...");
        if let Err(e) = self.idle_instance(Mode::VesselVm, "probe") {
            let reason = format!("vessel VM mode does not start here: {}", one_line(&e));
            eprintln!("  {reason}");
            self.mode_status
                .insert(Mode::VesselVm, Status::NotRun(reason));
        }
    }

    fn progress(&mut self, what: &str, mode: &str, run: usize, res: &Result<String>) {
        self.step += 1;
        let r = match res {
            Ok(s) => s.clone(),
            Err(e) => format!("FAILED: {}", one_line(e)),
        };
        eprintln!(
            "[{:>3}/{}] run {}/{}  {:<16} {:<10} {}",
            self.step,
            self.steps,
            run + 1,
            self.opts.runs,
            what,
            mode,
            r
        );
    }

    fn cell(&mut self, row: &str, col: &str) -> &mut Cell {
        self.cells
            .entry((row.to_string(), col.to_string()))
            .or_default()
    }

    fn record_error(&mut self, row: &str, m: Mode, e: &anyhow::Error) {
        let msg = format!("{row}: {}", one_line(e));
        self.cell(row, m.name()).error.get_or_insert(msg.clone());
        let st = self.mode_status.entry(m).or_insert(Status::Ok);
        if *st == Status::Ok {
            *st = Status::Failed(msg);
        }
    }

    fn timeout(&self, m: Mode) -> Duration {
        let base = match self.opts.size {
            Size::Full => 300,
            Size::Quick => 120,
        };
        Duration::from_secs(if m == Mode::VesselVm { base * 4 } else { base })
    }

    /// Starts an instance that prints a line and sleeps; returns the time to
    /// that line, its memory, then stops it.
    fn idle_instance(&self, m: Mode, tag: &str) -> Result<(f64, instance::Memory)> {
        let spec = Spec {
            id: format!("vbo-{}-{}-{tag}", std::process::id(), m.name()),
            script: "echo ready; exec sleep 600".into(),
            work_dir: self.work_dir(m, "startup"),
            netns: None,
            memory_mib: Some(self.opts.memory_mib),
            threads: self.opts.threads,
        };
        let mut inst = self.rt.launch(m, &spec)?;
        let t = inst.wait_first_output(self.timeout(m))?;
        // Let the runtime settle (runc and crun exit their helpers).
        std::thread::sleep(Duration::from_millis(100));
        let mut roots: Vec<u32> = inst.pid().into_iter().collect();
        roots.extend(inst.state_pid());
        let mem = instance::memory_of(&instance::process_tree(&roots));
        inst.stop()?;
        Ok((t.as_secs_f64() * 1e3, mem))
    }

    fn startup_and_memory(&mut self, m: Mode, run: usize) {
        let res = self.idle_instance(m, &format!("s{run}"));
        let shown = res
            .as_ref()
            .map(|(ms, mem)| format!("{ms:.1} ms, {:.1} MiB RSS", mem.rss_kib as f64 / 1024.0))
            .map_err(|e| anyhow::anyhow!("{e:#}"));
        self.progress("startup+memory", m.name(), run, &shown);
        match res {
            Ok((ms, mem)) => {
                self.cell(STARTUP.name, m.name()).samples.push(ms);
                let c = self.cell(MEMORY.name, m.name());
                c.samples.push(mem.rss_kib as f64 / 1024.0);
                c.pss.push(mem.pss_kib as f64 / 1024.0);
            }
            Err(e) => {
                self.record_error(STARTUP.name, m, &e);
                self.record_error(MEMORY.name, m, &e);
            }
        }
    }

    fn bare_qemu(&mut self, run: usize, tmp: &Path) {
        let res = (|| {
            let kernel = crate::qemu_boot::guest_kernel()?;
            let initrd = tmp.join("initramfs.cpio");
            if !initrd.exists() {
                crate::qemu_boot::make_initramfs(tmp)?;
            }
            crate::qemu_boot::boot_once(&kernel, &initrd, "tcg", self.opts.memory_mib)
        })();
        let shown = res
            .as_ref()
            .map(|b| {
                format!(
                    "{:.0} ms, {:.1} MiB RSS (TCG)",
                    b.ready_ms,
                    b.rss_kib as f64 / 1024.0
                )
            })
            .map_err(|e| anyhow::anyhow!("{e:#}"));
        self.progress("bare QEMU boot", QEMU_BARE, run, &shown);
        match res {
            Ok(b) => {
                self.cell(STARTUP.name, QEMU_BARE).samples.push(b.ready_ms);
                self.cell(MEMORY.name, QEMU_BARE)
                    .samples
                    .push(b.rss_kib as f64 / 1024.0);
            }
            Err(e) => {
                let msg = one_line(&e);
                self.cell(STARTUP.name, QEMU_BARE)
                    .error
                    .get_or_insert(msg.clone());
                self.cell(MEMORY.name, QEMU_BARE).error.get_or_insert(msg);
            }
        }
    }

    fn workload(&mut self, w: &Workload, m: Mode, run: usize) {
        let params = Params {
            size: self.opts.size,
            threads: self.opts.threads,
            iperf_server: match (&self.net, m) {
                (_, Mode::Native) | (None, _) => "127.0.0.1".into(),
                (Some(n), _) => n.host_ip.clone(),
            },
        };
        let spec = Spec {
            id: format!("vbo-{}-{}-{}-{run}", std::process::id(), m.name(), w.name),
            script: w.script(&params),
            work_dir: self.work_dir(m, w.name),
            netns: if w.network && m != Mode::Native {
                self.net.as_ref().map(|n| n.path.clone())
            } else {
                None
            },
            memory_mib: Some(self.opts.memory_mib),
            threads: self.opts.threads,
        };
        let res = (|| {
            let mut inst = self.rt.launch(m, &spec)?;
            let f = inst.wait(self.timeout(m))?;
            if f.code != 0 {
                bail!(
                    "exited with {}: {}",
                    f.code,
                    last_lines(&format!("{}{}", f.stdout, f.stderr), 4)
                );
            }
            workloads::parse_result(&f.stdout)
                .with_context(|| format!("output: {}", last_lines(&f.stderr, 3)))
        })();
        let shown = res
            .as_ref()
            .map(|v| format!("{v:.2} {}", w.unit))
            .map_err(|e| anyhow::anyhow!("{e:#}"));
        self.progress(w.name, m.name(), run, &shown);
        match res {
            Ok(v) => self.cell(w.name, m.name()).samples.push(v),
            Err(e) => self.record_error(w.name, m, &e),
        }
    }

    /// Cells of modes that could not run, and VM cells of workloads left
    /// out under TCG, get their reason.
    fn mark_not_run(&mut self) {
        let modes = self.modes.clone();
        let rows: Vec<&'static str> = [STARTUP.name, MEMORY.name]
            .into_iter()
            .chain(self.opts.workloads.iter().map(|w| w.name))
            .collect();
        for m in modes {
            let status = self.mode_status.get(&m).cloned();
            for row in &rows {
                let reason = match &status {
                    Some(Status::NotRun(r)) => Some(r.clone()),
                    _ if m == Mode::VesselVm
                        && ![STARTUP.name, MEMORY.name].contains(row)
                        && !self.opts.vm_workloads.iter().any(|n| n == row) =>
                    {
                        Some(
                            "not in --vm-workloads (the guest runs under TCG emulation here)"
                                .into(),
                        )
                    }
                    _ => None,
                };
                if let Some(r) = reason {
                    self.cell(row, m.name()).not_run = Some(r);
                }
            }
        }
    }

    fn report(&self, host: &Value, started: &str, finished: &str, secs: f64) -> Value {
        let mut rows = vec![STARTUP, MEMORY];
        rows.extend(self.opts.workloads.iter().map(|w| Row {
            name: w.name,
            what: w.what,
            unit: w.unit,
            higher_is_better: w.higher_is_better,
        }));
        let mut cols: Vec<String> = self.modes.iter().map(|m| m.name().to_string()).collect();
        if self.opts.qemu_boot {
            cols.push(QEMU_BARE.into());
        }
        let empty = Cell::default();
        let rows_json: Vec<Value> = rows
            .iter()
            .map(|row| {
                let native = self
                    .cells
                    .get(&(row.name.to_string(), "native".to_string()))
                    .and_then(|c| report::kept(&c.samples));
                let mut cells = serde_json::Map::new();
                for col in &cols {
                    if col == QEMU_BARE && row.name != STARTUP.name && row.name != MEMORY.name {
                        continue;
                    }
                    let c = self
                        .cells
                        .get(&(row.name.to_string(), col.clone()))
                        .unwrap_or(&empty);
                    cells.insert(col.clone(), cell_json(c, row, native.as_ref(), col));
                }
                json!({
                    "name": row.name,
                    "what": row.what,
                    "unit": row.unit,
                    "higher_is_better": row.higher_is_better,
                    "cells": cells,
                })
            })
            .collect();
        let modes: serde_json::Map<String, Value> = self
            .modes
            .iter()
            .map(|m| {
                let s = self.mode_status.get(m).cloned().unwrap_or(Status::Ok);
                (
                    m.name().to_string(),
                    serde_json::to_value(s).unwrap_or(Value::Null),
                )
            })
            .collect();
        json!({
            "suite": "overhead",
            "command": self.opts.command,
            "started": started,
            "finished": finished,
            "duration_s": secs,
            "quick": self.opts.size == Size::Quick,
            "method": {
                "runs": self.opts.runs,
                "dropped": usize::from(self.opts.runs > 1),
                "statistic": "median of the kept runs, with their min and max",
                "normalized": "to native; throughput mode/native, time native/mode (higher is better)",
                "threads": self.opts.threads,
                "memory_mib": self.opts.memory_mib,
                "vm_cpus": self.opts.vm_cpus,
                "vm_note": "VM figures are under QEMU TCG emulation on this host (no usable KVM)",
                "rootfs": "shared rootfs: merged-/usr links, host /usr bind-mounted read-only, scratch dir at /work",
            },
            "host": host,
            "modes": modes,
            "rows": rows_json,
        })
    }
}

fn cell_json(c: &Cell, row: &Row, native: Option<&Summary>, col: &str) -> Value {
    if let Some(r) = &c.not_run {
        return json!({"status": "not_run", "reason": r});
    }
    if let Some(e) = &c.error {
        return json!({"status": "failed", "error": e, "samples": c.samples});
    }
    let Some(s) = report::kept(&c.samples) else {
        return json!({"status": "not_run", "reason": "no samples"});
    };
    let norm = native.and_then(|n| {
        let a = report::normalized(s.median, n.median, row.higher_is_better)?;
        let b = report::normalized(s.min, n.median, row.higher_is_better)?;
        let d = report::normalized(s.max, n.median, row.higher_is_better)?;
        Some(json!({"median": a, "min": b.min(d), "max": b.max(d)}))
    });
    let mut v = json!({
        "status": "ok",
        "samples": c.samples,
        "kept": s,
        "normalized": norm,
        "tcg": col == "vessel-vm" || col == QEMU_BARE,
    });
    if let Some(p) = report::kept(&c.pss) {
        v["pss_mib"] = serde_json::to_value(p).unwrap_or(Value::Null);
    }
    v
}

/// The share of the run's wall time some task waited for a CPU
/// (`/proc/pressure/cpu`), in percent: how much the machine's other
/// tenants were in the way.
pub(crate) fn cpu_pressure(psi0: Option<u64>, t0: std::time::Instant) -> Option<f64> {
    let d = sys::psi_some_total_us("cpu")?.checked_sub(psi0?)?;
    Some(d as f64 / (t0.elapsed().as_secs_f64() * 1e6) * 100.0)
}

pub(crate) fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " | ")
}

pub(crate) fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Column label: VM columns say TCG.
pub(crate) fn col_label(col: &str) -> String {
    if col == "vessel-vm" || col == QEMU_BARE {
        format!("{col} (TCG)")
    } else {
        col.to_string()
    }
}

/// The terminal table of a report: median [min-max] and x native per cell.
pub fn render_table(report: &Value) -> String {
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let mut cols: Vec<String> = Vec::new();
    for r in &rows {
        if let Some(c) = r["cells"].as_object() {
            for k in c.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    cols.sort_by_key(|c| {
        ["native", "vessel", "crun", "runc", "vessel-vm", QEMU_BARE]
            .iter()
            .position(|x| x == c)
            .unwrap_or(99)
    });
    let mut header = vec!["workload".to_string(), "unit".to_string()];
    header.extend(cols.iter().map(|c| col_label(c)));
    let mut t = Table::new(&header);
    let mut notes: Vec<String> = Vec::new();
    for r in &rows {
        let mut line = vec![
            r["name"].as_str().unwrap_or("").to_string(),
            r["unit"].as_str().unwrap_or("").to_string(),
        ];
        for col in &cols {
            let c = &r["cells"][col];
            let txt = match c["status"].as_str() {
                Some("ok") => {
                    let k = &c["kept"];
                    let d = if k["median"].as_f64().unwrap_or(0.0) >= 100.0 {
                        0
                    } else {
                        2
                    };
                    let mut s = format!(
                        "{} [{}-{}]",
                        num(k["median"].as_f64(), d),
                        num(k["min"].as_f64(), d),
                        num(k["max"].as_f64(), d)
                    );
                    if col != "native" {
                        if let Some(x) = c["normalized"]["median"].as_f64() {
                            s.push_str(&format!(" x{x:.2}"));
                        }
                    }
                    s
                }
                Some("failed") => {
                    notes.push(format!(
                        "{col} {}: {}",
                        line[0],
                        c["error"].as_str().unwrap_or("")
                    ));
                    "FAILED".into()
                }
                Some("not_run") => {
                    let reason = c["reason"].as_str().unwrap_or("").to_string();
                    if !notes.iter().any(|n| n.ends_with(&reason)) {
                        notes.push(format!("{col}: not run: {reason}"));
                    }
                    "not run".into()
                }
                _ => String::new(),
            };
            line.push(txt);
        }
        t.row(line);
    }
    let mut out = t.render();
    out.push_str(
        "cells: median [min-max] of the kept runs, xN = relative to native (higher is better)\n",
    );
    for n in notes {
        out.push_str(&format!("  {n}\n"));
    }
    out
}

/// The normalized overhead bars of a report's workload rows.
pub fn bars(report: &Value) -> crate::plot::Bars {
    let rows: Vec<Value> = report["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["name"] != STARTUP.name && r["name"] != MEMORY.name)
        .collect();
    let modes: Vec<String> = ["native", "vessel", "crun", "runc", "vessel-vm"]
        .iter()
        .filter(|m| rows.iter().any(|r| r["cells"][**m]["status"] == "ok"))
        .map(|m| m.to_string())
        .collect();
    crate::plot::Bars {
        title: format!(
            "vessel bench overhead{}: throughput relative to native (higher is better; VM under TCG)",
            if report["quick"] == true { " --quick" } else { "" }
        ),
        y_desc: "relative to native".into(),
        categories: rows
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("").to_string())
            .collect(),
        series: modes
            .iter()
            .map(|m| crate::plot::BarSeries {
                name: col_label(m),
                values: rows
                    .iter()
                    .map(|r| {
                        let n = &r["cells"][m]["normalized"];
                        Some((n["median"].as_f64()?, n["min"].as_f64()?, n["max"].as_f64()?))
                    })
                    .collect(),
            })
            .collect(),
        reference: Some(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Value {
        let row = Row {
            name: "bzip2",
            what: "",
            unit: "s",
            higher_is_better: false,
        };
        let native = report::kept(&[9.0, 2.0, 2.0, 2.0]);
        let c = Cell {
            samples: vec![9.0, 4.0, 4.0, 5.0],
            ..Cell::default()
        };
        let v = cell_json(&c, &row, native.as_ref(), "vessel");
        assert_eq!(v["normalized"]["median"], 0.5);
        assert_eq!(v["normalized"]["min"], 0.4);
        json!({"quick": true, "rows": [{"name": "bzip2", "unit": "s", "cells": {
            "native": cell_json(&Cell { samples: vec![9.0, 2.0, 2.0, 2.0], ..Cell::default() }, &row, native.as_ref(), "native"),
            "vessel": v,
            "vessel-vm": {"status": "not_run", "reason": "no VM"},
        }}]})
    }

    #[test]
    fn table_and_bars_from_report() {
        let r = report();
        let t = render_table(&r);
        assert!(t.contains("4.00 [4.00-5.00] x0.50"), "{t}");
        assert!(
            t.contains("vessel-vm (TCG)") && t.contains("not run: no VM"),
            "{t}"
        );
        let b = bars(&r);
        assert_eq!(b.categories, vec!["bzip2"]);
        assert_eq!(b.series.len(), 2);
        assert_eq!(b.series[1].values[0], Some((0.5, 0.4, 0.5)));
    }
}
