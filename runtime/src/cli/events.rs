//! `vessel events`

use std::time::Duration;

use super::Cli;

/// `vessel events [--stats] [--interval 5s] <id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the statistics once and exit.
    #[arg(long)]
    stats: bool,
    /// Time between statistics events (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Container id.
    id: String,
}

fn parse_interval(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("--interval {s:?}: use a duration such as 5s or 500ms");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn stats_event(cli: &Cli, id: &str) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(vessel::container::stats(&cli.root, id)?
        .map(|data| serde_json::json!({ "type": "stats", "id": id, "data": data })))
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let interval = parse_interval(&a.interval)?;
    if a.stats {
        match stats_event(cli, &a.id)? {
            Some(ev) => println!("{ev}"),
            None => anyhow::bail!("container {:?} is not running", a.id),
        }
        return Ok(0);
    }
    while let Some(ev) = stats_event(cli, &a.id)? {
        println!("{ev}");
        std::thread::sleep(interval);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn intervals() {
        assert_eq!(super::parse_interval("5s").unwrap().as_secs(), 5);
        assert_eq!(super::parse_interval("250ms").unwrap().as_millis(), 250);
        assert!(super::parse_interval("0s").is_err());
        assert!(super::parse_interval("x").is_err());
    }
}
