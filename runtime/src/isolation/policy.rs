//! The isolation policy: ordered rules of the configuration file that
//! choose a container's mode from what its spec and CRI annotations ask.
//!
//! Precedence, first that applies wins:
//! 1. a container of a CRI pod whose sandbox vessel already runs takes the
//!    sandbox's mode (a pod is one VM, or none);
//! 2. the annotation `io.vessel.isolation`;
//! 3. the policy rules, in order (first match wins);
//! 4. the default: `--isolation`, else `isolation` of the config file, else
//!    `container`.
//!
//! Whatever chose it, a vm-mode container asking for the host's network or
//! pid namespace is refused, naming the field: a VM has neither.

use crate::spec::annotation;
use std::fmt;

use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};
use serde::Deserialize;

use super::config::{Isolation, ISOLATION_ANNOTATION};

/// The state annotation recording why a container got its mode.
pub const REASON_ANNOTATION: &str = "io.vessel.isolation.reason";
/// CRI annotations naming the pod's Kubernetes namespace (containerd's,
/// then the generic one).
pub const NAMESPACE_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.pod.namespace",
];
/// The CRI annotation naming a container's image.
pub const IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";

/// Capabilities that, without a user namespace, act on the host kernel
/// itself (mounts, modules, raw IO, BPF...): container mode would grant
/// the host.
const HOST_GRADE_CAPS: [(Capability, &str); 7] = [
    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
    (Capability::SysModule, "CAP_SYS_MODULE"),
    (Capability::SysRawio, "CAP_SYS_RAWIO"),
    (Capability::SysBoot, "CAP_SYS_BOOT"),
    (Capability::Bpf, "CAP_BPF"),
    (Capability::Perfmon, "CAP_PERFMON"),
    (Capability::MacAdmin, "CAP_MAC_ADMIN"),
];

/// `[policy]` of the configuration file.
///
/// ```toml
/// [policy]
/// trusted_registries = ["registry.example.com", "docker.io/library"]
/// [[policy.rule]]
/// mode = "container"
/// host_network = true
/// [[policy.rule]]
/// mode = "vm"
/// namespaces = ["ci", "untrusted"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Image name prefixes (registry, or registry/path) that are trusted.
    #[serde(default)]
    pub trusted_registries: Vec<String>,
    /// The rules, first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// One rule: every condition it sets must hold; a rule without conditions
/// matches every container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The mode this rule chooses.
    pub mode: Isolation,
    /// The pod's Kubernetes namespace is one of these.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The image (`io.kubernetes.cri.image-name`) is not from a trusted
    /// registry. A container without that annotation does not match.
    #[serde(default)]
    pub untrusted_image: bool,
    /// The spec asks for a privilege container mode would grant on the host.
    #[serde(default)]
    pub privileged: bool,
    /// The spec has no network namespace (the host's network).
    #[serde(default)]
    pub host_network: bool,
}

/// A policy that cannot be applied: `rule` is 1-based, None for the
/// policy's own fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {msg}", match .rule { Some(i) => format!("policy rule {i}"), None => "policy".to_string() })]
pub struct PolicyError {
    /// The rule (1-based).
    pub rule: Option<usize>,
    /// What is wrong.
    pub msg: String,
}

