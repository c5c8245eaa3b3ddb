//! The nested KVM harness: vm-mode scenarios with vessel's own monitor
//! (`[vm] engine = "kvm"`) on a KVM that boots stock Linux.
//!
//! Where this host's KVM is hardware-assisted (the kvm engine's probe says
//! so), `tests/nested/scenarios.sh` runs directly. Elsewhere (KVM-PVM, or
//! no KVM) an outer VM (L1) provides one: QEMU TCG emulating an AMD CPU
//! with SVM and nested paging boots Debian's cloud kernel, whose `kvm_amd`
//! gives a real `/dev/kvm`; its initramfs (built by
//! `tests/nested/build-l1.sh` into `target/nested`, rebuilt only when an
//! input changed) holds the static vessel and the scenarios, which run
//! there. Either way the scenarios run once per test binary ([`run`]) and
//! each test reads its own outcome.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the scenarios ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In the outer VM under QEMU TCG.
    Nested,
    /// On this host, whose KVM is usable.
    Direct,
}

/// A scenario's result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed, saying why.
    Fail(String),
}

/// The one run of the scenarios.
#[derive(Debug)]
pub struct NestedRun {
    /// Where they ran; `None` when they could not run (see `skipped`).
    pub place: Option<Place>,
    /// Why nothing ran.
    pub skipped: Option<String>,
    /// The whole output (the outer VM's console, or the script's output).
    pub log: String,
    /// Results by scenario name.
    pub scenarios: BTreeMap<String, Outcome>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl NestedRun {
    /// The `NESTED_LOG <name>:` lines of a scenario.
    pub fn details(&self, name: &str) -> String {
        let prefix = format!("NESTED_LOG {name}:");
        self.log
            .lines()
            .filter(|l| l.contains(&prefix))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether the marker line `marker` appears.
    pub fn has(&self, marker: &str) -> bool {
        self.log.lines().any(|l| l.contains(marker))
    }
}

/// How long the outer VM may run all scenarios.
const L1_TIMEOUT: Duration = Duration::from_secs(1200);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the outer VM's image and console log are kept.
pub fn artifacts_dir() -> PathBuf {
    workspace().join("target/nested")
}

fn scripts_dir() -> PathBuf {
    workspace().join("tests/nested")
}

/// Runs the scenarios once (the first caller does the work; the others
/// wait for it) and returns the result.
pub fn run() -> &'static NestedRun {
    static RUN: OnceLock<NestedRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let start = Instant::now();
        let mut r = run_once();
        r.elapsed = start.elapsed();
        eprintln!(
            "nested harness: {:?} in {:.1}s; console log in {}",
            r.place,
            r.elapsed.as_secs_f64(),
            artifacts_dir().join("console.log").display()
        );
        r
    })
}

fn skipped(why: String) -> NestedRun {
    NestedRun {
        place: None,
        skipped: Some(why),
        log: String::new(),
        scenarios: BTreeMap::new(),
        elapsed: Duration::ZERO,
    }
}

fn run_once() -> NestedRun {
    if !crate::is_root() {
        return skipped("the scenarios need root".into());
    }
    // The guest's /init must be the static build; the CLI under test is
    // the one the other suites use.
    let agent = std::env::var_os("VESSEL_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/vessel"));
    if !agent.exists() {
        return skipped(format!(
            "{} not found: the guest agent must be the static build (make release)",
            agent.display()
        ));
    }
    let vessel = crate::vessel_bin();
    let tools = helper_tools();
    let probe = vessel_vm::engine::kvm::probe::probe_host();
    if probe.usable {
        return run_direct(&vessel, &agent, &tools, &probe.detail);
    }
    eprintln!(
        "nested harness: this host's KVM cannot run the kvm engine ({}); using an outer VM",
        probe.detail
    );
    if crate::clients::which("qemu-system-x86_64").is_none() {
        return skipped("qemu-system-x86_64 is not installed (qemu-system-x86)".into());
    }
    match build_l1(&vessel, &agent, &tools) {
        Ok(()) => boot_l1(),
        Err(e) => skipped_or_fail(e),
    }
}

