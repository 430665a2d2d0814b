//! Test support for Backstop's end-to-end tests, never linked into shipped code: real
//! `backstop serve` processes and the CLI against them ([`Daemon`]), the real servers the tests
//! run on loopback ([`servers`]: HAProxy, nginx, Prometheus, PostgreSQL), tiny upstreams and
//! steady traffic ([`upstream`], [`Traffic`]), and [`assert_eventually!`].
//!
//! Every process a starter begins runs in its own process group and is ended by that group when
//! its handle drops, never by name: tests running in parallel do not touch each other's.

pub mod agent;
mod daemon;
pub mod disk;
mod eventually;
#[cfg(feature = "server")]
pub mod in_process;
pub mod link;
pub mod netns;
pub mod routing;
pub mod servers;
mod traffic;
pub mod upstream;
pub mod webhook;

use std::time::Duration;

pub use agent::Agent;
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

/// How long after `since` every answer of the proxy on `port` came from `version` (the first
/// of 50 in a row), asking until `patience` has passed; `None` if that never happened.
pub fn all_answers_from(
    port: u16,
    version: &str,
    since: std::time::Instant,
    patience: Duration,
) -> Option<Duration> {
    let header = format!("x-backstop-version: {version}\r\n");
    let (mut streak_from, mut streak) = (None, 0);
    while since.elapsed() < patience + Duration::from_secs(1) {
        if http_get(port, "/").is_some_and(|a| a.contains(&header)) {
            streak_from.get_or_insert(since.elapsed());
            streak += 1;
            if streak >= 50 {
                return streak_from.filter(|at| *at < patience);
            }
        } else {
            (streak_from, streak) = (None, 0);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Makes a FIFO (named pipe) at `path`, with the system's `mkfifo`.
pub fn make_fifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A small deterministic generator (SplitMix64), so random kill points and delays are
/// reproducible from a seed.
pub struct SplitMix(pub u64);

impl SplitMix {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The number in environment variable `name`, or `default` (a longer run on demand).
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
