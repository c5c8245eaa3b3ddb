//! Process capabilities (`process.capabilities`): all five sets, through the
//! caps crate.
//!
//! The container's init calls, in this order:
//!
//! 1. [`drop_bounding`] while still root with CAP_SETPCAP: every capability
//!    not in `bounding` leaves the bounding set *and* the inheritable set.
//!    The bounding set only masks the file-permitted half of the exec rule
//!    `P' = (X & fP) | (pI & fI)`; a capability left in pI would still reach
//!    P' through a file's inheritable set. Once it is out of both X and pI it
//!    can never come back (Hallyn & Morgan, "Linux Capabilities: making them
//!    work", section 3.3).
//! 2. [`set_keep_caps`]`(true)`, then setuid/setgid to the container user, so
//!    the permitted set survives the switch away from uid 0.
//! 3. [`apply`]: effective, permitted, inheritable and ambient exactly as
//!    listed. Ambient is what a non-root user keeps across execve of an
//!    ordinary binary. Where a seccomp filter must still be loaded without
//!    no_new_privs, [`apply_keeping`] keeps CAP_SYS_ADMIN for it and
//!    [`RawCaps::set`] drops it with one capset(2) after the filter.
//!
//! A set missing from the spec is empty, as in runc.

use std::collections::HashSet;

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// An error reading, parsing or changing capabilities. Messages name the
/// spec field.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    /// A capability name that is not known.
    #[error("unknown capability {0:?}")]
    Unknown(String),
    /// The kernel refused a change.
    #[error("{field}: {action}: {reason}")]
    Kernel {
        /// The spec field, e.g. `process.capabilities.ambient`.
        field: &'static str,
        /// What was being done, naming the capability where there is one.
        action: String,
        /// The error reported by the caps crate or the kernel.
        reason: String,
    },
}

/// Parses `CAP_NET_ADMIN` or `NET_ADMIN` (any case), as `vessel exec --cap`
/// takes them.
pub fn parse_capability(name: &str) -> Result<Capability, CapError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| CapError::Unknown(name.to_string()))
}

/// The names of every capability vessel can grant or drop (`CAP_...`), in
/// the kernel's order.
pub fn known_names() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.into_iter()
        .map(|c| c.to_string())
        .filter(|n| parse_capability(n).is_ok())
        .collect()
}

/// The caps crate's value for an OCI capability.
pub fn to_caps(c: Capability) -> caps::Capability {
    use caps::Capability as C;
    match c {
        Capability::AuditControl => C::CAP_AUDIT_CONTROL,
        Capability::AuditRead => C::CAP_AUDIT_READ,
        Capability::AuditWrite => C::CAP_AUDIT_WRITE,
        Capability::BlockSuspend => C::CAP_BLOCK_SUSPEND,
        Capability::Bpf => C::CAP_BPF,
        Capability::CheckpointRestore => C::CAP_CHECKPOINT_RESTORE,
        Capability::Chown => C::CAP_CHOWN,
        Capability::DacOverride => C::CAP_DAC_OVERRIDE,
        Capability::DacReadSearch => C::CAP_DAC_READ_SEARCH,
        Capability::Fowner => C::CAP_FOWNER,
        Capability::Fsetid => C::CAP_FSETID,
        Capability::IpcLock => C::CAP_IPC_LOCK,
        Capability::IpcOwner => C::CAP_IPC_OWNER,
        Capability::Kill => C::CAP_KILL,
        Capability::Lease => C::CAP_LEASE,
        Capability::LinuxImmutable => C::CAP_LINUX_IMMUTABLE,
        Capability::MacAdmin => C::CAP_MAC_ADMIN,
        Capability::MacOverride => C::CAP_MAC_OVERRIDE,
        Capability::Mknod => C::CAP_MKNOD,
        Capability::NetAdmin => C::CAP_NET_ADMIN,
        Capability::NetBindService => C::CAP_NET_BIND_SERVICE,
        Capability::NetBroadcast => C::CAP_NET_BROADCAST,
        Capability::NetRaw => C::CAP_NET_RAW,
        Capability::Perfmon => C::CAP_PERFMON,
        Capability::Setgid => C::CAP_SETGID,
        Capability::Setfcap => C::CAP_SETFCAP,
        Capability::Setpcap => C::CAP_SETPCAP,
        Capability::Setuid => C::CAP_SETUID,
        Capability::SysAdmin => C::CAP_SYS_ADMIN,
        Capability::SysBoot => C::CAP_SYS_BOOT,
        Capability::SysChroot => C::CAP_SYS_CHROOT,
        Capability::SysModule => C::CAP_SYS_MODULE,
        Capability::SysNice => C::CAP_SYS_NICE,
        Capability::SysPacct => C::CAP_SYS_PACCT,
        Capability::SysPtrace => C::CAP_SYS_PTRACE,
        Capability::SysRawio => C::CAP_SYS_RAWIO,
        Capability::SysResource => C::CAP_SYS_RESOURCE,
        Capability::SysTime => C::CAP_SYS_TIME,
        Capability::SysTtyConfig => C::CAP_SYS_TTY_CONFIG,
        Capability::Syslog => C::CAP_SYSLOG,
        Capability::WakeAlarm => C::CAP_WAKE_ALARM,
    }
}

