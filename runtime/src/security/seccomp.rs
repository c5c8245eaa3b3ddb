//! OCI seccomp profiles (`linux.seccomp`) compiled to classic BPF with
//! seccompiler and installed with seccomp(2).
//!
//! # How a profile becomes filters
//!
//! A seccompiler [`SeccompFilter`] has one match action and one mismatch
//! action, while an OCI profile mixes many actions. [`compile`] therefore
//! builds several filters and relies on the kernel's rule for stacked
//! filters: every filter runs on every syscall and the most restrictive
//! verdict wins (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > LOG > ALLOW).
//!
//! * one filter per distinct rule verdict V other than ALLOW (each errno is
//!   its own verdict): the syscalls and argument conditions of the rules with
//!   verdict V return V, everything else ALLOW;
//! * one filter for the default action D (unless D is ALLOW): the syscalls
//!   and conditions of *every* rule return ALLOW, everything else D.
//!
//! A call that matches no rule gets D; a call that matches rules of one
//! verdict gets that verdict (so an ALLOW rule overrides a restrictive
//! default); a call that matches rules of several verdicts gets the most
//! restrictive of them. That last case is where OCI leaves the result to
//! libseccomp, which in practice also lets the stricter rule win. Between two
//! ERRNO rules with different errnos that match the same call the kernel
//! keeps the verdict of the filter installed last; [`compile`] installs them
//! by ascending errno, so normally the larger errno wins.
//!
//! Argument conditions are compared as 64-bit values. The conditions of one
//! rule are ANDed, except that when one argument index appears more than once
//! each condition becomes a rule of its own (ORed), as runc does, because
//! libseccomp cannot AND two conditions on the same argument.
//! `SCMP_CMP_MASKED_EQ` takes the mask from `value` and the datum from
//! `valueTwo`.
//!
//! # Architectures
//!
//! The rules are compiled for the native architecture only. Every filter
//! starts with seccompiler's architecture check, which kills the process on a
//! syscall made through another ABI; on x86_64 vessel adds a check that kills
//! x32-ABI syscalls too (seccompiler would otherwise let them reach the
//! default action under a number no rule names). `SCMP_ARCH_X86` and
//! `SCMP_ARCH_X32` are accepted in `architectures` with exactly that effect:
//! 32-bit and x32 binaries in the container are killed at their first
//! syscall. Any other non-native architecture is refused.
//!
//! # Syscall names
//!
//! Like libseccomp, a name that exists on some architecture but not on the
//! native one (Docker's default profile lists `socketcall`, `_llseek`,
//! `clock_gettime64`, ...) is skipped; see
//! [`CompiledSeccomp::skipped_syscalls`]. A name that exists on no
//! architecture is an error, so a typo never silently widens a profile.
//!
//! # What is refused
//!
//! `SCMP_ACT_TRACE`, `SCMP_ACT_NOTIFY` as the default action, on
//! `sendmsg`, or without `listenerPath` (see [`super::seccomp_notify`]),
//! the `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` flag, `errnoRet` on an action
//! other than ERRNO, errnos above 4095, argument indexes above 5, a non-zero
//! `valueTwo` on an operator other than MASKED_EQ, and a profile so large
//! that one filter exceeds the kernel's 4096 instructions.
//!
//! # Installing
//!
//! [`CompiledSeccomp::apply`] installs the filters one seccomp(2) call each,
//! with the profile's flags on every call. It does not set no_new_privs:
//! the caller either sets it (see [`crate::security::set_no_new_privs`]) or
//! installs while it still holds CAP_SYS_ADMIN, as runc does when
//! `noNewPrivileges` is false. Because each filter constrains the seccomp(2)
//! calls that install the next ones, [`compile`] orders the filters so that
//! at most one of them can deny seccomp(2), and installs that one last; a
//! profile that would need two such filters is refused at compile time.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};

use super::seccomp_notify::{Listener, FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// An error compiling or installing a seccomp profile. Messages name the
/// field of `linux.seccomp` at fault.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A syscall name that exists on no architecture.
    #[error("{field}: unknown syscall {name:?}")]
    UnknownSyscall {
        /// The spec field, e.g. `linux.seccomp.syscalls[3].names[1]`.
        field: String,
        /// The name as written in the profile.
        name: String,
    },
    /// A feature of the profile that vessel's filters cannot express.
    #[error("{field}: {what} is not supported: {why}")]
    Unsupported {
        /// The spec field.
        field: String,
        /// The feature, e.g. `SCMP_ACT_NOTIFY`.
        what: String,
        /// Why it cannot be honoured.
        why: String,
    },
    /// A value that is malformed or out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The spec field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// seccompiler refused a condition, rule or filter of the profile.
    #[error("linux.seccomp: {0}")]
    Backend(#[source] seccompiler::BackendError),
    /// seccompiler could not compile the filter of one verdict to BPF.
    #[error("linux.seccomp: {verdict} filter: {source}")]
    Compile {
        /// The verdict of the filter's matches.
        verdict: String,
        /// Why.
        #[source]
        source: seccompiler::BackendError,
    },
    /// seccompiler's program does not start as vessel's x32 guard expects.
    #[error(
        "linux.seccomp: seccompiler's program does not start with the expected architecture check"
    )]
    UnexpectedProgram,
    /// More than one of the profile's filters may deny seccomp(2), so they
    /// cannot all be installed.
    #[error(
        "linux.seccomp: the profile can deny seccomp(2) from more than one of the {filters} \
         filters it compiles to, so they cannot all be installed; allow seccomp or give its \
         rules a single action"
    )]
    SeccompDeniedTwice {
        /// How many filters the profile compiles to.
        filters: usize,
    },
    /// A filter is longer than the kernel takes.
    #[error(
        "linux.seccomp: the {label} filter needs {len} BPF instructions, more than the kernel's {max}"
    )]
    TooLong {
        /// The filter.
        label: String,
        /// Its instructions.
        len: usize,
        /// The kernel's limit.
        max: usize,
    },
    /// SECCOMP_FILTER_FLAG_TSYNC could not apply a filter to another thread.
    #[error("linux.seccomp: installing filter {index} of {count}: thread {thread} cannot be synchronised (SECCOMP_FILTER_FLAG_TSYNC)")]
    ThreadSync {
        /// 1-based position of the filter in the install order.
        index: usize,
        /// How many filters the profile compiles to.
        count: usize,
        /// The thread that could not take the filter.
        thread: i64,
    },
    /// The kernel refused a filter.
    #[error("linux.seccomp: installing filter {index} of {count} ({verdict}) with flags {flags:#x}: {source}{hint}")]
    Install {
        /// 1-based position of the filter in the install order.
        index: usize,
        /// How many filters the profile compiles to.
        count: usize,
        /// What the filter returns on a match.
        verdict: Arc<str>,
        /// The seccomp(2) flags used.
        flags: u64,
        /// The kernel's error.
        source: io::Error,
        /// A hint on the usual cause, empty if none.
        hint: &'static str,
    },
}

