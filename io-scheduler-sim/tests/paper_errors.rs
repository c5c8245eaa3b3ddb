//! The paper's Tables 1-4 rerun with the default settings must stay within
//! issue 14's error targets: mean relative error of the mean, std ("rms")
//! and foreground-bandwidth columns within 15 % per table. Each test fails
//! when a model change moves the simulation away from the paper.

use vessel_iosim::experiments::{run_table, table_specs, PaperSettings, TableResult, TARGET};

fn table(n: u32) -> TableResult {
    let spec = table_specs()
        .into_iter()
        .find(|s| s.number == n)
        .expect("table exists");
    run_table(&spec, &PaperSettings::default()).expect("table runs")
}

fn check(n: u32) {
    let t = table(n);
    let s = t.summary;
    for r in &t.rows {
        eprintln!(
            "table {n} {:<16} mean {:6.2} ({:3.0}%)  max {:4.0} ({:3.0}%)  rms {:6.2} ({:3.0}%)",
            r.case,
            r.lat.mean,
            r.err.mean * 100.0,
            r.lat.max,
            r.err.max * 100.0,
            r.lat.rms,
            r.err.std * 100.0
        );
    }
    eprintln!("table {n} summary {s:?}");
    assert!(s.mean <= TARGET.mean, "table {n}: mean error {:.3}", s.mean);
    assert!(s.std <= TARGET.std, "table {n}: std error {:.3}", s.std);
    let bw = s.bw.expect("every table has bandwidth cells");
    assert!(
        bw <= TARGET.bw.unwrap(),
        "table {n}: bandwidth error {bw:.3}"
    );
}

#[test]
fn table1_cached_reads_vs_reads_within_targets() {
    check(1);
}

#[test]
fn table2_cached_reads_vs_writes_within_targets() {
    check(2);
}

#[test]
fn table3_reads_vs_reads_within_targets() {
    check(3);
}

#[test]
fn table4_reads_vs_writes_within_targets() {
    check(4);
}

/// The max column is not yet within 30 %: measured 2026-12-07 at 65, 66,
/// 39 and 65 % for Tables 1-4. The model has no source of the paper's
/// 100-330 ms outliers in no-load and prio rows, and its anticipatory core
/// bounds a starved read at about two FIFO periods (~265 ms) where the
/// paper's unprioritized maxima are 373-891 ms. See the README's "What does
/// not match". This test records the gap.
#[test]
#[ignore = "max latency is 39-66% off the paper's (target 30%); run with --ignored to see the gap"]
fn max_within_30_percent() {
    for n in 1..=4 {
        let t = table(n);
        assert!(
            t.summary.max <= TARGET.max,
            "table {n}: max error {:.3}",
            t.summary.max
        );
    }
}
