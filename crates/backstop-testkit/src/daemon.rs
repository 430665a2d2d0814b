//! A real `backstop serve` process on loopback in a temp state folder, and the CLI run as a real
//! process against it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, patience};

/// The `backstop` binary cargo built for this test (or benchmark): `CARGO_BIN_EXE_backstop` at
/// run time when the runner sets it, else next to the test executable (`target/<profile>/`),
/// where cargo puts a package's binaries before it runs that package's tests.
pub fn backstop_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CARGO_BIN_EXE_backstop") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test executable in target/<profile>/deps");
    let bin = profile_dir.join(format!("backstop{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not found: only tests and benches of the `backstop` package get it built",
        bin.display()
    );
    bin
}

/// The `run:` block of a service (indented for an entry of `services:`) whose releases are the
/// sample service in the `backstop` binary.
pub const DEMO_APP_RUN: &str = r#"    run:
      command: "{artifact} demo-app --port {port} --version {version}"
      health: {http: /healthz, start_timeout: 20s}
      scale_down_delay: 1s
"#;

/// A config for service `shop` whose releases are the sample service in the `backstop` binary.
pub fn shop_config(proxy_port: u16, steps: &str) -> String {
    format!(
        r#"services:
  - name: shop
    owner: team-test
    tier: 1
{DEMO_APP_RUN}    rollout:
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

/// [`shop_config`] with the all-at-once strategy: every rollout takes all traffic at once (for
/// tests of what happens around promotions and rollbacks, not of canary steps).
pub fn shop_config_all_at_once(proxy_port: u16) -> String {
    shop_config(proxy_port, "[{weight: 100}]").replace("strategy: canary", "strategy: all-at-once")
}

/// `rollout start shop --env prod --version VERSION EXTRA…`: the CLI arguments, for callers
/// that run them their own way.
pub fn rollout_start_args<'a>(version: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "rollout",
        "start",
        "shop",
        "--env",
        "prod",
        "--version",
        version,
    ];
    args.extend_from_slice(extra);
    args
}

/// `rollback shop --env prod --reason REASON`: the CLI arguments.
pub fn rollback_args(reason: &str) -> [&str; 6] {
    ["rollback", "shop", "--env", "prod", "--reason", reason]
}

pub struct Daemon {
    pub child: Option<Child>,
    pub api: String,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub proxy_port: u16,
    /// Extra environment of the daemon process (e.g. a database URL a config names).
    pub env: Vec<(String, String)>,
    /// Its name among replicas sharing the state folder (in its log's name); empty for the
    /// first.
    pub replica: String,
    /// Where it runs: empty on this host, else the command prefix of a test host
    /// ([`crate::netns::Host::prefix`]).
    pub prefix: Vec<String>,
    /// The address its API listens on (and is reached at).
    pub ip: String,
    /// Shared by the replicas of one state folder: the last one dropped ends what they left
    /// running there (replicas of a shared store leave proxies and instances to each other).
    folder: std::sync::Arc<()>,
}

/// The audit key every replica of a test shares, as operators give it to replicas on one
/// database (`BACKSTOP_AUDIT_KEY`): added to a daemon on PostgreSQL that was not given one.
pub const TEST_AUDIT_KEY: &str = "7e57a0d17e57a0d17e57a0d17e57a0d17e57a0d17e57a0d17e57a0d17e57a0d1";

fn shared_audit_key(env: &[(String, String)]) -> Option<(&'static str, &'static str)> {
    let has = |name: &str| env.iter().any(|(k, _)| k == name);
    (has("BACKSTOP_DATABASE_URL") && !has("BACKSTOP_AUDIT_KEY"))
        .then_some(("BACKSTOP_AUDIT_KEY", TEST_AUDIT_KEY))
}

impl Daemon {
    pub fn start(state_dir: &Path, config_text: &str, proxy_port: u16) -> Daemon {
        Self::start_with_env(state_dir, config_text, proxy_port, &[])
    }

