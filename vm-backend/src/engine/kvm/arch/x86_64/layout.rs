//! Where things live in guest-physical memory and in the interrupt space.
//!
//! ```text
//! 0x0000_0500  GDT (4 entries)            0x0000_0520  IDT (empty)
//! 0x0000_6000  PVH start info, module list (0x6040), memory map (0x6080)
//! 0x0000_7000  zero page (Linux boot_params)
//! 0x0000_8ff0  initial stack pointer
//! 0x0000_9000  PML4, 0xa000 PDPT, 0xb000.. 4 page directories (4 GiB, 2 MiB pages)
//! 0x0002_0000  kernel command line (up to 64 KiB)
//! 0x0009_fc00  end of low RAM (EBDA follows)
//! 0x000e_0000  ACPI tables (RSDP first; the kernel scans 0xe0000-0xfffff)
//! 0x0010_0000  kernel (ELF or bzImage protected-mode part)
//! ...          initramfs at the top of RAM below the MMIO gap
//! 0xc000_0000  32-bit MMIO gap: virtio-mmio windows from 0xd000_0000,
//!              IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 0x1_0000_0000 RAM above 4 GiB, if any
//! ```

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table (a null one: Linux installs its own).
pub const IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initramfs).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map entries.
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of four page directories (identity map of 4 GiB).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Longest command line accepted.
pub const CMDLINE_MAX_SIZE: usize = 0x1_0000;
/// End of the RAM below the EBDA, as a PC reports it.
pub const EBDA_START: u64 = 0x9_fc00;
/// ACPI tables, RSDP first.
pub const ACPI_START: u64 = 0xe_0000;
/// Where the kernel is loaded.
pub const HIMEM_START: u64 = 0x10_0000;

/// Where KVM puts the three-page TSS it needs to emulate real mode on
/// Intel: near the top of the MMIO gap, above the LAPIC, away from RAM
/// and from every device window.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Start of the 32-bit MMIO gap (no RAM here).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio window.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// IOAPIC registers.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC registers.
pub const LAPIC_START: u64 = 0xfee0_0000;

/// First interrupt line given to virtio devices (0-4 are the PIT, keyboard,
/// cascade, COM2 and COM1).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Last usable IOAPIC input (KVM's IOAPIC has 24 pins).
pub const IRQ_MAX: u32 = 23;

/// The RAM ranges of a guest with `size` bytes: below the gap, then above
/// 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_gap() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(MMIO_GAP_START), vec![(0, MMIO_GAP_START)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![
                (0, MMIO_GAP_START),
                (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START)
            ]
        );
        // Fixed structures stay below the kernel and in RAM.
        for a in [
            GDT_START,
            PVH_INFO_START,
            ZERO_PAGE_START,
            PML4_START,
            PDE_START + 4 * 0x1000,
            CMDLINE_START,
        ] {
            assert!(a < EBDA_START);
        }
        assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
        let (virtio, gap, ioapic, end) = (
            VIRTIO_MMIO_START,
            MMIO_GAP_START,
            IOAPIC_START,
            MMIO_GAP_END,
        );
        assert!(virtio >= gap && ioapic < end);
    }
}
