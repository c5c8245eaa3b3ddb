//! `vessel vmm <VmConfig JSON>` (internal): vessel's own microVM monitor
//! (the kvm engine), started by the supervisor of a vm-mode container.

/// `vessel vmm <config>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The VM, as `VmConfig` JSON (named apart from the global --config).
    #[arg(value_name = "VM_CONFIG")]
    vm_config: String,
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    match vessel::isolation::entry::vmm(&a.vm_config) {
        Err(e) => anyhow::bail!("vmm: the VM configuration: {e}"),
    }
}
