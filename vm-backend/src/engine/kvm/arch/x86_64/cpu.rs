//! Initial vCPU state for a direct kernel boot: the GDT, identity page
//! tables, control registers, general registers, FPU, MSRs and LAPIC.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::boot::Entry;
use super::layout::*;
use crate::devices::virtio::Memory;
use crate::engine::kvm::KvmError;

const X86_CR0_PE: u64 = 1;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// A GDT entry from its flags (granularity, size, long mode), access byte,
/// base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18), and a
/// 32-bit code segment (0x20) for the PVH entry.
pub const GDT: [u64; 5] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff), // code, long mode
    gdt_entry(0xc093, 0, 0xfffff), // data
    gdt_entry(0x808b, 0, 0xfffff), // TSS
    gdt_entry(0xc09b, 0, 0xfffff), // code, 32-bit
];

/// KVM's segment register for GDT entry `index`.
pub fn segment(index: usize) -> kvm_segment {
    let e = GDT[index];
    let base = ((e >> 16) & 0xff_ffff) | ((e >> 32) & 0xff00_0000);
    let mut limit = ((e & 0xffff) | ((e >> 32) & 0xf_0000)) as u32;
    let g = ((e >> 55) & 1) as u8;
    if g == 1 {
        limit = (limit << 12) | 0xfff;
    }
    kvm_segment {
        base,
        limit,
        selector: (index * 8) as u16,
        type_: ((e >> 40) & 0xf) as u8,
        present: ((e >> 47) & 1) as u8,
        dpl: ((e >> 45) & 3) as u8,
        db: ((e >> 54) & 1) as u8,
        s: ((e >> 44) & 1) as u8,
        l: ((e >> 53) & 1) as u8,
        g,
        avl: ((e >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Writes the GDT and an empty IDT.
pub fn write_gdt(mem: &Memory) -> Result<(), KvmError> {
    for (i, e) in GDT.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_START + 8 * i as u64))
            .map_err(|e| KvmError::Memory(format!("writing the GDT: {e}")))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .map_err(|e| KvmError::Memory(format!("writing the IDT: {e}")))
}

/// Identity-maps the first 4 GiB with 2 MiB pages (RAM below the gap and
/// the device windows in it).
pub fn write_page_tables(mem: &Memory) -> Result<(), KvmError> {
    let err =
        |e: vm_memory::GuestMemoryError| KvmError::Memory(format!("writing page tables: {e}"));
    mem.write_obj(PDPTE_START | 0x3, GuestAddress(PML4_START))
        .map_err(err)?;
    for gib in 0..4u64 {
        let pd = PDE_START + gib * 0x1000;
        mem.write_obj(pd | 0x3, GuestAddress(PDPTE_START + gib * 8))
            .map_err(err)?;
        for i in 0..512u64 {
            // Present, writable, 2 MiB page.
            let entry = ((gib << 30) | (i << 21)) | 0x83;
            mem.write_obj(entry, GuestAddress(pd + i * 8))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Special registers for `entry`: long mode with paging for Linux64,
/// flat 32-bit protected mode without paging for PVH.
pub fn boot_sregs(mut sregs: kvm_sregs, entry: Entry) -> kvm_sregs {
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    let data = segment(2);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(3);
    match entry {
        Entry::Linux64(_) => {
            sregs.cs = segment(1);
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        Entry::Pvh(_) => {
            sregs.cs = segment(4);
            sregs.cr0 = (sregs.cr0 & !X86_CR0_PG) | X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    sregs
}

/// General registers for `entry`.
pub fn boot_regs(entry: Entry) -> kvm_regs {
    match entry {
        Entry::Linux64(rip) => kvm_regs {
            rflags: 2,
            rip: rip.0,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
        Entry::Pvh(rip) => kvm_regs {
            rflags: 2,
            rip: rip.0,
            rbx: PVH_INFO_START,
            ..Default::default()
        },
    }
}

/// MSRs every vCPU starts with: syscall and sysenter state cleared, fast
/// strings on, MTRRs enabled with write-back as the default type.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    let msr = |index: u32, data: u64| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        msr(0x174, 0),             // IA32_SYSENTER_CS
        msr(0x175, 0),             // IA32_SYSENTER_ESP
        msr(0x176, 0),             // IA32_SYSENTER_EIP
        msr(0xc000_0081, 0),       // STAR
        msr(0xc000_0082, 0),       // LSTAR
        msr(0xc000_0083, 0),       // CSTAR
        msr(0xc000_0084, 0),       // SYSCALL_MASK
        msr(0xc000_0102, 0),       // KERNEL_GS_BASE
        msr(0x10, 0),              // TSC
        msr(0x1a0, 1),             // IA32_MISC_ENABLE: fast strings
        msr(0x2ff, (1 << 11) | 6), // MTRRdefType: enabled, write-back
    ]
}

/// Sets LINT0 to ExtINT (the PIC's output) and LINT1 to NMI, as firmware
/// leaves a PC.
pub fn set_lint(vcpu: &VcpuFd) -> Result<(), KvmError> {
    let mut lapic = vcpu
        .get_lapic()
        .map_err(|e| KvmError::kvm("KVM_GET_LAPIC", e))?;
    let set = |regs: &mut [i8], offset: usize, mode: u32| {
        let mut v = [0u8; 4];
        for (i, b) in v.iter_mut().enumerate() {
            *b = regs[offset + i] as u8;
        }
        let value = (u32::from_le_bytes(v) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            regs[offset + i] = *b as i8;
        }
    };
    set(&mut lapic.regs, 0x350, 7); // LVT0: ExtINT
    set(&mut lapic.regs, 0x360, 4); // LVT1: NMI
    vcpu.set_lapic(&lapic)
        .map_err(|e| KvmError::kvm("KVM_SET_LAPIC", e))
}

/// Puts a vCPU in its boot state: CPUID, MSRs, FPU, LAPIC, and for the
/// boot vCPU (`entry` given) the registers to enter the kernel. Other
/// vCPUs wait for the INIT/SIPI the kernel sends them.
pub fn configure_vcpu(
    vcpu: &VcpuFd,
    cpuid: &kvm_bindings::CpuId,
    entry: Option<Entry>,
) -> Result<(), KvmError> {
    vcpu.set_cpuid2(cpuid)
        .map_err(|e| KvmError::kvm("KVM_SET_CPUID2", e))?;
    let msrs = Msrs::from_entries(&boot_msrs())
        .map_err(|e| KvmError::Memory(format!("MSR list: {e:?}")))?;
    let n = vcpu
        .set_msrs(&msrs)
        .map_err(|e| KvmError::kvm("KVM_SET_MSRS", e))?;
    if n != msrs.as_slice().len() {
        let refused = msrs.as_slice()[n].index;
        return Err(KvmError::Guest(format!("KVM refused MSR {refused:#x}")));
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu)
        .map_err(|e| KvmError::kvm("KVM_SET_FPU", e))?;
    set_lint(vcpu)?;
    if let Some(entry) = entry {
        let sregs = vcpu
            .get_sregs()
            .map_err(|e| KvmError::kvm("KVM_GET_SREGS", e))?;
        vcpu.set_sregs(&boot_sregs(sregs, entry))
            .map_err(|e| KvmError::kvm("KVM_SET_SREGS", e))?;
        vcpu.set_regs(&boot_regs(entry))
            .map_err(|e| KvmError::kvm("KVM_SET_REGS", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let cs = segment(1);
        assert_eq!(
            (cs.base, cs.limit, cs.l, cs.db, cs.type_, cs.present),
            (0, 0xffff_ffff, 1, 0, 0xb, 1)
        );
        let ds = segment(2);
        assert_eq!(
            (ds.l, ds.db, ds.type_, ds.s, ds.selector),
            (0, 1, 3, 1, 0x10)
        );
        let tr = segment(3);
        assert_eq!((tr.type_, tr.s), (0xb, 0));
        let cs32 = segment(4);
        assert_eq!((cs32.l, cs32.db, cs32.selector), (0, 1, 0x20));
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
    }

    #[test]
    fn page_tables_identity_map_4gib() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_page_tables(&mem).unwrap();
        write_gdt(&mem).unwrap();
        // Walk the tables for a few addresses.
        for addr in [0u64, 0x1234_5678, 0xd000_0000, 0xfee0_0000] {
            let pml4: u64 = mem
                .read_obj(GuestAddress(PML4_START + ((addr >> 39) & 511) * 8))
                .unwrap();
            let pdpt: u64 = mem
                .read_obj(GuestAddress((pml4 & !0xfff) + ((addr >> 30) & 511) * 8))
                .unwrap();
            let pde: u64 = mem
                .read_obj(GuestAddress((pdpt & !0xfff) + ((addr >> 21) & 511) * 8))
                .unwrap();
            assert_eq!(pde & 0x83, 0x83, "present, writable, large");
            assert_eq!((pde & !0x1f_ffff) | (addr & 0x1f_ffff), addr);
        }
        let gdt1: u64 = mem.read_obj(GuestAddress(GDT_START + 8)).unwrap();
        assert_eq!(gdt1, GDT[1]);
    }

    #[test]
    fn long_mode_and_pvh_register_state() {
        let s = boot_sregs(Default::default(), Entry::Linux64(GuestAddress(0x100200)));
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE | X86_CR0_PG);
        assert_ne!(s.cr4 & X86_CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((s.cr3, s.cs.selector, s.cs.l), (PML4_START, 8, 1));
        let r = boot_regs(Entry::Linux64(GuestAddress(0x100200)));
        assert_eq!((r.rip, r.rsi, r.rflags), (0x100200, ZERO_PAGE_START, 2));

        let s = boot_sregs(Default::default(), Entry::Pvh(GuestAddress(0x1000000)));
        assert_eq!(s.cr0 & X86_CR0_PG, 0);
        assert_eq!((s.efer, s.cs.selector, s.cs.db), (0, 0x20, 1));
        let r = boot_regs(Entry::Pvh(GuestAddress(0x1000000)));
        assert_eq!((r.rip, r.rbx), (0x1000000, PVH_INFO_START));
    }
}
