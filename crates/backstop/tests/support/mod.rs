//! Test harness: a real `backstop serve` process on loopback in a temp state folder, and the
//! CLI run as a real process against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backstop"))
}

/// How long eventual conditions may take; slow CI machines can raise it.
pub fn patience() -> Duration {
    let secs = std::env::var("BACKSTOP_TEST_PATIENCE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for service `shop` whose releases are the sample service in this binary.
pub fn config(proxy_port: u16, steps: &str) -> String {
    format!(
        r#"services:
  - name: shop
    owner: team-test
    tier: 1
    run:
      command: "{{artifact}} demo-app --port {{port}} --version {{version}}"
      health: {{http: /healthz, start_timeout: 20s}}
      scale_down_delay: 1s
    rollout:
      strategy: canary
      steps: {steps}
    analysis:
      interval: 1s
    environments:
      - name: prod
        listen: 127.0.0.1:{proxy_port}
"#
    )
}

pub struct Daemon {
    pub child: Option<Child>,
    pub api: String,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub proxy_port: u16,
    /// Extra environment of the daemon process (e.g. a database URL a config names).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    pub fn start(state_dir: &Path, config_text: &str, proxy_port: u16) -> Daemon {
        Self::start_with_env(state_dir, config_text, proxy_port, &[])
    }

    /// Starts a daemon whose process also gets `env`.
    pub fn start_with_env(
        state_dir: &Path,
        config_text: &str,
        proxy_port: u16,
        env: &[(&str, &str)],
    ) -> Daemon {
        std::fs::create_dir_all(state_dir).unwrap();
        let config = state_dir.join("backstop.yaml");
        std::fs::write(&config, config_text).unwrap();
        let mut d = Daemon {
            child: None,
            api: String::new(),
            state_dir: state_dir.to_path_buf(),
            config,
            proxy_port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.restart();
        d
    }

    pub fn restart(&mut self) {
        let port = free_port();
        self.api = format!("http://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start backstop serve");
        self.child = Some(child);
        let deadline = Instant::now() + patience();
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("daemon exited with {status}; log:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && self.state_dir.join("admin.token").exists()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .args(["--server", &self.api, "--state-dir"])
            .arg(&self.state_dir)
            .output()
            .expect("run backstop")
    }

    /// Runs the CLI and returns stdout parsed as JSON, asserting the exit code.
    pub fn cli_json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "backstop {args:?}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let deadline = Instant::now() + patience();
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            c.kill().unwrap();
            panic!("daemon did not stop on SIGTERM");
        }
    }

    pub fn register(&self, version: &str, error_ratio: f64) {
        self.register_with(
            version,
            &["--env", &format!("DEMO_ERROR_RATIO={error_ratio}")],
        );
    }

    /// `backstop release create shop --version VERSION --file <this binary> EXTRA…`.
    pub fn register_with(&self, version: &str, extra: &[&str]) -> serde_json::Value {
        let bin = bin();
        let mut args = vec![
            "release",
            "create",
            "shop",
            "--version",
            version,
            "--file",
            bin.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.cli_json(&args, 0)
    }

    /// `backstop rollout start shop --env prod --version VERSION --wait`, expecting exit `code`:
    /// the rollout's detail once it has ended.
    pub fn rollout_wait(&self, version: &str, code: i32) -> serde_json::Value {
        self.cli_json(
            &[
                "rollout",
                "start",
                "shop",
                "--env",
                "prod",
                "--version",
                version,
                "--wait",
            ],
            code,
        )
    }

    /// `backstop rollout start shop --env prod --version VERSION` (not waiting): the rollout id.
    pub fn rollout_start(&self, version: &str) -> String {
        let started = self.cli_json(
            &[
                "rollout",
                "start",
                "shop",
                "--env",
                "prod",
                "--version",
                version,
            ],
            0,
        );
        started["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a rollout id in {started:#}"))
            .to_string()
    }

    pub fn rollout(&self, id: &str) -> serde_json::Value {
        self.cli_json(&["rollout", "status", id], 0)
    }

    /// Polls until `pred` holds for the rollout's detail, or panics with the log.
    pub fn wait_rollout(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + patience();
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            last = self.rollout(id);
            if pred(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "rollout {id}: {what} did not happen; last: {last:#}\ndaemon log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Steady traffic through the proxy from a background thread, counting failures.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Traffic {
    pub fn start(proxy_port: u16, rate_per_s: f64) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let load =
                    backstop_drivers::load::LoadGen::start(backstop_drivers::load::LoadConfig {
                        target: ([127, 0, 0, 1], proxy_port).into(),
                        path: "/".into(),
                        rate_per_s,
                        concurrency: 32,
                    });
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let s = load.stop().await;
                (s.sent, s.failed)
            })
        });
        Traffic {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns (sent, failed).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Process groups of processes whose stdout goes to a log in this state folder: one per
/// instance this daemon started (and nobody else's, even with tests running in parallel).
pub fn instance_pids(state_dir: &Path) -> Vec<u32> {
    let logs = state_dir.join("logs");
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/fd/1"))
                .is_ok_and(|target| target.starts_with(&logs))
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A real Prometheus server on loopback (Debian package `prometheus`), scraping `targets`'
/// `/metrics` every second, its data in `dir`. Stopped (SIGKILL) on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
}

impl Prometheus {
    /// Starts Prometheus on `port` and waits until it answers `/-/ready`.
    pub fn start(port: u16, targets: &[String], dir: &Path) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "prometheus is not installed: apt-get install -y prometheus (scripts/test.sh does)",
            );
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: backstop\n    static_configs: [{{targets: [{}]}}]\n",
                quoted.join(", ")
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + patience();
        while Instant::now() < deadline {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!(
                    "prometheus exited with {status}: {}",
                    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            if http_get(port, "/-/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = p.child.kill();
        panic!("prometheus did not become ready on port {port}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain `GET path` on 127.0.0.1:`port`: the whole answer (status line, headers, body).
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
