//! Memory of `containerd-shim-vessel-v2` per running container, beside
//! containerd's Go runc shim (`containerd-shim-runc-v2`) in the same run.
//!
//! A private containerd (Debian's 1.6) runs N detached `sleep` containers
//! through each shim (one shim per container, as `ctr run` starts them);
//! once all run, each shim's resident set (VmRSS) and proportional set
//! (Pss, shared pages split among the shims mapping them) are read from
//! /proc. Prints a table and one JSON object.
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_OPT_LEVEL=s RUSTFLAGS="-C target-feature=+crt-static" \
//!   cargo build --release -p containerd-shim-vessel --target x86_64-unknown-linux-gnu
//! cargo build --release -p vessel --example rss -p containerd-shim-vessel
//! sudo target/release/examples/rss --containers 8 [--json out.json]
//! ```
//! `--shim` defaults to that static build, else target/release's.

use std::path::PathBuf;
use std::time::Duration;

use vessel_tests::clients::{self, Scratch, IMAGE};
use vessel_tests::shim_client::{ShimContainerd, RUNTIME};

const NS: &str = "vshim-rss";
const LIMIT: Duration = Duration::from_secs(60);

struct Args {
    containers: usize,
    shim: PathBuf,
    vessel: PathBuf,
    json: Option<PathBuf>,
}

fn parse_args() -> Args {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        containers: 8,
        // The static build (see the README) where there is one.
        shim: [
            "target/x86_64-unknown-linux-gnu/release/containerd-shim-vessel-v2",
            "target/release/containerd-shim-vessel-v2",
        ]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join("target/release/containerd-shim-vessel-v2")),
        vessel: root.join("target/release/vessel"),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--containers" => a.containers = val().parse().expect("--containers: a number"),
            "--shim" => a.shim = PathBuf::from(val()),
            "--vessel" => a.vessel = PathBuf::from(val()),
            "--json" => a.json = Some(PathBuf::from(val())),
            _ => {
                panic!("unknown argument {flag:?} (--containers N, --shim P, --vessel P, --json F)")
            }
        }
    }
    a
}

/// (VmRSS KiB, Pss KiB, threads) of `pid`.
fn memory_of(pid: i32) -> (u64, u64, u64) {
    let field = |file: &str, key: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (
        field("status", "VmRSS:"),
        field("smaps_rollup", "Pss:"),
        field("status", "Threads:"),
    )
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

struct Row {
    shim: &'static str,
    rss: Vec<u64>,
    pss: Vec<u64>,
    threads: Vec<u64>,
}

/// `Err` with the record unless the command exited with 0. (The release
/// profile aborts on panic, which would skip the cleanup on drop.)
fn ok(r: clients::Run) -> Result<clients::Run, String> {
    if r.ok() {
        Ok(r)
    } else {
        Err(format!("command failed: {r}"))
    }
}

/// Starts `n` containers with `run_opts`, measures the shims, removes them.
fn measure(
    c: &ShimContainerd,
    name: &'static str,
    run_opts: &[&str],
    n: usize,
) -> Result<Row, String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{name}-{i}")).collect();
    for id in &ids {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(run_opts);
        args.extend([IMAGE, id.as_str(), "sleep", "100000"]);
        ok(c.ctr(NS, &args, LIMIT))?;
    }
    let running = clients::wait_until(Duration::from_secs(30), || {
        let ls = c.ctr(NS, &["task", "ls"], LIMIT).stdout;
        ids.iter().all(|id| {
            ls.lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains("RUNNING"))
        })
    });
    if !running {
        return Err(format!("{name}: not all tasks run"));
    }
    // Let start-up allocations settle.
    std::thread::sleep(Duration::from_secs(2));
    let mut row = Row {
        shim: name,
        rss: Vec::new(),
        pss: Vec::new(),
        threads: Vec::new(),
    };
    for id in &ids {
        let pid = c
            .shim_pid_of(NS, id)
            .ok_or_else(|| format!("{name}: no shim for {id}"))?;
        let (rss, pss, thr) = memory_of(pid);
        row.rss.push(rss);
        row.pss.push(pss);
        row.threads.push(thr);
    }
    for id in &ids {
        let _ = c.ctr(NS, &["task", "kill", "-s", "SIGKILL", id], LIMIT);
    }
    for id in &ids {
        clients::wait_until(Duration::from_secs(10), || {
            c.ctr(NS, &["task", "delete", id], LIMIT).ok()
        });
        ok(c.ctr(NS, &["containers", "rm", id], LIMIT))?;
    }
    Ok(row)
}

