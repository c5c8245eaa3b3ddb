//! Which namespaces a container gets: new ones (unshared by the init's
//! parent stage) and existing ones joined by path (setns), with the order
//! that keeps privileges: the user namespace is joined first.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::spec::{invalid, SpecError};

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Every namespace type vessel creates and joins.
pub const TYPES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The name of a namespace type under /proc/<pid>/ns.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    let bits = flag(t).bits();
    PROC_NS
        .iter()
        .find(|(_, f)| *f == bits)
        .map(|(n, _)| *n)
        .expect("PROC_NS lists every type")
}

/// The types of [`TYPES`] this kernel has (its /proc/self/ns entry exists).
pub fn supported() -> Vec<LinuxNamespaceType> {
    TYPES
        .iter()
        .copied()
        .filter(|t| {
            std::path::Path::new("/proc/self/ns")
                .join(proc_name(*t))
                .exists()
        })
        .collect()
}

/// Names under /proc/<pid>/ns, with their flags, in the order `exec` joins them.
pub const PROC_NS: [(&str, i32); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

/// The namespace plan of one container.
#[derive(Debug)]
pub struct Plan {
    /// Namespaces to create.
    pub new: CloneFlags,
    /// Namespaces to join, opened in the parent so a bad path fails early;
    /// the user namespace comes first.
    pub join: Vec<(CloneFlags, OwnedFd)>,
}

impl Plan {
    /// Builds the plan from `linux.namespaces`, opening joined paths.
    pub fn from_spec(spec: &Spec) -> Result<Plan, SpecError> {
        let mut plan = Plan {
            new: CloneFlags::empty(),
            join: Vec::new(),
        };
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for (i, ns) in list.iter().enumerate() {
            let f = flag(ns.typ());
            match ns.path() {
                None => plan.new |= f,
                Some(p) => {
                    let field = format!("linux.namespaces[{i}].path");
                    let fd =
                        open_ns(p).map_err(|e| invalid(&field, format!("{}: {e}", p.display())))?;
                    check_type(&fd, f)
                        .map_err(|m| invalid(&field, format!("{}: {m}", p.display())))?;
                    plan.join.push((f, fd));
                }
            }
        }
        plan.join
            .sort_by_key(|(f, _)| !f.contains(CloneFlags::CLONE_NEWUSER));
        Ok(plan)
    }

    /// Whether the container has namespace `f`, new or joined.
    pub fn has(&self, f: CloneFlags) -> bool {
        self.new.contains(f) || self.join.iter().any(|(j, _)| j.contains(f))
    }

    /// A pid or time namespace only applies to children: init must be forked
    /// after entering it.
    pub fn needs_fork(&self) -> bool {
        let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        self.has(CloneFlags::CLONE_NEWPID) || self.has(time)
    }

    /// Whether init can be cloned straight into its new namespaces, with no
    /// setup stage: no user namespace (the parent writes its maps between
    /// the stages), no pid namespace joined by path and no time namespace
    /// (both apply only to children of the process entering them).
    pub fn direct_clone(&self) -> bool {
        let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        !self.has(CloneFlags::CLONE_NEWUSER)
            && !self.has(time)
            && !self
                .join
                .iter()
                .any(|(f, _)| f.contains(CloneFlags::CLONE_NEWPID))
    }

    /// The flags for that direct clone: every new namespace but the cgroup
    /// one, which init creates after it has been moved into its cgroup.
    pub fn direct_clone_flags(&self) -> CloneFlags {
        self.new - CloneFlags::CLONE_NEWCGROUP
    }

    /// Joins the namespaces given by path (in the child).
    pub fn join_all(&self) -> nix::Result<()> {
        for (f, fd) in &self.join {
            setns(fd.as_fd(), *f)?;
        }
        Ok(())
    }

    /// Creates every new namespace but the user namespace (in the child,
    /// after the user namespace exists and the cgroup is joined).
    pub fn unshare_rest(&self) -> nix::Result<()> {
        let rest = self.new - CloneFlags::CLONE_NEWUSER;
        if rest.is_empty() {
            return Ok(());
        }
        unshare(rest)
    }
}

/// Checks that a namespace file is of the kind the spec says
/// (ioctl NS_GET_NSTYPE), so a wrong path fails before anything is created.
fn check_type(fd: &OwnedFd, want: CloneFlags) -> Result<(), NsTypeError> {
    use std::os::fd::AsRawFd;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type as an int.
    let t = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
    if t < 0 {
        return Err(NsTypeError::NotNamespace(std::io::Error::last_os_error()));
    }
    if CloneFlags::from_bits_retain(t) != want {
        return Err(NsTypeError::OtherKind(
            PROC_NS
                .iter()
                .find(|(_, f)| *f == t)
                .map_or("different", |(n, _)| n),
        ));
    }
    Ok(())
}

/// Why a namespace file is not the namespace the spec declares.
#[derive(Debug, thiserror::Error)]
enum NsTypeError {
    /// Not a namespace at all.
    #[error("not a namespace file ({0})")]
    NotNamespace(#[source] std::io::Error),
    /// A namespace of another kind.
    #[error("is a {0} namespace, not the declared one")]
    OtherKind(&'static str),
}

fn open_ns(p: &Path) -> std::io::Result<OwnedFd> {
    Ok(File::open(p)?.into())
}
