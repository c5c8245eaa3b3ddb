//! 50 containers created, started, killed and deleted concurrently leave no
//! cgroup, mount, state entry or process behind.

use std::sync::Arc;

use serde_json::json;
use vessel_tests::harness::{wait_for, Ctr};
use vessel_tests::leaks;
use vessel_tests::require_root;

const N: usize = 50;
const THREADS: usize = 10;

#[test]
fn fifty_concurrent_lifecycles_leave_nothing() {
    require_root!();
    // One shared state root for all 50, so the state store and its locks
    // are exercised by all threads at once. (The host's total mount count is
    // not compared: other users of the machine mount things.)
    let root = Arc::new(
        tempfile::Builder::new()
            .prefix("vessel-root-")
            .tempdir()
            .unwrap(),
    );
    let prefix = format!("vt-conc-{}-", std::process::id());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = root.clone();
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                for i in (t..N).step_by(THREADS) {
                    let id = format!("{prefix}{i}");
                    let mut c = Ctr::new("unused", &["sleep", "1000"]);
                    c.id = id.clone();
                    c.config()["process"]["args"] = json!(["sh", "-c", "sleep 1000", id]);
                    c.config()["linux"]["resources"] = json!({
                        "devices": [{"allow": false, "access": "rwm"}],
                        "memory": {"limit": 67108864}, "pids": {"limit": 20}
                    });
                    c.write();
                    let b = c.bundle.path().to_str().unwrap().to_string();
                    let r = root.path().to_str().unwrap().to_string();
                    let v = |args: &[&str]| {
                        let mut cmd = std::process::Command::new(vessel_tests::vessel_bin());
                        cmd.arg("--root").arg(&r).args(args);
                        vessel_tests::harness::output_via_files(&mut cmd)
                    };
                    let steps: [(&str, Vec<&str>); 4] = [
                        ("create", vec!["create", "--bundle", &b, &id]),
                        ("start", vec!["start", &id]),
                        ("kill", vec!["kill", &id, "KILL"]),
                        ("delete", vec!["delete", &id]),
                    ];
                    for (name, args) in steps {
                        if name == "delete" {
                            // delete needs the container stopped.
                            let stopped = wait_for(10, || {
                                let o = v(&["state", &id]);
                                String::from_utf8_lossy(&o.stdout).contains("\"stopped\"")
                            });
                            if !stopped {
                                errors.push(format!("{id}: not stopped after kill"));
                            }
                        }
                        let o = v(&args);
                        if !o.status.success() {
                            errors.push(format!(
                                "{id}: {name}: {}",
                                String::from_utf8_lossy(&o.stderr).trim()
                            ));
                            let _ = v(&["delete", "--force", &id]);
                            break;
                        }
                        if name == "start" {
                            // list reads every state file while other
                            // threads write theirs: each must parse.
                            let o = v(&["list", "--format", "json"]);
                            let parsed: Result<serde_json::Value, _> =
                                serde_json::from_slice(&o.stdout);
                            match parsed {
                                Ok(l) if o.status.success() && l.is_array() => {}
                                _ => errors.push(format!(
                                    "{id}: list: {:?} {}",
                                    o.status,
                                    String::from_utf8_lossy(&o.stderr).trim()
                                )),
                            }
                        }
                    }
                    // The Ctr's own root is not used: make its drop a no-op.
                    c.id = format!("{id}-done");
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(errors.is_empty(), "lifecycle errors: {errors:#?}");

    // Count what is left.
    let state = leaks::state_entries(root.path());
    assert!(state.is_empty(), "state entries left: {state:?}");
    let cgroups = leaks::cgroup_dirs_with_prefix(&prefix);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:#?}");
    let procs = leaks::processes_mentioning(&prefix);
    assert!(procs.is_empty(), "processes left: {procs:#?}");
    let mounts = leaks::mounts_mentioning(&prefix);
    assert!(mounts.is_empty(), "mounts left: {mounts:#?}");
    assert!(
        leaks::mounts_mentioning("vessel-test-").is_empty(),
        "bundle mounts left on the host"
    );
}
