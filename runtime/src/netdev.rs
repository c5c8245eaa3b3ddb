//! `linux.netDevices`: host links moved into the container's network
//! namespace at `create` (renamed to `name` if given) and moved back, under
//! their host names, at `delete`.
//!
//! Each move is recorded in the ledger before it is made, so `delete
//! --force` of a container whose `create` was killed still returns them.
//! A link can only be moved back while the container's network namespace
//! exists (its init is alive). Once it is gone, the kernel has already
//! returned a physical link to the host (under its container name, which
//! `delete` renames back) and destroyed a virtual one (dummy, veth...).

use std::collections::HashSet;
use std::fs::File;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use vessel_vm::net::move_link::{link_exists, move_link, rename_link};

use crate::ledger::{Ledger, Owned, ProcRef, Role};

/// IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME: usize = 15;

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_IFNAME
        && n != "."
        && n != ".."
        && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn field(host: &str) -> String {
    format!("linux.netDevices.{host}")
}

/// What is wrong with `linux.netDevices`, or what failed moving a link;
/// each names the link's field.
#[derive(Debug, thiserror::Error)]
pub enum NetDevError {
    /// Links are only moved into a network namespace of the container's own.
    #[error(
        "linux.netDevices: needs a network namespace (linux.namespaces has none): \
         host links are never moved within the host's"
    )]
    NoNetworkNamespace,
    /// The host name is not a link name.
    #[error("linux.netDevices.{host}: invalid link name")]
    BadHostName {
        /// The entry's key.
        host: String,
    },
    /// The name in the container is not a link name.
    #[error("linux.netDevices.{host}.name: invalid link name {name:?}")]
    BadName {
        /// The entry's key.
        host: String,
        /// Its `name`.
        name: String,
    },
    /// Two entries share a name in the container.
    #[error("linux.netDevices.{host}.name: {name:?} is used twice")]
    Twice {
        /// The entry's key.
        host: String,
        /// Its `name`.
        name: String,
    },
    /// No such link on the host.
    #[error("linux.netDevices.{host}: no such link on the host")]
    Missing {
        /// The entry's key.
        host: String,
    },
    /// The name is taken in the container's namespace.
    #[error(
        "linux.netDevices.{host}.name: {name:?} already exists in the container's network namespace"
    )]
    Taken {
        /// The entry's key.
        host: String,
        /// Its `name`.
        name: String,
    },
    /// A step on one link failed.
    #[error("linux.netDevices.{host}: {what}: {source}")]
    Link {
        /// The entry's key.
        host: String,
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A network namespace could not be opened.
    #[error("linux.netDevices: {what}: {source}")]
    Namespace {
        /// Which (a path, or the host's).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The links of `spec` to move: (host name, name in the container), in a
/// stable order.
fn devices(spec: &Spec) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.net_devices().as_ref())
        .into_iter()
        .flatten()
        .map(|(host, d)| {
            let name = d.name().clone().filter(|n| !n.is_empty());
            (host.clone(), name.unwrap_or_else(|| host.clone()))
        })
        .collect();
    v.sort();
    v
}

