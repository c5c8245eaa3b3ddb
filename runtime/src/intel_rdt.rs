//! `linux.intelRdt` on the kernel's resctrl filesystem (Intel RDT, AMD
//! PQoS): the container's processes go into a control group named by
//! `closID` (or the container id), whose `schemata` file receives the
//! requested cache and memory-bandwidth allocation, and optionally into a
//! monitoring group of their own under its `mon_groups`.
//!
//! The spec: with `intelRdt` set and no resctrl mounted, the runtime must
//! fail (runc 1.1.5 ignores `closID` alone there; vessel fails for any
//! `intelRdt`). A group vessel creates is recorded in the ledger first and
//! removed at delete; a group that existed before (pre-configured by the
//! host's administrator) is joined and left alone, and its schemata must
//! match the requested one.
//!
//! Every path is under a [`Resctrl`] root, a parameter, so the logic is
//! tested against a directory laid out like resctrl.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIntelRdt;

/// Where resctrl is mounted by convention.
pub const DEFAULT_ROOT: &str = "/sys/fs/resctrl";

/// Names at resctrl's root that are not control groups.
const RESERVED: &[&str] = &[
    "info",
    "mon_groups",
    "mon_data",
    "tasks",
    "schemata",
    "cpus",
];

/// A `linux.intelRdt` that cannot be applied, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct RdtError {
    /// `linux.intelRdt` or one of its fields.
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

/// The message when the ledger could not record a directory about to be made.
fn not_recorded(dir: &Path, e: &std::io::Error) -> String {
    format!("recording {} in the ledger: {e}", dir.display())
}

fn rdt_err(field: &str, msg: impl Into<String>) -> RdtError {
    RdtError {
        field: format!("linux.intelRdt{field}"),
        msg: msg.into(),
    }
}

/// What a container asks of resctrl, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The control group's directory name: `closID`, or the container id.
    pub group: String,
    /// Whether `closID` named it (a group other containers may share, or one
    /// the administrator made), rather than the container id.
    pub by_clos_id: bool,
    /// Lines for the group's `schemata` file, in the order they are written
    /// (`l3CacheSchema`, `memBwSchema`, then `schemata`); empty: none.
    pub schemata: Vec<String>,
    /// A monitoring group for the container (`enableMonitoring`, or the
    /// older `enableCMT`/`enableMBM`).
    pub monitoring: bool,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && !RESERVED.contains(&n)
        && !n
            .chars()
            .any(|c| c == '/' || c == '\0' || c.is_whitespace())
}

/// Checks `rdt` for container `id` and says what to do with resctrl.
pub fn request(rdt: &LinuxIntelRdt, id: &str) -> Result<Request, RdtError> {
    let (group, by_clos_id) = match rdt.clos_id() {
        Some(c) => {
            if !valid_name(c) {
                return Err(rdt_err(
                    ".closID",
                    format!("{c:?} is not a resctrl group name (one path component, not a reserved name such as info or mon_groups)"),
                ));
            }
            (c.clone(), true)
        }
        None => {
            if !valid_name(id) {
                return Err(rdt_err(
                    "",
                    format!("the container id {id:?} cannot name a resctrl group; set closID"),
                ));
            }
            (id.to_string(), false)
        }
    };
    let mut schemata = Vec::new();
    let mb = rdt.mem_bw_schema().as_deref();
    if let Some(mb) = mb {
        if !mb.starts_with("MB:") || mb.contains('\n') {
            return Err(rdt_err(
                ".memBwSchema",
                format!("{mb:?} must be one line starting with \"MB:\""),
            ));
        }
    }
    if let Some(l3) = rdt.l3_cache_schema() {
        for line in l3.lines().map(str::trim).filter(|l| !l.is_empty()) {
            check_line(".l3CacheSchema", line)?;
            // The spec: memBwSchema's line replaces an MB: line of l3CacheSchema.
            if mb.is_some() && line.starts_with("MB:") {
                continue;
            }
            schemata.push(line.to_string());
        }
    }
    if let Some(mb) = mb {
        check_line(".memBwSchema", mb)?;
        schemata.push(mb.to_string());
    }
    for (i, line) in rdt.schemata().iter().flatten().enumerate() {
        let line = line.trim();
        if line.contains('\n') {
            return Err(rdt_err(
                &format!(".schemata[{i}]"),
                "each entry is one line of the schemata file",
            ));
        }
        if line.is_empty() {
            continue;
        }
        check_line(&format!(".schemata[{i}]"), line)?;
        schemata.push(line.to_string());
    }
    #[allow(deprecated)]
    let monitoring = rdt.enable_monitoring().unwrap_or(false)
        || rdt.enable_cmt().unwrap_or(false)
        || rdt.enable_mbm().unwrap_or(false);
    Ok(Request {
        group,
        by_clos_id,
        schemata,
        monitoring,
    })
}

