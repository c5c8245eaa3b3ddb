//! VM engines: what boots a guest from a [`VmConfig`].
//!
//! The [`Engine`] trait is deliberately small: the QEMU engine implements it
//! today and vessel's own KVM engine implements it later. An engine starts
//! one VMM process per VM and hands back a [`VmHandle`]; everything after
//! boot (running the workload, stdio, signals) goes through the agent
//! stream, which does not depend on the engine.

pub mod kvm;
pub mod qemu;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::agent::host::AgentClient;
use crate::{Error, Result};

/// A virtio-blk device given to the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockDevice {
    /// Host image file.
    pub path: PathBuf,
    /// Attach read-only.
    pub read_only: bool,
    /// Serial number the guest sees in `/sys/block/vd*/serial` (at most 20
    /// bytes); the agent finds devices by it since probe order is not the
    /// command-line order.
    pub serial: String,
}

/// A tap device whose traffic the guest's NIC carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetTap {
    /// Name of an existing tap interface on the host side.
    pub tap: String,
    /// MAC address of the guest NIC, e.g. `52:54:00:12:34:56`.
    pub mac: Option<String>,
}

/// Everything an engine needs to boot a guest (serializable, so it can be
/// kept in the container's state).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmConfig {
    /// Guest kernel image.
    pub kernel: PathBuf,
    /// Initramfs holding the agent as `/init`.
    pub initramfs: PathBuf,
    /// Extra kernel command line, appended to the engine's own.
    pub cmdline: String,
    /// Number of vCPUs (at least 1).
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Block devices.
    pub block_devices: Vec<BlockDevice>,
    /// Unix socket the VMM listens on for the agent byte stream.
    pub agent_socket: PathBuf,
    /// File receiving the guest's serial console (kernel log); `None`
    /// discards it.
    pub console_log: Option<PathBuf>,
    /// File receiving the VMM's own stderr; `None` discards it.
    pub vmm_log: Option<PathBuf>,
    /// Tap devices.
    pub taps: Vec<NetTap>,
    /// Kill the VMM when the process that booted it dies (tests); `vessel
    /// create` leaves this off since the VM outlives it.
    pub die_with_parent: bool,
}

impl VmConfig {
    /// A configuration with 1 vCPU, 256 MiB and no devices.
    pub fn new(kernel: PathBuf, initramfs: PathBuf, agent_socket: PathBuf) -> Self {
        VmConfig {
            kernel,
            initramfs,
            cmdline: String::new(),
            vcpus: 1,
            memory_mib: 256,
            block_devices: Vec::new(),
            agent_socket,
            console_log: None,
            vmm_log: None,
            taps: Vec::new(),
            die_with_parent: false,
        }
    }

    /// Checks the values an engine relies on.
    pub fn validate(&self) -> Result<()> {
        if self.vcpus == 0 {
            return Err(Error::InvalidConfig("vcpus must be at least 1".into()));
        }
        if self.memory_mib < 64 {
            return Err(Error::InvalidConfig(format!(
                "memory_mib {} is below the 64 MiB a guest needs",
                self.memory_mib
            )));
        }
        for (what, path) in [("kernel", &self.kernel), ("initramfs", &self.initramfs)] {
            if !path.is_file() {
                return Err(Error::InvalidConfig(format!(
                    "{what} {} does not exist",
                    path.display()
                )));
            }
        }
        for dev in &self.block_devices {
            if !dev.path.exists() {
                return Err(Error::InvalidConfig(format!(
                    "block device image {} does not exist",
                    dev.path.display()
                )));
            }
            if dev.serial.len() > 20 || dev.serial.contains(',') {
                return Err(Error::InvalidConfig(format!(
                    "block device serial {:?} must be at most 20 bytes without commas",
                    dev.serial
                )));
            }
        }
        Ok(())
    }
}

