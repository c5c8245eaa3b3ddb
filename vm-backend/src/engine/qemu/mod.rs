//! The QEMU engine: `qemu-system-x86_64 -M microvm` with virtio-mmio
//! devices, KVM when a real boot probe shows the host's KVM can run the
//! guest kernel, TCG otherwise.

mod probe;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use probe::{probe_accelerator, ProbeResult};

use super::{Engine, VmConfig, VmHandle};
use crate::agent::AGENT_PORT_NAME;
use crate::{Error, Result};

/// The QEMU binary looked up in `PATH` by default.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// TSC frequency given to the guest under TCG: without it the kernel
/// calibrates the emulated TSC and some boots hang doing so.
pub const TCG_TSC_KHZ: u32 = 2_100_000;

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's binary translator.
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The QEMU `microvm` engine.
#[derive(Debug, Clone)]
pub struct QemuEngine {
    binary: PathBuf,
    accel: Accel,
}

impl QemuEngine {
    /// An engine using `binary` with the given accelerator.
    pub fn new(binary: PathBuf, accel: Accel) -> Self {
        QemuEngine { binary, accel }
    }

    /// Finds QEMU in `PATH` and picks the accelerator by probing (or from
    /// the probe's cache in `cache_dir`) with the guest kernel `kernel`.
    pub fn detect(kernel: &Path, cache_dir: &Path) -> Result<(Self, ProbeResult)> {
        let binary = find_qemu()?;
        let probe = probe_accelerator(&binary, kernel, cache_dir)?;
        Ok((QemuEngine::new(binary, probe.accel), probe))
    }

    /// The QEMU binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The accelerator.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The kernel command line for `config`: serial console, no reboot on
    /// panic, the TSC frequency under TCG, then the caller's options.
    pub fn cmdline(&self, config: &VmConfig) -> String {
        let mut line = String::from("console=ttyS0 panic=-1 reboot=t quiet");
        if self.accel == Accel::Tcg {
            line.push_str(&format!(" tsc_early_khz={TCG_TSC_KHZ}"));
        }
        if !config.cmdline.is_empty() {
            line.push(' ');
            line.push_str(&config.cmdline);
        }
        line
    }

    /// The full QEMU argument list for `config`.
    pub fn args(&self, config: &VmConfig) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-M");
        push("microvm");
        push("-accel");
        push(self.accel.as_str());
        push("-cpu");
        push(match self.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        });
        push("-smp");
        push(&config.vcpus.to_string());
        push("-m");
        push(&format!("{}M", config.memory_mib));
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            push(flag);
        }
        // Serial console (the kernel log).
        push("-chardev");
        match &config.console_log {
            Some(log) => push(&format!("file,id=console,path={}", opt_path(log))),
            None => push("null,id=console"),
        }
        push("-serial");
        push("chardev:console");
        // The agent stream: a virtio-serial port backed by a unix socket
        // on which QEMU listens.
        push("-device");
        push("virtio-serial-device,id=vser0");
        push("-chardev");
        push(&format!(
            "socket,id=agent,path={},server=on,wait=off",
            opt_path(&config.agent_socket)
        ));
        push("-device");
        push(&format!(
            "virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT_NAME}"
        ));
        for (i, dev) in config.block_devices.iter().enumerate() {
            push("-drive");
            push(&format!(
                "id=blk{i},file={},format=raw,if=none,readonly={}",
                opt_path(&dev.path),
                if dev.read_only { "on" } else { "off" }
            ));
            push("-device");
            push(&format!(
                "virtio-blk-device,drive=blk{i},serial={}",
                dev.serial
            ));
        }
        for (i, tap) in config.taps.iter().enumerate() {
            push("-netdev");
            push(&format!(
                "tap,id=net{i},ifname={},script=no,downscript=no",
                tap.tap
            ));
            push("-device");
            match &tap.mac {
                Some(mac) => push(&format!("virtio-net-device,netdev=net{i},mac={mac}")),
                None => push(&format!("virtio-net-device,netdev=net{i}")),
            }
        }
        a.push("-kernel".into());
        a.push(config.kernel.clone().into());
        a.push("-initrd".into());
        a.push(config.initramfs.clone().into());
        a.push("-append".into());
        a.push(self.cmdline(config).into());
        a
    }
}

impl Engine for QemuEngine {
    fn name(&self) -> &str {
        "qemu"
    }

    fn accelerator(&self) -> &str {
        self.accel.as_str()
    }

    fn boot(&self, config: &VmConfig) -> Result<VmHandle> {
        config.validate()?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args(config));
        super::spawn_vmm(cmd, config, |e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingProgram {
                program: self.binary.display().to_string(),
                package: "qemu-system-x86".into(),
            },
            _ => Error::io(format!("starting {}", self.binary.display()), e),
        })
    }
}

/// Finds `qemu-system-x86_64` in `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(QEMU_BINARY))
        .find(|p| File::open(p).is_ok())
        .ok_or_else(|| Error::MissingProgram {
            program: QEMU_BINARY.into(),
            package: "qemu-system-x86".into(),
        })
}

/// A path as a QEMU option value: commas are doubled.
fn opt_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BlockDevice, NetTap};

    fn config() -> VmConfig {
        let mut c = VmConfig::new(
            "/boot/vmlinuz".into(),
            "/tmp/initrd,1.img".into(),
            "/run/vessel/a.sock".into(),
        );
        c.block_devices.push(BlockDevice {
            path: "/img/root.erofs".into(),
            read_only: true,
            serial: "rootfs".into(),
        });
        c.taps.push(NetTap {
            tap: "tap0".into(),
            mac: Some("52:54:00:00:00:01".into()),
        });
        c.cmdline = "vessel.debug=1".into();
        c
    }

    fn joined(engine: &QemuEngine) -> String {
        engine
            .args(&config())
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tcg_arguments() {
        let args = joined(&QemuEngine::new("qemu".into(), Accel::Tcg));
        for want in [
            "-M microvm -accel tcg -cpu max",
            "-nodefaults -no-user-config -nographic",
            "virtserialport,bus=vser0.0,chardev=agent,name=io.vessel.agent",
            "socket,id=agent,path=/run/vessel/a.sock,server=on,wait=off",
            "id=blk0,file=/img/root.erofs,format=raw,if=none,readonly=on",
            "virtio-blk-device,drive=blk0,serial=rootfs",
            "tap,id=net0,ifname=tap0,script=no,downscript=no",
            "virtio-net-device,netdev=net0,mac=52:54:00:00:00:01",
            "-initrd /tmp/initrd,1.img",
            "tsc_early_khz=2100000 vessel.debug=1",
        ] {
            assert!(args.contains(want), "missing {want:?} in {args}");
        }
    }

    #[test]
    fn kvm_arguments() {
        let args = joined(&QemuEngine::new("qemu".into(), Accel::Kvm));
        assert!(args.contains("-accel kvm -cpu host"), "{args}");
        assert!(!args.contains("tsc_early_khz"), "{args}");
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut c = config();
        c.vcpus = 0;
        assert!(c.validate().unwrap_err().to_string().contains("vcpus"));
    }
}
