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

pub mod leaks;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::lifecycle::{rotation, split_runs};
use crate::sys::{self, Cleanup};
use crate::table::Table;

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

/// Counts of one column of a runtime's table (the lifecycles, or the
/// injections of one kind).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Lifecycles run, or commands killed at a random delay.
    pub runs: u64,
    /// Injections: the command was still running when SIGKILL came.
    pub killed: u64,
    /// Injections: the command had exited before the delay ran out.
    pub finished_first: u64,
    /// Lifecycles: failures by step; injections: `setup` (the container
    /// to delete could not be made).
    pub failures: BTreeMap<String, u64>,
    /// Injections: what `state` said after the kill (`reported`,
    /// `not_found`, `error`).
    pub state_after_kill: BTreeMap<String, u64>,
    /// `delete --force` exited non-zero, other than "does not exist".
    pub force_delete_failed: u64,
    /// Ids `state` or `list` still reported after the delete.
    pub still_reported: u64,
    /// `<root>/<id>` directories left.
    pub leaked_state_dirs: u64,
    /// Cgroup directories left (all hierarchies, nested ones included).
    pub leaked_cgroup_dirs: u64,
    /// Host mountinfo lines naming an id or the bundle.
    pub leaked_mounts: u64,
    /// Processes naming an id (cmdline, cgroup, cwd, open files).
    pub leaked_processes: u64,
    /// Other files named after an id.
    pub leaked_files: u64,
    /// Ids with anything of the above left: containers `delete --force`
    /// could not fully remove.
    pub containers_left: u64,
    /// Items the benchmark's own clean-up could not remove either.
    pub left_after_cleanup: u64,
    /// Error first lines ("command: message") with their counts.
    pub errors: BTreeMap<String, u64>,
    /// A few leaked items of each kind, as found.
    pub examples: BTreeMap<String, Vec<String>>,
}

impl Tally {
    fn lifecycles() -> Tally {
        let mut t = Tally::default();
        for s in STEPS {
            t.failures.insert(s.to_string(), 0);
        }
        t
    }

    fn injections() -> Tally {
        let mut t = Tally::default();
        t.failures.insert("setup".into(), 0);
        for s in ["reported", "not_found", "error"] {
            t.state_after_kill.insert(s.into(), 0);
        }
        t
    }

    fn error(&mut self, what: &str, line: String) {
        *self.errors.entry(format!("{what}: {line}")).or_default() += 1;
    }

    fn fail(&mut self, step: &str) {
        *self.failures.entry(step.to_string()).or_default() += 1;
    }

    fn example(&mut self, kind: &str, items: impl IntoIterator<Item = String>) {
        let v = self.examples.entry(kind.to_string()).or_default();
        for i in items {
            if v.len() < EXAMPLES {
                v.push(i);
            }
        }
    }
}

/// One runtime's results.
#[derive(Debug, Clone, Serialize)]
struct Results {
    lifecycles: Tally,
    kills: BTreeMap<&'static str, Tally>,
    /// Per kind: the unkilled durations (ms) and the delay range drawn from.
    calibration: BTreeMap<&'static str, Value>,
}

/// How one runtime command ended.
#[derive(Debug, Clone)]
struct Done {
    /// Exit code, or 128 + signal.
    code: i32,
    /// Ended by the SIGKILL the caller asked for.
    killed: bool,
    timed_out: bool,
    ms: f64,
    stdout: String,
    stderr: String,
}

impl Done {
    fn ok(&self) -> bool {
        self.code == 0 && !self.timed_out
    }
}

/// The scratch directory and what every command shares.
struct Ctx {
    scratch: PathBuf,
    bundle: PathBuf,
    io: PathBuf,
    seq: AtomicU64,
    /// Prefix of every container id (holds this process' pid, so ids are
    /// unique on a shared host).
    prefix: String,
}

impl Ctx {
    fn cmd(&self, rt: &Runtime, args: &[&str]) -> Command {
        let mut c = Command::new(&rt.path);
        c.arg("--root").arg(&rt.root).args(args);
        c
    }

    fn scope(&self, rt: &Runtime) -> leaks::Scope {
        leaks::Scope {
            root: rt.root.clone(),
            scratch: self.scratch.clone(),
            skip: vec![self.bundle.clone(), self.io.clone()],
        }
    }

