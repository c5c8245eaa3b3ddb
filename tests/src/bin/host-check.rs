//! host-check: proves a test suite left the host as it found it.
//!
//!   host-check save FILE                 snapshot the host into FILE
//!   host-check compare FILE [--settle S] compare the host with FILE
//!
//! `compare` exits 1 and lists every difference (mounts, cgroup
//! directories, network namespaces, links, loop devices, processes the
//! suite left running); 0 when there is none; 2 when it cannot work.
//! Differences are re-read for up to S seconds (default 5) before they
//! count, since a killed process takes a moment to be reaped.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use vessel_tests::host_state::{self, Snapshot};

const USAGE: &str = "usage: host-check save FILE | host-check compare FILE [--settle SECONDS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["save", file] => save(file),
        ["compare", file] => compare(file, 5),
        ["compare", file, "--settle", secs] => match secs.parse() {
            Ok(s) => compare(file, s),
            Err(_) => Err(format!("--settle takes whole seconds, not {secs:?}")),
        },
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("host-check: {e}");
            ExitCode::from(2)
        }
    }
}

fn save(file: &str) -> Result<ExitCode, String> {
    let snap = host_state::take().map_err(|e| e.to_string())?;
    if let Some(dir) = std::path::Path::new(file).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
    }
    let json = serde_json::to_vec_pretty(&snap).map_err(|e| e.to_string())?;
    std::fs::write(file, json).map_err(|e| format!("writing {file}: {e}"))?;
    println!(
        "host-check: saved {file}: {} mounts, {} cgroups, {} netns ({} named), {} links, {} loop devices, {} processes",
        snap.mounts.len(),
        snap.cgroups.len(),
        snap.netns_inodes.len(),
        snap.netns_names.len(),
        snap.links.len(),
        snap.loop_devices.len(),
        snap.processes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn compare(file: &str, settle_secs: u64) -> Result<ExitCode, String> {
    let raw = std::fs::read(file).map_err(|e| format!("reading {file}: {e}"))?;
    let before: Snapshot =
        serde_json::from_slice(&raw).map_err(|e| format!("{file} is not a snapshot: {e}"))?;
    let end = Instant::now() + Duration::from_secs(settle_secs);
    let diffs = loop {
        let d = host_state::compare(&before).map_err(|e| e.to_string())?;
        if d.is_empty() || Instant::now() >= end {
            break d;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if diffs.is_empty() {
        println!("host-check: the host is as it was in {file}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "host-check: FAILED: the host differs from {file} in {} ways:",
        diffs.len()
    );
    for d in &diffs {
        println!("  {d}");
    }
    Ok(ExitCode::FAILURE)
}
