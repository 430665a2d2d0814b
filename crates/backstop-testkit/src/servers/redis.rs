//! A real Redis server on loopback: no persistence, its own temp folder and process group.

use std::process::Command;

use super::{Server, find_bin, spawn, wait_port};

/// Starts `redis-server` (Debian package `redis-server`) on a free port and waits until it
/// listens. Its process group ends when the handle drops.
pub async fn redis() -> Server {
    let binary = find_bin("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let log = dir.path().join("redis.log");
    let mut cmd = Command::new(binary);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
    ])
    .arg(dir.path());
    let mut child = spawn(cmd, &log);
    wait_port(port, &mut child, "redis-server", &log).await;
    Server { child, dir, port }
}
