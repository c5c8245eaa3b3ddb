//! The discrete-event engine: jobs issue IO through the page cache or
//! directly, the scheduler orders it, the device serves it.
//!
//! Events are kept in a binary heap ordered by (time, sequence number), so
//! simultaneous events run in the order they were scheduled and a seed gives
//! exactly one run.

mod jobs;
mod randmap;
mod writeback;

use crate::disk::Disk;
use crate::pagecache::PageCache;
use crate::request::{Dir, IoPrio, Origin, Part, ReqId, Request};
use crate::rng::Rng;
use crate::schedulers::{Decision, Scheduler};
use crate::stats::{DeviceStats, JobResult, LatencyStats, RunResult};
use crate::units::{parse_duration, parse_size, Time, SEC, SECTOR};
use crate::workload::{SimConfig, DOUBLE_SPAN, INDIRECT_SPAN, PAGE};
use randmap::RandomMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Wake(u32),
    Done(u32),
    Timer(u64),
    WbTick,
}

/// What the engine records when tracing (for property tests and debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// A request entered the scheduler.
    Submit {
        /// Time.
        t: Time,
        /// Id.
        id: ReqId,
        /// Priority rank ([`IoPrio::rank`]).
        rank: usize,
        /// Sync (else async).
        sync: bool,
        /// Direction.
        dir: Dir,
    },
    /// The scheduler sent a request (with its merged parts) to the device.
    Dispatch {
        /// Time.
        t: Time,
        /// Ids of all parts.
        ids: Vec<ReqId>,
        /// Priority rank.
        rank: usize,
    },
    /// The device finished a request.
    Complete {
        /// Time.
        t: Time,
        /// Ids of all parts.
        ids: Vec<ReqId>,
    },
}

/// Run options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Record a [`TraceEvent`] log.
    pub trace: bool,
    /// After the runtime, stop issuing but let every submitted request finish.
    pub drain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Blocked,
    Throttled,
    Syncing,
    Done,
}

#[derive(Debug)]
struct JobRt {
    rng: Rng,
    randmap: Option<RandomMap>,
    state: State,
    pos: u64,
    op_off: u64,
    op_start: Time,
    last_end: u64,
    ra_next: u64,
    wait: Vec<ReqId>,
    fills: Vec<(ReqId, u64, u64)>,
    sync_ids: Vec<ReqId>,
    bytes_done: u64,
    since_fadv: u64,
    fadv_from: u64,
    since_sync: u64,
    samples: Vec<u64>,
    bytes_measured: u64,
    meta_wait: bool,
    outstanding: u32,
    wake_pending: bool,
    bytes_issued: u64,
}

/// The simulation state.
pub struct Engine<'a> {
    cfg: &'a SimConfig,
    now: Time,
    seq: u64,
    heap: BinaryHeap<Reverse<(Time, u64, Ev)>>,
    sched: Box<dyn Scheduler>,
    disk: Box<dyn Disk>,
    servers: Vec<Option<Request>>,
    dev_queue: VecDeque<Request>,
    in_device: usize,
    depth: usize,
    cache: PageCache,
    jobs: Vec<JobRt>,
    next_id: ReqId,
    timer_gen: u64,
    timer_at: Option<Time>,
    wb_inflight: u32,
    wb_expired: bool,
    ra_pages: u64,
    bg_thresh: u64,
    dirty_thresh: u64,
    dirty_expire: Time,
    wb_interval: Time,
    wb_max: u32,
    max_req_pages: u64,
    copy_ns_per_byte: f64,
    running: bool,
    opts: RunOptions,
    trace: Vec<TraceEvent>,
    dev: DeviceStats,
    busy_ns: Time,
    submitted: u64,
    completed: u64,
    events: u64,
    ios: u64,
    idle_with_pending: u64,
    /// End of the run: the runtime, or earlier through `exitall`.
    end: Time,
}

