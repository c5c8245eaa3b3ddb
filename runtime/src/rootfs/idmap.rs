//! Idmapped bind mounts (`idmap` / `ridmap`, with the mount's or the
//! container's `uidMappings`/`gidMappings`).
//!
//! Marking a mount idmapped needs CAP_SYS_ADMIN in the user namespace that
//! owns the source's superblock — the host's — which the container's init,
//! inside its own user namespace, does not have. So `create` prepares them
//! before it forks the container ([`prepare`]): a detached copy of the
//! source (open_tree OPEN_TREE_CLONE), marked with mount_setattr
//! MOUNT_ATTR_IDMAP and a user namespace carrying the mappings. The init
//! inherits the descriptors and attaches each with move_mount
//! ([`take`]). A detached tree is in no mount table: nothing of the host's
//! changes, and it vanishes with its last descriptor.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use super::mounts::{bind_source, field};
use super::options;
use super::RootfsError;

/// Prepared trees by mount index, set in `create` before the fork; the
/// forked init takes them from its copy.
static PREPARED: Mutex<Option<HashMap<usize, OwnedFd>>> = Mutex::new(None);

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// The mappings of mount `m`: its own, else the container's.
pub(crate) fn mappings<'a>(
    spec: &'a Spec,
    m: &'a Mount,
) -> Option<(&'a [LinuxIdMapping], &'a [LinuxIdMapping])> {
    let linux = spec.linux().as_ref();
    let uid = m
        .uid_mappings()
        .as_deref()
        .or_else(|| linux.and_then(|l| l.uid_mappings().as_deref()))?;
    let gid = m
        .gid_mappings()
        .as_deref()
        .or_else(|| linux.and_then(|l| l.gid_mappings().as_deref()))?;
    (!uid.is_empty() && !gid.is_empty()).then_some((uid, gid))
}

fn map_text(m: &[LinuxIdMapping]) -> String {
    m.iter()
        .map(|e| format!("{} {} {}\n", e.container_id(), e.host_id(), e.size()))
        .collect()
}

/// Why [`userns_with`] could not make the user namespace of an idmap.
#[derive(Debug, thiserror::Error)]
enum UsernsError {
    /// pipe(2) or fork(2) for the helper failed.
    #[error("{call}: {source}")]
    Helper {
        /// The call.
        call: &'static str,
        /// Why.
        #[source]
        source: Errno,
    },
    /// A file of the helper's (or vessel's own) under /proc.
    #[error("{}: {source}", path.display())]
    Proc {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the helper's `uid_map` or `gid_map`.
    #[error("{map}: {source}")]
    Map {
        /// `uid_map` or `gid_map`.
        map: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The helper never showed a user namespace of its own.
    #[error("the helper did not enter a user namespace")]
    NoNamespace,
}

/// A user namespace with the given mappings, held by a child that is gone
/// when this returns (the open namespace file keeps it).
fn userns_with(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<File, UsernsError> {
    let helper = |call| move |source| UsernsError::Helper { call, source };
    let (r, w) = nix::unistd::pipe().map_err(helper("pipe"))?;
    // SAFETY: create is single-threaded here; the child only unshares and
    // blocks on a read, then _exits.
    match unsafe { nix::unistd::fork() }.map_err(helper("fork"))? {
        nix::unistd::ForkResult::Child => {
            drop(w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let mut b = [0u8; 1];
            // Tell the parent by closing: it reads the namespace after.
            let _ = nix::unistd::read(r.as_raw_fd(), &mut b);
            // SAFETY: _exit ends the forked child without running atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(r);
            let res = (|| {
                let link = |p: &Path| {
                    std::fs::read_link(p).map_err(|source| UsernsError::Proc {
                        path: p.into(),
                        source,
                    })
                };
                // Wait until the child is in its own namespace.
                let own = link(Path::new("/proc/self/ns/user"))?;
                let path = PathBuf::from(format!("/proc/{child}/ns/user"));
                let mut tries = 0;
                while link(&path)? == own {
                    tries += 1;
                    if tries > 5000 {
                        return Err(UsernsError::NoNamespace);
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                let map = |map, text| {
                    std::fs::write(format!("/proc/{child}/{map}"), text)
                        .map_err(|source| UsernsError::Map { map, source })
                };
                map("uid_map", map_text(uid))?;
                map("gid_map", map_text(gid))?;
                File::open(&path).map_err(|source| UsernsError::Proc { path, source })
            })();
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            res
        }
    }
}

fn open_tree(src: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let c =
        std::ffi::CString::new(src.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree reads the NUL-terminated path and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    // SAFETY: a non-negative result is a descriptor we now own.
    Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn set_idmap(tree: &OwnedFd, userns: &File, recursive: bool) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    super::mounts::mount_setattr(std::os::fd::AsFd::as_fd(tree), recursive, &attr)
}

/// In `create`, before the fork: a detached, idmapped copy of the source of
/// every `idmap`/`ridmap` mount. Errors name the mount and say whether the
/// kernel or the filesystem refused.
pub fn prepare(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    let mut out = HashMap::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
        let Some(recursive) = opts.idmap else {
            continue;
        };
        let f = field(i, m);
        let (uid, gid) = mappings(spec, m)
            .ok_or_else(|| RootfsError::invalid(&f, "idmap needs uidMappings and gidMappings"))?;
        let src = bind_source(bundle, m)
            .ok_or_else(|| RootfsError::invalid(&f, "idmap mount without a source"))?;
        let userns = userns_with(uid, gid)
            .map_err(|e| RootfsError::invalid(&f, format!("user namespace for idmap: {e}")))?;
        let tree = open_tree(&src, recursive)
            .map_err(|e| RootfsError::sys(&f, format!("open_tree {}", src.display()), e))?;
        set_idmap(&tree, &userns, recursive).map_err(|e| {
            let why = match e {
                Errno::EINVAL => "the filesystem of the source does not support idmapped mounts",
                Errno::ENOSYS => "the kernel has no mount_setattr (Linux 5.12+)",
                _ => "the kernel refused the idmap",
            };
            RootfsError::invalid(&f, format!("idmap {}: {why} ({e})", src.display()))
        })?;
        out.insert(i, tree);
    }
    if !out.is_empty() {
        *PREPARED.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
    }
    Ok(())
}

/// In the init: attach the prepared tree of mount `i` onto `target`.
pub(crate) fn attach(i: usize, target: &OwnedFd) -> Result<(), Errno> {
    let tree = PREPARED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .and_then(|m| m.remove(&i))
        .ok_or(Errno::EBADF)?;
    // SAFETY: both fds are valid; empty paths with the EMPTY_PATH flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}
