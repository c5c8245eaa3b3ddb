//! Locating the guest kernel and resolving the modules the agent loads.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{Error, Result};

/// Modules the guest needs from Debian's cloud kernel, which builds these
/// drivers as modules: the virtio-mmio transport (QEMU microvm), block,
/// console (the agent's port), net, the vsock transport, overlayfs for the
/// writable layer and erofs for the read-only root image. Dependencies
/// (virtio, virtio_ring, failover, libcrc32c...) come from `modules.dep`;
/// names built into the kernel are skipped.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "vmw_vsock_virtio_transport",
    "overlay",
    "erofs",
];

/// A guest kernel image and its module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// The bootable image (`vmlinuz-*`).
    pub image: PathBuf,
    /// Kernel release, e.g. `6.1.0-26-cloud-amd64`.
    pub release: String,
    /// `/lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

impl GuestKernel {
    /// Finds the guest kernel: `$VESSEL_GUEST_KERNEL` if set (its release is
    /// taken from the `vmlinuz-<release>` file name), else the newest
    /// `/boot/vmlinuz-*-cloud-amd64` (Debian's `linux-image-cloud-amd64`).
    pub fn locate() -> Result<Self> {
        if let Some(image) = std::env::var_os("VESSEL_GUEST_KERNEL") {
            let image = PathBuf::from(image);
            if !image.is_file() {
                return Err(Error::KernelNotFound {
                    searched: format!("$VESSEL_GUEST_KERNEL={}", image.display()),
                });
            }
            return Ok(Self::from_image(image));
        }
        Self::locate_in(Path::new("/boot"), Path::new("/lib/modules"))
    }

    /// Finds the newest `vmlinuz-*-cloud-amd64` in `boot`.
    pub fn locate_in(boot: &Path, modules_root: &Path) -> Result<Self> {
        let not_found = || Error::KernelNotFound {
            searched: format!("{}/vmlinuz-*-cloud-amd64", boot.display()),
        };
        let mut releases: Vec<String> = fs::read_dir(boot)
            .map_err(|_| not_found())?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("vmlinuz-")
                    .filter(|r| r.ends_with("-cloud-amd64"))
                    .map(str::to_string)
            })
            .collect();
        releases.sort_by_key(|r| version_key(r));
        let release = releases.pop().ok_or_else(not_found)?;
        Ok(GuestKernel {
            image: boot.join(format!("vmlinuz-{release}")),
            modules_dir: modules_root.join(&release),
            release,
        })
    }

    /// Describes a kernel image named `vmlinuz-<release>` whose modules
    /// live in `/lib/modules/<release>`.
    pub fn from_image(image: PathBuf) -> Self {
        let release = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let release = release
            .strip_prefix("vmlinuz-")
            .unwrap_or(&release)
            .to_string();
        GuestKernel {
            image,
            modules_dir: Path::new("/lib/modules").join(&release),
            release,
        }
    }

    /// Resolves module names (`-` and `_` alike) to module files relative
    /// to [`GuestKernel::modules_dir`], with their dependencies, in an
    /// order in which each module comes after everything it needs.
    /// Modules built into the kernel are left out.
    pub fn resolve_modules(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let dep_path = self.modules_dir.join("modules.dep");
        let dep_text =
            fs::read_to_string(&dep_path).ctx(|| format!("reading {}", dep_path.display()))?;
        let builtin_text =
            fs::read_to_string(self.modules_dir.join("modules.builtin")).unwrap_or_default();
        let deps = parse_modules_dep(&dep_text);
        let builtin: HashSet<String> = builtin_text.lines().map(module_name).collect();

        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            let key = name.replace('-', "_");
            if let Some((path, _)) = deps.get(&key) {
                visit(path, &deps, &mut seen, &mut order);
            } else if !builtin.contains(&key) {
                return Err(Error::ModuleNotFound {
                    module: (*name).to_string(),
                    dir: self.modules_dir.clone(),
                });
            }
        }
        Ok(order.into_iter().map(PathBuf::from).collect())
    }
}

/// Depth-first: dependencies first, each module once.
fn visit(
    path: &str,
    deps: &HashMap<String, (String, Vec<String>)>,
    seen: &mut HashSet<String>,
    order: &mut Vec<String>,
) {
    if !seen.insert(path.to_string()) {
        return;
    }
    if let Some((_, needs)) = deps.get(&module_name(path)) {
        for need in needs {
            visit(need, deps, seen, order);
        }
    }
    order.push(path.to_string());
}

/// `modules.dep`: `kernel/a/b.ko: kernel/c.ko kernel/d.ko` per line, keyed
/// by module name.
fn parse_modules_dep(text: &str) -> HashMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (path, needs) = line.split_once(':')?;
            let needs = needs.split_whitespace().map(str::to_string).collect();
            Some((module_name(path), (path.trim().to_string(), needs)))
        })
        .collect()
}

/// `kernel/drivers/virtio/virtio-mmio.ko.xz` -> `virtio_mmio`.
fn module_name(path: &str) -> String {
    let base = path.trim().rsplit('/').next().unwrap_or_default();
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Splits a release into numeric and text runs so `6.1.0-10` sorts before
/// `6.1.0-9` correctly.
fn version_key(release: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for c in release.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                key.push((0, std::mem::take(&mut text)));
            }
            num.push(c);
        } else {
            if !num.is_empty() {
                key.push((num.parse().unwrap_or(0), String::new()));
                num.clear();
            }
            text.push(c);
        }
    }
    if !num.is_empty() {
        key.push((num.parse().unwrap_or(0), String::new()));
    }
    if !text.is_empty() {
        key.push((0, text));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio_mmio.ko"),
            "virtio_mmio"
        );
        assert_eq!(module_name("kernel/net/foo-bar.ko.xz"), "foo_bar");
    }

    #[test]
    fn release_order() {
        let mut v = [
            "6.1.0-9-cloud-amd64",
            "6.1.0-10-cloud-amd64",
            "5.10.0-30-cloud-amd64",
        ];
        v.sort_by_key(|r| version_key(r));
        assert_eq!(v.last(), Some(&"6.1.0-10-cloud-amd64"));
    }

    #[test]
    fn dependency_order_and_builtins() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/virtio_mmio.ko: kernel/virtio.ko kernel/virtio_ring.ko\n\
             kernel/virtio.ko: kernel/virtio_ring.ko\n\
             kernel/virtio_ring.ko:\n\
             kernel/virtio_blk.ko: kernel/virtio.ko kernel/virtio_ring.ko\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\n",
        )
        .unwrap();
        let k = GuestKernel {
            image: dir.path().join("vmlinuz"),
            release: "test".into(),
            modules_dir: dir.path().to_path_buf(),
        };
        let order = k
            .resolve_modules(&["virtio-mmio", "virtio_blk", "ext4"])
            .unwrap();
        let order: Vec<_> = order.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            order,
            [
                "kernel/virtio_ring.ko",
                "kernel/virtio.ko",
                "kernel/virtio_mmio.ko",
                "kernel/virtio_blk.ko"
            ]
        );
        let err = k.resolve_modules(&["nope"]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