/// A missing host package skips (exit 2 of the build script); anything
/// else is a failure the tests report.
fn skipped_or_fail(e: BuildError) -> NestedRun {
    match e {
        BuildError::Missing(why) => skipped(why),
        BuildError::Failed(why) => NestedRun {
            place: Some(Place::Nested),
            skipped: None,
            log: why,
            scenarios: BTreeMap::new(),
            elapsed: Duration::ZERO,
        },
    }
}

enum BuildError {
    Missing(String),
    Failed(String),
}

/// The harness's helper programs the scenarios run (built with this
/// crate, next to the test binary's directory): those that exist.
fn helper_tools() -> Vec<PathBuf> {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    HELPERS
        .iter()
        .map(|h| dir.join(h))
        .filter(|p| p.exists())
        .collect()
}

/// Helpers of `tests/src/bin` the scenarios use.
const HELPERS: [&str; 1] = ["console-receiver"];

fn run_direct(vessel: &Path, agent: &Path, tools: &[PathBuf], why: &str) -> NestedRun {
    eprintln!("nested harness: this host's KVM runs the kvm engine ({why}); running directly");
    let mut cmd = Command::new("sh");
    cmd.arg(scripts_dir().join("scenarios.sh"));
    if let Some(r) = tools.iter().find(|t| t.ends_with("console-receiver")) {
        cmd.env("CONSOLE_RECEIVER", r);
    }
    let out = cmd
        .env("VESSEL", vessel)
        .env("VESSEL_AGENT", agent)
        .env("NESTED_WORK", workspace().join("target/nested-direct"))
        .stdin(Stdio::null())
        .output();
    let log = match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("running scenarios.sh: {e}"),
    };
    let _ = fs::create_dir_all(artifacts_dir());
    let _ = fs::write(artifacts_dir().join("console.log"), &log);
    let _ = fs::remove_dir_all(workspace().join("target/nested-direct"));
    parse(Place::Direct, log)
}

/// What the image is made of: when this changes, it is rebuilt.
fn inputs_stamp(vessel: &Path, agent: &Path, tools: &[PathBuf]) -> String {
    let mut s = String::new();
    let mut add = |p: &Path| {
        if let Ok(md) = fs::metadata(p) {
            s.push_str(&format!(
                "{}:{}:{}.{}\n",
                p.display(),
                md.size(),
                md.mtime(),
                md.mtime_nsec()
            ));
        }
    };
    add(vessel);
    add(agent);
    for t in tools {
        add(t);
    }
    if let Ok(dir) = fs::read_dir(scripts_dir()) {
        let mut scripts: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        scripts.sort();
        for f in scripts {
            add(&f);
        }
    }
    if let Ok(dir) = fs::read_dir("/boot") {
        let mut kernels: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        kernels.sort();
        for k in kernels {
            add(&k);
        }
    }
    s
}

