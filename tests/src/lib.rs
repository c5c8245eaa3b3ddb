//! Shared helpers for vessel's integration tests: the binary under test,
//! busybox bundles made at test time, and counters of what a test leaves.
#![warn(missing_docs)]

pub mod bundle;
pub mod clients;
pub mod cri;
pub mod harness;
pub mod host_state;
pub mod leaks;
pub mod named_netns;
pub mod nested;
pub mod shim_client;
pub mod vm;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `vessel` binary under test: `$VESSEL_BIN`, else the workspace's
/// debug build (the README's test command builds it first).
pub fn vessel_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VESSEL_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vessel");
    assert!(
        p.exists(),
        "{} not found: build it first (cargo build -p vessel) or set VESSEL_BIN",
        p.display()
    );
    p
}

/// Whether the tests run as root (they need it for namespaces and cgroups).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips the calling test (returns true) with a printed reason when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("SKIP: this test needs root (namespaces, cgroups, mounts)");
            return;
        }
    };
}

/// Runs vessel with `--root <root>` and the given arguments.
pub fn vessel(root: &std::path::Path, args: &[&str]) -> Output {
    Command::new(vessel_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run vessel")
}