impl Policy {
    /// Refuses a policy that could not do what it says.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |rule, msg: &str| PolicyError {
            rule,
            msg: msg.into(),
        };
        if self
            .trusted_registries
            .iter()
            .any(|r| r.trim_matches('/').is_empty())
        {
            return Err(bad(None, "trusted_registries has an empty entry"));
        }
        let mut catch_all = None;
        for (i, r) in self.rules.iter().enumerate() {
            let n = Some(i + 1);
            if let Some(c) = catch_all {
                return Err(bad(
                    n,
                    &format!("never reached: rule {c} has no condition and matches everything"),
                ));
            }
            if r.host_network && r.mode == Isolation::Vm {
                return Err(bad(
                    n,
                    "host_network with mode \"vm\": a VM cannot have the host's network",
                ));
            }
            if r.namespaces.iter().any(|s| s.is_empty()) {
                return Err(bad(n, "namespaces has an empty entry"));
            }
            if r.untrusted_image && self.trusted_registries.is_empty() {
                return Err(bad(
                    n,
                    "untrusted_image needs policy.trusted_registries (none is trusted)",
                ));
            }
            if r.namespaces.is_empty() && !r.untrusted_image && !r.privileged && !r.host_network {
                catch_all = Some(i + 1);
            }
        }
        Ok(())
    }

    /// The first rule matching `spec`: its 1-based index, mode and why.
    pub fn first_match(&self, spec: &Spec) -> Option<(usize, Isolation, String)> {
        self.rules.iter().enumerate().find_map(|(i, r)| {
            self.matches(r, spec)
                .map(|why| (i + 1, r.mode, why.join(", ")))
        })
    }

    /// Why `r` matches `spec` (one phrase per condition), or None.
    fn matches(&self, r: &Rule, spec: &Spec) -> Option<Vec<String>> {
        let mut why = Vec::new();
        if !r.namespaces.is_empty() {
            let ns = pod_namespace(spec).filter(|n| r.namespaces.iter().any(|x| x == n))?;
            why.push(format!("namespace {ns}"));
        }
        if r.untrusted_image {
            let image = annotation(spec, IMAGE_ANNOTATION)?;
            let name = normalize_image(image);
            if self
                .trusted_registries
                .iter()
                .any(|p| under_prefix(&name, p))
            {
                return None;
            }
            why.push(format!("image not from a trusted registry: {name}"));
        }
        if r.privileged {
            why.push(format!("privileged: {}", host_privilege(spec)?));
        }
        if r.host_network {
            if has_namespace(spec, LinuxNamespaceType::Network) {
                return None;
            }
            why.push("host network: linux.namespaces has no network namespace".into());
        }
        if why.is_empty() {
            why.push("matches every container".into());
        }
        Some(why)
    }
}

/// Which input chose a container's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The container joins a pod whose sandbox runs in this mode.
    Sandbox(String),
    /// The annotation `io.vessel.isolation`.
    Annotation,
    /// A policy rule (1-based) and why it matched.
    Rule(usize, String),
    /// The default, and where it came from.
    Default(DefaultFrom),
}

/// Where the default mode came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultFrom {
    /// The global `--isolation` flag (a CRI handler sets it).
    Flag,
    /// `isolation` of the configuration file.
    ConfigFile,
    /// Neither: container mode.
    #[default]
    BuiltIn,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Sandbox(id) => write!(f, "the mode of its pod sandbox {id}"),
            Reason::Annotation => write!(f, "annotation {ISOLATION_ANNOTATION}"),
            Reason::Rule(i, why) => write!(f, "policy rule {i} ({why})"),
            Reason::Default(DefaultFrom::Flag) => f.write_str("default (--isolation)"),
            Reason::Default(DefaultFrom::ConfigFile) => {
                f.write_str("default (isolation in the config file)")
            }
            Reason::Default(DefaultFrom::BuiltIn) => f.write_str("default (built in)"),
        }
    }
}

/// A mode and what chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mode.
    pub mode: Isolation,
    /// What chose it.
    pub reason: Reason,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.mode, self.reason)
    }
}

/// Why a container cannot have the mode chosen for it, or which
/// annotation is not a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// The annotation names no mode.
    #[error("annotations.{ISOLATION_ANNOTATION}: {0}")]
    Annotation(#[source] super::config::UnknownMode),
    /// vm mode was chosen for a spec that needs a host namespace.
    #[error("{field}: {what}, which a vm-mode container cannot have (vm chosen by {reason})")]
    Refused {
        /// The spec field.
        field: &'static str,
        /// What the field asks for.
        what: &'static str,
        /// What chose vm mode.
        reason: Reason,
    },
}

/// The inputs of the decision besides the spec.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The policy of the configuration file.
    pub policy: &'a Policy,
    /// The default mode.
    pub default: Isolation,
    /// Where the default came from.
    pub default_from: DefaultFrom,
    /// The pod sandbox this container joins, if vessel runs it: its id and
    /// mode.
    pub sandbox: Option<(&'a str, Isolation)>,
}

