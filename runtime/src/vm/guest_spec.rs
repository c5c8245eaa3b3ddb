//! The host's plan for one vm-mode container: the config.json the guest's
//! container code runs, the files copied in for bind mounts, and the size
//! of the VM.
//!
//! The guest runs the same OCI config with these changes:
//! - `root.path` is the overlay the agent assembles from the rootfs image;
//! - the network namespace is dropped: the guest's own network stack (with
//!   the interfaces mirrored from the container's namespace) is the
//!   container's network; a host network (no network namespace) and joining
//!   any namespace by path are refused, since host namespaces do not exist
//!   in the guest;
//! - bind mounts are copied in: each source (file, directory or symlink)
//!   is sent to the guest when the container is created and mounted from
//!   there. Copies are not shared: writes on either side are not seen by
//!   the other. Device nodes and sources larger than [`COPY_LIMIT`] in all
//!   are refused; other mount types than proc, sysfs, tmpfs, devpts,
//!   mqueue and cgroup are refused;
//! - resources that name host objects are dropped (`blockIO`, which is
//!   applied to the VMM on the host instead, `hugepageLimits`, `rdma`,
//!   `network`, `cpu.cpus`/`cpu.mems`); CPU and memory limits size the VM
//!   and stay in the guest's cgroup too. On the host the VMM's cgroup gets
//!   the memory, CPU and block IO limits; device rules and the pids limit
//!   apply in the guest only;
//! - only the hooks that run in the container (`createContainer`,
//!   `startContainer`) go to the guest; the others run on the host;
//! - vessel's own annotations are dropped (the guest runs a container).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_spec::runtime::{Hooks, LinuxNamespaceType, Root, Spec};
use vessel_vm::agent::{GuestFile, GuestFileKind};

use super::config::{VmDefaults, CPUS_ANNOTATION, MEMORY_ANNOTATION};

/// Where the agent mounts the container's root filesystem in the guest.
pub const GUEST_ROOTFS: &str = "/run/vessel/rootfs";
/// Where copied bind-mount sources live in the guest.
pub const GUEST_FILES: &str = "/run/vessel/files";
/// Most bytes of bind-mount sources copied into one guest.
pub const COPY_LIMIT: u64 = 2 << 20;
/// Host memory the VMM itself needs beside the guest's: a memory limit
/// must leave room for it. Measured with QEMU 7.2 TCG (its translation
/// cache grows as it translates): a 96 MiB guest was OOM-killed during boot
/// under a 192 MiB limit and booted under 224 MiB (peak use 206 MiB).
pub const VMM_OVERHEAD_MIB: u32 = 128;
/// Smallest guest the Debian cloud kernel and the agent boot in: with
/// 80 MiB the kernel panics unpacking the initramfs; 96 MiB boots.
pub const MIN_GUEST_MIB: u32 = 96;
/// The smallest `linux.resources.memory.limit` a vm-mode container boots
/// in: the smallest guest plus the VMM's own memory.
pub const MIN_MEMORY_LIMIT_MIB: u32 = MIN_GUEST_MIB + VMM_OVERHEAD_MIB;

/// The smallest memory limit a guest of `guest_mib` boots in.
pub fn min_memory_limit_mib(guest_mib: u32) -> u32 {
    guest_mib.saturating_add(VMM_OVERHEAD_MIB)
}

/// Guest memory when neither the spec nor the configuration says.
pub const DEFAULT_GUEST_MIB: u32 = 256;

