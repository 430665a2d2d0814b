//! Clients ride out a daemon restart: `rollout start --wait` used to exit 3 when the daemon
//! restarted although the rollout went on and was promoted, failing the CI job that ran it.
//! And a closed pipe on stdout ends a command quietly.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use backstop_testkit::{Daemon, backstop_bin, rollout_start_args};

#[test]
fn rollout_start_wait_follows_the_rollout_across_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(dir.path(), "[{weight: 50, for: 4s}, {weight: 100}]");
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    d.register("v2", 0.0);

    let waiting = d.cli_background(&rollout_start_args("v2", &["--wait", "--output", "json"]));
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    d.restart_on_same_port();

    let out = waiting.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", d.log());
    assert!(
        stderr.contains("cannot be reached"),
        "says it is retrying: {stderr}"
    );
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(detail["rollout"]["phase"], "promoted", "{detail:#}");
}

#[test]
fn a_closed_pipe_on_stdout_ends_a_command_quietly() {
    // Completions are larger than a pipe's buffer, so the write really meets the closed pipe.
    let mut cli = Command::new(backstop_bin())
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe, as `| head -c 1` does.
    let mut first = [0u8; 1];
    cli.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let mut stderr = String::new();
    cli.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = cli.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}
