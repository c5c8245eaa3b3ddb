//! The counts of one runtime (a column per phase and kind) and how they
//! are printed and written.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::{Kind, Runtime, EXAMPLES, STEPS};
use crate::table::Table;

/// Counts of one column of a runtime's table (the lifecycles, or the
/// injections of one kind).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Lifecycles run, or commands killed at a random delay.
    pub runs: u64,
    /// Injections: the command was still running when SIGKILL came.
    pub killed: u64,
    /// Injections: the command had exited before the delay ran out.
    pub finished_first: u64,
    /// Lifecycles: failures by step; injections: `setup` (the container
    /// to delete could not be made).
    pub failures: BTreeMap<String, u64>,
    /// Injections: what `state` said after the kill (`reported`,
    /// `not_found`, `error`).
    pub state_after_kill: BTreeMap<String, u64>,
    /// `delete --force` exited non-zero, other than "does not exist".
    pub force_delete_failed: u64,
    /// Ids `state` or `list` still reported after the delete.
    pub still_reported: u64,
    /// `<root>/<id>` directories left.
    pub leaked_state_dirs: u64,
    /// Cgroup directories left (all hierarchies, nested ones included).
    pub leaked_cgroup_dirs: u64,
    /// Host mountinfo lines naming an id or the bundle.
    pub leaked_mounts: u64,
    /// Processes naming an id (cmdline, cgroup, cwd, open files).
    pub leaked_processes: u64,
    /// Other files named after an id.
    pub leaked_files: u64,
    /// Ids with anything of the above left: containers `delete --force`
    /// could not fully remove.
    pub containers_left: u64,
    /// Items the benchmark's own clean-up could not remove either.
    pub left_after_cleanup: u64,
    /// Error first lines ("command: message") with their counts.
    pub errors: BTreeMap<String, u64>,
    /// A few leaked items of each kind, as found.
    pub examples: BTreeMap<String, Vec<String>>,
}

impl Tally {
    pub(super) fn lifecycles() -> Tally {
        let mut t = Tally::default();
        for s in STEPS {
            t.failures.insert(s.to_string(), 0);
        }
        t
    }

    pub(super) fn injections() -> Tally {
        let mut t = Tally::default();
        t.failures.insert("setup".into(), 0);
        for s in ["reported", "not_found", "error"] {
            t.state_after_kill.insert(s.into(), 0);
        }
        t
    }

    pub(super) fn error(&mut self, what: &str, line: String) {
        *self.errors.entry(format!("{what}: {line}")).or_default() += 1;
    }

    pub(super) fn fail(&mut self, step: &str) {
        *self.failures.entry(step.to_string()).or_default() += 1;
    }

    pub(super) fn example(&mut self, kind: &str, items: impl IntoIterator<Item = String>) {
        let v = self.examples.entry(kind.to_string()).or_default();
        for i in items {
            if v.len() < EXAMPLES {
                v.push(i);
            }
        }
    }
}

/// One runtime's results.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Results {
    pub(super) lifecycles: Tally,
    pub(super) kills: BTreeMap<&'static str, Tally>,
    /// Per kind: the unkilled durations (ms) and the delay range drawn from.
    pub(super) calibration: BTreeMap<&'static str, Value>,
}

/// The tables and JSON of every runtime.
pub(super) struct Report<'a> {
    pub(super) rts: &'a [Runtime],
    pub(super) results: &'a [Results],
}

impl Report<'_> {
    pub(super) fn tables(&self) -> String {
        let mut s = String::new();
        for (rt, r) in self.rts.iter().zip(self.results) {
            s.push_str(&format!("\n{} ({})\n", rt.name, rt.version));
            s.push_str(&table(r).render());
            let mut errors: Vec<(String, u64)> = Vec::new();
            errors.extend(
                r.lifecycles
                    .errors
                    .iter()
                    .map(|(e, n)| (format!("lifecycles: {e}"), *n)),
            );
            for (k, t) in &r.kills {
                errors.extend(t.errors.iter().map(|(e, n)| (format!("kill {k}: {e}"), *n)));
            }
            if !errors.is_empty() {
                s.push_str("errors (first line, count):\n");
                for (e, n) in errors {
                    s.push_str(&format!("  {n:>4}  {e}\n"));
                }
            }
        }
        s
    }

    pub(super) fn json(&self) -> Value {
        self.rts
            .iter()
            .zip(self.results)
            .map(|(rt, r)| {
                json!({
                    "name": rt.name,
                    "path": rt.path,
                    "version": rt.version,
                    "lifecycles": r.lifecycles,
                    "kills": r.kills,
                    "calibration": r.calibration,
                })
            })
            .collect()
    }
}

