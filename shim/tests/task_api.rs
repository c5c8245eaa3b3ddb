//! The Task service requests `ctr` cannot send (Update, ResizePty,
//! Connect, errors of unknown processes, Checkpoint's code), sent over
//! ttrpc straight to a shim that a private containerd (Debian's 1.6)
//! started for a `ctr run -d` task.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim::api::{
    CheckpointTaskRequest, ConnectRequest, ResizePtyRequest, StateRequest, UpdateTaskRequest,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{self, context, Code};
use containerd_shim::protos::TaskClient;
use vessel_tests::clients::{self, Scratch, IMAGE};
use vessel_tests::shim_client::{ShimContainerd, RUNTIME, SHIM_VESSEL_ROOT};

const LIMIT: Duration = Duration::from_secs(60);

/// A containerd with the shim under test; each test has its own
/// namespace (so its own vessel root and cgroups).
struct Env {
    c: ShimContainerd,
    ns: &'static str,
    _scratch: Scratch,
}

impl Env {
    fn new(ns: &'static str) -> Option<Env> {
        let bins = clients::require_clients(&["containerd", "ctr"])?;
        let mut scratch = Scratch::new(ns);
        scratch.vessel_root(Path::new(SHIM_VESSEL_ROOT).join(ns));
        scratch.cgroup(ns);
        let c = ShimContainerd::start(&bins[0], &bins[1], &scratch.path);
        let archive = clients::busybox_image_archive(&scratch.path);
        c.ctr(ns, &["image", "import", archive.to_str().unwrap()], LIMIT)
            .check();
        Some(Env {
            c,
            ns,
            _scratch: scratch,
        })
    }

    fn ctr(&self, args: &[&str]) -> clients::Run {
        self.c.ctr(self.ns, args, LIMIT)
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.c
            .state
            .join("io.containerd.runtime.v2.task")
            .join(self.ns)
            .join(id)
    }

    /// A ttrpc client of the shim serving `id`, through the address the
    /// shim's `start` wrote into the bundle.
    fn client(&self, id: &str) -> TaskClient {
        let address = std::fs::read_to_string(self.bundle(id).join("address")).unwrap();
        TaskClient::new(ttrpc::Client::connect(address.trim()).unwrap())
    }

    fn wait_running(&self, id: &str) {
        let ok = clients::wait_until(Duration::from_secs(20), || {
            self.ctr(&["task", "ls"])
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains("RUNNING"))
        });
        assert!(ok, "{id} does not run");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.c.remove_everything();
        let _ = std::fs::remove_dir(Path::new(SHIM_VESSEL_ROOT).join(self.ns));
    }
}

fn ctx() -> ttrpc::context::Context {
    context::with_timeout(Duration::from_secs(20).as_nanos() as i64)
}

fn code_of(e: &ttrpc::Error) -> Option<Code> {
    match e {
        ttrpc::Error::RpcStatus(s) => Some(s.code()),
        _ => None,
    }
}

