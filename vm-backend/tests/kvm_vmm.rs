//! The kvm engine's VMM as a process, on real KVM (issue 8).
//!
//! `vessel-kvm-vmm` is started through `KvmEngine::boot` exactly as vm mode
//! will start it, confined (no capabilities, seccomp per thread). Its
//! guests are small test kernels built here in the two formats the loader
//! takes: an ELF with a PVH entry (32-bit protected mode) and a bzImage
//! with a 64-bit entry. Both run on this host's KVM-PVM, which runs such
//! code but no stock Linux kernel; the Linux boot test runs wherever
//! /proc/cpuinfo shows vmx or svm and skips, saying so, elsewhere.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vessel_vm::engine::kvm::{select_engine, KvmEngine};
use vessel_vm::engine::{BlockDevice, Engine, NetTap, VmConfig, VmHandle};
use vessel_vm::guest::GuestKernel;

fn kvm_usable() -> bool {
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm cannot be opened: {e}");
            false
        }
    }
}

fn hardware_virtualization() -> bool {
    fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines().any(|l| {
                l.starts_with("flags") && l.split_whitespace().any(|f| f == "vmx" || f == "svm")
            })
        })
        .unwrap_or(false)
}

fn engine() -> KvmEngine {
    KvmEngine::new(
        PathBuf::from(env!("CARGO_BIN_EXE_vessel-kvm-vmm")),
        Vec::new(),
    )
}

/// Kills the VMM by its pid whatever happens.
struct Guard(VmHandle);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// 32-bit code: ACPI S5 through the sleep control register (port 0x600):
/// SLP_TYP 5, SLP_EN.
const POWER_OFF: &[u8] = &[0x66, 0xba, 0x00, 0x06, 0xb0, (5 << 2) | (1 << 5), 0xee];

/// 32-bit code (also valid as the PVH entry): `%ebx` is the start info.
/// It ends with an i8042 reset if `reset`, else halts.
fn pvh_code(reset: bool) -> Vec<u8> {
    pvh_code_ending(reset, false)
}

/// As [`pvh_code`], optionally ending with an ACPI power-off instead.
fn pvh_code_ending(reset: bool, power_off: bool) -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
                                              // mov eax, [ebx] (magic); out dx, al
    c.extend_from_slice(&[0x8b, 0x03, 0xee]);
    // mov eax, [ebx+12] (nr_modules); add al, '0'; out dx, al
    c.extend_from_slice(&[0x8b, 0x43, 0x0c, 0x04, 0x30, 0xee]);
    // mov eax, [ebx+48] (memmap_entries); add al, '0'; out dx, al
    c.extend_from_slice(&[0x8b, 0x43, 0x30, 0x04, 0x30, 0xee]);
    // mov esi, [ebx+24] (cmdline); mov al, [esi]; out dx, al
    c.extend_from_slice(&[0x8b, 0x73, 0x18, 0x8a, 0x06, 0xee]);
    for b in b"pvh\n" {
        c.extend_from_slice(&[0xb0, *b, 0xee]);
    }
    if reset {
        c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64]); // i8042 reset
    }
    if power_off {
        c.extend_from_slice(POWER_OFF);
    }
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // hlt; jmp back to hlt
    c
}

/// An ELF64 file with `code` loaded at 1 MiB and a PVH note entering it.
fn pvh_elf(code: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x200];
    f[..4].copy_from_slice(b"\x7fELF");
    (f[4], f[5], f[6]) = (2, 1, 1);
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&0x100000u64.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let mut ph = |i: usize, typ: u32, off: u64, addr: u64, size: u64| {
        let b = 64 + i * 56;
        f[b..b + 4].copy_from_slice(&typ.to_le_bytes());
        f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
        f[b + 16..b + 24].copy_from_slice(&addr.to_le_bytes());
        f[b + 24..b + 32].copy_from_slice(&addr.to_le_bytes());
        f[b + 32..b + 40].copy_from_slice(&size.to_le_bytes());
        f[b + 40..b + 48].copy_from_slice(&size.to_le_bytes());
        f[b + 48..b + 56].copy_from_slice(&4u64.to_le_bytes());
    };
    ph(0, 1, 0x200, 0x100000, code.len() as u64);
    ph(1, 4, 0x1a0, 0, 20);
    let n = 0x1a0;
    f[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
    f[n + 4..n + 8].copy_from_slice(&4u32.to_le_bytes());
    f[n + 8..n + 12].copy_from_slice(&18u32.to_le_bytes());
    f[n + 12..n + 16].copy_from_slice(b"Xen\0");
    f[n + 16..n + 20].copy_from_slice(&0x100000u32.to_le_bytes());
    f.extend_from_slice(code);
    f
}

