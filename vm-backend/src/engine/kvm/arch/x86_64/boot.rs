//! Direct kernel boot: loading the kernel, initramfs and command line, and
//! the boot-protocol structures the kernel reads first.
//!
//! Two ways in, chosen by the image:
//! - an ELF `vmlinux` with a PVH note: 32-bit protected-mode entry with
//!   `%ebx` pointing at `hvm_start_info` (its memory map, command line and
//!   the initramfs as module 0);
//! - a bzImage (or an ELF without the note): the 64-bit Linux boot
//!   protocol, entry `startup_64` with `%rsi` pointing at the zero page
//!   (`boot_params`, whose e820 table describes RAM).

use std::fs::File;
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, ReadVolatile,
};

use super::layout::*;
use crate::devices::virtio::Memory;
use crate::engine::kvm::KvmError;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// Offset of the 64-bit entry point in a bzImage's protected-mode part.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 64-bit Linux boot protocol: long mode, `%rsi` = zero page.
    Linux64(GuestAddress),
    /// PVH: 32-bit protected mode, paging off, `%ebx` = start info.
    Pvh(GuestAddress),
}

/// A kernel in guest memory.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// Where to start the boot vCPU.
    pub entry: Entry,
    /// First byte after the kernel.
    pub end: u64,
    /// The bzImage setup header, to copy into the zero page.
    pub setup_header: Option<setup_header>,
}

fn kernel_err(path: &Path, msg: impl std::fmt::Display) -> KvmError {
    KvmError::Kernel {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Loads an ELF vmlinux (PVH entry if it has one) or a bzImage at 1 MiB.
pub fn load_kernel(mem: &Memory, path: &Path) -> Result<LoadedKernel, KvmError> {
    let mut f = File::open(path).map_err(|e| kernel_err(path, format!("cannot open: {e}")))?;
    load_kernel_from(mem, &mut f).map_err(|msg| kernel_err(path, msg))
}

/// [`load_kernel`] on an open image (anything readable and seekable).
pub fn load_kernel_from<F>(mem: &Memory, image: &mut F) -> Result<LoadedKernel, String>
where
    F: std::io::Read + ReadVolatile + std::io::Seek,
{
    let himem = Some(GuestAddress(HIMEM_START));
    match Elf::load(mem, None, image, himem) {
        Ok(r) => {
            let entry = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => Entry::Pvh(addr),
                _ => Entry::Linux64(r.kernel_load),
            };
            Ok(LoadedKernel {
                entry,
                end: r.kernel_end,
                setup_header: None,
            })
        }
        Err(linux_loader::loader::Error::Elf(
            linux_loader::loader::elf::Error::InvalidElfMagicNumber,
        )) => {
            let r = BzImage::load(mem, None, image, himem)
                .map_err(|e| format!("neither ELF nor bzImage: {e}"))?;
            Ok(LoadedKernel {
                entry: Entry::Linux64(r.kernel_load.unchecked_add(BZIMAGE_64BIT_ENTRY)),
                end: r.kernel_end,
                setup_header: r.setup_header,
            })
        }
        Err(e) => Err(format!("invalid ELF image: {e}")),
    }
}

/// End of the RAM below the MMIO gap.
pub fn low_ram_end(mem: &Memory) -> u64 {
    mem.iter()
        .find(|r| r.start_addr().0 == 0)
        .map_or(0, |r| r.start_addr().0 + r.len())
}

/// Loads the initramfs at the highest page-aligned address of low RAM
/// that keeps it above the kernel; returns its address and size.
pub fn load_initrd(
    mem: &Memory,
    path: &Path,
    kernel_end: u64,
) -> Result<(GuestAddress, u64), KvmError> {
    let err = |msg: String| KvmError::Kernel {
        path: path.to_path_buf(),
        msg,
    };
    let mut f = File::open(path).map_err(|e| err(format!("cannot open initramfs: {e}")))?;
    let size = f
        .metadata()
        .map_err(|e| err(format!("cannot stat initramfs: {e}")))?
        .len();
    let top = low_ram_end(mem);
    let addr = top.checked_sub(size).map(|a| a & !0xfff);
    let addr = match addr {
        Some(a) if a >= kernel_end => a,
        _ => {
            return Err(err(format!(
                "initramfs of {size} bytes does not fit between the kernel end {kernel_end:#x} and {top:#x}"
            )))
        }
    };
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| err(format!("reading initramfs into guest memory: {e}")))?;
    Ok((GuestAddress(addr), size))
}

/// Writes the NUL-terminated command line at [`CMDLINE_START`].
pub fn load_cmdline(mem: &Memory, cmdline: &Cmdline) -> Result<(), KvmError> {
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline)
        .map_err(|e| KvmError::Memory(format!("writing the kernel command line: {e}")))
}