/// Why a bundle cannot run in a VM as it is; each names the field.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A sizing annotation is not a positive integer.
    #[error("annotations.{key}: {value:?} is not a positive integer")]
    NotPositive {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// The guest asked for plus the VMM do not fit in the memory limit.
    #[error(
        "annotations.{MEMORY_ANNOTATION}: {guest} MiB plus {VMM_OVERHEAD_MIB} MiB for the VMM \
         does not fit in linux.resources.memory.limit ({limit} MiB): the minimum for a \
         {guest} MiB guest is {} MiB", min_memory_limit_mib(*.guest)
    )]
    GuestAboveLimit {
        /// The guest's memory, MiB.
        guest: u32,
        /// The limit, MiB.
        limit: u32,
    },
    /// The memory limit leaves too little for a guest.
    #[error(
        "linux.resources.memory.limit: {limit} MiB is too low for vm mode: the minimum is \
         {MIN_MEMORY_LIMIT_MIB} MiB ({MIN_GUEST_MIB} MiB for the guest plus \
         {VMM_OVERHEAD_MIB} MiB for the VMM)"
    )]
    LimitTooLow {
        /// The limit, MiB.
        limit: u32,
    },
    /// The guest would be too small to boot.
    #[error(
        "the guest would get {memory} MiB, below the {MIN_GUEST_MIB} MiB it needs \
         (annotation {MEMORY_ANNOTATION} or [vm] memory_mib)"
    )]
    GuestTooSmall {
        /// Its memory, MiB.
        memory: u32,
    },
    /// No `linux` section.
    #[error("linux: vm mode needs the linux section")]
    NoLinux,
    /// A namespace of the host is joined by path.
    #[error(
        "linux.namespaces[{index}].path: vm mode cannot join the host's {kind} namespace {}",
        .path.display()
    )]
    JoinsHost {
        /// Its index.
        index: usize,
        /// Its type.
        kind: String,
        /// Its path.
        path: PathBuf,
    },
    /// No network namespace: the host's network.
    #[error(
        "linux.namespaces: vm mode cannot share the host's network (add a network \
         namespace; its interfaces are given to the VM)"
    )]
    HostNetwork,
    /// A mount type the guest cannot have.
    #[error("{field}: type {kind:?} cannot be mounted in a vm-mode guest")]
    MountType {
        /// `mounts[i] (destination)`.
        field: String,
        /// The type.
        kind: String,
    },
    /// A bind mount without a source.
    #[error("{field}: a bind mount needs a source")]
    NoSource {
        /// `mounts[i] (destination)`.
        field: String,
    },
    /// A bind mount's source cannot be copied in.
    #[error("{field}: source {}: {source}", .path.display())]
    Copy {
        /// `mounts[i] (destination)`.
        field: String,
        /// The source.
        path: PathBuf,
        /// Why.
        #[source]
        source: CopyError,
    },
}

/// Why a bind mount's source cannot be copied into the guest.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading it.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Over the copy budget.
    #[error(
        "bind-mount sources are copied into the VM, at most {} KiB in all; this one \
         exceeds what is left ({size} bytes)", COPY_LIMIT >> 10
    )]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// A device node.
    #[error("a device node cannot be bind-mounted into a VM")]
    Device,
    /// A socket or fifo.
    #[error("sockets and fifos cannot be bind-mounted into a VM")]
    Special,
    /// An entry of a directory being copied.
    #[error("{}: {source}", .path.display())]
    Entry {
        /// The entry.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<CopyError>,
    },
}

/// What the host sends and boots for one container.
#[derive(Debug, Clone)]
pub struct GuestPlan {
    /// The guest's config.json.
    pub config: Spec,
    /// Bind-mount sources to create in the guest.
    pub files: Vec<GuestFile>,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// The network namespace (by path) whose interfaces the guest gets.
    pub netns: Option<PathBuf>,
}

/// Plans the guest for `spec` (already validated for container mode).
pub fn plan(spec: &Spec, defaults: &VmDefaults) -> Result<GuestPlan, PlanError> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let (vcpus, memory_mib) = size(spec, &annotations, defaults)?;
    let mut config = spec.clone();
    let mut root = Root::default();
    root.set_path(GUEST_ROOTFS.into());
    root.set_readonly(Some(
        spec.root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
    ));
    config.set_root(Some(root));
    if let Some(mut a) = spec.annotations().clone() {
        a.retain(|k, _| !k.starts_with("io.vessel."));
        config.set_annotations(Some(a));
    }
    if let Some(h) = spec.hooks() {
        // Only the hooks that run in the container; the others run on the host.
        let mut guest = Hooks::default();
        guest.set_create_container(h.create_container().clone());
        guest.set_start_container(h.start_container().clone());
        config.set_hooks(Some(guest));
    }
    let netns = adapt_linux(&mut config)?;
    let files = copy_bind_sources(&mut config)?;
    Ok(GuestPlan {
        config,
        files,
        vcpus,
        memory_mib,
        netns,
    })
}

