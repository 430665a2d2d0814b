//! Test support for Backstop's end-to-end tests, never linked into shipped code: real
//! `backstop serve` processes and the CLI against them ([`Daemon`]), the real servers the tests
//! run on loopback ([`servers`]: HAProxy, nginx, Prometheus, PostgreSQL), tiny upstreams and
//! steady traffic ([`upstream`], [`Traffic`]), and [`assert_eventually!`].
//!
//! Every process a starter begins runs in its own process group and is ended by that group when
//! its handle drops, never by name: tests running in parallel do not touch each other's.

mod daemon;
pub mod disk;
mod eventually;
#[cfg(feature = "server")]
pub mod in_process;
pub mod routing;
pub mod servers;
mod traffic;
pub mod upstream;

use std::time::Duration;

pub use daemon::{
    DEMO_APP_RUN, Daemon, audit_actions, backstop_bin, instance_pids, item_with, rollback_args,
    rollout_start_args, shop_config, shop_config_all_at_once, step_kinds, texts_of,
};
pub use eventually::poll_until;
pub use traffic::Traffic;

/// How long eventual conditions may take; slow CI machines can raise it
/// (`BACKSTOP_TEST_PATIENCE_S`, default 120).
pub fn patience() -> Duration {
    let secs = std::env::var("BACKSTOP_TEST_PATIENCE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A plain blocking `GET path` on 127.0.0.1:`port`: the whole answer (status line, headers,
/// body), or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Makes a FIFO (named pipe) at `path`, with the system's `mkfifo`.
pub fn make_fifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}
