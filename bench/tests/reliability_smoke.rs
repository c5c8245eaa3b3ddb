//! Smoke test of `vessel-bench reliability` with tiny sizes against the
//! debug vessel and runc: the program runs, the JSON has its shape, every
//! count is a non-negative integer that adds up, runc's lifecycles succeed,
//! and the benchmark leaves nothing of its containers on the host. It does
//! not judge vessel's leaks: that is what the benchmark measures.

use std::process::Command;

use serde_json::Value;
use vessel_bench::reliability::leaks;

mod common;
use common::{debug_vessel, is_root};

fn count(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: not a non-negative integer: {v}"))
}

const COUNTS: &[&str] = &[
    "runs",
    "killed",
    "finished_first",
    "force_delete_failed",
    "still_reported",
    "leaked_state_dirs",
    "leaked_cgroup_dirs",
    "leaked_mounts",
    "leaked_processes",
    "leaked_files",
    "containers_left",
    "left_after_cleanup",
];

/// Checks one column's tally; returns it for further checks.
fn check_tally<'a>(t: &'a Value, what: &str, runs: u64) -> &'a Value {
    for k in COUNTS {
        count(&t[k], &format!("{what}.{k}"));
    }
    assert_eq!(count(&t["runs"], what), runs, "{what}: {t}");
    for map in ["failures", "state_after_kill", "errors"] {
        let m = t[map]
            .as_object()
            .unwrap_or_else(|| panic!("{what}.{map} is not an object: {t}"));
        for (k, v) in m {
            count(v, &format!("{what}.{map}.{k}"));
        }
    }
    assert!(t["examples"].is_object(), "{what}.examples: {t}");
    assert_eq!(
        count(&t["left_after_cleanup"], what),
        0,
        "{what}: the benchmark must remove what it found: {t}"
    );
    t
}

#[test]
fn reliability_smoke() {
    if !is_root() {
        eprintln!("skipped: vessel-bench reliability needs root (namespaces, cgroups)");
        return;
    }
    let vessel = debug_vessel();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("reliability.json");
    let child = Command::new(env!("CARGO_BIN_EXE_vessel-bench"))
        .args(["reliability", "--runtimes", "vessel,runc"])
        .args(["--concurrency", "1", "--lifecycles", "2", "--kills", "2"])
        .args(["--seed", "12"])
        .arg("--vessel")
        .arg(&vessel)
        .arg("--json")
        .arg(&json)
        .arg("--tmpdir")
        .arg(out.path())
        .spawn()
        .expect("spawning vessel-bench");
    let prefix = format!("rb{}-", child.id());
    let st = child.wait_with_output().unwrap();
    assert!(st.status.success(), "vessel-bench reliability failed");

    let j: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["suite"], "reliability");
    assert!(j["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{j}");
    assert!(j["started"].as_str().is_some_and(|k| !k.is_empty()), "{j}");
    let p = &j["parameters"];
    assert_eq!(
        (p["concurrency"].as_u64(), p["lifecycles"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(p["kills_per_kind"], 2);
    assert_eq!(p["seed"], 12);
    let rts = j["runtimes"].as_array().expect("runtimes");
    let names: Vec<&str> = rts.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["vessel", "runc"], "skipped: {}", j["skipped"]);
    for rt in rts {
        let name = rt["name"].as_str().unwrap();
        let life = check_tally(&rt["lifecycles"], &format!("{name}.lifecycles"), 2);
        let steps = life["failures"].as_object().unwrap();
        assert_eq!(steps.len(), 6, "{name}: a failure count per step: {life}");
        if name == "runc" {
            let failed: u64 = steps.values().filter_map(Value::as_u64).sum();
            assert_eq!(failed, 0, "runc's lifecycles must all succeed: {life}");
        }
        for kind in ["create", "run", "delete"] {
            let what = format!("{name}.kills.{kind}");
            let t = check_tally(&rt["kills"][kind], &what, 2);
            let setup = count(&t["failures"]["setup"], &what);
            assert_eq!(
                count(&t["killed"], &what) + count(&t["finished_first"], &what) + setup,
                2,
                "{what}: every injection is killed, finished first or not set up: {t}"
            );
            let states: u64 = t["state_after_kill"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(Value::as_u64)
                .sum();
            assert_eq!(states + setup, 2, "{what}: {t}");
            let cal = &rt["calibration"][kind];
            let range = cal["delay_range_ms"].as_array().expect("delay range");
            assert!(range[1].as_f64().is_some_and(|x| x > 0.0), "{what}: {cal}");
        }
    }

    // Nothing of the run is left on the host: no cgroup, mount, process,
    // state dir or file names its ids.
    let scope = leaks::Scope {
        root: out.path().join("no-root"),
        scratch: out.path().to_path_buf(),
        skip: vec![json.clone()],
    };
    let left = leaks::find(&scope, &[prefix]);
    assert!(left.is_empty(), "left on the host: {left:?}");
}
