//! `vessel-bench lifecycle`: `run` of `/bin/true` (create + start + wait +
//! delete) for vessel, crun and runc, side by side in one run on one bundle.
//!
//! Each run is `<runtime> --root <tmp> run --bundle <bundle> <fresh id>`,
//! started by `vessel-bench-launcher` (a small forking helper, see its
//! header) that reports wall time, CPU time (user + system of the runtime's
//! process tree from wait4) and peak RSS (`ru_maxrss`, with the launcher's
//! own floor measured and printed). The runtimes interleave run by run,
//! the order rotating every round (ABC, BCA, CAB, ...), so slow phases of a
//! noisy machine hit every runtime alike. A second, shorter loop runs
//! `sleep 1` containers and reads the runtime process's RSS and PSS from
//! /proc/PID/smaps_rollup while it waits (what an idle container costs).
//!
//! The whole suite runs in a private mount namespace of its own (`/`
//! made a slave, so nothing propagates to the host); `--mounts N` adds N
//! tmpfs mounts there to show how each runtime's cost grows with the
//! mount table.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::stats::{ratio, Summary};
use crate::sys::{self, Cleanup};
use crate::table::{num, Table};

/// Flags of the lifecycle suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured runs per runtime.
    pub runs: usize,
    /// Unmeasured warm-up rounds before them.
    pub warmup: usize,
    /// Idle-container runs per runtime (RSS/PSS while `sleep 1` runs).
    pub idle_runs: usize,
    /// The vessel binary.
    pub vessel: PathBuf,
    /// Further vessel builds to compare, as (name, binary).
    pub also: Vec<(String, PathBuf)>,
    /// crun binary name or path.
    pub crun: String,
    /// runc binary name or path.
    pub runc: String,
    /// Extra mounts made in the suite's private mount namespace.
    pub mounts: usize,
    /// The launcher binary.
    pub launcher: PathBuf,
    /// Where to write the JSON results.
    pub json: PathBuf,
    /// Directory for the bundle and state roots.
    pub tmpdir: Option<PathBuf>,
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

/// Parses `NAME=PATH` of `--also`.
pub fn parse_also(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("--also {s:?}: expected NAME=PATH"))?;
    if name.is_empty() || path.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!(
            "--also {s:?}: expected NAME=PATH (name without spaces)"
        ));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// Which runtime a binary is (vessel builds are compared to the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vessel,
    Crun,
    Runc,
}

/// A runtime taking part.
#[derive(Debug, Clone)]
struct Runtime {
    name: String,
    kind: Kind,
    path: PathBuf,
    version: String,
    root: PathBuf,
}

/// What was measured for one runtime.
#[derive(Debug, Clone, Default)]
struct Measured {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    maxrss_kib: Vec<f64>,
    idle_rss_kib: Vec<f64>,
    idle_pss_kib: Vec<f64>,
}

/// One launcher result.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Launch {
    /// Exit code, or 128 + signal.
    pub status: i32,
    /// Wall time from fork to reaping, ms.
    pub wall_ms: f64,
    /// User + system CPU of the process tree, ms.
    pub cpu_ms: f64,
    /// ru_maxrss, KiB.
    pub maxrss_kib: u64,
    /// RSS and PSS of the runtime process while it ran, KiB (when sampled).
    pub sampled: Option<(u64, u64)>,
}

