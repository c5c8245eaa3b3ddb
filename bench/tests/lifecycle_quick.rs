//! End-to-end run of `vessel-bench lifecycle` at its smallest size against
//! the debug vessel (plus the same binary again as `--also`), crun and runc,
//! with extra mounts: every runtime must be measured (none skipped), the
//! figures must be real, the launcher's RSS floor must sit below every
//! runtime's peak, and the extra mounts must show in the mount table the
//! runtimes saw, never in the host's.

use std::process::Command;

use serde_json::Value;

mod common;
use common::{debug_vessel, is_root};

fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn lifecycle_quick_measures_every_runtime() {
    if !is_root() {
        eprintln!("skipped: the runtimes need root");
        return;
    }
    let vessel = debug_vessel();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("lifecycle.json");
    let host_mounts = mount_count();
    let out = Command::new(env!("CARGO_BIN_EXE_vessel-bench"))
        .args([
            "lifecycle",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--idle-runs",
            "1",
        ])
        .args(["--mounts", "20", "--vessel"])
        .arg(&vessel)
        .arg("--also")
        .arg(format!("again={}", vessel.display()))
        .args(["--launcher", env!("CARGO_BIN_EXE_vessel-bench-launcher")])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running vessel-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mount_count(), host_mounts, "the host's mount table changed");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["skipped"].as_array().unwrap().len(), 0, "{text}");
    assert!(
        j["mountinfo_entries"].as_u64().unwrap() as usize >= host_mounts + 20,
        "{}",
        j["mountinfo_entries"]
    );
    let floor = j["launcher_rss_floor_kib"].as_f64().unwrap();
    assert!(floor > 0.0);
    let rts = j["runtimes"].as_array().unwrap();
    let names: Vec<&str> = rts.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["vessel", "again", "crun", "runc"]);
    for r in rts {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["cpu_ms"]["n"], 2, "{name}");
        for k in [
            "cpu_ms",
            "wall_ms",
            "maxrss_kib",
            "idle_rss_kib",
            "idle_pss_kib",
        ] {
            let m = r[k]["median"].as_f64().unwrap_or(0.0);
            assert!(m > 0.0, "{name} {k}: {}", r[k]);
        }
        assert!(
            r["maxrss_kib"]["min"].as_f64().unwrap() > floor,
            "{name}: peak RSS at the launcher's floor"
        );
    }
    for pair in ["vessel/crun", "vessel/runc", "again/vessel", "again/crun"] {
        assert!(
            j["ratios"][pair]["cpu_median"].as_f64().unwrap() > 0.0,
            "{pair}"
        );
    }
    assert!(text.contains("vessel/crun"), "{text}");
}