fn memory_limit(ns: &str, id: &str) -> String {
    let f = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        format!("/sys/fs/cgroup/{ns}/{id}/memory.max")
    } else {
        format!("/sys/fs/cgroup/memory/{ns}/{id}/memory.limit_in_bytes")
    };
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{f}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn update_connect_errors_and_checkpoint() {
    let Some(env) = Env::new("vshim-api") else {
        return;
    };
    let id = "api";
    env.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "67108864",
        IMAGE,
        id,
        "sleep",
        "1000",
    ])
    .check();
    env.wait_running(id);
    let client = env.client(id);

    // Connect: the shim's pid and the task's.
    let r = client
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(Some(r.shim_pid as i32), env.c.shim_pid_of(env.ns, id));
    let st = clients::vessel_state(&Path::new(SHIM_VESSEL_ROOT).join(env.ns), id).unwrap();
    assert_eq!(r.task_pid as i64, st["pid"].as_i64().unwrap());

    // Update: containerd sends the OCI LinuxResources as JSON.
    assert_eq!(memory_limit(env.ns, id), "67108864");
    client
        .update(
            ctx(),
            &UpdateTaskRequest {
                id: id.into(),
                resources: MessageField::some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .into(),
                    value: br#"{"memory":{"limit":33554432}}"#.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(memory_limit(env.ns, id), "33554432");
    // A resource vessel refuses: the error names it, the limit stays.
    let e = client
        .update(
            ctx(),
            &UpdateTaskRequest {
                id: id.into(),
                resources: MessageField::some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .into(),
                    value: br#"{"memory":{"limit":"lots"}}"#.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("vessel update api"), "{e}");
    assert_eq!(memory_limit(env.ns, id), "33554432");

    // Unknown container and exec ids: NOT_FOUND, named.
    let e = client
        .state(
            ctx(),
            &StateRequest {
                id: id.into(),
                exec_id: "nope".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(&e), Some(Code::NOT_FOUND), "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
    let e = client
        .state(
            ctx(),
            &StateRequest {
                id: "ghost".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(&e), Some(Code::NOT_FOUND), "{e}");

    // ResizePty of a process without a terminal is refused.
    let e = client
        .resize_pty(
            ctx(),
            &ResizePtyRequest {
                id: id.into(),
                width: 80,
                height: 24,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(&e), Some(Code::FAILED_PRECONDITION), "{e}");

    let e = client
        .checkpoint(
            ctx(),
            &CheckpointTaskRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(&e), Some(Code::UNIMPLEMENTED), "{e}");
}

/// ResizePty sets the window size of the task's terminal, which the
/// container then reads with `stty size`.
#[test]
fn resize_pty() {
    let Some(env) = Env::new("vshim-pty") else {
        return;
    };
    let id = "tty";
    let Some(script) = clients::which("script") else {
        eprintln!("SKIP: script (bsdutils) is not installed");
        return;
    };
    // `ctr run -t` wants a terminal of its own even when detached.
    let line = env.c.ctr_cmdline(
        env.ns,
        &[
            "run",
            "-d",
            "-t",
            "--runtime",
            RUNTIME,
            IMAGE,
            id,
            "sleep",
            "1000",
        ],
    );
    clients::run(
        std::process::Command::new(script).args(["-eqc", &line, "/dev/null"]),
        LIMIT,
    )
    .check();
    env.wait_running(id);
    env.client(id)
        .resize_pty(
            ctx(),
            &ResizePtyRequest {
                id: id.into(),
                width: 123,
                height: 45,
                ..Default::default()
            },
        )
        .unwrap();
    let r = env
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "s",
            id,
            "stty",
            "-F",
            "/dev/pts/0",
            "size",
        ])
        .check();
    assert_eq!(r.stdout.trim(), "45 123", "{r}");
}

/// An exec whose `vessel exec` fails (a missing binary) is released at
/// once: Start fails naming the binary, Wait answers without waiting (it
/// never did, and containerd's ExecSync then sat out its 60 s deadline),
/// Kill says it is finished (which containerd tolerates) and Delete
/// removes it. Through ttrpc, as containerd sends it.
#[test]
fn failed_exec_start_releases_its_waiters() {
    use containerd_shim::api::{
        DeleteRequest, ExecProcessRequest, KillRequest, StartRequest, WaitRequest,
    };
    let Some(env) = Env::new("vshim-execfail") else {
        return;
    };
    let id = "execfail";
    env.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "sleep",
        "1000",
    ])
    .check();
    env.wait_running(id);
    let client = env.client(id);
    let process = serde_json::json!({
        "args": ["/no/such/binary"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0}
    });
    client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: id.into(),
                exec_id: "missing".into(),
                spec: MessageField::some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: serde_json::to_vec(&process).unwrap(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    // containerd waits before it starts: a Wait already in flight.
    let waiter = {
        let client = client.clone();
        std::thread::spawn(move || {
            client.wait(
                ctx(),
                &WaitRequest {
                    id: "execfail".into(),
                    exec_id: "missing".into(),
                    ..Default::default()
                },
            )
        })
    };
    let e = client
        .start(
            ctx(),
            &StartRequest {
                id: id.into(),
                exec_id: "missing".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("/no/such/binary"), "{e}");
    // ctx() allows 20 s: a Wait still blocked fails with a timeout.
    let w = waiter.join().unwrap();
    assert!(w.is_ok(), "Wait on the failed exec: {w:?}");
    let e = client
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                exec_id: "missing".into(),
                signal: 9,
                all: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(&e), Some(Code::NOT_FOUND), "{e}");
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                exec_id: "missing".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let e = client
        .state(
            ctx(),
            &StateRequest {
                id: id.into(),
                exec_id: "missing".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(code_of(&e), Some(Code::NOT_FOUND), "{e}");
}
