//! The ledger: an append-only record, in a container's state directory, of
//! everything the container owns on the host, each entry written *before*
//! (or, for a process, at once after) the thing it names exists.
//!
//! `state.json` says how the container is; the ledger says what must go
//! when it is deleted. A command killed at any instant leaves a ledger that
//! names every process, cgroup, file and network attachment it made, so
//! `delete --force` can remove them even when `state.json` was never
//! written or is corrupt. Each entry is one `write(2)` of one JSON line on
//! an `O_APPEND` descriptor: a kill leaves whole lines, and a torn last line
//! (a full disk) is skipped when read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::utils;

/// File name of the ledger inside a container's directory.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// Largest ledger read: a ledger has a handful of lines.
const MAX_LEDGER_BYTES: u64 = 1 << 20;

/// A process, told apart from a later one with the same pid by its start
/// time (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// Host pid.
    pub pid: i32,
    /// Start time of that pid.
    pub start: u64,
}

impl ProcRef {
    /// The process `pid` as it is now (`None` if it does not exist).
    pub fn of(pid: i32) -> Option<ProcRef> {
        utils::proc_start_time(pid).map(|(start, _)| ProcRef { pid, start })
    }

    /// This process.
    pub fn current() -> ProcRef {
        ProcRef::of(std::process::id() as i32).expect("/proc/self/stat is readable")
    }

    /// Whether this very process still runs (not a zombie, not a recycled pid).
    pub fn alive(&self) -> bool {
        utils::process_alive(self.pid, self.start)
    }
}

/// What a process is to the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The setup stage that forks init (joins and unshares namespaces).
    Stage,
    /// The container's init (the workload once started).
    Init,
    /// vm mode: the VM supervisor (the container's pid).
    Supervisor,
    /// vm mode: the VMM (QEMU or `vessel vmm`).
    Vmm,
}

/// One entry of the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    /// The first line: who creates the container, from which bundle.
    Begin {
        /// The `create` (or `run`) command.
        creator: ProcRef,
        /// Absolute bundle path.
        bundle: PathBuf,
        /// Creation time, RFC 3339.
        created: String,
        /// The isolation mode.
        isolation: crate::isolation::Isolation,
    },
    /// A cgroup, recorded before it is created.
    Cgroup {
        /// Its path as the cgroup layer takes it.
        path: PathBuf,
        /// Managed through systemd.
        systemd: bool,
    },
    /// A process, recorded as soon as its pid is known.
    Process {
        /// What it is.
        role: Role,
        /// Which process.
        #[serde(flatten)]
        process: ProcRef,
    },
    /// A file outside the state directory, recorded before it is created.
    File {
        /// Absolute path.
        path: PathBuf,
    },
    /// A host link of `linux.netDevices`, recorded before it is moved into
    /// the container's network namespace; `delete` moves it back.
    NetDevice {
        /// Its name on the host.
        host: String,
        /// Its name in the container.
        name: String,
    },
    /// A `linux.intelRdt` resctrl group (control or monitoring), recorded
    /// before it is created.
    IntelRdt {
        /// Its directory.
        path: PathBuf,
        /// Named by `closID`: other containers may join it.
        shared: bool,
    },
    /// vm mode: taps and filters joined to the container's network namespace.
    Net {
        /// What `detach` undoes.
        attachment: vessel_vm::net::NetAttachment,
    },
}

/// The writable end of a container's ledger.
#[derive(Debug)]
pub struct Ledger {
    file: File,
}