/// One runtime's table: rows are outcomes, failures and leaks; columns the
/// lifecycles and the three kinds of kill injection.
pub(super) fn table(r: &Results) -> Table {
    let mut header = vec!["".to_string(), "lifecycles".to_string()];
    header.extend(Kind::ALL.iter().map(|k| format!("kill {}", k.name())));
    let mut t = Table::new(&header);
    let cols: Vec<&Tally> = std::iter::once(&r.lifecycles)
        .chain(Kind::ALL.iter().filter_map(|k| r.kills.get(k.name())))
        .collect();
    let dash = || "-".to_string();
    let mut row = |label: &str, f: &dyn Fn(usize, &Tally) -> Option<u64>| {
        let mut cells = vec![label.to_string()];
        cells.extend(
            cols.iter()
                .enumerate()
                .map(|(c, x)| f(c, x).map_or_else(dash, |v| v.to_string())),
        );
        t.row(cells);
    };
    let kill = |v: fn(&Tally) -> u64| move |c: usize, x: &Tally| (c > 0).then(|| v(x));
    let all = |v: fn(&Tally) -> u64| move |_: usize, x: &Tally| Some(v(x));
    row("runs", &all(|x| x.runs));
    row("killed mid-command", &kill(|x| x.killed));
    row("finished before the kill", &kill(|x| x.finished_first));
    for s in STEPS {
        row(&format!("failed: {s}"), &move |c: usize, x: &Tally| {
            (c == 0).then(|| x.failures.get(s).copied().unwrap_or(0))
        });
    }
    row(
        "setup failed",
        &kill(|x| x.failures.get("setup").copied().unwrap_or(0)),
    );
    for (label, key) in [
        ("state after kill: reported", "reported"),
        ("state after kill: not found", "not_found"),
        ("state after kill: other error", "error"),
    ] {
        row(label, &move |c: usize, x: &Tally| {
            (c > 0).then(|| x.state_after_kill.get(key).copied().unwrap_or(0))
        });
    }
    row("delete --force failed", &kill(|x| x.force_delete_failed));
    row("still reported after delete", &all(|x| x.still_reported));
    row("leaked state dirs", &all(|x| x.leaked_state_dirs));
    row("leaked cgroup dirs", &all(|x| x.leaked_cgroup_dirs));
    row("leaked mounts", &all(|x| x.leaked_mounts));
    row("leaked processes", &all(|x| x.leaked_processes));
    row("leaked files", &all(|x| x.leaked_files));
    row("containers left behind", &all(|x| x.containers_left));
    row(
        "left after the bench's clean-up",
        &all(|x| x.left_after_cleanup),
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_outcome() {
        let mut r = Results {
            lifecycles: Tally::lifecycles(),
            kills: Kind::ALL
                .iter()
                .map(|k| (k.name(), Tally::injections()))
                .collect(),
            calibration: BTreeMap::new(),
        };
        r.lifecycles.runs = 50;
        r.lifecycles.fail("start");
        let t = r.kills.get_mut("create").unwrap();
        t.runs = 30;
        t.leaked_cgroup_dirs = 9;
        let text = table(&r).render();
        assert!(text.contains("kill create"), "{text}");
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in\n{text}"))
                .split_whitespace()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("runs"), ["0", "0", "30", "50"]);
        assert_eq!(line("failed: start"), ["-", "-", "-", "1"]);
        assert_eq!(line("leaked cgroup dirs"), ["0", "0", "9", "0"]);
    }
}
