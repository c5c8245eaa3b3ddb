//! A bare QEMU boot of the guest kernel, beside vessel's VM mode: the same
//! Debian kernel vessel boots (`/boot/vmlinuz-*-cloud-amd64`) with
//! `qemu-system-x86_64 -M microvm` directly and a minimal initramfs whose
//! `/init` (busybox sh) prints a line on the serial console. The time from
//! spawning QEMU to that line is the floor any microVM mode on this machine
//! pays; QEMU's RSS at that moment is its memory floor.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::sys;

/// The line `/init` prints when the guest is up.
const READY: &str = "vessel-bench-guest-ready";

/// One boot's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boot {
    /// Spawn to the ready line on the serial console, ms.
    pub ready_ms: f64,
    /// QEMU's VmRSS when the line arrived, KiB.
    pub rss_kib: u64,
}

/// The guest kernel vessel-vm boots.
pub fn guest_kernel() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/boot")
        .context("reading /boot")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64"))
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        anyhow!("no /boot/vmlinuz-*-cloud-amd64: apt-get install -y linux-image-cloud-amd64")
    })
}

/// Writes a newc initramfs holding busybox and an `/init` that prints
/// [`READY`], waits a second and powers off.
pub fn make_initramfs(dir: &Path) -> Result<PathBuf> {
    let bb = crate::bundle::busybox()
        .ok_or_else(|| anyhow!("busybox is missing: apt-get install -y busybox-static"))?;
    let tree = dir.join("initramfs-tree");
    fs::create_dir_all(tree.join("bin"))?;
    fs::create_dir_all(tree.join("dev"))?;
    fs::copy(&bb, tree.join("bin/busybox")).with_context(|| format!("copying {}", bb.display()))?;
    let init = tree.join("init");
    fs::write(
        &init,
        format!("#!/bin/busybox sh\n/bin/busybox echo {READY}\n/bin/busybox sleep 1\n/bin/busybox poweroff -f\n"),
    )?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let img = dir.join("initramfs.cpio");
    let script = format!(
        "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
        tree.display(),
        img.display()
    );
    sys::output(Command::new("sh").arg("-c").arg(script))
        .context("packing the initramfs (apt-get install -y cpio)")?;
    Ok(img)
}

/// Boots `kernel` with `initrd` once under `accel` and times it.
pub fn boot_once(kernel: &Path, initrd: &Path, accel: &str, memory_mib: u64) -> Result<Boot> {
    let mut append = String::from("console=ttyS0 panic=-1 reboot=t quiet rdinit=/init");
    if accel == "tcg" {
        append.push_str(" tsc_early_khz=2100000");
    }
    let cpu = if accel == "kvm" { "host" } else { "max" };
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-accel", accel, "-cpu", cpu, "-smp", "1"])
        .args(["-m", &format!("{memory_mib}M")])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install -y qemu-system-x86)")?;
    let pid = child.id();
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no qemu stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(READY) {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(60));
    let rss_kib = crate::instance::memory_of(&[pid]).rss_kib;
    let status = sys::wait_timeout(&mut child, Duration::from_secs(30), "bare QEMU boot");
    let Ok(at) = got else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the bare QEMU guest printed no ready line within 60 s ({status:?})");
    };
    status?;
    Ok(Boot {
        ready_ms: (at - start).as_secs_f64() * 1e3,
        rss_kib,
    })
}
