//! Starters for the real servers the tests run on loopback (HAProxy, nginx, Prometheus,
//! Alertmanager, PostgreSQL, Redis), each in a temp folder and its own
//! process group, ended by that group (SIGKILL) when its [`Server`] handle drops.

mod alertmanager;
mod chromium;
mod haproxy;
mod nginx;
#[cfg(feature = "postgres")]
mod postgres;
mod prometheus;
mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use alertmanager::Alertmanager;
pub use chromium::{Browser, Element};
pub use haproxy::{haproxy, haproxy_socket, haproxy_tcp_api, haproxy_with};
pub use nginx::{nginx, nginx_base_args, nginx_router_config};
#[cfg(feature = "postgres")]
pub use postgres::Postgres;
pub use prometheus::Prometheus;
pub use redis::redis;

/// Finds a Debian-packaged server binary or fails the test with the install command.
pub fn find_bin(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found on PATH or in /usr/sbin; install with: apt-get install -y {name}");
}

/// A server process, its temp folder and the port it serves on.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The file `name` in the server's folder (its logs), empty when missing.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Waits (blocking, up to the patience) until the server answers `GET /-/ready` with 200,
    /// as Prometheus and Alertmanager do once ready; fails with its log (`log`, a file in its
    /// folder) if it exits first.
    pub(crate) fn wait_ready(&mut self, what: &str, log: &str) {
        let deadline = Instant::now() + crate::patience();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{what} exited with {status}: {}", self.log(log));
            }
            if crate::http_get(self.port, "/-/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what} did not become ready on port {}", self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` in a process group of its own, stdout and stderr to `log`.
fn spawn(mut cmd: Command, log: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Waits until something listens on 127.0.0.1:`port`; fails with the log if `child` exits first.
async fn wait_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {port} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