/// A bzImage whose 64-bit entry (load address + 0x200) runs `code64`.
fn bzimage(code64: &[u8]) -> Vec<u8> {
    let setup_sects = 4u8;
    let payload = (setup_sects as usize + 1) * 512;
    let mut f = vec![0u8; payload + 0x200];
    f[0x1f1] = setup_sects;
    f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    f[0x211] = 1;
    f[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes());
    f.extend_from_slice(code64);
    f
}

/// 64-bit code: `%rsi` is the zero page.
fn linux64_code() -> Vec<u8> {
    let mut c = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
                                              // mov al, [rsi+0x1e8] (e820_entries); add al, '0'; out dx, al
    c.extend_from_slice(&[0x8a, 0x86, 0xe8, 0x01, 0x00, 0x00, 0x04, 0x30, 0xee]);
    // mov al, [rsi+0x202] ('H' of "HdrS"); out dx, al
    c.extend_from_slice(&[0x8a, 0x86, 0x02, 0x02, 0x00, 0x00, 0xee]);
    // mov al, [rsi+0x210] (type_of_loader 0xff); out dx, al
    c.extend_from_slice(&[0x8a, 0x86, 0x10, 0x02, 0x00, 0x00, 0xee]);
    // mov rax, [0x9000] (PML4[0]); and al, 3 (present, writable); out dx, al
    c.extend_from_slice(&[
        0x48, 0x8b, 0x04, 0x25, 0x00, 0x90, 0x00, 0x00, 0x24, 0x03, 0xee,
    ]);
    for b in b"64\n" {
        c.extend_from_slice(&[0xb0, *b, 0xee]);
    }
    c.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]);
    c
}

struct Files {
    dir: tempfile::TempDir,
}
impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self, kernel: &[u8]) -> VmConfig {
        fs::write(self.path("kernel"), kernel).unwrap();
        fs::write(self.path("initrd"), b"initramfs bytes").unwrap();
        let mut c = VmConfig::new(
            self.path("kernel"),
            self.path("initrd"),
            self.path("agent.sock"),
        );
        c.memory_mib = 128;
        c.console_log = Some(self.path("console.log"));
        c.vmm_log = Some(self.path("vmm.log"));
        c.die_with_parent = true;
        c
    }
}