/// The kernel's verdicts that vessel can express, ordered from the most to
/// the least restrictive, which is the kernel's precedence for stacked filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Notify,
    Log,
    Allow,
}

impl Verdict {
    fn action(self) -> SeccompAction {
        match self {
            Verdict::KillProcess => SeccompAction::KillProcess,
            Verdict::KillThread => SeccompAction::KillThread,
            Verdict::Trap => SeccompAction::Trap,
            Verdict::Errno(e) => SeccompAction::Errno(u32::from(e)),
            // seccompiler has no USER_NOTIF: a marked TRACE, rewritten in
            // `build` (TRACE itself is refused, so the mark is unambiguous).
            Verdict::Notify => SeccompAction::Trace(NOTIFY_MARK),
            Verdict::Log => SeccompAction::Log,
            Verdict::Allow => SeccompAction::Allow,
        }
    }

    /// Whether a call getting this verdict does not run (LOG lets it run).
    fn denies(self) -> bool {
        !matches!(self, Verdict::Log | Verdict::Allow)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::KillProcess => f.write_str("SCMP_ACT_KILL_PROCESS"),
            Verdict::KillThread => f.write_str("SCMP_ACT_KILL_THREAD"),
            Verdict::Trap => f.write_str("SCMP_ACT_TRAP"),
            Verdict::Errno(e) => write!(f, "SCMP_ACT_ERRNO({e})"),
            Verdict::Notify => f.write_str("SCMP_ACT_NOTIFY"),
            Verdict::Log => f.write_str("SCMP_ACT_LOG"),
            Verdict::Allow => f.write_str("SCMP_ACT_ALLOW"),
        }
    }
}

/// The TRACE data standing for USER_NOTIF in seccompiler's output.
const NOTIFY_MARK: u32 = 0xfeed;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;

/// Rewrites the marked TRACE returns of `bpf` into USER_NOTIF.
fn patch_notify(bpf: &mut BpfProgram) {
    const BPF_RET_K: u16 = 0x06;
    for insn in bpf.iter_mut() {
        if insn.code == BPF_RET_K && insn.k == SECCOMP_RET_TRACE | NOTIFY_MARK {
            insn.k = SECCOMP_RET_USER_NOTIF;
        }
    }
}

/// The largest errno the kernel passes through (MAX_ERRNO); larger values
/// are clamped by the kernel, so they are refused rather than altered.
const MAX_ERRNO: u32 = 4095;

fn verdict(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    action_field: &dyn Fn() -> String,
    errno_field: &dyn Fn() -> String,
) -> Result<Verdict, SeccompError> {
    let unsupported = |what: &str, why: &str| SeccompError::Unsupported {
        field: action_field(),
        what: what.to_string(),
        why: why.to_string(),
    };
    let v = match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            Verdict::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => Verdict::KillProcess,
        LinuxSeccompAction::ScmpActTrap => Verdict::Trap,
        LinuxSeccompAction::ScmpActLog => Verdict::Log,
        LinuxSeccompAction::ScmpActAllow => Verdict::Allow,
        LinuxSeccompAction::ScmpActErrno => {
            let errno = errno_ret.unwrap_or(libc::EPERM as u32);
            if errno > MAX_ERRNO {
                return Err(SeccompError::Invalid {
                    field: errno_field(),
                    reason: format!("errno {errno} is above the kernel's maximum {MAX_ERRNO}"),
                });
            }
            return Ok(Verdict::Errno(errno as u16));
        }
        LinuxSeccompAction::ScmpActNotify => Verdict::Notify,
        LinuxSeccompAction::ScmpActTrace => {
            return Err(unsupported(
                "SCMP_ACT_TRACE",
                "vessel does not run the container under a tracer",
            ))
        }
    };
    if let Some(errno) = errno_ret {
        return Err(SeccompError::Invalid {
            field: errno_field(),
            reason: format!("errnoRet {errno} is only meaningful with SCMP_ACT_ERRNO, not {v}"),
        });
    }
    Ok(v)
}

/// One argument condition, kept in OCI terms so that [`compile`] can reason
/// about it as well as hand it to seccompiler.
#[derive(Clone, Copy, Debug)]
struct Cond {
    index: u8,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

impl Cond {
    fn from_spec(arg: &LinuxSeccompArg, field: &dyn Fn() -> String) -> Result<Self, SeccompError> {
        let index = arg.index();
        if index > 5 {
            return Err(SeccompError::Invalid {
                field: format!("{}.index", field()),
                reason: format!("argument index {index} is out of range 0..=5"),
            });
        }
        let value_two = arg.value_two().unwrap_or(0);
        if value_two != 0 && arg.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
            return Err(SeccompError::Invalid {
                field: format!("{}.valueTwo", field()),
                reason: format!(
                    "valueTwo is only used by SCMP_CMP_MASKED_EQ, not {}",
                    arg.op()
                ),
            });
        }
        Ok(Cond {
            index: index as u8,
            op: arg.op(),
            value: arg.value(),
            value_two,
        })
    }

