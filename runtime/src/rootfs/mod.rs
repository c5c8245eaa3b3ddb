//! Root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! The container's init calls, in its new mount namespace:
//! [`prepare`] (host /proc still visible), then [`pivot`], then (with a
//! terminal) [`mount_console`], then [`finalize`]. [`validate`] runs earlier, in `create`, before anything
//! exists. Every container path is resolved inside the rootfs (see
//! `resolve.rs`), so a symlink in the image cannot send a mount to the host.

use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{umask, Mode};
use oci_spec::runtime::Spec;

mod cgroup_mount;
mod devices;
pub(crate) use devices::is_default_device;
mod error;
mod idmap;
mod mounts;
mod options;
mod paths;
mod pivot;
mod propagation;
mod resolve;
mod tmpcopy;
mod validate;

pub use error::RootfsError;

/// Set by [`prepare`] when the spec has no mount namespace, for [`pivot`]
/// (which is not given the spec): the init then only chroots.
static HOST_MOUNT_NS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The spec gives the container a mount namespace (new, or joined by path).
/// Without one, the container runs in the host's and vessel mounts nothing
/// (see [`validate`], which refuses every field that needs a mount).
pub fn has_mount_ns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
        })
}

/// What [`prepare`] needs to build the container's root.
#[derive(Debug, Clone, Copy)]
pub struct RootfsConfig<'a> {
    /// The spec: `mounts`, `root.readonly`, `linux.{devices,
    /// rootfsPropagation, maskedPaths, readonlyPaths}`.
    pub spec: &'a Spec,
    /// Absolute, canonical host path of the rootfs.
    pub rootfs: &'a Path,
    /// The bundle directory; relative bind sources are relative to it.
    pub bundle: &'a Path,
    /// The container has a new user namespace: device nodes are bind-mounted
    /// from the host instead of created with mknod.
    pub user_ns: bool,
    /// The container has a new cgroup namespace: cgroup filesystems are
    /// mounted directly; otherwise the container's own cgroup directories
    /// (from /proc/self/cgroup) are bind-mounted.
    pub cgroup_ns: bool,
}

/// In `create`, before the container is forked: detached idmapped copies
/// of the sources of `idmap`/`ridmap` mounts, which the init inherits and
/// attaches (it lacks the host's CAP_SYS_ADMIN to make them itself).
pub fn prepare_idmaps(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    idmap::prepare(spec, bundle)
}

/// Whether the kernel has what idmapped mounts need (mount_setattr,
/// Linux 5.12+); a filesystem may still refuse them, which `create` reports.
pub fn idmap_supported() -> bool {
    mounts::mount_setattr_works()
}

/// The mount options vessel recognizes (`features` lists them); any other
/// option is passed to the filesystem as data.
pub fn mount_option_names() -> Vec<&'static str> {
    options::names()
}

/// Static checks done before anything is created: the rootfs is a
/// directory, mount destinations, types and options are usable, bind
/// sources exist, device entries are sane. Errors name the field.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    validate::validate(spec, bundle)
}

