//! vessel's benchmark suites.
//!
//! Benchmarks are programs that print tables and write JSON; they are not
//! timed tests. Each suite is a module with an `Options` struct and a `run`
//! function; `vessel-bench <suite> [flags]` (and `vessel bench <suite>`)
//! parses the flags and calls it.
//!
//! - [`lifecycle`]: create + start + wait + delete of `/bin/true` for vessel,
//!   crun and runc side by side, timed with hyperfine in interleaved rounds
//!   and with a wait4 loop for CPU time and peak RSS.
//! - [`io_isolation`]: the "IO Containment" Table 3 experiment on a loop
//!   device with the BFQ scheduler, foreground and antagonists in vessel
//!   containers, with and without `io.vessel.blockio.priority`.
//! - [`overhead`]: the "Virtualization of Linux servers" suite natively, in
//!   vessel containers and microVMs and in runc and crun, normalized to
//!   native.
//! - [`consolidation`]: n concurrent instances per mode, aggregate and
//!   per-instance throughput.
//! - [`reliability`]: concurrent lifecycles and SIGKILLed commands for
//!   vessel, runc and crun; failures and what was left on the host, by kind.
//! - [`cri_start`]: RunPodSandbox and the first container's start through
//!   containerd's CRI for the vessel, vessel-vm and runc handlers.
//! - [`vm_startup`]: `vessel run` of a vm-mode container, create to first
//!   output and to exit, beside a bare QEMU boot of the same guest.
#![warn(missing_docs)]

pub mod bundle;
pub mod consolidation;
pub mod cri_start;
pub mod fio;
pub mod hyperfine;
pub mod instance;
pub mod io_isolation;
pub mod lifecycle;
pub mod netns;
pub mod overhead;
pub mod plot;
pub mod qemu_boot;
pub mod reliability;
pub mod report;
pub mod stats;
pub mod sys;
pub mod table;
pub mod vm_engines;
pub mod vm_rootfs;
pub mod vm_startup;
pub mod workloads;

use std::path::{Path, PathBuf};

/// The vessel binary to benchmark: `explicit` if given, else the `vessel`
/// next to the running executable, else `target/release/vessel`.
pub fn find_vessel(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join("vessel");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("target/release/vessel")
}

/// `vessel-bench-launcher` next to the running executable.
pub fn find_launcher() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("vessel-bench-launcher")))
        .unwrap_or_else(|| PathBuf::from("target/release/vessel-bench-launcher"))
}

/// The first `name` found in `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Writes `value` as pretty JSON to `path`, creating its parent directory.
pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
