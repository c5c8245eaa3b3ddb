//! The flush thread (pdflush): background and periodic writeback.

use super::{Engine, State};
use crate::pagecache::WritebackChunk;
use crate::request::{Dir, Origin, ReqId, WRITEBACK_CTX};
use crate::units::SECTOR;
use crate::workload::PAGE;

impl Engine<'_> {
    pub(super) fn submit_writeback(&mut self, c: WritebackChunk, ctx: u32) -> ReqId {
        let start_lba = self.cfg.files[c.file as usize].start_lba;
        self.wb_inflight += 1;
        self.submit(
            start_lba + c.page * PAGE / SECTOR,
            (c.pages as u64 * PAGE / SECTOR) as u32,
            Dir::Write,
            false,
            c.prio,
            ctx,
            Origin::Writeback {
                file: c.file,
                page: c.page,
                pages: c.pages,
            },
        )
    }

    /// The flush thread: write back while above the background threshold or
    /// while writers are throttled, and expired data after each period.
    pub(super) fn pump_writeback(&mut self) {
        while self.wb_inflight < self.wb_max {
            let throttled = self.jobs.iter().any(|r| r.state == State::Throttled);
            let chunk = if self.cache.dirty() > self.bg_thresh || throttled {
                self.cache
                    .take_dirty(None, None, None, self.max_req_pages as u32)
            } else if self.wb_expired {
                let cutoff = self.now.saturating_sub(self.dirty_expire);
                let c = self
                    .cache
                    .take_dirty(None, None, Some(cutoff), self.max_req_pages as u32);
                if c.is_none() {
                    self.wb_expired = false;
                }
                c
            } else {
                None
            };
            match chunk {
                Some(c) => {
                    self.submit_writeback(c, WRITEBACK_CTX);
                }
                None => break,
            }
        }
    }
}
