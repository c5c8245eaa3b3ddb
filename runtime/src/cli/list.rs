//! `vessel list`

use serde::Serialize;
use vessel::container::{list_ids, Container};

use super::Cli;

/// `vessel list [--format table|json] [--quiet]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: table or json.
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Only the ids.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Serialize)]
struct Entry {
    #[serde(rename = "ociVersion")]
    oci_version: String,
    id: String,
    pid: i32,
    status: String,
    bundle: String,
    rootfs: String,
    created: String,
    owner: String,
    isolation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let mut entries = Vec::new();
    for id in list_ids(&cli.root)? {
        // Read without the lock: a create or delete in progress never
        // blocks the listing. One deleted meanwhile is gone.
        let c = match Container::peek(&cli.root, &id) {
            Ok(c) => c,
            Err(vessel::container::Error::NotFound(_)) => continue,
            Err(e) => {
                warn(&e.to_string());
                continue;
            }
        };
        if let Some(why) = c
            .state
            .problem
            .as_ref()
            .filter(|_| c.state.status != vessel::state::Status::Creating)
        {
            warn(&format!(
                "container {id:?}: {why}; `delete --force {id}` removes it"
            ));
        }
        let status = c.status();
        let s = c.state.oci(status);
        entries.push(Entry {
            oci_version: s.oci_version.into(),
            id: s.id.into(),
            pid: s.pid,
            status: status.to_string(),
            bundle: s.bundle.display().to_string(),
            rootfs: s.rootfs.display().to_string(),
            created: s.created.into(),
            owner: s.owner.into(),
            isolation: s.isolation.to_string(),
            reason: s.reason.map(str::to_string),
        });
    }
    if a.quiet {
        for e in &entries {
            println!("{}", e.id);
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&entries)?),
        "table" => print_table(&entries),
        f => anyhow::bail!("--format: unknown format {f:?} (use table or json)"),
    }
    Ok(0)
}

/// A warning on stderr (list's output stays parseable) and in the log.
fn warn(msg: &str) {
    eprintln!("vessel: warning: {msg}");
    tracing::warn!("{msg}");
}

fn print_table(entries: &[Entry]) {
    let mut rows = vec![[
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
        "MODE".into(),
    ]];
    for e in entries {
        rows.push([
            e.id.clone(),
            e.pid.to_string(),
            e.status.clone(),
            e.bundle.clone(),
            e.created.clone(),
            e.owner.clone(),
            e.isolation.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}
