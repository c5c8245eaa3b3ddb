//! `ps` of a container-mode container: ps(1)'s lines of the processes in
//! its cgroup, or their pids as JSON.

use std::fmt::Write;
use std::process::Command;

/// Why `ps` could not list the container's processes.
#[derive(Debug, thiserror::Error)]
pub enum PsError {
    /// Neither `table` nor `json`.
    #[error("--format: unknown format {0:?} (use table or json)")]
    Format(String),
    /// ps(1) could not run.
    #[error("ps {args}: {source}")]
    Run {
        /// Its arguments.
        args: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ps(1) failed.
    #[error("ps {args}: {stderr}")]
    Failed {
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// ps(1)'s output has no PID column to filter on.
    #[error("ps {args}: no PID column in its output")]
    NoPidColumn {
        /// Its arguments.
        args: String,
    },
}

/// Renders `pids` as `format` (`json`, or `table`: `ps args`, default
/// `-ef`, filtered to them).
pub(super) fn render(pids: &[i32], format: &str, args: &[String]) -> Result<String, PsError> {
    let mut out = String::new();
    match format {
        "json" => {
            // Integers always serialize.
            let json = serde_json::to_string(pids).unwrap_or_default();
            let _ = writeln!(out, "{json}");
            return Ok(out);
        }
        "table" => {}
        f => return Err(PsError::Format(f.into())),
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let ps = match Command::new("ps").args(&args).output() {
        Ok(ps) => ps,
        // No ps(1) (a VM's initramfs): the pids and their commands.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = writeln!(out, "PID CMD");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                let _ = writeln!(out, "{pid} {}", cmd.trim_end());
            }
            return Ok(out);
        }
        Err(source) => {
            return Err(PsError::Run {
                args: args.join(" "),
                source,
            })
        }
    };
    if !ps.status.success() {
        return Err(PsError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&ps.stderr).trim().into(),
        });
    }
    let text = String::from_utf8_lossy(&ps.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| PsError::NoPidColumn {
            args: args.join(" "),
        })?;
    let _ = writeln!(out, "{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(out)
}
