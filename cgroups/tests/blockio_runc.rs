//! `linux.resources.blockIO` weights on this host: vessel accepts and
//! refuses exactly what runc (the reference runtime, installed here)
//! accepts and refuses, and names the field when it refuses.
//!
//! On a kernel without BFQ (and without CFQ) runc 1.1.5 fails at start
//! with "openat2 .../blkio.bfq.weight: no such file or directory"; vessel
//! refuses the same settings at validation, before anything is created,
//! naming the `linux.resources.blockIO` field. Neither maps a weight onto
//! another mechanism silently (the `io.vessel.blockio.priority`
//! annotation is the way to ask for IO priority).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};
use vessel_cgroups::{validate_on, Cgroup, CgroupMode, Host};

/// A busybox bundle runc can run `/bin/true` from.
fn bundle(dir: &Path, block_io: &Value) -> bool {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    if std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).is_err() {
        return false;
    }
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();
    let st = Command::new("runc")
        .arg("spec")
        .current_dir(dir)
        .status()
        .expect("runc spec");
    assert!(st.success());
    let path = dir.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["args"] = json!(["/bin/true"]);
    c["process"]["terminal"] = json!(false);
    c["linux"]["resources"]["blockIO"] = block_io.clone();
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    true
}

/// Runs the bundle with runc; `Ok` or runc's error text.
fn runc_run(dir: &Path, id: &str) -> Result<(), String> {
    let state = dir.join("runc-state");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(dir)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("runc run");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["delete", "-f", id])
        .output();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// What vessel does with the same settings: validation, then the writes
/// into a real cgroup (removed afterwards).
fn vessel_apply(host: &Host, block_io: &Value) -> Result<(), String> {
    let res = resources(json!({ "blockIO": block_io }));
    validate_on(host, &res).map_err(|e| e.to_string())?;
    let path = unique_path("bioweight");
    let g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    let r = g.cg.apply(&res, false).map_err(|e| e.to_string());
    drop(g);
    r
}

#[test]
fn blockio_weights_follow_runc() {
    let test = "blockio_weights_follow_runc";
    if !can_run(test) {
        return;
    }
    let host = Host::detect().expect("detect cgroup layout");
    if host.mode == CgroupMode::Unified {
        // runc and vessel both map weights to io.bfq.weight / io.weight
        // there; the v2 mapping is tested in v2_mount.rs.
        println!("SKIP {test}: compares the v1 blkio behaviour");
        return;
    }
    let (maj, min) = host_disk();
    let cases = [
        ("weight", json!({"weight": 500})),
        ("leafWeight", json!({"leafWeight": 500})),
        (
            "weightDevice",
            json!({"weightDevice": [{"major": maj, "minor": min, "weight": 500}]}),
        ),
        (
            "weightDevice",
            json!({"weightDevice": [{"major": maj, "minor": min, "leafWeight": 300}]}),
        ),
        ("weight 0 (unset)", json!({"weight": 0})),
        (
            "throttleReadBpsDevice",
            json!({"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}]}),
        ),
    ];
    for (i, (field, bio)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        if !bundle(dir.path(), bio) {
            println!("SKIP {test}: no /bin/busybox for runc's rootfs");
            return;
        }
        let runc = runc_run(
            dir.path(),
            &format!("vessel-bio-{}-{i}", std::process::id()),
        );
        let vessel = vessel_apply(&host, bio);
        println!("{bio}\n  runc:   {runc:?}\n  vessel: {vessel:?}");
        assert_eq!(
            runc.is_ok(),
            vessel.is_ok(),
            "{bio}: runc {runc:?} vs vessel {vessel:?}"
        );
        if let (Err(r), Err(v)) = (&runc, &vessel) {
            // runc names the file it could not open; vessel the field.
            assert!(r.contains("blkio."), "{r}");
            let base = field.split(' ').next().unwrap();
            assert!(
                v.contains(&format!("linux.resources.blockIO.{base}")),
                "{v}"
            );
        }
    }
}