/// vCPUs and memory: annotations win, then the spec's limits, then the
/// configuration's defaults.
fn size(
    spec: &Spec,
    annotations: &HashMap<String, String>,
    defaults: &VmDefaults,
) -> Result<(u32, u32), PlanError> {
    let number = |key: &'static str| -> Result<Option<u32>, PlanError> {
        annotations
            .get(key)
            .map(|v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| PlanError::NotPositive {
                        key,
                        value: v.clone(),
                    })
            })
            .transpose()
    };
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let cpu = resources.and_then(|r| r.cpu().as_ref());
    let from_quota = cpu.and_then(|c| match (c.quota(), c.period()) {
        (Some(q), Some(p)) if q > 0 && p > 0 => Some(((q as u64).div_ceil(p)) as u32),
        _ => None,
    });
    let from_cpuset = cpu.and_then(|c| c.cpus().as_deref()).and_then(count_cpuset);
    let vcpus = number(CPUS_ANNOTATION)?
        .or(from_quota)
        .or(from_cpuset)
        .or(defaults.cpus)
        .unwrap_or(1)
        .clamp(1, 64);

    let limit_mib = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| (l as u64 >> 20) as u32);
    let memory = match (number(MEMORY_ANNOTATION)?, limit_mib) {
        (Some(m), Some(limit)) if m.saturating_add(VMM_OVERHEAD_MIB) > limit => {
            return Err(PlanError::GuestAboveLimit { guest: m, limit })
        }
        (Some(m), _) => m,
        (None, Some(limit)) => limit.saturating_sub(VMM_OVERHEAD_MIB),
        (None, None) => defaults.memory_mib.unwrap_or(DEFAULT_GUEST_MIB),
    };
    if memory < MIN_GUEST_MIB {
        return Err(match limit_mib {
            Some(limit) if number(MEMORY_ANNOTATION)?.is_none() => PlanError::LimitTooLow { limit },
            _ => PlanError::GuestTooSmall { memory },
        });
    }
    Ok((vcpus, memory))
}

/// Number of CPUs in a cpuset list such as `0-3,6`.
fn count_cpuset(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => part.parse::<u32>().map(|_| 1).ok()?,
        };
    }
    (n > 0).then_some(n)
}

/// Namespaces and resources for the guest; returns the network namespace
/// path the VMM must join, if any.
fn adapt_linux(config: &mut Spec) -> Result<Option<PathBuf>, PlanError> {
    let mut linux = config.linux().clone().ok_or(PlanError::NoLinux)?;
    let mut netns = None;
    let mut has_net = false;
    if let Some(list) = linux.namespaces() {
        for (index, ns) in list.iter().enumerate() {
            let path = ns.path().clone().filter(|p| !p.as_os_str().is_empty());
            if ns.typ() == LinuxNamespaceType::Network {
                has_net = true;
                netns = path;
            } else if let Some(path) = path {
                // The name config.json uses.
                let kind = serde_json::to_value(ns.typ())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                return Err(PlanError::JoinsHost { index, kind, path });
            }
        }
        let kept: Vec<_> = list
            .iter()
            .filter(|ns| ns.typ() != LinuxNamespaceType::Network)
            .cloned()
            .collect();
        linux.set_namespaces(Some(kept));
    }
    if !has_net {
        return Err(PlanError::HostNetwork);
    }
    linux.set_cgroups_path(None);
    if let Some(mut res) = linux.resources().clone() {
        // Host objects: block IO is applied to the VMM on the host instead.
        res.set_block_io(None);
        res.set_hugepage_limits(None);
        res.set_rdma(None);
        res.set_network(None);
        if let Some(mut cpu) = res.cpu().clone() {
            cpu.set_cpus(None);
            cpu.set_mems(None);
            res.set_cpu(Some(cpu));
        }
        linux.set_resources(Some(res));
    }
    config.set_linux(Some(linux));
    Ok(netns)
}

