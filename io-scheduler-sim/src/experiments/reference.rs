//! The paper's published numbers ("IO Containment", Tables 1-4).

/// One row of a paper table: mean, max, std dev (ms) and foreground bandwidth.
#[derive(Debug, Clone, Copy)]
pub struct PaperRow {
    /// Case label as in the paper's legend.
    pub case: &'static str,
    /// Mean latency (ms).
    pub mean: f64,
    /// Max latency (ms).
    pub max: f64,
    /// Standard deviation (ms).
    pub std: f64,
    /// Foreground bandwidth in KB/s (Tables 1 and 2 give MB/s; converted).
    pub bw_kb_s: Option<f64>,
}

const fn row(case: &'static str, mean: f64, max: f64, std: f64, bw: f64) -> PaperRow {
    PaperRow {
        case,
        mean,
        max,
        std,
        bw_kb_s: if bw > 0.0 { Some(bw) } else { None },
    }
}

/// Table 1: random cached reads with background sequential reads.
pub const TABLE1: &[PaperRow] = &[
    row("no-load", 5.97, 149.0, 7.81, 0.0),
    row("direct-64k", 33.97, 373.0, 83.34, 1.9 * 1024.0),
    row("buf", 111.78, 528.0, 160.05, 0.6 * 1024.0),
    row("buf-fadv", 40.67, 784.0, 97.00, 1.6 * 1024.0),
    row("buf-prio", 9.34, 182.0, 12.42, 6.7 * 1024.0),
    row("buf-prio-fadv", 7.74, 112.0, 11.05, 8.1 * 1024.0),
    row("direct-64k-prio", 7.48, 116.0, 10.32, 8.3 * 1024.0),
];

/// Table 2: random cached reads with background sequential writes.
pub const TABLE2: &[PaperRow] = &[
    row("no-load", 6.0, 102.0, 7.86, 0.0),
    row("direct-64k", 36.60, 508.0, 88.29, 1.7 * 1024.0),
    row("buf", 12.89, 891.0, 30.83, 4.8 * 1024.0),
    row("buf-fadv", 7.49, 236.0, 15.68, 8.3 * 1024.0),
    row("buf-prio", 12.15, 258.0, 15.10, 5.1 * 1024.0),
    row("buf-prio-fadv", 8.17, 133.0, 12.06, 7.6 * 1024.0),
    row("buf-sync-16m", 9.36, 349.0, 17.45, 6.7 * 1024.0),
    row("direct-64k-prio", 6.27, 99.0, 8.60, 9.9 * 1024.0),
];

/// Table 3: random reads with background sequential reads.
pub const TABLE3: &[PaperRow] = &[
    row("no-load", 8.91, 32.0, 9.34, 6959.0),
    row("direct-64k", 93.46, 579.0, 138.14, 714.0),
    row("buf", 115.29, 506.0, 161.29, 577.0),
    row("buf-fadv", 113.87, 507.0, 161.08, 583.0),
    row("buf-prio", 11.88, 47.0, 13.59, 5294.0),
    row("buf-prio-fadv", 11.47, 63.0, 13.05, 5475.0),
    row("direct-64k-prio", 11.13, 46.0, 12.34, 5633.0),
];

/// Table 4: random reads with background sequential writes.
pub const TABLE4: &[PaperRow] = &[
    row("no-load", 9.16, 105.0, 9.66, 6782.0),
    row("direct-64k", 100.94, 512.0, 145.47, 654.0),
    row("buf", 12.93, 698.0, 30.01, 4939.0),
    row("buf-fadv", 11.39, 408.0, 19.36, 5516.0),
    row("buf-prio", 13.09, 155.0, 15.66, 4825.0),
    row("buf-prio-fadv", 12.53, 325.0, 15.03, 5033.0),
    row("buf-sync-16m", 11.47, 218.0, 19.14, 5482.0),
    row("direct-64k-prio", 9.66, 96.0, 10.67, 6450.0),
];