/// Checks before anything is created: a network namespace of the
/// container's own, valid and distinct names, links present on the host.
pub fn validate(spec: &Spec) -> Result<(), NetDevError> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(());
    }
    let own_netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    if !own_netns {
        return Err(NetDevError::NoNetworkNamespace);
    }
    let mut names = HashSet::new();
    for (host, name) in &devs {
        let (host, name) = (host.clone(), name.clone());
        if !valid_ifname(&host) {
            return Err(NetDevError::BadHostName { host });
        }
        if !valid_ifname(&name) {
            return Err(NetDevError::BadName { host, name });
        }
        if !names.insert(name.clone()) {
            return Err(NetDevError::Twice { host, name });
        }
        match link_exists(None, &host) {
            Ok(true) => {}
            Ok(false) => return Err(NetDevError::Missing { host }),
            Err(source) => {
                return Err(NetDevError::Link {
                    host,
                    what: "listing the host's links",
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Moves the links into the network namespace of process `pid`, calling
/// `record(host, name)` before each move. On a failure the links already
/// moved are moved back.
pub fn move_in(
    spec: &Spec,
    pid: i32,
    mut record: impl FnMut(&str, &str) -> std::io::Result<()>,
) -> Result<(), NetDevError> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(());
    }
    let path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&path).map_err(|source| NetDevError::Namespace {
        what: path.clone(),
        source,
    })?;
    let host = File::open("/proc/thread-self/ns/net").map_err(|source| NetDevError::Namespace {
        what: "the host's network namespace".into(),
        source,
    })?;
    for (i, (hname, name)) in devs.iter().enumerate() {
        let link = |what, source| NetDevError::Link {
            host: hname.clone(),
            what,
            source,
        };
        let r = match link_exists(Some(&ns), name) {
            Ok(true) => Err(NetDevError::Taken {
                host: hname.clone(),
                name: name.clone(),
            }),
            Err(e) => Err(link("listing the container's links", e)),
            Ok(false) => record(hname, name)
                .map_err(|e| link("recording it in the ledger", e))
                .and_then(|()| {
                    move_link(None, hname, &ns, Some(name))
                        .map_err(|e| link("moving it into the container", e))
                }),
        };
        if let Err(e) = r {
            for (h, n) in devs[..i].iter().rev() {
                if let Err(e2) = move_link(Some(&ns), n, &host, Some(h)) {
                    tracing::warn!("{}: moving it back after a failed create: {e2}", field(h));
                }
            }
            return Err(e);
        }
        tracing::debug!(host = hname, name, "net device moved in");
    }
    Ok(())
}

/// Returns the moved links (host name, container name) to the host, from
/// the namespace of `init` while it lives. What cannot be returned is
/// reported as a warning: delete goes on.
pub fn move_back(devs: &[(String, String)], init: Option<ProcRef>) {
    if devs.is_empty() {
        return;
    }
    let ns = init
        .filter(|p| p.alive())
        .and_then(|p| File::open(format!("/proc/{}/ns/net", p.pid)).ok());
    let host = match File::open("/proc/thread-self/ns/net") {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("linux.netDevices: the host's network namespace: {e}");
            return;
        }
    };
    for (hname, name) in devs {
        let r = match &ns {
            Some(ns) if link_exists(Some(ns), name).unwrap_or(false) => {
                move_link(Some(ns), name, &host, Some(hname))
            }
            _ if link_exists(None, hname).unwrap_or(false) => Ok(()),
            // A physical link the kernel returned under its container name.
            _ if name != hname && link_exists(None, name).unwrap_or(false) => {
                rename_link(name, hname)
            }
            _ => {
                tracing::warn!(
                    "{}: gone with the container's network namespace (a virtual link)",
                    field(hname)
                );
                Ok(())
            }
        };
        match r {
            Ok(()) => tracing::debug!(host = hname, "net device returned"),
            Err(e) => tracing::warn!("{}: returning it to the host: {e}", field(hname)),
        }
    }
}

/// Returns the links the ledger in `dir` records, from the namespace of
/// the recorded init (or `init` when given and alive): for `delete`, and
/// for a `create` that fails after moving them.
pub fn return_recorded(dir: &std::path::Path, init: Option<ProcRef>) {
    let owned = match Ledger::read(dir) {
        Ok(entries) => Owned::from_entries(entries),
        Err(e) => {
            tracing::warn!(
                "linux.netDevices: reading the ledger in {}: {e}",
                dir.display()
            );
            return;
        }
    };
    return_owned(&owned, init);
}

/// Returns the links `owned` records, from the namespace of `init` when
/// given and alive, else of the recorded init or setup stage.
pub fn return_owned(owned: &Owned, init: Option<ProcRef>) {
    if owned.net_devices.is_empty() {
        return;
    }
    let init = init
        .filter(|p| p.alive())
        .or_else(|| owned.last(Role::Init).filter(|p| p.alive()))
        .or_else(|| owned.last(Role::Stage));
    move_back(&owned.net_devices, init);
}