/// The mode of a container with `spec`, and what chose it (precedence in
/// the module's documentation).
pub fn decide(spec: &Spec, inputs: Inputs<'_>) -> Result<Decision, DecideError> {
    let d = if let Some((id, mode)) = inputs.sandbox {
        Decision {
            mode,
            reason: Reason::Sandbox(id.into()),
        }
    } else if let Some(v) = annotation(spec, ISOLATION_ANNOTATION) {
        Decision {
            mode: v.parse().map_err(DecideError::Annotation)?,
            reason: Reason::Annotation,
        }
    } else if let Some((i, mode, why)) = inputs.policy.first_match(spec) {
        Decision {
            mode,
            reason: Reason::Rule(i, why),
        }
    } else {
        Decision {
            mode: inputs.default,
            reason: Reason::Default(inputs.default_from),
        }
    };
    if d.mode == Isolation::Vm {
        let refuse = |what| DecideError::Refused {
            field: "linux.namespaces",
            what,
            reason: d.reason.clone(),
        };
        if !has_namespace(spec, LinuxNamespaceType::Network) {
            return Err(refuse("no network namespace asks for the host's network"));
        }
        if !has_namespace(spec, LinuxNamespaceType::Pid) {
            return Err(refuse("no pid namespace asks for the host's pid namespace"));
        }
    }
    Ok(d)
}

/// The pod's Kubernetes namespace from the CRI annotations.
fn pod_namespace(spec: &Spec) -> Option<&str> {
    NAMESPACE_ANNOTATIONS
        .iter()
        .find_map(|k| annotation(spec, k))
}

/// Whether the spec lists a namespace of this type (new or joined).
fn has_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|l| l.iter().any(|n| n.typ() == t))
}

/// An image reference as a registry would resolve it: `busybox` is
/// `docker.io/library/busybox`, `me/app` is `docker.io/me/app`.
pub fn normalize_image(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    let has_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    }
}

/// Whether `name` is `prefix` or under it at a path boundary
/// (`registry.example.com` does not trust `registry.example.com.evil`).
fn under_prefix(name: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with(':'))
}

/// The first thing `spec` asks for that container mode would grant on the
/// host, named by its field.
pub fn host_privilege(spec: &Spec) -> Option<String> {
    if let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        if let Some(d) = devs
            .iter()
            .find(|d| !crate::rootfs::is_default_device(d.path()))
        {
            return Some(format!("linux.devices has {}", d.path().display()));
        }
    }
    // In a user namespace capabilities and sysfs act on namespaced objects.
    if has_namespace(spec, LinuxNamespaceType::User) {
        return None;
    }
    if let Some(caps) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    {
        let sets = [
            ("bounding", caps.bounding()),
            ("effective", caps.effective()),
            ("permitted", caps.permitted()),
            ("ambient", caps.ambient()),
        ];
        for (name, set) in sets {
            if let Some((_, cap)) = set
                .as_ref()
                .and_then(|s| HOST_GRADE_CAPS.iter().find(|(c, _)| s.contains(c)))
            {
                return Some(format!("process.capabilities.{name} has {cap}"));
            }
        }
    }
    let rw_sys = spec.mounts().as_ref().and_then(|ms| {
        ms.iter().find(|m| {
            m.destination().as_os_str() == "/sys"
                && m.typ().as_deref() == Some("sysfs")
                && !m
                    .options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "ro"))
        })
    });
    rw_sys.map(|_| "mounts has a writable sysfs on /sys".to_string())
}

