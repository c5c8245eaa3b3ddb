//! What vm mode needs on the host, found or refused with a message that
//! says what is missing: the engine and its accelerator, the guest kernel,
//! a statically linked vessel for the guest agent, the image cache.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vessel_vm::engine::kvm::KvmEngine;
use vessel_vm::engine::qemu::{find_qemu, probe_accelerator, Accel, QemuEngine};
use vessel_vm::engine::Engine;
use vessel_vm::guest::GuestKernel;

use super::config::VmDefaults;

/// The engine a container's VM runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "lowercase")]
pub enum EngineChoice {
    /// `qemu-system-x86_64 -M microvm` with this accelerator.
    Qemu {
        /// The QEMU binary.
        binary: PathBuf,
        /// `kvm` or `tcg`.
        accel: String,
    },
    /// vessel's own monitor on /dev/kvm (`vessel vmm`).
    Kvm,
}

impl EngineChoice {
    /// Engine name.
    pub fn name(&self) -> &'static str {
        match self {
            EngineChoice::Qemu { .. } => "qemu",
            EngineChoice::Kvm => "kvm",
        }
    }

    /// Accelerator name.
    pub fn accel(&self) -> &str {
        match self {
            EngineChoice::Qemu { accel, .. } => accel,
            EngineChoice::Kvm => "kvm",
        }
    }

    /// The engine itself; the kvm engine's monitor is this binary.
    pub fn engine(&self) -> Box<dyn Engine> {
        match self {
            EngineChoice::Qemu { binary, accel } => Box::new(QemuEngine::new(
                binary.clone(),
                if accel == "kvm" {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                },
            )),
            EngineChoice::Kvm => Box::new(kvm_engine()),
        }
    }
}

/// vessel's own monitor: this binary's hidden `vmm` command.
fn kvm_engine() -> KvmEngine {
    KvmEngine::new(PathBuf::from("/proc/self/exe"), vec!["vmm".into()])
}

/// What vm mode lacks on this host, or a setting of `[vm]` that names
/// nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `[vm] <key>` names a file that does not exist.
    #[error("vm mode: [vm] {key} {} does not exist", .path.display())]
    Missing {
        /// The setting.
        key: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// No guest kernel is installed.
    #[error("vm mode: no guest kernel: {0} (install linux-image-cloud-amd64 or set [vm] kernel)")]
    NoKernel(#[source] vessel_vm::Error),
    /// The image cache cannot be made.
    #[error("vm mode: image cache {}: {source}", .path.display())]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting is not one of its values.
    #[error("vm mode: [vm] {key} {value:?} is not one of {allowed}")]
    BadChoice {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: String,
        /// The values it takes.
        allowed: &'static str,
    },
    /// A probe (of the kvm engine or of QEMU's accelerator) failed.
    #[error("vm mode: probing {what}: {source}")]
    Probe {
        /// What was probed.
        what: &'static str,
        /// Why.
        #[source]
        source: vessel_vm::Error,
    },
    /// `[vm] engine = "kvm"` where the kvm engine cannot boot the kernel.
    #[error("vm mode: [vm] engine = \"kvm\", but it cannot boot {} here: {detail}", .kernel.display())]
    KvmUnusable {
        /// The guest kernel.
        kernel: PathBuf,
        /// The probe's finding.
        detail: String,
    },
    /// No QEMU.
    #[error("vm mode: no engine: {0}")]
    NoEngine(#[source] vessel_vm::Error),
    /// The guest agent is dynamically linked.
    #[error(
        "vm mode: the guest agent must be a statically linked vessel, and {origin} ({}) is \
         dynamically linked: build it with `make release` (static) or set [vm] guest_agent \
         or $VESSEL_GUEST_AGENT", .path.display()
    )]
    DynamicAgent {
        /// Where it was configured.
        origin: &'static str,
        /// The binary.
        path: PathBuf,
    },
    /// The guest agent cannot be read as an ELF file.
    #[error("vm mode: guest agent {origin} ({}): {source}", .path.display())]
    Agent {
        /// Where it was configured.
        origin: &'static str,
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: ElfError,
    },
}

/// Why a file is not a readable 64-bit ELF.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Reading it.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not ELF64 little-endian.
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64,
}

/// The resolved pieces of vm mode.
#[derive(Debug, Clone)]
pub struct VmHost {
    /// The engine and its accelerator.
    pub engine: EngineChoice,
    /// Why this engine (the probes' findings).
    pub reason: String,
    /// Guest kernel.
    pub kernel: GuestKernel,
    /// The static vessel binary that becomes the guest's /init.
    pub agent: PathBuf,
    /// Image cache.
    pub cache: PathBuf,
}