    /// A daemon for [`shop_config`] with `steps`: its state in `dir/state`, its proxy on a free
    /// port (`proxy_port`).
    pub fn start_shop(dir: &Path, steps: &str) -> Daemon {
        let proxy_port = free_port();
        Self::start(
            &dir.join("state"),
            &shop_config(proxy_port, steps),
            proxy_port,
        )
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
            replica: String::new(),
            prefix: Vec::new(),
            ip: "127.0.0.1".into(),
            folder: std::sync::Arc::new(()),
        };
        d.restart();
        d
    }

    /// A daemon on test host `host` (a network namespace), its API on the host's address, its
    /// state in `state_dir` (its own: hosts do not share folders).
    pub fn start_on(
        host: &crate::netns::Host,
        state_dir: &Path,
        config_text: &str,
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
            proxy_port: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            replica: host.name.clone(),
            prefix: host.prefix(),
            ip: host.ip.to_string(),
            folder: std::sync::Arc::new(()),
        };
        d.restart();
        d
    }

    /// Another replica of this daemon's PostgreSQL store, sharing its state folder and config,
    /// on its own API port, logging to `<state>.<name>.daemon.log`.
    pub fn another_replica(&self, name: &str) -> Daemon {
        self.another_replica_with(name, &[])
    }

    /// [`Daemon::another_replica`] with some of its environment replaced by `env` (e.g. a
    /// database URL through a link the test can cut).
    pub fn another_replica_with(&self, name: &str, env: &[(&str, &str)]) -> Daemon {
        let mut vars = self.env.clone();
        for (key, value) in env {
            vars.retain(|(k, _)| k != key);
            vars.push((key.to_string(), value.to_string()));
        }
        let mut d = Daemon {
            child: None,
            api: String::new(),
            state_dir: self.state_dir.clone(),
            config: self.config.clone(),
            proxy_port: self.proxy_port,
            env: vars,
            replica: name.to_string(),
            prefix: self.prefix.clone(),
            ip: self.ip.clone(),
            folder: self.folder.clone(),
        };
        d.restart();
        d
    }

    /// The daemon's process id (it must be running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    pub fn restart(&mut self) {
        self.restart_on(free_port());
    }

    /// Restarts on the API port it had, as a daemon behind a fixed address comes back (clients
    /// following a rollout keep their `--server`).
    pub fn restart_on_same_port(&mut self) {
        self.restart_on(self.api_port());
    }

    /// `GET /api/v1/…` with the admin token: the JSON answer (asserting a 200).
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        let token = std::fs::read_to_string(self.state_dir.join("admin.token")).unwrap();
        let (status, body) = self.api_call("GET", path, Some(token.trim()), None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// One API call as a client would make it: `method path`, with `token` as the bearer (none
    /// when `None`) and `body` as JSON. The status and the JSON answer (`Null` when not JSON).
    pub fn api_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let body = body.map_or(String::new(), ToString::to_string);
        let answer = self.raw_http(&format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        let (status, body) = status_and_body(&answer)
            .unwrap_or_else(|| panic!("{method} {path}: no HTTP status in {answer:?}"));
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    /// A dashboard page as a person signed in with `token` sees it, without a browser (sign-in
    /// form with its CSRF cookie, then the page with the session cookie): status and HTML.
    pub fn dashboard_page(&self, token: &str, path: &str) -> (u16, String) {
        let form =
            self.raw_http("GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let csrf =
            set_cookie(&form, "backstop_login").expect("the sign-in form sets its CSRF cookie");
        let body = format!("token={token}&csrf={csrf}&next=%2F");
        let signed = self.raw_http(&format!(
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: backstop_login={csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        let session = set_cookie(&signed, "backstop_session")
            .unwrap_or_else(|| panic!("signing in sets a session: {signed}"));
        let page = self.raw_http(&format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: backstop_session={session}\r\nConnection: close\r\n\r\n"
        ));
        let (status, html) = status_and_body(&page).unwrap_or((0, ""));
        (status, html.to_owned())
    }

    /// Sends `request` as written to the API's port: the whole answer.
    fn raw_http(&self, request: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((self.ip.as_str(), self.api_port())).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    /// The port of the daemon's API (`/healthz`, `/metrics` and `/api/v1` on 127.0.0.1).
    pub fn api_port(&self) -> u16 {
        self.api
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the daemon's API address has a port")
    }

    fn restart_on(&mut self, port: u16) {
        // A restart of a running daemon stops it first: on a shared store a second process
        // would start beside it, and the first would outlive the test.
        self.stop();
        self.api = format!("http://{}:{port}", self.ip);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = match self.prefix.split_first() {
            None => Command::new(backstop_bin()),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(backstop_bin());
                c
            }
        };
        let child = command
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--listen", &format!("{}:{port}", self.ip)])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(shared_audit_key(&self.env))
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
            if answers_http(&self.ip, port) && self.state_dir.join("admin.token").exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's log, next to its state folder rather than in it: tests that fill the state
    /// folder's disk still get the log (and the daemon's logging does not add to the fill).
    pub fn log_path(&self) -> PathBuf {
        let mut name = self
            .state_dir
            .file_name()
            .unwrap_or_default()
            .to_os_string();
        if !self.replica.is_empty() {
            name.push(format!(".{}", self.replica));
        }
        name.push(".daemon.log");
        self.state_dir.with_file_name(name)
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(backstop_bin())
            .args(args)
            .args(["--server", &self.api, "--state-dir"])
            .arg(&self.state_dir)
            .output()
            .expect("run backstop")
    }

    /// Starts the CLI against this daemon in the background (e.g. a request the test then
    /// interrupts by killing the daemon), its stdout and stderr piped.
    pub fn cli_background(&self, args: &[&str]) -> Child {
        Command::new(backstop_bin())
            .args(args)
            .args(["--server", &self.api, "--state-dir"])
            .arg(&self.state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run backstop")
    }

    /// Runs the CLI with `--output json`, asserting the exit code: its whole output, stdout
    /// being the JSON (for a caller that also keeps what the CLI printed).
    pub fn cli_json_output(&self, args: &[&str], code: i32) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(&all);
        self.expect_exit(args, out, code)
    }

    /// [`Daemon::cli_json`] expecting success, asking again while the daemon answers 503 (its
    /// store briefly unavailable: a replica failing over, a pool waiting for a connection), as a
    /// client polling it would. For reads in polling loops.
    pub fn cli_json_patient(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", "json"]);
        let deadline = Instant::now() + patience();
        let out = loop {
            let out = self.cli(&all);
            let unavailable = !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("503 Service Unavailable");
            if !unavailable || Instant::now() >= deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let out = self.expect_exit(args, out, 0);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// `out` of `backstop args`, asserting its exit code (the daemon log on failure).
    fn expect_exit(&self, args: &[&str], out: Output, code: i32) -> Output {
        assert_eq!(
            out.status.code(),
            Some(code),
            "backstop {args:?}\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    /// Runs the CLI and returns stdout parsed as JSON, asserting the exit code.
    pub fn cli_json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let out = self.cli_json_output(args, code);
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

    /// `backstop release create shop --version VERSION --file <the backstop binary> EXTRA…`.
    pub fn register_with(&self, version: &str, extra: &[&str]) -> serde_json::Value {
        self.register_file(version, &backstop_bin(), extra)
    }

    /// `backstop release create shop --version VERSION --file FILE EXTRA…`: the release.
    pub fn register_file(&self, version: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
        self.register_service_file("shop", version, file, extra)
    }

    /// `backstop release create SERVICE --version VERSION --file <the backstop binary> EXTRA…`
    /// (the sample service, for configs with several services).
    pub fn register_service(
        &self,
        service: &str,
        version: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        self.register_service_file(service, version, &backstop_bin(), extra)
    }

    fn register_service_file(
        &self,
        service: &str,
        version: &str,
        file: &Path,
        extra: &[&str],
    ) -> serde_json::Value {
        let mut args = vec![
            "release",
            "create",
            service,
            "--version",
            version,
            "--file",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.cli_json(&args, 0)
    }

    /// `backstop rollout start shop --env prod --version VERSION --wait`, expecting exit `code`:
    /// the rollout's detail once it has ended.
    pub fn rollout_wait(&self, version: &str, code: i32) -> serde_json::Value {
        self.cli_json(&rollout_start_args(version, &["--wait"]), code)
    }

    /// `backstop rollout start SERVICE --env prod --version VERSION --wait`, expecting exit
    /// `code` (configs with several services).
    pub fn rollout_service_wait(
        &self,
        service: &str,
        version: &str,
        code: i32,
    ) -> serde_json::Value {
        self.cli_json(
            &[
                "rollout",
                "start",
                service,
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
        let started = self.cli_json(&rollout_start_args(version, &[]), 0);
        started["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a rollout id in {started:#}"))
            .to_string()
    }

    /// Starts a rollout of `version` and waits until it is progressing (its canary live): the
    /// rollout id.
    pub fn rollout_progressing(&self, version: &str) -> String {
        let id = self.rollout_start(version);
        self.wait_phase(&id, "progressing", "canary live");
        id
    }

    /// `backstop rollback shop --env prod --reason REASON`, expecting exit `code`: the recovery.
    pub fn rollback(&self, reason: &str, code: i32) -> serde_json::Value {
        self.cli_json(&rollback_args(reason), code)
    }

    /// The rollout's detail (asked again while the daemon's store is briefly unavailable).
    pub fn rollout(&self, id: &str) -> serde_json::Value {
        self.cli_json_patient(&["rollout", "status", id])
    }

    /// Polls until `pred` holds for the rollout's detail (returned), or fails with the last
    /// detail and the daemon log.
    pub fn wait_rollout(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        crate::assert_eventually!(
            self.rollout(id),
            pred,
            "rollout {id}: {what}\ndaemon log:\n{}",
            self.log()
        )
    }

    /// Asserts for `time` (at most the patience) that rollout `id` keeps progressing on its first
    /// step: neither advanced nor ended.
    pub fn assert_stays_on_first_step(&self, id: &str, time: Duration) {
        let until = Instant::now() + time.min(patience());
        while Instant::now() < until {
            let r = self.rollout(id);
            assert_eq!(r["rollout"]["phase"], "progressing", "{r:#}");
            assert_eq!(r["rollout"]["step_index"], 0, "{r:#}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Asserts that `backstop audit verify` finds the audit chain intact.
    pub fn assert_audit_verifies(&self) {
        assert_eq!(self.cli_json(&["audit", "verify"], 0)["ok"], true);
    }

    /// Polls until the rollout's phase is `phase` (`what` says what that means to the test): its
    /// detail.
    pub fn wait_phase(&self, id: &str, phase: &str, what: &str) -> serde_json::Value {
        self.wait_rollout(id, what, |r| r["rollout"]["phase"] == phase)
    }

    /// Polls until `pred` holds, or fails with the daemon log.
    pub fn wait_until(&self, what: &str, mut pred: impl FnMut() -> bool) {
        crate::assert_eventually!(pred(), |held| *held, "{what}\ndaemon log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::sync::Arc::strong_count(&self.folder) == 1 {
            end_leftovers(&self.state_dir);
        }
    }
}

/// Ends the instances, the proxy processes and the agent started for `state_dir` that still
/// run: the process groups of processes whose output goes to its logs, or whose command line
/// names a path in it (an instance runs its artifact from `STATE/blobs`, the agent has
/// `--state-dir STATE`). Never the test's own group.
fn end_leftovers(state_dir: &Path) {
    use nix::sys::signal::{Signal, killpg};
    let own = nix::unistd::getpgrp().as_raw();
    let named_here = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0 || *b == b' ')
                    .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)).starts_with(state_dir))
            })
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(2)?
                .parse::<i32>()
                .ok()
        });
    let mut groups: Vec<i32> = instance_pids(state_dir)
        .into_iter()
        .filter_map(|p| i32::try_from(p).ok())
        .chain(named_here)
        .filter(|pgid| *pgid > 1 && *pgid != own)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for pgid in groups {
        let _ = killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// The `key` text of each item of the JSON array `list` (each event's `kind`, each check's
/// `name`, …).
pub fn texts_of<'a>(list: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
        .iter()
        .map(|item| item[key].as_str().unwrap())
        .collect()
}

/// The `action` of every record of an audit list (`audit list` / `GET /api/v1/audit`).
pub fn audit_actions(records: &serde_json::Value) -> Vec<&str> {
    texts_of(records, "action")
}

/// The first item of the JSON array `list` whose `key` is `value`; panics showing the list when
/// there is none.
pub fn item_with<'a>(list: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|items| items.iter().find(|item| item[key] == value))
        .unwrap_or_else(|| panic!("no item with {key} = {value:?} in {list:#}"))
}

/// The `kind` of each step of a recovery (`rollback`, `recovery show`, a rollout's `recovery`).
pub fn step_kinds(recovery: &serde_json::Value) -> Vec<&str> {
    recovery["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"]["kind"].as_str().unwrap())
        .collect()
}

/// Process groups of processes whose stdout goes to a log in this state folder: one per
/// instance a daemon started there (and nobody else's, even with tests running in parallel).
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

/// Whether an HTTP server answers `GET /healthz` at `ip:port` (any status: a daemon in its
/// fail-safe answers 503). A port that only accepts connections is not enough: the daemon binds
/// its API before it has checked the audit chain and serves only after.
fn answers_http(ip: &str, port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect((ip, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: backstop\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 8];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// The value a `Set-Cookie` header of `answer` gives cookie `name`.
fn set_cookie(answer: &str, name: &str) -> Option<String> {
    answer.lines().find_map(|l| {
        let (header, value) = l.split_once(':')?;
        if !header.eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        let v = value.trim().strip_prefix(&format!("{name}="))?;
        Some(v.split(';').next().unwrap_or_default().to_owned())
    })
}

/// The status and body of a whole HTTP answer.
fn status_and_body(answer: &str) -> Option<(u16, &str)> {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}