fn to_caps_set(set: Option<&Capabilities>) -> CapsHashSet {
    set.map(|s| s.iter().copied().map(to_caps).collect())
        .unwrap_or_default()
}

fn kernel_err(field: &'static str, action: String, e: impl std::fmt::Display) -> CapError {
    CapError::Kernel {
        field,
        action,
        reason: e.to_string(),
    }
}

/// The highest capability number the running kernel knows.
fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(caps::Capability::CAP_CHECKPOINT_RESTORE.index())
}

/// Removes every capability not in `c.bounding` from the bounding set and
/// from the inheritable set (see the module documentation for why both).
/// Needs CAP_SETPCAP in the effective set: call it before setuid.
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<(), CapError> {
    const FIELD: &str = "process.capabilities.bounding";
    let keep = to_caps_set(c.bounding().as_ref());
    let inheritable = caps::read(None, CapSet::Inheritable)
        .map_err(|e| kernel_err(FIELD, "reading the inheritable set".into(), e))?;
    let kept_inheritable: CapsHashSet = inheritable.intersection(&keep).copied().collect();
    if kept_inheritable.len() != inheritable.len() {
        caps::set(None, CapSet::Inheritable, &kept_inheritable)
            .map_err(|e| kernel_err(FIELD, "dropping from the inheritable set".into(), e))?;
    }
    let all = caps::all();
    for index in 0..=last_cap() {
        let known = all.iter().copied().find(|k| k.index() == index);
        if known.is_some_and(|k| keep.contains(&k)) {
            continue;
        }
        // Capabilities newer than the caps crate are dropped by number.
        // SAFETY: PR_CAPBSET_READ/DROP take an integer and touch no memory.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(index)) };
        if present != 1 {
            continue;
        }
        // SAFETY: as above.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index)) };
        if rc != 0 {
            let name = known.map_or_else(|| format!("capability {index}"), |k| k.to_string());
            return Err(kernel_err(
                FIELD,
                format!("dropping {name} from the bounding set"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Sets the effective, permitted, inheritable and ambient sets to exactly
/// the spec's lists. Call after setuid (with keepcaps set before it) and
/// after [`drop_bounding`]. Inheritable capabilities outside the bounding set
/// are refused by the kernel, as they should be.
pub fn apply(c: &LinuxCapabilities) -> Result<(), CapError> {
    let effective = to_caps_set(c.effective().as_ref());
    let permitted = to_caps_set(c.permitted().as_ref());
    let inheritable = to_caps_set(c.inheritable().as_ref());
    let ambient = to_caps_set(c.ambient().as_ref());
    apply_sets(&effective, &permitted, &inheritable, &ambient)
}

/// [`apply`], except that `keep` stays in the effective and permitted sets
/// for now, for a step that needs it before `execve` (loading a seccomp
/// filter without no_new_privs needs CAP_SYS_ADMIN). Returns the spec's
/// sets, to be set with [`RawCaps::set`] after that step, or `None` when
/// the spec keeps `keep` in both sets anyway or the permitted set lacks it.
pub fn apply_keeping(
    c: &LinuxCapabilities,
    keep: caps::Capability,
) -> Result<Option<RawCaps>, CapError> {
    let effective = to_caps_set(c.effective().as_ref());
    let permitted = to_caps_set(c.permitted().as_ref());
    let inheritable = to_caps_set(c.inheritable().as_ref());
    let ambient = to_caps_set(c.ambient().as_ref());
    // Not held at all: nothing to keep (loading the filter then fails and
    // says why).
    let held = caps::has_cap(None, CapSet::Permitted, keep).map_err(|e| {
        kernel_err(
            "process.capabilities",
            "reading the permitted set".into(),
            e,
        )
    })?;
    if !held || (effective.contains(&keep) && permitted.contains(&keep)) {
        apply_sets(&effective, &permitted, &inheritable, &ambient)?;
        return Ok(None);
    }
    let with = |s: &CapsHashSet| {
        let mut s = s.clone();
        s.insert(keep);
        s
    };
    apply_sets(&with(&effective), &with(&permitted), &inheritable, &ambient)?;
    Ok(Some(RawCaps {
        effective: mask(&effective),
        permitted: mask(&permitted),
        inheritable: mask(&inheritable),
    }))
}

/// For a process whose spec has no capabilities object (its sets are left
/// as they are): raises `keep` into the effective set for a step that needs
/// it, if the permitted set still holds it. Returns the sets to restore
/// afterwards with [`RawCaps::set`], or `None` when nothing changed.
pub fn hold_effective(keep: caps::Capability) -> Result<Option<RawCaps>, CapError> {
    const FIELD: &str = "process.capabilities";
    let now = RawCaps::read().map_err(|e| kernel_err(FIELD, "capget".into(), e))?;
    let bit = 1u64 << keep.index();
    if now.effective & bit != 0 || now.permitted & bit == 0 {
        return Ok(None);
    }
    let held = RawCaps {
        effective: now.effective | bit,
        ..now
    };
    held.set()
        .map_err(|e| kernel_err(FIELD, format!("raising {keep}"), e))?;
    Ok(Some(now))
}

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | 1u64 << c.index())
}

/// The effective, permitted and inheritable sets of the calling thread as
/// the bit masks of capget(2)/capset(2) (bit n: capability n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawCaps {
    /// The effective set.
    pub effective: u64,
    /// The permitted set.
    pub permitted: u64,
    /// The inheritable set.
    pub inheritable: u64,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`; version 3 takes two (bits 0-31, 32-63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl RawCaps {
    /// capget(2) of the calling thread.
    pub fn read() -> std::io::Result<RawCaps> {
        let mut h = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut d = [CapData::default(); 2];
        // SAFETY: capget writes one header and two data structs (version 3)
        // into the valid, properly laid out values passed.
        let rc =
            unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        Ok(RawCaps {
            effective: join(d[0].effective, d[1].effective),
            permitted: join(d[0].permitted, d[1].permitted),
            inheritable: join(d[0].inheritable, d[1].inheritable),
        })
    }

    /// One capset(2) of the calling thread, and nothing else: no allocation,
    /// no other system call, so it can follow a seccomp filter that allows
    /// capset.
    pub fn set(&self) -> std::io::Result<()> {
        let h = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let half = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
        let d = [false, true].map(|hi| CapData {
            effective: half(self.effective, hi),
            permitted: half(self.permitted, hi),
            inheritable: half(self.inheritable, hi),
        });
        // SAFETY: capset reads one header and two data structs (version 3)
        // from the valid values passed and writes nothing.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &h as *const CapHeader, d.as_ptr()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn apply_sets(
    effective: &CapsHashSet,
    permitted: &CapsHashSet,
    inheritable: &CapsHashSet,
    ambient: &CapsHashSet,
) -> Result<(), CapError> {
    let set = |field: &'static str, set: CapSet, value: &CapsHashSet| {
        caps::set(None, set, value)
            .map_err(|e| kernel_err(field, format!("setting {}", describe(value)), e))
    };
    // Inheritable first, while the effective set may still hold CAP_SETPCAP.
    // capset(2) then wants effective within permitted after every call:
    // shrink effective to what both old and new permitted hold, set
    // permitted, and the final effective set last.
    set(
        "process.capabilities.inheritable",
        CapSet::Inheritable,
        inheritable,
    )?;
    let current_permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| kernel_err("process.capabilities.permitted", "reading".into(), e))?;
    let interim: CapsHashSet = effective
        .intersection(permitted)
        .filter(|cap| current_permitted.contains(cap))
        .copied()
        .collect();
    set(
        "process.capabilities.effective",
        CapSet::Effective,
        &interim,
    )?;
    set(
        "process.capabilities.permitted",
        CapSet::Permitted,
        permitted,
    )?;
    set(
        "process.capabilities.effective",
        CapSet::Effective,
        effective,
    )?;

    caps::clear(None, CapSet::Ambient)
        .map_err(|e| kernel_err("process.capabilities.ambient", "clearing".into(), e))?;
    for cap in sorted(ambient) {
        caps::raise(None, CapSet::Ambient, cap).map_err(|e| {
            kernel_err(
                "process.capabilities.ambient",
                format!("raising {cap} (it must also be permitted and inheritable)"),
                e,
            )
        })?;
    }
    Ok(())
}

/// Sets or clears SECBIT_KEEP_CAPS, which keeps the permitted set across a
/// setuid away from uid 0. The kernel clears it again at execve.
pub fn set_keep_caps(on: bool) -> Result<(), CapError> {
    caps::securebits::set_keepcaps(on).map_err(|e| {
        kernel_err(
            "process.capabilities",
            format!("setting keepcaps to {on}"),
            e,
        )
    })
}

fn sorted(set: &CapsHashSet) -> Vec<caps::Capability> {
    let mut v: Vec<_> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

fn describe(set: &CapsHashSet) -> String {
    if set.is_empty() {
        return "an empty set".into();
    }
    let names: Vec<String> = sorted(set).iter().map(|c| c.to_string()).collect();
    names.join(",")
}

/// Reads a set of the calling thread as OCI capabilities (for `exec` and
/// tests); capabilities unknown to oci-spec are left out.
pub fn read(set: CapSet) -> Result<HashSet<Capability>, CapError> {
    let current = caps::read(None, set)
        .map_err(|e| kernel_err("process.capabilities", format!("reading {set:?}"), e))?;
    Ok(current
        .into_iter()
        .filter_map(|c| {
            let name = c.to_string();
            parse_capability(&name).ok()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_prefix() {
        assert_eq!(
            parse_capability("CAP_NET_ADMIN").unwrap(),
            Capability::NetAdmin
        );
        assert_eq!(parse_capability("NET_ADMIN").unwrap(), Capability::NetAdmin);
        assert_eq!(
            parse_capability("cap_sys_admin").unwrap(),
            Capability::SysAdmin
        );
        assert_eq!(
            parse_capability("CAP_CHECKPOINT_RESTORE").unwrap(),
            Capability::CheckpointRestore
        );
        let err = parse_capability("CAP_FLY").unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"CAP_FLY\"");
        assert!(parse_capability("").is_err());
    }

    #[test]
    fn every_caps_crate_capability_maps_back() {
        // Every capability the caps crate knows parses as an OCI name and
        // maps back to the same kernel number.
        for c in caps::all() {
            let oci = parse_capability(&c.to_string()).unwrap();
            assert_eq!(to_caps(oci), c, "{c}");
        }
    }
}
