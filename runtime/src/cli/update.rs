//! `vessel update`

use std::io::Read;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};
use vessel::utils::parse_size;

use super::Cli;

/// `vessel update [--resources file] [flags] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON file (or - for stdin) with an OCI `linux.resources` object.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// CPU CFS period (µs).
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU CFS quota (µs, -1 for none).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU shares.
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// Realtime period (µs).
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// Realtime runtime (µs).
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit (e.g. 512m, -1 for none).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Maximum number of pids (-1 for none).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Kernel memory limit (refused: deprecated by the kernel).
    #[arg(long = "kernel-memory", hide = true)]
    kernel_memory: Option<String>,
    /// Intel RDT L3 schema (refused: set at create only).
    #[arg(long = "l3-cache-schema", hide = true)]
    l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (refused: set at create only).
    #[arg(long = "mem-bw-schema", hide = true)]
    mem_bw_schema: Option<String>,
    /// Container id.
    id: String,
}

fn section<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let obj = v.as_object_mut().expect("resources is an object");
    obj.entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("section is an object")
}

fn size(flag: &str, s: &str) -> anyhow::Result<i64> {
    parse_size(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

/// The resources to apply: the file's, overridden by the flags.
fn resources(a: &Args) -> anyhow::Result<LinuxResources> {
    if a.kernel_memory.is_some() {
        anyhow::bail!(
            "--kernel-memory: kernel memory limits are not supported (deprecated by Linux)"
        );
    }
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        anyhow::bail!(
            "--l3-cache-schema/--mem-bw-schema: vessel sets Intel RDT at create only (linux.intelRdt)"
        );
    }
    let mut v: Value = match &a.resources {
        Some(p) => {
            let mut data = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(p)
                    .map_err(|e| anyhow::anyhow!("--resources {}: {e}", p.display()))?;
            }
            serde_json::from_slice(&data)
                .map_err(|e| anyhow::anyhow!("--resources {}: {e}", p.display()))?
        }
        None => json!({}),
    };
    if !v.is_object() {
        anyhow::bail!("--resources: expected a JSON object");
    }
    if let Some(w) = a.blkio_weight {
        section(&mut v, "blockIO").insert("weight".into(), json!(w));
    }
    let cpu = [
        ("period", a.cpu_period.map(|x| json!(x))),
        ("quota", a.cpu_quota.map(|x| json!(x))),
        ("shares", a.cpu_share.map(|x| json!(x))),
        ("realtimePeriod", a.cpu_rt_period.map(|x| json!(x))),
        ("realtimeRuntime", a.cpu_rt_runtime.map(|x| json!(x))),
        ("cpus", a.cpuset_cpus.as_ref().map(|x| json!(x))),
        ("mems", a.cpuset_mems.as_ref().map(|x| json!(x))),
    ];
    for (k, val) in cpu {
        if let Some(val) = val {
            section(&mut v, "cpu").insert(k.into(), val);
        }
    }
    let mem = [
        ("limit", "memory", &a.memory),
        ("reservation", "memory-reservation", &a.memory_reservation),
        ("swap", "memory-swap", &a.memory_swap),
    ];
    for (k, flag, val) in mem {
        if let Some(s) = val {
            let n = size(flag, s)?;
            section(&mut v, "memory").insert(k.into(), json!(n));
        }
    }
    if let Some(p) = a.pids_limit {
        section(&mut v, "pids").insert("limit".into(), json!(p));
    }
    let de = v.clone();
    serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("resources: field {}: {}", e.path(), e.inner()))
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    // `apply` checks every value against the host before writing anything.
    let res = resources(a)?;
    vessel::container::update(&cli.root, &a.id, &res)?;
    Ok(0)
}
