//! The guest side of a VM pod: the pod's later containers ("members",
//! see [`crate::vm::pod`]) are made by the guest's vessel like the first
//! one, each from the image on its pod slot with an overlay on the
//! writable disk, joining the first container's namespaces by path.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use oci_spec::runtime::Process;
use vessel_vm::agent::guest::{mount_member_rootfs, unmount_member_rootfs, Spawned};
use vessel_vm::agent::{GuestFile, GuestFileKind, RunProcess};
use vessel_vm::{Error, Result};

use super::{agent_err, helper_ps, ContainerRunner, GUEST_BUNDLES, GUEST_STATE};
use crate::vm::guest_helper::HelperRequest;

/// Where members' root filesystems are assembled.
const MEMBERS: &str = "/run/vessel/members";
/// Their writable layers, on the writable disk the first container's
/// root filesystem mounted there.
const MEMBER_LAYERS: &str = "/run/vessel/rw/members";

fn layers(id: &str) -> PathBuf {
    Path::new(MEMBER_LAYERS).join(id)
}

/// The file under `/proc/<pid>/ns/` of a namespace type as config.json
/// names it.
fn proc_ns(kind: &str) -> &str {
    match kind {
        "network" => "net",
        "mount" => "mnt",
        k => k,
    }
}

impl ContainerRunner {
    /// The bundle of member `id`.
    fn member(&self, id: &str) -> Result<PathBuf> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| agent_err(format!("no container {id:?} in this pod")))
    }

    pub(super) fn create_member_in(
        &self,
        request: &RunProcess,
        sandbox: &str,
        join: &[String],
    ) -> Result<Spawned> {
        let id = request
            .container_id
            .clone()
            .ok_or_else(|| agent_err("a container of the pod needs a container id"))?;
        let (first, _) = self.container()?;
        if first != sandbox {
            return Err(agent_err(format!(
                "container {id:?}: this VM runs the pod of {first:?}, not {sandbox:?}"
            )));
        }
        if self.member(&id).is_ok() {
            return Err(agent_err(format!(
                "container {id:?} already exists in this pod"
            )));
        }
        let mut config = *request
            .config
            .clone()
            .ok_or_else(|| agent_err("the container runner needs an OCI config"))?;
        let rootfs = request
            .rootfs
            .as_ref()
            .ok_or_else(|| agent_err("the container runner needs a root filesystem"))?;
        let pid = crate::container::Container::peek(Path::new(GUEST_STATE), sandbox)
            .map(|c| c.state.pid)
            .map_err(agent_err)?;
        if pid <= 0 {
            return Err(agent_err(format!(
                "the pod sandbox {sandbox:?} does not run"
            )));
        }
        let dir = Path::new(MEMBERS).join(&id);
        let root = mount_member_rootfs(rootfs, &dir, &layers(&id), Duration::from_secs(20))?;
        let undo = |e: Error| {
            let _ = unmount_member_rootfs(&dir, &layers(&id));
            e
        };
        write_files(&request.files).map_err(undo)?;
        let mut r = config.root().clone().unwrap_or_default();
        r.set_path(root);
        config.set_root(Some(r));
        if let Some(mut linux) = config.linux().clone() {
            if let Some(mut list) = linux.namespaces().clone() {
                for ns in list.iter_mut() {
                    let kind = serde_json::to_value(ns.typ())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    if join.contains(&kind) {
                        ns.set_path(Some(format!("/proc/{pid}/ns/{}", proc_ns(&kind)).into()));
                    }
                }
                linux.set_namespaces(Some(list));
            }
            config.set_linux(Some(linux));
        }
        let bundle = Path::new(GUEST_BUNDLES).join(&id);
        fs::create_dir_all(&bundle)
            .map_err(|e| Error::io(bundle.display().to_string(), e))
            .map_err(undo)?;
        let json = serde_json::to_vec(&config)
            .map_err(Error::BadMessage)
            .map_err(undo)?;
        fs::write(bundle.join("config.json"), json)
            .map_err(|e| Error::io("writing config.json", e))
            .map_err(undo)?;
        let spawned = self
            .spawn_with(
                &bundle,
                |console_socket| HelperRequest::Create {
                    root: GUEST_STATE.into(),
                    id: id.clone(),
                    bundle: bundle.clone(),
                    console_socket,
                },
                request.process.terminal().unwrap_or(false),
            )
            .map_err(|e| {
                let _ = fs::remove_dir_all(&bundle);
                undo(e)
            })?;
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, bundle);
        Ok(spawned)
    }

    pub(super) fn start_member(&self, id: &str) -> Result<()> {
        self.member(id)?;
        crate::container::start(Path::new(GUEST_STATE), id).map_err(agent_err)
    }

    pub(super) fn exec_member(&self, id: &str, process: &Process) -> Result<Spawned> {
        let bundle = self.member(id)?;
        let n = self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid_file = bundle.join(format!("exec-{n}.pid"));
        self.spawn_with(
            &bundle,
            |console_socket| HelperRequest::Exec {
                root: GUEST_STATE.into(),
                id: id.to_string(),
                process: Box::new(process.clone()),
                console_socket,
                pid_file,
            },
            process.terminal().unwrap_or(false),
        )
    }

    pub(super) fn signal_member(&self, id: &str, signal: i32) -> Result<()> {
        self.member(id)?;
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| agent_err(format!("invalid signal number {signal}")))?;
        crate::container::kill(Path::new(GUEST_STATE), id, Some(sig), true).map_err(agent_err)
    }

    pub(super) fn ps_member(&self, id: &str, format: &str) -> Result<String> {
        self.member(id)?;
        helper_ps(id.to_string(), format)
    }

    /// Removes member `id` and everything it holds in the guest.
    pub(super) fn delete_member_in(&self, id: &str) -> Result<()> {
        let bundle = self.member(id)?;
        crate::container::delete(Path::new(GUEST_STATE), id, true).map_err(agent_err)?;
        unmount_member_rootfs(&Path::new(MEMBERS).join(id), &layers(id))?;
        let _ = fs::remove_dir_all(&bundle);
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }
}

/// Creates the copies of a member's bind sources.
fn write_files(files: &[GuestFile]) -> Result<()> {
    for f in files {
        let path = Path::new(&f.path);
        let io = |e| Error::io(f.path.clone(), e);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        match &f.kind {
            GuestFileKind::Dir => fs::create_dir_all(path).map_err(io)?,
            GuestFileKind::File { base64 } => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(base64)
                    .map_err(|e| agent_err(format!("{}: {e}", f.path)))?;
                fs::write(path, data).map_err(io)?
            }
            GuestFileKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, path).map_err(io)?
            }
        }
        if !matches!(f.kind, GuestFileKind::Symlink { .. }) {
            fs::set_permissions(path, fs::Permissions::from_mode(f.mode)).map_err(io)?;
        }
    }
    Ok(())
}