    fn to_seccompiler(self) -> Result<SeccompCondition, SeccompError> {
        let (op, value) = match self.op {
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, self.value),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, self.value),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, self.value),
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, self.value),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, self.value),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, self.value),
            // OCI (like libseccomp): value is the mask, valueTwo the datum.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (SeccompCmpOp::MaskedEq(self.value), self.value_two)
            }
        };
        SeccompCondition::new(self.index, SeccompCmpArgLen::Qword, op, value)
            .map_err(SeccompError::Backend)
    }

    /// The condition's outcome for an argument value.
    fn holds(self, arg: u64) -> bool {
        match self.op {
            LinuxSeccompOperator::ScmpCmpNe => arg != self.value,
            LinuxSeccompOperator::ScmpCmpLt => arg < self.value,
            LinuxSeccompOperator::ScmpCmpLe => arg <= self.value,
            LinuxSeccompOperator::ScmpCmpEq => arg == self.value,
            LinuxSeccompOperator::ScmpCmpGe => arg >= self.value,
            LinuxSeccompOperator::ScmpCmpGt => arg > self.value,
            LinuxSeccompOperator::ScmpCmpMaskedEq => arg & self.value == self.value_two,
        }
    }

    /// The outcome when only some arguments are known: `None` if unknown.
    fn holds_for(self, known: &[(u8, u64)]) -> Option<bool> {
        known
            .iter()
            .find(|(i, _)| *i == self.index)
            .map(|(_, v)| self.holds(*v))
    }
}

/// When the rules of one verdict match a syscall: always, or when any one of
/// the condition sets (each ANDed) holds.
#[derive(Clone, Debug)]
enum Match {
    Always,
    AnyOf(Vec<Vec<Cond>>),
}

impl Match {
    fn merge(&mut self, other: &Match) {
        match (&mut *self, other) {
            (Match::Always, _) => {}
            (_, Match::Always) => *self = Match::Always,
            (Match::AnyOf(mine), Match::AnyOf(theirs)) => mine.extend(theirs.iter().cloned()),
        }
    }

    /// (may match, must match) for a call of which only `known` arguments
    /// are known.
    fn outcome(&self, known: &[(u8, u64)]) -> (bool, bool) {
        match self {
            Match::Always => (true, true),
            Match::AnyOf(sets) => {
                let mut may = false;
                let mut must = false;
                for set in sets {
                    may |= set.iter().all(|c| c.holds_for(known) != Some(false));
                    must |= set.iter().all(|c| c.holds_for(known) == Some(true));
                }
                (may, must)
            }
        }
    }

    fn to_seccompiler(&self) -> Result<Vec<SeccompRule>, SeccompError> {
        match self {
            // seccompiler matches a syscall unconditionally on an empty rule list.
            Match::Always => Ok(Vec::new()),
            Match::AnyOf(sets) => sets
                .iter()
                .map(|set| {
                    let conds = set
                        .iter()
                        .map(|c| c.to_seccompiler())
                        .collect::<Result<Vec<_>, _>>()?;
                    SeccompRule::new(conds).map_err(SeccompError::Backend)
                })
                .collect(),
        }
    }
}

/// The conditions of one `syscalls[i]` entry, with runc's treatment of a
/// repeated argument index (each condition becomes its own rule).
fn rule_match(i: usize, args: Option<&Vec<LinuxSeccompArg>>) -> Result<Match, SeccompError> {
    let args = match args {
        Some(args) if !args.is_empty() => args,
        _ => return Ok(Match::Always),
    };
    let conds = args
        .iter()
        .enumerate()
        .map(|(j, a)| Cond::from_spec(a, &|| format!("linux.seccomp.syscalls[{i}].args[{j}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = [false; 6];
    let repeated = conds
        .iter()
        .any(|c| std::mem::replace(&mut seen[usize::from(c.index)], true));
    if repeated {
        Ok(Match::AnyOf(conds.into_iter().map(|c| vec![c]).collect()))
    } else {
        Ok(Match::AnyOf(vec![conds]))
    }
}

/// Syscall names that exist on some architecture the syscalls crate knows
/// (plus ARM's private calls, which libseccomp knows) but not on x86_64.
/// Sorted for binary search; a unit test checks both properties.
#[cfg(target_arch = "x86_64")]
const FOREIGN_SYSCALLS: &[&str] = &[
    "_llseek",
    "_newselect",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "bdflush",
    "breakpoint",
    "cachectl",
    "cacheflush",
    "chown32",
    "clock_adjtime64",
    "clock_getres_time64",
    "clock_gettime64",
    "clock_nanosleep_time64",
    "clock_settime64",
    "execv",
    "fadvise64_64",
    "fchown32",
    "fcntl64",
    "fstat64",
    "fstatat",
    "fstatat64",
    "fstatfs64",
    "ftime",
    "ftruncate64",
    "futex_time64",
    "get_tls",
    "getdomainname",
    "getegid32",
    "geteuid32",
    "getgid32",
    "getgroups32",
    "getpagesize",
    "getresgid32",
    "getresuid32",
    "getuid32",
    "gtty",
    "idle",
    "io_pgetevents_time64",
    "ipc",
    "kern_features",
    "lchown32",
    "llseek",
    "lock",
    "lstat64",
    "memory_ordering",
    "mmap2",
    "mpx",
    "mq_timedreceive_time64",
    "mq_timedsend_time64",
    "multiplexer",
    "nice",
    "oldfstat",
    "oldlstat",
    "oldolduname",
    "oldstat",
    "olduname",
    "pciconfig_iobase",
    "pciconfig_read",
    "pciconfig_write",
    "perfctr",
    "ppoll_time64",
    "prof",
    "profil",
    "pselect6_time64",
    "readdir",
    "recv",
    "recvmmsg_time64",
    "riscv_flush_icache",
    "riscv_hwprobe",
    "rt_sigtimedwait_time64",
    "rtas",
    "s390_guarded_storage",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
    "s390_sthyi",
    "sched_get_affinity",
    "sched_rr_get_interval_time64",
    "sched_set_affinity",
    "semtimedop_time64",
    "send",
    "sendfile64",
    "set_tls",
    "setfsgid32",
    "setfsuid32",
    "setgid32",
    "setgroups32",
    "setregid32",
    "setresgid32",
    "setresuid32",
    "setreuid32",
    "setuid32",
    "sgetmask",
    "sigaction",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socketcall",
    "spu_create",
    "spu_run",
    "ssetmask",
    "stat64",
    "statfs64",
    "stime",
    "stty",
    "subpage_prot",
    "swapcontext",
    "switch_endian",
    "sync_file_range2",
    "sys_debug_setcontext",
    "syscall",
    "sysmips",
    "timer_gettime64",
    "timer_settime64",
    "timerfd",
    "timerfd_gettime64",
    "timerfd_settime64",
    "truncate64",
    "ugetrlimit",
    "ulimit",
    "umount",
    "usr26",
    "usr32",
    "utimensat_time64",
    "utrap_install",
    "vm86",
    "vm86old",
    "waitpid",
];

#[cfg(not(target_arch = "x86_64"))]
const FOREIGN_SYSCALLS: &[&str] = &[];

/// Native syscall names sorted for binary search; built once per process
/// because a linear `Sysno::from_str` per name dominates compile time.
fn native_table() -> &'static [(&'static str, i64)] {
    static TABLE: OnceLock<Vec<(&'static str, i64)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<_> = syscalls::Sysno::iter()
            .map(|s| (s.name(), i64::from(s.id())))
            .collect();
        table.sort_unstable_by_key(|(name, _)| *name);
        table
    })
}

