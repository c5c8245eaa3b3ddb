//! `linux.memoryPolicy`: checked at create time and turned into the
//! arguments of set_mempolicy(2).
//!
//! The spec: `MPOL_DEFAULT` and `MPOL_LOCAL` take no nodes, `MPOL_BIND`,
//! `MPOL_INTERLEAVE` (and, by the same kernel rule, `MPOL_PREFERRED_MANY`
//! and `MPOL_WEIGHTED_INTERLEAVE`) at least one; `MPOL_PREFERRED` with no
//! nodes means local allocation. Nodes are checked against the host's online
//! nodes, unless `MPOL_F_RELATIVE_NODES` makes them relative to the allowed
//! set or `MPOL_F_STATIC_NODES` lets the kernel ignore absent ones.

use oci_spec::runtime::{
    LinuxMemoryPolicy, MemoryPolicyFlagType as Flag, MemoryPolicyModeType as M,
};

use super::cpulist::{read_sys_list, IdMask};
use super::{invalid, SpecError};

/// The highest node count the kernel may be built for (NODES_SHIFT 10).
pub const MAX_NODES: usize = 1024;

/// Where the kernel lists the online NUMA nodes.
const ONLINE_NODES: &str = "/sys/devices/system/node/online";

/// The modes vessel applies, by the spec's names (`features` lists them).
pub const MODES: &[&str] = &[
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];

/// The mode flags vessel applies, by the spec's names.
pub const FLAGS: &[&str] = &[
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// The arguments of set_mempolicy(2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemPolicy {
    /// The mode with its flags or'ed in.
    pub mode: libc::c_int,
    /// The node mask (empty for none).
    pub nodes: IdMask,
}

/// Checks `linux.memoryPolicy` against the spec and this host (its online
/// nodes), at create time.
pub fn check(p: &LinuxMemoryPolicy) -> Result<MemPolicy, SpecError> {
    let pol = policy(p)?;
    let flags = pol.mode & (libc::MPOL_F_RELATIVE_NODES | libc::MPOL_F_STATIC_NODES);
    if flags == 0 {
        if let Some(online) = read_sys_list(ONLINE_NODES, MAX_NODES) {
            if let Some(n) = pol.nodes.ids().find(|n| !online.contains(*n)) {
                let list: Vec<String> = online.ids().map(|i| i.to_string()).collect();
                return Err(invalid(
                    "linux.memoryPolicy.nodes",
                    format!(
                        "node {n} is not online on this host (online: {})",
                        list.join(",")
                    ),
                ));
            }
        }
    }
    Ok(pol)
}

/// Checks `linux.memoryPolicy` against the spec and builds the
/// set_mempolicy(2) arguments (what [`check`] did not find on the host is
/// left to the kernel).
pub fn policy(p: &LinuxMemoryPolicy) -> Result<MemPolicy, SpecError> {
    const FIELD: &str = "linux.memoryPolicy";
    let nodes_field = "linux.memoryPolicy.nodes";
    let nodes = IdMask::parse(nodes_field, p.nodes().as_deref().unwrap_or(""), MAX_NODES)?;
    let (mode, name) = match p.mode() {
        M::MpolDefault => (libc::MPOL_DEFAULT, "MPOL_DEFAULT"),
        M::MpolPreferred => (libc::MPOL_PREFERRED, "MPOL_PREFERRED"),
        M::MpolBind => (libc::MPOL_BIND, "MPOL_BIND"),
        M::MpolInterleave => (libc::MPOL_INTERLEAVE, "MPOL_INTERLEAVE"),
        M::MpolLocal => (libc::MPOL_LOCAL, "MPOL_LOCAL"),
        // linux/mempolicy.h; not in every libc release.
        M::MpolPreferredMany => (5, "MPOL_PREFERRED_MANY"),
        M::MpolWeightedInterleave => (6, "MPOL_WEIGHTED_INTERLEAVE"),
    };
    let takes_none = matches!(p.mode(), M::MpolDefault | M::MpolLocal);
    let needs_some = matches!(
        p.mode(),
        M::MpolBind | M::MpolInterleave | M::MpolPreferredMany | M::MpolWeightedInterleave
    );
    if takes_none && !nodes.is_empty() {
        return Err(invalid(nodes_field, format!("{name} takes no nodes")));
    }
    if needs_some && nodes.is_empty() {
        return Err(invalid(
            nodes_field,
            format!("{name} needs at least one node"),
        ));
    }
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            Flag::MpolFNumaBalancing => libc::MPOL_F_NUMA_BALANCING,
            Flag::MpolFRelativeNodes => libc::MPOL_F_RELATIVE_NODES,
            Flag::MpolFStaticNodes => libc::MPOL_F_STATIC_NODES,
        };
    }
    let relative = flags & libc::MPOL_F_RELATIVE_NODES != 0;
    let fixed = flags & libc::MPOL_F_STATIC_NODES != 0;
    if relative && fixed {
        return Err(invalid(
            format!("{FIELD}.flags"),
            "MPOL_F_RELATIVE_NODES and MPOL_F_STATIC_NODES exclude each other",
        ));
    }
    if flags != 0 && takes_none {
        return Err(invalid(
            format!("{FIELD}.flags"),
            format!("{name} takes no flags"),
        ));
    }
    Ok(MemPolicy {
        mode: mode | flags,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(v: serde_json::Value) -> Result<MemPolicy, SpecError> {
        let p: LinuxMemoryPolicy = serde_json::from_value(v).unwrap();
        check(&p)
    }

    #[test]
    fn nodes_as_the_spec_says() {
        use serde_json::json;
        let e = pol(json!({"mode": "MPOL_BIND"})).unwrap_err().to_string();
        assert!(
            e.contains("linux.memoryPolicy.nodes") && e.contains("at least one"),
            "{e}"
        );
        let e = pol(json!({"mode": "MPOL_LOCAL", "nodes": "0"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no nodes"), "{e}");
        assert!(pol(json!({"mode": "MPOL_PREFERRED"})).is_ok());
        let e = pol(json!({"mode": "MPOL_BIND", "nodes": "0",
                           "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.memoryPolicy.flags"), "{e}");
        // Relative nodes need not exist.
        let p = pol(json!({"mode": "MPOL_INTERLEAVE", "nodes": "900",
                           "flags": ["MPOL_F_RELATIVE_NODES"]}))
        .unwrap();
        assert_eq!(p.mode, libc::MPOL_INTERLEAVE | libc::MPOL_F_RELATIVE_NODES);
    }

    #[test]
    fn absent_node_is_refused_where_the_host_lists_nodes() {
        if read_sys_list(ONLINE_NODES, MAX_NODES).is_none() {
            eprintln!("SKIP: {ONLINE_NODES} is absent (no NUMA in this kernel)");
            return;
        }
        let e = pol(serde_json::json!({"mode": "MPOL_BIND", "nodes": "1000"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node 1000 is not online"), "{e}");
    }
}
