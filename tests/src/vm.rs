//! vm-mode containers under test: the static release build of vessel (the
//! guest agent must be static; `make test` builds it first), an image
//! cache of the tests' own, and removal of the rootfs image each test
//! built.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::harness::Ctr;

/// The static vessel (`make release` installs it as target/release/vessel),
/// or `$VESSEL_STATIC_BIN`.
pub fn static_vessel() -> PathBuf {
    let p = std::env::var_os("VESSEL_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/vessel")
        });
    assert!(
        p.exists(),
        "{} not found: vm-mode tests need the static build (make release)",
        p.display()
    );
    p
}

/// The image cache of the tests (kept between runs like target/, so the
/// accelerator probe and the initramfs are made once).
pub fn test_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/vm-test-cache")
}

/// Whether QEMU and the guest kernel are installed; prints why not.
pub fn vm_available() -> bool {
    if crate::clients::which("qemu-system-x86_64").is_none() {
        eprintln!("SKIP: qemu-system-x86_64 is not installed (qemu-system-x86)");
        return false;
    }
    if vessel_vm::guest::GuestKernel::locate().is_err() {
        eprintln!("SKIP: no guest kernel (linux-image-cloud-amd64)");
        return false;
    }
    true
}

/// A vm-mode container (annotation set) run by the static vessel, with the
/// tests' cache; removes its rootfs image when dropped.
pub struct VmCtr {
    /// The container.
    pub ctr: Ctr,
    config: PathBuf,
}

impl VmCtr {
    /// A vm-mode container whose process runs `args`.
    pub fn new(tag: &str, args: &[&str]) -> VmCtr {
        let mut ctr = Ctr::new(tag, args);
        ctr.bin = static_vessel();
        let config = ctr.root().join("vessel.toml");
        std::fs::write(
            &config,
            format!(
                "[vm]\ncache_dir = {:?}\n",
                test_cache().display().to_string()
            ),
        )
        .unwrap();
        ctr.global = vec!["--config".into(), config.display().to_string()];
        ctr.config()["annotations"] = json!({"io.vessel.isolation": "vm"});
        ctr.write();
        VmCtr { ctr, config }
    }

    /// The runtime configuration file in use.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// Appends lines to the runtime configuration's `[vm]` table.
    pub fn vm_config(&self, lines: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(lines);
        text.push('\n');
        std::fs::write(&self.config, text).unwrap();
    }
}

impl std::ops::Deref for VmCtr {
    type Target = Ctr;
    fn deref(&self) -> &Ctr {
        &self.ctr
    }
}

impl std::ops::DerefMut for VmCtr {
    fn deref_mut(&mut self) -> &mut Ctr {
        &mut self.ctr
    }
}

impl Drop for VmCtr {
    fn drop(&mut self) {
        let _ = self.ctr.v(&["delete", "--force", &self.ctr.id]);
        if let Ok((hash, _, _)) = vessel_vm::guest::tree_hash(&self.ctr.bundle.rootfs()) {
            let _ = std::fs::remove_file(test_cache().join(format!("rootfs-{hash}.erofs")));
        }
    }
}

/// Processes whose command line mentions `needle` (QEMU of a container
/// shows its state directory).
pub fn vmm_processes(needle: &str) -> Vec<i32> {
    crate::clients::processes_mentioning(needle)
}

/// The cached rootfs image a running container's root became (from its
/// vessel state), for a test to remove afterwards.
pub fn rootfs_image_of(state: &serde_json::Value, cache: &Path) -> Option<PathBuf> {
    let rootfs = state["rootfs"].as_str()?;
    let (hash, _, _) = vessel_vm::guest::tree_hash(Path::new(rootfs)).ok()?;
    Some(cache.join(format!("rootfs-{hash}.erofs")))
}
