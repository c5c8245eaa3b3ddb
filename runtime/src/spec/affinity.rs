//! `process.execCPUAffinity`: the CPUs a process of `vessel exec` runs on
//! while vessel prepares it (`initial`) and from its execve on (`final`).
//! The spec says it does not apply to the container's init, so `create`
//! only checks it (the container's process is the template of `exec`).

use oci_spec::runtime::Process;

use super::cpulist::IdMask;
use super::SpecError;

/// The most CPUs a kernel can be built for (x86_64 CONFIG_NR_CPUS_RANGE_END).
pub const MAX_CPUS: usize = 8192;

/// Parsed `process.execCPUAffinity`; `None` where the spec's value is
/// absent or empty ("runtime SHOULD NOT change" the affinity).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecAffinity {
    /// Set on vessel's process before it joins the container's cgroup.
    pub initial: Option<IdMask>,
    /// Set in the container right before execve.
    pub last: Option<IdMask>,
}

impl ExecAffinity {
    /// Whether neither list is given.
    pub fn is_empty(&self) -> bool {
        self.initial.is_none() && self.last.is_none()
    }
}

/// Parses `process.execCPUAffinity` of `p`.
pub fn exec_affinity(p: &Process) -> Result<ExecAffinity, SpecError> {
    let Some(a) = p.exec_cpu_affinity() else {
        return Ok(ExecAffinity::default());
    };
    let one = |field: &str, v: &Option<String>| -> Result<Option<IdMask>, SpecError> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => IdMask::parse(field, text, MAX_CPUS).map(Some),
        }
    };
    Ok(ExecAffinity {
        initial: one("process.execCPUAffinity.initial", a.initial())?,
        last: one("process.execCPUAffinity.final", a.cpu_affinity_final())?,
    })
}