/// The guest's memory map: low RAM below the EBDA, the legacy hole
/// reserved, RAM from 1 MiB to the gap, the gap itself absent, RAM above
/// 4 GiB.
pub fn memory_map(mem: &Memory) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    for r in mem.iter() {
        let (start, end) = (
            r.start_addr().0.max(HIMEM_START),
            r.start_addr().0 + r.len(),
        );
        if end > start {
            map.push((start, end - start, E820_RAM));
        }
    }
    map
}

/// Writes the zero page for the 64-bit Linux boot protocol.
pub fn configure_linux(
    mem: &Memory,
    kernel: &LoadedKernel,
    cmdline_len: usize,
    initrd: Option<(GuestAddress, u64)>,
) -> Result<(), KvmError> {
    let mut params = boot_params::default();
    if let Some(hdr) = kernel.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr.0 as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = memory_map(mem);
    if map.len() > params.e820_table.len() {
        return Err(KvmError::Memory("too many e820 entries".into()));
    }
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr,
            size,
            r#type: kind,
        };
    }
    params.e820_entries = map.len() as u8;
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| KvmError::Memory(format!("writing the zero page: {e}")))
}

/// Writes `hvm_start_info`, its module list and memory map for PVH.
pub fn configure_pvh(
    mem: &Memory,
    initrd: Option<(GuestAddress, u64)>,
    rsdp: Option<GuestAddress>,
) -> Result<(), KvmError> {
    let map: Vec<hvm_memmap_table_entry> = memory_map(mem)
        .into_iter()
        .map(|(addr, size, type_)| hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        })
        .collect();
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        rsdp_paddr: rsdp.map_or(0, |a| a.0),
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    if let Some((addr, size)) = initrd {
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_START;
        params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
        let module = hvm_modlist_entry {
            paddr: addr.0,
            size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(PVH_MODLIST_START));
    }
    params.set_sections(&map, GuestAddress(PVH_MEMMAP_START));
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| KvmError::Memory(format!("writing the PVH start info: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use vm_memory::{Bytes, GuestMemoryMmap};

    fn mem(mib: u64) -> Memory {
        let ranges: Vec<_> = ram_ranges(mib << 20)
            .into_iter()
            .map(|(a, l)| (GuestAddress(a), l as usize))
            .collect();
        GuestMemoryMmap::from_ranges(&ranges).unwrap()
    }

    /// A minimal ELF64 executable: one PT_LOAD segment at 1 MiB, and
    /// optionally a PT_NOTE holding a Xen PVH entry note.
    fn elf(pvh_entry: Option<u32>) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x100000u64.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        let phnum: u16 = if pvh_entry.is_some() { 2 } else { 1 };
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        let ph = |f: &mut Vec<u8>, i: usize, typ: u32, off: u64, addr: u64, size: u64| {
            let b = 64 + i * 56;
            f[b..b + 4].copy_from_slice(&typ.to_le_bytes());
            f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
            f[b + 16..b + 24].copy_from_slice(&addr.to_le_bytes());
            f[b + 24..b + 32].copy_from_slice(&addr.to_le_bytes());
            f[b + 32..b + 40].copy_from_slice(&size.to_le_bytes());
            f[b + 40..b + 48].copy_from_slice(&size.to_le_bytes());
            f[b + 48..b + 56].copy_from_slice(&4u64.to_le_bytes());
        };
        ph(&mut f, 0, 1, 0x180, 0x100000, 0x10); // PT_LOAD
        f[0x180..0x190].copy_from_slice(b"kernel-payload!!");
        if let Some(entry) = pvh_entry {
            // Note: namesz 4 ("Xen\0"), descsz 4, type 18 (XEN_ELFNOTE_PHYS32_ENTRY).
            let n = 0x1a0;
            f[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
            f[n + 4..n + 8].copy_from_slice(&4u32.to_le_bytes());
            f[n + 8..n + 12].copy_from_slice(&18u32.to_le_bytes());
            f[n + 12..n + 16].copy_from_slice(b"Xen\0");
            f[n + 16..n + 20].copy_from_slice(&entry.to_le_bytes());
            ph(&mut f, 1, 4, n as u64, 0, 20); // PT_NOTE
        }
        f
    }

    #[test]
    fn loads_elf_with_and_without_pvh_note() {
        let m = mem(128);
        let k = load_kernel_from(&m, &mut Cursor::new(elf(Some(0x100008)))).unwrap();
        assert_eq!(k.entry, Entry::Pvh(GuestAddress(0x100008)));
        let mut got = [0u8; 16];
        m.read_slice(&mut got, GuestAddress(0x100000)).unwrap();
        assert_eq!(&got, b"kernel-payload!!");
        let k = load_kernel_from(&m, &mut Cursor::new(elf(None))).unwrap();
        assert_eq!(k.entry, Entry::Linux64(GuestAddress(0x100000)));
        assert!(k.setup_header.is_none());
    }

    /// A bzImage-shaped file: setup sectors, the "HdrS" header with boot
    /// protocol 2.15 and a relocatable 64-bit kernel, then the payload.
    fn bzimage() -> Vec<u8> {
        let setup_sects = 4u8;
        let mut f = vec![0u8; (setup_sects as usize + 1) * 512 + 4096];
        f[0x1f1] = setup_sects;
        f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        f[0x202..0x206].copy_from_slice(b"HdrS");
        f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        f[0x211] = 1; // loadflags: LOADED_HIGH
        f[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes()); // code32_start
        let payload = (setup_sects as usize + 1) * 512;
        f[payload..payload + 4].copy_from_slice(b"bzPL");
        f
    }

    #[test]
    fn loads_a_bzimage_at_1mib_with_the_64bit_entry() {
        let m = mem(128);
        let k = load_kernel_from(&m, &mut Cursor::new(bzimage())).unwrap();
        assert_eq!(k.entry, Entry::Linux64(GuestAddress(0x100200)));
        let hdr = k.setup_header.unwrap();
        assert_eq!({ hdr.header }, KERNEL_HDR_MAGIC);
        let mut got = [0u8; 4];
        m.read_slice(&mut got, GuestAddress(0x100000)).unwrap();
        assert_eq!(&got, b"bzPL");
        assert!(load_kernel_from(&m, &mut Cursor::new(vec![0u8; 4096])).is_err());
    }

    #[test]
    fn zero_page_has_e820_cmdline_and_initrd() {
        let m = mem(4096 + 512); // crosses the MMIO gap
        let k = LoadedKernel {
            entry: Entry::Linux64(GuestAddress(0x100200)),
            end: 0x200000,
            setup_header: None,
        };
        let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).unwrap();
        cmdline.insert_str("console=ttyS0").unwrap();
        load_cmdline(&m, &cmdline).unwrap();
        configure_linux(&m, &k, 14, Some((GuestAddress(0x800_0000), 4096))).unwrap();
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ p.hdr.ramdisk_image }, 0x800_0000);
        assert_eq!({ p.hdr.ramdisk_size }, 4096);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
        assert_eq!(p.e820_entries, 4);
        let e: Vec<(u64, u64, u32)> = p.e820_table[..4]
            .iter()
            .map(|e| (e.addr, e.size, e.r#type))
            .collect();
        assert_eq!(
            e,
            vec![
                (0, EBDA_START, E820_RAM),
                (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
                (HIMEM_START, MMIO_GAP_START - HIMEM_START, E820_RAM),
                (MMIO_GAP_END, (4096 + 512 - 3072) << 20, E820_RAM),
            ]
        );
        let mut line = [0u8; 14];
        m.read_slice(&mut line, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&line, b"console=ttyS0\0");
    }

    #[test]
    fn pvh_start_info_lists_memory_and_the_initrd() {
        let m = mem(256);
        configure_pvh(
            &m,
            Some((GuestAddress(0x400_0000), 1234)),
            Some(GuestAddress(ACPI_START)),
        )
        .unwrap();
        let info: hvm_start_info = m.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC);
        assert_eq!(
            (info.nr_modules, info.modlist_paddr),
            (1, PVH_MODLIST_START)
        );
        assert_eq!(info.rsdp_paddr, ACPI_START);
        assert_eq!(info.memmap_entries, 3);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        assert_eq!((module.paddr, module.size), (0x400_0000, 1234));
        let last: hvm_memmap_table_entry =
            m.read_obj(GuestAddress(PVH_MEMMAP_START + 2 * 24)).unwrap();
        assert_eq!(
            (last.addr, last.size, last.type_),
            (HIMEM_START, (256 << 20) - HIMEM_START, E820_RAM)
        );
    }

    #[test]
    fn initrd_goes_to_the_top_of_low_ram() {
        let m = mem(128);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("initrd");
        std::fs::write(&p, vec![7u8; 10_000]).unwrap();
        let (addr, size) = load_initrd(&m, &p, 0x200000).unwrap();
        assert_eq!(size, 10_000);
        assert_eq!(addr.0, ((128 << 20) - 10_000) & !0xfff);
        let b: u8 = m.read_obj(addr.unchecked_add(9_999)).unwrap();
        assert_eq!(b, 7);
        // Too large to fit above the kernel.
        assert!(load_initrd(&m, &p, (128 << 20) - 4096).is_err());
    }
}
