//! Whether the kvm engine can boot a given guest kernel on this host.
//!
//! Opening `/dev/kvm` proves little: on KVM-PVM hosts real-mode and simple
//! protected-mode code runs, but a stock 64-bit kernel stops at its first
//! instruction KVM cannot run. So, like the QEMU probe, this boots the
//! real kernel with vessel's VMM, with an empty initramfs, and waits for
//! the panic a booted kernel gives when it finds no root file system;
//! anything else (a KVM error, the VMM exiting, 15 s passing) means no.
//! The answer is cached in `<cache>/kvm-probe-<key>.json`, keyed by the
//! VMM binary, the kernel image and the host kernel release.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::engine::KvmEngine;
use crate::engine::{Engine, VmConfig};
use crate::guest::hex;
use crate::{Error, Result};

const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
const BOOTED_MARKERS: &[&str] = &[
    "Kernel panic - not syncing: VFS",
    "Unable to mount root fs",
    "No working init found",
];

/// The probe's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmProbe {
    /// The kvm engine boots this kernel here.
    pub usable: bool,
    /// What the probe saw.
    pub detail: String,
    /// Whether this came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

fn stamp(h: &mut Sha256, path: &Path) -> Result<()> {
    let md = fs::metadata(path).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    h.update(path.as_os_str().as_encoded_bytes());
    h.update(format!(
        ":{}:{}.{}:",
        md.size(),
        md.mtime(),
        md.mtime_nsec()
    ));
    Ok(())
}

/// A newc cpio archive holding nothing (just the trailer).
fn empty_cpio() -> Vec<u8> {
    // The cpio crate writes the trailer entry; writing to a Vec cannot
    // fail.
    cpio::write_cpio(
        std::iter::empty::<(cpio::NewcBuilder, std::io::Cursor<Vec<u8>>)>(),
        Vec::new(),
    )
    .unwrap_or_default()
}

impl KvmEngine {
    /// Probes (or reads the cached answer for) whether this engine boots
    /// `kernel` here.
    pub fn probe(&self, kernel: &Path, cache_dir: &Path) -> Result<KvmProbe> {
        let mut h = Sha256::new();
        h.update(b"kvm-probe-v1");
        stamp(&mut h, &self.vmm_binary)?;
        stamp(&mut h, kernel)?;
        h.update(
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
        );
        let key = &hex(&h.finalize())[..32];
        let cache_file = cache_dir.join(format!("kvm-probe-{key}.json"));
        if let Ok(text) = fs::read_to_string(&cache_file) {
            if let Ok(mut p) = serde_json::from_str::<KvmProbe>(&text) {
                p.cached = true;
                return Ok(p);
            }
        }
        let result = self.run_probe(kernel, cache_dir)?;
        let tmp = crate::guest::temp_path_for(&cache_file);
        let json = serde_json::to_vec_pretty(&result).map_err(Error::BadMessage)?;
        fs::write(&tmp, json)
            .and_then(|()| fs::rename(&tmp, &cache_file))
            .map_err(|e| Error::io(format!("writing {}", cache_file.display()), e))?;
        Ok(result)
    }

    fn run_probe(&self, kernel: &Path, cache_dir: &Path) -> Result<KvmProbe> {
        if let Err(e) = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            return Ok(KvmProbe {
                usable: false,
                detail: format!("/dev/kvm cannot be opened: {e}"),
                cached: false,
            });
        }
        fs::create_dir_all(cache_dir)
            .map_err(|e| Error::io(format!("creating {}", cache_dir.display()), e))?;
        let base = cache_dir.join(format!(".kvm-probe-{}", std::process::id()));
        let with = |ext: &str| base.with_extension(ext);
        let (initrd, console, log, sock) =
            (with("cpio"), with("console"), with("log"), with("sock"));
        fs::write(&initrd, empty_cpio())
            .map_err(|e| Error::io(format!("writing {}", initrd.display()), e))?;
        let mut config = VmConfig::new(kernel.to_path_buf(), initrd.clone(), sock.clone());
        config.memory_mib = 128;
        config.console_log = Some(console.clone());
        config.vmm_log = Some(log.clone());
        config.die_with_parent = true;
        let booted = |p: &Path| {
            fs::read_to_string(p)
                .map(|t| BOOTED_MARKERS.iter().any(|m| t.contains(m)))
                .unwrap_or(false)
        };
        let start = Instant::now();
        let outcome = match self.boot(&config) {
            Err(e) => Err(format!("the VMM did not start: {e}")),
            Ok(mut vm) => {
                let r = loop {
                    if booted(&console) {
                        break Ok(format!(
                            "the guest kernel booted under vessel's VMM in {:.2}s",
                            start.elapsed().as_secs_f64()
                        ));
                    }
                    if !vm.is_running() {
                        if booted(&console) {
                            continue;
                        }
                        let last = fs::read_to_string(&log).unwrap_or_default();
                        let last = last.lines().last().unwrap_or("no output").to_string();
                        break Err(format!("the VMM exited before the kernel booted: {last}"));
                    }
                    if start.elapsed() > PROBE_TIMEOUT {
                        break Err(format!(
                            "the guest kernel did not boot under vessel's VMM within {}s",
                            PROBE_TIMEOUT.as_secs()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let _ = vm.kill();
                r
            }
        };
        for p in [&initrd, &console, &log, &sock] {
            let _ = fs::remove_file(p);
        }
        Ok(match outcome {
            Ok(detail) => KvmProbe {
                usable: true,
                detail,
                cached: false,
            },
            Err(detail) => KvmProbe {
                usable: false,
                detail,
                cached: false,
            },
        })
    }
}
