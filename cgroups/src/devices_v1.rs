//! The v1 devices controller, written directly.
//!
//! libcgroups' v1 manager finds each of its twelve controllers by reading
//! `/proc/self/mountinfo` and `/proc/self/cgroup` anew through a freshly
//! verified procfs handle (20 handles, 20 file reads per container), and
//! its cost grows with the host's mount table. vessel already knows every
//! controller's directory from one read ([`crate::Host`] and the
//! placement), so when the only thing to apply on a v1 hierarchy is the
//! device list (the common case: the default spec's deny-all plus the
//! standard devices) it writes that list itself and libcgroups' manager is
//! never built.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

/// Device rules every container gets after the spec's own, as OCI
/// runtimes grant them: mknod of any device, the console, ptys, /dev/ptmx,
/// tun, and the standard nodes null, zero, full, tty, urandom, random.
pub(crate) const STANDARD_RULES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:9 rwm",
    "c 1:8 rwm",
    "c *:* m",
    "b *:* m",
    "c 5:1 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// Whether `lib` (what would go to libcgroups) asks for nothing but
/// device rules, so [`apply`] covers all of it.
pub(crate) fn only_devices(lib: &LinuxResources) -> bool {
    let mut rest = lib.clone();
    rest.set_devices(None);
    rest == LinuxResources::default()
}

/// The lines written, in order, with the file each goes to.
pub(crate) fn plan(devices: Option<&[LinuxDeviceCgroup]>) -> Vec<(&'static str, String)> {
    let file = |allow: bool| {
        if allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    };
    devices
        .unwrap_or_default()
        .iter()
        .map(|d| (file(d.allow()), d.to_string()))
        .chain(
            STANDARD_RULES
                .iter()
                .map(|r| ("devices.allow", r.to_string())),
        )
        .collect()
}

/// Writes the spec's device rules, then the standard ones, into the
/// devices cgroup `dir` (one rule per write, as the kernel parses them).
pub(crate) fn apply(
    dir: &Path,
    devices: Option<&[LinuxDeviceCgroup]>,
) -> Result<(), (String, std::io::Error)> {
    for (file, rule) in plan(devices) {
        let path = dir.join(file);
        crate::write_file(&path, &rule)
            .map_err(|e| (format!("{} <- {rule:?}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder,
    };

    fn deny_all() -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap()
    }

    #[test]
    fn spec_rules_come_first_then_the_standard_ones() {
        let fuse = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .access("rw")
            .build()
            .unwrap();
        let p = plan(Some(&[deny_all(), fuse]));
        assert_eq!(p[0], ("devices.deny", "a *:* rwm".to_string()));
        assert_eq!(p[1], ("devices.allow", "c 10:229 rw".to_string()));
        assert_eq!(p.len(), 2 + STANDARD_RULES.len());
        assert!(p[2..].iter().all(|(f, _)| *f == "devices.allow"));
        assert_eq!(plan(None).len(), STANDARD_RULES.len());
    }

    #[test]
    fn only_devices_means_nothing_else() {
        let d = LinuxResourcesBuilder::default()
            .devices(vec![deny_all()])
            .build()
            .unwrap();
        assert!(only_devices(&d));
        assert!(only_devices(&LinuxResources::default()));
        let mut with_cpu = d.clone();
        with_cpu.set_cpu(Some(
            LinuxCpuBuilder::default().shares(512u64).build().unwrap(),
        ));
        assert!(!only_devices(&with_cpu));
    }

    #[test]
    fn writes_each_rule_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("devices.allow"), "").unwrap();
        std::fs::write(dir.path().join("devices.deny"), "").unwrap();
        apply(dir.path(), Some(&[deny_all()])).unwrap();
        // A plain file keeps only the last write: the last standard rule.
        let allow = std::fs::read_to_string(dir.path().join("devices.allow")).unwrap();
        assert_eq!(allow, *STANDARD_RULES.last().unwrap());
        let deny = std::fs::read_to_string(dir.path().join("devices.deny")).unwrap();
        assert_eq!(deny, "a *:* rwm");
        let missing = tempfile::tempdir().unwrap();
        let (what, _) = apply(&missing.path().join("gone"), None).unwrap_err();
        assert!(what.contains("devices.allow"), "{what}");
    }
}
