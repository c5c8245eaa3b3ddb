//! Zoned rotating disk: seek curve, rotational position, zoned transfer rate,
//! an on-disk track buffer with read-ahead, and a write-back cache for streams.

use super::{positive, Disk, SeekCurve};
use crate::request::{Dir, Request};
use crate::units::{Time, SECTOR};
use crate::Result;
use serde::{Deserialize, Serialize};

/// Parameters of a rotating disk. Rates are in MB/s (10^6 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotatingParams {
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Spindle speed.
    pub rpm: f64,
    /// Number of cylinders (sets what "track to track" means).
    pub cylinders: u32,
    /// Track-to-track seek (ms).
    pub seek_track_to_track_ms: f64,
    /// Average seek (ms), taken at one third of the stroke.
    pub seek_average_ms: f64,
    /// Full-stroke seek (ms).
    pub seek_full_stroke_ms: f64,
    /// Media rate on the outer zone (MB/s).
    pub outer_mb_s: f64,
    /// Media rate on the inner zone (MB/s).
    pub inner_mb_s: f64,
    /// Per-command controller overhead (ms).
    pub controller_overhead_ms: f64,
    /// Host interface rate for data served from the disk's buffer (MB/s).
    pub interface_mb_s: f64,
    /// On-disk buffer size (KiB); bounds what read-ahead keeps.
    pub cache_kb: u64,
    /// How far the disk keeps reading past a read into its buffer (KiB); 0 disables.
    pub read_ahead_kb: u64,
    /// Write-back cache: a write that continues the previous one streams at media rate.
    pub write_cache: bool,
    /// Requests the disk accepts at once (1 = no NCQ).
    pub queue_depth: u32,
}

impl RotatingParams {
    /// A 400 GB, 7200 rpm SATA disk of 2008 with 8 MB of cache, as in the
    /// paper's test machines: 8.33 ms per revolution, 11 ms average and
    /// 22 ms full-stroke seek (a 400 GB Barracuda 7200.10's read figures),
    /// 120 MB/s outer to 60 MB/s inner. The shortest seek (2 ms, where spec
    /// sheets give 0.8-1 ms for the adjacent track) is the one calibrated
    /// number: it sets the short seeks inside a 10 GB file and was chosen
    /// once so that the no-load random read of Table 3 costs what the
    /// paper measured (8.9 ms); see the README.
    pub fn sata_2008() -> Self {
        RotatingParams {
            capacity_bytes: 400_000_000_000,
            rpm: 7200.0,
            cylinders: 120_000,
            seek_track_to_track_ms: 2.0,
            seek_average_ms: 11.0,
            seek_full_stroke_ms: 22.0,
            outer_mb_s: 120.0,
            inner_mb_s: 60.0,
            controller_overhead_ms: 0.2,
            interface_mb_s: 150.0,
            cache_kb: 8192,
            read_ahead_kb: 512,
            write_cache: true,
            queue_depth: 1,
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        positive("rpm", self.rpm)?;
        positive("capacity_bytes", self.capacity_bytes as f64)?;
        positive("cylinders", self.cylinders as f64)?;
        positive("seek_track_to_track_ms", self.seek_track_to_track_ms)?;
        positive("seek_average_ms", self.seek_average_ms)?;
        positive("seek_full_stroke_ms", self.seek_full_stroke_ms)?;
        positive("outer_mb_s", self.outer_mb_s)?;
        positive("inner_mb_s", self.inner_mb_s)?;
        positive("interface_mb_s", self.interface_mb_s)?;
        positive("queue_depth", self.queue_depth as f64)?;
        if !(self.seek_track_to_track_ms < self.seek_average_ms
            && self.seek_average_ms < self.seek_full_stroke_ms)
        {
            return Err(crate::Error::invalid(
                "seek_average_ms",
                "need track-to-track < average < full stroke",
            ));
        }
        if self.inner_mb_s > self.outer_mb_s {
            return Err(crate::Error::invalid(
                "inner_mb_s",
                "the inner zone cannot be faster than the outer one",
            ));
        }
        if self.controller_overhead_ms < 0.0 {
            return Err(crate::Error::invalid(
                "controller_overhead_ms",
                "must be >= 0",
            ));
        }
        Ok(())
    }
}

/// The rotating-disk model.
#[derive(Debug, Clone)]
pub struct Rotating {
    p: RotatingParams,
    seek: SeekCurve,
    rev_ns: f64,
    total_sectors: u64,
    /// (1 - inner/outer) / 2: the zoning term of the LBA -> radius map.
    q: f64,
    overhead: Time,
    iface_ns_per_sector: f64,
    ra_sectors: u64,
    cache_sectors: u64,
    head_lba: u64,
    // Track buffer: data [seg_start, fill) is in the buffer at fill_time;
    // while `prefetching`, the head keeps reading towards seg_cap.
    seg_start: u64,
    seg_fill: u64,
    fill_time: Time,
    seg_cap: u64,
    prefetching: bool,
    seg_valid: bool,
    last_write_end: u64,
    last_write_done: Time,
}

impl Rotating {
    /// Builds the model from (validated) parameters.
    pub fn new(p: RotatingParams) -> Self {
        let seek = SeekCurve::fit(
            p.seek_track_to_track_ms,
            p.seek_average_ms,
            p.seek_full_stroke_ms,
            p.cylinders,
        );
        let rev_ns = 60e9 / p.rpm;
        let total_sectors = p.capacity_bytes / SECTOR;
        let q = (1.0 - p.inner_mb_s / p.outer_mb_s) / 2.0;
        Rotating {
            seek,
            rev_ns,
            total_sectors,
            q,
            overhead: crate::units::ms(p.controller_overhead_ms),
            iface_ns_per_sector: SECTOR as f64 * 1e3 / p.interface_mb_s,
            ra_sectors: p.read_ahead_kb * 1024 / SECTOR,
            cache_sectors: (p.cache_kb * 1024 / SECTOR).max(1),
            head_lba: 0,
            seg_start: 0,
            seg_fill: 0,
            fill_time: 0,
            seg_cap: 0,
            prefetching: false,
            seg_valid: false,
            last_write_end: u64::MAX,
            last_write_done: 0,
            p,
        }
    }