/// The sandbox vessel runs (in `root`) for the pod that container `id`
/// with `spec` joins, and the sandbox's mode.
pub fn sandbox_of(
    root: &std::path::Path,
    id: &str,
    spec: &Spec,
) -> Result<Option<(String, Isolation)>, crate::container::Error> {
    let Some(sandbox) = crate::vm::pod::named_sandbox(spec, id) else {
        return Ok(None);
    };
    match crate::container::Container::peek(root, sandbox) {
        Ok(c) => Ok(Some((sandbox.to_string(), c.state.mode.isolation()))),
        // Not one of ours: the policy decides as for any container.
        Err(crate::container::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`decide`] for container `opts.id` about to be created from `spec`.
pub fn decide_for(
    opts: &crate::container::CreateOptions,
    spec: &Spec,
) -> Result<Decision, crate::container::Error> {
    let sandbox = sandbox_of(&opts.root, &opts.id, spec)?;
    decide(
        spec,
        Inputs {
            policy: &opts.policy,
            default: opts.isolation,
            default_from: opts.isolation_from,
            sandbox: sandbox.as_ref().map(|(s, m)| (s.as_str(), *m)),
        },
    )
    .map_err(|e| crate::container::Error::Mode {
        id: opts.id.clone(),
        source: Box::new(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A spec with the default namespaces of `vessel spec` (pid, network,
    /// ipc, uts, mount), changed by `f`.
    fn spec(f: impl FnOnce(&mut Value)) -> Spec {
        let mut v = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ]},
            "annotations": {}
        });
        f(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn policy(text: &str) -> Policy {
        let p: Policy = toml::from_str(text).unwrap();
        p.validate().unwrap();
        p
    }

    fn inputs(p: &Policy) -> Inputs<'_> {
        Inputs {
            policy: p,
            default: Isolation::Container,
            default_from: DefaultFrom::BuiltIn,
            sandbox: None,
        }
    }

    const POLICY: &str = r#"
        trusted_registries = ["registry.example.com", "docker.io/library"]
        [[rule]]
        mode = "container"
        host_network = true
        [[rule]]
        mode = "vm"
        namespaces = ["ci", "untrusted"]
        [[rule]]
        mode = "vm"
        privileged = true
        [[rule]]
        mode = "vm"
        untrusted_image = true
    "#;

    #[test]
    fn first_matching_rule_wins_and_says_why() {
        let p = policy(POLICY);
        let d = decide(&spec(|_| {}), inputs(&p)).unwrap();
        assert_eq!(d.to_string(), "container: default (built in)");

        let s = spec(|v| {
            v["annotations"]["io.kubernetes.cri.sandbox-namespace"] = json!("ci");
            v["annotations"][IMAGE_ANNOTATION] = json!("quay.io/evil/app:1");
        });
        // Rule 2 (namespace) comes before rule 4 (image).
        assert_eq!(
            decide(&s, inputs(&p)).unwrap().to_string(),
            "vm: policy rule 2 (namespace ci)"
        );

        let s = spec(|v| v["annotations"][IMAGE_ANNOTATION] = json!("quay.io/evil/app:1"));
        assert_eq!(
            decide(&s, inputs(&p)).unwrap().to_string(),
            "vm: policy rule 4 (image not from a trusted registry: quay.io/evil/app:1)"
        );
        let s = spec(|v| v["annotations"][IMAGE_ANNOTATION] = json!("me/app"));
        assert_eq!(
            decide(&s, inputs(&p)).unwrap().reason,
            Reason::Rule(
                4,
                "image not from a trusted registry: docker.io/me/app".into()
            )
        );
        for trusted in [
            "busybox",
            "docker.io/library/busybox:1.36",
            "registry.example.com/team/app@sha256:00",
        ] {
            let s = spec(|v| v["annotations"][IMAGE_ANNOTATION] = json!(trusted));
            assert_eq!(
                decide(&s, inputs(&p)).unwrap().mode,
                Isolation::Container,
                "{trusted}"
            );
        }
        // A prefix is trusted only at a path boundary.
        let s =
            spec(|v| v["annotations"][IMAGE_ANNOTATION] = json!("registry.example.com.evil/app"));
        assert_eq!(decide(&s, inputs(&p)).unwrap().mode, Isolation::Vm);

        // The host network rule (1) puts such a container on the host even
        // in a namespace that rule 2 sends to VMs.
        let s = spec(|v| {
            v["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
            v["annotations"]["io.kubernetes.pod.namespace"] = json!("ci");
        });
        assert_eq!(
            decide(&s, inputs(&p)).unwrap().to_string(),
            "container: policy rule 1 (host network: linux.namespaces has no network namespace)"
        );
    }

    #[test]
    fn privilege_asks_are_recognized() {
        let p = policy(POLICY);
        let why = |f: fn(&mut Value)| match decide(&spec(f), inputs(&p)).unwrap().reason {
            Reason::Rule(3, why) => why,
            other => panic!("not rule 3: {other:?}"),
        };
        assert_eq!(
            why(|v| v["process"]["capabilities"] =
                json!({"bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"]})),
            "privileged: process.capabilities.bounding has CAP_SYS_ADMIN"
        );
        assert_eq!(
            why(|v| v["linux"]["devices"] = json!([
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
                {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}
            ])),
            "privileged: linux.devices has /dev/sda"
        );
        assert_eq!(
            why(
                |v| v["mounts"] = json!([{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid"]}])
            ),
            "privileged: mounts has a writable sysfs on /sys"
        );
        // Not privileged: default caps, default devices, a read-only sysfs,
        // CAP_SYS_ADMIN inside a user namespace.
        for f in [
            (|v: &mut Value| {
                v["process"]["capabilities"] =
                    json!({"bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]})
            }) as fn(&mut Value),
            |v| {
                v["linux"]["devices"] =
                    json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}])
            },
            |v| v["mounts"] = json!([{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}]),
            |v| {
                v["process"]["capabilities"] = json!({"bounding": ["CAP_SYS_ADMIN"]});
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                v["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                v["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            },
        ] {
            assert_eq!(
                decide(&spec(f), inputs(&p)).unwrap().mode,
                Isolation::Container
            );
        }
    }

    #[test]
    fn precedence_sandbox_then_annotation_then_rules_then_default() {
        let p = policy("[[rule]]\nmode = \"vm\"\nnamespaces = [\"ci\"]\n");
        let ci = |v: &mut Value| v["annotations"]["io.kubernetes.pod.namespace"] = json!("ci");
        let mut i = inputs(&p);
        i.default = Isolation::Vm;
        i.default_from = DefaultFrom::Flag;
        assert_eq!(
            decide(&spec(|_| {}), i).unwrap().to_string(),
            "vm: default (--isolation)"
        );
        assert_eq!(
            decide(&spec(ci), i).unwrap().reason,
            Reason::Rule(1, "namespace ci".into())
        );
        // The annotation overrides the rules.
        let s = spec(|v| {
            ci(v);
            v["annotations"][ISOLATION_ANNOTATION] = json!("container");
        });
        assert_eq!(
            decide(&s, i).unwrap().to_string(),
            "container: annotation io.vessel.isolation"
        );
        // A pod's container follows its sandbox whatever else says.
        i.sandbox = Some(("sb1", Isolation::Container));
        assert_eq!(
            decide(&spec(ci), i).unwrap().to_string(),
            "container: the mode of its pod sandbox sb1"
        );
        // A bad annotation is named.
        i.sandbox = None;
        let s = spec(|v| v["annotations"][ISOLATION_ANNOTATION] = json!("kata"));
        let e = decide(&s, i).unwrap_err().to_string();
        assert!(
            e.contains("annotations.io.vessel.isolation") && e.contains("kata"),
            "{e}"
        );
    }

    #[test]
    fn host_network_or_pid_in_a_vm_is_refused_naming_the_field() {
        let p = policy("[[rule]]\nmode = \"vm\"\nnamespaces = [\"ci\"]\n");
        let no_net = |v: &mut Value| {
            v["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
            v["annotations"]["io.kubernetes.pod.namespace"] = json!("ci");
        };
        let e = decide(&spec(no_net), inputs(&p)).unwrap_err().to_string();
        assert_eq!(
            e,
            "linux.namespaces: no network namespace asks for the host's network, which a \
             vm-mode container cannot have (vm chosen by policy rule 1 (namespace ci))"
        );
        let no_pid = |v: &mut Value| {
            v["linux"]["namespaces"] = json!([{"type": "network"}, {"type": "mount"}]);
            v["annotations"][ISOLATION_ANNOTATION] = json!("vm");
        };
        let e = decide(&spec(no_pid), inputs(&p)).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.namespaces: no pid namespace")
                && e.contains("annotation io.vessel.isolation"),
            "{e}"
        );
        // The same specs in container mode are fine.
        let mut i = inputs(&p);
        i.sandbox = Some(("sb", Isolation::Container));
        assert!(decide(&spec(no_net), i).is_ok());
    }

    #[test]
    fn bad_policies_name_the_rule() {
        let err = |t: &str| {
            toml::from_str::<Policy>(t)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("[[rule]]\nmode = \"vm\"\nhost_network = true\n"),
            "policy rule 1: host_network with mode \"vm\": a VM cannot have the host's network"
        );
        assert!(err(
            "[[rule]]\nmode = \"vm\"\n[[rule]]\nmode = \"container\"\nprivileged = true\n"
        )
        .starts_with("policy rule 2: never reached: rule 1"));
        assert!(err("[[rule]]\nmode = \"vm\"\nuntrusted_image = true\n")
            .starts_with("policy rule 1: untrusted_image needs policy.trusted_registries"));
        assert!(err("[[rule]]\nmode = \"vm\"\nnamespaces = [\"\"]\n").contains("policy rule 1"));
        assert!(err("trusted_registries = [\"/\"]\n").starts_with("policy: trusted_registries"));
        assert!(toml::from_str::<Policy>("[[rule]]\nmode = \"kvm\"\n").is_err());
        assert!(toml::from_str::<Policy>("[[rule]]\nmode = \"vm\"\nimage = \"x\"\n").is_err());
    }
}
