//! `vessel-bench reliability`: what concurrency and killed commands leave
//! behind, for vessel, runc and crun side by side.
//!
//! Two phases, the runtimes interleaved (vessel, runc, crun, then runc,
//! crun, vessel, ...), each runtime with one `--root` shared by all its
//! containers:
//!
//! 1. **Concurrent lifecycles**: `--concurrency` workers run `--lifecycles`
//!    lifecycles (create, start, state, kill, wait until stopped, delete of
//!    a busybox `sleep`), each with its own id. Failures are counted by the
//!    command that failed and the first line of its error.
//! 2. **Kill injections**: `--kills` per kind, SIGKILL of `create`,
//!    `run --detach` or `delete` (of a stopped container) at a delay drawn
//!    uniformly from 0 to the longest of three unkilled runs of the same
//!    command. Then `state` and `delete --force`, and a look at the host.
//!
//! After every batch the host is searched for what the ids left (see
//! [`leaks`]): ids still reported, state dirs, cgroup dirs in every
//! hierarchy, mounts, processes, files. The counts are the result; then the
//! benchmark removes them itself so the host ends as it was found.

mod hugetlb;
pub mod leaks;
mod runner;
mod tally;

use hugetlb::{restore_hugetlb, unified_has_hugetlb, wait_for_reaping};
use runner::Ctx;
use tally::{Report, Results, Tally};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::lifecycle::{rotation, split_runs};
use crate::sys::{self, Cleanup};

/// Flags of the reliability suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runtimes to run, in interleaving order (vessel, runc, crun).
    pub runtimes: Vec<String>,
    /// The vessel binary.
    pub vessel: PathBuf,
    /// runc binary name or path.
    pub runc: String,
    /// crun binary name or path.
    pub crun: String,
    /// Lifecycles running at once per runtime.
    pub concurrency: usize,
    /// Lifecycles per runtime.
    pub lifecycles: usize,
    /// Kill injections per kind (create, run, delete) per runtime.
    pub kills: usize,
    /// Seed of the kill delays (recorded in the JSON).
    pub seed: u64,
    /// Whether `--quick` chose the sizes (recorded).
    pub quick: bool,
    /// Where to write the JSON results.
    pub json: PathBuf,
    /// Directory for the bundle, state roots and captured output.
    pub tmpdir: Option<PathBuf>,
    /// The command line, for the record.
    pub command: String,
}

/// The commands a kill injection interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `create --bundle B ID`.
    Create,
    /// `run --detach --bundle B ID`.
    Run,
    /// `delete ID` of a stopped container.
    Delete,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 3] = [Kind::Create, Kind::Run, Kind::Delete];

    /// The runtime command killed.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Run => "run",
            Kind::Delete => "delete",
        }
    }
}

/// The steps of one lifecycle, in order.
pub const STEPS: [&str; 6] = ["create", "start", "state", "kill", "wait stopped", "delete"];

/// The workload of every container: long enough never to end by itself.
const WORKLOAD: [&str; 2] = ["sleep", "1000"];
/// Longest any runtime command may take before it counts as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a killed container may take to be reported `stopped`.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Unkilled runs per command that set the range of the kill delay.
const CALIBRATION_RUNS: usize = 3;
/// Examples of leaked items kept per kind in the JSON.
const EXAMPLES: usize = 3;

/// A runtime taking part.
#[derive(Debug, Clone)]
struct Runtime {
    name: String,
    path: PathBuf,
    version: String,
    root: PathBuf,
}

/// A small seeded generator (splitmix64) for the kill delays: the run is
/// reproducible from the seed in the JSON.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    pub fn uniform(&mut self, max: f64) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * max
    }
}

/// A seed from the clock, for runs without `--seed`.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Finds the runtimes asked for; prints why any is skipped.
fn find_runtimes(
    opts: &Options,
    scratch: &Path,
    skipped: &mut Vec<(String, String)>,
) -> Vec<Runtime> {
    let mut rts = Vec::new();
    for name in &opts.runtimes {
        let bin = match name.as_str() {
            "vessel" => opts
                .vessel
                .is_file()
                .then(|| opts.vessel.clone())
                .ok_or_else(|| {
                    format!(
                        "{} not found (make release, or pass --vessel)",
                        opts.vessel.display()
                    )
                }),
            "runc" => crate::which(&opts.runc)
                .ok_or_else(|| format!("{} not found (apt-get install -y runc)", opts.runc)),
            "crun" => crate::which(&opts.crun)
                .ok_or_else(|| format!("{} not found (apt-get install -y crun)", opts.crun)),
            other => Err(format!("unknown runtime {other:?}")),
        };
        match bin.and_then(|p| fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()))) {
            Ok(path) => rts.push(Runtime {
                name: name.clone(),
                version: sys::version_of(&path),
                root: scratch.join(format!("root-{name}")),
                path,
            }),
            Err(why) => {
                println!("skipping {name}: {why}");
                skipped.push((name.clone(), why));
            }
        }
    }
    rts
}