/// A name's fate: its native number, skipped as foreign, or unknown.
enum Lookup {
    Native(i64),
    Foreign(&'static str),
    Unknown,
}

fn lookup(name: &str) -> Lookup {
    let table = native_table();
    if let Ok(i) = table.binary_search_by_key(&name, |(n, _)| *n) {
        return Lookup::Native(table[i].1);
    }
    match FOREIGN_SYSCALLS.binary_search(&name) {
        Ok(i) => Lookup::Foreign(FOREIGN_SYSCALLS[i]),
        Err(_) => Lookup::Unknown,
    }
}

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Arch = Arch::ScmpArchX86_64;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Arch = Arch::ScmpArchAarch64;
#[cfg(target_arch = "riscv64")]
const NATIVE_ARCH: Arch = Arch::ScmpArchRiscv64;

#[cfg(target_arch = "x86_64")]
const TARGET_ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const TARGET_ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const TARGET_ARCH: TargetArch = TargetArch::riscv64;

/// Architectures accepted besides the native one: their syscalls are killed.
#[cfg(target_arch = "x86_64")]
const KILLED_ARCHES: &[Arch] = &[Arch::ScmpArchX86, Arch::ScmpArchX32];
#[cfg(not(target_arch = "x86_64"))]
const KILLED_ARCHES: &[Arch] = &[];

fn check_architectures(arches: Option<&Vec<Arch>>) -> Result<(), SeccompError> {
    let arches = match arches {
        Some(a) if !a.is_empty() => a,
        _ => return Ok(()),
    };
    let mut native = false;
    for (i, arch) in arches.iter().enumerate() {
        if *arch == NATIVE_ARCH || *arch == Arch::ScmpArchNative {
            native = true;
        } else if !KILLED_ARCHES.contains(arch) {
            return Err(SeccompError::Unsupported {
                field: format!("linux.seccomp.architectures[{i}]"),
                what: arch.to_string(),
                why: format!(
                    "rules are compiled for the native architecture ({}) only",
                    std::env::consts::ARCH
                ),
            });
        }
    }
    if !native {
        return Err(SeccompError::Invalid {
            field: "linux.seccomp.architectures".to_string(),
            reason: format!(
                "the native architecture ({}) is not listed, so no rule would apply",
                std::env::consts::ARCH
            ),
        });
    }
    Ok(())
}

/// seccomp(2) flags from linux/seccomp.h.
const FLAG_TSYNC: u64 = 1;
const FLAG_LOG: u64 = 1 << 1;
const FLAG_SPEC_ALLOW: u64 = 1 << 2;

fn filter_flags(flags: Option<&Vec<LinuxSeccompFilterFlag>>) -> Result<u64, SeccompError> {
    let mut bits = 0;
    for (i, flag) in flags.into_iter().flatten().enumerate() {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::Unsupported {
                    field: format!("linux.seccomp.flags[{i}]"),
                    what: "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".to_string(),
                    why: "vessel does not set it on its notify filter".to_string(),
                })
            }
        };
    }
    Ok(bits)
}

/// The kernel's limit on the length of one classic BPF program.
const BPF_MAXINSNS: usize = 4096;

/// seccompiler's programs start with these three instructions: load the
/// architecture, skip the next instruction if it is the native one, kill.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn starts_with_arch_check(bpf: &[sock_filter]) -> bool {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    bpf.len() >= 3
        && bpf[0].code == LD_W_ABS
        && bpf[0].k == 4
        && bpf[1].code == JEQ_K
        && bpf[1].jt == 1
        && bpf[1].jf == 0
        && bpf[2].code == RET_K
}

