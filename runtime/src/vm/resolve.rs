//! What vm mode needs on the host, found or refused with a message that
//! says what is missing: the engine and its accelerator, the guest kernel,
//! a statically linked vessel for the guest agent, the image cache.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use vessel_vm::engine::qemu::{find_qemu, probe_accelerator, Accel, ProbeResult};
use vessel_vm::guest::GuestKernel;

use super::config::VmDefaults;

/// The resolved pieces of vm mode.
#[derive(Debug, Clone)]
pub struct VmHost {
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Accelerator and how it was chosen.
    pub probe: ProbeResult,
    /// Guest kernel.
    pub kernel: GuestKernel,
    /// The static vessel binary that becomes the guest's /init.
    pub agent: PathBuf,
    /// Image cache.
    pub cache: PathBuf,
}

/// Finds everything, or says what is missing.
pub fn resolve(cfg: &VmDefaults) -> Result<VmHost, String> {
    match cfg.engine.as_deref() {
        None | Some("qemu") | Some("auto") => {}
        Some(other) => {
            return Err(format!(
                "vm mode: engine {other:?} is not available (engines: qemu)"
            ))
        }
    }
    let qemu = match &cfg.qemu {
        Some(q) if q.is_file() => q.clone(),
        Some(q) => return Err(format!("vm mode: [vm] qemu {} does not exist", q.display())),
        None => find_qemu().map_err(|e| format!("vm mode: no engine: {e}"))?,
    };
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
    let probe = match cfg.accel.as_deref() {
        None | Some("auto") => probe_accelerator(&qemu, &kernel.image, &cache)
            .map_err(|e| format!("vm mode: probing the accelerator: {e}"))?,
        Some("kvm") => forced(Accel::Kvm),
        Some("tcg") => forced(Accel::Tcg),
        Some(other) => {
            return Err(format!(
                "vm mode: [vm] accel {other:?} is not one of auto, kvm, tcg"
            ))
        }
    };
    Ok(VmHost {
        qemu,
        probe,
        kernel,
        agent,
        cache,
    })
}

fn forced(accel: Accel) -> ProbeResult {
    ProbeResult {
        accel,
        detail: "set by [vm] accel in the configuration".into(),
        cached: false,
    }
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