/// Runs the suite, prints a table per runtime and writes the JSON.
pub fn run(opts: &Options) -> Result<()> {
    if opts.lifecycles == 0 && opts.kills == 0 {
        bail!("nothing to do: --lifecycles and --kills are both 0");
    }
    let started = sys::now_utc();
    let t_all = Instant::now();
    let mut tb = tempfile::Builder::new();
    tb.prefix("vessel-bench-reliability-");
    let tmp = match &opts.tmpdir {
        Some(d) => tb.tempdir_in(d)?,
        None => tb.tempdir()?,
    };
    let scratch = fs::canonicalize(tmp.path())?;
    let mut cleanup = Cleanup::new();
    let mut skipped = Vec::new();
    let rts = find_runtimes(opts, &scratch, &mut skipped);
    if rts.is_empty() {
        bail!("no runtime to run (see the reasons above)");
    }
    let prefix = format!("rb{}", std::process::id());
    if rts.iter().any(|r| r.name == "crun") {
        let hugetlb_in_unified = unified_has_hugetlb();
        // Runs after ensure_hugetlb's own undoing (cleanup runs newest first).
        cleanup.push("put hugetlb back into the unified hierarchy", move || {
            if hugetlb_in_unified && !unified_has_hugetlb() {
                restore_hugetlb()?;
                println!("hugetlb outlived its v1 unmount: put it back into the unified hierarchy");
            }
            Ok(())
        });
        // The mount fails with EBUSY while hugetlb's cgroups in the unified
        // hierarchy are still dying after `-hugetlb`: try again a few times
        // (the step above puts hugetlb back whichever attempt worked).
        const ATTEMPTS: u32 = 30;
        for attempt in 1..=ATTEMPTS {
            match crate::lifecycle::ensure_hugetlb(&mut cleanup) {
                Ok(()) => break,
                Err(e) if attempt == ATTEMPTS => {
                    println!("warning: {e:#}; crun may refuse this hybrid cgroup layout")
                }
                Err(_) => {
                    if attempt == 1 {
                        println!(
                            "hugetlb is busy in the unified hierarchy (cgroups of other \
                             containers still hold it): retrying for {ATTEMPTS} s"
                        );
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        let p = prefix.clone();
        // Runs before the unmount: see wait_for_reaping.
        cleanup.push(
            "wait for init to reap the containers' processes",
            move || {
                wait_for_reaping(&p);
                Ok(())
            },
        );
    }
    let ctx = Ctx {
        bundle: scratch.join("bundle"),
        io: scratch.join("io"),
        seq: AtomicU64::new(0),
        prefix,
        scratch: scratch.clone(),
    };
    fs::create_dir_all(&ctx.io)?;
    crate::bundle::make_rootfs(&ctx.bundle.join("rootfs"))?;
    let spec_source = rts
        .iter()
        .find(|r| r.name == "vessel")
        .map(|r| r.path.clone());
    let config = match spec_source {
        Some(v) => crate::bundle::vessel_spec(&v, &WORKLOAD)?,
        None => runc_style_spec(&rts[0])?,
    };
    crate::bundle::write_config(&ctx.bundle, &config)?;

    // One checked lifecycle each: a runtime that cannot run the bundle is
    // skipped with the reason.
    let mut ok = Vec::new();
    for rt in rts {
        fs::create_dir_all(&rt.root)?;
        let id = format!("{}-{}-check", ctx.prefix, rt.name);
        let r = ctx.lifecycle(&rt, &id);
        if r.is_err() {
            let _ = ctx.run(&rt, &["delete", "--force", &id]);
        }
        ctx.post_mortem(&rt, std::slice::from_ref(&id), &mut Tally::default());
        match r {
            Ok(()) => ok.push(rt),
            Err((step, e)) => {
                let why = format!("a check lifecycle failed at {step}: {e}");
                println!("skipping {}: {why}", rt.name);
                skipped.push((rt.name.clone(), why));
            }
        }
    }
    let rts = ok;
    if rts.is_empty() {
        bail!("no runtime could run the bundle");
    }
    let mut results: Vec<Results> = rts
        .iter()
        .map(|_| Results {
            lifecycles: Tally::lifecycles(),
            kills: Kind::ALL
                .iter()
                .map(|k| (k.name(), Tally::injections()))
                .collect(),
            calibration: BTreeMap::new(),
        })
        .collect();
    let measured = measure(opts, &ctx, &rts, &mut results);
    // Whatever an interruption or error left in the roots goes too.
    for rt in &rts {
        let ids: Vec<String> = fs::read_dir(&rt.root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            let _ = ctx.run(rt, &["delete", "--force", id]);
        }
        let found = leaks::find(&ctx.scope(rt), &ids);
        let left = leaks::clean(&ctx.scope(rt), &ids, &found);
        if !left.is_empty() {
            eprintln!("vessel-bench: {}: could not remove {left:?}", rt.name);
        }
    }
    cleanup.run();
    measured?;

    let report = Report {
        rts: &rts,
        results: &results,
    };
    print!("{}", report.tables());
    let params = json!({
        "runtimes_order": rts.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "concurrency": opts.concurrency,
        "lifecycles": opts.lifecycles,
        "kills_per_kind": opts.kills,
        "seed": opts.seed,
        "quick": opts.quick,
        "workload": WORKLOAD,
        "lifecycle": "create, start, state, kill KILL, state until stopped, delete",
        "kill_targets": {
            "create": "create --bundle B ID",
            "run": "run --detach --bundle B ID",
            "delete": "delete ID of a stopped container",
        },
        "kill_delay": "uniform in [0, longest of 3 unkilled runs of the command]",
        "after_kill": "state ID, delete --force ID, then list, state and a search of the host",
        "command_timeout_s": COMMAND_TIMEOUT.as_secs(),
    });
    println!("parameters: {params}");
    println!(
        "kernel {}, started {started}, {:.0}s",
        sys::kernel(),
        t_all.elapsed().as_secs_f64()
    );
    let find_rt = |n: &str| rts.iter().find(|r| r.name == n).map(|r| r.path.clone());
    let vessel_path = find_rt("vessel").unwrap_or_else(|| opts.vessel.clone());
    let json = json!({
        "suite": "reliability",
        "started": started,
        "finished": sys::now_utc(),
        "duration_s": t_all.elapsed().as_secs_f64(),
        "kernel": sys::kernel(),
        "host": crate::report::host_record(&vessel_path, find_rt("runc").as_deref(), find_rt("crun").as_deref()),
        "command": opts.command,
        "parameters": params,
        "runtimes": report.json(),
        "skipped": skipped.iter().map(|(n, w)| json!({"runtime": n, "reason": w})).collect::<Vec<_>>(),
    });
    crate::write_json(&opts.json, &json)?;
    println!("wrote {}", opts.json.display());
    Ok(())
}

/// A config for a run without vessel: `runc spec`'s, with the workload.
fn runc_style_spec(rt: &Runtime) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    sys::output(Command::new(&rt.path).arg("spec").current_dir(dir.path()))
        .with_context(|| format!("{} spec", rt.name))?;
    let mut c: Value = serde_json::from_slice(&fs::read(dir.path().join("config.json"))?)?;
    c["process"]["terminal"] = Value::Bool(false);
    c["process"]["args"] = json!(WORKLOAD);
    Ok(c)
}

/// Both phases, runtimes interleaved.
fn measure(opts: &Options, ctx: &Ctx, rts: &[Runtime], results: &mut [Results]) -> Result<()> {
    let idx: Vec<usize> = (0..rts.len()).collect();
    if opts.lifecycles > 0 {
        let shares = split_runs(opts.lifecycles, 5);
        let mut done = vec![0usize; rts.len()];
        for (r, share) in shares.iter().enumerate() {
            for i in rotation(&idx, r) {
                sys::check_interrupted()?;
                println!(
                    "lifecycles round {}/{}: {} x{share}, {} at once",
                    r + 1,
                    shares.len(),
                    rts[i].name,
                    opts.concurrency
                );
                ctx.lifecycle_batch(
                    &rts[i],
                    done[i],
                    *share,
                    opts.concurrency,
                    &mut results[i].lifecycles,
                );
                done[i] += share;
            }
        }
    }
    if opts.kills == 0 {
        return Ok(());
    }
    let mut max_ms = vec![[0.0f64; 3]; rts.len()];
    for (k, kind) in Kind::ALL.iter().enumerate() {
        for i in rotation(&idx, k) {
            let ms = ctx.calibrate(&rts[i], *kind)?;
            let max = ms.iter().copied().fold(0.0, f64::max);
            println!(
                "calibration: {} {} takes up to {max:.1} ms",
                rts[i].name,
                kind.name()
            );
            max_ms[i][k] = max;
            results[i].calibration.insert(
                kind.name(),
                json!({"unkilled_ms": ms, "delay_range_ms": [0.0, max]}),
            );
        }
    }
    let mut rng = Rng::new(opts.seed);
    for n in 0..opts.kills {
        println!("kill injections round {}/{}", n + 1, opts.kills);
        for (k, kind) in Kind::ALL.iter().enumerate() {
            for i in rotation(&idx, n * Kind::ALL.len() + k) {
                sys::check_interrupted()?;
                let rt = &rts[i];
                let id = format!("{}-{}-{}-{n:04}", ctx.prefix, rt.name, kind.name());
                let delay = Duration::from_secs_f64(rng.uniform(max_ms[i][k]) / 1e3);
                let t = results[i]
                    .kills
                    .get_mut(kind.name())
                    .expect("every kind has a tally");
                ctx.inject(rt, *kind, &id, delay, t);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_uniform() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..1000).map(|_| a.uniform(10.0)).collect();
        assert_eq!(
            xs[..5],
            (0..5).map(|_| b.uniform(10.0)).collect::<Vec<_>>()[..]
        );
        assert!(xs.iter().all(|x| (0.0..10.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 5.0).abs() < 0.5, "{mean}");
    }
}
