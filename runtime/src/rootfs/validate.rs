//! Static checks of the rootfs part of a spec, before anything is created.

use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{Mount, Spec};

use super::devices;
use super::mounts::{self, PROC_ALLOWED};
use super::options;
use super::resolve::clean;
use super::RootfsError;

/// Types that need no lookup in /proc/filesystems.
const COMMON_TYPES: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none", "overlay",
];

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// See [`super::validate`].
pub(crate) fn validate(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RootfsError::invalid("root", "missing"))?;
    let rootfs = bundle.join(root.path());
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(RootfsError::invalid(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ))
        }
        Err(e) => {
            return Err(RootfsError::sys(
                "root.path",
                format!("stat {}", rootfs.display()),
                errno_of(&e),
            ))
        }
    }
    if !super::has_mount_ns(spec) {
        return without_mount_ns(spec);
    }
    let mut filesystems: Option<String> = None;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        check_mount(spec, i, m, bundle, &mut filesystems)?;
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(p) = linux.rootfs_propagation() {
        if !p.is_empty() && options::propagation_flag(p).is_none() {
            return Err(RootfsError::invalid(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ));
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let field = devices::field(i, d);
        let rel = clean(d.path());
        if !d.path().is_absolute() || !rel.starts_with("dev") || rel == Path::new("dev") {
            return Err(RootfsError::invalid(
                field,
                "device path must be an absolute path under /dev",
            ));
        }
        if devices::kind(d.typ()).is_none() {
            return Err(RootfsError::invalid(field, "type must be c, b, u or p"));
        }
        if d.major() < 0 || d.minor() < 0 {
            return Err(RootfsError::invalid(
                field,
                "negative major or minor number",
            ));
        }
    }
    for (name, list) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in list.iter().flatten().enumerate() {
            // A relative entry is taken from the container's root, as runc
            // does (it applies them with `/` as working directory).
            if clean(Path::new(p)).as_os_str().is_empty() {
                return Err(RootfsError::invalid(
                    format!("{name}[{i}] ({p:?})"),
                    "names the container's root itself (or is empty)",
                ));
            }
        }
    }
    Ok(())
}

fn check_mount(
    spec: &Spec,
    i: usize,
    m: &Mount,
    bundle: &Path,
    filesystems: &mut Option<String>,
) -> Result<(), RootfsError> {
    let field = || mounts::field(i, m);
    if m.destination().as_os_str().is_empty() {
        return Err(RootfsError::invalid(field(), "destination is empty"));
    }
    let opts = m.options().as_deref().unwrap_or(&[]);
    let parsed = options::parse(opts);
    let typ = m.typ().as_deref().unwrap_or("");
    let own_maps = m.uid_mappings().is_some() || m.gid_mappings().is_some();
    match parsed.idmap {
        None if own_maps => {
            return Err(RootfsError::invalid(
                field(),
                "uidMappings/gidMappings need the idmap or ridmap option",
            ))
        }
        Some(_) if !(parsed.is_bind() || typ == "bind") => {
            return Err(RootfsError::invalid(
                field(),
                "idmap/ridmap only apply to bind mounts",
            ))
        }
        Some(_) if super::idmap::mappings(spec, m).is_none() => {
            return Err(RootfsError::invalid(
                field(),
                "idmap needs uidMappings and gidMappings (the mount's or the container's)",
            ))
        }
        _ => {}
    }
    let rel = clean(m.destination());
    if rel.as_os_str().is_empty() {
        return Err(RootfsError::invalid(
            field(),
            "cannot mount over the container's root",
        ));
    }
    if parsed.is_bind() || typ == "bind" {
        let src = mounts::bind_source(bundle, m)
            .ok_or_else(|| RootfsError::invalid(field(), "bind mount without a source"))?;
        if let Err(e) = std::fs::metadata(&src) {
            return Err(RootfsError::sys(
                field(),
                format!("bind source {}", src.display()),
                errno_of(&e),
            ));
        }
    } else if typ.is_empty() || typ == "none" {
        return Err(RootfsError::invalid(
            field(),
            "type missing (and not a bind mount)",
        ));
    } else if !COMMON_TYPES.contains(&typ) {
        let fs = filesystems.get_or_insert_with(|| {
            std::fs::read_to_string("/proc/filesystems").unwrap_or_default()
        });
        let known = fs.is_empty() || fs.lines().any(|l| l.rsplit('\t').next() == Some(typ));
        if !known {
            return Err(RootfsError::invalid(
                field(),
                format!("unknown filesystem type {typ:?}"),
            ));
        }
    }
    if rel.starts_with("proc") {
        let ok = if rel == Path::new("proc") {
            typ == "proc"
                || (parsed.is_bind()
                    && mounts::bind_source(bundle, m)
                        .and_then(|s| nix::sys::statfs::statfs(&s).ok())
                        .is_some_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC))
        } else {
            PROC_ALLOWED.iter().any(|p| rel == Path::new(p))
        };
        if !ok {
            return Err(RootfsError::invalid(
                field(),
                "only a proc filesystem may be mounted on /proc, and nothing inside it except the files lxcfs emulates",
            ));
        }
    }
    Ok(())
}

const WHY: &str = "needs a mount namespace, and linux.namespaces has none \
                   (vessel never mounts in the host's)";

/// A spec without a mount namespace runs in the host's, where vessel makes
/// no mount at all (runc would mount there; vessel refuses instead): every
/// field that needs one is refused, naming it.
fn without_mount_ns(spec: &Spec) -> Result<(), RootfsError> {
    if let Some((i, m)) = spec.mounts().iter().flatten().enumerate().next() {
        return Err(RootfsError::invalid(mounts::field(i, m), WHY));
    }
    if let Some(linux) = spec.linux() {
        linux_without_mount_ns(linux)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        return Err(RootfsError::invalid("root.readonly", WHY));
    }
    if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) {
        return Err(RootfsError::invalid("process.terminal", WHY));
    }
    Ok(())
}

fn linux_without_mount_ns(linux: &oci_spec::runtime::Linux) -> Result<(), RootfsError> {
    let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    for (name, set) in [
        ("linux.maskedPaths", nonempty(linux.masked_paths())),
        ("linux.readonlyPaths", nonempty(linux.readonly_paths())),
        (
            "linux.devices",
            linux.devices().as_ref().is_some_and(|d| !d.is_empty()),
        ),
        (
            "linux.rootfsPropagation",
            linux
                .rootfs_propagation()
                .as_ref()
                .is_some_and(|p| !p.is_empty()),
        ),
    ] {
        if set {
            return Err(RootfsError::invalid(name, WHY));
        }
    }
    Ok(())
}
