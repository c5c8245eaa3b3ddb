//! [`KvmEngine`]: the [`Engine`] that runs vessel's own VMM as a process.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
        match std::fs::remove_file(&config.agent_socket) {
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
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .map_err(|e| Error::io(format!("opening VMM log {}", log.display()), e))?,
            ),
            None => Stdio::null(),
        };
        let mut cmd = self.command(config)?;
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
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting VMM {}", self.vmm_binary.display()), e))?;
        Ok(VmHandle::from_child(
            child,
            config.agent_socket.clone(),
            config.vmm_log.clone(),
        ))
    }
}
