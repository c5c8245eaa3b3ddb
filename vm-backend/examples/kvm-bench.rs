//! Benchmark of the kvm engine: time from starting the VMM process to a
//! marker on the guest console, the VMM's CPU time until then, and its
//! memory overhead (resident memory outside guest RAM).
//!
//! ```text
//! cargo build --release -p vessel-vm --bin vessel-kvm-vmm --example kvm-bench
//! target/release/examples/kvm-bench [--runs N] [--json FILE] [--vmm PATH]
//!     [--kernel K --initramfs I --marker TEXT] [--memory MIB]
//! ```
//!
//! Without `--kernel` the guest is a test kernel built here (an ELF with a
//! PVH entry that prints a marker and halts), which any KVM runs: it
//! measures the VMM's own start-up (process start, KVM setup, loading,
//! ACPI, vCPU start). With a Linux kernel and initramfs and `--marker
//! "Run /init"`, it measures VMM start to guest init, Firecracker's
//! figure (goal <= 125 ms, <= 5 MiB overhead); that needs a host whose
//! /proc/cpuinfo shows vmx or svm.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vessel_vm::engine::kvm::KvmEngine;
use vessel_vm::engine::{Engine, VmConfig};

struct Args {
    runs: usize,
    json: Option<PathBuf>,
    vmm: PathBuf,
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    marker: String,
    memory_mib: u32,
}

fn parse() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/kvm-bench -> target/<profile>/vessel-kvm-vmm
    let default_vmm = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("vessel-kvm-vmm"))
        .unwrap_or_default();
    let mut a = Args {
        runs: 20,
        json: None,
        vmm: default_vmm,
        kernel: None,
        initramfs: None,
        marker: "vessel-bench-ready".into(),
        memory_mib: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--json" => a.json = Some(val()?.into()),
            "--vmm" => a.vmm = val()?.into(),
            "--kernel" => a.kernel = Some(val()?.into()),
            "--initramfs" => a.initramfs = Some(val()?.into()),
            "--marker" => a.marker = val()?,
            "--memory" => a.memory_mib = val()?.parse().map_err(|e| format!("--memory: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.kernel.is_some() != a.initramfs.is_some() {
        return Err("--kernel and --initramfs go together".into());
    }
    Ok(a)
}

/// A PVH ELF whose 32-bit entry prints `marker` on COM1 and halts.
fn test_kernel(marker: &str) -> Vec<u8> {
    let mut code = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    for b in marker.bytes().chain(*b"\n") {
        code.extend_from_slice(&[0xb0, b, 0xee]); // mov al, b; out dx, al
    }
    code.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // hlt; jmp hlt
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
    f.extend_from_slice(&code);
    f
}

/// Resident KiB of the VMM outside the guest RAM mappings (anonymous
/// mappings exactly the size of a RAM region), and in total.
fn rss_kib(pid: i32, guest_sizes_kib: &[u64]) -> (u64, u64) {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut total, mut guest) = (0u64, 0u64);
    let mut size = 0u64;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        match (f.next(), f.next()) {
            (Some("Size:"), Some(v)) => size = v.parse().unwrap_or(0),
            (Some("Rss:"), Some(v)) => {
                let v: u64 = v.parse().unwrap_or(0);
                total += v;
                if guest_sizes_kib.contains(&size) {
                    guest += v;
                }
            }
            _ => {}
        }
    }
    (total - guest, total)
}

/// CPU time of all threads of `pid` so far, in milliseconds (from each
/// thread's schedstat, which counts nanoseconds, where utime/stime count
/// 10 ms ticks).
fn cpu_ms(pid: i32) -> f64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    ns as f64 / 1e6
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let med = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (med, v[0], v[v.len() - 1])
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kvm-bench: {e}");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let (kernel, initramfs, guest) = match (&args.kernel, &args.initramfs) {
        (Some(k), Some(i)) => (k.clone(), i.clone(), "linux"),
        _ => {
            let k = dir.path().join("test-kernel");
            fs::write(&k, test_kernel(&args.marker)).expect("writing the test kernel");
            let i = dir.path().join("initrd");
            fs::write(&i, b"-").expect("writing the initrd");
            (k, i, "test-pvh")
        }
    };
    let engine = KvmEngine::new(args.vmm.clone(), Vec::new());
    let mut boot_ms = Vec::new();
    let mut cpu = Vec::new();
    let mut overhead = Vec::new();
    let mut total = Vec::new();
    // RAM regions as the VMM maps them (below and above the MMIO gap).
    let mem_kib = u64::from(args.memory_mib) * 1024;
    let below = mem_kib.min(3 << 20);
    let guest_sizes = [below, mem_kib - below];
    for run in 0..args.runs {
        let console = dir.path().join(format!("console-{run}"));
        let mut config = VmConfig::new(
            kernel.clone(),
            initramfs.clone(),
            dir.path().join(format!("agent-{run}.sock")),
        );
        config.memory_mib = args.memory_mib;
        config.console_log = Some(console.clone());
        config.vmm_log = Some(dir.path().join(format!("vmm-{run}.log")));
        config.die_with_parent = true;
        let start = Instant::now();
        let mut vm = match engine.boot(&config) {
            Ok(vm) => vm,
            Err(e) => {
                eprintln!("kvm-bench: starting the VMM: {e}");
                std::process::exit(1);
            }
        };
        let elapsed = loop {
            if fs::read(&console)
                .map(|c| {
                    c.windows(args.marker.len())
                        .any(|w| w == args.marker.as_bytes())
                })
                .unwrap_or(false)
            {
                break start.elapsed();
            }
            if !vm.is_running() || start.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "kvm-bench: run {run}: no {:?} on the console ({}): {}",
                    args.marker,
                    if vm.is_running() {
                        "timeout"
                    } else {
                        "VMM exited"
                    },
                    vm.vmm_log_tail()
                );
                let _ = vm.kill();
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let pid = vm.pid();
        cpu.push(cpu_ms(pid));
        let (vmm_kib, all_kib) = rss_kib(pid, &guest_sizes);
        overhead.push(vmm_kib as f64);
        total.push(all_kib as f64);
        boot_ms.push(elapsed.as_secs_f64() * 1000.0);
        let _ = vm.kill();
    }
    let rows = [
        ("start to marker (ms)", stats(&mut boot_ms)),
        ("VMM CPU until marker (ms)", stats(&mut cpu)),
        ("VMM RSS outside guest RAM (KiB)", stats(&mut overhead)),
        ("VMM RSS total (KiB)", stats(&mut total)),
    ];
    println!(
        "kvm engine, guest {guest}, {} MiB, {} runs, marker {:?}",
        args.memory_mib, args.runs, args.marker
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "metric", "median", "min", "max"
    );
    for (name, (med, min, max)) in &rows {
        println!("{name:<34} {med:>10.2} {min:>10.2} {max:>10.2}");
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "engine": "kvm",
            "guest": guest,
            "memory_mib": args.memory_mib,
            "runs": args.runs,
            "marker": args.marker,
            "metrics": rows.iter().map(|(n, (med, min, max))| serde_json::json!({
                "name": n, "median": med, "min": min, "max": max
            })).collect::<Vec<_>>(),
        });
        if let Err(e) = fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default()) {
            eprintln!("kvm-bench: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