/// A schemata line is `RESOURCE:domain=value;domain=value...`.
fn check_line(field: &str, line: &str) -> Result<(), RdtError> {
    let ok = parse_line(line).is_some_and(|(_, doms)| !doms.is_empty());
    if ok {
        Ok(())
    } else {
        Err(rdt_err(
            field,
            format!("{line:?} is not a schemata line (RESOURCE:id=value;id=value)"),
        ))
    }
}

/// `(resource, [(domain, value)])` of a schemata line.
fn parse_line(line: &str) -> Option<(String, Vec<(String, String)>)> {
    let (res, rest) = line.trim().split_once(':')?;
    let res = res.trim();
    if res.is_empty() || res.contains(char::is_whitespace) {
        return None;
    }
    let mut doms = Vec::new();
    for part in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (d, v) = part.split_once('=')?;
        let (d, v) = (d.trim(), v.trim());
        if d.is_empty() || v.is_empty() {
            return None;
        }
        doms.push((d.to_string(), v.to_string()));
    }
    Some((res.to_string(), doms))
}

/// A value as resctrl prints it back: masks lose leading zeros and case.
fn normalize(v: &str) -> String {
    let v = v.trim().to_ascii_lowercase();
    let t = v.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// The first requested line (domain) that `current` (a schemata file's
/// text) does not hold, if any.
fn mismatch(current: &str, wanted: &[String]) -> Option<String> {
    let have: Vec<(String, Vec<(String, String)>)> =
        current.lines().filter_map(parse_line).collect();
    for line in wanted {
        let (res, doms) = parse_line(line)?;
        let Some((_, cur)) = have.iter().find(|(r, _)| *r == res) else {
            return Some(format!("{res} is not in the group's schemata"));
        };
        for (d, v) in doms {
            match cur.iter().find(|(cd, _)| *cd == d) {
                Some((_, cv)) if normalize(cv) == normalize(&v) => {}
                Some((_, cv)) => return Some(format!("{res}:{d} is {cv}, not {v}")),
                None => return Some(format!("{res} has no domain {d}")),
            }
        }
    }
    None
}

/// A directory vessel made under resctrl, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The group's directory.
    pub path: PathBuf,
    /// A control group named by `closID` (others may join it): removed at
    /// delete only once no task is left in it.
    pub shared: bool,
}

/// The spec's names of the monitoring flags and oci-spec's (which reads
/// only its camel-case spelling and would drop the spec's silently).
const RENAMED_KEYS: &[(&str, &str)] = &[("enableCMT", "enableCmt"), ("enableMBM", "enableMbm")];

/// Whether a config's text may spell a key of `intelRdt` as the spec does.
pub fn may_need_normalizing(data: &[u8]) -> bool {
    RENAMED_KEYS
        .iter()
        .any(|(spec, _)| data.windows(spec.len()).any(|w| w == spec.as_bytes()))
}

