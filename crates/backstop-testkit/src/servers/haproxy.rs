//! A real HAProxy on loopback with its runtime API on a Unix socket and a TCP port.

use std::path::PathBuf;
use std::process::Command;

use super::{Server, find_bin, spawn, wait_port};
use crate::free_port;

/// HAProxy with a stats socket (`admin.sock` in its dir) and backend `app` holding placeholder
/// servers `stable` and `canary` (both in maintenance until a router applies routes).
pub async fn haproxy() -> Server {
    haproxy_with("").await
}

/// [`haproxy`] with `server_opts` appended to both server lines (e.g. health checks).
pub async fn haproxy_with(server_opts: &str) -> Server {
    let bin = find_bin("haproxy");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sock = dir.path().join("admin.sock");
    let api_port = free_port();
    let cfg = format!(
        "global\n  stats socket {sock} level admin\n  stats socket ipv4@127.0.0.1:{api_port} level admin\n  maxconn 2000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  timeout http-keep-alive 30s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend app\n\
         backend app\n  balance roundrobin\n  server stable 127.0.0.1:1 weight 100 disabled {server_opts}\n  server canary 127.0.0.1:1 weight 0 disabled {server_opts}\n",
        sock = sock.display()
    );
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = dir.path().join("haproxy.log");
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&cfg_path).arg("-db");
    let mut child = spawn(cmd, &log);
    wait_port(port, &mut child, "haproxy", &log).await;
    // The frontend may listen before the runtime API does (seen on a busy machine).
    wait_port(api_port, &mut child, "haproxy", &log).await;
    let deadline = std::time::Instant::now() + crate::patience();
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "haproxy did not create its runtime API socket {}",
            sock.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::write(dir.path().join("api_port"), api_port.to_string()).unwrap();
    Server { child, dir, port }
}

/// The runtime API's Unix socket.
pub fn haproxy_socket(s: &Server) -> PathBuf {
    s.dir.path().join("admin.sock")
}

/// The runtime API's TCP address (`127.0.0.1:<port>`).
pub fn haproxy_tcp_api(s: &Server) -> String {
    let port = std::fs::read_to_string(s.dir.path().join("api_port")).unwrap();
    format!("127.0.0.1:{port}")
}
