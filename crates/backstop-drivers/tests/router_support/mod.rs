//! Harness for router tests: real `haproxy` and `nginx` started on loopback in a temp dir,
//! tiny upstreams that answer with their version, and a steady load.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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

pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

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

/// An upstream answering `ok <version>` with header `x-backstop-version: <version>`; `/fail`
/// answers 500.
pub async fn upstream(version: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let version = version.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let version = version.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let version = version.clone();
                    async move {
                        let mut r = Response::new(Full::new(Bytes::from(format!("ok {version}"))));
                        if req.uri().path() == "/fail" {
                            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        r.headers_mut()
                            .insert("x-backstop-version", version.parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A server process killed (whole process group) on drop.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
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
    std::fs::write(dir.path().join("api_port"), api_port.to_string()).unwrap();
    Server { child, dir, port }
}

pub fn haproxy_socket(s: &Server) -> PathBuf {
    s.dir.path().join("admin.sock")
}

/// The runtime API's TCP address (`127.0.0.1:<port>`).
pub fn haproxy_tcp_api(s: &Server) -> String {
    let port = std::fs::read_to_string(s.dir.path().join("api_port")).unwrap();
    format!("127.0.0.1:{port}")
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
pub fn nginx_router_config(s: &Server) -> backstop_drivers::router::nginx::NginxConfig {
    use backstop_drivers::router::command::Cmd;
    use backstop_drivers::router::nginx::NginxConfig;
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

/// Puts `router` through 0 → 10 → 50 → 100 → 0 % under a steady 300 req/s through `front` and
/// asserts zero failed requests and, per step, a measured split within 6 points of the weight
/// (after 150 ms for the switch to settle). Returns (requests sent, per-step measured %).
pub async fn switch_under_load(
    router: &dyn backstop_drivers::router::TrafficRouter,
    front: SocketAddr,
    v1: SocketAddr,
    v2: SocketAddr,
) -> (u64, Vec<(f64, f64)>) {
    use backstop_drivers::load::{LoadConfig, LoadGen};
    use backstop_drivers::proxy::{Routes, Upstream};
    let routes = |w: f64| Routes {
        stable: Some(Upstream {
            version: "v1".into(),
            addr: v1,
        }),
        canary: Some(Upstream {
            version: "v2".into(),
            addr: v2,
        }),
        canary_weight: w,
    };
    router.apply(&routes(0.0)).await.expect("initial apply");
    let load = LoadGen::start(LoadConfig {
        target: front,
        path: "/".into(),
        rate_per_s: 300.0,
        concurrency: 32,
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut measured = Vec::new();
    for w in [10.0, 50.0, 100.0, 0.0] {
        router
            .apply(&routes(w))
            .await
            .unwrap_or_else(|e| panic!("apply {w}%: {e}"));
        let cur = router.current().await.expect("current");
        assert_eq!(cur.canary_weight, w, "current after apply {w}%: {cur:?}");
        assert_eq!(cur.canary.as_ref().map(|u| u.version.as_str()), Some("v2"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = load.stats();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let after = load.stats();
        let n = |s: &backstop_drivers::load::LoadStats, v: &str| {
            s.ok_by_version.get(v).copied().unwrap_or(0)
        };
        let c = n(&after, "v2") - n(&before, "v2");
        let s = n(&after, "v1") - n(&before, "v1");
        assert!(c + s > 150, "too few requests in the window: {}", c + s);
        let pct = c as f64 * 100.0 / (c + s) as f64;
        assert!(
            (pct - w).abs() <= 6.0,
            "weight {w}%: measured {pct:.1}% to canary ({c} of {})",
            c + s
        );
        measured.push((w, pct));
    }
    let stats = load.stop().await;
    assert_eq!(
        stats.failed, 0,
        "failed requests during the switches: {stats:?}"
    );
    assert!(stats.ok > 1000, "load too small: {stats:?}");
    (stats.sent, measured)
}
