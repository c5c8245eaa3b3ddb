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
pub fn resolve(cfg: &VmDefaults) -> Result<VmHost, String> {
    let kernel = match &cfg.kernel {
        Some(k) if k.is_file() => GuestKernel::from_image(k.clone()),
        Some(k) => return Err(format!("vm mode: [vm] kernel {} does not exist", k.display())),
        None => GuestKernel::locate().map_err(|e| {
            format!("vm mode: no guest kernel: {e} (install linux-image-cloud-amd64 or set [vm] kernel)")
        })?,
    };
    let agent = guest_agent(cfg)?;
    let cache = cfg
        .cache_dir
        .clone()
        .unwrap_or_else(vessel_vm::guest::default_cache_dir);
    std::fs::create_dir_all(&cache)
        .map_err(|e| format!("vm mode: image cache {}: {e}", cache.display()))?;
    let want = cfg.engine.as_deref().unwrap_or("auto");
    // vessel's own monitor where a real boot of this kernel works under it.
    let kvm_probe = match want {
        "auto" | "kvm" => Some(
            kvm_engine()
                .probe(&cache)
                .map_err(|e| format!("vm mode: probing the kvm engine: {e}"))?,
        ),
        "qemu" => None,
        other => {
            return Err(format!(
                "vm mode: [vm] engine {other:?} is not one of auto, kvm, qemu"
            ))
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
            return Err(format!(
                "vm mode: [vm] engine = \"kvm\", but it cannot boot {} here: {}",
                kernel.image.display(),
                p.detail
            ));
        }
    }
    let qemu = match &cfg.qemu {
        Some(q) if q.is_file() => q.clone(),
        Some(q) => return Err(format!("vm mode: [vm] qemu {} does not exist", q.display())),
        None => find_qemu().map_err(|e| format!("vm mode: no engine: {e}"))?,
    };
    let (accel, detail) = match cfg.accel.as_deref() {
        None | Some("auto") => {
            let p = probe_accelerator(&qemu, &kernel.image, &cache)
                .map_err(|e| format!("vm mode: probing the accelerator: {e}"))?;
            (p.accel, p.detail)
        }
        Some("kvm") => (Accel::Kvm, "set by [vm] accel".to_string()),
        Some("tcg") => (Accel::Tcg, "set by [vm] accel".to_string()),
        Some(other) => {
            return Err(format!(
                "vm mode: [vm] accel {other:?} is not one of auto, kvm, tcg"
            ))
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
fn guest_agent(cfg: &VmDefaults) -> Result<PathBuf, String> {
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
        Ok(false) => Err(format!(
            "vm mode: the guest agent must be a statically linked vessel, and {origin} ({}) is \
             dynamically linked: build it with `make release` (static) or set [vm] guest_agent \
             or $VESSEL_GUEST_AGENT",
            display_exe(&path)
        )),
        Err(e) => Err(format!(
            "vm mode: guest agent {origin} ({}): {e}",
            display_exe(&path)
        )),
    }
}

fn display_exe(path: &Path) -> String {
    std::fs::read_link(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Whether the ELF file at `path` has no program interpreter (PT_INTERP).
pub fn is_static_elf(path: &Path) -> Result<bool, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut hdr = [0u8; 64];
    f.read_exact(&mut hdr).map_err(|e| e.to_string())?;
    if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([hdr[o], hdr[o + 1]]) as u64;
    let phoff = u64::from_le_bytes(hdr[32..40].try_into().expect("8 bytes"));
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(phoff)).map_err(|e| e.to_string())?;
    f.read_exact(&mut table).map_err(|e| e.to_string())?;
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
            assert_eq!(is_static_elf(Path::new("/bin/busybox")), Ok(true));
        }
        assert_eq!(is_static_elf(Path::new("/bin/sh")), Ok(false));
        assert!(is_static_elf(Path::new("/etc/passwd")).is_err());
    }
}
