//! Block requests and IO priorities.

use crate::units::Time;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Transfer direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dir {
    /// Read from the device.
    Read,
    /// Write to the device.
    Write,
}

/// IO priority class, as `ioprio_set(2)` defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PrioClass {
    /// Real time: served before everything else.
    Rt,
    /// Best effort: the default.
    Be,
    /// Idle: served only when nothing else wants the disk.
    Idle,
}

/// An IO priority: class plus level 0 (highest) to 7 (lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoPrio {
    /// The class.
    pub class: PrioClass,
    /// The level within the class, 0..=7 (ignored for `Idle`).
    pub level: u8,
}

impl IoPrio {
    /// Linux's default for a process that never called `ioprio_set`: best effort, level 4.
    pub const DEFAULT: IoPrio = IoPrio {
        class: PrioClass::Be,
        level: 4,
    };

    /// A best-effort priority at `level`.
    pub const fn be(level: u8) -> Self {
        IoPrio {
            class: PrioClass::Be,
            level,
        }
    }

    /// Rank over all classes: 0..=7 RT, 8..=15 BE, 16 IDLE; lower is more important.
    pub fn rank(self) -> usize {
        match self.class {
            PrioClass::Rt => self.level.min(7) as usize,
            PrioClass::Be => 8 + self.level.min(7) as usize,
            PrioClass::Idle => 16,
        }
    }

    /// Number of distinct ranks.
    pub const RANKS: usize = 17;

    /// Parses `be/4`, `rt/0`, `idle` (also `be4`, `best-effort/4`).
    pub fn parse(field: &str, s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "idle" || t.starts_with("idle/") {
            return Ok(IoPrio {
                class: PrioClass::Idle,
                level: 7,
            });
        }
        let (cls, lvl) = if let Some(rest) = t.strip_prefix("rt") {
            (PrioClass::Rt, rest)
        } else if let Some(rest) = t.strip_prefix("best-effort") {
            (PrioClass::Be, rest)
        } else if let Some(rest) = t.strip_prefix("be") {
            (PrioClass::Be, rest)
        } else {
            return Err(Error::invalid(
                field,
                format!("`{s}` is not an IO priority like be/4, rt/0 or idle"),
            ));
        };
        let lvl = lvl.trim_start_matches(['/', ':', ' ']);
        let level: u8 = if lvl.is_empty() {
            4
        } else {
            lvl.parse().map_err(|_| {
                Error::invalid(field, format!("`{s}`: level must be a number 0..=7"))
            })?
        };
        if level > 7 {
            return Err(Error::invalid(field, format!("`{s}`: level must be 0..=7")));
        }
        Ok(IoPrio { class: cls, level })
    }
}

impl Default for IoPrio {
    fn default() -> Self {
        IoPrio::DEFAULT
    }
}

impl fmt::Display for IoPrio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class {
            PrioClass::Rt => write!(f, "rt/{}", self.level),
            PrioClass::Be => write!(f, "be/{}", self.level),
            PrioClass::Idle => write!(f, "idle"),
        }
    }
}

impl Serialize for IoPrio {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IoPrio {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IoPrio::parse("prio", &s).map_err(serde::de::Error::custom)
    }
}

/// Identifier of a submitted request (unique within a run).
pub type ReqId = u64;

/// Who is waiting for a request, so the engine knows what to do when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A direct IO issued by a job, which blocks on it.
    Direct {
        /// The issuing job.
        job: u32,
    },
    /// A page-cache fill (demand read or read-ahead) for a job's file.
    Fill {
        /// The reading job.
        job: u32,
        /// File index.
        file: u32,
        /// First page.
        page: u64,
        /// Number of pages.
        pages: u32,
    },
    /// Writeback of dirty pages.
    Writeback {
        /// File index.
        file: u32,
        /// First page.
        page: u64,
        /// Number of pages.
        pages: u32,
    },
}

/// One part of a (possibly merged) request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The id the part was submitted with.
    pub id: ReqId,
    /// Who waits for it.
    pub origin: Origin,
    /// When it was submitted to the scheduler.
    pub submitted: Time,
}

/// A block request as the scheduler and the disk see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Id of the first part.
    pub id: ReqId,
    /// First sector.
    pub lba: u64,
    /// Length in sectors.
    pub sectors: u32,
    /// Direction.
    pub dir: Dir,
    /// Whether the submitter waits for it (reads and direct IO), as Linux's `rq_is_sync`.
    pub sync: bool,
    /// IO priority (for writeback, the priority the page was tagged with).
    pub prio: IoPrio,
    /// Submitting context ("process"): the job index, or [`WRITEBACK_CTX`].
    pub ctx: u32,
    /// Submission time of the first part.
    pub submitted: Time,
    /// Who waits for the first part.
    pub origin: Origin,
    /// Further parts merged into this request (back merges), in LBA order.
    pub merged: Vec<Part>,
}

/// Context id used for background writeback (pdflush).
pub const WRITEBACK_CTX: u32 = u32::MAX;

impl Request {
    /// One past the last sector.
    pub fn end(&self) -> u64 {
        self.lba + self.sectors as u64
    }

    /// Number of parts (submitted requests) it carries.
    pub fn parts(&self) -> usize {
        1 + self.merged.len()
    }

    /// Whether `other` may be appended to this request: contiguous, same
    /// submitter, kind and priority (the priority scheduler merges only within
    /// a level), and within the size cap.
    pub fn can_back_merge(&self, other: &Request, max_sectors: u32) -> bool {
        self.end() == other.lba
            && self.ctx == other.ctx
            && self.dir == other.dir
            && self.sync == other.sync
            && self.prio == other.prio
            && self.sectors + other.sectors <= max_sectors
    }

    /// Appends `other` (checked with [`Request::can_back_merge`]).
    pub fn back_merge(&mut self, other: Request) {
        self.sectors += other.sectors;
        self.merged.push(Part {
            id: other.id,
            origin: other.origin,
            submitted: other.submitted,
        });
        self.merged.extend(other.merged);
    }

    /// All parts, the first one included.
    pub fn all_parts(&self) -> impl Iterator<Item = Part> + '_ {
        std::iter::once(Part {
            id: self.id,
            origin: self.origin,
            submitted: self.submitted,
        })
        .chain(self.merged.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prio_parse_and_rank() {
        assert_eq!(IoPrio::parse("p", "be/7").unwrap(), IoPrio::be(7));
        assert_eq!(IoPrio::parse("p", "rt/0").unwrap().rank(), 0);
        assert_eq!(IoPrio::parse("p", "idle").unwrap().rank(), 16);
        assert_eq!(IoPrio::parse("p", "be").unwrap(), IoPrio::DEFAULT);
        assert!(IoPrio::parse("p", "be/9").is_err());
        assert!(IoPrio::parse("p", "urgent").is_err());
        assert!(IoPrio::be(0).rank() < IoPrio::be(7).rank());
    }
}
