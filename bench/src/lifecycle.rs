//! `vessel-bench lifecycle`: create + start + wait + delete of `/bin/true`
//! for vessel, crun and runc, side by side in one run on one bundle.
//!
//! Each run is `<runtime> --root <tmp> run --bundle <bundle> <fresh id>`.
//! Two measurements, both interleaving the runtimes:
//!
//! 1. hyperfine in rounds: every round runs each runtime's share of the
//!    runs (`--warmup 3`, `--export-json`), the runtime order rotating from
//!    round to round; the wall times of all rounds are pooled. The command
//!    is `exec <runtime> ... <prefix>-$$` under hyperfine's `sh -c`: `$$`
//!    gives every run a fresh id, `exec` replaces the shell (no extra
//!    fork), and hyperfine subtracts the shell's own start-up time.
//! 2. a wait4(2) loop, runtimes alternating run by run: wall time, CPU
//!    (user + system of the runtime's process tree, as `/usr/bin/time`
//!    counts it) and peak RSS (`ru_maxrss`, what `/usr/bin/time -f %M`
//!    prints).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::hyperfine;
use crate::stats::{ratio, Summary};
use crate::sys::{self, Cleanup};
use crate::table::{num, Table};

/// Flags of the lifecycle suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs per runtime, in each of the two measurements.
    pub runs: usize,
    /// hyperfine rounds the runs are split into.
    pub rounds: usize,
    /// hyperfine warm-up runs per round.
    pub warmup: usize,
    /// The vessel binary.
    pub vessel: PathBuf,
    /// crun binary name or path.
    pub crun: String,
    /// runc binary name or path.
    pub runc: String,
    /// Where to write the JSON results.
    pub json: PathBuf,
    /// Directory for the bundle and state roots.
    pub tmpdir: Option<PathBuf>,
}

/// A runtime taking part.
#[derive(Debug, Clone)]
struct Runtime {
    name: &'static str,
    path: PathBuf,
    version: String,
    root: PathBuf,
}

/// What was measured for one runtime.
#[derive(Debug, Clone, Default)]
struct Measured {
    hf_times_ms: Vec<f64>,
    hf_cpu_ms_weighted: f64,
    hf_runs: usize,
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    maxrss_kib: Vec<f64>,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Splits `runs` into `rounds` near-equal shares (the first ones larger).
pub fn split_runs(runs: usize, rounds: usize) -> Vec<usize> {
    let rounds = rounds.clamp(1, runs.max(1));
    (0..rounds)
        .map(|i| runs / rounds + usize::from(i < runs % rounds))
        .filter(|k| *k > 0)
        .collect()
}

/// The runtimes in round `r`'s order: the list rotated by `r`.
pub fn rotation<T: Clone>(items: &[T], r: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = r % items.len();
    items[k..]
        .iter()
        .chain(items[..k].iter())
        .cloned()
        .collect()
}

const HUGETLB_V1: &str = "/sys/fs/cgroup/hugetlb";
const UNIFIED_SUBTREE: &str = "/sys/fs/cgroup/unified/cgroup.subtree_control";

/// Mounts the hugetlb v1 hierarchy crun needs on this hybrid host, undoing
/// it (and any `-hugetlb` written to the unified hierarchy) at cleanup.
pub(crate) fn ensure_hugetlb(cleanup: &mut Cleanup) -> Result<()> {
    if sys::cgroup_v1_mounted(HUGETLB_V1, "hugetlb")
        || !Path::new("/sys/fs/cgroup/unified").exists()
    {
        return Ok(());
    }
    let mut removed_from_unified = false;
    if fs::read_to_string(UNIFIED_SUBTREE)
        .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
        .unwrap_or(false)
    {
        fs::write(UNIFIED_SUBTREE, "-hugetlb")
            .with_context(|| format!("writing -hugetlb to {UNIFIED_SUBTREE}"))?;
        removed_from_unified = true;
    }
    let created = !Path::new(HUGETLB_V1).exists();
    if created {
        fs::create_dir_all(HUGETLB_V1)?;
    }
    let mounted = sys::output(
        Command::new("mount").args(["-t", "cgroup", "-o", "hugetlb", "cgroup", HUGETLB_V1]),
    );
    if let Err(e) = mounted {
        // Put back what was changed above: a failed mount must not leave
        // the directory or the unified hierarchy's controllers changed.
        if created {
            let _ = fs::remove_dir(HUGETLB_V1);
        }
        if removed_from_unified {
            let _ = fs::write(UNIFIED_SUBTREE, "+hugetlb");
        }
        return Err(e.context("mounting hugetlb as cgroup v1 (crun needs it on a hybrid host)"));
    }
    println!("mounted hugetlb v1 at {HUGETLB_V1} for crun (unmounted at the end)");
    cleanup.push("unmount hugetlb v1", move || {
        sys::output(Command::new("umount").arg(HUGETLB_V1))?;
        if created {
            let _ = fs::remove_dir(HUGETLB_V1);
        }
        if removed_from_unified {
            fs::write(UNIFIED_SUBTREE, "+hugetlb")
                .with_context(|| format!("restoring +hugetlb in {UNIFIED_SUBTREE}"))?;
        }
        Ok(())
    });
    Ok(())
}

/// Force-deletes every container left in each runtime's state root.
fn delete_leftovers(rts: &[Runtime]) -> Result<()> {
    for rt in rts {
        let Ok(entries) = fs::read_dir(&rt.root) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = Command::new(&rt.path)
                    .arg("--root")
                    .arg(&rt.root)
                    .args(["delete", "-f", &id])
                    .output();
            }
        }
    }
    Ok(())
}

