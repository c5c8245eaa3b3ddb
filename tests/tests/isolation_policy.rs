//! The isolation policy of the configuration file, the precedence of the
//! inputs that choose a container's mode, the reason recorded in the state
//! and `vessel explain`. Container mode only: a wrong choice of vm mode
//! fails fast on a kernel that does not exist instead of booting a VM.

use std::path::PathBuf;

use serde_json::json;
use vessel_tests::harness::{fails, ok, Ctr};
use vessel_tests::require_root;

/// A config file whose default is vm mode (with a kernel that does not
/// exist, so a VM is never booted) followed by `policy`.
fn config(dir: &tempfile::TempDir, policy: &str) -> PathBuf {
    let path = dir.path().join("vessel.toml");
    let text = format!("isolation = \"vm\"\n[vm]\nkernel = \"/nonexistent/vmlinuz\"\n{policy}");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `sleep` container using the config file `path`, with `annotations`.
fn ctr(tag: &str, path: &std::path::Path, annotations: serde_json::Value) -> Ctr {
    let mut c = Ctr::new(tag, &["sleep", "100"]);
    c.global = vec!["--config".into(), path.to_str().unwrap().into()];
    c.config()["annotations"] = annotations;
    c.write();
    c
}

fn bundle(c: &Ctr) -> String {
    c.bundle.path().to_str().unwrap().to_string()
}

#[test]
fn policy_puts_a_namespace_in_container_mode_and_says_why() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        &dir,
        "[[policy.rule]]\nmode = \"container\"\nnamespaces = [\"trusted-ns\"]\n",
    );
    let c = ctr(
        "polns",
        &path,
        json!({"io.kubernetes.cri.sandbox-namespace": "trusted-ns"}),
    );
    let want = "container: policy rule 1 (namespace trusted-ns)";
    // Before create: what create would choose.
    assert_eq!(ok(&c.v(&["explain", "--bundle", &bundle(&c)])).trim(), want);
    assert_eq!(ok(&c.v(&["explain", &bundle(&c)])).trim(), want);

    c.create();
    let st = c.state();
    assert_eq!(st["isolation"], "container", "{st}");
    assert_eq!(
        st["annotations"]["io.vessel.isolation.reason"], "policy rule 1 (namespace trusted-ns)",
        "{st}"
    );
    assert_eq!(
        st["annotations"]["io.kubernetes.cri.sandbox-namespace"],
        "trusted-ns"
    );
    assert_eq!(ok(&c.v(&["explain", &c.id])).trim(), want);
    ok(&c.v(&["delete", "--force", &c.id]));
    assert_eq!(c.leftovers(), Vec::<String>::new());

    // Another namespace falls through to the file's default; the flag
    // default comes before the file's; the annotation before the rules.
    let other = ctr(
        "polother",
        &path,
        json!({"io.kubernetes.pod.namespace": "other"}),
    );
    assert_eq!(
        ok(&other.v(&["explain", "--bundle", &bundle(&other)])).trim(),
        "vm: default (isolation in the config file)"
    );
    assert_eq!(
        ok(&other.v(&[
            "--isolation",
            "container",
            "explain",
            "--bundle",
            &bundle(&other)
        ]))
        .trim(),
        "container: default (--isolation)"
    );
    let pinned = ctr(
        "polpin",
        &path,
        json!({"io.kubernetes.pod.namespace": "trusted-ns", "io.vessel.isolation": "vm"}),
    );
    assert_eq!(
        ok(&pinned.v(&["explain", "--bundle", &bundle(&pinned)])).trim(),
        "vm: annotation io.vessel.isolation"
    );
}

#[test]
fn untrusted_image_is_explained_with_its_rule() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        &dir,
        "[policy]\ntrusted_registries = [\"registry.example.com\"]\n\
         [[policy.rule]]\nmode = \"container\"\nhost_network = true\n\
         [[policy.rule]]\nmode = \"vm\"\nuntrusted_image = true\n\
         [[policy.rule]]\nmode = \"container\"\n",
    );
    let c = ctr(
        "polimg",
        &path,
        json!({"io.kubernetes.cri.image-name": "busybox:1.36"}),
    );
    assert_eq!(
        ok(&c.v(&["explain", "--bundle", &bundle(&c)])).trim(),
        "vm: policy rule 2 (image not from a trusted registry: docker.io/library/busybox:1.36)"
    );
    let c = ctr(
        "poltrust",
        &path,
        json!({"io.kubernetes.cri.image-name": "registry.example.com/app:1"}),
    );
    assert_eq!(
        ok(&c.v(&["explain", "--bundle", &bundle(&c)])).trim(),
        "container: policy rule 3 (matches every container)"
    );
}

#[test]
fn vm_for_the_host_network_is_refused_and_leaves_nothing() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        &dir,
        "[[policy.rule]]\nmode = \"vm\"\nnamespaces = [\"ci\"]\n",
    );
    let mut c = ctr(
        "polhostnet",
        &path,
        json!({"io.kubernetes.pod.namespace": "ci"}),
    );
    let ns = c.config()["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "network");
    c.write();
    let msg = fails(&c.create_with(&[]));
    assert!(
        msg.contains("linux.namespaces")
            && msg.contains("host's network")
            && msg.contains("policy rule 1 (namespace ci)")
            && msg.contains(&c.id),
        "{msg}"
    );
    assert!(!c.root().join(&c.id).exists());
    assert_eq!(c.leftovers(), Vec::<String>::new());
    let msg = fails(&c.v(&["explain", "--bundle", &bundle(&c)]));
    assert!(
        msg.contains("linux.namespaces") && msg.contains("host's network"),
        "{msg}"
    );
}

#[test]
fn a_bad_policy_names_the_file_and_the_rule() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        &dir,
        "[[policy.rule]]\nmode = \"container\"\nprivileged = true\n\
         [[policy.rule]]\nmode = \"vm\"\nhost_network = true\n",
    );
    let c = ctr("polbad", &path, json!({}));
    let msg = fails(&c.create_with(&[]));
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("policy rule 2"),
        "{msg}"
    );
    assert!(!c.root().join(&c.id).exists());
    assert_eq!(c.leftovers(), Vec::<String>::new());
    let msg = fails(&c.v(&["explain", &bundle(&c)]));
    assert!(msg.contains("policy rule 2"), "{msg}");
}
