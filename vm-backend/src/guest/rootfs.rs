//! Root filesystem images for the guest: a read-only image of the bundle's
//! rootfs (erofs or ext4), cached by a hash of the tree, and a sparse ext4
//! scratch image for the overlay's writable layer.
//!
//! The cache key hashes the tree's metadata, not its contents: for every
//! entry its relative path, type, mode, owner, size, mtime (with
//! nanoseconds), device number and symlink target. Hashing contents would
//! read the whole rootfs (hundreds of MiB) on every `create`, costing more
//! than building the image; metadata is what `make` and `rsync` trust, and
//! any ordinary change to a file (write, chmod, chown, rename, a new entry)
//! changes it. A tool that rewrites a file in place with the same size and
//! then restores its mtime would go unnoticed: delete the cache for that.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{hex, run_tool, temp_path_for};
use crate::error::IoContext;
use crate::{Error, Result};

/// Filesystem of a read-only rootfs image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// erofs (`mkfs.erofs`, erofs-utils): compact, built without sizing.
    Erofs,
    /// ext4 (`mkfs.ext4 -d`, e2fsprogs), journal-less.
    Ext4,
}

impl ImageFormat {
    /// The filesystem type name the guest mounts it with.
    pub fn fstype(self) -> &'static str {
        match self {
            ImageFormat::Erofs => "erofs",
            ImageFormat::Ext4 => "ext4",
        }
    }
}

/// A built (or cached) rootfs image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsImage {
    /// `<cache>/rootfs-<hash>.<fstype>`.
    pub path: PathBuf,
    /// Its filesystem.
    pub format: ImageFormat,
    /// The tree hash it was built from.
    pub hash: String,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// Hash of the tree under `root` (see the module documentation for what
/// it covers), plus the entry count and the bytes of regular files.
pub fn tree_hash(root: &Path) -> Result<(String, u64, u64)> {
    let mut h = Sha256::new();
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .ctx(|| format!("reading directory {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .ctx(|| format!("reading directory {}", dir.display()))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let md = fs::symlink_metadata(&path).ctx(|| format!("stat {}", path.display()))?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else if ft.is_fifo() {
                'p'
            } else {
                's'
            };
            h.update(rel_path.as_os_str().as_encoded_bytes());
            h.update(format!(
                "\0{kind}{:o}:{}:{}:{}:{}.{}:{}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.mtime(),
                md.mtime_nsec(),
                md.rdev()
            ));
            if ft.is_symlink() {
                let target = fs::read_link(&path).ctx(|| format!("readlink {}", path.display()))?;
                h.update(target.as_os_str().as_encoded_bytes());
            }
            h.update([0]);
            entries += 1;
            if ft.is_file() {
                bytes += md.size();
            }
            if ft.is_dir() {
                subdirs.push(rel_path);
            }
        }
        // Depth-first in sorted order: push in reverse.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok((hex(&h.finalize()), entries, bytes))
}

/// Builds (or finds in `cache_dir`) the read-only image of `rootfs`.
pub fn build_rootfs_image(
    rootfs: &Path,
    format: ImageFormat,
    cache_dir: &Path,
) -> Result<RootfsImage> {
    if !rootfs.is_dir() {
        return Err(Error::InvalidConfig(format!(
            "rootfs {} is not a directory",
            rootfs.display()
        )));
    }
    let (hash, entries, bytes) = tree_hash(rootfs)?;
    let path = cache_dir.join(format!("rootfs-{hash}.{}", format.fstype()));
    if path.is_file() {
        // Its mtime is its last use: what pruning keeps.
        let _ = File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(RootfsImage {
            path,
            format,
            hash,
            cached: true,
        });
    }
    fs::create_dir_all(cache_dir).ctx(|| format!("creating {}", cache_dir.display()))?;
    let tmp = temp_path_for(&path);
    let _ = fs::remove_file(&tmp);
    let result = match format {
        ImageFormat::Erofs => run_tool(
            "mkfs.erofs",
            "erofs-utils",
            [tmp.as_os_str(), rootfs.as_os_str()],
        ),
        ImageFormat::Ext4 => {
            // Room for the data at 4 KiB granularity, inode tables and
            // metadata: generous, and sparse on the host.
            let size = (bytes + entries * 4096) * 5 / 4 + (16 << 20);
            let inodes = (entries + 1024).to_string();
            File::create(&tmp)
                .and_then(|f| f.set_len(size))
                .ctx(|| format!("creating {}", tmp.display()))
                .and_then(|()| {
                    run_tool(
                        "mkfs.ext4",
                        "e2fsprogs",
                        [
                            "-q".as_ref(),
                            "-F".as_ref(),
                            "-O".as_ref(),
                            "^has_journal".as_ref(),
                            "-N".as_ref(),
                            inodes.as_ref(),
                            "-d".as_ref(),
                            rootfs.as_os_str(),
                            tmp.as_os_str(),
                        ],
                    )
                })
        }
    }
    .and_then(|()| fs::rename(&tmp, &path).ctx(|| format!("renaming to {}", path.display())));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    prune_rootfs_images(cache_dir, KEEP_ROOTFS_IMAGES);
    Ok(RootfsImage {
        path,
        format,
        hash,
        cached: false,
    })
}

