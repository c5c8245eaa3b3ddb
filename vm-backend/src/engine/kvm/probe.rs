//! Whether the kvm engine can boot a stock Linux guest on this host,
//! decided in milliseconds.
//!
//! Opening `/dev/kvm` proves little: on KVM-PVM hosts real-mode code runs,
//! but a stock 64-bit kernel stops at its first instruction the PVM
//! emulator cannot run. Booting a kernel to find out costs seconds (15 s
//! when it hangs), so the probe decides from facts that take milliseconds:
//!
//! 1. the capabilities the monitor relies on (`KVM_CHECK_EXTENSION`);
//! 2. what kind of KVM this is: hardware assistance (the CPU shows `vmx`
//!    or `svm` and `kvm_intel`/`kvm_amd` is loaded) or KVM-PVM (the
//!    `kvm_pvm` module), which only runs PVM-aware guests;
//! 3. two tiny real guests, each of which must finish within
//!    [`GUEST_DEADLINE`]: a real-mode one (`out`) and a long-mode one set up
//!    exactly as the monitor enters Linux (same GDT, page tables and
//!    registers) that runs `lock cmpxchg16b`, one of the instructions a
//!    stock kernel uses early and a software KVM cannot emulate.
//!
//! The answer is cached in `<cache>/kvm-probe-<release>-<build>.json`,
//! keyed by the host kernel release and this vessel build; entries of other
//! releases or builds are pruned when a new one is written.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vm_memory::{Bytes, GuestAddress};

use super::arch::x86_64::boot::Entry;
use super::arch::x86_64::{cpu, layout};
use super::device_manager::DeviceManager;
use super::engine::KvmEngine;
use super::machine::Machine;
use super::{vcpu, KvmError};
use crate::guest::hex;
use crate::{Error, Result};

/// How long each probe guest may run. Both execute a handful of
/// instructions (microseconds on hardware); a KVM that cannot run them
/// fails them outright (KVM-PVM: emulation failure) or hangs. The bound
/// leaves room for a KVM that is itself inside an emulated VM (the nested
/// harness: ~90 ms there for vCPU creation and the first entry).
pub const GUEST_DEADLINE: Duration = Duration::from_millis(1000);

/// The port the probe guests report on.
const REPORT_PORT: u16 = 0xf4;

/// Real mode at 0x1000: `mov al, 'R'; out 0xf4, al; hlt`.
const REAL_MODE_CODE: &[u8] = &[0xb0, b'R', 0xe6, 0xf4, 0xf4];
const REAL_MODE_REPORT: u8 = b'R';

/// Long mode at [`layout::HIMEM_START`]:
/// ```text
/// xor eax,eax; xor edx,edx; xor ecx,ecx; mov ebx,1; mov edi,0x102000
/// lock cmpxchg16b [rdi]      ; rdx:rax (0:0) equals memory: stores rcx:rbx (0:1)
/// mov eax,[rdi]; add eax,0x41; out 0xf4,al; hlt   ; reports 'B' iff it stored
/// ```
const LONG_MODE_CODE: &[u8] = &[
    0x31, 0xc0, 0x31, 0xd2, 0x31, 0xc9, 0xbb, 0x01, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x20, 0x10, 0x00,
    0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0x8b, 0x07, 0x83, 0xc0, 0x41, 0xe6, 0xf4, 0xf4,
];
const LONG_MODE_REPORT: u8 = b'B';

/// Extensions the monitor uses.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
];

/// The probe's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmProbe {
    /// The kvm engine boots a stock Linux guest here.
    pub usable: bool,
    /// What the probe found, one line.
    pub detail: String,
    /// Whether this came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

/// What kind of KVM `/dev/kvm` is, from the host's CPU flags and modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmKind {
    /// Hardware assistance: `vmx` (Intel) or `svm` (AMD).
    Hardware {
        /// `vmx` or `svm`.
        flag: &'static str,
        /// The vendor module, when it is a module (`kvm_intel`, `kvm_amd`).
        module: Option<&'static str>,
    },
    /// KVM-PVM: a software mode running PVM-aware guests only.
    Pvm,
    /// Neither: no flags and no PVM module (e.g. an emulated /dev/kvm).
    Unknown,
}

/// Classifies this host's KVM from `/proc/cpuinfo` and `/sys/module`.
pub fn kvm_kind() -> KvmKind {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    kvm_kind_from(&cpuinfo, |m| Path::new("/sys/module").join(m).exists())
}

/// [`kvm_kind`] on given inputs (tests).
pub fn kvm_kind_from(cpuinfo: &str, module_loaded: impl Fn(&str) -> bool) -> KvmKind {
    if module_loaded("kvm_pvm") {
        return KvmKind::Pvm;
    }
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    for (flag, module) in [("vmx", "kvm_intel"), ("svm", "kvm_amd")] {
        if flags.contains(&flag) {
            return KvmKind::Hardware {
                flag,
                module: module_loaded(module).then_some(module),
            };
        }
    }
    KvmKind::Unknown
}

