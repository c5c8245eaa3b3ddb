//! What the bench crate's end-to-end tests share.

use std::path::PathBuf;
use std::process::Command;

/// Whether the test runs as root (the benchmarks make cgroups and mounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds the debug `vessel` (a no-op when it is up to date) and returns it.
pub fn debug_vessel() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_vessel-bench"));
    let dir = bench.parent().expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-p", "vessel"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build -p vessel");
    assert!(st.success(), "cargo build -p vessel failed");
    let v = dir.join("vessel");
    assert!(v.is_file(), "{} missing after the build", v.display());
    v
}
