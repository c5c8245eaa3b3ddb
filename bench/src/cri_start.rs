//! Pod start through the CRI: RunPodSandbox, then CreateContainer +
//! StartContainer of the pod's first container, for vessel's `vessel`
//! (container) and `vessel-vm` (microVM) runtime handlers and
//! containerd's runc handler, in one private containerd 1.6 (the CRI
//! tests' setup: CNI bridge, busybox image from a local archive), the
//! handlers interleaved round by round. Each pod is torn down (not
//! timed, except StopPodSandbox, reported beside) before the next.
//!
//! On KVM-PVM hosts the microVM runs under QEMU's TCG emulation; the
//! table and the JSON say which accelerator ran. A step that fails is
//! counted and its first error reported, not timed. In a `vessel-vm` pod
//! the first container starts inside the sandbox's VM (a pod member).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use vessel_tests::cri::{
    container_config, pod_config, CriContainerd, CriSetup, HANDLER_CONTAINER, HANDLER_RUNC,
    HANDLER_VM,
};

use crate::report;
use crate::stats::Summary;
use crate::table::{num, Table};
use crate::{sys, write_json};

/// Options of `vessel-bench cri-start`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured rounds (each handler once per round, order rotating).
    pub runs: usize,
    /// Handlers, of `vessel`, `vessel-vm`, `runc`.
    pub handlers: Vec<String>,
    /// The static vessel the shim runs (also VM mode's guest agent).
    pub vessel: PathBuf,
    /// vessel's shim (`containerd-shim-vessel-v2`).
    pub shim: PathBuf,
    /// Where to write the JSON.
    pub json: PathBuf,
    /// The command line, for the JSON.
    pub command: String,
}