    /// Radial position (0 = outer edge, 1 = inner) of an LBA. Capacity per
    /// cylinder falls linearly from outer to inner (constant linear density),
    /// so the LBA fraction is quadratic in the radius; this inverts it.
    pub fn radius(&self, lba: u64) -> f64 {
        let f = (lba.min(self.total_sectors) as f64) / self.total_sectors as f64;
        if self.q < 1e-9 {
            return f;
        }
        let n = 1.0 - self.q;
        let disc = (1.0 - 4.0 * self.q * f * n).max(0.0);
        ((1.0 - disc.sqrt()) / (2.0 * self.q)).clamp(0.0, 1.0)
    }

    /// Media rate at an LBA in sectors per ns.
    fn rate(&self, lba: u64) -> f64 {
        let u = self.radius(lba);
        let mb_s = self.p.outer_mb_s * (1.0 - 2.0 * self.q * u);
        mb_s * 1e6 / SECTOR as f64 / 1e9
    }

    /// Sectors per track at an LBA.
    fn spt(&self, lba: u64) -> f64 {
        self.rate(lba) * self.rev_ns
    }

    fn prefetched_end(&self, now: Time) -> u64 {
        if !self.prefetching {
            return self.seg_fill;
        }
        let grown = (now.saturating_sub(self.fill_time) as f64 * self.rate(self.seg_fill)) as u64;
        (self.seg_fill + grown).min(self.seg_cap)
    }

    /// The fitted seek curve.
    pub fn seek_curve(&self) -> &SeekCurve {
        &self.seek
    }

    fn mechanical(&mut self, req: &Request, now: Time) -> Time {
        let head = if self.prefetching {
            self.prefetched_end(now)
        } else {
            self.head_lba
        };
        let x = self.radius(req.lba) - self.radius(head);
        let seek = crate::units::ms(self.seek.time_ms(x));
        let arrive = now + self.overhead + seek;
        let spt = self.spt(req.lba);
        let target = (req.lba as f64 / spt).fract();
        let angle = (arrive as f64 / self.rev_ns).fract();
        let rot = ((target - angle).rem_euclid(1.0) * self.rev_ns) as Time;
        let xfer = (req.sectors as f64 / spt * self.rev_ns) as Time;
        self.overhead + seek + rot + xfer
    }
}

impl Disk for Rotating {
    fn queue_depth(&self) -> usize {
        self.p.queue_depth as usize
    }

    fn servers(&self) -> usize {
        1
    }

    fn capacity_sectors(&self) -> u64 {
        self.total_sectors
    }

