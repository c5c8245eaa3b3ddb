//! `process.scheduler`: checked at create (or exec) time and turned into the
//! `struct sched_attr` that sched_setattr(2) takes.
//!
//! oci-spec 0.10 spells two of the spec's scheduler flags differently from
//! the spec (`SCHED_FLAG_RESET_ON_FORK` as `SCHED_RESET_ON_FORK`,
//! `SCHED_FLAG_DL_OVERRUN` as `SCHED_FLAG_D_L_OVERRUN`), so a config written
//! to the spec would not parse: [`normalize_flags`] rewrites the spec's
//! names to the crate's before parsing.

use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P, Scheduler};

use super::{invalid, SpecError};

/// The spec's flag names that oci-spec spells otherwise, and its spelling.
const RENAMED_FLAGS: &[(&str, &str)] = &[
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

/// Policies, as the kernel numbers them (linux/sched.h).
const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;
const SCHED_DEADLINE: u32 = 6;

/// The policies vessel applies, by the spec's names (`features` lists them).
pub const POLICIES: &[&str] = &[
    "SCHED_OTHER",
    "SCHED_FIFO",
    "SCHED_RR",
    "SCHED_BATCH",
    "SCHED_IDLE",
    "SCHED_DEADLINE",
];

/// The flags vessel applies, by the spec's names (not the utilization
/// clamps: see [`attr`]).
pub const FLAGS: &[&str] = &[
    "SCHED_FLAG_RESET_ON_FORK",
    "SCHED_FLAG_RECLAIM",
    "SCHED_FLAG_DL_OVERRUN",
    "SCHED_FLAG_KEEP_POLICY",
    "SCHED_FLAG_KEEP_PARAMS",
];

/// The kernel's lower bound for each SCHED_DEADLINE parameter (sched(7)).
const DL_MIN_NS: u64 = 1024;

/// The arguments of sched_setattr(2) for a process, checked.
pub type SchedAttr = libc::sched_attr;

/// Checks `s` and builds its `sched_attr`. Values left out are 0, as the
/// spec says. `field` is where the scheduler came from (`process.scheduler`).
pub fn attr(field: &str, s: &Scheduler) -> Result<SchedAttr, SpecError> {
    let f = |name: &str| format!("{field}.{name}");
    let policy = match s.policy() {
        P::SchedOther => SCHED_OTHER,
        P::SchedFifo => SCHED_FIFO,
        P::SchedRr => SCHED_RR,
        P::SchedBatch => SCHED_BATCH,
        P::SchedIdle => SCHED_IDLE,
        P::SchedDeadline => SCHED_DEADLINE,
        P::SchedIso => {
            return Err(invalid(
                f("policy"),
                "SCHED_ISO is not implemented by the Linux kernel",
            ))
        }
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(invalid(f("nice"), format!("{nice} is outside -20..19")));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(policy, SCHED_FIFO | SCHED_RR);
    if realtime && !(1..=99).contains(&priority) {
        return Err(invalid(
            f("priority"),
            format!("{priority} is outside 1..99, the range of SCHED_FIFO and SCHED_RR"),
        ));
    }
    if !realtime && priority != 0 {
        return Err(invalid(
            f("priority"),
            "only SCHED_FIFO and SCHED_RR take a priority (it must be 0 or absent)",
        ));
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if policy == SCHED_DEADLINE {
        check_deadline(field, runtime, deadline, period)?;
    } else if runtime != 0 || deadline != 0 || period != 0 {
        return Err(invalid(
            field,
            "runtime, deadline and period are only for SCHED_DEADLINE",
        ));
    }
    let mut flags = 0u64;
    for (i, flag) in s.flags().iter().flatten().enumerate() {
        flags |= match flag {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin | F::SchedFlagUtilClampMax => {
                // The clamp values are fields the spec does not have: the
                // kernel would read them as 0 and clamp the task to nothing.
                return Err(invalid(
                    format!("{field}.flags[{i}]"),
                    "utilization clamping needs sched_util_min/max, which the OCI scheduler object does not carry",
                ));
            }
        };
    }
    Ok(libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: priority as u32,
        sched_runtime: runtime,
        sched_deadline: deadline,
        sched_period: period,
    })
}

/// SCHED_DEADLINE's rules (sched(7)): 1024 ns <= runtime <= deadline <=
/// period (a period of 0 means "the deadline").
fn check_deadline(field: &str, runtime: u64, deadline: u64, period: u64) -> Result<(), SpecError> {
    let f = |name: &str| format!("{field}.{name}");
    let max = 1u64 << 63;
    for (name, v) in [("runtime", runtime), ("deadline", deadline)] {
        if !(DL_MIN_NS..max).contains(&v) {
            return Err(invalid(
                f(name),
                format!("{v} ns: SCHED_DEADLINE needs a value from {DL_MIN_NS} ns to 2^63"),
            ));
        }
    }
    if period != 0 && !(DL_MIN_NS..max).contains(&period) {
        return Err(invalid(
            f("period"),
            format!("{period} ns: SCHED_DEADLINE needs 0 or a value from {DL_MIN_NS} ns to 2^63"),
        ));
    }
    if runtime > deadline {
        return Err(invalid(
            f("runtime"),
            format!("{runtime} ns is longer than the deadline ({deadline} ns)"),
        ));
    }
    if period != 0 && deadline > period {
        return Err(invalid(
            f("deadline"),
            format!("{deadline} ns is longer than the period ({period} ns)"),
        ));
    }
    Ok(())
}

/// Rewrites the spec's names of scheduler flags into oci-spec's in a JSON
/// object holding a `scheduler` (a process); returns whether any changed.
pub fn normalize_flags(process: &mut serde_json::Value) -> bool {
    let Some(flags) = process
        .get_mut("scheduler")
        .and_then(|s| s.get_mut("flags"))
        .and_then(|f| f.as_array_mut())
    else {
        return false;
    };
    let mut changed = false;
    for flag in flags {
        if let Some((_, theirs)) = RENAMED_FLAGS.iter().find(|(spec, _)| flag == spec) {
            *flag = serde_json::Value::from(*theirs);
            changed = true;
        }
    }
    changed
}

/// Whether `data` may name a flag [`normalize_flags`] rewrites (a cheap test
/// that spares the common config a second parse).
pub fn may_need_normalizing(data: &[u8]) -> bool {
    RENAMED_FLAGS
        .iter()
        .any(|(spec, _)| data.windows(spec.len()).any(|w| w == spec.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(v: serde_json::Value) -> Scheduler {
        let mut p = serde_json::json!({ "scheduler": v });
        normalize_flags(&mut p);
        serde_json::from_value(p["scheduler"].clone()).unwrap()
    }

    #[test]
    fn spec_flag_names_parse_and_map() {
        let s = sched(serde_json::json!({
            "policy": "SCHED_OTHER",
            "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_KEEP_PARAMS"]
        }));
        assert_eq!(attr("p", &s).unwrap().sched_flags, 0x01 | 0x04 | 0x10);
    }

    #[test]
    fn checks_ranges_naming_the_field() {
        let cases = [
            (
                serde_json::json!({"policy": "SCHED_OTHER", "nice": 20}),
                "p.nice",
            ),
            (
                serde_json::json!({"policy": "SCHED_FIFO", "priority": 0}),
                "p.priority",
            ),
            (
                serde_json::json!({"policy": "SCHED_BATCH", "priority": 3}),
                "p.priority",
            ),
            (serde_json::json!({"policy": "SCHED_ISO"}), "p.policy"),
            (
                serde_json::json!({"policy": "SCHED_DEADLINE", "runtime": 4000, "deadline": 2000}),
                "p.runtime",
            ),
            (
                serde_json::json!({"policy": "SCHED_DEADLINE", "runtime": 10}),
                "p.runtime",
            ),
            (
                serde_json::json!({"policy": "SCHED_RR", "priority": 1, "period": 5}),
                "p:",
            ),
        ];
        for (v, field) in cases {
            let e = attr("p", &sched(v.clone())).unwrap_err().to_string();
            assert!(e.contains(field), "{v}: {e}");
        }
        let ok = sched(serde_json::json!({
            "policy": "SCHED_DEADLINE", "runtime": 1_000_000, "deadline": 2_000_000, "period": 4_000_000
        }));
        let a = attr("p", &ok).unwrap();
        assert_eq!(
            (a.sched_policy, a.sched_runtime),
            (SCHED_DEADLINE, 1_000_000)
        );
    }
}
