//! vm mode's part of the runtime-wide configuration file (the `[vm]`
//! table) and the annotations that size one container's VM.

use std::path::PathBuf;

use serde::Deserialize;

/// Annotation overriding the number of vCPUs.
pub const CPUS_ANNOTATION: &str = "io.vessel.vm.cpus";
/// Annotation overriding the guest memory in MiB.
pub const MEMORY_ANNOTATION: &str = "io.vessel.vm.memory_mib";

/// The `[vm]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDefaults {
    /// Engine name (`qemu`).
    pub engine: Option<String>,
    /// Accelerator: `auto`, `kvm` or `tcg`.
    pub accel: Option<String>,
    /// The QEMU binary (default: `qemu-system-x86_64` in PATH).
    pub qemu: Option<PathBuf>,
    /// Guest kernel image (default: the newest Debian cloud kernel in /boot).
    pub kernel: Option<PathBuf>,
    /// Statically linked vessel binary to run as the guest agent (default:
    /// this binary when it is static).
    pub guest_agent: Option<PathBuf>,
    /// vCPUs when the spec sets no CPU limit.
    pub cpus: Option<u32>,
    /// Guest memory (MiB) when the spec sets no memory limit.
    pub memory_mib: Option<u32>,
    /// Size (MiB, sparse) of the writable layer of the root filesystem.
    pub scratch_mib: Option<u32>,
    /// Image cache directory.
    pub cache_dir: Option<PathBuf>,
    /// How long to wait for the guest agent.
    pub boot_timeout_secs: Option<u64>,
}
