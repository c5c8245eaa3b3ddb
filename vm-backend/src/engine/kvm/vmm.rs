//! The monitor: builds a [`Machine`] and its devices (through the
//! [`DeviceManager`]) from a [`VmConfig`], loads the kernel with the
//! architecture's boot protocol and runs until the guest resets or powers
//! off.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use linux_loader::cmdline::Cmdline;

use super::arch::x86_64::boot::Entry;
use super::arch::x86_64::{self as arch, layout};
use super::device_manager::{ConsoleTail, DeviceManager, VirtioSlot};
use super::machine::Machine;
use super::vcpu::{Vcpu, VcpuStop};
use super::{seccomp, KvmError};
use crate::devices::virtio::console::AgentSocket;
use crate::devices::virtio::host_io::HostIo;
use crate::devices::virtio::vsock::VsockConfig;
use crate::engine::VmConfig;

/// The engine's part of the kernel command line: the serial console
/// (quiet: every emulated UART byte is an exit, and errors still show),
/// reset through the i8042 on panic, no PCI and no probing of a keyboard
/// that is not there.
pub const BASE_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off quiet i8042.noaux i8042.nomux i8042.dumbkbd";

/// What the kvm engine can give a VM beyond [`VmConfig`] (which is shared
/// with the QEMU engine); `vmm_main` uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct KvmExtras {
    /// A vsock device with its host side on unix sockets.
    pub vsock: Option<VsockConfig>,
}

/// A VM ready to run.
pub struct Vmm {
    machine: Machine,
    /// The devices, kept for as long as the VM runs.
    _devices: DeviceManager,
    console_tail: ConsoleTail,
    /// An existing directory the confined monitor's empty root is mounted
    /// over (in its own mount namespace): the agent socket's.
    jail_dir: std::path::PathBuf,
    vcpus: Vec<Vcpu>,
    agent: Option<AgentSocket>,
    /// The taps' and the vsock device's I/O thread, when there is one.
    host_io: Option<HostIo>,
    policy: seccomp::Policy,
    /// How the boot vCPU enters the kernel.
    pub entry: Entry,
    /// The virtio devices, in window order.
    pub virtio: Vec<VirtioSlot>,
    /// The full kernel command line.
    pub cmdline: String,
}

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest asked for a reset (reboot or panic with `reboot=k`) or
    /// powered off (ACPI S5).
    Reset,
    /// The guest shut down (triple fault or ACPI-less power-off).
    Shutdown,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> KvmError {
    move |e| KvmError::Io(what, e)
}

/// The command line for `config`.
pub fn cmdline_for(config: &VmConfig) -> Result<Cmdline, KvmError> {
    let bad =
        |e: linux_loader::cmdline::Error| KvmError::Device(format!("kernel command line: {e}"));
    let mut c = Cmdline::new(layout::CMDLINE_MAX_SIZE).map_err(bad)?;
    c.insert_str(BASE_CMDLINE).map_err(bad)?;
    if !config.cmdline.trim().is_empty() {
        c.insert_str(config.cmdline.trim()).map_err(bad)?;
    }
    Ok(c)
}

impl Vmm {
    /// Creates the VM, its devices and vCPUs, and loads the kernel.
    pub fn build(config: &VmConfig) -> Result<Self, KvmError> {
        Self::build_with(config, &KvmExtras::default())
    }

