//! Properties of whole simulations over random workloads.

use proptest::prelude::*;
use std::collections::HashMap;
use vessel_iosim::engine::{run_with, RunOptions, TraceEvent};
use vessel_iosim::request::{Dir, IoPrio};
use vessel_iosim::schedulers::{BfqTunables, CfqTunables, SchedulerConfig};
use vessel_iosim::workload::{DiskSpec, Global, JobFile, JobSpec, SchedSpec, SimConfig};

#[derive(Debug, Clone)]
struct J {
    rw: &'static str,
    bs_kb: u64,
    direct: bool,
    level: u8,
    fadvise: bool,
    depth: u32,
}

fn job_strategy() -> impl Strategy<Value = J> {
    (
        prop::sample::select(vec!["read", "write", "randread", "randwrite"]),
        prop::sample::select(vec![4u64, 16, 64, 256]),
        any::<bool>(),
        0u8..8,
        any::<bool>(),
        1u32..5,
    )
        .prop_map(|(rw, bs_kb, direct, level, fadvise, depth)| J {
            rw,
            bs_kb,
            direct,
            level,
            fadvise,
            depth: if direct { depth } else { 1 },
        })
}

fn config(jobs: &[J], sched: SchedulerConfig, disk: &str, seed: u64, runtime_ms: u64) -> SimConfig {
    let jobs = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| JobSpec {
            name: format!("j{i}"),
            rw: j.rw.into(),
            bs: format!("{}k", j.bs_kb),
            direct: j.direct,
            size: "256m".into(),
            prio: IoPrio::be(j.level),
            fadvise_dontneed: j.fadvise.then(|| "1m".into()),
            iodepth: j.depth,
            ..JobSpec::default()
        })
        .collect();
    let mut g = Global {
        seed,
        runtime: format!("{runtime_ms}ms"),
        disk: DiskSpec::Name(disk.into()),
        scheduler: SchedSpec::Inline(sched),
        ..Global::default()
    };
    // A small cache so that writeback and eviction happen within the run.
    g.cache.size = "64m".into();
    g.cache.writeback_interval = "100ms".into();
    g.cache.dirty_expire = "200ms".into();
    JobFile { global: g, jobs }.resolve().expect("valid config")
}

