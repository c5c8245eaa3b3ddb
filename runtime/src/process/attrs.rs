//! Scheduling and memory attributes of a container process, applied with
//! the values the `spec` module has checked: the scheduler
//! (`process.scheduler`), the NUMA memory policy (`linux.memoryPolicy`),
//! the CPU affinity (`process.execCPUAffinity`) and the personality
//! (`linux.personality`). All are inherited across fork and kept across
//! execve, so each is set once on the process that becomes the workload.

use std::io;

use oci_spec::runtime::{Linux, LinuxPersonality, LinuxPersonalityDomain};

use crate::spec::affinity::MAX_CPUS;
use crate::spec::cpulist::IdMask;
use crate::spec::mempolicy::{self, MemPolicy};
use crate::spec::sched::SchedAttr;

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sched_setattr(2) on the calling thread (the process: vessel is single
/// threaded where it calls this).
pub fn set_scheduler(attr: &SchedAttr) -> io::Result<()> {
    // SAFETY: sched_setattr reads `attr.size` bytes from a valid, initialised
    // `struct sched_attr` of that size; pid 0 is the caller.
    check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0u32) })
}

/// A container-wide attribute (or the scheduler) the kernel refused, named
/// by its field.
#[derive(Debug, thiserror::Error)]
pub enum AttrError {
    /// `process.scheduler`: sched_setattr(2) failed.
    #[error("process.scheduler: sched_setattr: {source}{}", scheduler_hint(.source, *.policy))]
    Scheduler {
        /// The policy asked for.
        policy: u32,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `linux.personality`.
    #[error("linux.personality: personality: {0}")]
    Personality(#[source] io::Error),
    /// `linux.memoryPolicy` is not a policy (checked at create; `exec`
    /// reads it again).
    #[error(transparent)]
    MemPolicy(#[from] crate::spec::SpecError),
    /// `linux.memoryPolicy`: set_mempolicy(2) failed.
    #[error("linux.memoryPolicy: set_mempolicy: {source}{}", mempolicy_hint(.source))]
    SetMemPolicy {
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Sets the scheduler of `attr`; the error names the field, with a hint.
pub fn apply_scheduler(attr: &SchedAttr) -> Result<(), AttrError> {
    set_scheduler(attr).map_err(|source| AttrError::Scheduler {
        policy: attr.sched_policy,
        source,
    })
}

/// Why sched_setattr(2) may have failed, in the terms of the spec's fields.
fn scheduler_hint(e: &io::Error, policy: u32) -> &'static str {
    match (e.raw_os_error(), policy) {
        (Some(libc::EPERM), 6) => {
            " (SCHED_DEADLINE needs CAP_SYS_NICE and a CPU affinity and cpuset spanning all CPUs of its root domain)"
        }
        (Some(libc::EPERM), 1 | 2) => {
            " (a real-time policy needs CAP_SYS_NICE or RLIMIT_RTPRIO, and on cgroup v1 a cpu.rt_runtime_us budget)"
        }
        (Some(libc::EPERM), _) => " (a lower nice value needs CAP_SYS_NICE)",
        (Some(libc::EBUSY), 6) => " (the SCHED_DEADLINE bandwidth is not available)",
        _ => "",
    }
}

fn mempolicy_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EINVAL) => {
            " (the kernel refuses this mode, flag or node set: see set_mempolicy(2))"
        }
        _ => "",
    }
}

/// set_mempolicy(2) for the calling thread.
pub fn set_mempolicy(p: &MemPolicy) -> io::Result<()> {
    let words = p.nodes.words();
    let (ptr, maxnode) = if words.is_empty() {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode - 1 bits (a historic off-by-one).
        (words.as_ptr(), p.nodes.bits() + 1)
    };
    // SAFETY: set_mempolicy reads (maxnode - 1) bits from `ptr`, which points
    // at that many initialised bits of `words` (or is NULL with maxnode 0).
    check(unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            p.mode,
            ptr,
            maxnode as libc::c_ulong,
        )
    })
}

/// sched_setaffinity(2) of `pid` (0: the caller) to `mask`.
pub fn set_affinity(pid: libc::pid_t, mask: &IdMask) -> io::Result<()> {
    let words = mask.words();
    // SAFETY: sched_setaffinity reads `len` bytes from the mask words, which
    // are initialised and at least that long.
    check(unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            pid,
            std::mem::size_of_val(words),
            words.as_ptr(),
        )
    })
}

/// A mask of every CPU a kernel can have: setting it lets the process run
/// wherever its cpuset allows (the kernel clamps it), so it does not keep
/// whatever affinity vessel's caller had.
pub fn all_cpus() -> IdMask {
    IdMask::all(MAX_CPUS)
}

/// The `linux.personality.domain` values [`set_personality`] applies.
pub const PERSONALITY_DOMAINS: &[&str] = &["LINUX", "LINUX32"];

/// personality(2) for `p.domain` (flags are refused by the spec check).
pub fn set_personality(p: &LinuxPersonality) -> io::Result<()> {
    // linux/personality.h: PER_LINUX and PER_LINUX32.
    let persona: libc::c_ulong = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality takes an integer and changes only this process.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The container-wide attributes of `linux` that every process of the
/// container gets, its init and those of `exec`: the personality and the
/// memory policy. Errors name the field.
pub fn apply_container(linux: &Linux) -> Result<(), AttrError> {
    if let Some(p) = linux.personality() {
        set_personality(p).map_err(AttrError::Personality)?;
    }
    if let Some(p) = linux.memory_policy() {
        let pol = mempolicy::policy(p)?;
        set_mempolicy(&pol).map_err(|source| AttrError::SetMemPolicy { source })?;
    }
    Ok(())
}
