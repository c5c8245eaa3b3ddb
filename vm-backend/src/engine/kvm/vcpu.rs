//! One vCPU: the KVM_RUN loop and exit dispatch.
//!
//! Port IO and MMIO exits go to the buses; everything else ends the loop
//! with a [`VcpuStop`]. Stopping from outside: set the shared stop flag
//! and send [`kick_signal`] to the vCPU thread ([`kick`]); the signal
//! interrupts KVM_RUN (also a vCPU halted in the in-kernel LAPIC), and the
//! loop sees the flag before entering the guest again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use super::KvmError;
use crate::devices::Bus;

/// The signal that interrupts a vCPU's KVM_RUN.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) handler of [`kick_signal`], once per process: its
/// only job is to make KVM_RUN return EINTR.
pub fn install_kick_handler() -> Result<(), KvmError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| KvmError::Io("installing the vCPU kick handler".into(), e.into()));
    });
    result
}

/// Interrupts the KVM_RUN of the vCPU running on `thread`.
pub fn kick<T>(thread: &JoinHandle<T>) {
    // A thread that already ended cannot be signalled; nothing to kick.
    let _ = thread.kill(kick_signal());
}

/// Why a vCPU stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// The stop flag was set.
    Stopped,
    /// The guest triple-faulted or asked for shutdown.
    Shutdown,
    /// The guest halted with no in-kernel LAPIC to wait in (only without
    /// an irqchip).
    Halted,
}

/// A vCPU and the buses its exits go to.
pub struct Vcpu {
    /// vCPU index (also its APIC id).
    pub id: u64,
    /// The KVM vCPU.
    pub fd: VcpuFd,
    pio: Bus,
    mmio: Bus,
    /// Exits handled (for tests and statistics).
    pub exits: u64,
}

impl Vcpu {
    pub(crate) fn new(id: u64, fd: VcpuFd, pio: Bus, mmio: Bus) -> Self {
        Vcpu {
            id,
            fd,
            pio,
            mmio,
            exits: 0,
        }
    }

    /// Runs the guest until it stops or `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<VcpuStop, KvmError> {
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(VcpuStop::Stopped);
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR => {
                    if !stop.load(Ordering::Acquire) {
                        // Not our kick: the thread was frozen (`pause`, the
                        // cgroup freezer) or stopped, and is running again.
                        // Tell the guest its clock jumped because it was
                        // stopped, so its soft-lockup watchdog does not
                        // take the gap for a hang (what QEMU does on `cont`).
                        // EINVAL before the guest enabled kvm-clock.
                        let _ = self.fd.kvmclock_ctrl();
                    }
                    continue;
                }
                Err(e) if e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(KvmError::kvm(&format!("KVM_RUN on vCPU {}", self.id), e)),
            };
            self.exits += 1;
            match exit {
                VcpuExit::IoIn(port, data) => {
                    self.pio.read(u64::from(port), data);
                }
                VcpuExit::IoOut(port, data) => {
                    self.pio.write(u64::from(port), data);
                }
                VcpuExit::MmioRead(addr, data) => {
                    self.mmio.read(addr, data);
                }
                VcpuExit::MmioWrite(addr, data) => {
                    self.mmio.write(addr, data);
                }
                VcpuExit::Hlt => return Ok(VcpuStop::Halted),
                VcpuExit::Shutdown => return Ok(VcpuStop::Shutdown),
                VcpuExit::InternalError => {
                    let suberror = self.fd.get_kvm_run().exit_reason;
                    // SAFETY: for KVM_EXIT_INTERNAL_ERROR the kernel fills
                    // the `internal` member of the exit union.
                    let internal = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal };
                    return Err(KvmError::Guest(format!(
                        "vCPU {}: KVM internal error (exit reason {suberror}, suberror {}: {})",
                        self.id,
                        internal.suberror,
                        match internal.suberror {
                            1 => "emulation failure: an instruction KVM cannot run",
                            2 => "simultaneous exceptions",
                            3 => "delivery event",
                            _ => "other",
                        }
                    )));
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    return Err(KvmError::Guest(format!(
                        "vCPU {}: VM entry failed (hardware reason {reason:#x} on CPU {cpu})",
                        self.id
                    )))
                }
                other => {
                    return Err(KvmError::Guest(format!(
                        "vCPU {}: unhandled exit {other:?}",
                        self.id
                    )))
                }
            }
        }
    }
}