fn wait_exit(vm: &mut VmHandle, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while vm.is_running() {
        assert!(
            Instant::now() < deadline,
            "VMM still running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    vm.wait().unwrap()
}

#[test]
fn kvm_vmm_boots_a_pvh_elf_and_exits_on_reset() {
    if !kvm_usable() {
        return;
    }
    let files = Files::new();
    let mut config = files.config(&pvh_elf(&pvh_code(true)));
    fs::write(files.path("disk.img"), vec![0u8; 1 << 20]).unwrap();
    config.block_devices.push(BlockDevice {
        path: files.path("disk.img"),
        read_only: true,
        serial: "scratch".into(),
    });
    // A tap the VMM creates (it is not persistent: it goes when the VMM
    // exits).
    let tap = format!("vsk{}", std::process::id() % 1_000_000);
    config.taps.push(NetTap {
        tap: tap.clone(),
        mac: Some("52:54:00:00:00:01".into()),
    });
    config.vcpus = 2;
    let vm = engine().boot(&config).unwrap();
    let mut guard = Guard(vm);
    let code = wait_exit(&mut guard.0, Duration::from_secs(10));
    let log = fs::read_to_string(files.path("vmm.log")).unwrap();
    assert_eq!(code, Some(0), "VMM log: {log}");
    assert!(log.contains("guest Reset"), "VMM log: {log}");
    let console = fs::read(files.path("console.log")).unwrap();
    // Magic's low byte 0x78, one module (the initramfs), three memory map
    // entries, 'c' of "console=ttyS0", then the greeting.
    assert_eq!(console, b"\x7813cpvh\n", "console: {console:?}");
    assert!(
        !Path::new("/sys/class/net").join(&tap).exists(),
        "tap {tap} left behind"
    );
}

#[test]
fn kvm_vmm_exits_on_acpi_power_off() {
    if !kvm_usable() {
        return;
    }
    let files = Files::new();
    let config = files.config(&pvh_elf(&pvh_code_ending(false, true)));
    let mut guard = Guard(engine().boot(&config).unwrap());
    let code = wait_exit(&mut guard.0, Duration::from_secs(10));
    let log = fs::read_to_string(files.path("vmm.log")).unwrap();
    assert_eq!(code, Some(0), "VMM log: {log}");
    assert!(fs::read(files.path("console.log"))
        .unwrap()
        .ends_with(b"pvh\n"));
}

#[test]
fn kvm_vmm_in_process_with_a_vsock_device() {
    use vessel_vm::devices::virtio::vsock::VsockConfig;
    use vessel_vm::engine::kvm::vmm::{KvmExtras, VmExit, Vmm};
    if !kvm_usable() {
        return;
    }
    let files = Files::new();
    // The guest reads the device id of the third virtio window (console,
    // rng, then vsock) and resets.
    let mut code = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    code.extend_from_slice(&[0xa1, 0x08, 0x20, 0x00, 0xd0, 0xee]); // mov eax, [0xd0002008]; out dx, al
    code.extend_from_slice(&[0xa1, 0x00, 0x21, 0x00, 0xd0, 0xee]); // mov eax, [0xd0002100] (guest_cid); out
    code.extend_from_slice(&[0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]);
    let config = files.config(&pvh_elf(&code));
    let extras = KvmExtras {
        vsock: Some(VsockConfig {
            guest_cid: 42,
            uds_path: files.path("vsock.sock"),
        }),
    };
    let vmm = Vmm::build_with(&config, &extras).unwrap();
    assert_eq!(vmm.virtio.len(), 3);
    assert!(files.path("vsock.sock").exists());
    assert_eq!(vmm.run(false).unwrap(), VmExit::Reset);
    assert_eq!(fs::read(files.path("console.log")).unwrap(), vec![19, 42]);
}

#[test]
fn kvm_vmm_refuses_a_bad_mac_address() {
    let files = Files::new();
    let mut config = files.config(&pvh_elf(&pvh_code(true)));
    config.taps.push(NetTap {
        tap: "vskbadmac".into(),
        mac: Some("52:54:00:zz:00:01".into()),
    });
    let mut guard = Guard(engine().boot(&config).unwrap());
    assert_eq!(wait_exit(&mut guard.0, Duration::from_secs(10)), Some(1));
    let log = fs::read_to_string(files.path("vmm.log")).unwrap();
    assert!(
        log.contains("vskbadmac") && log.contains("invalid MAC"),
        "log: {log}"
    );
    assert!(!Path::new("/sys/class/net/vskbadmac").exists());
}

#[test]
fn kvm_vmm_boots_a_bzimage_in_long_mode() {
    if !kvm_usable() {
        return;
    }
    let files = Files::new();
    let config = files.config(&bzimage(&linux64_code()));
    let mut guard = Guard(engine().boot(&config).unwrap());
    let code = wait_exit(&mut guard.0, Duration::from_secs(10));
    let log = fs::read_to_string(files.path("vmm.log")).unwrap();
    assert_eq!(code, Some(0), "VMM log: {log}");
    let console = fs::read(files.path("console.log")).unwrap();
    // Three e820 entries, 'H', loader type 0xff, PML4 entry flags 0x03.
    assert_eq!(console, b"3H\xff\x0364\n", "console: {console:?}");
}

#[test]
fn kvm_vmm_serves_the_agent_socket_while_the_guest_runs() {
    if !kvm_usable() {
        return;
    }
    let files = Files::new();
    let config = files.config(&pvh_elf(&pvh_code(false)));
    let mut guard = Guard(engine().boot(&config).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match UnixStream::connect(files.path("agent.sock")) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    guard.0.is_running(),
                    "VMM exited: {}",
                    guard.0.vmm_log_tail()
                );
                assert!(
                    Instant::now() < deadline,
                    "agent socket never accepted: {e}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // The guest never drives the console, so bytes wait in the VMM; the
    // connection and the VMM must both survive (the agent thread's
    // seccomp filter allows what serving a client takes).
    stream.write_all(b"hello agent").unwrap();
    drop(stream);
    let again = UnixStream::connect(files.path("agent.sock"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(again.is_ok());
    assert!(guard.0.is_running(), "VMM died: {}", guard.0.vmm_log_tail());
    let console = fs::read(files.path("console.log")).unwrap();
    assert!(console.ends_with(b"pvh\n"), "console: {console:?}");
    guard.0.kill().unwrap();
    assert!(!guard.0.is_running());
}

#[test]
fn kvm_vmm_reports_bad_configuration_in_its_log() {
    let files = Files::new();
    let mut config = files.config(b"not a kernel at all, neither ELF nor bzImage");
    config.memory_mib = 64;
    let mut guard = Guard(engine().boot(&config).unwrap());
    let code = wait_exit(&mut guard.0, Duration::from_secs(10));
    assert_eq!(code, Some(1));
    let log = fs::read_to_string(files.path("vmm.log")).unwrap();
    assert!(
        log.contains("kernel") && log.contains(&files.path("kernel").display().to_string()),
        "log: {log}"
    );
    assert!(
        !files.path("console.log").exists()
            || fs::read(files.path("console.log")).unwrap().is_empty()
    );
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("vessel-kvm-cache")
}

#[test]
fn kvm_probe_answers_with_a_reason_and_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine();
    // A stale answer of another kernel release or build is pruned.
    fs::write(cache.path().join("kvm-probe-0.0-old.json"), "{}").unwrap();
    let t = std::time::Instant::now();
    let first = engine.probe(cache.path()).unwrap();
    let took = t.elapsed();
    eprintln!(
        "kvm probe: usable={} ({}) in {took:?}",
        first.usable, first.detail
    );
    assert!(!first.cached);
    // Decided by capabilities and the two tiny guests, not by a boot.
    assert!(
        first.detail.contains("real-mode guest") || first.detail.contains("KVM lacks"),
        "{}",
        first.detail
    );
    assert!(!first.detail.is_empty());
    // Where hardware virtualization exists the stock kernel boots; on a
    // KVM-PVM host it cannot.
    assert_eq!(first.usable, hardware_virtualization(), "{}", first.detail);
    let second = engine.probe(cache.path()).unwrap();
    assert!(second.cached);
    assert_eq!(
        (second.usable, &second.detail),
        (first.usable, &first.detail)
    );
    // Nothing of the probe run is left behind but the answer.
    let left: Vec<_> = fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn engine_selection_follows_the_probe() {
    let kernel = match GuestKernel::locate() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("SKIPPED engine_selection_follows_the_probe: {e}");
            return;
        }
    };
    if vessel_vm::engine::qemu::find_qemu().is_err() && !hardware_virtualization() {
        eprintln!(
            "SKIPPED engine_selection_follows_the_probe: no qemu-system-x86_64 to fall back to"
        );
        return;
    }
    // A cache kept across runs: the two probes take 15 s each here.
    let sel = select_engine(engine(), &kernel.image, &cache_dir()).unwrap();
    eprintln!("selected: {} ({})", sel.engine.name(), sel.reason);
    if hardware_virtualization() {
        assert_eq!(sel.engine.name(), "kvm", "{}", sel.reason);
    } else {
        assert_eq!(sel.engine.name(), "qemu", "{}", sel.reason);
        assert!(
            sel.reason.contains("the kvm engine cannot boot"),
            "{}",
            sel.reason
        );
    }
}

#[test]
fn kvm_linux_boot_reaches_the_agent() {
    if !hardware_virtualization() {
        eprintln!(
            "SKIPPED kvm_linux_boot_reaches_the_agent: /proc/cpuinfo shows neither vmx nor svm \
             (this host's KVM cannot run a stock Linux guest)"
        );
        return;
    }
    let kernel = GuestKernel::locate().expect("guest kernel (linux-image-cloud-amd64)");
    let cache = cache_dir();
    // The initramfs: the kernel's modules and a static busybox as /init is
    // not an agent; use the crate's test agent, built static.
    let agent = build_static_agent();
    let initramfs = vessel_vm::guest::InitramfsBuilder::new(&agent)
        .modules(&kernel, vessel_vm::guest::DEFAULT_MODULES)
        .unwrap()
        .build(&cache)
        .unwrap();
    let files = Files::new();
    let mut config = VmConfig::new(
        kernel.image.clone(),
        initramfs.path.clone(),
        files.path("agent.sock"),
    );
    config.console_log = Some(files.path("console.log"));
    config.vmm_log = Some(files.path("vmm.log"));
    config.die_with_parent = true;
    let start = Instant::now();
    let mut guard = Guard(engine().boot(&config).unwrap());
    let client = guard.0.connect_agent(Duration::from_secs(30)).unwrap();
    let hello = client.wait_hello(Duration::from_secs(30));
    let console = fs::read_to_string(files.path("console.log")).unwrap_or_default();
    let info = hello.unwrap_or_else(|e| panic!("no hello: {e}\nconsole:\n{console}"));
    eprintln!("agent hello after {:?}: {info:?}", start.elapsed());
}

/// Builds `examples/test-agent.rs` statically in its own target directory.
fn build_static_agent() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vessel-vm-static");
    let triple = "x86_64-unknown-linux-gnu";
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "vessel-vm",
            "--example",
            "test-agent",
            "--target",
            triple,
        ])
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=debuginfo",
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join(triple).join("debug/examples/test-agent")
}