    /// Runs `cmd` with output captured in files (a detached container
    /// inherits them, so pipes would never reach EOF), killing it with
    /// SIGKILL after `kill_after` if given, and after `timeout` anyway.
    fn exec(&self, mut cmd: Command, kill_after: Option<Duration>) -> Result<Done> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let (out_p, err_p) = (
            self.io.join(format!("{n}.out")),
            self.io.join(format!("{n}.err")),
        );
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_p)?)
            .stderr(File::create(&err_p)?);
        let start = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let mut sent_kill = false;
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            let now = start.elapsed();
            if kill_after.is_some_and(|k| !sent_kill && now >= k) {
                let _ = child.kill();
                sent_kill = true;
                continue;
            }
            if now >= COMMAND_TIMEOUT && !timed_out {
                let _ = child.kill();
                timed_out = true;
            }
            // Sleep to the kill time when it is near, else a short poll.
            let step = kill_after
                .filter(|_| !sent_kill)
                .map(|k| k.saturating_sub(now))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(1));
            std::thread::sleep(step.max(Duration::from_micros(50)));
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let killed = sent_kill && status.signal() == Some(libc::SIGKILL);
        let read = |p: &Path| {
            let s = fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let _ = fs::remove_file(p);
            s
        };
        Ok(Done {
            code,
            killed,
            timed_out,
            ms,
            stdout: read(&out_p),
            stderr: read(&err_p),
        })
    }

    fn run(&self, rt: &Runtime, args: &[&str]) -> Result<Done> {
        self.exec(self.cmd(rt, args), None)
    }

    /// The first line of a failed command's error, with the id, scratch
    /// path and long numbers (pids, times) replaced so equal errors group.
    fn error_line(&self, d: &Done, id: &str) -> String {
        if d.timed_out {
            return format!("timed out after {}s", COMMAND_TIMEOUT.as_secs());
        }
        normalize_error(&d.stderr, &d.stdout, d.code, id, &self.scratch)
    }

    /// Polls `state` until it says `stopped`.
    fn wait_stopped(&self, rt: &Runtime, id: &str) -> Result<(), String> {
        let end = Instant::now() + STOP_TIMEOUT;
        loop {
            let d = self.run(rt, &["state", id]).map_err(|e| format!("{e:#}"))?;
            if !d.ok() {
                return Err(self.error_line(&d, id));
            }
            match status_of(&d.stdout).as_deref() {
                Some("stopped") => return Ok(()),
                _ if Instant::now() >= end => {
                    return Err(format!(
                        "not stopped after {}s: {}",
                        STOP_TIMEOUT.as_secs(),
                        status_of(&d.stdout).unwrap_or_default()
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// One lifecycle; on failure the failing step and its error line.
    fn lifecycle(&self, rt: &Runtime, id: &str) -> Result<(), (&'static str, String)> {
        let bundle = self.bundle.to_string_lossy().into_owned();
        let step = |name: &'static str, args: &[&str]| -> Result<Done, (&'static str, String)> {
            let d = self.run(rt, args).map_err(|e| (name, format!("{e:#}")))?;
            if d.ok() {
                Ok(d)
            } else {
                Err((name, self.error_line(&d, id)))
            }
        };
        step("create", &["create", "--bundle", &bundle, id])?;
        step("start", &["start", id])?;
        let st = step("state", &["state", id])?;
        match status_of(&st.stdout).as_deref() {
            Some("running") => {}
            s => return Err(("state", format!("status {s:?}, expected running"))),
        }
        step("kill", &["kill", id, "KILL"])?;
        self.wait_stopped(rt, id).map_err(|e| ("wait stopped", e))?;
        step("delete", &["delete", id])?;
        Ok(())
    }

    /// Makes a stopped container to `delete`.
    fn stopped_container(&self, rt: &Runtime, id: &str) -> Result<(), String> {
        let bundle = self.bundle.to_string_lossy().into_owned();
        for args in [
            vec!["create", "--bundle", &bundle, id],
            vec!["start", id],
            vec!["kill", id, "KILL"],
        ] {
            let d = self.run(rt, &args).map_err(|e| format!("{e:#}"))?;
            if !d.ok() {
                return Err(format!("{}: {}", args[0], self.error_line(&d, id)));
            }
        }
        self.wait_stopped(rt, id)
            .map_err(|e| format!("wait stopped: {e}"))
    }

    /// The command an injection kills.
    fn kill_target(&self, rt: &Runtime, kind: Kind, id: &str) -> Command {
        let bundle = self.bundle.to_string_lossy().into_owned();
        match kind {
            Kind::Create => self.cmd(rt, &["create", "--bundle", &bundle, id]),
            Kind::Run => self.cmd(rt, &["run", "--detach", "--bundle", &bundle, id]),
            Kind::Delete => self.cmd(rt, &["delete", id]),
        }
    }

    /// Asks the runtime and the host what `ids` left after their delete,
    /// counts it into `t`, then removes it by the benchmark's own means.
    fn post_mortem(&self, rt: &Runtime, ids: &[String], t: &mut Tally) {
        let listed = match self.run(rt, &["list"]) {
            Ok(d) if d.ok() => d.stdout,
            Ok(d) => {
                t.error("list", self.error_line(&d, ""));
                String::new()
            }
            Err(e) => {
                t.error("list", format!("{e:#}"));
                String::new()
            }
        };
        let mut reported = Vec::new();
        for id in ids {
            let in_list = listed.split_whitespace().any(|w| w == id);
            let by_state = self.run(rt, &["state", id]).is_ok_and(|d| d.ok());
            if in_list || by_state {
                reported.push(id.clone());
            }
        }
        t.still_reported += reported.len() as u64;
        let scope = self.scope(rt);
        let found = leaks::find(&scope, ids);
        t.leaked_state_dirs += found.state_dirs.len() as u64;
        t.leaked_cgroup_dirs += found.cgroup_dirs.len() as u64;
        t.leaked_mounts += found.mounts.len() as u64;
        t.leaked_processes += found.processes.len() as u64;
        t.leaked_files += found.files.len() as u64;
        let shown = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        t.example("state_dirs", shown(&found.state_dirs));
        t.example("cgroup_dirs", shown(&found.cgroup_dirs));
        t.example("mounts", found.mounts.clone());
        t.example(
            "processes",
            found.processes.iter().map(|p| describe_process(*p)),
        );
        t.example("files", shown(&found.files));
        let text = format!("{found:?}");
        t.containers_left += ids
            .iter()
            .filter(|id| reported.contains(id) || text.contains(id.as_str()))
            .count() as u64;
        let residue = leaks::clean(&scope, ids, &found);
        if !residue.is_empty() {
            eprintln!("vessel-bench: {}: could not remove {residue:?}", rt.name);
        }
        t.left_after_cleanup += residue.total() as u64;
    }

    /// One kill injection of `kind` at `delay`, counted into `t`.
    fn inject(&self, rt: &Runtime, kind: Kind, id: &str, delay: Duration, t: &mut Tally) {
        t.runs += 1;
        let ids = [id.to_string()];
        if kind == Kind::Delete {
            if let Err(e) = self.stopped_container(rt, id) {
                t.fail("setup");
                t.error("setup", e);
                let _ = self.run(rt, &["delete", "--force", id]);
                self.post_mortem(rt, &ids, t);
                return;
            }
        }
        match self.exec(self.kill_target(rt, kind, id), Some(delay)) {
            Ok(d) if d.killed => t.killed += 1,
            Ok(d) => {
                t.finished_first += 1;
                if !d.ok() {
                    t.error(kind.name(), self.error_line(&d, id));
                }
            }
            Err(e) => t.error(kind.name(), format!("{e:#}")),
        }
        let state = match self.run(rt, &["state", id]) {
            Ok(d) if d.ok() => "reported",
            Ok(d) => {
                let line = self.error_line(&d, id);
                if is_not_found(&line) {
                    "not_found"
                } else {
                    t.error("state after kill", line);
                    "error"
                }
            }
            Err(e) => {
                t.error("state after kill", format!("{e:#}"));
                "error"
            }
        };
        *t.state_after_kill.entry(state.into()).or_default() += 1;
        match self.run(rt, &["delete", "--force", id]) {
            Ok(d) if d.ok() => {}
            Ok(d) => {
                let line = self.error_line(&d, id);
                if !is_not_found(&line) {
                    t.force_delete_failed += 1;
                    t.error("delete --force", line);
                }
            }
            Err(e) => {
                t.force_delete_failed += 1;
                t.error("delete --force", format!("{e:#}"));
            }
        }
        self.post_mortem(rt, &ids, t);
    }

    /// Unkilled durations (ms) of `kind`'s command; the containers made are
    /// removed (what they leave is not counted here, only removed).
    fn calibrate(&self, rt: &Runtime, kind: Kind) -> Result<Vec<f64>> {
        let mut ms = Vec::new();
        for n in 0..CALIBRATION_RUNS {
            sys::check_interrupted()?;
            let id = format!("{}-{}-cal{}-{n:02}", self.prefix, rt.name, kind.name());
            if kind == Kind::Delete {
                self.stopped_container(rt, &id).map_err(|e| {
                    anyhow::anyhow!("{}: making a container to delete: {e}", rt.name)
                })?;
            }
            let d = self.exec(self.kill_target(rt, kind, &id), None)?;
            let _ = self.run(rt, &["delete", "--force", &id]);
            self.post_mortem(rt, std::slice::from_ref(&id), &mut Tally::default());
            if !d.ok() {
                bail!(
                    "{} {} failed: {}",
                    rt.name,
                    kind.name(),
                    self.error_line(&d, &id)
                );
            }
            ms.push(d.ms);
        }
        Ok(ms)
    }

    /// `n` lifecycles of `rt` on `workers` threads, counted into `t`.
    fn lifecycle_batch(&self, rt: &Runtime, first: usize, n: usize, workers: usize, t: &mut Tally) {
        let next = AtomicUsize::new(0);
        let outcomes: Mutex<Vec<(String, Result<(), (&'static str, String)>)>> =
            Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers.clamp(1, n.max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n || sys::interrupted() {
                        return;
                    }
                    let id = format!("{}-{}-life-{:04}", self.prefix, rt.name, first + i);
                    let r = self.lifecycle(rt, &id);
                    if r.is_err() {
                        let _ = self.run(rt, &["delete", "--force", &id]);
                    }
                    if let Ok(mut o) = outcomes.lock() {
                        o.push((id, r));
                    }
                });
            }
        });
        let outcomes = outcomes.into_inner().unwrap_or_default();
        let ids: Vec<String> = outcomes.iter().map(|(id, _)| id.clone()).collect();
        for (_, r) in outcomes {
            t.runs += 1;
            if let Err((step, line)) = r {
                t.fail(step);
                t.error(step, line);
            }
        }
        self.post_mortem(rt, &ids, t);
    }
}

/// `status` of a `state` JSON.
fn status_of(state_json: &str) -> Option<String> {
    serde_json::from_str::<Value>(state_json)
        .ok()?
        .get("status")?
        .as_str()
        .map(str::to_string)
}

/// Whether an error line says the container does not exist.
pub fn is_not_found(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    ["does not exist", "not exist", "no such file", "not found"]
        .iter()
        .any(|p| l.contains(p))
}

/// The first non-empty line of `stderr` (else `stdout`, else the exit
/// code), without runc's `time=... level=...` prefix, the id as `<id>`, the
/// scratch dir as `<tmp>`, numbers of 3+ digits as `N`, at most 200 chars.
pub fn normalize_error(stderr: &str, stdout: &str, code: i32, id: &str, scratch: &Path) -> String {
    let first = |s: &str| {
        s.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    let Some(mut line) = first(stderr).or_else(|| first(stdout)) else {
        return format!("exit {code}, no message");
    };
    if let Some(i) = line.find("msg=") {
        line = line[i + 4..].trim_matches('"').to_string();
    }
    let scratch = scratch.to_string_lossy();
    if !scratch.is_empty() {
        line = line.replace(scratch.as_ref(), "<tmp>");
    }
    if !id.is_empty() {
        line = line.replace(id, "<id>");
    }
    let mut out = String::with_capacity(line.len());
    let mut digits = String::new();
    for c in line.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.len() >= 3 {
            out.push('N');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out.chars().take(200).collect()
}

fn describe_process(pid: u32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    format!("{pid} {}", cmd.trim())
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
    let hugetlb_in_unified = unified_has_hugetlb();
    if rts.iter().any(|r| r.name == "crun") {
        if let Err(e) = crate::lifecycle::ensure_hugetlb(&mut cleanup) {
            println!("warning: {e:#}; crun may refuse this hybrid cgroup layout");
        }
    }
    let ctx = Ctx {
        bundle: scratch.join("bundle"),
        io: scratch.join("io"),
        seq: AtomicU64::new(0),
        prefix: format!("rb{}", std::process::id()),
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
    wait_for_reaping(&ctx.prefix);
    cleanup.run();
    if hugetlb_in_unified && !unified_has_hugetlb() {
        match restore_hugetlb() {
            Ok(()) => println!(
                "hugetlb was slow to leave its v1 hierarchy: restored it to the unified one"
            ),
            Err(e) => eprintln!("vessel-bench: hugetlb is not back in {UNIFIED_SUBTREE}: {e:#}"),
        }
    }
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

/// Waits (up to a minute) for init to reap the exited container processes
/// of this run: until then their cgroups stay referenced, and crun's
/// hugetlb v1 hierarchy, once unmounted, would linger instead of ending.
fn wait_for_reaping(prefix: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    let mut told = false;
    loop {
        let z = leaks::zombies_naming(prefix);
        if z.is_empty() {
            return;
        }
        if Instant::now() >= end {
            eprintln!(
                "vessel-bench: {} exited container processes still unreaped: {z:?}",
                z.len()
            );
            return;
        }
        if !told {
            println!(
                "waiting for init to reap {} exited container processes",
                z.len()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const UNIFIED_SUBTREE: &str = "/sys/fs/cgroup/unified/cgroup.subtree_control";

fn unified_has_hugetlb() -> bool {
    fs::read_to_string(UNIFIED_SUBTREE).is_ok_and(|s| s.split_whitespace().any(|c| c == "hugetlb"))
}

/// The hierarchy id of hugetlb in /proc/cgroups (0: the unified one).
fn hugetlb_hierarchy() -> Option<u32> {
    fs::read_to_string("/proc/cgroups")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"hugetlb")).then(|| f.get(1)?.parse().ok())?
        })
}

/// Ends a hugetlb v1 hierarchy left alive after its unmount (it had child
/// cgroups then): mounting it again and unmounting it now that it has none
/// ends it; then hugetlb goes back into the unified hierarchy.
fn restore_hugetlb() -> Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    if mountinfo
        .lines()
        .any(|l| l.contains(" - cgroup ") && l.split([' ', ',']).any(|w| w == "hugetlb"))
    {
        bail!("a hugetlb v1 hierarchy is mounted (by someone else?): left alone");
    }
    if hugetlb_hierarchy().is_some_and(|h| h != 0) {
        let dir = tempfile::Builder::new()
            .prefix("vessel-bench-hugetlb-")
            .tempdir()?;
        let point = dir.path().to_string_lossy().into_owned();
        sys::output(
            Command::new("mount").args(["-t", "cgroup", "-o", "hugetlb", "cgroup", &point]),
        )?;
        sys::output(Command::new("umount").arg(&point))?;
        let end = Instant::now() + Duration::from_secs(5);
        while hugetlb_hierarchy().is_some_and(|h| h != 0) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fs::write(UNIFIED_SUBTREE, "+hugetlb")
        .with_context(|| format!("writing +hugetlb to {UNIFIED_SUBTREE}"))
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

/// The tables and JSON of every runtime.
struct Report<'a> {
    rts: &'a [Runtime],
    results: &'a [Results],
}

impl Report<'_> {
    fn tables(&self) -> String {
        let mut s = String::new();
        for (rt, r) in self.rts.iter().zip(self.results) {
            s.push_str(&format!("\n{} ({})\n", rt.name, rt.version));
            s.push_str(&table(r).render());
            let mut errors: Vec<(String, u64)> = Vec::new();
            errors.extend(
                r.lifecycles
                    .errors
                    .iter()
                    .map(|(e, n)| (format!("lifecycles: {e}"), *n)),
            );
            for (k, t) in &r.kills {
                errors.extend(t.errors.iter().map(|(e, n)| (format!("kill {k}: {e}"), *n)));
            }
            if !errors.is_empty() {
                s.push_str("errors (first line, count):\n");
                for (e, n) in errors {
                    s.push_str(&format!("  {n:>4}  {e}\n"));
                }
            }
        }
        s
    }

    fn json(&self) -> Value {
        self.rts
            .iter()
            .zip(self.results)
            .map(|(rt, r)| {
                json!({
                    "name": rt.name,
                    "path": rt.path,
                    "version": rt.version,
                    "lifecycles": r.lifecycles,
                    "kills": r.kills,
                    "calibration": r.calibration,
                })
            })
            .collect()
    }
}

/// One runtime's table: rows are outcomes, failures and leaks; columns the
/// lifecycles and the three kinds of kill injection.
fn table(r: &Results) -> Table {
    let mut header = vec!["".to_string(), "lifecycles".to_string()];
    header.extend(Kind::ALL.iter().map(|k| format!("kill {}", k.name())));
    let mut t = Table::new(&header);
    let cols: Vec<&Tally> = std::iter::once(&r.lifecycles)
        .chain(Kind::ALL.iter().filter_map(|k| r.kills.get(k.name())))
        .collect();
    let dash = || "-".to_string();
    let mut row = |label: &str, f: &dyn Fn(usize, &Tally) -> Option<u64>| {
        let mut cells = vec![label.to_string()];
        cells.extend(
            cols.iter()
                .enumerate()
                .map(|(c, x)| f(c, x).map_or_else(dash, |v| v.to_string())),
        );
        t.row(cells);
    };
    let kill = |v: fn(&Tally) -> u64| move |c: usize, x: &Tally| (c > 0).then(|| v(x));
    let all = |v: fn(&Tally) -> u64| move |_: usize, x: &Tally| Some(v(x));
    row("runs", &all(|x| x.runs));
    row("killed mid-command", &kill(|x| x.killed));
    row("finished before the kill", &kill(|x| x.finished_first));
    for s in STEPS {
        row(&format!("failed: {s}"), &move |c: usize, x: &Tally| {
            (c == 0).then(|| x.failures.get(s).copied().unwrap_or(0))
        });
    }
    row(
        "setup failed",
        &kill(|x| x.failures.get("setup").copied().unwrap_or(0)),
    );
    for (label, key) in [
        ("state after kill: reported", "reported"),
        ("state after kill: not found", "not_found"),
        ("state after kill: other error", "error"),
    ] {
        row(label, &move |c: usize, x: &Tally| {
            (c > 0).then(|| x.state_after_kill.get(key).copied().unwrap_or(0))
        });
    }
    row("delete --force failed", &kill(|x| x.force_delete_failed));
    row("still reported after delete", &all(|x| x.still_reported));
    row("leaked state dirs", &all(|x| x.leaked_state_dirs));
    row("leaked cgroup dirs", &all(|x| x.leaked_cgroup_dirs));
    row("leaked mounts", &all(|x| x.leaked_mounts));
    row("leaked processes", &all(|x| x.leaked_processes));
    row("leaked files", &all(|x| x.leaked_files));
    row("containers left behind", &all(|x| x.containers_left));
    row(
        "left after the bench's clean-up",
        &all(|x| x.left_after_cleanup),
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_group() {
        let s = Path::new("/tmp/vessel-bench-reliability-x");
        assert_eq!(
            normalize_error(
                "time=\"2026-12-06T21:24:35Z\" level=error msg=\"container rb1-x does not exist\"\n",
                "",
                1,
                "rb1-x",
                s
            ),
            "container <id> does not exist"
        );
        assert_eq!(
            normalize_error(
                "\nvessel: /tmp/vessel-bench-reliability-x/root/c1: pid 123456 is creating\nmore",
                "",
                1,
                "c1",
                s
            ),
            "vessel: <tmp>/root/<id>: pid N is creating"
        );
        assert_eq!(
            normalize_error("", "", 137, "rb1-a", s),
            "exit 137, no message"
        );
    }

    #[test]
    fn not_found_errors() {
        assert!(is_not_found("container <id> does not exist"));
        assert!(is_not_found(
            "error opening file `<tmp>/root/<id>/status`: No such file or directory"
        ));
        assert!(!is_not_found(
            "vessel: <id> is creating: still being created"
        ));
    }

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

    #[test]
    fn table_has_a_row_per_outcome() {
        let mut r = Results {
            lifecycles: Tally::lifecycles(),
            kills: Kind::ALL
                .iter()
                .map(|k| (k.name(), Tally::injections()))
                .collect(),
            calibration: BTreeMap::new(),
        };
        r.lifecycles.runs = 50;
        r.lifecycles.fail("start");
        let t = r.kills.get_mut("create").unwrap();
        t.runs = 30;
        t.leaked_cgroup_dirs = 9;
        let text = table(&r).render();
        assert!(text.contains("kill create"), "{text}");
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in\n{text}"))
                .split_whitespace()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("runs"), ["0", "0", "30", "50"]);
        assert_eq!(line("failed: start"), ["-", "-", "-", "1"]);
        assert_eq!(line("leaked cgroup dirs"), ["0", "0", "9", "0"]);
    }
}
