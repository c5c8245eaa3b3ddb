//! Time and size units and their parsing ("64k", "10g", "6ms").

use crate::{Error, Result};

/// Simulated time in nanoseconds.
pub type Time = u64;

/// One microsecond in [`Time`] units.
pub const US: Time = 1_000;
/// One millisecond in [`Time`] units.
pub const MS: Time = 1_000_000;
/// One second in [`Time`] units.
pub const SEC: Time = 1_000_000_000;
/// Bytes per sector; all LBAs are in 512-byte sectors.
pub const SECTOR: u64 = 512;

/// Converts milliseconds (fractional) to [`Time`].
pub fn ms(v: f64) -> Time {
    (v * MS as f64).round().max(0.0) as Time
}

/// Converts a [`Time`] to fractional milliseconds.
pub fn to_ms(t: Time) -> f64 {
    t as f64 / MS as f64
}

/// Parses a byte size such as `4096`, `64k`, `1m`, `10g` (binary multiples).
pub fn parse_size(field: &str, s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| Error::invalid(field, format!("`{s}` is not a size like 64k or 10g")))?;
    if v.is_nan() || v < 0.0 {
        return Err(Error::invalid(field, format!("`{s}` is negative")));
    }
    Ok((v * mult as f64).round() as u64)
}

/// Parses a duration such as `6ms`, `250us`, `30s`, `2m` (minutes); a bare number is seconds.
pub fn parse_duration(field: &str, s: &str) -> Result<Time> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("ns") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, US as f64)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, MS as f64)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, SEC as f64)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0 * SEC as f64)
    } else {
        (t.as_str(), SEC as f64)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| Error::invalid(field, format!("`{s}` is not a duration like 6ms or 30s")))?;
    if v.is_nan() || v < 0.0 {
        return Err(Error::invalid(field, format!("`{s}` is negative")));
    }
    Ok((v * mult).round() as Time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("bs", "64k").unwrap(), 65536);
        assert_eq!(parse_size("bs", "1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("bs", "10g").unwrap(), 10 << 30);
        assert_eq!(parse_size("bs", "512").unwrap(), 512);
        assert!(parse_size("bs", "lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("t", "6ms").unwrap(), 6 * MS);
        assert_eq!(parse_duration("t", "30").unwrap(), 30 * SEC);
        assert_eq!(parse_duration("t", "250us").unwrap(), 250 * US);
        assert!(parse_duration("t", "-1s").is_err());
    }
}
