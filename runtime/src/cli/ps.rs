//! `vessel ps`

use std::process::Command;

use vessel::container::Container;

use super::Cli;

/// `vessel ps [--format table|json] <id> [ps options]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: table (ps's) or json (pids).
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Container id.
    id: String,
    /// Options passed to ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    if !matches!(a.format.as_str(), "json" | "table") {
        anyhow::bail!(
            "--format: unknown format {:?} (use table or json)",
            a.format
        );
    }
    let c = Container::load(&cli.root, &a.id)?;
    if c.state.vm.is_some() {
        // The processes live in the guest: its vessel lists them.
        print!("{}", vessel::vm::lifecycle::ps(&c, &a.format)?);
        return Ok(0);
    }
    let pids = c.cgroup()?.pids()?;
    drop(c);
    match a.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            return Ok(0);
        }
        "table" => {}
        f => anyhow::bail!("--format: unknown format {f:?} (use table or json)"),
    }
    let args: Vec<String> = if a.ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        a.ps_args.clone()
    };
    let out = match Command::new("ps").args(&args).output() {
        Ok(out) => out,
        // No ps(1) (a VM's initramfs): the pids and their commands.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("PID CMD");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                println!("{pid} {}", cmd.trim_end());
            }
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("ps {}: no PID column in its output", args.join(" ")))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
