//! Moving an existing link between network namespaces, keeping its
//! addresses and its up state (the kernel drops both on a move). Used for
//! the OCI `linux.netDevices` of containers.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_route::address::AddressScope;
use netlink_packet_route::link::LinkFlags;
use nix::sched::{setns, CloneFlags};

use super::rtnl::Rtnl;

/// Runs `f` with an rtnetlink socket in `ns` (a thread that joined it), or
/// in the caller's namespace when `ns` is `None`.
fn in_ns<T: Send>(
    ns: Option<&File>,
    f: impl FnOnce(&mut Rtnl) -> io::Result<T> + Send,
) -> io::Result<T> {
    let run = |ns: Option<&File>| {
        if let Some(ns) = ns {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        }
        f(&mut Rtnl::open()?)
    };
    match ns {
        None => run(None),
        Some(ns) => std::thread::scope(|s| match s.spawn(|| run(Some(ns))).join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }),
    }
}

/// Whether a link named `name` exists in `ns` (the caller's if `None`).
pub fn link_exists(ns: Option<&File>, name: &str) -> io::Result<bool> {
    in_ns(ns, |r| Ok(r.links()?.iter().any(|l| l.name == name)))
}

/// Moves link `name` from `from` (the caller's namespace if `None`) into
/// `to`, named `new_name` there (else its current name). Its global
/// addresses and its up state are restored on the other side.
pub fn move_link(
    from: Option<&File>,
    name: &str,
    to: &File,
    new_name: Option<&str>,
) -> io::Result<()> {
    let target = new_name.unwrap_or(name).to_string();
    let (up, addrs) = in_ns(from, |r| {
        let link = r
            .links()?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name:?}")))?;
        let addrs: Vec<_> = r
            .addresses()?
            .into_iter()
            .filter(|a| a.index == link.index && a.scope == AddressScope::Universe)
            .map(|a| (a.ip, a.prefix_len))
            .collect();
        r.set_link_netns(link.index, to.as_raw_fd(), new_name)?;
        Ok((link.flags.contains(LinkFlags::Up), addrs))
    })?;
    in_ns(Some(to), |r| {
        let link = r
            .links()?
            .into_iter()
            .find(|l| l.name == target)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("moved link {target:?} not found"),
                )
            })?;
        for (ip, prefix) in &addrs {
            match r.add_address(link.index, *ip, *prefix) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                r => r?,
            }
        }
        if up {
            r.set_link(link.index, Some(true), None, None)?;
        }
        Ok(())
    })
}

/// Renames link `from` to `to` in the caller's namespace.
pub fn rename_link(from: &str, to: &str) -> io::Result<()> {
    in_ns(None, |r| {
        let link = r
            .links()?
            .into_iter()
            .find(|l| l.name == from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {from:?}")))?;
        r.set_link(link.index, None, None, Some(to))
    })
}