/// Rewrites the bind mounts to copies under [`GUEST_FILES`] and returns the
/// files to create; refuses mounts the guest cannot have.
fn copy_bind_sources(config: &mut Spec) -> Result<Vec<GuestFile>, PlanError> {
    let mut files = Vec::new();
    let mut budget = COPY_LIMIT;
    let Some(mut mounts) = config.mounts().clone() else {
        return Ok(files);
    };
    for (i, m) in mounts.iter_mut().enumerate() {
        let kind = m.typ().clone().unwrap_or_default();
        let bind = kind == "bind"
            || m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        let field = format!("mounts[{i}] ({})", m.destination().display());
        if !bind {
            match kind.as_str() {
                "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2" => continue,
                _ => return Err(PlanError::MountType { field, kind }),
            }
        }
        let Some(source) = m.source().clone() else {
            return Err(PlanError::NoSource { field });
        };
        let guest = format!("{GUEST_FILES}/{i}");
        copy_in(&source, &guest, &mut files, &mut budget).map_err(|e| PlanError::Copy {
            field,
            path: source.clone(),
            source: e,
        })?;
        m.set_source(Some(guest.into()));
    }
    config.set_mounts(Some(mounts));
    Ok(files)
}

fn copy_in(
    host: &Path,
    guest: &str,
    files: &mut Vec<GuestFile>,
    budget: &mut u64,
) -> Result<(), CopyError> {
    let meta = fs::symlink_metadata(host)?;
    let mode = meta.mode() & 0o7777;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        GuestFileKind::Dir
    } else if ft.is_symlink() {
        let target = fs::read_link(host)?;
        GuestFileKind::Symlink {
            target: target.to_string_lossy().into_owned(),
        }
    } else if ft.is_file() {
        if meta.len() > *budget {
            return Err(CopyError::TooLarge { size: meta.len() });
        }
        *budget -= meta.len();
        let data = fs::read(host)?;
        GuestFileKind::File {
            base64: base64::engine::general_purpose::STANDARD.encode(data),
        }
    } else if ft.is_block_device() || ft.is_char_device() {
        return Err(CopyError::Device);
    } else {
        return Err(CopyError::Special);
    };
    let is_dir = matches!(kind, GuestFileKind::Dir);
    files.push(GuestFile {
        path: guest.to_string(),
        mode,
        kind,
    });
    if is_dir {
        let mut entries: Vec<_> = fs::read_dir(host)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let child = format!("{guest}/{}", name.to_string_lossy());
            copy_in(&e.path(), &child, files, budget).map_err(|x| CopyError::Entry {
                path: e.path(),
                source: Box::new(x),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config(p: &GuestPlan) -> Value {
        serde_json::to_value(&p.config).unwrap()
    }

    fn spec_with(extra: Value) -> Spec {
        let mut base = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "hooks": {"prestart": [{"path": "/bin/true"}], "startContainer": [{"path": "/bin/true"}]},
            "annotations": {"io.vessel.isolation": "vm", "other": "kept"},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}, {"type": "mount"}]}
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        if let (Some(a), Value::Object(b)) = (a.as_object_mut(), &b) {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v.clone());
            }
        } else {
            *a = b;
        }
    }

    #[test]
    fn guest_config_is_adapted() {
        let p = plan(&spec_with(json!({})), &VmDefaults::default()).unwrap();
        let c = config(&p);
        assert_eq!(c["root"]["path"], GUEST_ROOTFS);
        assert_eq!(c["root"]["readonly"], true);
        assert_eq!(p.netns, Some(PathBuf::from("/run/netns/x")));
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount"]);
        assert!(c["annotations"].get("io.vessel.isolation").is_none());
        assert_eq!(c["annotations"]["other"], "kept");
        assert!(c["hooks"].get("prestart").is_none());
        assert!(c["hooks"].get("startContainer").is_some());
        assert_eq!((p.vcpus, p.memory_mib), (1, DEFAULT_GUEST_MIB));
    }

    #[test]
    fn host_network_and_joined_namespaces_are_refused() {
        let mut s = spec_with(json!({}));
        let mut v = serde_json::to_value(&s).unwrap();
        v["linux"]["namespaces"] = json!([{"type": "pid"}]);
        s = serde_json::from_value(v.clone()).unwrap();
        let e = plan(&s, &VmDefaults::default()).unwrap_err().to_string();
        assert!(
            e.contains("linux.namespaces") && e.contains("network"),
            "{e}"
        );
        v["linux"]["namespaces"] =
            json!([{"type": "network"}, {"type": "ipc", "path": "/proc/1/ns/ipc"}]);
        s = serde_json::from_value(v).unwrap();
        let e = plan(&s, &VmDefaults::default()).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces[1].path"), "{e}");
    }

    #[test]
    fn sizes_come_from_limits_and_annotations() {
        let s = spec_with(json!({"linux": {"resources": {
            "memory": {"limit": 512i64 << 20},
            "cpu": {"quota": 150000, "period": 100000}}}}));
        let p = plan(&s, &VmDefaults::default()).unwrap();
        assert_eq!((p.vcpus, p.memory_mib), (2, 512 - VMM_OVERHEAD_MIB));
        let s = spec_with(
            json!({"annotations": {"io.vessel.vm.cpus": "3", "io.vessel.vm.memory_mib": "128"},
            "linux": {"resources": {"memory": {"limit": 512i64 << 20}}}}),
        );
        let p = plan(&s, &VmDefaults::default()).unwrap();
        assert_eq!((p.vcpus, p.memory_mib), (3, 128));
        let s = spec_with(json!({"linux": {"resources": {"memory": {"limit": 128i64 << 20}}}}));
        let e = plan(&s, &VmDefaults::default()).unwrap_err().to_string();
        assert!(e.contains("linux.resources.memory.limit"), "{e}");
        assert!(
            e.contains(&format!("the minimum is {MIN_MEMORY_LIMIT_MIB} MiB")),
            "{e}"
        );
        // Exactly the minimum is accepted, one MiB less is not.
        let at =
            |mib: i64| spec_with(json!({"linux": {"resources": {"memory": {"limit": mib << 20}}}}));
        let p = plan(&at(MIN_MEMORY_LIMIT_MIB as i64), &VmDefaults::default()).unwrap();
        assert_eq!(p.memory_mib, MIN_GUEST_MIB);
        assert!(plan(&at(MIN_MEMORY_LIMIT_MIB as i64 - 1), &VmDefaults::default()).is_err());
        let s = spec_with(json!({"annotations": {"io.vessel.vm.memory_mib": "500"},
            "linux": {"resources": {"memory": {"limit": 512i64 << 20}}}}));
        let e = plan(&s, &VmDefaults::default()).unwrap_err().to_string();
        assert!(e.contains("io.vessel.vm.memory_mib"), "{e}");
        let s = spec_with(json!({"annotations": {"io.vessel.vm.cpus": "zero"}}));
        assert!(plan(&s, &VmDefaults::default())
            .unwrap_err()
            .to_string()
            .contains("io.vessel.vm.cpus"));
        assert_eq!(count_cpuset("0-3,6"), Some(5));
    }

    #[test]
    fn bind_mounts_are_copied_and_devices_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), b"hi").unwrap();
        let src = dir.path().join("d").to_string_lossy().into_owned();
        let s = spec_with(json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]}]}));
        let p = plan(&s, &VmDefaults::default()).unwrap();
        assert_eq!(
            config(&p)["mounts"][1]["source"],
            format!("{GUEST_FILES}/1")
        );
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.files[1].path, format!("{GUEST_FILES}/1/f"));
        assert!(matches!(&p.files[1].kind, GuestFileKind::File { base64 } if base64 == "aGk="));
        let s = spec_with(json!({"mounts": [
            {"destination": "/dev/x", "type": "bind", "source": "/dev/null", "options": ["bind"]}]}));
        let e = plan(&s, &VmDefaults::default()).unwrap_err().to_string();
        assert!(
            e.contains("mounts[0] (/dev/x)") && e.contains("device"),
            "{e}"
        );
        let s = spec_with(json!({"mounts": [
            {"destination": "/x", "type": "nfs", "source": "server:/x"}]}));
        assert!(plan(&s, &VmDefaults::default())
            .unwrap_err()
            .to_string()
            .contains("\"nfs\""));
    }
}