/// The confined monitor reaches no host file: its root is an empty
/// read-only tmpfs in a mount namespace of its own, it runs as an
/// unprivileged uid with no capabilities and seccomp on, and the host's
/// mount table does not change.
#[test]
fn kvm_vmm_is_confined_and_cannot_reach_host_files() {
    if !kvm_usable() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED kvm_vmm_is_confined_and_cannot_reach_host_files: needs root");
        return;
    }
    let files = Files::new();
    // A guest that writes its greeting and halts: the VMM keeps running.
    let config = files.config(&pvh_elf(&pvh_code(false)));
    let secret = files.path("host-secret");
    fs::write(&secret, "not for the monitor").unwrap();
    let mut guard = Guard(engine().boot(&config).unwrap());
    let pid = guard.0.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = fs::read_to_string(files.path("vmm.log")).unwrap_or_default();
        if log.contains("confined") || Instant::now() > deadline {
            break log;
        }
        assert!(guard.0.is_running(), "VMM exited: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(log.contains("confined: empty root, uid 65534"), "{log}");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("Gid:"), "65534 65534 65534 65534", "{status}");
    assert_eq!(field("Groups:"), "", "{status}");
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(set), "0000000000000000", "{set} {status}");
    }
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    // Its root holds nothing: no path leads to the host's files, not even
    // to the file next to its own socket.
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let entries: Vec<_> = fs::read_dir(&root).unwrap().collect();
    assert!(entries.is_empty(), "monitor root not empty: {entries:?}");
    let seen_secret = root.join(secret.strip_prefix("/").unwrap());
    assert!(
        !seen_secret.exists(),
        "{} visible to the monitor",
        secret.display()
    );
    assert!(!root.join("etc/passwd").exists());
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap(),
        "the monitor shares the host's mount namespace"
    );
    // The agent socket it bound before confining itself still answers.
    assert!(UnixStream::connect(files.path("agent.sock")).is_ok());
    // The tmpfs over its socket's directory exists only in its namespace
    // (the host's mount table is shared with other work, so only this
    // directory is checked).
    let dir = files.dir.path().display().to_string();
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.lines().any(|l| l.contains(&dir)),
        "the monitor's mount reached the host: {host_mounts}"
    );
    guard.0.kill().unwrap();
}
