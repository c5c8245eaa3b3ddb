//! Small helpers shared by the runtime: id validation, atomic writes,
//! process liveness and time stamps.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a container id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The empty id.
    #[error("container id must not be empty")]
    Empty,
    /// `.` or `..`.
    #[error("invalid container id {0:?}")]
    Dots(String),
    /// A character outside `[A-Za-z0-9_+.-]`.
    #[error("invalid container id {id:?}: character {c:?} is not allowed (use [A-Za-z0-9_+.-])")]
    Character {
        /// The id.
        id: String,
        /// The first character refused.
        c: char,
    },
    /// More than 1024 bytes.
    #[error("invalid container id {0:?}: longer than 1024 bytes")]
    TooLong(String),
}

/// Checks a container id the way runc does: not empty, no path separators,
/// not `.` or `..`, only `[A-Za-z0-9_+.-]`.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id == "." || id == ".." {
        return Err(IdError::Dots(id.into()));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(IdError::Character { id: id.into(), c });
    }
    if id.len() > 1024 {
        return Err(IdError::TooLong(id.into()));
    }
    Ok(())
}

/// Writes `data` to `path` atomically: a temporary file in the same directory,
/// then rename, so a reader never sees a partial file.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The start time of `pid` (field 22 of /proc/<pid>/stat, in clock ticks)
/// and whether it is a zombie. `None` if the process does not exist.
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Whether the process `pid` that started at `start_time` still runs (a
/// zombie or a recycled pid counts as gone).
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_start_time(pid) {
        Some((t, zombie)) => t == start_time && !zombie,
        None => false,
    }
}

/// Now, in RFC 3339 with nanoseconds, as runc writes `created`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional suffix.
    #[error("invalid size {0:?}")]
    NotANumber(String),
    /// Below zero (other than `-1`).
    #[error("invalid size {0:?}: negative")]
    Negative(String),
}

/// Parses a size with an optional binary suffix (`512m`, `1G`, `4096`), as
/// runc's update flags accept. `-1` means unlimited.
pub fn parse_size(s: &str) -> Result<i64, SizeError> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let lower = lower.strip_suffix('i').unwrap_or(lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| SizeError::NotANumber(s.into()))?;
    if n < 0.0 {
        return Err(SizeError::Negative(s.into()));
    }
    Ok((n * mult as f64) as i64)
}

/// Nanoseconds since the epoch, for unique file names.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The user name of the caller, as runc's `list` shows it.
pub fn owner_name() -> String {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return "root".into();
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        let (t, zombie) = proc_start_time(me).unwrap();
        assert!(!zombie);
        assert!(process_alive(me, t));
        assert!(!process_alive(me, t + 1));
    }
}
