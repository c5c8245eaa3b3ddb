//! Reading hyperfine's `--export-json` files.

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

/// One benchmarked command in a hyperfine export (times in seconds).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HfResult {
    /// The command line, or the `--command-name` given.
    pub command: String,
    /// Mean wall time.
    pub mean: f64,
    /// Standard deviation of the wall time (absent with one run).
    #[serde(default)]
    pub stddev: Option<f64>,
    /// Median wall time.
    pub median: f64,
    /// Mean user CPU time of the command's process tree.
    pub user: f64,
    /// Mean system CPU time of the command's process tree.
    pub system: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Wall time of every run, in order.
    pub times: Vec<f64>,
    /// Exit status of every run (absent in old hyperfine versions).
    #[serde(default)]
    pub exit_codes: Vec<Option<i32>>,
}

#[derive(Deserialize)]
struct Export {
    results: Vec<HfResult>,
}

/// Parses an export and returns its results.
pub fn parse(text: &str) -> Result<Vec<HfResult>> {
    let e: Export = serde_json::from_str(text).context("parsing hyperfine JSON")?;
    if e.results.is_empty() {
        return Err(anyhow!("hyperfine JSON has no results"));
    }
    Ok(e.results)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
  "results": [
    {
      "command": "crun",
      "mean": 0.0258,
      "stddev": 0.008,
      "median": 0.024,
      "user": 0.002,
      "system": 0.004,
      "min": 0.016,
      "max": 0.051,
      "times": [0.016, 0.024, 0.051],
      "exit_codes": [0, 0, 0]
    }
  ]
}"#;

    #[test]
    fn parses_export() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, "crun");
        assert_eq!(r[0].times, vec![0.016, 0.024, 0.051]);
        assert_eq!(r[0].exit_codes, vec![Some(0), Some(0), Some(0)]);
        assert_eq!(r[0].stddev, Some(0.008));
    }

    #[test]
    fn tolerates_missing_optional_fields_and_extra_ones() {
        let t = r#"{"results":[{"command":"x","mean":1,"median":1,"user":0,"system":0,
            "min":1,"max":1,"times":[1],"parameters":{"id":"3"}}]}"#;
        let r = parse(t).unwrap();
        assert_eq!(r[0].stddev, None);
        assert!(r[0].exit_codes.is_empty());
    }

    #[test]
    fn rejects_empty_and_malformed() {
        assert!(parse(r#"{"results":[]}"#).is_err());
        assert!(parse("not json").is_err());
    }
}
