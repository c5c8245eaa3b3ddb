//! Runtime commands: captured, timed, killed on request; the lifecycle,
//! the kill injection and the post-mortem each runtime goes through.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::tally::Tally;
use super::{leaks, Kind, Runtime, CALIBRATION_RUNS, COMMAND_TIMEOUT, STOP_TIMEOUT};
use crate::sys;

/// How one runtime command ended.
#[derive(Debug, Clone)]
pub(super) struct Done {
    /// Exit code, or 128 + signal.
    pub(super) code: i32,
    /// Ended by the SIGKILL the caller asked for.
    pub(super) killed: bool,
    pub(super) timed_out: bool,
    pub(super) ms: f64,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Done {
    pub(super) fn ok(&self) -> bool {
        self.code == 0 && !self.timed_out
    }
}

/// How one lifecycle ended: on failure, the step and its error line.
pub(super) type LifecycleResult = Result<(), (&'static str, String)>;

/// The scratch directory and what every command shares.
pub(super) struct Ctx {
    pub(super) scratch: PathBuf,
    pub(super) bundle: PathBuf,
    pub(super) io: PathBuf,
    pub(super) seq: AtomicU64,
    /// Prefix of every container id (holds this process' pid, so ids are
    /// unique on a shared host).
    pub(super) prefix: String,
}

impl Ctx {
    pub(super) fn cmd(&self, rt: &Runtime, args: &[&str]) -> Command {
        let mut c = Command::new(&rt.path);
        c.arg("--root").arg(&rt.root).args(args);
        c
    }

    pub(super) fn scope(&self, rt: &Runtime) -> leaks::Scope {
        leaks::Scope {
            root: rt.root.clone(),
            scratch: self.scratch.clone(),
            skip: vec![self.bundle.clone(), self.io.clone()],
        }
    }

    /// Runs `cmd` with output captured in files (a detached container
    /// inherits them, so pipes would never reach EOF), killing it with
    /// SIGKILL after `kill_after` if given, and after `timeout` anyway.
    pub(super) fn exec(&self, mut cmd: Command, kill_after: Option<Duration>) -> Result<Done> {
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

    pub(super) fn run(&self, rt: &Runtime, args: &[&str]) -> Result<Done> {
        self.exec(self.cmd(rt, args), None)
    }

    /// The first line of a failed command's error, with the id, scratch
    /// path and long numbers (pids, times) replaced so equal errors group.
    pub(super) fn error_line(&self, d: &Done, id: &str) -> String {
        if d.timed_out {
            return format!("timed out after {}s", COMMAND_TIMEOUT.as_secs());
        }
        normalize_error(&d.stderr, &d.stdout, d.code, id, &self.scratch)
    }

    /// Polls `state` until it says `stopped`.
    pub(super) fn wait_stopped(&self, rt: &Runtime, id: &str) -> Result<(), String> {
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
    pub(super) fn lifecycle(&self, rt: &Runtime, id: &str) -> LifecycleResult {
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
    pub(super) fn stopped_container(&self, rt: &Runtime, id: &str) -> Result<(), String> {
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
    pub(super) fn kill_target(&self, rt: &Runtime, kind: Kind, id: &str) -> Command {
        let bundle = self.bundle.to_string_lossy().into_owned();
        match kind {
            Kind::Create => self.cmd(rt, &["create", "--bundle", &bundle, id]),
            Kind::Run => self.cmd(rt, &["run", "--detach", "--bundle", &bundle, id]),
            Kind::Delete => self.cmd(rt, &["delete", id]),
        }
    }

    /// Asks the runtime and the host what `ids` left after their delete,
    /// counts it into `t`, then removes it by the benchmark's own means.
    pub(super) fn post_mortem(&self, rt: &Runtime, ids: &[String], t: &mut Tally) {
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
    pub(super) fn inject(
        &self,
        rt: &Runtime,
        kind: Kind,
        id: &str,
        delay: Duration,
        t: &mut Tally,
    ) {
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
    pub(super) fn calibrate(&self, rt: &Runtime, kind: Kind) -> Result<Vec<f64>> {
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
    pub(super) fn lifecycle_batch(
        &self,
        rt: &Runtime,
        first: usize,
        n: usize,
        workers: usize,
        t: &mut Tally,
    ) {
        let next = AtomicUsize::new(0);
        let outcomes: Mutex<Vec<(String, LifecycleResult)>> = Mutex::new(Vec::new());
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
pub(super) fn status_of(state_json: &str) -> Option<String> {
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

pub(super) fn describe_process(pid: u32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    format!("{pid} {}", cmd.trim())
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
}
