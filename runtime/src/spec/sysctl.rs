//! Which `linux.sysctl` keys a container may set.
//!
//! A sysctl is written from inside the container, but most of them are
//! global: writing `vm.swappiness` there changes the host's. Only keys that
//! belong to a namespace the container does not share with the host are
//! accepted (runc's rules): the System V IPC and POSIX mqueue keys need an
//! ipc namespace, `net.*` a network namespace, `kernel.hostname` and
//! `kernel.domainname` a uts namespace. A namespace joined by path counts
//! only if it is not the one vessel itself runs in.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci_spec::runtime::{Linux, LinuxNamespaceType};

use super::{invalid, SpecError};
use crate::namespaces::NsFileError;

/// System V IPC keys, namespaced by the ipc namespace (as are `fs.mqueue.*`).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Keys namespaced by the uts namespace.
const UTS_KEYS: &[&str] = &["kernel.hostname", "kernel.domainname"];

/// Refuses every sysctl that would be written to a namespace the container
/// shares with the host, naming the key. Runs before anything is created.
pub(crate) fn check(linux: &Linux) -> Result<(), SpecError> {
    let Some(sysctl) = linux.sysctl() else {
        return Ok(());
    };
    if crate::vm::guest_runner::in_guest() {
        // In a vessel microVM the kernel is the container's own (the host
        // checked the keys against the spec's namespaces before the boot;
        // the guest's config drops the network namespace for the VM's).
        return Ok(());
    }
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for k in keys {
        let field = || format!("linux.sysctl.{k}");
        check_name(k).map_err(|m| invalid(field(), m))?;
        let (ns, what) = if IPC_KEYS.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
            (LinuxNamespaceType::Ipc, "ipc")
        } else if k.starts_with("net.") {
            (LinuxNamespaceType::Network, "network")
        } else if UTS_KEYS.contains(&k.as_str()) {
            (LinuxNamespaceType::Uts, "uts")
        } else {
            return Err(invalid(
                field(),
                "not in a namespace the container can own: it would change the host's value",
            ));
        };
        match own_namespace(linux, ns, what) {
            Ok(true) => {}
            Ok(false) => {
                return Err(invalid(
                    field(),
                    format!("needs a {what} namespace of the container's own: it would change the host's value"),
                ))
            }
            Err(source) => {
                return Err(SpecError::Namespace {
                    field: field(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// A key is dot-separated names; a `/` or an empty name would make a path
/// under /proc/sys other than the one the key says.
fn check_name(k: &str) -> Result<(), &'static str> {
    if k.split('.')
        .any(|c| c.is_empty() || c.contains(['/', '\0']))
    {
        return Err("invalid sysctl name (dot-separated names, no '/')");
    }
    Ok(())
}

/// Whether the container has its own namespace of type `ns`: a new one, or
/// one joined by path that is not vessel's own.
fn own_namespace(
    linux: &Linux,
    ns: LinuxNamespaceType,
    what: &'static str,
) -> Result<bool, NsFileError> {
    let Some(entry) = linux.namespaces().iter().flatten().find(|n| n.typ() == ns) else {
        return Ok(false);
    };
    let Some(path) = entry.path() else {
        return Ok(true);
    };
    let id = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|source| NsFileError::Stat {
                kind: what,
                path: p.into(),
                source,
            })
    };
    let proc_name = match ns {
        LinuxNamespaceType::Network => "net",
        _ => what,
    };
    Ok(id(path)? != id(Path::new(&format!("/proc/self/ns/{proc_name}")))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(ns: &str, sysctl: &str) -> Linux {
        serde_json::from_str(&format!(r#"{{"namespaces":{ns},"sysctl":{sysctl}}}"#)).unwrap()
    }

    #[test]
    fn refuses_what_is_not_namespaced() {
        let all = r#"[{"type":"mount"},{"type":"ipc"},{"type":"network"},{"type":"uts"}]"#;
        for key in [
            "vm.swappiness",
            "kernel.pid_max",
            "fs.file-max",
            "net/ipv4.ip_forward",
        ] {
            let e = check(&linux(all, &format!(r#"{{"{key}":"1"}}"#)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("linux.sysctl.{key}")), "{e}");
        }
        for (key, ns) in [
            ("kernel.shmmax", "ipc"),
            ("fs.mqueue.msg_max", "ipc"),
            ("net.ipv4.ip_forward", "network"),
            ("kernel.domainname", "uts"),
        ] {
            let s = format!(r#"{{"{key}":"1"}}"#);
            let e = check(&linux(r#"[{"type":"mount"}]"#, &s))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(ns), "{e}");
            check(&linux(&format!(r#"[{{"type":"{ns}"}}]"#), &s)).unwrap();
        }
    }

    #[test]
    fn a_joined_namespace_counts_unless_it_is_ours() {
        let s = r#"{"net.ipv4.ip_forward":"1"}"#;
        let own = r#"[{"type":"network","path":"/proc/self/ns/net"}]"#;
        let e = check(&linux(own, s)).unwrap_err().to_string();
        assert!(e.contains("net.ipv4.ip_forward"), "{e}");
        let missing = r#"[{"type":"network","path":"/nonexistent/ns"}]"#;
        let e = check(&linux(missing, s)).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ns"), "{e}");
    }
}