    fn service(&mut self, req: &Request, now: Time) -> Time {
        let end = req.end();
        match req.dir {
            Dir::Read => {
                let pref = self.prefetched_end(now);
                let cap = if self.prefetching { self.seg_cap } else { pref };
                if self.seg_valid && req.lba >= self.seg_start && req.lba <= pref && end <= cap {
                    // Served from the track buffer; the head keeps streaming.
                    let xfer = (req.sectors as f64 * self.iface_ns_per_sector) as Time;
                    let media = if end > pref {
                        ((end - pref) as f64 / self.rate(pref)) as Time
                    } else {
                        0
                    };
                    let dur = self.overhead + xfer.max(media);
                    if self.prefetching {
                        self.seg_fill = pref;
                        self.fill_time = now;
                        self.seg_cap = self.seg_cap.max(end + self.ra_sectors);
                        self.seg_start = self
                            .seg_start
                            .max(self.seg_cap.saturating_sub(self.cache_sectors));
                    }
                    return dur;
                }
                let dur = self.mechanical(req, now);
                self.head_lba = end;
                self.seg_valid = true;
                self.seg_start = req.lba;
                self.seg_fill = end;
                self.fill_time = now + dur;
                self.seg_cap = end + self.ra_sectors;
                self.prefetching = self.ra_sectors > 0;
                dur
            }
            Dir::Write => {
                let streaming = self.p.write_cache
                    && req.lba == self.last_write_end
                    && now <= self.last_write_done + self.rev_ns as Time;
                let dur = if streaming {
                    let xfer = (req.sectors as f64 * self.iface_ns_per_sector) as Time;
                    let media = (req.sectors as f64 / self.rate(req.lba)) as Time;
                    // The cache overlaps command handling with media writes.
                    (self.overhead + xfer).max(media)
                } else {
                    let pref = self.prefetched_end(now);
                    self.head_lba = if self.prefetching {
                        pref
                    } else {
                        self.head_lba
                    };
                    self.mechanical(req, now)
                };
                // The head is now at the write; the buffer stops prefetching
                // and loses the written range.
                let pref = self.prefetched_end(now);
                self.seg_fill = pref;
                self.prefetching = false;
                if req.lba < pref && end > self.seg_start {
                    self.seg_valid = false;
                }
                self.head_lba = end;
                self.last_write_end = end;
                self.last_write_done = now + dur;
                dur
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{IoPrio, Origin};
    use crate::units::MS;

    fn rq(lba: u64, sectors: u32, dir: Dir) -> Request {
        Request {
            id: 0,
            lba,
            sectors,
            dir,
            sync: true,
            prio: IoPrio::DEFAULT,
            ctx: 0,
            submitted: 0,
            origin: Origin::Direct { job: 0 },
            merged: Vec::new(),
        }
    }

    #[test]
    fn radius_is_monotone_and_spans_the_disk() {
        let d = Rotating::new(RotatingParams::sata_2008());
        assert_eq!(d.radius(0), 0.0);
        assert!((d.radius(d.total_sectors) - 1.0).abs() < 1e-9);
        // Zoning: the outer half of the LBAs occupies less than half the stroke.
        assert!(d.radius(d.total_sectors / 2) < 0.45);
    }

    #[test]
    fn random_reads_cost_seek_plus_half_a_turn() {
        let mut d = Rotating::new(RotatingParams::sata_2008());
        let mut rng = crate::rng::Rng::new(1, 1);
        let mut t = 0;
        let n = 2000;
        let mut total = 0;
        for _ in 0..n {
            let lba = rng.below(d.total_sectors - 128);
            let s = d.service(&rq(lba, 128, Dir::Read), t);
            total += s;
            t += s + 3 * MS;
        }
        let mean = total as f64 / n as f64 / MS as f64;
        // 11 ms average seek + 4.17 ms half turn + transfer + overhead, minus
        // the zoning effect (LBAs crowd the outer tracks).
        assert!(mean > 12.5 && mean < 17.5, "mean {mean}");
    }

    #[test]
    fn sequential_reads_stream_from_the_track_buffer() {
        let mut d = Rotating::new(RotatingParams::sata_2008());
        let mut t = 0;
        let mut lba = 0;
        for _ in 0..1000 {
            let s = d.service(&rq(lba, 128, Dir::Read), t);
            t += s + 20_000;
            lba += 128;
        }
        let mb_s = (lba * 512) as f64 / (t as f64 / 1e9) / 1e6;
        assert!(mb_s > 90.0 && mb_s < 125.0, "{mb_s} MB/s");
    }

    #[test]
    fn sequential_writes_stream_with_write_cache_and_not_without() {
        for (wc, lo, hi) in [(true, 90.0, 125.0), (false, 1.0, 20.0)] {
            let mut p = RotatingParams::sata_2008();
            p.write_cache = wc;
            let mut d = Rotating::new(p);
            let mut t = 0;
            let mut lba = 0;
            for _ in 0..500 {
                let s = d.service(&rq(lba, 128, Dir::Write), t);
                t += s + 20_000;
                lba += 128;
            }
            let mb_s = (lba * 512) as f64 / (t as f64 / 1e9) / 1e6;
            assert!(mb_s > lo && mb_s < hi, "write cache {wc}: {mb_s} MB/s");
        }
    }
}