/// Parses the launcher's `key=value` line.
pub fn parse_launch(line: &str) -> Result<Launch> {
    let mut l = Launch::default();
    let (mut rss, mut pss) = (None, None);
    let mut seen = 0;
    for kv in line.split_whitespace() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("launcher output {line:?}: {kv:?} is not key=value"))?;
        let n: i64 = v
            .parse()
            .with_context(|| format!("launcher output {line:?}: {k} is not a number"))?;
        match k {
            "status" => l.status = n as i32,
            "wall_us" => l.wall_ms = n as f64 / 1e3,
            "utime_us" | "stime_us" => l.cpu_ms += n as f64 / 1e3,
            "maxrss_kib" => l.maxrss_kib = n as u64,
            "rss_kib" => rss = Some(n as u64),
            "pss_kib" => pss = Some(n as u64),
            _ => continue,
        }
        seen += 1;
    }
    if seen < 5 {
        bail!("launcher output {line:?} lacks fields");
    }
    l.sampled = rss.zip(pss);
    Ok(l)
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
            // The kernel frees an unmounted v1 hierarchy asynchronously
            // (measured here: 1-2 minutes after the containers that saw
            // the mount are gone); until then the controller cannot move
            // back (ENOENT).
            let start = std::time::Instant::now();
            let mut told = false;
            loop {
                match fs::write(UNIFIED_SUBTREE, "+hugetlb") {
                    Ok(()) => break,
                    Err(_) if start.elapsed() < std::time::Duration::from_secs(300) => {
                        if !told && start.elapsed() > std::time::Duration::from_secs(2) {
                            println!("waiting for the kernel to free the v1 hugetlb hierarchy to give hugetlb back to {UNIFIED_SUBTREE} (up to 5 min)");
                            told = true;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => {
                        return Err(anyhow!(e))
                            .with_context(|| format!("restoring +hugetlb in {UNIFIED_SUBTREE}"))
                    }
                }
            }
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

/// Moves this process into a mount namespace of its own whose `/` is a
/// slave of the host's: mounts made here (the extra ones, crun's hugetlb)
/// never reach the host, and every runtime runs under the same conditions.
fn private_mount_ns() -> Result<()> {
    // SAFETY: plain syscalls with no pointers but the static "/" string.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(anyhow!(
                "unshare(CLONE_NEWNS): {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(anyhow!(
                "making / a slave in the benchmark's mount namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn mount_tmpfs(target: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let t = std::ffi::CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: every pointer is a live NUL-terminated string or null.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            t.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=64k".as_ptr().cast(),
        )
    };
    if rc != 0 {
        bail!(
            "mounting tmpfs on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Mounts a tmpfs on `dir` and `n` more below it (all in the private
/// namespace); the cleanup detaches the whole tree in one call.
fn add_mounts(dir: &Path, n: usize, cleanup: &mut Cleanup) -> Result<()> {
    fs::create_dir_all(dir)?;
    mount_tmpfs(dir)?;
    let top = dir.to_path_buf();
    cleanup.push("detach the extra mounts", move || {
        use std::os::unix::ffi::OsStrExt;
        let t = std::ffi::CString::new(top.as_os_str().as_bytes())?;
        // SAFETY: `t` is a live NUL-terminated path.
        if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
            bail!(
                "detaching {}: {}",
                top.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    });
    for i in 0..n {
        let d = dir.join(format!("m{i}"));
        fs::create_dir(&d)?;
        mount_tmpfs(&d)?;
    }
    Ok(())
}

/// Lines of /proc/self/mountinfo: the mount table every runtime sees.
fn mount_count() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The runtime's `run` command for one container.
fn run_args(rt: &Runtime, bundle: &Path, id: &str) -> Vec<std::ffi::OsString> {
    vec![
        rt.path.clone().into(),
        "--root".into(),
        rt.root.clone().into(),
        "run".into(),
        "--bundle".into(),
        bundle.into(),
        id.into(),
    ]
}

/// Runs `args` under the launcher; fails when it or the runtime fails.
fn launch(
    launcher: &Path,
    sample_after_ms: Option<u64>,
    args: &[std::ffi::OsString],
) -> Result<Launch> {
    let mut cmd = Command::new(launcher);
    if let Some(ms) = sample_after_ms {
        cmd.args(["--sample-after-ms", &ms.to_string()]);
    }
    let out = cmd
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", launcher.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{:?}: launcher failed: {}", args, stderr.trim());
    }
    let l = parse_launch(stdout.trim())?;
    if l.status != 0 {
        bail!("{:?} exited with {}: {}", args, l.status, stderr.trim());
    }
    Ok(l)
}

/// The launcher's RSS floor (KiB): what ru_maxrss reads for a child that
/// does nothing.
fn launcher_floor(launcher: &Path) -> Result<u64> {
    let out = sys::output(Command::new(launcher).arg("--floor"))?;
    out.trim()
        .strip_prefix("maxrss_kib=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("launcher --floor printed {out:?}"))
}

/// Writes a bundle running `args` (its own busybox rootfs).
fn make_bundle(dir: &Path, vessel: &Path, args: &[&str]) -> Result<()> {
    crate::bundle::make_rootfs(&dir.join("rootfs"))?;
    let config = crate::bundle::vessel_spec(vessel, args)?;
    crate::bundle::write_config(dir, &config)
}

/// Runs the suite, prints the table and writes the JSON.
pub fn run(opts: &Options) -> Result<()> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !opts.launcher.is_file() {
        bail!(
            "launcher {} not found (build it: cargo build --release -p vessel-bench)",
            opts.launcher.display()
        );
    }
    private_mount_ns()?;
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
    let result = measure(opts, tmp.path(), &mut cleanup);
    cleanup.run();
    let (rts, measured, skipped, floor, mounts_seen) = result?;
    let load_after = sys::uptime();
    let cpu_pressure_pct = psi0
        .zip(sys::psi_some_total_us("cpu"))
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e4 / t_all.elapsed().as_secs_f64());

    let report = Report::build(&rts, &measured);
    print!("{}", report.table());
    print!("{}", report.ratio_table());
    println!(
        "mount table: {mounts_seen} entries ({} extra); launcher RSS floor: {floor} KiB",
        opts.mounts
    );
    println!("load before: {load_before}");
    println!("load after:  {load_after}");
    if let Some(p) = cpu_pressure_pct {
        println!("cpu pressure (some) over the run: {p:.0}%");
    }

    let json = json!({
        "suite": "lifecycle",
        "workload": "<runtime> --root <tmp> run --bundle <busybox bundle> <fresh id> of /bin/true; idle: of sleep 1, sampled at 500 ms",
        "started": started,
        "kernel": sys::kernel(),
        "uptime_before": load_before,
        "uptime_after": load_after,
        "cpu_pressure_pct": cpu_pressure_pct,
        "runs_per_runtime": opts.runs,
        "warmup_rounds": opts.warmup,
        "idle_runs_per_runtime": opts.idle_runs,
        "order": "interleaved: runtimes rotate every round (ABC, BCA, CAB, ...)",
        "extra_mounts": opts.mounts,
        "mountinfo_entries": mounts_seen,
        "launcher_rss_floor_kib": floor,
        "runtimes": report.json_runtimes(),
        "ratios": report.json_ratios(),
        "skipped": skipped.iter().map(|(n, w)| json!({"runtime": n, "reason": w})).collect::<Vec<_>>(),
        "units": {
            "wall": "ms, fork to wait4 in the launcher",
            "cpu": "ms, user + system of the runtime's process tree (wait4 rusage)",
            "maxrss": "KiB, wait4 ru_maxrss of the runtime's process tree, launched from a small forking launcher",
            "idle": "KiB, Rss and Pss of the runtime's `run` process from /proc/PID/smaps_rollup while its container sleeps",
        },
    });
    crate::write_json(&opts.json, &json)?;
    println!("wrote {}", opts.json.display());
    Ok(())
}

type Measurement = (
    Vec<Runtime>,
    Vec<Measured>,
    Vec<(String, String)>,
    u64,
    usize,
);

fn measure(opts: &Options, tmp: &Path, cleanup: &mut Cleanup) -> Result<Measurement> {
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut candidates: Vec<(String, Kind, Option<PathBuf>)> = Vec::new();
    if !opts.vessel.is_file() {
        bail!(
            "vessel binary {} not found (build it: make release, or pass --vessel)",
            opts.vessel.display()
        );
    }
    candidates.push(("vessel".into(), Kind::Vessel, Some(opts.vessel.clone())));
    for (name, path) in &opts.also {
        if !path.is_file() {
            bail!("--also {name}: {} is not a file", path.display());
        }
        candidates.push((name.clone(), Kind::Vessel, Some(path.clone())));
    }
    candidates.push(("crun".into(), Kind::Crun, crate::which(&opts.crun)));
    candidates.push(("runc".into(), Kind::Runc, crate::which(&opts.runc)));
    let mut rts: Vec<Runtime> = Vec::new();
    for (name, kind, bin) in candidates {
        match bin {
            Some(path) => rts.push(Runtime {
                version: sys::version_of(&path),
                root: tmp.join(format!("root-{name}")),
                path: fs::canonicalize(&path)?,
                name,
                kind,
            }),
            None => {
                let why = format!("binary not found (apt-get install -y {name})");
                println!("skipping {name}: {why}");
                skipped.push((name, why));
            }
        }
    }
    if rts.iter().any(|r| r.kind == Kind::Crun) {
        if let Err(e) = ensure_hugetlb(cleanup) {
            println!("warning: {e:#}; crun may refuse this hybrid cgroup layout");
        }
    }
    add_mounts(&tmp.join("mounts"), opts.mounts, cleanup)?;
    let mounts_seen = mount_count();
    let floor = launcher_floor(&opts.launcher)?;

    let bundle = tmp.join("bundle");
    make_bundle(&bundle, &rts[0].path, &["/bin/true"])?;
    let idle_bundle = tmp.join("bundle-idle");
    if opts.idle_runs > 0 {
        make_bundle(&idle_bundle, &rts[0].path, &["/bin/sleep", "1"])?;
    }
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
        let args = run_args(&rt, &bundle, &format!("check-{}", rt.name));
        match launch(&opts.launcher, None, &args) {
            Ok(_) => ok.push(rt),
            Err(e) => {
                let why = format!("a check run failed: {e:#}");
                println!("skipping {}: {why}", rt.name);
                skipped.push((rt.name.clone(), why));
            }
        }
    }
    let rts = ok;
    if rts.is_empty() {
        bail!("no runtime could run the bundle");
    }
    let mut measured: Vec<Measured> = vec![Measured::default(); rts.len()];
    let idx: Vec<usize> = (0..rts.len()).collect();

    println!(
        "{} warm-up rounds, then {} rounds of one run per runtime, order rotating",
        opts.warmup, opts.runs
    );
    for w in 0..opts.warmup {
        for i in rotation(&idx, w) {
            sys::check_interrupted()?;
            let rt = &rts[i];
            launch(
                &opts.launcher,
                None,
                &run_args(rt, &bundle, &format!("warm-{}-{w}", rt.name)),
            )?;
        }
    }
    for n in 0..opts.runs {
        for i in rotation(&idx, n) {
            sys::check_interrupted()?;
            let rt = &rts[i];
            let args = run_args(rt, &bundle, &format!("lp-{}-{n}", rt.name));
            let u = launch(&opts.launcher, None, &args)
                .with_context(|| format!("{} run {n}", rt.name))?;
            let m = &mut measured[i];
            m.wall_ms.push(u.wall_ms);
            m.cpu_ms.push(u.cpu_ms);
            m.maxrss_kib.push(u.maxrss_kib as f64);
        }
    }
    if opts.idle_runs > 0 {
        println!(
            "idle: {} rounds of `sleep 1` containers, RSS/PSS of the runtime at 500 ms",
            opts.idle_runs
        );
    }
    for n in 0..opts.idle_runs {
        for i in rotation(&idx, n) {
            sys::check_interrupted()?;
            let rt = &rts[i];
            let args = run_args(rt, &idle_bundle, &format!("idle-{}-{n}", rt.name));
            let u = launch(&opts.launcher, Some(500), &args)
                .with_context(|| format!("{} idle run {n}", rt.name))?;
            let (rss, pss) = u
                .sampled
                .ok_or_else(|| anyhow!("{}: the launcher sampled no RSS", rt.name))?;
            measured[i].idle_rss_kib.push(rss as f64);
            measured[i].idle_pss_kib.push(pss as f64);
        }
    }
    Ok((rts, measured, skipped, floor, mounts_seen))
}

