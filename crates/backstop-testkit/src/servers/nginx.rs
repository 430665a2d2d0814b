//! A real nginx on loopback whose upstream a router rewrites and reloads.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use backstop_drivers::router::command::Cmd;
use backstop_drivers::router::nginx::NginxConfig;

use super::{Server, find_bin, spawn, wait_port};
use crate::free_port;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// nginx in the foreground with `upstream.conf` (upstream `app`, initially one server at
/// `initial`) included in `http`, proxying everything to `app`.
///
/// Client keep-alive is off (`keepalive_timeout 0`): on reload nginx's old workers close their
/// *idle* keep-alive connections at once, and a client that sends a request on one at that
/// instant sees the connection reset (an nginx property, not the router's; browsers retry such
/// requests, the test's load generator does not). With it off, a reload loses nothing.
pub async fn nginx(initial: SocketAddr) -> Server {
    let bin = find_bin("nginx");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display().to_string();
    let user = if is_root() { "user root root;\n" } else { "" };
    let cfg = format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           keepalive_timeout 0;\n\
           include {d}/upstream.conf;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), cfg).unwrap();
    std::fs::write(
        dir.path().join("upstream.conf"),
        format!("upstream app {{\n    server {initial};\n}}\n"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(bin);
    cmd.args(nginx_base_args(dir.path()));
    let mut child = spawn(cmd, &log);
    wait_port(port, &mut child, "nginx", &log).await;
    Server { child, dir, port }
}

/// `-p <dir> -e <dir>/error.log -c <dir>/nginx.conf`.
pub fn nginx_base_args(dir: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
        "-c".into(),
        dir.join("nginx.conf").display().to_string(),
    ]
}

/// Router settings for the nginx started by [`nginx`].
pub fn nginx_router_config(s: &Server) -> NginxConfig {
    let bin = find_bin("nginx").display().to_string();
    let base = nginx_base_args(s.dir.path());
    let mut cfg = NginxConfig::new(
        Path::new(&bin),
        &s.dir.path().join("nginx.conf"),
        Some(s.dir.path()),
        "app",
        s.dir.path().join("upstream.conf"),
    );
    cfg.test_command = Cmd::Argv(
        [
            vec![bin.clone()],
            base.clone(),
            vec!["-t".into(), "-q".into()],
        ]
        .concat(),
    );
    cfg.reload_command = Cmd::Argv([vec![bin], base, vec!["-s".into(), "reload".into()]].concat());
    cfg.pid_file = Some(s.dir.path().join("nginx.pid"));
    cfg
}