/// The cache file name's key: host kernel release and this vessel build
/// (the running executable's size and modification time).
fn cache_key() -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release: String = release
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut h = Sha256::new();
    h.update(b"kvm-probe-v2:");
    h.update(env!("CARGO_PKG_VERSION"));
    if let Ok(exe) = std::env::current_exe() {
        h.update(exe.as_os_str().as_encoded_bytes());
        if let Ok(md) = fs::metadata(&exe) {
            h.update(format!(":{}:{}.{}", md.size(), md.mtime(), md.mtime_nsec()));
        }
    }
    format!("{release}-{}", &hex(&h.finalize())[..16])
}

/// Removes the cached answers of other kernel releases or builds.
fn prune(cache_dir: &Path, keep: &Path) {
    let Ok(dir) = fs::read_dir(cache_dir) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("kvm-probe-") && name.ends_with(".json") && e.path() != keep {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl KvmEngine {
    /// The cached answer for this kernel release and build, or a fresh
    /// probe (milliseconds) written to `cache_dir`.
    pub fn probe(&self, cache_dir: &Path) -> Result<KvmProbe> {
        let cache_file = cache_dir.join(format!("kvm-probe-{}.json", cache_key()));
        if let Ok(text) = fs::read_to_string(&cache_file) {
            if let Ok(mut p) = serde_json::from_str::<KvmProbe>(&text) {
                p.cached = true;
                return Ok(p);
            }
        }
        let result = probe_host();
        fs::create_dir_all(cache_dir)
            .map_err(|e| Error::io(format!("creating {}", cache_dir.display()), e))?;
        let tmp = crate::guest::temp_path_for(&cache_file);
        let json = serde_json::to_vec_pretty(&result).map_err(Error::BadMessage)?;
        fs::write(&tmp, json)
            .and_then(|()| fs::rename(&tmp, &cache_file))
            .map_err(|e| Error::io(format!("writing {}", cache_file.display()), e))?;
        prune(cache_dir, &cache_file);
        Ok(result)
    }
}

/// Probes this host now (no cache).
pub fn probe_host() -> KvmProbe {
    let start = Instant::now();
    let (usable, detail) = match assess() {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    KvmProbe {
        usable,
        detail: format!("{detail} (probed in {} ms)", start.elapsed().as_millis()),
        cached: false,
    }
}

fn assess() -> std::result::Result<String, String> {
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm cannot be opened: {e}"))?;
    let missing: Vec<&str> = REQUIRED_CAPS
        .iter()
        .filter(|(cap, _)| !kvm.check_extension(*cap))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(format!("KVM lacks {}", missing.join(", ")));
    }
    let kind = kvm_kind();
    // The guests run even when the kind already says no: their outcome is
    // part of the reason, and they take milliseconds.
    let real = run_guest(&kvm, GuestMode::Real);
    let long = run_guest(&kvm, GuestMode::Long);
    let guests = format!(
        "real-mode guest: {}; long-mode guest: {}",
        outcome_text(&real),
        outcome_text(&long)
    );
    match kind {
        KvmKind::Pvm => Err(format!(
            "/dev/kvm is KVM-PVM (module kvm_pvm), which runs only PVM-enabled guest kernels; \
             {guests}"
        )),
        KvmKind::Unknown => Err(format!(
            "the CPU shows neither vmx nor svm, so /dev/kvm has no hardware assistance; {guests}"
        )),
        KvmKind::Hardware { flag, module } => {
            if real.is_err() || long.is_err() {
                return Err(format!(
                    "hardware virtualization ({flag}) but a probe guest failed: {guests}"
                ));
            }
            Ok(format!(
                "hardware virtualization ({flag}{}); {guests}",
                module.map(|m| format!(", {m}")).unwrap_or_default()
            ))
        }
    }
}

fn outcome_text(r: &std::result::Result<Duration, String>) -> String {
    match r {
        Ok(d) => format!("ran in {} us", d.as_micros()),
        Err(e) => e.clone(),
    }
}

#[derive(Clone, Copy)]
enum GuestMode {
    Real,
    Long,
}

/// Runs one probe guest: `Ok(time)` when it reported the right byte on
/// [`REPORT_PORT`] within [`GUEST_DEADLINE`].
fn run_guest(kvm: &Kvm, mode: GuestMode) -> std::result::Result<Duration, String> {
    let machine = Machine::new(4 << 20).map_err(|e| e.to_string())?;
    let vcpu = machine
        .create_vcpu(0, &DeviceManager::new())
        .map_err(|e| e.to_string())?;
    let expected = setup(kvm, &machine, &vcpu.fd, mode).map_err(|e| e.to_string())?;
    vcpu::install_kick_handler().map_err(|e| e.to_string())?;
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut fd = vcpu.fd;
    let runner = {
        let done = done.clone();
        std::thread::Builder::new()
            .name("kvm-probe".into())
            .spawn(move || {
                let r = run_until_report(&mut fd);
                done.store(true, std::sync::atomic::Ordering::Release);
                r
            })
            .map_err(|e| format!("starting the probe thread: {e}"))?
    };
    while !done.load(std::sync::atomic::Ordering::Acquire) && start.elapsed() < GUEST_DEADLINE {
        std::thread::sleep(Duration::from_micros(200));
    }
    // A guest still running past the deadline is interrupted; the loop
    // returns on EINTR.
    while !runner.is_finished() {
        vcpu::kick(&runner);
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let got = runner
        .join()
        .map_err(|_| "the probe thread panicked".to_string())??;
    match got {
        Some(b) if b == expected && elapsed <= GUEST_DEADLINE => Ok(elapsed),
        Some(b) if b == expected => Err(format!(
            "ran, but took {} ms (more than {} ms: emulated)",
            elapsed.as_millis(),
            GUEST_DEADLINE.as_millis()
        )),
        Some(b) => Err(format!(
            "reported {b:#04x} instead of {expected:#04x} (an instruction misbehaved)"
        )),
        None => Err(format!(
            "did not finish within {} ms",
            GUEST_DEADLINE.as_millis()
        )),
    }
}

/// Loads the guest code and sets the vCPU's registers; returns the byte
/// the guest must report.
fn setup(
    kvm: &Kvm,
    m: &Machine,
    fd: &VcpuFd,
    mode: GuestMode,
) -> std::result::Result<u8, KvmError> {
    let write = |code: &[u8], at: u64| {
        m.mem
            .write_slice(code, GuestAddress(at))
            .map_err(|e| KvmError::Memory(format!("writing probe code: {e}")))
    };
    match mode {
        GuestMode::Real => {
            write(REAL_MODE_CODE, 0x1000)?;
            let mut sregs = fd
                .get_sregs()
                .map_err(|e| KvmError::kvm("KVM_GET_SREGS", e))?;
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
            fd.set_sregs(&sregs)
                .map_err(|e| KvmError::kvm("KVM_SET_SREGS", e))?;
            let regs = kvm_bindings::kvm_regs {
                rip: 0x1000,
                rflags: 2,
                ..Default::default()
            };
            fd.set_regs(&regs)
                .map_err(|e| KvmError::kvm("KVM_SET_REGS", e))?;
            Ok(REAL_MODE_REPORT)
        }
        GuestMode::Long => {
            write(LONG_MODE_CODE, layout::HIMEM_START)?;
            write(&[0u8; 16], layout::HIMEM_START + 0x2000)?;
            cpu::write_gdt(&m.mem)?;
            cpu::write_page_tables(&m.mem)?;
            let cpuid = kvm
                .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
                .map_err(|e| KvmError::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
            cpu::configure_vcpu(
                fd,
                &cpuid,
                Some(Entry::Linux64(GuestAddress(layout::HIMEM_START))),
            )?;
            Ok(LONG_MODE_REPORT)
        }
    }
}

/// Runs until the guest writes [`REPORT_PORT`] (`Ok(Some(byte))`), is
/// interrupted (`Ok(None)`), or stops otherwise (`Err`, saying how).
fn run_until_report(fd: &mut VcpuFd) -> std::result::Result<Option<u8>, String> {
    for _ in 0..1000 {
        match fd.run() {
            Ok(VcpuExit::IoOut(REPORT_PORT, data)) => return Ok(data.first().copied()),
            Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..)) => {}
            Ok(VcpuExit::InternalError) => {
                return Err("KVM internal error (emulation failure)".into())
            }
            Ok(VcpuExit::Shutdown) => return Err("the guest triple-faulted".into()),
            Ok(other) => return Err(format!("unexpected exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR => return Ok(None),
            Err(e) if e.errno() == libc::EAGAIN => {}
            Err(e) => return Err(format!("KVM_RUN: {e}")),
        }
    }
    Err("the guest kept exiting without reporting".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_from_flags_and_modules() {
        let amd = "processor: 0\nflags\t\t: fpu vme svm npt\n";
        let intel = "flags : fpu vmx ept\n";
        let none = "flags : fpu hypervisor\n";
        assert_eq!(
            kvm_kind_from(amd, |m| m == "kvm_amd"),
            KvmKind::Hardware {
                flag: "svm",
                module: Some("kvm_amd")
            }
        );
        assert_eq!(
            kvm_kind_from(intel, |_| false),
            KvmKind::Hardware {
                flag: "vmx",
                module: None
            }
        );
        assert_eq!(kvm_kind_from(none, |_| false), KvmKind::Unknown);
        // PVM wins even if a flag leaks through.
        assert_eq!(kvm_kind_from(amd, |m| m == "kvm_pvm"), KvmKind::Pvm);
    }

    #[test]
    fn prune_keeps_only_the_current_answer() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("kvm-probe-new.json");
        for n in ["kvm-probe-old.json", "kvm-probe-new.json", "accel-x.json"] {
            fs::write(dir.path().join(n), "{}").unwrap();
        }
        prune(dir.path(), &keep);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["accel-x.json", "kvm-probe-new.json"]);
    }
}
