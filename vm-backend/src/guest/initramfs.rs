//! Building the guest initramfs (a newc cpio archive) and caching it by
//! content hash.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{self, ModeFileType};
use sha2::{Digest, Sha256};

use super::kernel::GuestKernel;
use super::{hex, temp_path_for};
use crate::agent::guest::MODULES_LIST;
use crate::error::IoContext;
use crate::Result;

/// Bumped whenever the layout of the archive changes, so old cache entries
/// are not reused.
const LAYOUT_VERSION: &str = "vessel-initramfs-1";

/// A built (or cached) initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initramfs {
    /// The archive, `<cache>/initramfs-<hash>.img`.
    pub path: PathBuf,
    /// SHA-256 of everything that went into it.
    pub hash: String,
    /// Whether it was found in the cache rather than built.
    pub cached: bool,
}

/// What goes into one archive entry.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { source: PathBuf, mode: u32 },
    Bytes { data: Vec<u8>, mode: u32 },
    CharDev { major: u32, minor: u32, mode: u32 },
}

/// Assembles an initramfs: `/init` (the static agent), extra files, and
/// kernel modules with the list the agent loads them from.
#[derive(Debug, Clone, Default)]
pub struct InitramfsBuilder {
    entries: BTreeMap<String, Node>,
}

impl InitramfsBuilder {
    /// Starts an archive whose `/init` is `init`, a statically linked
    /// program (the kernel runs it as PID 1 with no libraries around).
    pub fn new(init: &Path) -> Self {
        let mut b = InitramfsBuilder::default();
        for dir in ["dev", "proc", "sys", "tmp", "run", "etc/vessel", "bin"] {
            b.add_dir(dir);
        }
        // The kernel opens /dev/console for PID 1's stdio before devtmpfs
        // is mounted, so the archive carries the node itself.
        b.entries.insert(
            "dev/console".into(),
            Node::CharDev {
                major: 5,
                minor: 1,
                mode: 0o600,
            },
        );
        b.entries.insert(
            "init".into(),
            Node::File {
                source: init.to_path_buf(),
                mode: 0o755,
            },
        );
        b
    }

    /// Adds the host file `source` at `guest_path` with permission `mode`.
    pub fn file(mut self, source: &Path, guest_path: &str, mode: u32) -> Self {
        let rel = relative(guest_path);
        self.add_parents(&rel);
        self.entries.insert(
            rel,
            Node::File {
                source: source.to_path_buf(),
                mode,
            },
        );
        self
    }

    /// Adds a file with the given contents.
    pub fn bytes(mut self, guest_path: &str, data: Vec<u8>, mode: u32) -> Self {
        let rel = relative(guest_path);
        self.add_parents(&rel);
        self.entries.insert(rel, Node::Bytes { data, mode });
        self
    }

    /// Adds the modules `names` of `kernel` with their dependencies, and
    /// the list ([`MODULES_LIST`]) the agent loads them from, in order.
    pub fn modules(mut self, kernel: &GuestKernel, names: &[&str]) -> Result<Self> {
        let mut list = String::new();
        for module in kernel.resolve_modules(names)? {
            let guest = format!("/lib/modules/{}/{}", kernel.release, module.display());
            list.push_str(&guest);
            list.push('\n');
            self = self.file(&kernel.modules_dir.join(&module), &guest, 0o644);
        }
        Ok(self.bytes(MODULES_LIST, list.into_bytes(), 0o644))
    }

