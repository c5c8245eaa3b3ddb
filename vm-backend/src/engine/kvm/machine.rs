//! The VM itself: the KVM VM file descriptor, guest memory, the in-kernel
//! interrupt controllers and PIT, and the vCPU threads. Devices and their
//! buses belong to the [`DeviceManager`].

use std::sync::Arc;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::arch::x86_64::layout;
use super::device_manager::DeviceManager;
use super::vcpu::Vcpu;
use super::KvmError;
use crate::devices::virtio::Memory;

/// A VM with memory and interrupt controllers, not yet running.
pub struct Machine {
    /// The KVM system handle.
    pub kvm: Kvm,
    /// The VM.
    pub vm: VmFd,
    /// Guest RAM.
    pub mem: Memory,
    /// Written when the guest asks for a reset (i8042) or the VM must stop.
    pub exit_evt: EventFd,
}

impl Machine {
    /// Creates a VM with `mem_bytes` of RAM (split around the MMIO gap),
    /// the in-kernel PIC, IOAPIC and LAPICs, and the in-kernel PIT.
    pub fn new(mem_bytes: u64) -> Result<Self, KvmError> {
        let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(mem_bytes)
            .into_iter()
            .map(|(a, l)| (GuestAddress(a), l as usize))
            .collect();
        let mem = GuestMemoryMmap::from_ranges(&ranges).map_err(|e| {
            KvmError::Memory(format!("mapping {mem_bytes} bytes of guest RAM: {e}"))
        })?;
        Self::with_memory(mem)
    }

    /// Creates a VM around existing guest memory.
    pub fn with_memory(mem: Memory) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(|e| KvmError::kvm("opening /dev/kvm", e))?;
        let vm = kvm
            .create_vm()
            .map_err(|e| KvmError::kvm("KVM_CREATE_VM", e))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| KvmError::Memory(format!("guest region host address: {e}")))?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which the
            // Machine keeps for as long as the VM exists, and its length is
            // the mapping's length.
            unsafe { vm.set_user_memory_region(r) }
                .map_err(|e| KvmError::kvm("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        vm.set_tss_address(layout::KVM_TSS_ADDRESS)
            .map_err(|e| KvmError::kvm("KVM_SET_TSS_ADDR", e))?;
        vm.create_irq_chip()
            .map_err(|e| KvmError::kvm("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| KvmError::kvm("KVM_CREATE_PIT2", e))?;
        let exit_evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| KvmError::Io("creating the exit eventfd".into(), e))?;
        Ok(Machine {
            kvm,
            vm,
            mem,
            exit_evt,
        })
    }

    /// An eventfd wired to interrupt line `gsi` through KVM's irqfd.
    pub fn irq_line(&self, gsi: u32) -> Result<EventFd, KvmError> {
        let evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| KvmError::Io(format!("creating the eventfd of IRQ {gsi}"), e))?;
        self.vm
            .register_irqfd(&evt, gsi)
            .map_err(|e| KvmError::kvm(&format!("KVM_IRQFD for IRQ {gsi}"), e))?;
        Ok(evt)
    }
}

impl Machine {
    /// Creates vCPU `id`, its exits going to the buses of `devices` as
    /// they are now (add devices first).
    pub fn create_vcpu(&self, id: u64, devices: &DeviceManager) -> Result<Vcpu, KvmError> {
        let fd = self
            .vm
            .create_vcpu(id)
            .map_err(|e| KvmError::kvm(&format!("KVM_CREATE_VCPU {id}"), e))?;
        Ok(Vcpu::new(id, fd, devices.pio.clone(), devices.mmio.clone()))
    }
}

/// vCPUs running on their own threads.
pub struct Running {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(Vcpu, Result<super::vcpu::VcpuStop, KvmError>)>>,
}

/// What one vCPU thread ended with.
pub type VcpuOutcome = (Vcpu, Result<super::vcpu::VcpuStop, KvmError>);

impl Machine {
    /// Starts each vCPU on a thread named `vcpu<N>`. A vCPU that stops for
    /// any reason writes [`Machine::exit_evt`], so [`Machine::wait_exit`]
    /// returns on a guest reset, shutdown or error.
    pub fn start(
        &self,
        vcpus: Vec<Vcpu>,
        on_thread_start: impl Fn(u64) + Send + Clone + 'static,
    ) -> Result<Running, KvmError> {
        super::vcpu::install_kick_handler()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for mut vcpu in vcpus {
            let stop = stop.clone();
            let on_thread_start = on_thread_start.clone();
            let exit = self
                .exit_evt
                .try_clone()
                .map_err(|e| KvmError::Io("cloning the exit eventfd".into(), e))?;
            let t = std::thread::Builder::new()
                .name(format!("vcpu{}", vcpu.id))
                .spawn(move || {
                    on_thread_start(vcpu.id);
                    let r = vcpu.run(&stop);
                    let _ = exit.write(1);
                    (vcpu, r)
                })
                .map_err(|e| KvmError::Io("starting a vCPU thread".into(), e))?;
            threads.push(t);
        }
        Ok(Running { stop, threads })
    }

    /// Waits until [`Machine::exit_evt`] is written or `timeout` passes;
    /// returns whether it was written.
    pub fn wait_exit(&self, timeout: Option<std::time::Duration>) -> bool {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.exit_evt.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        loop {
            // SAFETY: `pfd` is one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return n > 0;
        }
    }
}

impl Running {
    /// Stops every vCPU and returns how each ended.
    pub fn stop(self) -> Vec<VcpuOutcome> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let mut out = Vec::new();
        for t in self.threads {
            // Kick until the thread is out of KVM_RUN: a signal landing
            // just before it re-enters the guest would otherwise be lost.
            while !t.is_finished() {
                super::vcpu::kick(&t);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            // A vCPU thread that panicked has nothing to give back.
            if let Ok(o) = t.join() {
                out.push(o);
            }
        }
        out
    }
}
