//! Settings of v1 controllers whose directory is not on the container's
//! main path. libcgroups drives one path in every v1 hierarchy, but a
//! container nested under its caller's cgroups can sit at different paths
//! (a session whose memory cgroup is `/session/x` and every other one `/`):
//! libcgroups applies what lives on the main path and vessel writes these.

use oci_spec::runtime::LinuxResources;

/// One write: the file (in the controller's directory), the value and the
/// `linux.resources` setting it comes from.
pub(crate) type Write = (&'static str, String, String);

/// Removes from `lib` (what libcgroups will apply) the settings of
/// `controller`, which is not on the main path.
pub(crate) fn strip(lib: &mut LinuxResources, controller: &str) {
    match controller {
        "memory" => {
            lib.set_memory(None);
        }
        "pids" => {
            lib.set_pids(None);
        }
        "hugetlb" => {
            lib.set_hugepage_limits(None);
        }
        "cpu" | "cpuset" => {
            if let Some(cpu) = lib.cpu() {
                let mut cpu = cpu.clone();
                if controller == "cpu" {
                    cpu.set_shares(None);
                    cpu.set_quota(None);
                    cpu.set_period(None);
                    cpu.set_realtime_period(None);
                    cpu.set_realtime_runtime(None);
                    cpu.set_idle(None);
                } else {
                    cpu.set_cpus(None);
                    cpu.set_mems(None);
                }
                lib.set_cpu(Some(cpu));
            }
        }
        _ => {}
    }
}

/// The writes that apply `resources`' settings of `controller` (the ones
/// [`strip`] removed), in the order the kernel accepts them.
pub(crate) fn writes(
    controller: &str,
    resources: &LinuxResources,
    disable_oom_killer: bool,
) -> Vec<Write> {
    let mut out: Vec<Write> = Vec::new();
    let mut w = |file: &'static str, v: String, s: &str| {
        out.push((file, v, format!("linux.resources.{s}")));
    };
    match controller {
        "memory" => {
            if let Some(m) = resources.memory() {
                // A new cgroup's memsw limit is unlimited, so the memory
                // limit goes first and memsw (never below it) second.
                if let Some(l) = m.limit() {
                    w("memory.limit_in_bytes", l.to_string(), "memory.limit");
                }
                if let Some(s) = m.swap() {
                    w("memory.memsw.limit_in_bytes", s.to_string(), "memory.swap");
                }
                if let Some(r) = m.reservation().filter(|r| *r != 0) {
                    w(
                        "memory.soft_limit_in_bytes",
                        r.to_string(),
                        "memory.reservation",
                    );
                }
                if let Some(s) = m.swappiness() {
                    w("memory.swappiness", s.to_string(), "memory.swappiness");
                }
                if let Some(k) = m.kernel() {
                    w("memory.kmem.limit_in_bytes", k.to_string(), "memory.kernel");
                }
                if let Some(k) = m.kernel_tcp() {
                    w(
                        "memory.kmem.tcp.limit_in_bytes",
                        k.to_string(),
                        "memory.kernelTCP",
                    );
                }
                if disable_oom_killer {
                    w("memory.oom_control", "1".into(), "memory.disableOOMKiller");
                }
            }
        }
        "pids" => {
            if let Some(p) = resources.pids() {
                let v = if p.limit() > 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                };
                w("pids.max", v, "pids.limit");
            }
        }
        "cpu" => {
            if let Some(c) = resources.cpu() {
                if let Some(v) = c.shares() {
                    w("cpu.shares", v.to_string(), "cpu.shares");
                }
                if let Some(v) = c.period() {
                    w("cpu.cfs_period_us", v.to_string(), "cpu.period");
                }
                if let Some(v) = c.quota() {
                    w("cpu.cfs_quota_us", v.to_string(), "cpu.quota");
                }
                if let Some(v) = c.realtime_period() {
                    w("cpu.rt_period_us", v.to_string(), "cpu.realtimePeriod");
                }
                if let Some(v) = c.realtime_runtime() {
                    w("cpu.rt_runtime_us", v.to_string(), "cpu.realtimeRuntime");
                }
                if let Some(v) = c.idle() {
                    w("cpu.idle", v.to_string(), "cpu.idle");
                }
            }
        }
        "cpuset" => {
            if let Some(c) = resources.cpu() {
                if let Some(v) = c.cpus().as_deref().filter(|v| !v.trim().is_empty()) {
                    w("cpuset.cpus", v.to_string(), "cpu.cpus");
                }
                if let Some(v) = c.mems().as_deref().filter(|v| !v.trim().is_empty()) {
                    w("cpuset.mems", v.to_string(), "cpu.mems");
                }
            }
        }
        _ => {}
    }
    out
}

/// v1 hugetlb limits, whose file names carry the page size.
pub(crate) fn hugetlb_writes(resources: &LinuxResources) -> Vec<(String, String, String)> {
    resources
        .hugepage_limits()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                l.limit().to_string(),
                format!("linux.resources.hugepageLimits[{i}]"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn memory_apart_is_stripped_and_written() {
        let r = res(
            serde_json::json!({"memory": {"limit": 1048576, "swap": 2097152},
            "cpu": {"shares": 512, "cpus": "0"}}),
        );
        let mut lib = r.clone();
        strip(&mut lib, "memory");
        strip(&mut lib, "cpuset");
        assert!(lib.memory().is_none());
        assert_eq!(lib.cpu().as_ref().unwrap().shares(), Some(512));
        assert!(lib.cpu().as_ref().unwrap().cpus().is_none());
        let w = writes("memory", &r, true);
        let files: Vec<_> = w.iter().map(|w| w.0).collect();
        assert_eq!(
            files,
            [
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.oom_control"
            ]
        );
        assert_eq!(w[0].2, "linux.resources.memory.limit");
        assert_eq!(writes("cpuset", &r, false)[0].1, "0");
    }
}