    fn add_dir(&mut self, rel: &str) {
        let mut path = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            self.entries.entry(path.clone()).or_insert(Node::Dir);
        }
    }

    fn add_parents(&mut self, rel: &str) {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.add_dir(parent);
        }
    }

    /// Hash of the archive's content: layout version, then every entry's
    /// path, kind, mode and bytes, in path order.
    pub fn content_hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        h.update(LAYOUT_VERSION.as_bytes());
        for (path, node) in &self.entries {
            h.update(path.as_bytes());
            h.update([0]);
            match node {
                Node::Dir => h.update(b"d"),
                Node::File { source, mode } => {
                    h.update(format!("f{mode:o}"));
                    let mut f =
                        File::open(source).ctx(|| format!("opening {}", source.display()))?;
                    io::copy(&mut f, &mut h).ctx(|| format!("reading {}", source.display()))?;
                }
                Node::Bytes { data, mode } => {
                    h.update(format!("f{mode:o}"));
                    h.update(data);
                }
                Node::CharDev { major, minor, mode } => {
                    h.update(format!("c{major}:{minor}:{mode:o}"))
                }
            }
            h.update([0]);
        }
        Ok(hex(&h.finalize()))
    }

    /// Writes the archive to `<cache_dir>/initramfs-<hash>.img` unless it is
    /// there already.
    pub fn build(&self, cache_dir: &Path) -> Result<Initramfs> {
        let hash = self.content_hash()?;
        let path = cache_dir.join(format!("initramfs-{hash}.img"));
        if path.is_file() {
            // Its mtime is its last use: what pruning keeps.
            let _ = File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(Initramfs {
                path,
                hash,
                cached: true,
            });
        }
        fs::create_dir_all(cache_dir).ctx(|| format!("creating {}", cache_dir.display()))?;
        let tmp = temp_path_for(&path);
        let result = self.write_archive(&tmp).and_then(|()| {
            fs::rename(&tmp, &path).ctx(|| format!("renaming to {}", path.display()))
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        // Each vessel build makes a new one; a few recent ones are kept.
        super::prune_cache(cache_dir, "initramfs-", &[".img"], 4);
        Ok(Initramfs {
            path,
            hash,
            cached: false,
        })
    }

    fn write_archive(&self, dest: &Path) -> Result<()> {
        let ctx = || format!("writing initramfs {}", dest.display());
        let file = File::create(dest).ctx(ctx)?;
        let mut out = BufWriter::new(file);
        for (ino, (path, node)) in self.entries.iter().enumerate() {
            let entry = newc::Builder::new(path).ino(ino as u32 + 1).uid(0).gid(0);
            out = match node {
                Node::Dir => entry
                    .mode(0o755)
                    .set_mode_file_type(ModeFileType::Directory)
                    .nlink(2)
                    .write(out, 0)
                    .finish()
                    .ctx(ctx)?,
                Node::CharDev { major, minor, mode } => entry
                    .mode(*mode)
                    .set_mode_file_type(ModeFileType::Char)
                    .rdev_major(*major)
                    .rdev_minor(*minor)
                    .write(out, 0)
                    .finish()
                    .ctx(ctx)?,
                Node::Bytes { data, mode } => {
                    let mut w = entry
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Regular)
                        .write(out, data.len() as u32);
                    w.write_all(data).ctx(ctx)?;
                    w.finish().ctx(ctx)?
                }
                Node::File { source, mode } => {
                    let mut f =
                        File::open(source).ctx(|| format!("opening {}", source.display()))?;
                    let len = f
                        .metadata()
                        .ctx(|| format!("reading {}", source.display()))?
                        .len();
                    let mut w = entry
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Regular)
                        .write(out, len as u32);
                    io::copy(&mut f, &mut w).ctx(|| format!("copying {}", source.display()))?;
                    w.finish().ctx(ctx)?
                }
            };
        }
        let mut out = newc::trailer(out).ctx(ctx)?;
        out.flush().ctx(ctx)?;
        out.get_ref().sync_all().ctx(ctx)
    }
}

fn relative(guest_path: &str) -> String {
    guest_path.trim_start_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn builds_lists_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init-bin");
        fs::write(&init, b"\x7fELF fake").unwrap();
        let cache = dir.path().join("cache");
        let builder = InitramfsBuilder::new(&init).bytes("/etc/hello", b"hi".to_vec(), 0o644);
        let first = builder.build(&cache).unwrap();
        assert!(!first.cached);
        let second = builder.build(&cache).unwrap();
        assert!(second.cached);
        assert_eq!(first.path, second.path);

        // A different content gives a different archive.
        let other = InitramfsBuilder::new(&init)
            .bytes("/etc/hello", b"ho".to_vec(), 0o644)
            .build(&cache)
            .unwrap();
        assert_ne!(other.hash, first.hash);

        // cpio(1), when installed, reads it back.
        let listed = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(File::open(&first.path).unwrap())
            .output();
        if let Ok(out) = listed {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("init"), "{text}");
            assert!(text.contains("etc/hello"), "{text}");
            assert!(text.contains("dev/console"), "{text}");
        }
    }
}
