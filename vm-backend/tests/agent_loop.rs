//! The guest agent's protocol loop, run on the host over a socket pair with
//! the [`CommandRunner`]: no VM needed. This file holds a single test on
//! purpose: the agent reaps every child of its process, as PID 1 does.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use oci_spec::runtime::{Process, ProcessBuilder};
use vessel_vm::agent::guest::{serve, CommandRunner};
use vessel_vm::agent::host::AgentClient;
use vessel_vm::agent::RunProcess;
use vessel_vm::Error;

fn process(args: &[&str], env: &[&str], cwd: &str) -> Process {
    ProcessBuilder::default()
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .cwd(cwd)
        .build()
        .expect("process")
}

fn request(id: u32, process: Process) -> RunProcess {
    RunProcess {
        id,
        process,
        rootfs: None,
        mounts: Vec::new(),
        hostname: None,
        ..Default::default()
    }
}

#[test]
fn agent_runs_processes_over_a_stream() {
    let (host, guest) = UnixStream::pair().expect("socketpair");
    let agent = thread::spawn(move || {
        serve(
            File::from(OwnedFd::from(guest)),
            Arc::new(CommandRunner::default()),
            "test-agent",
            Some(1),
        )
    });
    let client = AgentClient::from_stream(host).expect("client");
    let timeout = Some(Duration::from_secs(30));
    let info = client.wait_hello(Duration::from_secs(10)).expect("hello");
    assert_eq!(info.agent, "test-agent");
    assert_eq!(info.init_ms, Some(1));

    // Output, env and cwd, exit code.
    client
        .run_process(request(
            1,
            process(
                &["/bin/sh", "-c", "echo $A; pwd; echo e >&2; exit 3"],
                &["A=b c"],
                "/tmp",
            ),
        ))
        .unwrap();
    let out = client.wait_process(1, timeout).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b c\n/tmp\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "e\n");
    assert_eq!((out.code, out.signal), (3, None));

    // Stdin, closed by an empty frame.
    client
        .run_process(request(2, process(&["/bin/cat"], &[], "/")))
        .unwrap();
    client.write_stdin(2, b"through stdin").unwrap();
    client.write_stdin(2, b"").unwrap();
    let out = client.wait_process(2, timeout).unwrap();
    assert_eq!(out.stdout, b"through stdin");
    assert_eq!(out.code, 0);

    // Signals.
    client
        .run_process(request(3, process(&["/bin/sleep", "60"], &[], "/")))
        .unwrap();
    client.signal(3, 15).unwrap();
    let out = client.wait_process(3, timeout).unwrap();
    assert_eq!((out.code, out.signal), (143, Some(15)));

    // A program that does not exist: an error naming it.
    client
        .run_process(request(4, process(&["/nonexistent/prog"], &[], "/")))
        .unwrap();
    let err = client.wait_process(4, timeout).unwrap_err();
    assert!(
        matches!(&err, Error::Agent(m) if m.contains("/nonexistent/prog")),
        "{err}"
    );

    // OCI mounts need the container runner: a clear error.
    let mut with_mounts = request(5, process(&["/bin/true"], &[], "/"));
    with_mounts.mounts = vec![oci_spec::runtime::Mount::default()];
    client.run_process(with_mounts).unwrap();
    let err = client.wait_process(5, timeout).unwrap_err();
    assert!(err.to_string().contains("container runner"), "{err}");

    // Exec of a second process while none runs, then shutdown.
    client
        .exec(6, process(&["/bin/echo", "exec"], &[], "/"))
        .unwrap();
    assert_eq!(client.wait_process(6, timeout).unwrap().stdout, b"exec\n");

    client.shutdown().unwrap();
    agent.join().expect("agent thread").expect("agent result");
}
