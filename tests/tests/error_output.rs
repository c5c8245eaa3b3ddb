//! A failing command prints its error as runc 1.1 does, so that tools that
//! grep for `level=error` or parse the JSON log find it: without `--log`,
//! one log line on stderr in `--log-format` (text or json); with `--log`,
//! the line goes to the file and stderr gets a plain line saying "error".
//! vessel's own message is the line's `msg`. runc, installed here, is held
//! to the same checks, so the shape is runc's and not only ours.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vessel_tests::harness::{output_via_files, stderr, stdout};

/// The runtimes under test: vessel always, runc where it is installed (the
/// project's machines have it; elsewhere the reason is printed).
fn runtimes() -> Vec<PathBuf> {
    let mut v = vec![vessel_tests::vessel_bin()];
    match ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    {
        Some(r) => v.push(r),
        None => eprintln!("runc is not installed: checking vessel only"),
    }
    v
}

fn run(bin: &Path, root: &Path, global: &[&str], args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.arg("--root").arg(root).args(global).args(args);
    output_via_files(&mut c)
}

/// Parses a text log line `time="..." level=error msg="..."` into its
/// level and (unescaped) message.
fn parse_text(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("time=\"")?;
    let (_, rest) = rest.split_once("\" level=")?;
    let (level, rest) = rest.split_once(" msg=")?;
    // The message is a quoted string with Go/Rust escapes; JSON reads both
    // for what vessel's messages contain.
    let msg: String = serde_json::from_str(rest.split(" func=").next()?).ok()?;
    Some((level.to_string(), msg))
}

fn parse_json(line: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(line).ok()?;
    assert!(v["time"].is_string(), "no time: {line}");
    Some((v["level"].as_str()?.into(), v["msg"].as_str()?.into()))
}

/// Failing commands and a word their message must contain.
const FAILING: &[(&[&str], &str)] = &[
    (&["state", "nosuch-ctr"], "nosuch-ctr"),
    (&["kill", "nosuch-ctr", "KILL"], "nosuch-ctr"),
    (&["start", "nosuch-ctr"], "nosuch-ctr"),
    (&["delete", "nosuch-ctr"], "nosuch-ctr"),
    (&["exec", "nosuch-ctr", "true"], "nosuch-ctr"),
];

/// runc exits 255 when `exec` fails before the process runs, 1 otherwise;
/// vessel exits 1.
fn exit_code(bin: &Path, args: &[&str]) -> i32 {
    if !is_vessel(bin) && args[0] == "exec" {
        255
    } else {
        1
    }
}

fn is_vessel(bin: &Path) -> bool {
    bin == vessel_tests::vessel_bin()
}

#[test]
fn error_is_a_log_line_on_stderr_without_log() {
    let root = tempfile::tempdir().unwrap();
    for bin in runtimes() {
        for (args, word) in FAILING {
            for (fmt, parse) in [
                ("text", parse_text as fn(&str) -> Option<(String, String)>),
                ("json", parse_json),
            ] {
                let o = run(&bin, root.path(), &["--log-format", fmt], args);
                let what = format!("{} {fmt} {args:?}", bin.display());
                assert_eq!(
                    o.status.code(),
                    Some(exit_code(&bin, args)),
                    "{what}: {o:?}"
                );
                assert_eq!(stdout(&o), "", "{what}");
                let err = stderr(&o);
                let lines: Vec<&str> = err.lines().collect();
                assert_eq!(lines.len(), 1, "{what}: one line expected: {err}");
                let (level, msg) =
                    parse(lines[0]).unwrap_or_else(|| panic!("{what}: not a log line: {err}"));
                assert_eq!(level, "error", "{what}");
                // runc says only "container does not exist"; vessel names it.
                if is_vessel(&bin) {
                    assert!(msg.contains(word), "{what}: {msg}");
                }
                assert!(!msg.is_empty(), "{what}");
            }
        }
    }
}

#[test]
fn error_goes_to_the_log_file_and_says_error_on_stderr() {
    let root = tempfile::tempdir().unwrap();
    for bin in runtimes() {
        for (args, word) in FAILING {
            for (fmt, parse) in [
                ("text", parse_text as fn(&str) -> Option<(String, String)>),
                ("json", parse_json),
            ] {
                let dir = tempfile::tempdir().unwrap();
                let log = dir.path().join("log");
                let log_s = log.to_str().unwrap();
                let o = run(
                    &bin,
                    root.path(),
                    &["--log", log_s, "--log-format", fmt],
                    args,
                );
                let what = format!("{} {fmt} {args:?}", bin.display());
                assert_eq!(
                    o.status.code(),
                    Some(exit_code(&bin, args)),
                    "{what}: {o:?}"
                );
                let text = std::fs::read_to_string(&log).unwrap();
                let errors: Vec<(String, String)> = text
                    .lines()
                    .filter_map(parse)
                    .filter(|(l, _)| l == "error")
                    .collect();
                assert_eq!(errors.len(), 1, "{what}: log: {text}");
                let err = stderr(&o);
                assert!(!err.trim().is_empty(), "{what}: nothing on stderr");
                if is_vessel(&bin) {
                    assert!(errors[0].1.contains(word), "{what}: {text}");
                    // runc prints the bare message; vessel adds "error".
                    assert!(err.contains("error"), "{what}: {err}");
                    assert!(err.contains(&errors[0].1), "{what}: {err}");
                }
            }
        }
    }
}

#[test]
fn a_bad_log_format_is_an_error_line() {
    let root = tempfile::tempdir().unwrap();
    let o = run(
        &vessel_tests::vessel_bin(),
        root.path(),
        &["--log-format", "xml"],
        &["state", "x"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let (level, msg) = parse_text(err.trim()).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(level, "error");
    assert!(msg.contains("--log-format") && msg.contains("xml"), "{msg}");
}
