//! `vessel features`: what this runtime supports, in the JSON shape of
//! `runc features` (the OCI runtime-features document).

use serde_json::json;

const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
    // spec-mount: symlink control and the recursive (mount_setattr) options.
    "nosymfollow",
    "symfollow",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
    "idmap",
    "ridmap",
];

const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub fn run(cli: &super::Cli) -> anyhow::Result<u8> {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut doc = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": CAPABILITIES,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": { "enabled": std::path::Path::new("/sys/kernel/security/apparmor").exists() },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": vessel::rootfs::idmap_supported() } }
        },
        "annotations": {
            "io.vessel.version": env!("CARGO_PKG_VERSION"),
            "io.vessel.cgroup.host": if v2 { "v2" } else { "v1" },
            "io.vessel.isolation.modes": "container"
        }
    });
    // Process attributes: the memory policy in the spec's schema; the
    // scheduler, the exec CPU affinity and the personality, which the schema
    // has no place for, as annotations (comma-separated lists).
    {
        use vessel::spec::{mempolicy, sched};
        doc["linux"]["memoryPolicy"] = json!({
            "modes": mempolicy::MODES,
            "flags": mempolicy::FLAGS,
        });
        let a = &mut doc["annotations"];
        a["io.vessel.process.scheduler.policies"] = json!(sched::POLICIES.join(","));
        a["io.vessel.process.scheduler.flags"] = json!(sched::FLAGS.join(","));
        a["io.vessel.process.execCPUAffinity"] = json!("initial,final");
        a["io.vessel.linux.personality.domains"] = json!("LINUX,LINUX32");
    }
    // vm mode: what `create` would find (the accelerator probe is cached).
    let config =
        vessel::vm::RuntimeConfig::load(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
    let a = &mut doc["annotations"];
    match vessel::vm::resolve::resolve(&config.vm) {
        Ok(host) => {
            a["io.vessel.isolation.modes"] = json!("container,vm");
            a["io.vessel.vm.engine"] = json!(host.engine.name());
            a["io.vessel.vm.accel"] = json!(host.engine.accel());
            a["io.vessel.vm.engine.reason"] = json!(host.reason);
            a["io.vessel.vm.kernel"] = json!(host.kernel.image);
        }
        Err(e) => a["io.vessel.vm.unavailable"] = json!(e),
    }
    if let Ok(host) = vessel_cgroups::Host::detect() {
        for (k, v) in vessel_cgroups::blockio_mechanisms::host_report(&host) {
            a[k] = json!(v);
        }
    }
    a["io.vessel.isolation.default"] = json!(cli
        .isolation
        .or(config.isolation)
        .unwrap_or_default()
        .to_string());
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(0)
}
