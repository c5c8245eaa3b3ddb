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
    let config = serde_json::from_str(&a.vm_config)
        .map_err(|e| anyhow::anyhow!("vmm: the VM configuration: {e}"))?;
    vessel_vm::engine::kvm::vmm_main(config)
}
