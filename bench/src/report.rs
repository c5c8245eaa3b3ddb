//! What the overhead and consolidation reports share: the host record, the
//! paper's sample rule (4 runs, the first dropped, median of the rest) and
//! normalization to native.

use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::stats::Summary;
use crate::sys;

/// Summary of the kept samples: every run but the first (the paper's rule;
/// with a single run that one is kept).
pub fn kept(samples: &[f64]) -> Option<Summary> {
    let rest = if samples.len() > 1 {
        &samples[1..]
    } else {
        samples
    };
    Summary::of(rest)
}

/// A figure relative to native, higher is better: `mode / native` for a
/// throughput, `native / mode` for a time.
pub fn normalized(mode: f64, native: f64, higher_is_better: bool) -> Option<f64> {
    if higher_is_better {
        crate::stats::ratio(mode, native)
    } else {
        crate::stats::ratio(native, mode)
    }
}

/// The state of one mode in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// Every cell measured.
    Ok,
    /// Not attempted, with why.
    NotRun(String),
    /// Attempted and at least one cell failed, with the first error.
    Failed(String),
}

/// The host, kernel, cgroup version, engines and accelerator.
pub fn host_record(vessel: &Path, runc: Option<&Path>, crun: Option<&Path>) -> Value {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_total_kib = meminfo_kib("MemTotal:");
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "hostname": hostname,
        "cpu_model": cpu_model,
        "cpus": cpus,
        "mem_total_kib": mem_total_kib,
        "kernel": sys::kernel(),
        "os": os_release(),
        "cgroup": cgroup_version(),
        "engines": {
            "vessel": sys::version_of(vessel),
            "runc": runc.map(sys::version_of),
            "crun": crun.map(sys::version_of),
            "qemu": crate::which("qemu-system-x86_64").map(|q| sys::version_of(&q)),
        },
        "accelerator": accelerator(),
        "load_at_start": sys::uptime(),
    })
}

/// `/proc/meminfo` field `key` in KiB.
pub fn meminfo_kib(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    })
}

fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default()
}

/// "v1 (hybrid: ...)", "v2" or "v1", from the mounts under /sys/fs/cgroup.
pub fn cgroup_version() -> String {
    let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v1 = false;
    let mut v2_at = None;
    for l in m.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(dir), Some(fs)) = (f.get(4), f.get(sep + 1)) else {
            continue;
        };
        if !dir.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match *fs {
            "cgroup" => v1 = true,
            "cgroup2" => v2_at = Some(dir.to_string()),
            _ => {}
        }
    }
    match (v1, v2_at) {
        (true, Some(d)) => format!("v1 hybrid (cgroup2 at {d})"),
        (true, None) => "v1".into(),
        (false, Some(_)) => "v2".into(),
        (false, None) => "none".into(),
    }
}

/// The accelerator a Linux guest gets here: vessel-vm's cached probe if
/// there is one, else what `/dev/kvm` suggests.
pub fn accelerator() -> Value {
    let cache = std::env::var_os("VESSEL_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/vessel".into());
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("accel-") && n.ends_with(".json") {
                if let Ok(v) = std::fs::read(e.path())
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(serde_json::from_slice::<Value>(&b)?))
                {
                    return json!({"source": e.path(), "probe": v});
                }
            }
        }
    }
    json!({
        "source": "no vessel-vm probe cached",
        "kvm_device": Path::new("/dev/kvm").exists(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_dropped() {
        let s = kept(&[100.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(kept(&[5.0]).unwrap().median, 5.0);
        assert!(kept(&[]).is_none());
    }

    #[test]
    fn normalization_direction() {
        assert_eq!(normalized(50.0, 100.0, true), Some(0.5));
        assert_eq!(normalized(4.0, 2.0, false), Some(0.5));
        assert_eq!(normalized(1.0, 0.0, true), None);
    }

    #[test]
    fn status_json() {
        assert_eq!(
            serde_json::to_value(Status::Ok).unwrap(),
            json!({"status": "ok"})
        );
        assert_eq!(
            serde_json::to_value(Status::NotRun("x".into())).unwrap(),
            json!({"status": "not_run", "reason": "x"})
        );
    }

    #[test]
    fn host_facts() {
        assert!(!cgroup_version().is_empty());
        assert!(meminfo_kib("MemTotal:").unwrap() > 0);
    }
}
