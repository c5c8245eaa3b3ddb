//! [`KvmEngine`]: the [`Engine`] that runs vessel's own VMM as a process.

use std::path::PathBuf;
use std::process::Command;

use crate::engine::{Engine, VmConfig, VmHandle};
use crate::{Error, Result};

/// Boots VMs by starting `<vmm_binary> <args_prefix...> <config JSON>`, a
/// program whose entry calls [`super::vmm_main`] (the runtime's hidden
/// `vessel vmm` subcommand, or the `vessel-kvm-vmm` binary of this crate).
#[derive(Debug, Clone)]
pub struct KvmEngine {
    /// The program to start.
    pub vmm_binary: PathBuf,
    /// Arguments before the configuration (e.g. `["vmm"]`).
    pub args_prefix: Vec<String>,
}

impl KvmEngine {
    /// An engine starting `vmm_binary` with `args_prefix`.
    pub fn new(vmm_binary: PathBuf, args_prefix: Vec<String>) -> Self {
        KvmEngine {
            vmm_binary,
            args_prefix,
        }
    }

    /// The command that runs the VMM for `config`.
    pub fn command(&self, config: &VmConfig) -> Result<Command> {
        let json = serde_json::to_string(config).map_err(Error::BadMessage)?;
        let mut cmd = Command::new(&self.vmm_binary);
        cmd.args(&self.args_prefix).arg(json);
        Ok(cmd)
    }
}

impl Engine for KvmEngine {
    fn name(&self) -> &str {
        "kvm"
    }

    fn accelerator(&self) -> &str {
        "kvm"
    }

    fn boot(&self, config: &VmConfig) -> Result<VmHandle> {
        config.validate()?;
        let cmd = self.command(config)?;
        crate::engine::spawn_vmm(cmd, config, |e| {
            Error::io(format!("starting VMM {}", self.vmm_binary.display()), e)
        })
    }
}