/// How many rootfs images the cache keeps.
pub const KEEP_ROOTFS_IMAGES: usize = 16;

/// Removes all but the `keep` most recently used rootfs images from
/// `cache_dir`. An image a running VM uses stays readable by it (the VMM
/// holds it open); a later container of that root rebuilds it.
pub fn prune_rootfs_images(cache_dir: &Path, keep: usize) {
    super::prune_cache(cache_dir, "rootfs-", &[".erofs", ".ext4"], keep);
}

/// Creates a sparse ext4 image of `size_mib` MiB at `path` for the guest's
/// writable layer (overlay upper and work directories).
pub fn create_scratch_image(path: &Path, size_mib: u64) -> Result<()> {
    File::create(path)
        .and_then(|f| f.set_len(size_mib << 20))
        .ctx(|| format!("creating scratch image {}", path.display()))?;
    run_tool(
        "mkfs.ext4",
        "e2fsprogs",
        [
            "-q".as_ref(),
            "-F".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-E".as_ref(),
            "lazy_itable_init=1,lazy_journal_init=1".as_ref(),
            path.as_os_str(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn sample_tree(dir: &Path) {
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/hello"), b"hello").unwrap();
        symlink("hello", dir.join("bin/hi")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/hostname"), b"box\n").unwrap();
    }

    #[test]
    fn tree_hash_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let (a, entries, bytes) = tree_hash(dir.path()).unwrap();
        assert_eq!(entries, 5);
        assert_eq!(bytes, 9);
        assert_eq!(tree_hash(dir.path()).unwrap().0, a);
        fs::write(dir.path().join("etc/new"), b"").unwrap();
        let (b, _, _) = tree_hash(dir.path()).unwrap();
        assert_ne!(a, b);
        fs::write(dir.path().join("etc/hostname"), b"other\n").unwrap();
        assert_ne!(tree_hash(dir.path()).unwrap().0, b);
    }

    fn have(program: &str) -> bool {
        std::process::Command::new(program)
            .arg("-V")
            .output()
            .is_ok()
    }

    #[test]
    fn images_are_built_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("rootfs");
        sample_tree(&tree);
        let cache = dir.path().join("cache");
        for (format, tool) in [
            (ImageFormat::Erofs, "mkfs.erofs"),
            (ImageFormat::Ext4, "mkfs.ext4"),
        ] {
            if !have(tool) {
                eprintln!("skipping {format:?}: {tool} is not installed");
                continue;
            }
            let img = build_rootfs_image(&tree, format, &cache).unwrap();
            assert!(!img.cached);
            assert!(img.path.metadata().unwrap().len() > 0);
            assert!(build_rootfs_image(&tree, format, &cache).unwrap().cached);
        }
        if have("mkfs.ext4") {
            let scratch = dir.path().join("scratch.ext4");
            create_scratch_image(&scratch, 64).unwrap();
            let md = scratch.metadata().unwrap();
            assert_eq!(md.len(), 64 << 20);
            assert!(
                md.blocks() * 512 < md.len(),
                "scratch image should be sparse"
            );
        }
    }
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_most_recently_used_images() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for i in 0..5u64 {
            let p = dir.path().join(format!("rootfs-{i}.erofs"));
            let f = File::create(&p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i))
                .unwrap();
        }
        fs::write(dir.path().join("initramfs-x.img"), b"").unwrap();
        prune_rootfs_images(dir.path(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["initramfs-x.img", "rootfs-3.erofs", "rootfs-4.erofs"]
        );
    }
}
