//! Seek-time curve: square root for short seeks, linear for long ones.
//!
//! This is the two-regime shape DiskSim and Ruemmler & Wilkes use: the arm
//! accelerates then decelerates over short distances (time ~ sqrt(d)), and
//! coasts at top speed over long ones (time ~ d). The curve is fitted to three
//! spec-sheet numbers: track-to-track, average (taken at 1/3 stroke, the mean
//! distance between two uniform random positions) and full stroke; the joint is
//! placed where value and slope of both pieces agree, so the curve is smooth.

use serde::{Deserialize, Serialize};

/// Fitted seek curve over the normalized distance x = cylinders / total cylinders.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeekCurve {
    /// Constant of the square-root piece (ms).
    pub a: f64,
    /// Coefficient of sqrt(x) (ms).
    pub b: f64,
    /// Constant of the linear piece (ms).
    pub c: f64,
    /// Slope of the linear piece (ms per full stroke).
    pub e: f64,
    /// Joint between the two pieces (normalized distance).
    pub x0: f64,
    /// One cylinder as normalized distance.
    pub one_cyl: f64,
}

impl SeekCurve {
    /// Fits the curve to spec-sheet numbers (all in ms).
    pub fn fit(track_to_track: f64, average: f64, full_stroke: f64, cylinders: u32) -> Self {
        let one_cyl = 1.0 / cylinders.max(2) as f64;
        // Linear piece through (1/3, average) and (1, full stroke).
        let e = (full_stroke - average) / (2.0 / 3.0);
        let c = average - e / 3.0;
        // sqrt piece a + b sqrt(x) with a + b sqrt(one_cyl) = t2t, matching value
        // and slope at x0: b / (2 sqrt(x0)) = e  and  a + b sqrt(x0) = c + e x0.
        // With b = 2 e sqrt(x0): a + e x0 = c  => x0 = (c - a) / e; solve for a
        // with the track-to-track constraint by fixed-point iteration.
        let mut a = track_to_track;
        let mut x0 = ((c - a) / e).clamp(1e-6, 1.0 / 3.0);
        for _ in 0..50 {
            let b = 2.0 * e * x0.sqrt();
            a = track_to_track - b * one_cyl.sqrt();
            x0 = ((c - a) / e).clamp(1e-6, 1.0 / 3.0);
        }
        let b = 2.0 * e * x0.sqrt();
        SeekCurve {
            a,
            b,
            c,
            e,
            x0,
            one_cyl,
        }
    }

    /// Seek time in ms for normalized distance `x` (0 means no seek).
    pub fn time_ms(&self, x: f64) -> f64 {
        let x = x.abs();
        if x < self.one_cyl * 0.5 {
            0.0
        } else if x < self.x0 {
            self.a + self.b * x.sqrt()
        } else {
            self.c + self.e * x
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_spec_points_and_is_monotone() {
        let s = SeekCurve::fit(1.0, 8.5, 20.0, 100_000);
        assert!((s.time_ms(1.0 / 100_000.0) - 1.0).abs() < 0.01);
        assert!((s.time_ms(1.0 / 3.0) - 8.5).abs() < 0.01);
        assert!((s.time_ms(1.0) - 20.0).abs() < 0.01);
        assert_eq!(s.time_ms(0.0), 0.0);
        let mut prev = 0.0;
        for i in 1..=1000 {
            let t = s.time_ms(i as f64 / 1000.0);
            assert!(t >= prev, "not monotone at {i}");
            prev = t;
        }
        // Continuous at the joint.
        let l = s.a + s.b * s.x0.sqrt();
        let r = s.c + s.e * s.x0;
        assert!((l - r).abs() < 1e-6);
    }
}
