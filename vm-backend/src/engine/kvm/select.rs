//! Engine selection: vessel's own VMM where its probe shows this host's KVM
//! runs a stock Linux guest, QEMU (KVM or TCG, by its own probe) otherwise.

use std::path::Path;

use super::engine::KvmEngine;
use crate::engine::qemu::QemuEngine;
use crate::engine::Engine;
use crate::Result;

/// The engine chosen for a kernel, and why.
pub struct Selection {
    /// The engine to boot with.
    pub engine: Box<dyn Engine>,
    /// One line for logs and `vessel features`: which engine and the probe
    /// results behind the choice.
    pub reason: String,
}

/// Picks the engine for `kernel`: `kvm` when [`KvmEngine::probe`] finds
/// hardware virtualization that runs its probe guests, otherwise QEMU as
/// [`QemuEngine::detect`] configures it. Both probes are cached in
/// `cache_dir`.
pub fn select_engine(kvm: KvmEngine, kernel: &Path, cache_dir: &Path) -> Result<Selection> {
    let probe = kvm.probe(cache_dir)?;
    if probe.usable {
        return Ok(Selection {
            engine: Box::new(kvm),
            reason: format!("kvm: {}", probe.detail),
        });
    }
    let (qemu, qprobe) = QemuEngine::detect(kernel, cache_dir)?;
    let reason = format!(
        "qemu with {} ({}); the kvm engine cannot boot {} here: {}",
        qemu.accelerator(),
        qprobe.detail,
        kernel.display(),
        probe.detail
    );
    Ok(Selection {
        engine: Box::new(qemu),
        reason,
    })
}