/// Finds everything, or says what is missing.
pub fn resolve(cfg: &VmDefaults) -> Result<VmHost, ResolveError> {
    let kernel = match &cfg.kernel {
        Some(k) if k.is_file() => GuestKernel::from_image(k.clone()),
        Some(k) => {
            return Err(ResolveError::Missing {
                key: "kernel",
                path: k.clone(),
            })
        }
        None => GuestKernel::locate().map_err(ResolveError::NoKernel)?,
    };
    let agent = guest_agent(cfg)?;
    let cache = cfg
        .cache_dir
        .clone()
        .unwrap_or_else(vessel_vm::guest::default_cache_dir);
    std::fs::create_dir_all(&cache).map_err(|source| ResolveError::Cache {
        path: cache.clone(),
        source,
    })?;
    let want = cfg.engine.as_deref().unwrap_or("auto");
    // vessel's own monitor where a real boot of this kernel works under it.
    let kvm_probe = match want {
        "auto" | "kvm" => {
            Some(
                kvm_engine()
                    .probe(&cache)
                    .map_err(|source| ResolveError::Probe {
                        what: "the kvm engine",
                        source,
                    })?,
            )
        }
        "qemu" => None,
        other => {
            return Err(ResolveError::BadChoice {
                key: "engine",
                value: other.into(),
                allowed: "auto, kvm, qemu",
            })
        }
    };
    if let Some(p) = &kvm_probe {
        if p.usable {
            return Ok(VmHost {
                engine: EngineChoice::Kvm,
                reason: format!("kvm engine: {}", p.detail),
                kernel,
                agent,
                cache,
            });
        }
        if want == "kvm" {
            return Err(ResolveError::KvmUnusable {
                kernel: kernel.image.clone(),
                detail: p.detail.clone(),
            });
        }
    }
    let qemu = match &cfg.qemu {
        Some(q) if q.is_file() => q.clone(),
        Some(q) => {
            return Err(ResolveError::Missing {
                key: "qemu",
                path: q.clone(),
            })
        }
        None => find_qemu().map_err(ResolveError::NoEngine)?,
    };
    let (accel, detail) = match cfg.accel.as_deref() {
        None | Some("auto") => {
            let p = probe_accelerator(&qemu, &kernel.image, &cache).map_err(|source| {
                ResolveError::Probe {
                    what: "the accelerator",
                    source,
                }
            })?;
            (p.accel, p.detail)
        }
        Some("kvm") => (Accel::Kvm, "set by [vm] accel".to_string()),
        Some("tcg") => (Accel::Tcg, "set by [vm] accel".to_string()),
        Some(other) => {
            return Err(ResolveError::BadChoice {
                key: "accel",
                value: other.into(),
                allowed: "auto, kvm, tcg",
            })
        }
    };
    let mut reason = format!("qemu with {}: {detail}", accel.as_str());
    if let Some(p) = kvm_probe {
        reason.push_str(&format!(
            "; the kvm engine cannot boot the guest: {}",
            p.detail
        ));
    }
    Ok(VmHost {
        engine: EngineChoice::Qemu {
            binary: qemu,
            accel: accel.as_str().into(),
        },
        reason,
        kernel,
        agent,
        cache,
    })
}

/// The guest agent: `[vm] guest_agent`, `$VESSEL_GUEST_AGENT`, or this
/// binary; it must be statically linked (the guest has no libc).
fn guest_agent(cfg: &VmDefaults) -> Result<PathBuf, ResolveError> {
    let (path, origin) = match cfg
        .guest_agent
        .clone()
        .map(|p| (p, "[vm] guest_agent"))
        .or_else(|| {
            std::env::var_os("VESSEL_GUEST_AGENT")
                .map(|p| (PathBuf::from(p), "$VESSEL_GUEST_AGENT"))
        }) {
        Some(x) => x,
        None => (PathBuf::from("/proc/self/exe"), "this vessel binary"),
    };
    match is_static_elf(&path) {
        Ok(true) => Ok(path),
        Ok(false) => Err(ResolveError::DynamicAgent {
            origin,
            path: display_exe(&path),
        }),
        Err(source) => Err(ResolveError::Agent {
            origin,
            path: display_exe(&path),
            source,
        }),
    }
}

/// The binary `/proc/self/exe` stands for.
fn display_exe(path: &Path) -> PathBuf {
    std::fs::read_link(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether the ELF file at `path` has no program interpreter (PT_INTERP).
pub fn is_static_elf(path: &Path) -> Result<bool, ElfError> {
    let mut f = File::open(path)?;
    let mut hdr = [0u8; 64];
    f.read_exact(&mut hdr)?;
    if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
        return Err(ElfError::NotElf64);
    }
    let u16_at = |o: usize| u16::from_le_bytes([hdr[o], hdr[o + 1]]) as u64;
    let phoff = u64::from_le_bytes(hdr[32..40].try_into().expect("8 bytes"));
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;
    const PT_INTERP: u32 = 3;
    Ok(!table.chunks(phentsize as usize).any(|ph| {
        ph.len() >= 4 && u32::from_le_bytes(ph[..4].try_into().expect("4 bytes")) == PT_INTERP
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_check_tells_busybox_from_sh() {
        // busybox-static is static; /bin/sh (dash) is dynamic on Debian.
        if Path::new("/bin/busybox").exists() {
            assert!(is_static_elf(Path::new("/bin/busybox")).unwrap());
        }
        assert!(!is_static_elf(Path::new("/bin/sh")).unwrap());
        assert!(matches!(
            is_static_elf(Path::new("/etc/passwd")),
            Err(ElfError::NotElf64)
        ));
    }
}
