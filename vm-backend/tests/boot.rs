//! End to end: build a static agent, pack it with busybox and the kernel
//! modules into an initramfs, boot it with the QEMU engine (TCG on hosts
//! whose KVM cannot run the guest) and run processes through the agent.
//!
//! Skips with a printed reason when QEMU, the guest kernel or a static
//! busybox is missing. Timings are printed; run with `--nocapture` to see
//! them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oci_spec::runtime::{Process, ProcessBuilder};
use vessel_vm::agent::host::AgentClient;
use vessel_vm::agent::{GuestRootfs, RunProcess};
use vessel_vm::engine::qemu::{find_qemu, QemuEngine};
use vessel_vm::engine::{BlockDevice, Engine, VmConfig, VmHandle};
use vessel_vm::guest::{
    build_rootfs_image, create_scratch_image, GuestKernel, ImageFormat, InitramfsBuilder,
    DEFAULT_MODULES,
};

const BUSYBOX: &str = "/bin/busybox";

/// Kills the VMM by its own pid and removes its socket, whatever happens.
struct VmGuard {
    handle: VmHandle,
    console_log: PathBuf,
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        let _ = self.handle.kill();
        let _ = fs::remove_file(self.handle.agent_socket());
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.console_log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- guest console (last 40 lines) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
            eprintln!("--- VMM log ---\n{}", self.handle.vmm_log_tail());
        }
    }
}

fn is_static(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    let needle = b"/lib64/ld-linux";
    !bytes.windows(needle.len()).any(|w| w == needle)
}

/// Builds `examples/test-agent.rs` as a static executable in a target
/// directory of its own (the outer cargo holds the lock on the main one).
fn build_static_agent() -> Result<PathBuf, String> {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vessel-vm-static");
    let triple = "x86_64-unknown-linux-gnu";
    let out = Command::new(env!("CARGO"))
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
        .map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the static test agent failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = target_dir.join(triple).join("debug/examples/test-agent");
    if !is_static(&bin) {
        return Err(format!("{} is not statically linked", bin.display()));
    }
    Ok(bin)
}

fn process(args: &[&str], env: &[&str], cwd: &str) -> Process {
    ProcessBuilder::default()
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .cwd(cwd)
        .build()
        .expect("process")
}

fn run(client: &AgentClient, id: u32, process: Process) -> vessel_vm::agent::host::ProcessOutput {
    client
        .run_process(RunProcess {
            id,
            process,
            rootfs: None,
            mounts: Vec::new(),
            hostname: None,
            ..Default::default()
        })
        .expect("send RunProcess");
    client
        .wait_process(id, Some(Duration::from_secs(120)))
        .expect("process result")
}