/// Build the container's root, in the init's new mount namespace, before
/// [`pivot`]: `/` made rslave (or rprivate) so nothing propagates to the
/// host, the rootfs bound onto itself, the spec's mounts in order, default
/// and spec devices, the /dev symlinks. The requested rootfsPropagation
/// waits for [`finalize`].
///
/// The process must already be in its cgroups (cgroup mounts bind the
/// directories listed in /proc/self/cgroup).
///
/// Without a mount namespace in the spec, nothing is done here: the spec
/// was checked to ask for no mount, and [`pivot`] only chroots.
pub fn prepare(cfg: &RootfsConfig<'_>) -> Result<(), RootfsError> {
    if !has_mount_ns(cfg.spec) {
        HOST_MOUNT_NS.store(true, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    // Device and mount point modes are applied exactly as given.
    let old = umask(Mode::empty());
    let r = prepare_root(cfg);
    umask(old);
    r
}

fn propagation(spec: &Spec) -> Result<Option<MsFlags>, RootfsError> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    options::propagation_flag(p).map(Some).ok_or_else(|| {
        RootfsError::invalid(
            "linux.rootfsPropagation",
            format!("unknown propagation {p:?}"),
        )
    })
}

/// Inode of the initial mount namespace on kernels that give it a fixed
/// one (PROC_MNT_INIT_INO, Linux 6.16+).
const INIT_MNT_NS_INO: u64 = 0xEFFF_FFF8;

/// Refuse to touch mounts of the host's own mount namespace: everything
/// below (propagation of /, the rootfs bind) is only meant for the
/// container's copy. Detected by the initial namespace's fixed inode, or by
/// sharing pid 1's namespace when /proc/1 can be inspected.
fn ensure_private_mount_ns() -> Result<(), RootfsError> {
    let ino = |p: &str| nix::sys::stat::stat(p).map(|s| (s.st_dev, s.st_ino));
    let own = ino("/proc/self/ns/mnt").ok();
    let shared = own.is_some_and(|(_, i)| i == INIT_MNT_NS_INO)
        || (own.is_some() && own == ino("/proc/1/ns/mnt").ok());
    if shared {
        return Err(RootfsError::invalid(
            "linux.namespaces",
            "the rootfs must be set up in a new mount namespace, but this process is in the host's",
        ));
    }
    Ok(())
}

fn prepare_root(cfg: &RootfsConfig<'_>) -> Result<(), RootfsError> {
    ensure_private_mount_ns()?;
    propagation::isolate_and_bind_root(cfg.rootfs, propagation(cfg.spec)?)?;
    // Opened after the self-bind so it refers to the new mount.
    let root = resolve::RootDir::open(cfg.rootfs)
        .map_err(|e| RootfsError::sys("root.path", "open rootfs", e))?;
    for (i, m) in cfg.spec.mounts().iter().flatten().enumerate() {
        mounts::mount_entry(&root, cfg, i, m)?;
    }
    if devices::needs_dev_setup(cfg.spec) {
        devices::setup(&root, cfg.spec, cfg.user_ns)?;
    }
    Ok(())
}

/// Make `rootfs` the process's root: `pivot_root` and detach the old root,
/// or with `no_pivot` (runc's `--no-pivot`) move the rootfs onto `/` and
/// chroot. The working directory is `/` afterwards.
///
/// In the host's mount namespace (see [`prepare`]) it only chroots.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    if HOST_MOUNT_NS.load(std::sync::atomic::Ordering::Relaxed) {
        pivot::chroot_into(rootfs)
    } else if no_pivot {
        pivot::move_root(rootfs)
    } else {
        pivot::pivot_root_into(rootfs)
    }
}

/// With a terminal, after [`pivot`] and before [`finalize`] (which may make
/// /dev read-only): bind the pty slave (e.g. `/dev/pts/0` of the
/// container's devpts) onto /dev/console, as runc does.
pub fn mount_console(pty_slave: &Path) -> Result<(), RootfsError> {
    if HOST_MOUNT_NS.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(RootfsError::invalid(
            "process.terminal",
            "a console needs a mount namespace (it is bind-mounted on /dev/console)",
        ));
    }
    devices::mount_console(pty_slave)
}

/// After [`pivot`]: /dev read-only if its tmpfs asked for it, read-only
/// paths, masked paths, the read-only root, the final rootfsPropagation.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    if !has_mount_ns(spec) {
        return Ok(());
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.typ().as_deref() == Some("tmpfs")
            && resolve::clean(m.destination()) == Path::new("dev")
            && options::parse(m.options().as_deref().unwrap_or(&[]))
                .flags
                .contains(MsFlags::MS_RDONLY)
        {
            paths::remount_ro(&mounts::field(i, m), Path::new("/dev"))?;
        }
    }
    if let Some(linux) = spec.linux() {
        // Relative entries count from the container's root, as in runc.
        let abs = |p: &str| Path::new("/").join(resolve::clean(Path::new(p)));
        for (i, p) in linux.readonly_paths().iter().flatten().enumerate() {
            paths::readonly(&format!("linux.readonlyPaths[{i}] ({p})"), &abs(p))?;
        }
        for (i, p) in linux.masked_paths().iter().flatten().enumerate() {
            paths::mask(&format!("linux.maskedPaths[{i}] ({p})"), &abs(p))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        paths::remount_ro("root.readonly", Path::new("/"))?;
    }
    propagation::apply_final(propagation(spec)?)
}