/// Renames the spec's `intelRdt` keys in a `linux` object into oci-spec's;
/// returns whether any changed.
pub fn normalize_keys(linux: &mut serde_json::Value) -> bool {
    let Some(rdt) = linux.get_mut("intelRdt").and_then(|r| r.as_object_mut()) else {
        return false;
    };
    let mut changed = false;
    for (spec, ours) in RENAMED_KEYS {
        if let Some(v) = rdt.remove(*spec) {
            rdt.insert((*ours).into(), v);
            changed = true;
        }
    }
    changed
}

/// A mounted resctrl filesystem.
#[derive(Debug, Clone)]
pub struct Resctrl {
    root: PathBuf,
}

impl Resctrl {
    /// resctrl laid out at `root` (tests use a plain directory).
    pub fn at(root: impl Into<PathBuf>) -> Resctrl {
        Resctrl { root: root.into() }
    }

    /// The resctrl mount of this mount namespace, from /proc/self/mountinfo.
    pub fn mounted() -> Result<Resctrl, RdtError> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| rdt_err("", format!("reading /proc/self/mountinfo: {e}")))?;
        mount_point(&info).map(Resctrl::at).ok_or_else(|| {
            rdt_err(
                "",
                format!(
                    "no resctrl filesystem is mounted on this host (the kernel or CPU may lack \
                     Intel RDT/AMD PQoS, or it is not mounted: mount -t resctrl resctrl {DEFAULT_ROOT})"
                ),
            )
        })
    }

    /// Whether this host has resctrl mounted.
    pub fn available() -> bool {
        Resctrl::mounted().is_ok()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn group_dir(&self, req: &Request) -> PathBuf {
        self.root.join(&req.group)
    }

    fn mon_dir(&self, req: &Request, id: &str) -> PathBuf {
        self.group_dir(req).join("mon_groups").join(id)
    }

    /// The kernel's explanation of the last failed write, if it gave one.
    fn last_status(&self) -> String {
        fs::read_to_string(self.root.join("info/last_cmd_status"))
            .map(|s| format!(" ({})", s.trim()))
            .unwrap_or_default()
    }

    fn write(&self, field: &str, path: &Path, text: &str) -> Result<(), RdtError> {
        // O_CREAT only matters to a test's plain directory: kernfs has no
        // file creation, and every file written here exists in resctrl.
        let r = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        r.map_err(|e| {
            rdt_err(
                field,
                format!(
                    "writing {:?} to {}: {e}{}",
                    text.trim_end(),
                    path.display(),
                    self.last_status()
                ),
            )
        })
    }

    /// Puts process `pid` of container `id` into the group `req` names:
    /// creates it (calling `record` first) or checks a pre-existing one,
    /// writes its schemata, and makes the container's monitoring group.
    pub fn apply(
        &self,
        req: &Request,
        id: &str,
        pid: i32,
        mut record: impl FnMut(&Made) -> std::io::Result<()>,
    ) -> Result<(), RdtError> {
        let group = self.group_dir(req);
        let field = if req.by_clos_id { ".closID" } else { "" };
        if group.is_dir() {
            if !req.schemata.is_empty() {
                let cur = fs::read_to_string(group.join("schemata"))
                    .map_err(|e| rdt_err(field, format!("{}: {e}", group.display())))?;
                if let Some(m) = mismatch(&cur, &req.schemata) {
                    return Err(rdt_err(
                        field,
                        format!(
                            "the resctrl group {} exists with another schemata: {m}",
                            group.display()
                        ),
                    ));
                }
            }
        } else {
            if req.by_clos_id && req.schemata.is_empty() {
                return Err(rdt_err(
                    ".closID",
                    format!(
                        "the resctrl group {} does not exist, and no schema was given to create it",
                        group.display()
                    ),
                ));
            }
            let made = Made {
                path: group.clone(),
                shared: req.by_clos_id,
            };
            record(&made).map_err(|e| rdt_err(field, not_recorded(&made.path, &e)))?;
            fs::create_dir(&group)
                .map_err(|e| rdt_err(field, format!("mkdir {}: {e}", group.display())))?;
            if !req.schemata.is_empty() {
                let text = req.schemata.join("\n") + "\n";
                self.write(".schemata", &group.join("schemata"), &text)?;
            }
        }
        self.write(field, &group.join("tasks"), &pid.to_string())?;
        if req.monitoring {
            if !group.join("mon_groups").is_dir() {
                return Err(rdt_err(
                    ".enableMonitoring",
                    format!(
                        "{} has no mon_groups: this host's resctrl offers no monitoring",
                        group.display()
                    ),
                ));
            }
            let mon = self.mon_dir(req, id);
            if !mon.is_dir() {
                record(&Made {
                    path: mon.clone(),
                    shared: false,
                })
                .map_err(|e| rdt_err(".enableMonitoring", not_recorded(&mon, &e)))?;
                fs::create_dir(&mon).map_err(|e| {
                    rdt_err(".enableMonitoring", format!("mkdir {}: {e}", mon.display()))
                })?;
            }
            self.write(".enableMonitoring", &mon.join("tasks"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Puts an exec'd process `pid` where the container's init is.
    pub fn join(&self, req: &Request, id: &str, pid: i32) -> Result<(), RdtError> {
        let group = self.group_dir(req);
        self.write("", &group.join("tasks"), &pid.to_string())?;
        if req.monitoring {
            let mon = self.mon_dir(req, id);
            self.write(".enableMonitoring", &mon.join("tasks"), &pid.to_string())?;
        }
        Ok(())
    }
}

/// The mount point of the first resctrl mount in a mountinfo text.
fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "resctrl")
            .then(|| pre.split_whitespace().nth(4))
            .flatten()
            .map(|p| PathBuf::from(vessel_cgroups::host::unescape_mountinfo(p)))
    })
}

