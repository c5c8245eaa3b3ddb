//! x86_64: the guest memory map, the CPUID and boot register state of a
//! vCPU, the direct kernel boot protocols and the ACPI tables.

pub mod acpi;
pub mod boot;
pub mod cpu;
pub mod cpuid;
pub mod layout;

use std::path::Path;

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};
use linux_loader::cmdline::Cmdline;

use self::boot::Entry;
use crate::devices::virtio::Memory;
use crate::engine::kvm::KvmError;

/// A guest ready for its boot vCPU.
#[derive(Debug, Clone)]
pub struct LoadedGuest {
    /// How the boot vCPU enters the kernel.
    pub entry: Entry,
    /// The kernel command line as written to guest memory.
    pub cmdline: String,
}

/// Loads `kernel`, `initramfs` and `cmdline` into `mem` and writes what the
/// kernel reads first: GDT, page tables, the ACPI tables for `vcpus` CPUs
/// and the devices described by `acpi_devices`, and the boot protocol's
/// structures (zero page or PVH start info).
pub fn load_guest(
    mem: &Memory,
    kernel: &Path,
    initramfs: &Path,
    cmdline: &Cmdline,
    vcpus: u32,
    acpi_devices: &[u8],
) -> Result<LoadedGuest, KvmError> {
    let loaded = boot::load_kernel(mem, kernel)?;
    let initrd = boot::load_initrd(mem, initramfs, loaded.end)?;
    boot::load_cmdline(mem, cmdline)?;
    let cmdline_str = cmdline
        .as_cstring()
        .map_err(|e| KvmError::Device(format!("kernel command line: {e}")))?;
    cpu::write_gdt(mem)?;
    cpu::write_page_tables(mem)?;
    let rsdp = acpi::write_tables(mem, vcpus, acpi_devices)?;
    match loaded.entry {
        Entry::Linux64(_) => boot::configure_linux(
            mem,
            &loaded,
            cmdline_str.as_bytes_with_nul().len(),
            Some(initrd),
        )?,
        Entry::Pvh(_) => boot::configure_pvh(mem, Some(initrd), Some(rsdp))?,
    }
    Ok(LoadedGuest {
        entry: loaded.entry,
        cmdline: cmdline_str.to_string_lossy().into_owned(),
    })
}

/// The CPUID KVM supports on this host, the base of every vCPU's.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, KvmError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| KvmError::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
    if !cpuid::has_kvm_clock(supported.as_slice()) {
        // The guest falls back to the TSC or the PIT: slower and less
        // stable, but it still boots.
        eprintln!("vessel vmm: warning: KVM offers no kvm-clock (CPUID 0x40000001 bit 3)");
    }
    Ok(supported)
}

/// Puts vCPU `id` of `count` in its boot state: its CPUID (from
/// `supported`), MSRs, FPU and LAPIC, and for vCPU 0 the registers to
/// enter the kernel at `entry`.
pub fn configure_vcpu(
    vcpu: &VcpuFd,
    supported: &CpuId,
    id: u32,
    count: u32,
    entry: Entry,
) -> Result<(), KvmError> {
    let mut c = supported.clone();
    cpuid::adjust(c.as_mut_slice(), id, count);
    cpu::configure_vcpu(vcpu, &c, (id == 0).then_some(entry))
}