/// Starts a VMM process from `cmd` for `config`, as every engine does: a
/// stale agent socket removed (the VMM could not bind it), stderr to the
/// VMM log, its own process group (terminal signals aimed at the caller do
/// not reach it), and `PR_SET_PDEATHSIG` when `config.die_with_parent`.
/// `spawn_error` words a failed spawn.
pub(crate) fn spawn_vmm(
    mut cmd: std::process::Command,
    config: &VmConfig,
    spawn_error: impl FnOnce(std::io::Error) -> Error,
) -> Result<VmHandle> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    match fs::remove_file(&config.agent_socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("removing stale socket {}", config.agent_socket.display()),
                e,
            ))
        }
    }
    let stderr = match &config.vmm_log {
        Some(log) => Stdio::from(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io(format!("opening VMM log {}", log.display()), e))?,
        ),
        None => Stdio::null(),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    if config.die_with_parent {
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and only
        // touches the calling (child) process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().map_err(spawn_error)?;
    Ok(VmHandle::from_child(
        child,
        config.agent_socket.clone(),
        config.vmm_log.clone(),
    ))
}

/// A VMM backend.
pub trait Engine {
    /// Short name, e.g. `qemu`.
    fn name(&self) -> &str;
    /// Accelerator in use, e.g. `kvm` or `tcg`.
    fn accelerator(&self) -> &str;
    /// Starts a VM; returns once the VMM process runs (not when the guest
    /// has booted: wait for the agent's hello for that).
    fn boot(&self, config: &VmConfig) -> Result<VmHandle>;
}

/// A running VMM process.
#[derive(Debug)]
pub struct VmHandle {
    pid: i32,
    child: Option<Child>,
    agent_socket: PathBuf,
    vmm_log: Option<PathBuf>,
    started: Instant,
}

impl VmHandle {
    /// Wraps a VMM this process started.
    pub fn from_child(child: Child, agent_socket: PathBuf, vmm_log: Option<PathBuf>) -> Self {
        VmHandle {
            pid: child.id() as i32,
            child: Some(child),
            agent_socket,
            vmm_log,
            started: Instant::now(),
        }
    }

    /// Refers to a VMM started by another process (e.g. `vessel create`),
    /// known by its pid.
    pub fn from_pid(pid: i32, agent_socket: PathBuf) -> Self {
        VmHandle {
            pid,
            child: None,
            agent_socket,
            vmm_log: None,
            started: Instant::now(),
        }
    }

    /// The VMM's pid (what `vessel state` reports in vm mode).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The agent socket.
    pub fn agent_socket(&self) -> &Path {
        &self.agent_socket
    }

    /// When the handle was created (just after the VMM started).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the VMM is still running; reaps it if it is our child.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => Path::new(&format!("/proc/{}", self.pid)).exists() && !self.is_zombie(),
        }
    }

    fn is_zombie(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    /// Waits for the VMM to exit; returns its exit code when it is our
    /// child (`None` for another process's VMM or a signal).
    pub fn wait(&mut self) -> Result<Option<i32>> {
        match self.child.as_mut() {
            Some(child) => {
                let status = child
                    .wait()
                    .map_err(|e| Error::io(format!("waiting for VMM pid {}", self.pid), e))?;
                Ok(status.code())
            }
            None => {
                while self.is_running() {
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(None)
            }
        }
    }

    /// Kills the VMM with SIGKILL and reaps it if it is our child. A VMM
    /// that is already gone is not an error.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_some() {
                return Ok(());
            }
        }
        match kill(Pid::from_raw(self.pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(Error::io(format!("killing VMM pid {}", self.pid), e.into())),
        }
        self.wait().map(|_| ())
    }

    /// Connects to the agent socket, failing early with the VMM's log if
    /// the VMM exits first.
    pub fn connect_agent(&mut self, timeout: Duration) -> Result<AgentClient> {
        let deadline = Instant::now() + timeout;
        loop {
            match AgentClient::connect(&self.agent_socket, Duration::from_millis(50)) {
                Ok(client) => return Ok(client),
                Err(Error::Timeout { .. }) if Instant::now() < deadline => {
                    if !self.is_running() {
                        return Err(Error::Agent(format!(
                            "VMM pid {} exited before its agent socket {} appeared: {}",
                            self.pid,
                            self.agent_socket.display(),
                            self.vmm_log_tail()
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The last lines of the VMM's stderr log, for error messages.
    pub fn vmm_log_tail(&self) -> String {
        let Some(log) = &self.vmm_log else {
            return "(no VMM log)".into();
        };
        let text = fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}