/// Removes what vessel made under resctrl, monitoring groups first: a
/// shared group stays while tasks of another container are in it.
pub fn remove(made: &[Made]) -> Result<(), RdtError> {
    for m in made.iter().rev() {
        if m.shared {
            let tasks = fs::read_to_string(m.path.join("tasks")).unwrap_or_default();
            if !tasks.trim().is_empty() {
                tracing::debug!(
                    "resctrl group {} still has tasks: left in place",
                    m.path.display()
                );
                continue;
            }
        }
        match fs::remove_dir(&m.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(rdt_err("", format!("removing {}: {e}", m.path.display())))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(v: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(v).unwrap()
    }

    /// A directory laid out like a resctrl root with monitoring. Its plain
    /// directories lack the files the kernel makes in a new group; writes
    /// create them (see `Resctrl::write`).
    fn fake_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("info/L3_MON")).unwrap();
        fs::create_dir_all(d.path().join("mon_groups")).unwrap();
        fs::write(d.path().join("schemata"), "    L3:0=fff;1=fff\n").unwrap();
        fs::write(d.path().join("tasks"), "").unwrap();
        d
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn the_request_follows_the_spec_rules() {
        let r = request(&rdt(serde_json::json!({})), "c1").unwrap();
        assert_eq!(r.group, "c1");
        assert!(!r.by_clos_id && r.schemata.is_empty() && !r.monitoring);
        let r = request(
            &rdt(serde_json::json!({
                "closID": "gold",
                "l3CacheSchema": "L3:0=f0;1=f\nMB:0=10",
                "memBwSchema": "MB:0=20;1=70",
                "schemata": ["L2:0=3"],
                "enableMonitoring": true
            })),
            "c1",
        )
        .unwrap();
        assert_eq!(r.group, "gold");
        assert!(r.by_clos_id && r.monitoring);
        // l3CacheSchema's MB: line yields to memBwSchema; schemata comes last.
        assert_eq!(r.schemata, ["L3:0=f0;1=f", "MB:0=20;1=70", "L2:0=3"]);
        // The spec spells it enableCMT; oci-spec reads enableCmt.
        let mut linux = serde_json::json!({"intelRdt": {"enableCMT": true}});
        assert!(may_need_normalizing(linux.to_string().as_bytes()));
        assert!(normalize_keys(&mut linux));
        let cmt = request(&rdt(linux["intelRdt"].clone()), "c").unwrap();
        assert!(cmt.monitoring);
    }

    #[test]
    fn bad_fields_are_named() {
        for (v, field) in [
            (
                serde_json::json!({"closID": "a/b"}),
                "linux.intelRdt.closID",
            ),
            (
                serde_json::json!({"closID": "info"}),
                "linux.intelRdt.closID",
            ),
            (serde_json::json!({"closID": ".."}), "linux.intelRdt.closID"),
            (
                serde_json::json!({"memBwSchema": "L3:0=1"}),
                "linux.intelRdt.memBwSchema",
            ),
            (
                serde_json::json!({"memBwSchema": "MB:0=1\nMB:1=2"}),
                "linux.intelRdt.memBwSchema",
            ),
            (
                serde_json::json!({"l3CacheSchema": "L3 0 ff"}),
                "linux.intelRdt.l3CacheSchema",
            ),
            (
                serde_json::json!({"schemata": ["L3:0=f", "junk"]}),
                "linux.intelRdt.schemata[1]",
            ),
        ] {
            let e = request(&rdt(v.clone()), "c").unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
        }
        assert!(request(&rdt(serde_json::json!({})), "mon_groups").is_err());
    }

    #[test]
    fn a_new_group_is_recorded_then_made_written_joined_and_removed() {
        let d = fake_root();
        let rc = Resctrl::at(d.path());
        let req = request(
            &rdt(serde_json::json!({
                "l3CacheSchema": "L3:0=f",
                "schemata": ["MB:0=30"],
                "enableMonitoring": true
            })),
            "c1",
        )
        .unwrap();
        let group = d.path().join("c1");
        let mon = group.join("mon_groups/c1");
        let mut made = Vec::new();
        let e = rc.apply(&req, "c1", 4242, |m| {
            assert!(
                !m.path.exists(),
                "{} recorded before it exists",
                m.path.display()
            );
            made.push(m.clone());
            Ok(())
        });
        // The kernel makes mon_groups in a new group; this plain one lacks it.
        assert_eq!(e.unwrap_err().field, "linux.intelRdt.enableMonitoring");
        assert_eq!(read(&group.join("schemata")), "L3:0=f\nMB:0=30\n");
        assert_eq!(read(&group.join("tasks")), "4242");
        fs::create_dir(group.join("mon_groups")).unwrap();
        // Again, now on the existing group: its schemata matches.
        rc.apply(&req, "c1", 4242, |m| {
            made.push(m.clone());
            Ok(())
        })
        .unwrap();
        let private = |p: &Path| Made {
            path: p.to_path_buf(),
            shared: false,
        };
        assert_eq!(made, [private(&group), private(&mon)]);
        assert_eq!(read(&mon.join("tasks")), "4242");
        // An exec'd process joins both.
        rc.join(&req, "c1", 77).unwrap();
        assert_eq!(read(&group.join("tasks")), "77");
        assert_eq!(read(&mon.join("tasks")), "77");
        // rmdir of a real group succeeds with the kernel's files in it;
        // these are plain files, removed as the kernel would.
        fs::remove_file(mon.join("tasks")).unwrap();
        remove(&made[1..]).unwrap();
        assert!(!mon.exists() && group.exists());
        for f in ["tasks", "schemata"] {
            fs::remove_file(group.join(f)).unwrap();
        }
        fs::remove_dir(group.join("mon_groups")).unwrap();
        remove(&made).unwrap();
        assert!(!group.exists());
    }

    #[test]
    fn an_existing_group_must_hold_the_requested_schemata() {
        let d = fake_root();
        let rc = Resctrl::at(d.path());
        let group = d.path().join("gold");
        fs::create_dir(&group).unwrap();
        fs::write(group.join("schemata"), "    L3:0=0ff;1=fff\n    MB:0=100\n").unwrap();
        let req = |v| request(&rdt(v), "c2").unwrap();
        let no_record = |_: &Made| -> std::io::Result<()> { panic!("the group is not vessel's") };
        for (v, why) in [
            (
                serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=f"}),
                "L3:0 is 0ff, not f",
            ),
            (
                serde_json::json!({"closID": "gold", "memBwSchema": "MB:1=50"}),
                "MB has no domain 1",
            ),
            (
                serde_json::json!({"closID": "gold", "schemata": ["L2:0=1"]}),
                "L2 is not in",
            ),
        ] {
            let e = rc.apply(&req(v), "c2", 1, no_record).unwrap_err();
            assert_eq!(e.field, "linux.intelRdt.closID");
            assert!(e.msg.contains(why), "{e}");
        }
        // Leading zeros and case aside, it matches: joined, not recorded.
        let ok = req(
            serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=FF", "memBwSchema": "MB:0=100"}),
        );
        rc.apply(&ok, "c2", 8, no_record).unwrap();
        assert_eq!(read(&group.join("tasks")), "8");
    }

    #[test]
    fn a_shared_group_stays_while_tasks_are_in_it() {
        let d = fake_root();
        let rc = Resctrl::at(d.path());
        let req = request(
            &rdt(serde_json::json!({"closID": "gold", "memBwSchema": "MB:0=20"})),
            "c2",
        )
        .unwrap();
        let mut made = Vec::new();
        rc.apply(&req, "c2", 99, |m| {
            made.push(m.clone());
            Ok(())
        })
        .unwrap();
        let group = d.path().join("gold");
        assert_eq!(
            made,
            [Made {
                path: group.clone(),
                shared: true
            }]
        );
        assert_eq!(read(&group.join("schemata")), "MB:0=20\n");
        // Another container's task is in it: kept. Once empty it goes.
        fs::write(group.join("tasks"), "123\n").unwrap();
        remove(&made).unwrap();
        assert!(group.is_dir());
        fs::remove_file(group.join("tasks")).unwrap();
        fs::remove_file(group.join("schemata")).unwrap();
        remove(&made).unwrap();
        assert!(!group.exists());
    }

    #[test]
    fn a_missing_preconfigured_group_and_missing_monitoring_are_errors() {
        let d = fake_root();
        let rc = Resctrl::at(d.path());
        let req = request(&rdt(serde_json::json!({"closID": "pre"})), "c3").unwrap();
        let e = rc.apply(&req, "c3", 1, |_| Ok(())).unwrap_err();
        assert_eq!(e.field, "linux.intelRdt.closID");
        assert!(e.msg.contains("does not exist"), "{e}");
        assert!(!d.path().join("pre").exists());
        // A pre-configured group is joined, never recorded.
        let pre = d.path().join("pre");
        fs::create_dir(&pre).unwrap();
        rc.apply(&req, "c3", 5, |_| {
            panic!("a pre-configured group is not vessel's")
        })
        .unwrap();
        assert_eq!(read(&pre.join("tasks")), "5");
        let mut req = req;
        req.monitoring = true;
        let e = rc.apply(&req, "c3", 5, |_| Ok(())).unwrap_err();
        assert_eq!(e.field, "linux.intelRdt.enableMonitoring", "{e}");
    }

    #[test]
    fn the_mount_point_comes_from_mountinfo() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    40 22 0:35 / /sys/fs/res\\040ctrl rw,relatime shared:9 - resctrl resctrl rw\n";
        assert_eq!(mount_point(info), Some(PathBuf::from("/sys/fs/res ctrl")));
        assert_eq!(mount_point("22 1 0:21 / /proc rw - proc proc rw\n"), None);
    }
}