/// The summaries of one runtime.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    kind: Kind,
    version: String,
    path: String,
    wall: Option<Summary>,
    cpu: Option<Summary>,
    rss: Option<Summary>,
    idle_rss: Option<Summary>,
    idle_pss: Option<Summary>,
    raw: Measured,
}

/// Named ratios of one runtime pair.
type Metrics = Vec<(&'static str, Option<f64>)>;

/// Summaries of every runtime, for the tables and the JSON.
#[derive(Debug, Clone)]
struct Report {
    rows: Vec<Row>,
}

fn range(s: Option<Summary>, digits: usize) -> String {
    s.map(|s| format!("{:.*}-{:.*}", digits, s.min, digits, s.max))
        .unwrap_or_else(|| "-".into())
}

impl Report {
    fn build(rts: &[Runtime], m: &[Measured]) -> Report {
        let rows = rts
            .iter()
            .zip(m)
            .map(|(rt, m)| Row {
                name: rt.name.clone(),
                kind: rt.kind,
                version: rt.version.clone(),
                path: rt.path.display().to_string(),
                wall: Summary::of(&m.wall_ms),
                cpu: Summary::of(&m.cpu_ms),
                rss: Summary::of(&m.maxrss_kib),
                idle_rss: Summary::of(&m.idle_rss_kib),
                idle_pss: Summary::of(&m.idle_pss_kib),
                raw: m.clone(),
            })
            .collect();
        Report { rows }
    }

    fn table(&self) -> String {
        let mut t = Table::new(&[
            "runtime",
            "cpu ms median",
            "cpu range",
            "wall ms median",
            "wall range",
            "peak rss KiB median",
            "rss range",
            "idle rss / pss KiB",
        ]);
        for r in &self.rows {
            t.row(vec![
                r.name.clone(),
                num(r.cpu.map(|s| s.median), 2),
                range(r.cpu, 2),
                num(r.wall.map(|s| s.median), 2),
                range(r.wall, 1),
                num(r.rss.map(|s| s.median), 0),
                range(r.rss, 0),
                format!(
                    "{} / {}",
                    num(r.idle_rss.map(|s| s.median), 0),
                    num(r.idle_pss.map(|s| s.median), 0)
                ),
            ]);
        }
        format!(
            "\nlifecycle (`run` of /bin/true), runtimes interleaved; medians and min-max\n{}",
            t.render()
        )
    }

    /// (label, metrics) of every vessel build against every other runtime.
    fn ratios(&self) -> Vec<(String, Metrics)> {
        let f = |a: Option<Summary>, b: Option<Summary>| {
            a.zip(b).and_then(|(a, b)| ratio(a.median, b.median))
        };
        let mut out = Vec::new();
        for v in self.rows.iter().filter(|r| r.kind == Kind::Vessel) {
            for o in self.rows.iter().filter(|o| o.name != v.name) {
                // Vessel builds compare to each other once (later to first).
                if o.kind == Kind::Vessel && o.name != "vessel" {
                    continue;
                }
                out.push((
                    format!("{}/{}", v.name, o.name),
                    vec![
                        ("cpu_median", f(v.cpu, o.cpu)),
                        ("wall_median", f(v.wall, o.wall)),
                        ("maxrss_median", f(v.rss, o.rss)),
                        ("idle_rss_median", f(v.idle_rss, o.idle_rss)),
                        ("idle_pss_median", f(v.idle_pss, o.idle_pss)),
                    ],
                ));
            }
        }
        out
    }

    fn ratio_table(&self) -> String {
        let mut t = Table::new(&["ratio", "cpu", "wall", "peak rss", "idle rss", "idle pss"]);
        for (label, vals) in self.ratios() {
            let mut row = vec![label];
            row.extend(vals.iter().map(|(_, v)| num(*v, 2)));
            t.row(row);
        }
        format!(
            "\nratios of medians (< 1: the first is cheaper)\n{}",
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
                    "cpu_ms": r.cpu,
                    "wall_ms": r.wall,
                    "maxrss_kib": r.rss,
                    "idle_rss_kib": r.idle_rss,
                    "idle_pss_kib": r.idle_pss,
                    "samples": {
                        "cpu_ms": r.raw.cpu_ms,
                        "wall_ms": r.raw.wall_ms,
                        "maxrss_kib": r.raw.maxrss_kib,
                        "idle_rss_kib": r.raw.idle_rss_kib,
                        "idle_pss_kib": r.raw.idle_pss_kib,
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
    fn parses_launcher_lines() {
        let l = parse_launch(
            "status=0 wall_us=12500 utime_us=3000 stime_us=4500 maxrss_kib=3336 rss_kib=3000 pss_kib=1500",
        )
        .unwrap();
        assert_eq!(l.status, 0);
        assert!((l.wall_ms - 12.5).abs() < 1e-9);
        assert!((l.cpu_ms - 7.5).abs() < 1e-9);
        assert_eq!(l.maxrss_kib, 3336);
        assert_eq!(l.sampled, Some((3000, 1500)));
        assert!(parse_launch("status=0 wall_us=1").is_err());
        assert!(parse_launch("status=0 wall_us=x utime_us=1 stime_us=1 maxrss_kib=1").is_err());
    }

    #[test]
    fn parses_also() {
        assert_eq!(
            parse_also("old=/tmp/v").unwrap(),
            ("old".to_string(), PathBuf::from("/tmp/v"))
        );
        assert!(parse_also("old").is_err());
        assert!(parse_also("=/x").is_err());
    }

    #[test]
    fn ratio_table_and_json() {
        let rts: Vec<Runtime> = [
            ("vessel", Kind::Vessel),
            ("vessel-old", Kind::Vessel),
            ("crun", Kind::Crun),
        ]
        .iter()
        .map(|(n, k)| Runtime {
            name: n.to_string(),
            kind: *k,
            path: PathBuf::from(n),
            version: String::new(),
            root: PathBuf::new(),
        })
        .collect();
        let m = |cpu: f64, rss: f64| Measured {
            wall_ms: vec![cpu * 2.0],
            cpu_ms: vec![cpu, cpu],
            maxrss_kib: vec![rss],
            idle_rss_kib: vec![rss],
            idle_pss_kib: vec![rss / 2.0],
        };
        let r = Report::build(&rts, &[m(3.0, 2048.0), m(6.0, 4096.0), m(6.0, 4096.0)]);
        let t = r.ratio_table();
        assert!(t.contains("vessel/crun"), "{t}");
        assert!(t.contains("vessel-old/vessel"), "{t}");
        assert!(!t.contains("vessel/vessel-old"), "{t}");
        assert!(t.contains("0.50"), "{t}");
        let j = r.json_ratios();
        assert_eq!(j["vessel/crun"]["cpu_median"], 0.5);
        assert_eq!(j["vessel-old/vessel"]["maxrss_median"], 2.0);
        assert!(j.get("vessel/runc").is_none());
        assert!(r.table().contains("2048 / 1024"), "{}", r.table());
        assert_eq!(r.json_runtimes()[0]["cpu_ms"]["median"], 3.0);
    }
}
