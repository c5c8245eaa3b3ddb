//! Guest images: the kernel and its modules, the initramfs holding the
//! agent, and the root filesystem images handed to the VM as virtio-blk
//! devices. Everything built here is cached by content hash under a cache
//! directory ([`default_cache_dir`]).

mod initramfs;
mod kernel;
mod rootfs;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use initramfs::{Initramfs, InitramfsBuilder};
pub use kernel::{GuestKernel, DEFAULT_MODULES};
pub use rootfs::{build_rootfs_image, create_scratch_image, tree_hash, ImageFormat, RootfsImage};

use crate::{Error, Result};

/// Cache directory for images: `$VESSEL_CACHE_DIR`, else `/var/cache/vessel`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("VESSEL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vessel"))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs an external tool, mapping a missing binary to
/// [`Error::MissingProgram`] and a failure to [`Error::CommandFailed`].
pub(crate) fn run_tool<I, S>(program: &str, package: &str, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(program)
        .args(&args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingProgram {
                program: program.into(),
                package: package.into(),
            },
            _ => Error::io(format!("running {program}"), e),
        })?;
    if !out.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(Error::CommandFailed {
            program: format!("{program} {}", shown.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Writes `path` atomically enough for a cache: the producer writes into a
/// temporary file in the same directory, which is renamed over `path`.
pub(crate) fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Removes all but the `keep` most recently modified files of `dir` whose
/// names start with `prefix` and end with one of `suffixes`.
pub(crate) fn prune_cache(dir: &std::path::Path, prefix: &str, suffixes: &[&str], keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(prefix) && suffixes.iter().any(|s| n.ends_with(s))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, old) in files.into_iter().skip(keep) {
        let _ = std::fs::remove_file(old);
    }
}