impl Ledger {
    /// Creates `<dir>/ledger.jsonl`, which must not exist yet.
    pub fn create(dir: &Path) -> io::Result<Ledger> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join(LEDGER_FILE))?;
        Ok(Ledger { file })
    }

    /// Appends `entry` in a single write.
    pub fn record(&mut self, entry: &Entry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write(2) on O_APPEND: whole or not at all for a line this small.
        let n = self.file.write(&line)?;
        if n != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{LEDGER_FILE}: short write"),
            ));
        }
        Ok(())
    }

    /// Reads every whole entry of `<dir>/ledger.jsonl` (none if absent).
    pub fn read(dir: &Path) -> io::Result<Vec<Entry>> {
        let mut text = String::new();
        match File::open(dir.join(LEDGER_FILE)) {
            Ok(f) => {
                f.take(MAX_LEDGER_BYTES).read_to_string(&mut text)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

/// Everything a ledger says a container owns.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    /// The first entry, if it was written.
    pub begin: Option<(ProcRef, PathBuf, String, crate::isolation::Isolation)>,
    /// Cgroups.
    pub cgroups: Vec<(PathBuf, bool)>,
    /// Processes, in the order they appeared.
    pub processes: Vec<(Role, ProcRef)>,
    /// Files outside the state directory.
    pub files: Vec<PathBuf>,
    /// Network attachments.
    pub nets: Vec<vessel_vm::net::NetAttachment>,
    /// Moved `linux.netDevices`: (host name, container name).
    pub net_devices: Vec<(String, String)>,
    /// resctrl groups made for `linux.intelRdt`, in creation order.
    pub intel_rdt: Vec<crate::intel_rdt::Made>,
}

impl Owned {
    /// Sums up ledger entries.
    pub fn from_entries(entries: Vec<Entry>) -> Owned {
        let mut o = Owned::default();
        for e in entries {
            match e {
                Entry::Begin {
                    creator,
                    bundle,
                    created,
                    isolation,
                } => o.begin = Some((creator, bundle, created, isolation)),
                Entry::Cgroup { path, systemd } => o.cgroups.push((path, systemd)),
                Entry::Process { role, process } => o.processes.push((role, process)),
                Entry::File { path } => o.files.push(path),
                Entry::Net { attachment } => o.nets.push(attachment),
                Entry::NetDevice { host, name } => o.net_devices.push((host, name)),
                Entry::IntelRdt { path, shared } => {
                    o.intel_rdt.push(crate::intel_rdt::Made { path, shared })
                }
            }
        }
        o
    }

    /// The creator, if recorded.
    pub fn creator(&self) -> Option<ProcRef> {
        self.begin.as_ref().map(|b| b.0)
    }

    /// The last recorded process with `role`.
    pub fn last(&self, role: Role) -> Option<ProcRef> {
        self.processes
            .iter()
            .rev()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| *p)
    }
}

/// Removes the files of a state directory, `state.json` and then the
/// ledger last, then the directory: a delete killed half-way leaves a
/// directory that still says what it owns, or an empty one.
pub fn remove_state_dir(dir: &Path) -> io::Result<()> {
    let last = [crate::state::STATE_FILE, LEDGER_FILE];
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        if last.iter().any(|l| name == *l) {
            continue;
        }
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    for l in last {
        match fs::remove_file(dir.join(l)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_line_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::create(d.path()).unwrap();
        let me = ProcRef::current();
        l.record(&Entry::Begin {
            creator: me,
            bundle: "/b".into(),
            created: "t".into(),
            isolation: crate::isolation::Isolation::Container,
        })
        .unwrap();
        l.record(&Entry::Cgroup {
            path: "/x".into(),
            systemd: false,
        })
        .unwrap();
        l.record(&Entry::Process {
            role: Role::Init,
            process: me,
        })
        .unwrap();
        // A torn line, as a full disk could leave.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(LEDGER_FILE))
            .unwrap()
            .write_all(b"{\"kind\":\"file\",\"pa")
            .unwrap();
        let o = Owned::from_entries(Ledger::read(d.path()).unwrap());
        assert_eq!(o.creator(), Some(me));
        assert_eq!(o.cgroups, vec![(PathBuf::from("/x"), false)]);
        assert_eq!(o.last(Role::Init), Some(me));
        assert!(o.files.is_empty());
        assert!(Ledger::create(d.path()).is_err(), "a second ledger");
    }

    #[test]
    fn the_state_dir_goes_ledger_last() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c");
        fs::create_dir(&dir).unwrap();
        Ledger::create(&dir).unwrap();
        fs::write(dir.join("state.json"), "{}").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("console.log"), "x").unwrap();
        remove_state_dir(&dir).unwrap();
        assert!(!dir.exists());
    }
}