/// Inserts, right after the architecture check, a check that kills x32-ABI
/// syscalls: they carry the x86_64 audit arch and a number with bit 30 set,
/// which no rule names. All jumps of the program are relative and none
/// crosses the insertion point, so the rest needs no relocation.
#[cfg(target_arch = "x86_64")]
fn add_x32_guard(bpf: &mut BpfProgram) -> Result<(), SeccompError> {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    if !starts_with_arch_check(bpf) {
        return Err(SeccompError::UnexpectedProgram);
    }
    let guard = [
        // Load seccomp_data.nr (offset 0).
        sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // nr >= X32_SYSCALL_BIT ? fall through to the kill : skip it.
        sock_filter {
            code: 0x35,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_KILL_PROCESS,
        },
    ];
    bpf.splice(3..3, guard);
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
fn add_x32_guard(_bpf: &mut BpfProgram) -> Result<(), SeccompError> {
    Ok(())
}

/// One filter ready for seccomp(2).
#[derive(Clone)]
struct Program {
    /// What the filter returns on a match, for messages (shared so that a
    /// failed install reports it without allocating under a partial filter).
    label: Arc<str>,
    bpf: BpfProgram,
    /// Returns USER_NOTIF: installed with SECCOMP_FILTER_FLAG_NEW_LISTENER.
    notify: bool,
}

/// A profile compiled to BPF, ready to install with [`CompiledSeccomp::apply`].
#[derive(Clone)]
pub struct CompiledSeccomp {
    /// In install order.
    programs: Vec<Program>,
    flags: u64,
    skipped: Vec<&'static str>,
    /// One of the programs returns USER_NOTIF.
    notify: bool,
    listener_path: Option<std::path::PathBuf>,
    listener_metadata: String,
    /// Connected by [`CompiledSeccomp::connect_listener`].
    listener: Option<Arc<Listener>>,
}

impl fmt::Debug for CompiledSeccomp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let programs: Vec<String> = self
            .programs
            .iter()
            .map(|p| format!("{} ({} insns)", p.label, p.bpf.len()))
            .collect();
        f.debug_struct("CompiledSeccomp")
            .field("programs", &programs)
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

/// Compiles an OCI seccomp profile (see the module documentation for the
/// semantics and what is refused). Cheap enough to run on every `create`,
/// so a bad profile fails before anything is set up.
pub fn compile(s: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    if s.listener_metadata().is_some() && s.listener_path().is_none() {
        return Err(SeccompError::Invalid {
            field: "linux.seccomp.listenerMetadata".into(),
            reason: "given without linux.seccomp.listenerPath".into(),
        });
    }
    check_architectures(s.architectures().as_ref())?;
    let flags = filter_flags(s.flags().as_ref())?;
    let default = verdict(
        s.default_action(),
        s.default_errno_ret(),
        &|| "linux.seccomp.defaultAction".into(),
        &|| "linux.seccomp.defaultErrnoRet".into(),
    )?;
    if default == Verdict::Notify {
        // Every call after loading, the fd's sendmsg included, would wait
        // for a listener that never gets the fd (runc refuses it too).
        return Err(SeccompError::Invalid {
            field: "linux.seccomp.defaultAction".into(),
            reason: "SCMP_ACT_NOTIFY cannot be the default action".into(),
        });
    }

    let mut by_verdict: BTreeMap<Verdict, BTreeMap<i64, Match>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        add_rule(i, sc, default, &mut by_verdict, &mut skipped)?;
    }

    check_notify(s, &by_verdict)?;
    let mut filters: Vec<(Program, bool)> = Vec::new();
    let install_call = [
        (0u8, u64::from(libc::SECCOMP_SET_MODE_FILTER)),
        (1u8, flags),
    ];
    for (v, rules) in &by_verdict {
        if *v == Verdict::Allow {
            // Only ever returns ALLOW; the default filter carries these rules.
            continue;
        }
        let blocks_install = v.denies()
            && rules
                .get(&libc::SYS_seccomp)
                .is_some_and(|m| m.outcome(&install_call).0);
        filters.push((build(rules, Verdict::Allow, *v)?, blocks_install));
    }
    if default != Verdict::Allow {
        let mut union: BTreeMap<i64, Match> = BTreeMap::new();
        for rules in by_verdict.values() {
            for (nr, m) in rules {
                match union.get_mut(nr) {
                    Some(existing) => existing.merge(m),
                    None => {
                        union.insert(*nr, m.clone());
                    }
                }
            }
        }
        let blocks_install = default.denies()
            && !union
                .get(&libc::SYS_seccomp)
                .is_some_and(|m| m.outcome(&install_call).1);
        let mut program = build(&union, default, Verdict::Allow)?;
        program.label = format!("default {default}").into();
        filters.push((program, blocks_install));
    }
    if filters.is_empty() {
        // An allow-everything profile still gets the architecture checks.
        let mut program = build(&BTreeMap::new(), Verdict::Allow, Verdict::KillProcess)?;
        program.label = "architecture check".into();
        filters.push((program, false));
    }

    if filters.iter().filter(|(_, blocks)| *blocks).count() > 1 {
        return Err(SeccompError::SeccompDeniedTwice {
            filters: filters.len(),
        });
    }
    // Stable: ascending verdict order, the filter that may block seccomp(2) last.
    filters.sort_by_key(|(_, blocks)| *blocks);
    let mut programs: Vec<Program> = filters.into_iter().map(|(p, _)| p).collect();
    add_x32_guard(&mut programs[0].bpf)?;
    for p in &programs {
        if p.bpf.len() > BPF_MAXINSNS {
            return Err(SeccompError::TooLong {
                label: p.label.to_string(),
                len: p.bpf.len(),
                max: BPF_MAXINSNS,
            });
        }
    }
    Ok(CompiledSeccomp {
        notify: programs.iter().any(|p| p.notify),
        programs,
        flags,
        skipped,
        listener_path: s.listener_path().clone(),
        listener_metadata: s.listener_metadata().clone().unwrap_or_default(),
        listener: None,
    })
}

