//! ACPI tables: how a kernel without command-line virtio-mmio support
//! (Debian's) finds the devices, the CPUs and the interrupt controllers.
//!
//! RSDP -> XSDT -> {FADT -> DSDT, MADT}, written from [`ACPI_START`]
//! (inside the 0xe0000-0xfffff area the kernel scans for the RSDP). The
//! platform is HW-reduced ACPI (no PM timer or GPE blocks; power-off and
//! reset go through the i8042). The DSDT's device descriptions come from
//! the device manager, which knows what it placed where.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress};

use super::layout::{ACPI_START, IOAPIC_START, LAPIC_START};
use crate::devices::acpi_pm::SLEEP_PORT;
use crate::devices::virtio::Memory;
use crate::engine::kvm::KvmError;

const OEM_ID: [u8; 6] = *b"VESSEL";
const OEM_TABLE: [u8; 8] = *b"VESSELVM";
/// IAPC_BOOT_ARCH: an 8042 is present, no VGA, no MSI, no ASPM, no CMOS
/// RTC (there is none: the time comes from kvm-clock; without this bit
/// Linux probes one and waits on it).
const IAPC_BOOT_ARCH: u16 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5);
/// End of the area the tables may use.
const ACPI_END: u64 = 0x10_0000;

/// The DSDT around `devices`, the AML of each device's description.
fn dsdt(devices: &[u8]) -> Vec<u8> {
    let mut sdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, 1);
    sdt.append_slice(devices);
    sdt.as_slice().to_vec()
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE, 1)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    b.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    let reg = |port: u64| GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, port);
    b.sleep_control_reg = reg(SLEEP_PORT);
    b.sleep_status_reg = reg(SLEEP_PORT + 1);
    let mut out = Vec::new();
    b.finalize().to_aml_bytes(&mut out);
    out
}

fn madt(vcpus: u32) -> Vec<u8> {
    let mut m = MADT::new(
        OEM_ID,
        OEM_TABLE,
        1,
        LocalInterruptController::Address(LAPIC_START as u32),
    );
    for id in 0..vcpus {
        m.add_structure(ProcessorLocalApic::new(
            id as u8,
            id as u8,
            EnabledStatus::Enabled,
        ));
    }
    m.add_structure(IoApic::new(0, IOAPIC_START as u32, 0));
    let mut out = Vec::new();
    m.to_aml_bytes(&mut out);
    out
}

/// Writes the tables for `vcpus` CPUs and the devices described by
/// `devices` (AML for the DSDT, from the device manager); returns the
/// RSDP's address (for PVH's `rsdp_paddr`).
pub fn write_tables(mem: &Memory, vcpus: u32, devices: &[u8]) -> Result<GuestAddress, KvmError> {
    let err =
        |e: vm_memory::GuestMemoryError| KvmError::Memory(format!("writing ACPI tables: {e}"));
    let align = |a: u64| (a + 15) & !15;
    let rsdp_addr = ACPI_START;
    let mut next = align(rsdp_addr + Rsdp::len() as u64);
    let mut place = |bytes: &[u8]| -> Result<u64, KvmError> {
        let at = next;
        if at + bytes.len() as u64 > ACPI_END {
            return Err(KvmError::Memory(
                "ACPI tables do not fit below 1 MiB".into(),
            ));
        }
        mem.write_slice(bytes, GuestAddress(at)).map_err(err)?;
        next = align(at + bytes.len() as u64);
        Ok(at)
    };
    let dsdt_addr = place(&dsdt(devices))?;
    let fadt_addr = place(&fadt(dsdt_addr))?;
    let madt_addr = place(&madt(vcpus))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let mut xsdt_bytes = Vec::new();
    xsdt.to_aml_bytes(&mut xsdt_bytes);
    let xsdt_addr = place(&xsdt_bytes)?;
    let mut rsdp = Vec::new();
    Rsdp::new(OEM_ID, xsdt_addr).to_aml_bytes(&mut rsdp);
    mem.write_slice(&rsdp, GuestAddress(rsdp_addr))
        .map_err(err)?;
    Ok(GuestAddress(rsdp_addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kvm::device_manager::aml;
    use vm_memory::GuestMemoryMmap;

    fn table(mem: &Memory, addr: u64) -> Vec<u8> {
        let len: u32 = mem.read_obj(GuestAddress(addr + 4)).unwrap();
        let mut t = vec![0u8; len as usize];
        mem.read_slice(&mut t, GuestAddress(addr)).unwrap();
        assert_eq!(
            t.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "checksum of {:?}",
            &t[..4]
        );
        t
    }

    #[test]
    fn tables_chain_from_the_rsdp_with_valid_checksums() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let mut devices = Vec::new();
        aml::serial(&mut devices);
        for (i, addr) in [0xd000_0000u64, 0xd000_1000].into_iter().enumerate() {
            aml::virtio_mmio(&mut devices, i, addr, 5 + i as u32);
        }
        aml::s5(&mut devices);
        let rsdp = write_tables(&mem, 2, &devices).unwrap();
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, rsdp).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(r[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let xsdt_addr = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let xsdt = table(&mem, xsdt_addr);
        assert_eq!(&xsdt[..4], b"XSDT");
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(entries.len(), 2);
        let fadt = table(&mem, entries[0]);
        assert_eq!(&fadt[..4], b"FACP");
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_ne!(flags & (1 << 20), 0, "HW-reduced");
        let x_dsdt = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let dsdt = table(&mem, x_dsdt);
        assert_eq!(&dsdt[..4], b"DSDT");
        let find =
            |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(find(&dsdt, b"LNRO0005"), 2);
        assert_eq!(find(&dsdt, b"_S5_"), 1);
        // FADT sleep control register: system IO, 8 bits, port 0x600.
        assert_eq!(&fadt[244..248], &[1, 8, 0, 1]);
        assert_eq!(
            u64::from_le_bytes(fadt[248..256].try_into().unwrap()),
            SLEEP_PORT
        );
        assert_eq!(find(&dsdt, &0xd000_1000u32.to_le_bytes()), 1);
        let madt = table(&mem, entries[1]);
        assert_eq!(&madt[..4], b"APIC");
        // Two local APICs (type 0, 8 bytes) and one IOAPIC (type 1, 12).
        let mut kinds = Vec::new();
        let mut at = 44;
        while at < madt.len() {
            kinds.push(madt[at]);
            at += madt[at + 1] as usize;
        }
        assert_eq!(kinds, vec![0, 0, 1]);
    }
}