fn all_schedulers() -> Vec<SchedulerConfig> {
    SchedulerConfig::NAMES
        .iter()
        .map(|n| SchedulerConfig::by_name(n).expect("known"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn no_request_lost_or_served_twice(
        jobs in prop::collection::vec(job_strategy(), 1..5),
        sched in 0usize..6,
        nvme in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let sched = all_schedulers()[sched].clone();
        let cfg = config(&jobs, sched, if nvme { "nvme" } else { "sata2008" }, seed, 1500);
        let (r, trace) = run_with(&cfg, RunOptions { trace: true, drain: true });
        let mut submitted = HashMap::new();
        let mut dispatched: HashMap<u64, u32> = HashMap::new();
        let mut completed: HashMap<u64, u32> = HashMap::new();
        for ev in &trace {
            match ev {
                TraceEvent::Submit { id, .. } => {
                    prop_assert!(submitted.insert(*id, ()).is_none(), "id {} submitted twice", id);
                }
                TraceEvent::Dispatch { ids, .. } => {
                    for id in ids {
                        prop_assert!(submitted.contains_key(id), "dispatched unknown id {}", id);
                        *dispatched.entry(*id).or_default() += 1;
                    }
                }
                TraceEvent::Complete { ids, .. } => {
                    for id in ids {
                        *completed.entry(*id).or_default() += 1;
                    }
                }
            }
        }
        prop_assert!(!submitted.is_empty());
        for id in submitted.keys() {
            prop_assert_eq!(dispatched.get(id).copied(), Some(1), "id {} dispatch count", id);
            prop_assert_eq!(completed.get(id).copied(), Some(1), "id {} completion count", id);
        }
        prop_assert_eq!(r.submitted, r.completed);
    }

    #[test]
    fn work_conserving_schedulers_never_idle_with_pending_io(
        jobs in prop::collection::vec(job_strategy(), 1..6),
        which in 0usize..4,
        seed in any::<u64>(),
    ) {
        let sched = match which {
            0 => SchedulerConfig::by_name("noop").unwrap(),
            1 => SchedulerConfig::by_name("deadline").unwrap(),
            2 => SchedulerConfig::Cfq(CfqTunables { slice_idle_ms: 0.0, ..CfqTunables::default() }),
            _ => SchedulerConfig::Bfq(BfqTunables { slice_idle_ms: 0.0, ..BfqTunables::default() }),
        };
        let cfg = config(&jobs, sched, "sata2008", seed, 1500);
        let (r, _) = run_with(&cfg, RunOptions { trace: false, drain: true });
        prop_assert!(r.submitted > 0);
        prop_assert_eq!(r.idle_with_pending, 0);
    }

    #[test]
    fn deadline_serves_expired_reads_within_a_bounded_time(
        jobs in prop::collection::vec(job_strategy(), 1..5),
        seed in any::<u64>(),
    ) {
        // A sequential direct reader keeps a request right ahead of the
        // elevator, so without FIFO expiry the random readers could starve.
        let mut jobs = jobs;
        jobs.push(J { rw: "read", bs_kb: 64, direct: true, level: 4, fadvise: false, depth: 1 });
        jobs.push(J { rw: "randread", bs_kb: 64, direct: true, level: 4, fadvise: false, depth: 1 });
        let sched = SchedulerConfig::by_name("deadline").unwrap();
        let cfg = config(&jobs, sched, "sata2008", seed, 3000);
        let (_, trace) = run_with(&cfg, RunOptions { trace: true, drain: true });
        let mut sub = HashMap::new();
        let mut pending_max = 0usize;
        let mut pending = 0usize;
        let mut waits = Vec::new();
        for ev in &trace {
            match ev {
                TraceEvent::Submit { t, id, dir, .. } => {
                    sub.insert(*id, (*t, *dir));
                    pending += 1;
                    pending_max = pending_max.max(pending);
                }
                TraceEvent::Dispatch { t, ids, .. } => {
                    pending -= ids.len();
                    for id in ids {
                        let (s, dir) = sub[id];
                        if dir == Dir::Read {
                            waits.push(t - s);
                        }
                    }
                }
                TraceEvent::Complete { .. } => {}
            }
        }
        // read_expire, then at most one batch of each direction per older
        // request (fifo_batch 16), each request at most ~40 ms on this disk.
        let bound = 500_000_000u64 + (pending_max as u64 + 1) * 2 * 16 * 40_000_000;
        let worst = waits.iter().copied().max().unwrap_or(0);
        prop_assert!(worst <= bound, "read waited {} ns (bound {})", worst, bound);
    }
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let jobs = vec![
        J {
            rw: "randread",
            bs_kb: 64,
            direct: false,
            level: 4,
            fadvise: false,
            depth: 1,
        },
        J {
            rw: "write",
            bs_kb: 64,
            direct: false,
            level: 7,
            fadvise: true,
            depth: 1,
        },
    ];
    let sched = SchedulerConfig::by_name("priority").unwrap();
    let a = run_with(
        &config(&jobs, sched.clone(), "sata2008", 7, 3000),
        RunOptions::default(),
    )
    .0;
    let b = run_with(
        &config(&jobs, sched.clone(), "sata2008", 7, 3000),
        RunOptions::default(),
    )
    .0;
    let c = run_with(
        &config(&jobs, sched, "sata2008", 8, 3000),
        RunOptions::default(),
    )
    .0;
    let ja = serde_json::to_string(&a).unwrap();
    assert_eq!(ja, serde_json::to_string(&b).unwrap());
    assert_ne!(ja, serde_json::to_string(&c).unwrap());
    assert_eq!(a.jobs[0].samples, b.jobs[0].samples);
}