fn run_cmd(rt: &Runtime, bundle: &Path, id: &str) -> Command {
    let mut c = Command::new(&rt.path);
    c.arg("--root")
        .arg(&rt.root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id);
    c
}

/// Runs the suite, prints the table and writes the JSON.
pub fn run(opts: &Options) -> Result<()> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let started = sys::now_utc();
    let load_before = sys::uptime();
    let psi0 = sys::psi_some_total_us("cpu");
    let t_all = std::time::Instant::now();
    let mut tmp_builder = tempfile::Builder::new();
    tmp_builder.prefix("vessel-bench-lifecycle-");
    let tmp = match &opts.tmpdir {
        Some(d) => tmp_builder.tempdir_in(d)?,
        None => tmp_builder.tempdir()?,
    };
    let mut cleanup = Cleanup::new();

    if !opts.vessel.is_file() {
        bail!(
            "vessel binary {} not found (build it: cargo build --release -p vessel, or pass --vessel)",
            opts.vessel.display()
        );
    }
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut rts: Vec<Runtime> = Vec::new();
    let vessel = fs::canonicalize(&opts.vessel)?;
    for (name, bin) in [
        ("vessel", Some(vessel)),
        ("crun", crate::which(&opts.crun)),
        ("runc", crate::which(&opts.runc)),
    ] {
        match bin {
            Some(path) => rts.push(Runtime {
                name,
                version: sys::version_of(&path),
                root: tmp.path().join(format!("root-{name}")),
                path,
            }),
            None => {
                let why = format!("binary not found (apt-get install -y {name})");
                println!("skipping {name}: {why}");
                skipped.push((name.to_string(), why));
            }
        }
    }
    if rts.iter().any(|r| r.name == "crun") {
        if let Err(e) = ensure_hugetlb(&mut cleanup) {
            println!("warning: {e:#}; crun may refuse this hybrid cgroup layout");
        }
    }

    let bundle = tmp.path().join("bundle");
    crate::bundle::make_rootfs(&bundle.join("rootfs"))?;
    let config = crate::bundle::vessel_spec(&rts[0].path, &["/bin/true"])?;
    crate::bundle::write_config(&bundle, &config)?;

    {
        let leftovers = rts.clone();
        cleanup.push("delete leftover containers", move || {
            delete_leftovers(&leftovers)
        });
    }

    // One checked run each: a runtime that cannot run the bundle is skipped.
    let mut ok = Vec::new();
    for rt in rts {
        fs::create_dir_all(&rt.root)?;
        match sys::output(&mut run_cmd(&rt, &bundle, &format!("check-{}", rt.name))) {
            Ok(_) => ok.push(rt),
            Err(e) => {
                let why = format!("a check run failed: {e:#}");
                println!("skipping {}: {why}", rt.name);
                skipped.push((rt.name.to_string(), why));
            }
        }
    }
    let rts = ok;
    if rts.is_empty() {
        bail!("no runtime could run the bundle");
    }
    let mut measured: Vec<Measured> = vec![Measured::default(); rts.len()];
    let idx: Vec<usize> = (0..rts.len()).collect();

    // 1. hyperfine, interleaved rounds.
    let hyperfine_bin = crate::which("hyperfine");
    let shares = split_runs(opts.runs, opts.rounds);
    match &hyperfine_bin {
        None => {
            println!("hyperfine not found (apt-get install -y hyperfine): only the wait4 loop runs")
        }
        Some(hf) => {
            for (r, k) in shares.iter().enumerate() {
                for i in rotation(&idx, r) {
                    sys::check_interrupted()?;
                    let rt = &rts[i];
                    println!(
                        "hyperfine round {}/{}: {} x{}",
                        r + 1,
                        shares.len(),
                        rt.name,
                        k
                    );
                    let out = tmp.path().join(format!("hf-{}-{r}.json", rt.name));
                    let cmd = format!(
                        "exec {} --root {} run --bundle {} hf-{}-$$",
                        shell_quote(&rt.path.to_string_lossy()),
                        shell_quote(&rt.root.to_string_lossy()),
                        shell_quote(&bundle.to_string_lossy()),
                        rt.name
                    );
                    sys::output(
                        Command::new(hf)
                            .args(["--style", "none", "--runs", &k.to_string()])
                            .args(["--warmup", &opts.warmup.to_string()])
                            .args(["--command-name", rt.name, "--export-json"])
                            .arg(&out)
                            .arg(&cmd),
                    )
                    .with_context(|| format!("hyperfine for {}", rt.name))?;
                    let res = hyperfine::parse(&fs::read_to_string(&out)?)?;
                    let m = &mut measured[i];
                    m.hf_times_ms.extend(res[0].times.iter().map(|t| t * 1e3));
                    m.hf_cpu_ms_weighted += (res[0].user + res[0].system) * 1e3 * *k as f64;
                    m.hf_runs += k;
                }
            }
        }
    }

    // 2. wait4 loop, runtimes alternating run by run, after 3 warm-ups each.
    println!("wait4 loop: {} runs per runtime, alternating", opts.runs);
    for w in 0..3 {
        for rt in &rts {
            sys::check_interrupted()?;
            sys::run_measured(&mut run_cmd(rt, &bundle, &format!("warm-{}-{w}", rt.name)))?;
        }
    }
    for n in 0..opts.runs {
        for i in rotation(&idx, n) {
            sys::check_interrupted()?;
            let rt = &rts[i];
            let u = sys::run_measured(&mut run_cmd(rt, &bundle, &format!("lp-{}-{n}", rt.name)))
                .with_context(|| format!("{} run {n}", rt.name))?;
            let m = &mut measured[i];
            m.wall_ms.push(u.wall_ms);
            m.cpu_ms.push(u.cpu_ms);
            m.maxrss_kib.push(u.maxrss_kib as f64);
        }
    }
    let load_after = sys::uptime();
    let cpu_pressure_pct = psi0
        .zip(sys::psi_some_total_us("cpu"))
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e4 / t_all.elapsed().as_secs_f64());
    cleanup.run();

    let report = Report::build(&rts, &measured);
    print!("{}", report.table());
    print!("{}", report.ratio_table());
    println!("load before: {load_before}");
    println!("load after:  {load_after}");
    if let Some(p) = cpu_pressure_pct {
        println!("cpu pressure (some) over the run: {p:.0}%");
    }

    let json = json!({
        "suite": "lifecycle",
        "workload": "create + start + wait + delete of /bin/true: <runtime> --root <tmp> run --bundle <busybox bundle> <fresh id>",
        "started": started,
        "kernel": sys::kernel(),
        "uptime_before": load_before,
        "uptime_after": load_after,
        "cpu_pressure_pct": cpu_pressure_pct,
        "runs_per_runtime": opts.runs,
        "hyperfine_rounds": shares,
        "hyperfine_warmup_per_round": opts.warmup,
        "hyperfine": hyperfine_bin.as_ref().map(|p| sys::version_of(p)),
        "runtimes": report.json_runtimes(),
        "ratios": report.json_ratios(),
        "skipped": skipped.iter().map(|(n, w)| json!({"runtime": n, "reason": w})).collect::<Vec<_>>(),
        "units": {"wall": "ms", "cpu": "ms (user + system, wait4 rusage)", "maxrss": "KiB (wait4 ru_maxrss, as /usr/bin/time -f %M)"},
    });
    crate::write_json(&opts.json, &json)?;
    println!("wrote {}", opts.json.display());
    Ok(())
}