/// One handler's samples, in milliseconds.
#[derive(Debug, Default)]
struct Samples {
    run_pod: Vec<f64>,
    first_container: Vec<f64>,
    total: Vec<f64>,
    stop_pod: Vec<f64>,
    failures: usize,
    first_error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One pod: (RunPodSandbox, Create+Start of the first container,
/// StopPodSandbox) in ms; the container step is `Err` when it failed.
fn one_pod(
    env: &CriContainerd,
    handler: &str,
    n: usize,
) -> Result<(f64, std::result::Result<f64, String>, f64)> {
    let cfg = pod_config(env, &format!("b-{handler}-{n}"), &[]);
    let t = Instant::now();
    let pod = env
        .run_pod(&cfg, handler)
        .map_err(|e| anyhow::anyhow!("RunPodSandbox ({handler}): {e}"))?;
    let run_pod = ms(t.elapsed());
    let t = Instant::now();
    let started = env
        .create_container(&pod, container_config("app", 0, &["sleep", "600"]), &cfg)
        .and_then(|id| env.start_container(&id).map(|()| id));
    let first = ms(t.elapsed());
    let first = match &started {
        Ok(_) => Ok(first),
        Err(e) => Err(e.to_string()),
    };
    if let Ok(id) = &started {
        // As a kubelet deleting a pod: the container first, no grace.
        let _ = env.stop_container(id, 0);
        let _ = env.remove_container(id);
    }
    let t = Instant::now();
    env.stop_pod(&pod, Duration::from_secs(120))
        .map_err(|e| anyhow::anyhow!("StopPodSandbox ({handler}): {e}"))?;
    let stop = ms(t.elapsed());
    env.remove_pod(&pod, Duration::from_secs(120))
        .map_err(|e| anyhow::anyhow!("RemovePodSandbox ({handler}): {e}"))?;
    Ok((run_pod, first, stop))
}

/// Runs the suite, prints the table and writes the JSON.
pub fn run(opts: &Options) -> Result<()> {
    for h in &opts.handlers {
        if ![HANDLER_CONTAINER, HANDLER_VM, HANDLER_RUNC].contains(&h.as_str()) {
            bail!("--handlers: {h:?} is none of vessel, vessel-vm, runc");
        }
    }
    let containerd =
        crate::which("containerd").ok_or_else(|| anyhow::anyhow!("containerd is not installed"))?;
    let ctr = crate::which("ctr").ok_or_else(|| anyhow::anyhow!("ctr is not installed"))?;
    for (what, p) in [("--vessel", &opts.vessel), ("--shim", &opts.shim)] {
        if !p.is_file() {
            bail!("{what}: {} does not exist (make release shim)", p.display());
        }
    }
    let cache = tempfile::Builder::new()
        .prefix("vessel-cri-bench-cache-")
        .tempdir_in("/var/tmp")?;
    let vm_config = format!(
        "[vm]\ncache_dir = {:?}\n",
        cache.path().display().to_string()
    );
    let env = CriContainerd::start(
        &containerd,
        &ctr,
        &CriSetup {
            tag: "bench",
            vessel: &opts.vessel,
            shim: &opts.shim,
            vm_config: &vm_config,
        },
    );
    eprintln!(
        "cri-start: {} rounds of {:?}, plus one warm-up round (VM mode builds its images then)",
        opts.runs, opts.handlers
    );
    let mut samples: BTreeMap<String, Samples> = BTreeMap::new();
    let k = opts.handlers.len();
    for round in 0..=opts.runs {
        sys::check_interrupted()?;
        for i in 0..k {
            let handler = &opts.handlers[(round + i) % k];
            let (run_pod, first, stop) = one_pod(&env, handler, round)?;
            if round == 0 {
                continue;
            }
            let shown = match &first {
                Ok(f) => format!("{f:.0} ms"),
                Err(_) => "failed".to_string(),
            };
            eprintln!(
                "  round {round} {handler}: RunPodSandbox {run_pod:.0} ms, \
                 first container {shown}, StopPodSandbox {stop:.0} ms"
            );
            let s = samples.entry(handler.clone()).or_default();
            s.run_pod.push(run_pod);
            s.stop_pod.push(stop);
            match first {
                Ok(f) => {
                    s.first_container.push(f);
                    s.total.push(run_pod + f);
                }
                Err(e) => {
                    s.failures += 1;
                    s.first_error.get_or_insert(e);
                }
            }
        }
    }

    let accel = cached_probe(cache.path());
    let mut table = Table::new(&[
        "handler",
        "RunPodSandbox ms",
        "first container ms",
        "pod + container ms",
        "StopPodSandbox ms",
        "n",
        "container failures",
    ]);
    let cell = |v: &[f64]| {
        Summary::of(v).map_or("-".to_string(), |s| {
            format!(
                "{} ({}-{})",
                num(Some(s.median), 0),
                num(Some(s.min), 0),
                num(Some(s.max), 0)
            )
        })
    };
    let mut rows = serde_json::Map::new();
    for h in &opts.handlers {
        let s = samples.remove(h).unwrap_or_default();
        table.row(vec![
            h.clone(),
            cell(&s.run_pod),
            cell(&s.first_container),
            cell(&s.total),
            cell(&s.stop_pod),
            s.run_pod.len().to_string(),
            s.failures.to_string(),
        ]);
        rows.insert(
            h.clone(),
            json!({
                "run_pod_sandbox_ms": Summary::of(&s.run_pod),
                "first_container_create_start_ms": Summary::of(&s.first_container),
                "pod_and_first_container_ms": Summary::of(&s.total),
                "stop_pod_sandbox_ms": Summary::of(&s.stop_pod),
                "samples": {
                    "run_pod_sandbox_ms": s.run_pod,
                    "first_container_create_start_ms": s.first_container,
                    "stop_pod_sandbox_ms": s.stop_pod,
                },
                "container_failures": s.failures,
                "first_container_error": s.first_error,
            }),
        );
    }
    println!(
        "CRI pod start (containerd {}; median (min-max) of {} rounds; microVM accelerator: {})",
        sys::version_of(&containerd),
        opts.runs,
        accel["accel"].as_str().unwrap_or("not probed")
    );
    print!("{}", table.render());
    for h in &opts.handlers {
        if let Some(e) = rows[h.as_str()]["first_container_error"].as_str() {
            println!("{h}: first container failed: {e}");
        }
    }
    let out: Value = json!({
        "suite": "cri-start",
        "command": opts.command,
        "host": report::host_record(&opts.vessel, crate::which("runc").as_deref(), None),
        "what": "RunPodSandbox, then CreateContainer+StartContainer of the pod's first \
                 container (busybox sleep), through containerd's CRI; handlers interleaved",
        "runs": opts.runs,
        "vm_accelerator_probe": accel,
        "handlers": rows,
    });
    write_json(&opts.json, &out)?;
    eprintln!("wrote {}", opts.json.display());
    drop(env);
    Ok(())
}

/// vessel-vm's accelerator probe, as cached in the VM handler's cache.
fn cached_probe(cache: &std::path::Path) -> Value {
    std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("accel-") && n.ends_with(".json")
        })
        .and_then(|e| std::fs::read(e.path()).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}
