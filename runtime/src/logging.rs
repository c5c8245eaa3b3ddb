//! Logging as runc does it: `--log <file>` (stderr otherwise) and
//! `--log-format text|json`. The JSON lines carry `level`, `msg` and `time`,
//! the shape containerd's runc client parses to report a runtime's error.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `time="..." level=info msg="..."`
    Text,
    /// `{"level":"info","msg":"...","time":"..."}`
    Json,
}

/// A `--log-format` that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--log-format: unknown format {0:?} (use text or json)")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(UnknownFormat(s.into())),
        }
    }
}

struct RuncLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: Format,
    max: Level,
    /// Only vessel's own events (stderr without --debug): a library's
    /// notes, such as libcgroups' on every controller this host lacks,
    /// are not warnings about the user's container.
    own_only: bool,
}

#[derive(Default)]
struct Message {
    msg: String,
    fields: String,
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level();
        if *level > self.max {
            return;
        }
        if self.own_only && !event.metadata().target().starts_with("vessel") {
            return;
        }
        let mut m = Message::default();
        event.record(&mut m);
        let msg = format!("{}{}", m.msg, m.fields);
        let line = line(self.format, level, &msg);
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One log line in runc's shape (logrus's): `time="..." level=error
/// msg="..."` (the message quoted and escaped) or `{"level":"error",
/// "msg":"...","time":"..."}`.
pub fn line(format: Format, level: &Level, msg: &str) -> String {
    let time = crate::utils::now_rfc3339();
    match format {
        Format::Json => serde_json::json!({
            "level": level_name(level), "msg": msg, "time": time
        })
        .to_string(),
        Format::Text => format!("time={time:?} level={} msg={msg:?}", level_name(level)),
    }
}

/// How a failed command reports its error, as runc 1.1 does, so that tools
/// that grep for `level=error` (or parse the JSON log) find it:
/// - without `--log`, stderr gets the error as a log line in `--log-format`;
/// - with `--log`, the log file gets that line, and stderr a plain line
///   (`vessel: error: <msg>`; runc prints the bare message there).
///
/// With `--debug` and no `--log` the logger already writes to stderr, so the
/// line is written once, by the logger.
pub fn report_error(log: Option<&Path>, format: Format, debug: bool, msg: &str) {
    match log {
        Some(_) => {
            tracing::error!("{msg}");
            eprintln!("vessel: error: {msg}");
        }
        None if debug => tracing::error!("{msg}"),
        None => eprintln!("{}", line(format, &Level::ERROR, msg)),
    }
}

/// Installs the global logger. Without `--log`, only warnings and errors go
/// to stderr (the CLI prints the final error itself).
pub fn init(log: Option<&Path>, format: Format, debug: bool) -> io::Result<()> {
    let own_only = log.is_none() && !debug;
    let (out, max): (Box<dyn Write + Send>, Level) = match log {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("--log {}: {e}", path.display())))?;
            (Box::new(f), if debug { Level::DEBUG } else { Level::INFO })
        }
        None if debug => (Box::new(io::stderr()), Level::DEBUG),
        // Warnings reach stderr as runc's do: a setting vessel ignores (a
        // kernel memory limit, say) must not be ignored silently.
        None => (Box::new(io::stderr()), Level::WARN),
    };
    let layer = RuncLayer {
        out: Mutex::new(out),
        format,
        max,
        own_only,
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}
