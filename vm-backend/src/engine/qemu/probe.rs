//! Choosing QEMU's accelerator by booting the guest kernel under KVM.
//!
//! `/dev/kvm` existing is not enough: on hosts whose KVM is itself a
//! software nested mode (KVM-PVM), real-mode code runs but a stock 64-bit
//! kernel dies on its first unsupported instruction. So the probe boots the
//! real guest kernel under `-accel kvm` without an initramfs and waits for
//! the panic a fully booted kernel gives when it finds no root filesystem.
//! Seeing it proves the kernel ran to the hand-off to userspace; anything
//! else (an emulation failure, a hang, QEMU refusing KVM) means TCG.
//!
//! The result is cached in `<cache>/accel-<key>.json`, keyed by the QEMU
//! binary and version, the kernel image (path, size, mtime) and the host
//! kernel release.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Accel;
use crate::error::IoContext;
use crate::guest::hex;
use crate::{Error, Result};

/// How long the KVM boot may take: a kernel that boots under KVM reaches
/// the root-mount panic in well under a second.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines a kernel prints once it has booted and found no root.
const BOOTED_MARKERS: &[&str] = &["Kernel panic - not syncing: VFS", "Unable to mount root fs"];

/// Outcome of the accelerator probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why: what the probe saw.
    pub detail: String,
    /// Whether this came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

/// Probes (or reads the cached probe of) whether `qemu` can boot `kernel`
/// under KVM.
pub fn probe_accelerator(qemu: &Path, kernel: &Path, cache_dir: &Path) -> Result<ProbeResult> {
    let key = cache_key(qemu, kernel)?;
    let cache_file = cache_dir.join(format!("accel-{key}.json"));
    if let Ok(text) = fs::read_to_string(&cache_file) {
        if let Ok(mut result) = serde_json::from_str::<ProbeResult>(&text) {
            result.cached = true;
            return Ok(result);
        }
    }
    let result = run_probe(qemu, kernel, cache_dir)?;
    fs::create_dir_all(cache_dir).ctx(|| format!("creating {}", cache_dir.display()))?;
    let tmp = crate::guest::temp_path_for(&cache_file);
    let json = serde_json::to_vec_pretty(&result).map_err(Error::BadMessage)?;
    fs::write(&tmp, json)
        .and_then(|()| fs::rename(&tmp, &cache_file))
        .ctx(|| format!("writing {}", cache_file.display()))?;
    Ok(result)
}

fn cache_key(qemu: &Path, kernel: &Path) -> Result<String> {
    let version = Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|e| Error::io(format!("running {} --version", qemu.display()), e))?;
    let kmd = fs::metadata(kernel).ctx(|| format!("stat {}", kernel.display()))?;
    let host_release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut h = Sha256::new();
    h.update(qemu.as_os_str().as_encoded_bytes());
    h.update(&version.stdout);
    h.update(kernel.as_os_str().as_encoded_bytes());
    h.update(format!(
        ":{}:{}.{}:",
        kmd.size(),
        kmd.mtime(),
        kmd.mtime_nsec()
    ));
    h.update(host_release.trim().as_bytes());
    Ok(hex(&h.finalize())[..32].to_string())
}

fn run_probe(qemu: &Path, kernel: &Path, cache_dir: &Path) -> Result<ProbeResult> {
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Ok(ProbeResult {
            accel: Accel::Tcg,
            detail: format!("/dev/kvm cannot be opened: {e}"),
            cached: false,
        });
    }
    if crate::engine::kvm::probe::kvm_kind() == crate::engine::kvm::probe::KvmKind::Pvm {
        // A stock kernel dies (or hangs) under KVM-PVM; booting it to see
        // would cost up to the whole timeout.
        return Ok(ProbeResult {
            accel: Accel::Tcg,
            detail: "/dev/kvm is KVM-PVM (module kvm_pvm), which runs only PVM-enabled guest \
                     kernels"
                .into(),
            cached: false,
        });
    }
    fs::create_dir_all(cache_dir).ctx(|| format!("creating {}", cache_dir.display()))?;
    let log = cache_dir.join(format!(".probe-{}.log", std::process::id()));
    let _ = fs::remove_file(&log);
    let mut child = Command::new(qemu)
        .args([
            "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128M",
        ])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .arg("-chardev")
        .arg(format!(
            "file,id=console,path={}",
            log.display().to_string().replace(',', ",,")
        ))
        .args(["-serial", "chardev:console", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 reboot=t"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {} for the KVM probe", qemu.display()), e))?;
    let start = Instant::now();
    let booted = |log: &Path| {
        fs::read_to_string(log)
            .map(|t| BOOTED_MARKERS.iter().any(|m| t.contains(m)))
            .unwrap_or(false)
    };
    let outcome = loop {
        if booted(&log) {
            break Ok(format!(
                "the guest kernel booted under KVM in {:.2}s",
                start.elapsed().as_secs_f64()
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            if booted(&log) {
                continue;
            }
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            let last = stderr.lines().last().unwrap_or("").to_string();
            break Err(format!(
                "qemu -accel kvm exited ({status}) before the kernel booted: {last}"
            ));
        }
        if start.elapsed() > PROBE_TIMEOUT {
            break Err(format!(
                "the guest kernel did not boot under KVM within {}s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        // Bounded: QEMU is dead, so the pipe reaches end of file.
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    let _ = fs::remove_file(&log);
    Ok(match outcome {
        Ok(detail) => ProbeResult {
            accel: Accel::Kvm,
            detail,
            cached: false,
        },
        Err(detail) => {
            let stderr_line = stderr
                .lines()
                .find(|l| l.contains("KVM") || l.contains("error"))
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            ProbeResult {
                accel: Accel::Tcg,
                detail: format!("{detail}{stderr_line}"),
                cached: false,
            }
        }
    })
}