fn main() -> std::process::ExitCode {
    let a = parse_args();
    let Some(bins) = clients::require_clients(&["containerd", "ctr"]) else {
        return std::process::ExitCode::from(2);
    };
    for p in [&a.shim, &a.vessel] {
        assert!(
            p.exists(),
            "{} not found: cargo build --release -p containerd-shim-vessel -p vessel",
            p.display()
        );
    }
    // The helpers read these to find the binaries under test.
    std::env::set_var("SHIM_BIN", &a.shim);
    std::env::set_var("VESSEL_BIN", &a.vessel);

    let mut scratch = Scratch::new("shim-rss");
    let runc_root = scratch.join("runc");
    scratch.vessel_root(runc_root.clone());
    scratch.vessel_root(PathBuf::from(vessel_tests::shim_client::SHIM_VESSEL_ROOT).join(NS));
    scratch.cgroup(NS);
    let c = ShimContainerd::start(&bins[0], &bins[1], &scratch.path);
    let archive = clients::busybox_image_archive(&scratch.path);
    let mut rows = Vec::new();
    let mut run = || -> Result<(), String> {
        ok(c.ctr(NS, &["image", "import", archive.to_str().unwrap()], LIMIT))?;
        rows.push(measure(
            &c,
            "vessel",
            &["--runtime", RUNTIME],
            a.containers,
        )?);
        if clients::which("containerd-shim-runc-v2").is_some() {
            let vessel = a.vessel.to_string_lossy().into_owned();
            let root = runc_root.to_string_lossy().into_owned();
            rows.push(measure(
                &c,
                "runc-v2-go",
                &[
                    "--runtime",
                    "io.containerd.runc.v2",
                    "--runc-binary",
                    &vessel,
                    "--runc-root",
                    &root,
                ],
                a.containers,
            )?);
        } else {
            eprintln!("note: containerd-shim-runc-v2 is not installed; no comparison row");
        }
        Ok(())
    };
    let result = run();
    drop(c);
    let _ =
        std::fs::remove_dir(PathBuf::from(vessel_tests::shim_client::SHIM_VESSEL_ROOT).join(NS));
    if let Err(e) = result {
        eprintln!("shim-rss: {e}");
        return std::process::ExitCode::FAILURE;
    }

    println!(
        "{:<14} {:>10} {:>16} {:>12} {:>16} {:>8}",
        "shim", "containers", "median RSS KiB", "RSS min-max", "median PSS KiB", "threads"
    );
    let mut json = Vec::new();
    for r in &mut rows {
        let (rmin, rmax) = (*r.rss.iter().min().unwrap(), *r.rss.iter().max().unwrap());
        let rss = median(&mut r.rss);
        let pss = median(&mut r.pss);
        let thr = median(&mut r.threads);
        println!(
            "{:<14} {:>10} {:>16} {:>12} {:>16} {:>8}",
            r.shim,
            r.rss.len(),
            rss,
            format!("{rmin}-{rmax}"),
            pss,
            thr
        );
        json.push(serde_json::json!({
            "shim": r.shim,
            "containers": r.rss.len(),
            "rss_kib": {"median": rss, "min": rmin, "max": rmax, "all": r.rss},
            "pss_kib": {"median": pss, "all": r.pss},
            "threads": thr,
        }));
    }
    let out = serde_json::json!({
        "benchmark": "shim-rss",
        "goal_rss_kib_max": 4096,
        "results": json,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    if let Some(p) = a.json {
        std::fs::write(&p, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
    }
    std::process::ExitCode::SUCCESS
}
