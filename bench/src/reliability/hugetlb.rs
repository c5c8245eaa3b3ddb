//! Leaving the hugetlb controller where it was: crun's v1 hierarchy is
//! mounted and unmounted by [`crate::lifecycle::ensure_hugetlb`]; this ends
//! it when it outlives its unmount.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::leaks;
use crate::sys;

/// Waits (up to a minute) for init to reap the exited container processes
/// of this run: until then their cgroups stay referenced, and crun's
/// hugetlb v1 hierarchy, once unmounted, would linger instead of ending.
pub(super) fn wait_for_reaping(prefix: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    let mut told = false;
    loop {
        let z = leaks::zombies_naming(prefix);
        if z.is_empty() {
            return;
        }
        if Instant::now() >= end {
            eprintln!(
                "vessel-bench: {} exited container processes still unreaped: {z:?}",
                z.len()
            );
            return;
        }
        if !told {
            println!(
                "waiting for init to reap {} exited container processes",
                z.len()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const UNIFIED_SUBTREE: &str = "/sys/fs/cgroup/unified/cgroup.subtree_control";

pub(super) fn unified_has_hugetlb() -> bool {
    fs::read_to_string(UNIFIED_SUBTREE).is_ok_and(|s| s.split_whitespace().any(|c| c == "hugetlb"))
}

/// The hierarchy id of hugetlb in /proc/cgroups (0: the unified one).
pub(super) fn hugetlb_hierarchy() -> Option<u32> {
    fs::read_to_string("/proc/cgroups")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"hugetlb")).then(|| f.get(1)?.parse().ok())?
        })
}

/// Ends a hugetlb v1 hierarchy left alive after its unmount (it had child
/// cgroups then): mounting it again and unmounting it now that it has none
/// ends it; then hugetlb goes back into the unified hierarchy.
pub(super) fn restore_hugetlb() -> Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    if mountinfo
        .lines()
        .any(|l| l.contains(" - cgroup ") && l.split([' ', ',']).any(|w| w == "hugetlb"))
    {
        bail!("a hugetlb v1 hierarchy is mounted (by someone else?): left alone");
    }
    if hugetlb_hierarchy().is_some_and(|h| h != 0) {
        let dir = tempfile::Builder::new()
            .prefix("vessel-bench-hugetlb-")
            .tempdir()?;
        let point = dir.path().to_string_lossy().into_owned();
        sys::output(
            Command::new("mount").args(["-t", "cgroup", "-o", "hugetlb", "cgroup", &point]),
        )?;
        sys::output(Command::new("umount").arg(&point))?;
        let end = Instant::now() + Duration::from_secs(5);
        while hugetlb_hierarchy().is_some_and(|h| h != 0) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fs::write(UNIFIED_SUBTREE, "+hugetlb")
        .with_context(|| format!("writing +hugetlb to {UNIFIED_SUBTREE}"))
}
