//! Loading and validating a bundle's config.json. Every error names the
//! bundle file and the field, so an engine's user sees what to fix.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub mod affinity;
pub mod cpulist;
pub mod mempolicy;
mod read;
pub mod sched;
mod sysctl;

pub use read::{read_json_file, MAX_JSON_FILE_SIZE};

/// A problem with the bundle's configuration.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// config.json could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// config.json is not a valid OCI configuration.
    #[error("{path}: field {field}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// JSON path of the offending field.
        field: String,
        /// The parser's message.
        msg: String,
    },
    /// A namespace file the field names (or vessel's own, to compare with)
    /// cannot be used.
    #[error("config.json: {field}: {source}")]
    Namespace {
        /// The field (`linux.namespaces[2].path`, `linux.sysctl.<key>`).
        field: String,
        /// The file, and what is wrong with it.
        #[source]
        source: crate::namespaces::NsFileError,
    },
    /// A field holds a value vessel cannot run.
    #[error("config.json: {field}: {msg}")]
    Invalid {
        /// The field (`process.cwd`, `linux.namespaces[2]`, ...).
        field: String,
        /// What is wrong.
        msg: String,
    },
}

/// Shorthand for an [`SpecError::Invalid`].
pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Reads `<bundle>/config.json` (see [`read_json_file`]).
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let data = read_json_file(&path)?;
    parse(&path, &data)
}

/// Parses a configuration, reporting the JSON path of a bad field.
pub fn parse(path: &Path, data: &[u8]) -> Result<Spec, SpecError> {
    parse_with(path, data, |v| {
        let sched = v.get_mut("process").is_some_and(sched::normalize_flags);
        let rdt = v
            .get_mut("linux")
            .is_some_and(crate::intel_rdt::normalize_keys);
        sched || rdt
    })
}

/// Parses a `process` object (the file of `exec --process`) as [`parse`]
/// parses a configuration.
pub fn parse_process(path: &Path, data: &[u8]) -> Result<oci_spec::runtime::Process, SpecError> {
    parse_with(path, data, sched::normalize_flags)
}

/// Deserializes `data`, first through `fix` on a JSON tree when it may
/// spell a field as the spec does and oci-spec does not (see
/// [`sched::normalize_flags`]).
fn parse_with<T: serde::de::DeserializeOwned>(
    path: &Path,
    data: &[u8],
    fix: impl Fn(&mut serde_json::Value) -> bool,
) -> Result<T, SpecError> {
    let err = |field: String, msg: String| SpecError::Parse {
        path: path.to_path_buf(),
        field,
        msg,
    };
    if sched::may_need_normalizing(data) || crate::intel_rdt::may_need_normalizing(data) {
        let mut v: serde_json::Value =
            serde_json::from_slice(data).map_err(|e| err(".".into(), e.to_string()))?;
        if fix(&mut v) {
            return serde_path_to_error::deserialize(v)
                .map_err(|e| err(e.path().to_string(), e.into_inner().to_string()));
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de)
        .map_err(|e| err(e.path().to_string(), e.into_inner().to_string()))
}

/// The absolute rootfs path (`root.path` is relative to the bundle).
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing: the bundle names no root filesystem"))?;
    let p = bundle.join(root.path());
    let canon = p
        .canonicalize()
        .map_err(|e| invalid("root.path", format!("{}: {e}", p.display())))?;
    if !canon.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{} is not a directory", canon.display()),
        ));
    }
    Ok(canon)
}