/// NOTIFY needs a listener, and must leave sendmsg(2) alone: the notify
/// fd is sent with it after the filters are loaded.
fn check_notify(
    s: &LinuxSeccomp,
    by_verdict: &BTreeMap<Verdict, BTreeMap<i64, Match>>,
) -> Result<(), SeccompError> {
    let Some(rules) = by_verdict.get(&Verdict::Notify) else {
        return Ok(());
    };
    let field = || {
        let i = s
            .syscalls()
            .iter()
            .flatten()
            .position(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
            .unwrap_or(0);
        format!("linux.seccomp.syscalls[{i}].action")
    };
    if s.listener_path().is_none() {
        return Err(SeccompError::Invalid {
            field: field(),
            reason: "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into(),
        });
    }
    if rules.contains_key(&libc::SYS_sendmsg) {
        return Err(SeccompError::Invalid {
            field: field(),
            reason: "SCMP_ACT_NOTIFY on sendmsg: the notify fd itself is sent with sendmsg \
                     after the filter is loaded"
                .into(),
        });
    }
    Ok(())
}

fn add_rule(
    i: usize,
    sc: &LinuxSyscall,
    default: Verdict,
    by_verdict: &mut BTreeMap<Verdict, BTreeMap<i64, Match>>,
    skipped: &mut Vec<&'static str>,
) -> Result<(), SeccompError> {
    let v = verdict(
        sc.action(),
        sc.errno_ret(),
        &|| format!("linux.seccomp.syscalls[{i}].action"),
        &|| format!("linux.seccomp.syscalls[{i}].errnoRet"),
    )?;
    if sc.names().is_empty() {
        return Err(SeccompError::Invalid {
            field: format!("linux.seccomp.syscalls[{i}].names"),
            reason: "no syscall names".into(),
        });
    }
    let m = rule_match(i, sc.args().as_ref())?;
    // Validate every name even when the rule cannot change anything.
    let noop = v == Verdict::Allow && default == Verdict::Allow;
    for (j, name) in sc.names().iter().enumerate() {
        match lookup(name) {
            Lookup::Native(_) if noop => {}
            Lookup::Native(nr) => {
                let rules = by_verdict.entry(v).or_default();
                match rules.get_mut(&nr) {
                    Some(existing) => existing.merge(&m),
                    None => {
                        rules.insert(nr, m.clone());
                    }
                }
            }
            Lookup::Foreign(name) => skipped.push(name),
            Lookup::Unknown => {
                return Err(SeccompError::UnknownSyscall {
                    field: format!("linux.seccomp.syscalls[{i}].names[{j}]"),
                    name: name.clone(),
                })
            }
        }
    }
    Ok(())
}

fn build(
    rules: &BTreeMap<i64, Match>,
    mismatch: Verdict,
    on_match: Verdict,
) -> Result<Program, SeccompError> {
    let rules = rules
        .iter()
        .map(|(nr, m)| Ok((*nr, m.to_seccompiler()?)))
        .collect::<Result<BTreeMap<_, _>, SeccompError>>()?;
    let filter = SeccompFilter::new(rules, mismatch.action(), on_match.action(), TARGET_ARCH)
        .map_err(SeccompError::Backend)?;
    let mut bpf: BpfProgram = filter
        .try_into()
        .map_err(|source: seccompiler::BackendError| SeccompError::Compile {
            verdict: on_match.to_string(),
            source,
        })?;
    let notify = on_match == Verdict::Notify;
    if notify {
        patch_notify(&mut bpf);
    }
    Ok(Program {
        label: on_match.to_string().into(),
        bpf,
        notify,
    })
}

impl CompiledSeccomp {
    /// Installs the filters on the calling thread (all threads with
    /// `SECCOMP_FILTER_FLAG_TSYNC`). The caller must have set no_new_privs
    /// or hold CAP_SYS_ADMIN. Nothing but seccomp(2) runs between the
    /// installs, so it is safe in a forked child just before execve.
    ///
    /// With NOTIFY rules, the notify fd then goes to the listener (see
    /// [`CompiledSeccomp::connect_listener`]): the only system call made
    /// after loading is that sendmsg(2).
    pub fn apply(&self) -> Result<(), SeccompError> {
        let listener = match (self.notify, &self.listener) {
            (false, _) => None,
            (true, Some(l)) => Some((l, l.take_body()?)),
            (true, None) => {
                return Err(SeccompError::Invalid {
                    field: "linux.seccomp.listenerPath".into(),
                    reason: "no connection to the listener was prepared for this process".into(),
                })
            }
        };
        let mut notify_fd = None;
        for (i, p) in self.programs.iter().enumerate() {
            let flags = match p.notify {
                true if self.flags & FLAG_TSYNC != 0 => {
                    self.flags | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH
                }
                true => self.flags | FLAG_NEW_LISTENER,
                false => self.flags,
            };
            let prog = libc::sock_fprog {
                // Fits: compile() refuses programs longer than BPF_MAXINSNS.
                len: p.bpf.len() as libc::c_ushort,
                // seccompiler's sock_filter is repr(C) with the kernel's layout,
                // the same as libc's.
                filter: p.bpf.as_ptr().cast::<libc::sock_filter>().cast_mut(),
            };
            // SAFETY: seccomp(2) copies the program out of `prog`, which
            // points into `p.bpf`; both outlive the call and the kernel does
            // not write to them.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &prog as *const libc::sock_fprog,
                )
            };
            if p.notify && rc >= 0 {
                notify_fd = Some(rc as i32);
                continue;
            }
            if rc == 0 {
                continue;
            }
            if rc > 0 {
                return Err(SeccompError::ThreadSync {
                    index: i + 1,
                    count: self.programs.len(),
                    thread: rc,
                });
            }
            let source = io::Error::last_os_error();
            let hint = match source.raw_os_error() {
                Some(libc::EACCES) => {
                    " (set no_new_privs first, or install while holding CAP_SYS_ADMIN)"
                }
                Some(libc::EINVAL) => " (the kernel rejected the flags or the program)",
                _ => "",
            };
            return Err(SeccompError::Install {
                index: i + 1,
                count: self.programs.len(),
                verdict: p.label.clone(),
                flags,
                source,
                hint,
            });
        }
        if let (Some((l, body)), Some(fd)) = (listener, notify_fd) {
            if let Err(errno) = l.send_fd(&body, fd) {
                return Err(SeccompError::Invalid {
                    field: "linux.seccomp.listenerPath".into(),
                    reason: format!(
                        "send the notify fd to {}: {} (the profile must allow sendmsg)",
                        l.path().display(),
                        io::Error::from_raw_os_error(errno)
                    ),
                });
            }
        }
        Ok(())
    }

    /// With NOTIFY rules: connects to `listenerPath`. Called by `create`
    /// before the container process is forked, which inherits the
    /// connection (the path is unreachable once it is in its rootfs).
    pub fn connect_listener(&mut self) -> Result<(), SeccompError> {
        if let (true, Some(path)) = (self.notify, &self.listener_path) {
            let l = Listener::connect(path, self.listener_metadata.clone())?;
            self.listener = Some(Arc::new(l));
        }
        Ok(())
    }

    /// Once the process's host pid is known: hands it the listener's
    /// message, `state` being the container's OCI state. Nothing without
    /// NOTIFY rules.
    pub fn send_state(&self, pid: i32, state: &serde_json::Value) -> Result<(), SeccompError> {
        match &self.listener {
            Some(l) => l.send_state(pid, state),
            None => Ok(()),
        }
    }

    /// Names in the profile that do not exist on this architecture and were
    /// skipped, as libseccomp skips them.
    pub fn skipped_syscalls(&self) -> &[&'static str] {
        &self.skipped
    }

    /// How many filters [`CompiledSeccomp::apply`] installs.
    pub fn filter_count(&self) -> usize {
        self.programs.len()
    }

    /// Total BPF instructions over all filters (each syscall runs them all).
    pub fn instruction_count(&self) -> usize {
        self.programs.iter().map(|p| p.bpf.len()).sum()
    }

    /// The seccomp(2) flags every filter is installed with.
    pub fn flags(&self) -> u64 {
        self.flags
    }
}