/// The summaries of one runtime.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    version: String,
    path: String,
    hf_wall: Option<Summary>,
    hf_cpu_mean: Option<f64>,
    wall: Option<Summary>,
    cpu: Option<Summary>,
    rss: Option<Summary>,
    raw: Measured,
}

/// Named ratios of one runtime pair.
type Metrics = Vec<(&'static str, Option<f64>)>;

/// Summaries of every runtime, for the tables and the JSON.
#[derive(Debug, Clone)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn build(rts: &[Runtime], m: &[Measured]) -> Report {
        let rows = rts
            .iter()
            .zip(m)
            .map(|(rt, m)| Row {
                name: rt.name.to_string(),
                version: rt.version.clone(),
                path: rt.path.display().to_string(),
                hf_wall: Summary::of(&m.hf_times_ms),
                hf_cpu_mean: (m.hf_runs > 0).then(|| m.hf_cpu_ms_weighted / m.hf_runs as f64),
                wall: Summary::of(&m.wall_ms),
                cpu: Summary::of(&m.cpu_ms),
                rss: Summary::of(&m.maxrss_kib),
                raw: m.clone(),
            })
            .collect();
        Report { rows }
    }

    fn table(&self) -> String {
        let mut t = Table::new(&[
            "runtime",
            "hf median",
            "hf min",
            "hf max",
            "hf mean ± sd",
            "loop median",
            "loop min-max",
            "cpu median",
            "rss median MB",
            "rss max MB",
        ]);
        for r in &self.rows {
            t.row(vec![
                r.name.clone(),
                num(r.hf_wall.map(|s| s.median), 1),
                num(r.hf_wall.map(|s| s.min), 1),
                num(r.hf_wall.map(|s| s.max), 1),
                r.hf_wall
                    .map(|s| format!("{:.1} ± {:.1}", s.mean, s.sd))
                    .unwrap_or_else(|| "-".into()),
                num(r.wall.map(|s| s.median), 1),
                r.wall
                    .map(|s| format!("{:.1}-{:.1}", s.min, s.max))
                    .unwrap_or_else(|| "-".into()),
                num(r.cpu.map(|s| s.median), 1),
                num(r.rss.map(|s| s.median / 1024.0), 1),
                num(r.rss.map(|s| s.max / 1024.0), 1),
            ]);
        }
        format!(
            "\nlifecycle of /bin/true, wall and cpu in ms (hf = hyperfine rounds, loop = wait4 loop)\n{}",
            t.render()
        )
    }

    fn get(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// (label, vessel / other) for each metric, per other runtime present.
    fn ratios(&self) -> Vec<(String, Metrics)> {
        let Some(v) = self.get("vessel") else {
            return Vec::new();
        };
        ["crun", "runc"]
            .iter()
            .filter_map(|o| self.get(o).map(|r| (o, r)))
            .map(|(o, r)| {
                let f = |a: Option<Summary>, b: Option<Summary>| {
                    a.zip(b).and_then(|(a, b)| ratio(a.median, b.median))
                };
                (
                    format!("vessel/{o}"),
                    vec![
                        ("hf_wall_median", f(v.hf_wall, r.hf_wall)),
                        ("loop_wall_median", f(v.wall, r.wall)),
                        ("cpu_median", f(v.cpu, r.cpu)),
                        ("rss_median", f(v.rss, r.rss)),
                    ],
                )
            })
            .collect()
    }

    fn ratio_table(&self) -> String {
        let mut t = Table::new(&["ratio", "hf wall", "loop wall", "cpu", "peak rss"]);
        for (label, vals) in self.ratios() {
            let mut row = vec![label];
            row.extend(vals.iter().map(|(_, v)| num(*v, 2)));
            t.row(row);
        }
        format!(
            "\nratios of medians (< 1: vessel is faster / smaller)\n{}",
            t.render()
        )
    }

    fn json_runtimes(&self) -> Value {
        self.rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "version": r.version,
                    "path": r.path,
                    "hyperfine_wall_ms": r.hf_wall,
                    "hyperfine_cpu_ms_mean": r.hf_cpu_mean,
                    "hyperfine_times_ms": r.raw.hf_times_ms,
                    "loop_wall_ms": r.wall,
                    "loop_cpu_ms": r.cpu,
                    "loop_maxrss_kib": r.rss,
                    "loop_samples": {
                        "wall_ms": r.raw.wall_ms,
                        "cpu_ms": r.raw.cpu_ms,
                        "maxrss_kib": r.raw.maxrss_kib,
                    },
                })
            })
            .collect()
    }

    fn json_ratios(&self) -> Value {
        let mut o = serde_json::Map::new();
        for (label, vals) in self.ratios() {
            let m: serde_json::Map<String, Value> = vals
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            o.insert(label, Value::Object(m));
        }
        Value::Object(o)
    }
}

