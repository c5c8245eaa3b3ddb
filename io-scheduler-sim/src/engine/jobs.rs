//! Jobs: issuing IO through the block map, the page cache or directly, and
//! what happens when it completes.

use super::{Engine, Ev, State};
use crate::request::{Dir, Origin, ReqId};
use crate::units::{Time, SEC, SECTOR};
use crate::workload::{DOUBLE_SPAN, INDIRECT_SPAN, PAGE};

impl Engine<'_> {
    pub(super) fn finish(&mut self, j: usize) {
        if self.jobs[j].state != State::Done {
            self.jobs[j].state = State::Done;
            self.sched.ctx_exited(j as u32);
        }
    }

    pub(super) fn issue(&mut self, j: usize) {
        let spec = &self.cfg.jobs[j];
        if self.now >= spec.end || self.jobs[j].state == State::Done {
            self.finish(j);
            return;
        }
        if spec.io_size.is_some_and(|n| self.jobs[j].bytes_done >= n) {
            self.finish(j);
            if self.cfg.exitall {
                self.end = self.end.min(self.now);
            }
            return;
        }
        let file = &self.cfg.files[spec.file];
        let rt = &mut self.jobs[j];
        let off = if spec.sequential {
            let o = rt.pos;
            rt.pos = (o + spec.bs) % file.size;
            o
        } else if let Some(map) = rt.randmap.as_mut() {
            map.next(&mut rt.rng) * spec.bs
        } else {
            rt.rng.below(file.size / spec.bs) * spec.bs
        };
        if spec.direct && spec.iodepth > 1 {
            self.issue_async(j, off);
            return;
        }
        rt.op_off = off;
        rt.op_start = self.now;
        rt.state = State::Blocked;
        if self.cfg.indirect_blocks && self.map_blocks(j, off) {
            return;
        }
        self.data_io(j, off);
    }

    /// Reads the indirect blocks the IO at `off` needs and are not cached;
    /// returns true when the job must wait for them first.
    pub(super) fn map_blocks(&mut self, j: usize, off: u64) -> bool {
        let cfg = self.cfg;
        let spec = &cfg.jobs[j];
        let f = spec.file as u32;
        let npages = self.cache.file_pages(f);
        let p0 = off / PAGE;
        let p1 = (off + spec.bs).div_ceil(PAGE).min(npages);
        // Only blocks that must come from the disk need mapping.
        let mut lo = None;
        let mut hi = p1;
        if spec.direct {
            lo = Some(p0);
        } else {
            for p in p0..p1 {
                if !self.cache.contains(f, p) {
                    lo = Some(p);
                    break;
                }
            }
            if spec.dir == Dir::Read && off == self.jobs[j].last_end {
                let ra_to = (p1 + self.ra_pages).min(npages);
                if lo.is_none() && !(p1..ra_to).all(|p| self.cache.contains(f, p)) {
                    lo = Some(p1);
                }
                hi = ra_to;
            }
        }
        let Some(lo) = lo else {
            return false;
        };
        let m = cfg.files.len() as u32 + f;
        let file = &cfg.files[spec.file];
        let regions = file.size.div_ceil(INDIRECT_SPAN);
        let span_pages = INDIRECT_SPAN / PAGE;
        let mut needed = Vec::new();
        for k in lo / span_pages..=(hi.max(lo + 1) - 1) / span_pages {
            // Beyond the first region the double-indirect block is needed too.
            if k > 0 {
                let g = regions + k * INDIRECT_SPAN / DOUBLE_SPAN;
                if !self.cache.touch(m, g) && !needed.contains(&g) {
                    needed.push(g);
                }
            }
            if !self.cache.touch(m, k) {
                needed.push(k);
            }
        }
        if needed.is_empty() {
            return false;
        }
        for page in needed {
            // Block-map blocks sit at the start of the range they map.
            let lba = if page >= regions {
                file.start_lba + (page - regions) * (DOUBLE_SPAN / SECTOR)
            } else {
                file.start_lba + page * (INDIRECT_SPAN / SECTOR)
            };
            let id = self.submit(
                lba,
                (PAGE / SECTOR) as u32,
                Dir::Read,
                true,
                spec.prio,
                j as u32,
                Origin::Fill {
                    job: j as u32,
                    file: m,
                    page,
                    pages: 1,
                },
            );
            self.jobs[j].wait.push(id);
        }
        self.jobs[j].meta_wait = true;
        true
    }

    pub(super) fn data_io(&mut self, j: usize, off: u64) {
        let spec = &self.cfg.jobs[j];
        let file = &self.cfg.files[spec.file];
        if spec.direct {
            let id = self.submit(
                file.start_lba + off / SECTOR,
                (spec.bs / SECTOR) as u32,
                spec.dir,
                true,
                spec.prio,
                j as u32,
                Origin::Direct { job: j as u32 },
            );
            self.jobs[j].wait.push(id);
            return;
        }
        match spec.dir {
            Dir::Read => self.buffered_read(j, off),
            Dir::Write => self.buffered_write(j, off),
        }
    }

    pub(super) fn fill(&mut self, j: usize, from: u64, to: u64, wait_until: u64) {
        let spec = &self.cfg.jobs[j];
        let f = spec.file;
        let start_lba = self.cfg.files[f].start_lba;
        let prio = spec.prio;
        let mut p = from;
        while p < to {
            let e = (p + self.max_req_pages).min(to);
            let id = self.submit(
                start_lba + p * PAGE / SECTOR,
                ((e - p) * PAGE / SECTOR) as u32,
                Dir::Read,
                true,
                prio,
                j as u32,
                Origin::Fill {
                    job: j as u32,
                    file: f as u32,
                    page: p,
                    pages: (e - p) as u32,
                },
            );
            let rt = &mut self.jobs[j];
            rt.fills.push((id, p, e));
            if p < wait_until {
                rt.wait.push(id);
            }
            p = e;
        }
    }

    pub(super) fn buffered_read(&mut self, j: usize, off: u64) {
        let spec = &self.cfg.jobs[j];
        let f = spec.file as u32;
        let npages = self.cache.file_pages(f);
        let p0 = off / PAGE;
        let p1 = (off + spec.bs).div_ceil(PAGE).min(npages);
        let sequential = off == self.jobs[j].last_end;
        if !sequential {
            // A seek (or a wrap to the start of the file) restarts read-ahead.
            self.jobs[j].ra_next = p1;
        }
        let mut first_missing = None;
        let mut last_missing = 0;
        for p in p0..p1 {
            if self.cache.touch(f, p) {
                continue;
            }
            let rt = &mut self.jobs[j];
            if let Some(&(id, _, _)) = rt.fills.iter().find(|&&(_, a, b)| p >= a && p < b) {
                if !rt.wait.contains(&id) {
                    rt.wait.push(id);
                }
                continue;
            }
            first_missing.get_or_insert(p);
            last_missing = p + 1;
        }
        let mut fetch_end = last_missing;
        if sequential && self.ra_pages > 0 {
            // Keep half a window ahead of the reader; refill a whole window
            // at a time so read-ahead requests are window-sized.
            let rt_next = self.jobs[j].ra_next.max(p1);
            if rt_next < p1 + self.ra_pages / 2 && rt_next < npages {
                let ra_end = (rt_next + self.ra_pages).min(npages);
                match first_missing {
                    Some(_) if fetch_end >= rt_next.saturating_sub(1) => fetch_end = ra_end,
                    _ => {
                        let mut from = rt_next;
                        while from < ra_end && self.cache.contains(f, from) {
                            from += 1;
                        }
                        if from < ra_end {
                            self.fill(j, from, ra_end, 0);
                        }
                    }
                }
                self.jobs[j].ra_next = ra_end;
            }
        }
        if let Some(fm) = first_missing {
            self.fill(j, fm, fetch_end, p1);
            let rt = &mut self.jobs[j];
            rt.ra_next = rt.ra_next.max(fetch_end);
        }
        if self.jobs[j].wait.is_empty() {
            let cost = self.copy_cost(j);
            self.complete_op(j, cost);
        }
    }

    pub(super) fn buffered_write(&mut self, j: usize, off: u64) {
        let spec = &self.cfg.jobs[j];
        let f = spec.file as u32;
        let p0 = off / PAGE;
        let p1 = (off + spec.bs).div_ceil(PAGE);
        self.cache.write(f, p0, p1 - p0, self.now, spec.prio);
        self.pump_writeback();
        if self.cache.dirty() + self.cache.under_writeback() > self.dirty_thresh {
            self.jobs[j].state = State::Throttled;
        } else {
            let cost = self.copy_cost(j);
            self.complete_op(j, cost);
        }
    }

    pub(super) fn copy_cost(&self, j: usize) -> Time {
        (self.cfg.jobs[j].bs as f64 * self.copy_ns_per_byte) as Time
    }

    pub(super) fn check_throttled(&mut self) {
        if self.cache.dirty() + self.cache.under_writeback() > self.dirty_thresh {
            return;
        }
        for j in 0..self.jobs.len() {
            if self.jobs[j].state == State::Throttled {
                self.complete_op(j, 0);
            }
        }
    }

    pub(super) fn job_io_done(&mut self, j: usize, id: ReqId) {
        let rt = &mut self.jobs[j];
        let before = rt.wait.len();
        rt.wait.retain(|&w| w != id);
        if before > 0 && rt.wait.is_empty() && rt.state == State::Blocked && rt.meta_wait {
            rt.meta_wait = false;
            let off = rt.op_off;
            self.data_io(j, off);
            return;
        }
        if before > 0 && rt.wait.is_empty() && rt.state == State::Blocked {
            let spec = &self.cfg.jobs[j];
            let cost = if spec.direct { 0 } else { self.copy_cost(j) };
            self.complete_op(j, cost);
        }
    }

    pub(super) fn complete_op(&mut self, j: usize, extra: Time) {
        let spec = &self.cfg.jobs[j];
        let done = self.now + extra;
        self.ios += 1;
        let rt = &mut self.jobs[j];
        if rt.op_start >= self.cfg.ramp && done <= self.end {
            rt.samples.push(done - rt.op_start);
            rt.bytes_measured += spec.bs;
        }
        rt.bytes_done += spec.bs;
        rt.last_end = rt.op_off + spec.bs;
        rt.state = State::Idle;
        let f = spec.file as u32;
        if let Some(n) = spec.fadvise_every {
            rt.since_fadv += spec.bs;
            if rt.since_fadv >= n {
                rt.since_fadv = 0;
                self.fadvise(j);
            }
        }
        if let Some(n) = spec.sync_every {
            let rt = &mut self.jobs[j];
            rt.since_sync += spec.bs;
            if rt.since_sync >= n {
                rt.since_sync = 0;
                let mut ids = Vec::new();
                while let Some(c) =
                    self.cache
                        .take_dirty(Some(f), None, None, self.max_req_pages as u32)
                {
                    ids.push(self.submit_writeback(c, j as u32));
                }
                if !ids.is_empty() {
                    let rt = &mut self.jobs[j];
                    rt.sync_ids = ids;
                    rt.state = State::Syncing;
                    return;
                }
            }
        }
        self.schedule_next(j, done);
    }

    /// `posix_fadvise(DONTNEED)` over what the job touched since the last
    /// call: start writeback of its dirty pages, drop the clean ones.
    pub(super) fn fadvise(&mut self, j: usize) {
        let spec = &self.cfg.jobs[j];
        let f = spec.file as u32;
        let rt = &mut self.jobs[j];
        let to = rt.last_end.div_ceil(PAGE);
        // A sequential job that wrapped around starts again at 0.
        let from = if to < rt.fadv_from { 0 } else { rt.fadv_from };
        rt.fadv_from = to;
        while let Some(c) =
            self.cache
                .take_dirty(Some(f), Some((from, to)), None, self.max_req_pages as u32)
        {
            self.submit_writeback(c, j as u32);
        }
        self.cache.drop_range(f, from, to);
    }

    pub(super) fn schedule_next(&mut self, j: usize, done: Time) {
        let spec = &self.cfg.jobs[j];
        let rt = &mut self.jobs[j];
        rt.state = State::Idle;
        let bytes = rt.bytes_done;
        let next = self.next_issue_time(j, done, bytes);
        if next < spec.end && self.running {
            self.push(next, Ev::Wake(j as u32));
        } else {
            self.finish(j);
        }
    }

    /// When a job may submit its next IO after `t`: syscall and think time,
    /// then the rate limit.
    fn next_issue_time(&self, j: usize, t: Time, bytes: u64) -> Time {
        let spec = &self.cfg.jobs[j];
        let mut next = t + self.cfg.syscall + spec.think;
        if let Some(rate) = spec.rate {
            let allowed = spec.start + (bytes as u128 * SEC as u128 / rate as u128) as Time;
            next = next.max(allowed);
        }
        next
    }

    /// Submits one IO of an `iodepth` > 1 job (direct IO, libaio-style) and
    /// comes back for the next while fewer than `iodepth` are in flight.
    /// Block-map reads are not modelled for these jobs.
    fn issue_async(&mut self, j: usize, off: u64) {
        let spec = &self.cfg.jobs[j];
        let file = &self.cfg.files[spec.file];
        self.submit(
            file.start_lba + off / SECTOR,
            (spec.bs / SECTOR) as u32,
            spec.dir,
            true,
            spec.prio,
            j as u32,
            Origin::Direct { job: j as u32 },
        );
        let rt = &mut self.jobs[j];
        rt.outstanding += 1;
        rt.bytes_issued += spec.bs;
        rt.wake_pending = false;
        rt.state = State::Blocked;
        if rt.outstanding < spec.iodepth {
            self.wake_async(j);
        }
    }

    fn wake_async(&mut self, j: usize) {
        let spec = &self.cfg.jobs[j];
        let next = self.next_issue_time(j, self.now, self.jobs[j].bytes_issued);
        if next < spec.end && self.running {
            self.push(next, Ev::Wake(j as u32));
            let rt = &mut self.jobs[j];
            rt.wake_pending = true;
            rt.state = State::Idle;
        } else if self.jobs[j].outstanding == 0 {
            self.finish(j);
        }
    }

    /// One IO of an `iodepth` > 1 job completed.
    pub(super) fn async_done(&mut self, j: usize, submitted: Time) {
        let spec = &self.cfg.jobs[j];
        self.ios += 1;
        let rt = &mut self.jobs[j];
        rt.outstanding = rt.outstanding.saturating_sub(1);
        rt.bytes_done += spec.bs;
        if submitted >= self.cfg.ramp && self.now <= self.end {
            rt.samples.push(self.now - submitted);
            rt.bytes_measured += spec.bs;
        }
        if rt.state == State::Blocked && !rt.wake_pending {
            self.wake_async(j);
        }
    }
}