fn build_l1(vessel: &Path, agent: &Path, tools: &[PathBuf]) -> Result<(), BuildError> {
    let out = artifacts_dir();
    let stamp = inputs_stamp(vessel, agent, tools);
    let stamp_file = out.join("inputs");
    if fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str())
        && out.join("l1.cpio").exists()
        && out.join("bzImage").exists()
    {
        return Ok(());
    }
    let o = Command::new("bash")
        .arg(scripts_dir().join("build-l1.sh"))
        .arg(&out)
        .arg(vessel)
        .arg(agent)
        .env("NESTED_TOOLS", join_paths(tools))
        .output()
        .map_err(|e| BuildError::Failed(format!("running build-l1.sh: {e}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    match o.status.code() {
        Some(0) => {
            let _ = fs::write(&stamp_file, stamp);
            eprint!("{text}");
            Ok(())
        }
        Some(2) => Err(BuildError::Missing(text.trim().to_string())),
        _ => Err(BuildError::Failed(format!("build-l1.sh failed: {text}"))),
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The QEMU command booting the outer VM: TCG (one thread per vCPU)
/// emulating an AMD CPU with SVM and nested paging, on q35 (microvm has no
/// clock TCG can calibrate the TSC against).
pub fn l1_command(out: &Path, extra_cmdline: &str) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg,thread=multi", "-cpu", "qemu64,+svm,+npt"])
        .args(["-M", "q35", "-m", "3072", "-smp", "2"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-kernel"])
        .arg(out.join("bzImage"))
        .arg("-initrd")
        .arg(out.join("l1.cpio"))
        .arg("-append")
        .arg(format!(
            "console=ttyS0 reboot=t panic=-1 quiet {extra_cmdline}"
        ));
    cmd
}

fn boot_l1() -> NestedRun {
    let out = artifacts_dir();
    let console = out.join("console.log");
    let file = match fs::File::create(&console) {
        Ok(f) => f,
        Err(e) => return skipped(format!("creating {}: {e}", console.display())),
    };
    let only = std::env::var("NESTED_ONLY").unwrap_or_default();
    let extra = if only.is_empty() {
        String::new()
    } else {
        format!("nested_only={only}")
    };
    let mut cmd = l1_command(&out, &extra);
    let stderr = file.try_clone().map(Stdio::from).unwrap_or(Stdio::null());
    cmd.stdin(Stdio::null()).stdout(file).stderr(stderr);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return skipped(format!("starting qemu-system-x86_64: {e}")),
    };
    let start = Instant::now();
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > L1_TIMEOUT => {
                timed_out = true;
                // Our own child, by its pid.
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(_) => break,
        }
    }
    let mut log = fs::read_to_string(&console).unwrap_or_default();
    if timed_out {
        log.push_str(&format!(
            "\nNESTED_HARNESS the outer VM did not finish within {}s and was killed\n",
            L1_TIMEOUT.as_secs()
        ));
    }
    parse(Place::Nested, log)
}

fn parse(place: Place, log: String) -> NestedRun {
    let mut scenarios = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.split("NESTED_SCENARIO ").nth(1) else {
            continue;
        };
        let mut words = rest.splitn(2, ' ');
        let (Some(name), Some(result)) = (words.next(), words.next()) else {
            continue;
        };
        let outcome = if result.trim() == "PASS" {
            Outcome::Pass
        } else {
            Outcome::Fail(result.trim_start_matches("FAIL:").trim().to_string())
        };
        scenarios.insert(name.to_string(), outcome);
    }
    NestedRun {
        place: Some(place),
        skipped: None,
        log,
        scenarios,
        elapsed: Duration::ZERO,
    }
}

/// Asserts that scenario `name` passed (skipping with the reason when the
/// harness could not run), printing its details either way.
pub fn assert_scenario(name: &str) {
    let r = run();
    if let Some(why) = &r.skipped {
        eprintln!("SKIP {name}: {why}");
        return;
    }
    eprintln!("{}", r.details(name));
    match r.scenarios.get(name) {
        Some(Outcome::Pass) => {}
        Some(Outcome::Fail(why)) => panic!(
            "scenario {name} failed ({:?}): {why}\n{}",
            r.place,
            r.details(name)
        ),
        None => panic!(
            "scenario {name} did not report ({:?}); last lines:\n{}",
            r.place,
            r.tail(40)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results_and_details() {
        let log = "[  1.0] NESTED_SCENARIO a PASS\nNESTED_SCENARIO b FAIL: exit code 1, want 7\n\
                   NESTED_LOG b: rc=1\nnoise\n";
        let r = parse(Place::Nested, log.into());
        assert_eq!(r.scenarios["a"], Outcome::Pass);
        assert_eq!(
            r.scenarios["b"],
            Outcome::Fail("exit code 1, want 7".into())
        );
        assert_eq!(r.details("b"), "NESTED_LOG b: rc=1");
        assert!(!r.scenarios.contains_key("noise"));
    }
}