/// Errors out early when not root (the runtimes need it for namespaces).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(anyhow!(
            "run as root: the runtimes need namespaces and cgroups"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_runs_into_rounds() {
        assert_eq!(split_runs(30, 5), vec![6; 5]);
        assert_eq!(split_runs(7, 3), vec![3, 2, 2]);
        assert_eq!(split_runs(2, 5), vec![1, 1]);
        assert_eq!(split_runs(5, 0), vec![5]);
    }

    #[test]
    fn rotates_order() {
        assert_eq!(rotation(&[0, 1, 2], 0), vec![0, 1, 2]);
        assert_eq!(rotation(&[0, 1, 2], 1), vec![1, 2, 0]);
        assert_eq!(rotation(&[0, 1, 2], 5), vec![2, 0, 1]);
        assert!(rotation::<u8>(&[], 1).is_empty());
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn ratio_table_and_json() {
        let rts: Vec<Runtime> = ["vessel", "crun"]
            .iter()
            .map(|n| Runtime {
                name: n,
                path: PathBuf::from(n),
                version: String::new(),
                root: PathBuf::new(),
            })
            .collect();
        let m = vec![
            Measured {
                hf_times_ms: vec![10.0, 12.0],
                hf_cpu_ms_weighted: 8.0,
                hf_runs: 2,
                wall_ms: vec![9.0],
                cpu_ms: vec![3.0],
                maxrss_kib: vec![2048.0],
            },
            Measured {
                hf_times_ms: vec![20.0, 24.0],
                hf_cpu_ms_weighted: 16.0,
                hf_runs: 2,
                wall_ms: vec![18.0],
                cpu_ms: vec![6.0],
                maxrss_kib: vec![4096.0],
            },
        ];
        let r = Report::build(&rts, &m);
        let t = r.ratio_table();
        assert!(t.contains("vessel/crun"), "{t}");
        assert!(t.contains("0.50"), "{t}");
        let j = r.json_ratios();
        assert_eq!(j["vessel/crun"]["hf_wall_median"], 0.5);
        assert!(j.get("vessel/runc").is_none());
        assert!(r.table().contains("11.0"));
        assert_eq!(r.json_runtimes()[0]["hyperfine_cpu_ms_mean"], 4.0);
    }
}
