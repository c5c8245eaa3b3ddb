//! CI smoke test: `vessel-bench overhead --quick` against the static
//! release vessel when `make release` built it (then the VM mode must run
//! too), else the debug vessel. It fails when any mode fails a cell, when
//! the JSON loses its shape, or when any figure is not a positive number.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{debug_vessel, is_root};

fn positive(v: &Value, what: &str) {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what}: {x} is not positive");
}

fn check_cell(row: &str, mode: &str, c: &Value) {
    let what = format!("{row}/{mode}");
    assert_eq!(c["status"], "ok", "{what}: {c}");
    let samples = c["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 2, "{what}: quick mode runs twice");
    for s in samples {
        positive(s, &what);
    }
    assert_eq!(c["kept"]["n"], 1, "{what}: the first run is dropped");
    for k in ["median", "min", "max"] {
        positive(&c["kept"][k], &format!("{what} kept.{k}"));
        positive(&c["normalized"][k], &format!("{what} normalized.{k}"));
    }
    assert_eq!(
        c["tcg"],
        mode == "vessel-vm" || mode == "qemu-bare",
        "{what}"
    );
}

#[test]
fn overhead_quick_smoke() {
    if !is_root() {
        eprintln!("skipped: vessel-bench overhead needs root (namespaces, cgroups, netns)");
        return;
    }
    // The static build can be the guest agent, so vm mode runs with it.
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vessel");
    let static_vessel = std::env::var_os("VESSEL_STATIC_BIN")
        .map(PathBuf::from)
        .or_else(|| release.is_file().then_some(release));
    let vessel = static_vessel.unwrap_or_else(debug_vessel);
    // Where this vessel offers vm mode (static, QEMU and a guest kernel
    // present), the smoke test runs it and requires it to work.
    let features = Command::new(&vessel).arg("features").output().unwrap();
    let vm_expected = String::from_utf8_lossy(&features.stdout).contains("\"container,vm\"");
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("overhead.json");
    let plot = out.path().join("overhead");
    let child = Command::new(env!("CARGO_BIN_EXE_vessel-bench"))
        .args(["overhead", "--quick", "--vessel"])
        .arg(&vessel)
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running vessel-bench");
    let pid = child.id();
    let run = child.wait_with_output().expect("waiting for vessel-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "vessel-bench overhead --quick failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    assert!(
        stdout.contains("workload") && stdout.contains("native"),
        "{stdout}"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["suite"], "overhead");
    assert_eq!(r["quick"], true);
    assert_eq!(r["method"]["runs"], 2);
    for k in ["kernel", "cgroup", "accelerator", "engines"] {
        assert!(!r["host"][k].is_null(), "host.{k} missing: {}", r["host"]);
    }
    for m in ["native", "vessel", "runc", "crun"] {
        assert_eq!(r["modes"][m]["status"], "ok", "mode {m}: {}", r["modes"][m]);
    }
    let vm = &r["modes"]["vessel-vm"];
    if vm_expected {
        assert_eq!(vm["status"], "ok", "vm mode with the static vessel: {vm}");
    }
    match vm["status"].as_str() {
        Some("ok") => {}
        Some("not_run") => assert!(
            vm["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "a VM mode not run must say why: {vm}"
        ),
        _ => panic!("vessel-vm: {vm}"),
    }
    let rows = r["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    let mut want = vec!["startup", "memory"];
    want.extend(vessel_bench::workloads::ALL.iter().map(|w| w.name));
    assert_eq!(names, want);
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let cells = row["cells"].as_object().expect("cells");
        for m in ["native", "vessel", "runc", "crun"] {
            check_cell(name, m, &cells[m]);
        }
        let c = &cells["vessel-vm"];
        match c["status"].as_str() {
            Some("ok") => check_cell(name, "vessel-vm", c),
            Some("not_run") => assert!(c["reason"].as_str().is_some_and(|s| !s.is_empty())),
            _ => panic!("{name}/vessel-vm: {c}"),
        }
        if name == "startup" || name == "memory" {
            check_cell(name, "qemu-bare", &cells["qemu-bare"]);
        }
    }
    for ext in ["svg", "png"] {
        let p = plot.with_extension(ext);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} is missing or tiny", p.display());
    }
    assert!(no_leftovers(pid), "netns or veth of the bench left behind");
}

/// The netns `vb<tag>` and host link `vbh<tag>` the run made are gone.
fn no_leftovers(pid: u32) -> bool {
    let tag = pid % 10_000;
    !Path::new(&format!("/var/run/netns/vb{tag}")).exists()
        && !Path::new(&format!("/sys/class/net/vbh{tag}")).exists()
}
