//! Named network namespaces (`ip netns add`) for tests. On first use `ip`
//! makes /run/netns a shared mount point and nothing ever undoes it; these
//! helpers undo it when the last namespace of this process is deleted, so
//! a test leaves the host's mount table as it found it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

const DIR: &str = "/run/netns";

/// Serializes adds with the check-and-unmount of `del`, so that one test's
/// unmount never detaches another test's namespace file.
static LOCK: Mutex<()> = Mutex::new(());

/// Whether the directory existed and was a mount point before this
/// process first added a namespace.
static BEFORE: OnceLock<(bool, bool)> = OnceLock::new();

fn dir_is_mount() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let p = l.split(' ').nth(4);
                p == Some(DIR) || p == Some("/var/run/netns")
            })
        })
        .unwrap_or(false)
}

/// `ip netns add NAME`; panics with ip's message on failure.
pub fn add(name: &str) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    BEFORE.get_or_init(|| (Path::new(DIR).exists(), dir_is_mount()));
    let out = Command::new("ip")
        .args(["netns", "add", name])
        .output()
        .expect("run ip netns add");
    assert!(
        out.status.success(),
        "ip netns add {name}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `ip netns del NAME`, then, when no named namespace is left and the
/// directory was no mount point before, unmounts it (and removes it if it
/// did not exist). For Drop impls: reports failures, never panics.
pub fn del(name: &str) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    let Some(&(existed, was_mount)) = BEFORE.get() else {
        return;
    };
    let empty = std::fs::read_dir(DIR).is_ok_and(|mut d| d.next().is_none());
    if was_mount || !empty {
        return;
    }
    if dir_is_mount() {
        if let Err(e) = nix::mount::umount2(DIR, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("cleanup: umount {DIR}: {e}");
        }
    }
    if !existed {
        let _ = std::fs::remove_dir(DIR);
    }
}