#[test]
fn boot_guest_and_run_busybox() {
    let qemu = match find_qemu() {
        Ok(q) => q,
        Err(e) => {
            eprintln!("SKIPPED boot_guest_and_run_busybox: {e}");
            return;
        }
    };
    let kernel = match GuestKernel::locate() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("SKIPPED boot_guest_and_run_busybox: {e}");
            return;
        }
    };
    if !is_static(Path::new(BUSYBOX)) {
        eprintln!("SKIPPED boot_guest_and_run_busybox: {BUSYBOX} missing or not static; install busybox-static");
        return;
    }

    let t = Instant::now();
    let agent = build_static_agent().expect("static agent");
    eprintln!("static agent ready in {:.1}s", t.elapsed().as_secs_f64());

    // The cache outlives the test so the accelerator probe runs once.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vessel-vm-cache");
    let work = tempfile::tempdir().expect("tempdir");

    let t = Instant::now();
    let initramfs = InitramfsBuilder::new(&agent)
        .file(Path::new(BUSYBOX), "/bin/busybox", 0o755)
        .modules(&kernel, DEFAULT_MODULES)
        .expect("modules")
        .build(&cache)
        .expect("initramfs");
    eprintln!(
        "initramfs {} ({} KiB, {}) in {:.3}s",
        initramfs.path.display(),
        fs::metadata(&initramfs.path)
            .map(|m| m.len() / 1024)
            .unwrap_or(0),
        if initramfs.cached { "cached" } else { "built" },
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let (engine, probe) = QemuEngine::detect(&kernel.image, &cache).expect("probe");
    assert_eq!(engine.binary(), qemu);
    eprintln!(
        "accelerator {} ({}{}) in {:.2}s",
        engine.accelerator(),
        probe.detail,
        if probe.cached { ", cached" } else { "" },
        t.elapsed().as_secs_f64()
    );

    // A container root filesystem: busybox and a marker file, as an erofs
    // image, with a sparse ext4 scratch image for the overlay's upper layer.
    let tree = work.path().join("rootfs");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::copy(BUSYBOX, tree.join("bin/busybox")).unwrap();
    fs::write(tree.join("etc/marker"), "from the rootfs image\n").unwrap();
    let t = Instant::now();
    let image = build_rootfs_image(&tree, ImageFormat::Erofs, &work.path().join("images"))
        .expect("rootfs image");
    let scratch = work.path().join("scratch.ext4");
    create_scratch_image(&scratch, 64).expect("scratch image");
    eprintln!(
        "rootfs image and scratch built in {:.3}s",
        t.elapsed().as_secs_f64()
    );

    let mut config = VmConfig::new(
        kernel.image.clone(),
        initramfs.path.clone(),
        work.path().join("agent.sock"),
    );
    config.console_log = Some(work.path().join("console.log"));
    config.vmm_log = Some(work.path().join("vmm.log"));
    config.die_with_parent = true;
    config.block_devices = vec![
        BlockDevice {
            path: image.path.clone(),
            read_only: true,
            serial: "rootfs".into(),
        },
        BlockDevice {
            path: scratch.clone(),
            read_only: false,
            serial: "scratch".into(),
        },
    ];

    let boot_start = Instant::now();
    let mut vm = VmGuard {
        handle: engine.boot(&config).expect("boot"),
        console_log: work.path().join("console.log"),
    };
    eprintln!("VMM pid {}", vm.handle.pid());
    let client = vm
        .handle
        .connect_agent(Duration::from_secs(30))
        .expect("agent socket");
    let info = client
        .wait_hello(Duration::from_secs(120))
        .expect("hello from the agent");
    let to_hello = boot_start.elapsed();
    eprintln!(
        "hello from {} on kernel {} after {:.2}s (guest uptime: /init at {} ms, agent ready at {} ms)",
        info.agent,
        info.kernel,
        to_hello.as_secs_f64(),
        info.init_ms.map_or("?".into(), |v| v.to_string()),
        info.ready_ms.map_or("?".into(), |v| v.to_string()),
    );
    assert_eq!(info.kernel, kernel.release);

    let out = run(
        &client,
        1,
        process(&["/bin/busybox", "echo", "hello"], &["PATH=/bin"], "/"),
    );
    let to_exit = boot_start.elapsed();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(out.code, 0);
    eprintln!(
        "echo hello: exit {} at {:.2}s after qemu start ({:.3}s after hello)",
        out.code,
        to_exit.as_secs_f64(),
        (to_exit - to_hello).as_secs_f64()
    );

    let out = run(
        &client,
        2,
        process(
            &[
                "/bin/busybox",
                "sh",
                "-c",
                "echo $GREETING; pwd; echo oops >&2; exit 3",
            ],
            &["PATH=/bin", "GREETING=hi there"],
            "/tmp",
        ),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n/tmp\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.code, 3);
    eprintln!("second process: exit {}", out.code);

    // Signals reach the process: 128 + SIGKILL.
    client
        .run_process(RunProcess {
            id: 3,
            process: process(&["/bin/busybox", "sleep", "60"], &[], "/"),
            rootfs: None,
            mounts: Vec::new(),
            hostname: None,
            ..Default::default()
        })
        .expect("send RunProcess");
    // The agent handles frames in order: the process is registered before
    // the signal is read.
    client.signal(3, 9).expect("signal");
    let out = client
        .wait_process(3, Some(Duration::from_secs(60)))
        .expect("killed process");
    assert_eq!((out.code, out.signal), (137, Some(9)));

    // The container's root: the erofs image under an overlay whose upper
    // layer is on the scratch disk. The initramfs (its /init) is not seen.
    client
        .run_process(RunProcess {
            id: 4,
            process: process(
                &[
                    "/bin/busybox",
                    "sh",
                    "-c",
                    "busybox cat /etc/marker; echo written > /new; busybox cat /new; busybox ls /",
                ],
                &["PATH=/bin"],
                "/",
            ),
            rootfs: Some(GuestRootfs {
                device_serial: "rootfs".into(),
                fstype: image.format.fstype().into(),
                writable_serial: Some("scratch".into()),
            }),
            mounts: Vec::new(),
            hostname: None,
            ..Default::default()
        })
        .expect("send RunProcess");
    let out = client
        .wait_process(4, Some(Duration::from_secs(120)))
        .expect("process in the rootfs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "rootfs process: exit {}, stdout {:?}, stderr {:?}",
        out.code,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = stdout.lines().skip(2).collect();
    assert_eq!(
        &stdout.lines().take(2).collect::<Vec<_>>(),
        &["from the rootfs image", "written"]
    );
    assert_eq!(names, ["bin", "etc", "new"], "{stdout}");
    // exec runs in the same root and sees the write.
    client
        .exec(5, process(&["/bin/busybox", "cat", "/new"], &[], "/"))
        .expect("exec");
    let out = client
        .wait_process(5, Some(Duration::from_secs(60)))
        .expect("exec result");
    assert_eq!(out.stdout, b"written\n");
    eprintln!("rootfs overlay: read the image, wrote the scratch layer");

    // Power off: the VMM exits by itself.
    let t = Instant::now();
    client.shutdown().expect("shutdown");
    while vm.handle.is_running() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "guest {} {:.2}s after shutdown",
        if vm.handle.is_running() {
            "still running (killed)"
        } else {
            "powered off"
        },
        t.elapsed().as_secs_f64()
    );
    drop(vm);
    assert!(!work.path().join("agent.sock").exists());
}