impl<'a> Engine<'a> {
    /// Prepares a run (page cache pre-filled as the job file asks).
    pub fn new(cfg: &'a SimConfig, opts: RunOptions) -> Self {
        let disk = cfg.disk.build();
        // Data files first, then one block-map pseudo-file per data file:
        // its page k is the indirect block of the k-th 4 MiB region, then
        // one double-indirect block per 4 GiB.
        let mut file_pages: Vec<u64> = cfg.files.iter().map(|f| f.size.div_ceil(PAGE)).collect();
        file_pages.extend(
            cfg.files
                .iter()
                .map(|f| f.size.div_ceil(INDIRECT_SPAN) + f.size.div_ceil(DOUBLE_SPAN)),
        );
        let cache_bytes = parse_size("cache.size", &cfg.cache.size).unwrap_or(0);
        let capacity = (cache_bytes / PAGE).max(1);
        let mut cache = PageCache::new(capacity, &file_pages);
        let nfiles = cfg.files.len() as u32;
        for (i, f) in cfg.files.iter().enumerate() {
            if f.precache > 0 {
                cache.insert_clean(i as u32, 0, f.precache.div_ceil(PAGE));
                if cfg.indirect_blocks {
                    let m = nfiles + i as u32;
                    let regions = f.size.div_ceil(INDIRECT_SPAN);
                    cache.insert_clean(m, 0, f.precache.div_ceil(INDIRECT_SPAN));
                    cache.insert_clean(m, regions, f.precache.div_ceil(DOUBLE_SPAN));
                }
            }
        }
        let jobs = cfg
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| JobRt {
                rng: Rng::new(cfg.seed, i as u64 + 1),
                // Keyed from a stream of its own, so the job's stream stays
                // what it was.
                randmap: (!j.sequential && j.randommap).then(|| {
                    RandomMap::new(
                        cfg.files[j.file].size / j.bs,
                        &mut Rng::new(cfg.seed, (i as u64 + 1) | 1 << 32),
                    )
                }),
                state: State::Idle,
                pos: 0,
                op_off: 0,
                op_start: 0,
                last_end: 0,
                ra_next: 0,
                wait: Vec::new(),
                fills: Vec::new(),
                sync_ids: Vec::new(),
                bytes_done: 0,
                since_fadv: 0,
                fadv_from: 0,
                since_sync: 0,
                samples: Vec::new(),
                bytes_measured: 0,
                meta_wait: false,
                outstanding: 0,
                wake_pending: false,
                bytes_issued: 0,
            })
            .collect();
        let depth = disk.queue_depth().max(1);
        let servers = disk.servers().max(1);
        Engine {
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            sched: cfg.scheduler.build(),
            servers: vec![None; servers],
            dev_queue: VecDeque::new(),
            in_device: 0,
            depth,
            cache,
            jobs,
            next_id: 1,
            timer_gen: 0,
            timer_at: None,
            wb_inflight: 0,
            wb_expired: false,
            ra_pages: cfg.cache.read_ahead_kb * 1024 / PAGE,
            bg_thresh: capacity * cfg.cache.dirty_background_ratio as u64 / 100,
            dirty_thresh: (capacity * cfg.cache.dirty_ratio as u64 / 100).max(1),
            dirty_expire: parse_duration("cache.dirty_expire", &cfg.cache.dirty_expire)
                .unwrap_or(30 * SEC),
            wb_interval: parse_duration("cache.writeback_interval", &cfg.cache.writeback_interval)
                .unwrap_or(5 * SEC)
                .max(1),
            wb_max: cfg.cache.writeback_inflight.max(1),
            max_req_pages: (cfg.max_request / PAGE).max(1),
            copy_ns_per_byte: 1e3 / cfg.cache.memcpy_mb_s,
            running: true,
            opts,
            trace: Vec::new(),
            dev: DeviceStats::default(),
            busy_ns: 0,
            submitted: 0,
            completed: 0,
            events: 0,
            ios: 0,
            idle_with_pending: 0,
            end: cfg.runtime,
            disk,
            cfg,
        }
    }

    fn push(&mut self, t: Time, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, ev)));
    }

    /// Runs to the end and summarizes.
    pub fn run(mut self) -> (RunResult, Vec<TraceEvent>) {
        for (i, j) in self.cfg.jobs.iter().enumerate() {
            if j.start < j.end {
                self.push(j.start, Ev::Wake(i as u32));
            }
        }
        self.push(self.wb_interval, Ev::WbTick);
        while let Some(Reverse((t, _, ev))) = self.heap.pop() {
            if t > self.end && self.running {
                self.running = false;
                self.now = self.end;
                for j in 0..self.jobs.len() {
                    self.finish(j);
                }
                if !self.opts.drain {
                    break;
                }
            }
            self.now = t;
            self.events += 1;
            match ev {
                Ev::Wake(j) => {
                    if self.running {
                        self.issue(j as usize);
                    }
                }
                Ev::Done(s) => self.device_done(s as usize),
                Ev::Timer(g) => {
                    if g != self.timer_gen {
                        continue;
                    }
                    self.timer_at = None;
                }
                Ev::WbTick => {
                    if self.running {
                        self.wb_expired = true;
                        self.pump_writeback();
                        let next = t + self.wb_interval;
                        self.push(next, Ev::WbTick);
                    }
                }
            }
            self.kick();
        }
        self.summarize()
    }

    fn summarize(self) -> (RunResult, Vec<TraceEvent>) {
        let window = self.end.saturating_sub(self.cfg.ramp).max(1) as f64 / SEC as f64;
        let jobs = self
            .cfg
            .jobs
            .iter()
            .zip(self.jobs)
            .map(|(spec, rt)| {
                let rw = match (spec.sequential, spec.dir) {
                    (true, Dir::Read) => "read",
                    (true, Dir::Write) => "write",
                    (false, Dir::Read) => "randread",
                    (false, Dir::Write) => "randwrite",
                };
                JobResult {
                    name: spec.name.clone(),
                    kind: format!(
                        "{rw} {}k {}",
                        spec.bs / 1024,
                        if spec.direct { "direct" } else { "buffered" }
                    ),
                    prio: spec.prio,
                    ios: rt.samples.len() as u64,
                    bytes: rt.bytes_measured,
                    bw_kb_s: rt.bytes_measured as f64 / 1024.0 / window,
                    lat: LatencyStats::from_ns(&rt.samples),
                    report: spec.report,
                    samples: rt.samples,
                }
            })
            .collect();
        let mut dev = self.dev;
        // Busy time summed over the device's servers (channels), as a share
        // of what they could have served.
        dev.utilization =
            self.busy_ns as f64 / (self.end.max(1) as f64 * self.servers.len() as f64);
        (
            RunResult {
                scheduler: self.sched.name().to_string(),
                runtime_s: self.end as f64 / SEC as f64,
                jobs,
                device: dev,
                submitted: self.submitted,
                completed: self.completed,
                events: self.events,
                ios: self.ios,
                idle_with_pending: self.idle_with_pending,
                evictions: self.cache.evictions,
            },
            self.trace,
        )
    }

    // ---- device and scheduler ----

    fn kick(&mut self) {
        while self.in_device < self.depth {
            match self.sched.dispatch(self.now) {
                Decision::Dispatch(r) => {
                    if self.opts.trace {
                        self.trace.push(TraceEvent::Dispatch {
                            t: self.now,
                            ids: r.all_parts().map(|p| p.id).collect(),
                            rank: r.prio.rank(),
                        });
                    }
                    self.send(r);
                }
                Decision::Wait(t) => {
                    if self.sched.work_conserving() {
                        self.idle_with_pending += 1;
                    }
                    let t = t.max(self.now + 1);
                    if self.timer_at != Some(t) {
                        self.timer_gen += 1;
                        self.timer_at = Some(t);
                        let g = self.timer_gen;
                        self.push(t, Ev::Timer(g));
                    }
                    break;
                }
                Decision::Idle => {
                    if self.sched.pending() > 0 && self.sched.work_conserving() {
                        self.idle_with_pending += 1;
                    }
                    break;
                }
            }
        }
    }

    fn send(&mut self, r: Request) {
        self.in_device += 1;
        match self.servers.iter().position(|s| s.is_none()) {
            Some(s) => self.start(s, r),
            None => self.dev_queue.push_back(r),
        }
    }

    fn start(&mut self, s: usize, r: Request) {
        let dur = self.disk.service(&r, self.now).max(1);
        self.busy_ns += dur;
        self.servers[s] = Some(r);
        self.push(self.now + dur, Ev::Done(s as u32));
    }

    fn device_done(&mut self, s: usize) {
        let r = self.servers[s].take().expect("server was busy");
        self.in_device -= 1;
        if let Some(n) = self.dev_queue.pop_front() {
            self.start(s, n);
        }
        self.sched.completed(&r, self.now);
        self.dev.requests += 1;
        self.dev.parts += r.parts() as u64;
        let bytes = r.sectors as u64 * SECTOR;
        match r.dir {
            Dir::Read => self.dev.bytes_read += bytes,
            Dir::Write => self.dev.bytes_written += bytes,
        }
        if self.opts.trace {
            self.trace.push(TraceEvent::Complete {
                t: self.now,
                ids: r.all_parts().map(|p| p.id).collect(),
            });
        }
        for part in r.all_parts() {
            self.part_done(part);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        lba: u64,
        sectors: u32,
        dir: Dir,
        sync: bool,
        prio: IoPrio,
        ctx: u32,
        origin: Origin,
    ) -> ReqId {
        let id = self.next_id;
        self.next_id += 1;
        self.submitted += 1;
        if self.opts.trace {
            self.trace.push(TraceEvent::Submit {
                t: self.now,
                id,
                rank: prio.rank(),
                sync,
                dir,
            });
        }
        self.sched.add(
            Request {
                id,
                lba,
                sectors,
                dir,
                sync,
                prio,
                ctx,
                submitted: self.now,
                origin,
                merged: Vec::new(),
            },
            self.now,
        );
        id
    }

    fn part_done(&mut self, part: Part) {
        self.completed += 1;
        match part.origin {
            Origin::Direct { job } if self.cfg.jobs[job as usize].iodepth > 1 => {
                self.async_done(job as usize, part.submitted)
            }
            Origin::Direct { job } => self.job_io_done(job as usize, part.id),
            Origin::Fill {
                job,
                file,
                page,
                pages,
            } => {
                self.cache.insert_clean(file, page, pages as u64);
                self.jobs[job as usize].fills.retain(|f| f.0 != part.id);
                self.job_io_done(job as usize, part.id);
            }
            Origin::Writeback { file, page, pages } => {
                self.cache.writeback_done(file, page, pages);
                self.wb_inflight = self.wb_inflight.saturating_sub(1);
                for j in 0..self.jobs.len() {
                    if self.jobs[j].state == State::Syncing {
                        self.jobs[j].sync_ids.retain(|&i| i != part.id);
                        if self.jobs[j].sync_ids.is_empty() {
                            self.schedule_next(j, self.now);
                        }
                    }
                }
                self.check_throttled();
                if self.running {
                    self.pump_writeback();
                }
            }
        }
    }
}

/// Runs a simulation.
pub fn run(cfg: &SimConfig) -> RunResult {
    Engine::new(cfg, RunOptions::default()).run().0
}

/// Runs a simulation with options; returns the trace too.
pub fn run_with(cfg: &SimConfig, opts: RunOptions) -> (RunResult, Vec<TraceEvent>) {
    Engine::new(cfg, opts).run()
}
