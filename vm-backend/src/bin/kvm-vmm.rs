//! `vessel-kvm-vmm <config JSON>`: vessel's KVM monitor as a program of
//! its own (tests and the benchmark start it through `KvmEngine`; the
//! runtime offers the same entry as a hidden `vessel vmm` subcommand).

use vessel_vm::engine::kvm::vmm_main;
use vessel_vm::engine::VmConfig;

fn main() {
    let Some(json) = std::env::args().nth(1) else {
        eprintln!("usage: vessel-kvm-vmm <VmConfig as JSON>");
        std::process::exit(2);
    };
    match serde_json::from_str::<VmConfig>(&json) {
        Ok(config) => vmm_main(config),
        Err(e) => {
            eprintln!("vessel-kvm-vmm: invalid configuration: {e}");
            std::process::exit(2);
        }
    }
}
