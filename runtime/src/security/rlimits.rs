//! Resource limits (`process.rlimits`).
//!
//! [`validate`] runs in the parent at `create`; [`apply`] runs in the
//! container's init before capabilities are dropped, because raising a hard
//! limit needs CAP_SYS_RESOURCE (which this sandbox's host does not grant at
//! all: there, a hard limit above the current one always fails).

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// An invalid rlimit entry or a limit the kernel refused. Messages name
/// `process.rlimits[i]`.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// The soft limit is above the hard one.
    #[error("process.rlimits[{index}]: {name}: soft limit {soft} is above hard limit {hard}")]
    SoftAboveHard {
        /// Position in `process.rlimits`.
        index: usize,
        /// The limit, e.g. `RLIMIT_NOFILE`.
        name: String,
        /// The requested soft limit.
        soft: u64,
        /// The requested hard limit.
        hard: u64,
    },
    /// The same limit appears twice.
    #[error("process.rlimits[{index}]: {name} is already set by process.rlimits[{first}]")]
    Duplicate {
        /// Position of the repeated entry.
        index: usize,
        /// Position of the first entry for the same limit.
        first: usize,
        /// The limit.
        name: String,
    },
    /// setrlimit(2) failed.
    #[error(
        "process.rlimits[{index}]: setting {name} to soft {} hard {} \
         (current soft {} hard {}): {source}{hint}",
        show(*.soft), show(*.hard), show(*.cur_soft), show(*.cur_hard)
    )]
    Set {
        /// Position in `process.rlimits`.
        index: usize,
        /// The limit.
        name: String,
        /// The requested soft limit.
        soft: u64,
        /// The requested hard limit.
        hard: u64,
        /// The soft limit in force when the call failed.
        cur_soft: u64,
        /// The hard limit in force when the call failed.
        cur_hard: u64,
        /// The kernel's error.
        source: nix::Error,
        /// A hint on the usual cause, empty if none.
        hint: &'static str,
    },
}

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// A limit as a person reads it: RLIM_INFINITY is `unlimited`.
fn show(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Checks soft <= hard and that no limit is listed twice.
pub fn validate(r: &[PosixRlimit]) -> Result<(), RlimitError> {
    for (index, limit) in r.iter().enumerate() {
        if limit.soft() > limit.hard() {
            return Err(RlimitError::SoftAboveHard {
                index,
                name: limit.typ().to_string(),
                soft: limit.soft(),
                hard: limit.hard(),
            });
        }
        if let Some(first) = r[..index].iter().position(|l| l.typ() == limit.typ()) {
            return Err(RlimitError::Duplicate {
                index,
                first,
                name: limit.typ().to_string(),
            });
        }
    }
    Ok(())
}

/// Sets each limit on the calling process, in order.
pub fn apply(r: &[PosixRlimit]) -> Result<(), RlimitError> {
    validate(r)?;
    for (index, limit) in r.iter().enumerate() {
        let res = resource(limit.typ());
        if let Err(source) = setrlimit(res, limit.soft(), limit.hard()) {
            let (cur_soft, cur_hard) = getrlimit(res).unwrap_or((0, 0));
            let hint = if source == nix::Error::EPERM && limit.hard() > cur_hard {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            return Err(RlimitError::Set {
                index,
                name: limit.typ().to_string(),
                soft: limit.soft(),
                hard: limit.hard(),
                cur_soft,
                cur_hard,
                source,
                hint,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::PosixRlimitBuilder;

    fn limit(t: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(t)
            .soft(soft)
            .hard(hard)
            .build()
            .unwrap()
    }

    #[test]
    fn validate_names_the_entry() {
        let ok = [
            limit(PosixRlimitType::RlimitNofile, 1024, 1024),
            limit(PosixRlimitType::RlimitCore, 0, u64::MAX),
        ];
        validate(&ok).unwrap();

        let soft_above = [
            limit(PosixRlimitType::RlimitNofile, 1024, 1024),
            limit(PosixRlimitType::RlimitNproc, 20, 10),
        ];
        assert_eq!(
            validate(&soft_above).unwrap_err().to_string(),
            "process.rlimits[1]: RLIMIT_NPROC: soft limit 20 is above hard limit 10"
        );

        let dup = [
            limit(PosixRlimitType::RlimitNofile, 1024, 1024),
            limit(PosixRlimitType::RlimitCore, 0, 0),
            limit(PosixRlimitType::RlimitNofile, 512, 512),
        ];
        assert_eq!(
            validate(&dup).unwrap_err().to_string(),
            "process.rlimits[2]: RLIMIT_NOFILE is already set by process.rlimits[0]"
        );
    }

    #[test]
    fn every_type_maps_to_its_resource() {
        use PosixRlimitType as T;
        let pairs = [
            (T::RlimitCpu, libc::RLIMIT_CPU),
            (T::RlimitFsize, libc::RLIMIT_FSIZE),
            (T::RlimitData, libc::RLIMIT_DATA),
            (T::RlimitStack, libc::RLIMIT_STACK),
            (T::RlimitCore, libc::RLIMIT_CORE),
            (T::RlimitRss, libc::RLIMIT_RSS),
            (T::RlimitNproc, libc::RLIMIT_NPROC),
            (T::RlimitNofile, libc::RLIMIT_NOFILE),
            (T::RlimitMemlock, libc::RLIMIT_MEMLOCK),
            (T::RlimitAs, libc::RLIMIT_AS),
            (T::RlimitLocks, libc::RLIMIT_LOCKS),
            (T::RlimitSigpending, libc::RLIMIT_SIGPENDING),
            (T::RlimitMsgqueue, libc::RLIMIT_MSGQUEUE),
            (T::RlimitNice, libc::RLIMIT_NICE),
            (T::RlimitRtprio, libc::RLIMIT_RTPRIO),
            (T::RlimitRttime, libc::RLIMIT_RTTIME),
        ];
        for (t, raw) in pairs {
            assert_eq!(resource(t) as i64, raw as i64, "{t}");
        }
    }
}
