//! `ps` of a container-mode container: ps(1)'s lines of the processes in
//! its cgroup, or their pids as JSON.

use std::fmt::Write;
use std::process::Command;

/// Renders `pids` as `format` (`json`, or `table`: `ps args`, default
/// `-ef`, filtered to them).
pub(super) fn render(pids: &[i32], format: &str, args: &[String]) -> Result<String, String> {
    let mut out = String::new();
    match format {
        "json" => {
            let json = serde_json::to_string(pids).map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{json}");
            return Ok(out);
        }
        "table" => {}
        f => return Err(format!("--format: unknown format {f:?} (use table or json)")),
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
        Err(e) => return Err(format!("ps {}: {e}", args.join(" "))),
    };
    if !ps.status.success() {
        return Err(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&ps.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&ps.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| format!("ps {}: no PID column in its output", args.join(" ")))?;
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