    /// [`Vmm::build`] with the kvm engine's own extras.
    pub fn build_with(config: &VmConfig, extras: &KvmExtras) -> Result<Self, KvmError> {
        let m = Machine::new(u64::from(config.memory_mib) << 20)?;
        let mut devices = DeviceManager::new();
        let host = devices.create_devices(&m, config, extras)?;

        let cmdline = cmdline_for(config)?;
        let guest = arch::load_guest(
            &m.mem,
            &config.kernel,
            &config.initramfs,
            &cmdline,
            config.vcpus,
            &devices.acpi_devices(),
        )?;
        let supported = arch::supported_cpuid(&m.kvm)?;
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            let vcpu = m.create_vcpu(u64::from(id), &devices)?;
            arch::configure_vcpu(&vcpu.fd, &supported, id, config.vcpus, guest.entry)?;
            vcpus.push(vcpu);
        }
        Ok(Vmm {
            machine: m,
            virtio: devices.virtio_slots(),
            _devices: devices,
            console_tail: host.console_tail,
            jail_dir: config
                .agent_socket
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf(),
            vcpus,
            agent: Some(host.agent),
            host_io: host.host_io,
            policy: seccomp::Policy {
                vsock: extras.vsock.is_some(),
            },
            entry: guest.entry,
            cmdline: guest.cmdline,
        })
    }

    /// Runs the VM until the guest resets or shuts down, each thread under
    /// its seccomp filter when `confine` is set.
    pub fn run(mut self, confine: bool) -> Result<VmExit, KvmError> {
        let policy = self.policy;
        if confine {
            // Both are per process or per thread: done before any thread is
            // started so every thread inherits them.
            match super::jail::confine(&self.jail_dir)? {
                super::jail::Confinement::Full => eprintln!(
                    "vessel vmm: confined: empty root, uid {}, no capabilities, seccomp per thread",
                    super::jail::UNPRIVILEGED_ID
                ),
                super::jail::Confinement::Unprivileged => eprintln!(
                    "vessel vmm: not root: keeping the host's mount namespace and this uid; \
                     no capabilities, seccomp per thread"
                ),
            }
            seccomp::drop_capabilities()?;
        }
        if let Some(agent) = self.agent.take() {
            std::thread::Builder::new()
                .name("agent-io".into())
                .spawn(move || {
                    if confine {
                        if let Err(e) = seccomp::apply(seccomp::Role::DeviceIo, policy) {
                            eprintln!("vessel vmm: agent-io thread: {e}");
                            std::process::exit(1);
                        }
                    }
                    agent.run()
                })
                .map_err(io_err("starting the agent I/O thread".into()))?;
        }
        if let Some(io) = self.host_io.take() {
            std::thread::Builder::new()
                .name("host-io".into())
                .spawn(move || {
                    if confine {
                        if let Err(e) = seccomp::apply(seccomp::Role::DeviceIo, policy) {
                            eprintln!("vessel vmm: host-io thread: {e}");
                            std::process::exit(1);
                        }
                    }
                    io.run()
                })
                .map_err(io_err("starting the host I/O thread".into()))?;
        }
        let on_start = move |id: u64| {
            if confine {
                if let Err(e) = seccomp::apply(seccomp::Role::Vcpu, policy) {
                    eprintln!("vessel vmm: vCPU {id}: {e}");
                    std::process::exit(1);
                }
            }
        };
        let running = self
            .machine
            .start(std::mem::take(&mut self.vcpus), on_start)?;
        if confine {
            seccomp::apply(seccomp::Role::Main, policy)?;
        }
        self.machine.wait_exit(None);
        let mut exit = VmExit::Reset;
        let mut first_error = None;
        let mut causes = Vec::new();
        for (vcpu, result) in running.stop() {
            match result {
                Ok(VcpuStop::Shutdown) => {
                    exit = VmExit::Shutdown;
                    causes.push(format!(
                        "vCPU {} exited with KVM_EXIT_SHUTDOWN (a triple fault or a shutdown \
                         request) after {} exits, {}",
                        vcpu.id,
                        vcpu.exits,
                        registers(&vcpu)
                    ));
                }
                Ok(VcpuStop::Halted) => causes.push(format!(
                    "vCPU {} halted with no interrupt controller to wake it after {} exits",
                    vcpu.id, vcpu.exits
                )),
                Ok(VcpuStop::Stopped) => {}
                Err(e) => {
                    causes.push(format!(
                        "vCPU {} stopped on an error after {} exits: {e}; {}",
                        vcpu.id,
                        vcpu.exits,
                        registers(&vcpu)
                    ));
                    first_error.get_or_insert(e);
                }
            }
        }
        if causes.is_empty() {
            causes.push(
                "the guest asked for a reset (i8042 command 0xfe) or power-off (ACPI S5)".into(),
            );
        }
        for c in &causes {
            eprintln!("vessel vmm: stop: {c}");
        }
        for line in self.console_tail.lines(CONSOLE_LINES_ON_STOP) {
            eprintln!("vessel vmm: console: {line}");
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(exit),
        }
    }
}

/// How many of the guest's last console lines a stopping VM prints.
const CONSOLE_LINES_ON_STOP: usize = 8;

/// The instruction pointer and control registers of a stopped vCPU.
fn registers(vcpu: &super::vcpu::Vcpu) -> String {
    match (vcpu.fd.get_regs(), vcpu.fd.get_sregs()) {
        (Ok(r), Ok(s)) => format!(
            "rip={:#x} rsp={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            r.rip, r.rsp, s.cr0, s.cr3, s.cr4, s.efer
        ),
        _ => "registers unreadable".into(),
    }
}

/// Sends this process's stderr to `log` (appending), so `vessel vmm` run
/// by hand logs where its configuration says, as under the engine.
fn redirect_stderr(log: &std::path::Path) -> Result<(), KvmError> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("opening VMM log {}", log.display())))?;
    // SAFETY: dup2 onto fd 2 with a valid open descriptor; `f` is closed
    // afterwards and fd 2 keeps its own reference to the file.
    if unsafe { libc::dup2(f.as_raw_fd(), 2) } < 0 {
        return Err(KvmError::Io(
            format!("redirecting stderr to {}", log.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Runs the monitor for `config` in this process and exits: 0 when the
/// guest reset or shut down, 1 on an error (printed to stderr, which the
/// engine sends to the VMM log).
pub fn vmm_main(config: VmConfig) -> ! {
    if let Some(log) = &config.vmm_log {
        if let Err(e) = redirect_stderr(log) {
            eprintln!("vessel vmm: {e}");
            std::process::exit(1);
        }
    }
    let result = config
        .validate()
        .map_err(|e| KvmError::Device(e.to_string()))
        .and_then(|()| Vmm::build(&config))
        .and_then(|vmm| vmm.run(true));
    match result {
        Ok(exit) => {
            eprintln!("vessel vmm: guest {exit:?}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("vessel vmm: {e}");
            std::process::exit(1)
        }
    }
}