/// Checks the parts of the spec that belong to no other module: version,
/// process, namespaces, hostname, and fields vessel does not support.
pub fn validate(spec: &Spec, need_process: bool) -> Result<(), SpecError> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            "ociVersion",
            format!("{:?} is not a supported OCI version (1.x)", spec.version()),
        ));
    }
    match spec.process() {
        Some(p) => validate_process(p)?,
        None if need_process => return Err(invalid("process", "missing")),
        None => {}
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing: vessel runs Linux containers"))?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not absolute", p.display()),
                ));
            }
            if !p.exists() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} does not exist", p.display()),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    // No mount namespace is allowed: rootfs::validate refuses what would
    // need one.
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user
        && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
    {
        return Err(invalid(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if !has(LinuxNamespaceType::User)
        && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
    {
        return Err(invalid(
            "linux.uidMappings",
            "mappings given without a user namespace",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "hostname",
            "setting a hostname needs a uts namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "domainname",
            "setting a domainname needs a uts namespace",
        ));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
    {
        return Err(invalid(
            "linux.timeOffsets",
            "time offsets need a new time namespace",
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        for k in offsets.keys() {
            if k != "monotonic" && k != "boottime" {
                return Err(invalid(
                    format!("linux.timeOffsets.{k}"),
                    "only monotonic and boottime clocks can be offset",
                ));
            }
        }
    }
    if let Some(mode) = annotation(spec, crate::isolation::ISOLATION_ANNOTATION) {
        if let Err(e) = mode.parse::<crate::isolation::Isolation>() {
            return Err(invalid("annotations.io.vessel.isolation", e.to_string()));
        }
    }
    // Fields vessel does not implement are refused, never ignored.
    if spec.vm().is_some() {
        return Err(invalid(
            "vm",
            "the OCI vm section (hypervisor, kernel, image) is not how vessel selects a microVM; use the annotation io.vessel.isolation",
        ));
    }
    if spec.windows().is_some() || spec.solaris().is_some() || spec.zos().is_some() {
        return Err(invalid(
            "windows/solaris/zos",
            "configuration for another operating system: vessel runs Linux containers",
        ));
    }
    if let Some(rdt) = linux.intel_rdt() {
        // The fields first (the container id stands in for a missing
        // closID's check at create), then the host: the spec wants an
        // error, not a silent skip, where resctrl is not mounted.
        crate::intel_rdt::request(rdt, "container").map_err(|e| invalid(e.field, e.msg))?;
        crate::intel_rdt::Resctrl::mounted().map_err(|e| invalid(e.field, e.msg))?;
    }
    // linux.netDevices: checked by netdev::validate at create.
    if let Some(p) = linux.memory_policy() {
        mempolicy::check(p)?;
    }
    if let Some(p) = linux.personality() {
        if let Some(f) = p.flags().iter().flatten().next() {
            return Err(invalid(
                "linux.personality.flags",
                format!("{f:?}: the OCI spec defines no personality flags"),
            ));
        }
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(invalid(
            "linux.mountLabel",
            "SELinux labels are not supported by vessel",
        ));
    }
    sysctl::check(linux)?;
    Ok(())
}

/// The largest user or group id a process may be given: ids are signed in
/// parts of the kernel and of libc (4294967295 is -1, "no change", and ran
/// the workload as root), so vessel refuses what runc refuses.
pub const MAX_ID: u32 = i32::MAX as u32;

/// Refuses a uid or gid above [`MAX_ID`]; `field` names where it came from
/// (`process.user.uid`, `--user`, ...).
pub fn check_id(field: &str, id: u32) -> Result<(), SpecError> {
    if id > MAX_ID {
        return Err(invalid(field, format!("{id} is outside 0..={MAX_ID}")));
    }
    Ok(())
}

/// The user and group ids of a process, checked with [`check_id`].
pub fn check_user_ids(p: &oci_spec::runtime::Process) -> Result<(), SpecError> {
    let u = p.user();
    check_id("process.user.uid", u.uid())?;
    check_id("process.user.gid", u.gid())?;
    for (i, g) in u.additional_gids().iter().flatten().enumerate() {
        check_id(&format!("process.user.additionalGids[{i}]"), *g)?;
    }
    Ok(())
}

/// Checks a process (the container's or one given to `exec`).
pub fn validate_process(p: &oci_spec::runtime::Process) -> Result<(), SpecError> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name a program to run"));
    }
    if !p.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{} is not an absolute path", p.cwd().display()),
        ));
    }
    check_user_ids(p)?;
    if let Some(env) = p.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') || e.starts_with('=') {
                return Err(invalid(
                    format!("process.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ));
            }
        }
    }
    if p.selinux_label().as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(invalid(
            "process.selinuxLabel",
            "SELinux labels are not supported by vessel",
        ));
    }
    if let Some(score) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&score) {
            return Err(invalid(
                "process.oomScoreAdj",
                format!("{score} is outside -1000..1000"),
            ));
        }
    }
    if let Some(s) = p.scheduler() {
        sched::attr("process.scheduler", s)?;
    }
    affinity::exec_affinity(p)?;
    if let Some(io) = p.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(invalid(
                "process.ioPriority.priority",
                format!("{} is outside 0..7", io.priority()),
            ));
        }
    }
    Ok(())
}

/// The value of annotation `key` in `spec`, if set.
pub(crate) fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_field() {
        let e = parse(
            Path::new("config.json"),
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.namespaces[1]"), "{e}");
    }

    #[test]
    fn refuses_sections_for_other_platforms() {
        let spec = parse(
            Path::new("c"),
            br#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
                 "linux":{"namespaces":[{"type":"mount"}]},"windows":{"layerFolders":[]}}"#,
        )
        .unwrap();
        let e = validate(&spec, true).unwrap_err().to_string();
        assert!(e.contains("windows"), "{e}");
    }

    #[test]
    fn rejects_duplicate_namespace_and_relative_cwd() {
        let spec = parse(
            Path::new("c"),
            br#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
                 "linux":{"namespaces":[{"type":"mount"},{"type":"pid"},{"type":"pid"}]}}"#,
        )
        .unwrap();
        let e = validate(&spec, true).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces[2]"), "{e}");
        let spec = parse(
            Path::new("c"),
            br#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"tmp","user":{"uid":0,"gid":0}},
                 "linux":{"namespaces":[{"type":"mount"}]}}"#,
        )
        .unwrap();
        let e = validate(&spec, true).unwrap_err().to_string();
        assert!(e.contains("process.cwd"), "{e}");
    }
}
