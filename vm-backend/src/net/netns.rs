//! Running code inside another network namespace.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;

use nix::sched::{setns, CloneFlags};

use crate::error::IoContext;
use crate::{Error, Result};

/// An open network namespace.
pub(crate) struct Netns {
    file: File,
    /// Device and inode: what identifies a namespace.
    pub id: (u64, u64),
}

impl Netns {
    /// Opens the namespace file at `path` (`/proc/<pid>/ns/net`,
    /// `/run/netns/<name>`).
    pub fn open(path: &Path) -> Result<Netns> {
        let file =
            File::open(path).ctx(|| format!("opening network namespace {}", path.display()))?;
        let meta = file
            .metadata()
            .ctx(|| format!("reading network namespace {}", path.display()))?;
        Ok(Netns {
            id: (meta.dev(), meta.ino()),
            file,
        })
    }

    /// Runs `f` on a new thread that has joined this namespace: the
    /// caller's threads keep theirs, and the thread ends with `f`.
    pub fn run<T: Send>(&self, path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        thread::scope(|scope| {
            let worker = scope.spawn(|| {
                setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::io(
                        format!("entering network namespace {}", path.display()),
                        e.into(),
                    )
                })?;
                f()
            });
            match worker.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}
