//! vm-mode start-up: what `vessel run` of a vm-mode container costs from
//! `create` to the workload's first output and to its exit, beside a bare
//! QEMU boot of the same kernel and initramfs (QEMU started, the guest
//! agent's greeting, power-off), with the image builds split out (cold:
//! an empty cache; cached: the lookup `create` does every time). The
//! engine and the accelerator are named in the table and the JSON; on
//! KVM-PVM hosts that is QEMU under TCG.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use vessel_vm::engine::qemu::{find_qemu, probe_accelerator, QemuEngine};
use vessel_vm::engine::{Engine, VmConfig};
use vessel_vm::guest::{
    build_rootfs_image, GuestKernel, ImageFormat, InitramfsBuilder, DEFAULT_MODULES,
};

use crate::stats::{ratio, Summary};
use crate::table::{num, Table};
use crate::{bundle, sys, write_json};

/// Options of `vessel-bench vm-startup`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The static vessel binary (it is also the guest agent).
    pub vessel: PathBuf,
    /// Measured runs of each case.
    pub runs: usize,
    /// Scratch directory (bundle, caches).
    pub tmpdir: PathBuf,
    /// Where to write the JSON.
    pub json: PathBuf,
}

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs the suite, prints the table and writes the JSON.
pub fn run(opts: &Options) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("vessel-vm-startup-")
        .tempdir_in(&opts.tmpdir)
        .context("scratch directory")?;
    let kernel = GuestKernel::locate().context("guest kernel")?;
    let qemu = find_qemu().context("qemu")?;
    let cache = work.path().join("cache");
    std::fs::create_dir_all(&cache)?;
    let probe = probe_accelerator(&qemu, &kernel.image, &cache).context("accelerator probe")?;
    let accel = probe.accel;
    eprintln!(
        "vm-startup: engine qemu, accelerator {} ({}), kernel {}",
        accel.as_str(),
        probe.detail,
        kernel.release
    );

    // The bundle: busybox, `echo ready`.
    let bundle_dir = work.path().join("bundle");
    bundle::make_rootfs(&bundle_dir.join("rootfs"))?;
    let mut config = bundle::vessel_spec(&opts.vessel, &["echo", "ready"])?;
    bundle::set_annotation(&mut config, "io.vessel.isolation", "vm");
    bundle::write_config(&bundle_dir, &config)?;
    let vessel_config = work.path().join("vessel.toml");
    std::fs::write(
        &vessel_config,
        format!("[vm]\ncache_dir = {:?}\n", cache.display().to_string()),
    )?;

    // Image builds: cold (empty cache) and cached (what every create does).
    let mut cold_initramfs = Vec::new();
    let mut cold_rootfs = Vec::new();
    let mut cached_initramfs = Vec::new();
    let mut cached_rootfs = Vec::new();
    for i in 0..opts.runs {
        sys::check_interrupted()?;
        let c = work.path().join(format!("cold-{i}"));
        let t = Instant::now();
        InitramfsBuilder::new(&opts.vessel)
            .modules(&kernel, DEFAULT_MODULES)?
            .build(&c)?;
        cold_initramfs.push(ms(t));
        let t = Instant::now();
        build_rootfs_image(&bundle_dir.join("rootfs"), ImageFormat::Erofs, &c)?;
        cold_rootfs.push(ms(t));
        std::fs::remove_dir_all(&c)?;
        let t = Instant::now();
        InitramfsBuilder::new(&opts.vessel)
            .modules(&kernel, DEFAULT_MODULES)?
            .build(&cache)?;
        cached_initramfs.push(ms(t));
        let t = Instant::now();
        build_rootfs_image(&bundle_dir.join("rootfs"), ImageFormat::Erofs, &cache)?;
        cached_rootfs.push(ms(t));
    }
    let initramfs = InitramfsBuilder::new(&opts.vessel)
        .modules(&kernel, DEFAULT_MODULES)?
        .build(&cache)?;

    // Bare QEMU: the same kernel and initramfs, no vessel around it.
    let engine = QemuEngine::new(qemu.clone(), accel);
    let mut bare_hello = Vec::new();
    let mut bare_total = Vec::new();
    for i in 0..opts.runs {
        sys::check_interrupted()?;
        let mut cfg = VmConfig::new(
            kernel.image.clone(),
            initramfs.path.clone(),
            work.path().join(format!("bare-{i}.sock")),
        );
        cfg.die_with_parent = true;
        let t = Instant::now();
        let mut vm = engine.boot(&cfg)?;
        let agent = vm.connect_agent(Duration::from_secs(90))?;
        agent.wait_hello(Duration::from_secs(90))?;
        bare_hello.push(ms(t));
        agent.shutdown()?;
        vm.wait()?;
        bare_total.push(ms(t));
        let _ = std::fs::remove_file(&cfg.agent_socket);
    }

    // vessel run: create to first output, and to exit (delete included).
    let mut first = Vec::new();
    let mut total = Vec::new();
    let root = work.path().join("state");
    for i in 0..opts.runs {
        sys::check_interrupted()?;
        let t = Instant::now();
        let mut child = Command::new(&opts.vessel)
            .arg("--root")
            .arg(&root)
            .arg("--config")
            .arg(&vessel_config)
            .args(["run", "--bundle"])
            .arg(&bundle_dir)
            .arg(format!("vmstart-{}-{i}", std::process::id()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("vessel run")?;
        let mut out = child.stdout.take().expect("piped");
        let mut byte = [0u8; 1];
        let got = out.read(&mut byte)?;
        let first_ms = ms(t);
        let mut rest = Vec::new();
        out.read_to_end(&mut rest)?;
        let status = child.wait()?;
        let total_ms = ms(t);
        if got == 0 || !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("vessel run failed ({status}): {err}");
        }
        first.push(first_ms);
        total.push(total_ms);
    }

    let s = |v: &[f64]| Summary::of(v);
    let rows: Vec<(&str, Option<Summary>)> = vec![
        ("initramfs build, cold", s(&cold_initramfs)),
        ("rootfs image build, cold", s(&cold_rootfs)),
        ("initramfs lookup, cached", s(&cached_initramfs)),
        ("rootfs image lookup, cached", s(&cached_rootfs)),
        ("bare QEMU: start to agent hello", s(&bare_hello)),
        ("bare QEMU: start to power-off", s(&bare_total)),
        ("vessel run: create to first output", s(&first)),
        ("vessel run: create to exit (deleted)", s(&total)),
    ];
    let mut table = Table::new(&["step", "median ms", "min ms", "max ms"]);
    for (name, sum) in &rows {
        table.row(vec![
            name.to_string(),
            num(sum.map(|x| x.median), 1),
            num(sum.map(|x| x.min), 1),
            num(sum.map(|x| x.max), 1),
        ]);
    }
    let med = |v: &[f64]| Summary::of(v).map(|x| x.median).unwrap_or(f64::NAN);
    let first_ratio = ratio(med(&first), med(&bare_hello));
    let total_ratio = ratio(med(&total), med(&bare_total));
    println!(
        "vm-startup: engine qemu, accelerator {} ({} runs each)\n{}",
        accel.as_str(),
        opts.runs,
        table.render()
    );
    println!(
        "vessel / bare QEMU: first output {} (hello), exit {} (power-off); goal <= 1.10",
        num(first_ratio, 2),
        num(total_ratio, 2)
    );
    let doc: Value = json!({
        "suite": "vm-startup",
        "date": sys::now_utc(),
        "host_kernel": sys::kernel(),
        "load": sys::loadavg(),
        "engine": "qemu",
        "qemu": qemu,
        "accelerator": accel.as_str(),
        "accelerator_reason": probe.detail,
        "guest_kernel": kernel.release,
        "runs": opts.runs,
        "steps": rows.iter().map(|(n, s)| json!({"step": n, "ms": s})).collect::<Vec<_>>(),
        "ratio_first_output_to_bare_hello": first_ratio,
        "ratio_exit_to_bare_power_off": total_ratio,
    });
    write_json(&opts.json, &doc)?;
    eprintln!("vm-startup: wrote {}", opts.json.display());
    Ok(())
}
