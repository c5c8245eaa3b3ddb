//! What this vessel supports, as the OCI runtime-features document that
//! `vessel features` prints (the shape of `runc features`). Every list is
//! taken from the code that implements it, so the document cannot claim
//! what vessel refuses: the mount options from the mount option parser,
//! seccomp from the filter compiler and a probe of the kernel, namespaces
//! from the namespace code and this kernel's /proc/self/ns, hooks from the
//! hook phases, capabilities from the capability code, memory policy and
//! scheduler from their spec modules, intelRdt from resctrl's presence.
//! vessel's own facts (isolation modes, VM engine...) are `io.vessel.*`
//! annotations.

use std::collections::HashMap;

use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeatureBuilder, MemoryPolicyBuilder, MountExtensionsBuilder, NetDevicesBuilder,
    SelinuxBuilder,
};

use crate::hooks::Phase;
use crate::vm::{Isolation, RuntimeConfig};

/// The oldest runtime-spec version vessel reads.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// The newest runtime-spec version vessel knows (the fields of oci-spec).
pub const OCI_VERSION_MAX: &str = "1.2.0";

/// The features document, without vm mode (see [`vm_annotations`]).
pub fn features() -> Features {
    let caps = crate::security::capabilities::known_names();
    let linux = LinuxFeatureBuilder::default()
        .namespaces(crate::namespaces::supported())
        .capabilities(caps)
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(true)
                .systemd_user(false)
                .rdma(true)
                .build()
                .expect("all fields set"),
        )
        .seccomp(crate::security::seccomp::features())
        .apparmor(
            ApparmorBuilder::default()
                .enabled(std::path::Path::new("/sys/kernel/security/apparmor").exists())
                .build()
                .expect("all fields set"),
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(false)
                .build()
                .expect("all fields set"),
        )
        .intel_rdt(
            IntelRdtBuilder::default()
                .enabled(crate::intel_rdt::Resctrl::available())
                .schemata(true)
                .monitoring(true)
                .build()
                .expect("all fields set"),
        )
        .memory_policy(
            MemoryPolicyBuilder::default()
                .modes(strings(crate::spec::mempolicy::MODES))
                .flags(strings(crate::spec::mempolicy::FLAGS))
                .build()
                .expect("all fields set"),
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(crate::rootfs::idmap_supported())
                        .build()
                        .expect("all fields set"),
                )
                .build()
                .expect("all fields set"),
        )
        .net_devices(
            NetDevicesBuilder::default()
                .enabled(true)
                .build()
                .expect("all fields set"),
        )
        .build()
        .expect("all fields set");
    let hooks: Vec<String> = Phase::ALL.iter().map(|p| p.name().to_string()).collect();
    FeaturesBuilder::default()
        .oci_version_min(OCI_VERSION_MIN)
        .oci_version_max(OCI_VERSION_MAX)
        .hooks(hooks)
        .mount_options(strings(&crate::rootfs::mount_option_names()))
        .linux(linux)
        .annotations(annotations())
        .build()
        .expect("all fields set")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// vessel's annotations that do not depend on its configuration file.
fn annotations() -> HashMap<String, String> {
    use crate::spec::sched;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // The scheduler, the exec CPU affinity and the personality have no place
    // in the features schema: comma-separated lists.
    [
        ("io.vessel.version", env!("CARGO_PKG_VERSION").to_string()),
        ("io.vessel.cgroup.host", if v2 { "v2" } else { "v1" }.into()),
        ("io.vessel.isolation.modes", "container".into()),
        (
            "io.vessel.process.scheduler.policies",
            sched::POLICIES.join(","),
        ),
        ("io.vessel.process.scheduler.flags", sched::FLAGS.join(",")),
        ("io.vessel.process.execCPUAffinity", "initial,final".into()),
        (
            "io.vessel.linux.personality.domains",
            crate::process::attrs::PERSONALITY_DOMAINS.join(","),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    // How this host enforces the io.vessel.blockio.* policies.
    .chain(
        vessel_cgroups::Host::detect()
            .map(|h| vessel_cgroups::blockio_mechanisms::host_report(&h))
            .unwrap_or_default(),
    )
    .collect()
}

/// The vm mode annotations: what `create` would find with `config` (the
/// accelerator probe is cached), and the default isolation mode.
pub fn vm_annotations(
    config: &RuntimeConfig,
    isolation: Option<Isolation>,
) -> HashMap<String, String> {
    let mut a = HashMap::new();
    let mut set = |k: &str, v: String| {
        a.insert(k.to_string(), v);
    };
    match crate::vm::resolve::resolve(&config.vm) {
        Ok(host) => {
            set("io.vessel.isolation.modes", "container,vm".into());
            set("io.vessel.vm.engine", host.engine.name().to_string());
            set("io.vessel.vm.accel", host.engine.accel().to_string());
            set("io.vessel.vm.engine.reason", host.reason.to_string());
            set(
                "io.vessel.vm.kernel",
                host.kernel.image.to_string_lossy().into_owned(),
            );
        }
        Err(e) => set("io.vessel.vm.unavailable", e.to_string()),
    }
    set(
        "io.vessel.isolation.default",
        isolation
            .or(config.isolation)
            .unwrap_or_default()
            .to_string(),
    );
    a
}

/// The whole document: [`features`] with the vm annotations of `config`.
pub fn document(config: &RuntimeConfig, isolation: Option<Isolation>) -> Features {
    let mut f = features();
    let extra = vm_annotations(config, isolation);
    f.annotations_mut()
        .get_or_insert_with(HashMap::new)
        .extend(extra);
    f
}

/// `f` as JSON without the members oci-spec writes as `null` (a field
/// vessel does not report is left out, as runc leaves it out).
pub fn to_json(f: &Features) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(strip);
        }
    }
    let mut v = serde_json::to_value(f).expect("features serialize");
    strip(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_comes_from_the_code() {
        let f = features();
        let json = to_json(&f);
        assert_eq!(json["ociVersionMin"], OCI_VERSION_MIN);
        assert!(!json.to_string().contains("null"), "{json}");
        // The parser's own list (rootfs::options tests that each entry is
        // recognized, not passed on as filesystem data).
        assert_eq!(
            json["mountOptions"],
            serde_json::json!(crate::rootfs::mount_option_names())
        );
        // Each capability parses back.
        for c in json["linux"]["capabilities"].as_array().unwrap() {
            crate::security::capabilities::parse_capability(c.as_str().unwrap()).unwrap();
        }
        assert_eq!(json["hooks"].as_array().unwrap().len(), 6);
        assert_eq!(
            json["linux"]["memoryPolicy"]["modes"]
                .as_array()
                .unwrap()
                .len(),
            crate::spec::mempolicy::MODES.len()
        );
        assert_eq!(
            json["linux"]["intelRdt"]["enabled"],
            crate::intel_rdt::Resctrl::available()
        );
    }
}
