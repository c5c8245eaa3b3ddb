//! The entry points of the internal processes a mode runs vessel as: the
//! microVM's guest agent (PID 1 in the guest), the VM supervisor
//! (`vm-supervise`), the relay of a detached exec (`vm-exec`), the
//! relay of a VM pod's member container (`vm-member`) and the kvm
//! engine's monitor (`vmm`). The CLI reaches a mode's code only through
//! here and [`super::Backend`], so it names no mode itself. None returns.

use std::path::{Path, PathBuf};

/// Becomes the guest agent when this process is PID 1 of a vessel microVM
/// (it never returns then); otherwise returns at once.
pub fn guest_agent_if_pid1() {
    if crate::vm::guest_runner::is_guest_init() {
        crate::vm::guest_runner::run_agent();
    }
}

/// `vm-supervise`: supervises the VM of the container whose state
/// directory is `dir`, as that container's main process.
pub fn vm_supervise(dir: &Path) -> ! {
    crate::vm::supervisor::run(dir)
}

/// `vm-member`: the host-side relay of a container of a VM pod, whose
/// state directory is `dir` (started by `create`).
pub fn vm_member_relay(dir: &Path) -> ! {
    crate::vm::member::run(dir)
}

/// `vm-exec`: relays a detached exec's process (`process_file`) in the VM
/// of the container at `dir`, its pty master going to `console_socket`.
pub fn vm_exec_relay(dir: &Path, process_file: &Path, console_socket: Option<PathBuf>) -> ! {
    crate::vm::exec::relay_main(dir, process_file, console_socket)
}

/// `vmm`: runs vessel's own microVM monitor (the kvm engine) for the VM
/// that `config_json` describes; returns only when that is not a VM
/// configuration.
pub fn vmm(config_json: &str) -> Result<std::convert::Infallible, serde_json::Error> {
    let config = serde_json::from_str(config_json)?;
    vessel_vm::engine::kvm::vmm_main(config)
}