/// What `vessel features` reports under `linux.seccomp`: the actions,
/// operators and architectures [`compile`] accepts, the flags it knows and
/// those the running kernel supports.
pub fn features() -> oci_spec::runtime::Seccomp {
    use LinuxSeccompAction as A;
    let known = [
        (LinuxSeccompFilterFlag::SeccompFilterFlagTsync, FLAG_TSYNC),
        (LinuxSeccompFilterFlag::SeccompFilterFlagLog, FLAG_LOG),
        (
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
            FLAG_SPEC_ALLOW,
        ),
    ];
    let mut archs = vec![NATIVE_ARCH];
    archs.extend_from_slice(KILLED_ARCHES);
    oci_spec::runtime::SeccompBuilder::default()
        .enabled(true)
        .actions(vec![
            A::ScmpActAllow,
            A::ScmpActErrno,
            A::ScmpActKill,
            A::ScmpActKillProcess,
            A::ScmpActKillThread,
            A::ScmpActLog,
            A::ScmpActNotify,
            A::ScmpActTrap,
        ])
        .operators(
            [
                LinuxSeccompOperator::ScmpCmpEq,
                LinuxSeccompOperator::ScmpCmpGe,
                LinuxSeccompOperator::ScmpCmpGt,
                LinuxSeccompOperator::ScmpCmpLe,
                LinuxSeccompOperator::ScmpCmpLt,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                LinuxSeccompOperator::ScmpCmpNe,
            ]
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>(),
        )
        .archs(archs)
        .known_flags(known.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>())
        .supported_flags(
            known
                .iter()
                .filter(|(_, bit)| kernel_supports_flag(*bit))
                .map(|(f, _)| f.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .unwrap_or_default()
}

/// Asks the kernel whether it knows a filter flag without installing
/// anything: with a NULL program it checks the flags first (EINVAL when
/// unknown) and then fails to copy the program (EFAULT).
fn kernel_supports_flag(flag: u64) -> bool {
    // SAFETY: a NULL program pointer is never dereferenced by us; the kernel
    // rejects it with EFAULT after validating the flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flag,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn err(json: &str) -> String {
        compile(&profile(json)).unwrap_err().to_string()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn foreign_list_is_sorted_and_foreign() {
        assert!(FOREIGN_SYSCALLS.windows(2).all(|w| w[0] < w[1]));
        for name in FOREIGN_SYSCALLS {
            assert!(name.parse::<syscalls::Sysno>().is_err(), "{name} is native");
        }
    }

    #[test]
    fn native_names_resolve() {
        assert!(matches!(lookup("getcwd"), Lookup::Native(n) if n == libc::SYS_getcwd));
        assert!(matches!(lookup("seccomp"), Lookup::Native(n) if n == libc::SYS_seccomp));
        assert!(matches!(
            lookup("socketcall"),
            Lookup::Foreign("socketcall")
        ));
        assert!(matches!(lookup("fooo"), Lookup::Unknown));
    }

    #[test]
    // c_ulong is u64 only on 64-bit targets.
    #[allow(clippy::unnecessary_cast)]
    fn flag_bits_match_the_kernel() {
        assert_eq!(FLAG_TSYNC, libc::SECCOMP_FILTER_FLAG_TSYNC as u64);
        assert_eq!(FLAG_LOG, libc::SECCOMP_FILTER_FLAG_LOG as u64);
        assert_eq!(FLAG_SPEC_ALLOW, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u64);
    }

    #[test]
    fn unknown_names_are_errors_and_foreign_ones_skipped() {
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"},
                {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
                {"names":["rmdir"],"action":"SCMP_ACT_ERRNO"},
                {"names":["getpid","fooo"],"action":"SCMP_ACT_ERRNO"}]}"#),
            r#"linux.seccomp.syscalls[3].names[1]: unknown syscall "fooo""#
        );
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read","socketcall","_llseek","set_tls"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert_eq!(c.skipped_syscalls(), ["socketcall", "_llseek", "set_tls"]);
        assert_eq!(c.filter_count(), 1);
    }

    #[test]
    fn refused_features_name_their_field() {
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["getcwd"],"action":"SCMP_ACT_NOTIFY"}]}"#),
            "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath"
        );
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l","syscalls":[
                {"names":["sendmsg"],"action":"SCMP_ACT_NOTIFY"}]}"#
        )
        .contains("SCMP_ACT_NOTIFY on sendmsg"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/l"}"#)
                .starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be")
        );
        assert!(err(r#"{"defaultAction":"SCMP_ACT_TRACE"}"#)
            .starts_with("linux.seccomp.defaultAction: SCMP_ACT_TRACE is not supported"));
        // A listener without NOTIFY rules gets nothing, as in runc.
        compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/l.sock"}"#,
        ))
        .unwrap();
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerMetadata":"x"}"#)
                .starts_with("linux.seccomp.listenerMetadata:")
        );
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#
        )
        .starts_with("linux.seccomp.flags[1]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"));
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ALLOW","errnoRet":1}]}"#),
            "linux.seccomp.syscalls[0].errnoRet: errnoRet 1 is only meaningful with \
             SCMP_ACT_ERRNO, not SCMP_ACT_ALLOW"
        );
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":5000}"#),
            "linux.seccomp.defaultErrnoRet: errno 5000 is above the kernel's maximum 4095"
        );
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ERRNO",
                 "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#),
            "linux.seccomp.syscalls[0].args[1].index: argument index 6 is out of range 0..=5"
        );
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ERRNO",
                 "args":[{"index":0,"value":1,"valueTwo":2,"op":"SCMP_CMP_EQ"}]}]}"#)
        .starts_with("linux.seccomp.syscalls[0].args[0].valueTwo:"));
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}"#
            ),
            "linux.seccomp.syscalls[0].names: no syscall names"
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn architectures() {
        for ok in [
            r#"[]"#,
            r#"["SCMP_ARCH_X86_64"]"#,
            r#"["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"]"#,
            r#"["SCMP_ARCH_NATIVE"]"#,
        ] {
            compile(&profile(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":{ok}}}"#
            )))
            .unwrap();
        }
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"]}"#
        )
        .starts_with("linux.seccomp.architectures[1]: SCMP_ARCH_AARCH64 is not supported"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"]}"#)
                .starts_with("linux.seccomp.architectures: the native architecture (x86_64)")
        );
    }

    #[test]
    fn one_filter_per_verdict_plus_default() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
                {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
                {"names":["getppid"],"action":"SCMP_ACT_LOG"},
                {"names":["ptrace"],"action":"SCMP_ACT_KILL"}]}"#,
        ))
        .unwrap();
        // KILL_THREAD, ERRNO(1), LOG and the default.
        assert_eq!(c.filter_count(), 4, "{c:?}");
        // An allow-everything profile still installs the architecture checks.
        let c = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)).unwrap();
        assert_eq!(c.filter_count(), 1);
        assert_eq!(c.instruction_count(), 7, "{c:?}");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn x32_guard_follows_the_arch_check() {
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        let bpf = &c.programs[0].bpf;
        assert!(starts_with_arch_check(bpf));
        assert_eq!((bpf[3].code, bpf[3].k), (0x20, 0));
        assert_eq!(
            (bpf[4].code, bpf[4].k, bpf[4].jt, bpf[4].jf),
            (0x35, 0x4000_0000, 0, 1)
        );
        assert_eq!(
            (bpf[5].code, bpf[5].k),
            (0x06, libc::SECCOMP_RET_KILL_PROCESS)
        );
        // Exactly one guard per profile.
        let guards = c
            .programs
            .iter()
            .flat_map(|p| p.bpf.iter())
            .filter(|i| i.code == 0x35 && i.k == 0x4000_0000)
            .count();
        assert_eq!(guards, 1);
    }

    #[test]
    fn filter_that_may_deny_seccomp_is_installed_last() {
        // The default filter denies seccomp(2); the ERRNO(38) filter does not.
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["write","exit_group"],"action":"SCMP_ACT_ALLOW"},
                {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        ))
        .unwrap();
        assert_eq!(
            &*c.programs.last().unwrap().label,
            "default SCMP_ACT_ERRNO(1)"
        );
        // A KILL rule on seccomp itself goes last instead.
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["seccomp"],"action":"SCMP_ACT_KILL_PROCESS"},
                {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        ))
        .unwrap();
        assert_eq!(&*c.programs.last().unwrap().label, "SCMP_ACT_KILL_PROCESS");
        // A rule on seccomp's third argument (a pointer) may match.
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["seccomp"],"action":"SCMP_ACT_ERRNO","args":[{"index":2,"value":0,"op":"SCMP_CMP_NE"}]},
                {"names":["getppid"],"action":"SCMP_ACT_TRAP"}]}"#,
        ))
        .unwrap();
        assert_eq!(&*c.programs.last().unwrap().label, "SCMP_ACT_ERRNO(1)");
        // A condition on the operation that rules the install out does not count.
        let c = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["seccomp"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
                {"names":["seccomp"],"action":"SCMP_ACT_TRAP","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        ))
        .unwrap();
        assert_eq!(&*c.programs.last().unwrap().label, "SCMP_ACT_TRAP");
        // Two filters that may both deny it cannot all be installed.
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["seccomp"],"action":"SCMP_ACT_ERRNO"},
                {"names":["seccomp"],"action":"SCMP_ACT_TRAP","args":[{"index":2,"value":0,"op":"SCMP_CMP_NE"}]}]}"#
        )
        .contains("can deny seccomp(2) from more than one of the 2 filters"));
    }

    #[test]
    fn repeated_argument_index_means_or() {
        let m = rule_match(
            0,
            Some(&serde_json::from_str(
                r#"[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]"#,
            )
            .unwrap()),
        )
        .unwrap();
        assert!(matches!(&m, Match::AnyOf(sets) if sets.len() == 2));
        assert_eq!(m.outcome(&[(0, 2)]), (true, true));
        assert_eq!(m.outcome(&[(0, 3)]), (false, false));
        let m = rule_match(
            0,
            Some(&serde_json::from_str(
                r#"[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":1,"value":255,"valueTwo":18,"op":"SCMP_CMP_MASKED_EQ"}]"#,
            )
            .unwrap()),
        )
        .unwrap();
        assert!(matches!(&m, Match::AnyOf(sets) if sets.len() == 1 && sets[0].len() == 2));
        assert_eq!(m.outcome(&[(0, 1), (1, 0x112)]), (true, true));
        assert_eq!(m.outcome(&[(0, 1), (1, 0x13)]), (false, false));
        assert_eq!(m.outcome(&[(0, 1)]), (true, false));
    }

    #[test]
    fn errors_display_nothing_but_the_field_and_reason() {
        let e = SeccompError::Install {
            index: 2,
            count: 3,
            verdict: "SCMP_ACT_TRAP".into(),
            flags: 2,
            source: io::Error::from_raw_os_error(libc::EACCES),
            hint: " (hint)",
        };
        assert_eq!(
            e.to_string(),
            "linux.seccomp: installing filter 2 of 3 (SCMP_ACT_TRAP) with flags 0x2: \
             Permission denied (os error 13) (hint)"
        );
    }

    #[test]
    fn features_lists_what_compile_accepts() {
        let f = features();
        assert_eq!(f.enabled(), &Some(true));
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(
            json["knownFlags"],
            serde_json::json!([
                "SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
            ])
        );
        // Every kernel vessel targets (>= 4.17) has all three.
        assert_eq!(json["supportedFlags"], json["knownFlags"]);
        assert!(json["operators"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("SCMP_CMP_MASKED_EQ")));
        // Every advertised action compiles.
        for action in f.actions().as_ref().unwrap() {
            let errno = if *action == LinuxSeccompAction::ScmpActErrno {
                1
            } else {
                0
            };
            let p = profile(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l","syscalls":[{{"names":["getcwd"],"action":"{action}"{}}}]}}"#,
                if errno == 1 { r#","errnoRet":1"# } else { "" }
            ));
            compile(&p).unwrap();
        }
    }
}
