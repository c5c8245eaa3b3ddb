//! vessel's own microVM monitor on KVM (issue 8).
//!
//! The hybrid design of seed 000: the guest CPU runs natively under
//! hardware assistance, and everything else is para-virtualized or kept
//! in the kernel: virtio-mmio devices, kvm-clock, the in-kernel PIC,
//! IOAPIC, LAPICs and PIT. The pieces:
//!
//! - [`arch::x86_64`]: what depends on the guest architecture: memory
//!   map, CPUID, boot registers and MSRs, kernel loading, ACPI tables.
//! - [`machine`]: the VM: memory slots, irqchip, PIT, vCPU threads.
//! - [`device_manager`]: creates the devices, places them on the buses,
//!   allocates their interrupt lines and describes them for ACPI.
//! - [`vcpu`]: the KVM_RUN loop dispatching exits to the buses.
//! - [`vmm`]: the monitor putting these together for a [`crate::engine::VmConfig`].

pub mod arch;
pub mod device_manager;
pub mod engine;
pub mod jail;
pub mod machine;
pub mod probe;
pub mod seccomp;
pub mod select;
pub mod vcpu;
pub mod vmm;

pub use engine::KvmEngine;
pub use probe::KvmProbe;
pub use select::{select_engine, Selection};
pub use vmm::vmm_main;

/// Errors of the kvm engine, each naming the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// A KVM ioctl failed.
    #[error("{op}: {source}")]
    Kvm {
        /// The ioctl or step.
        op: String,
        /// The error KVM returned.
        #[source]
        source: std::io::Error,
    },
    /// A host I/O operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Guest memory could not be set up or written.
    #[error("guest memory: {0}")]
    Memory(String),
    /// A device could not be added.
    #[error("device: {0}")]
    Device(String),
    /// The guest did something the VMM cannot continue from.
    #[error("guest: {0}")]
    Guest(String),
    /// The kernel image could not be loaded.
    #[error("kernel {path}: {msg}")]
    Kernel {
        /// The image.
        path: std::path::PathBuf,
        /// What is wrong with it.
        msg: String,
    },
}

impl KvmError {
    pub(crate) fn kvm(op: &str, e: kvm_ioctls::Error) -> Self {
        KvmError::Kvm {
            op: op.to_string(),
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    }
}
