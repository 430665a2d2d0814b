//! Command router, and the process runner every router uses to run commands.
//!
//! A command runs in its own process group with a timeout; on timeout the group gets SIGTERM,
//! then SIGKILL after a grace period (killing only `sh` would leave its children running).
//! Output (stdout and stderr) is captured and capped.
//!
//! The command router runs `sh -c <apply command>` with:
//! - `BACKSTOP_STABLE_ADDR`, `BACKSTOP_CANARY_ADDR`: `ip:port`, empty when absent;
//! - `BACKSTOP_STABLE_VERSION`, `BACKSTOP_CANARY_VERSION`: version labels, empty when absent;
//! - `BACKSTOP_CANARY_WEIGHT`: the canary's share in percent (normalized, e.g. `10` or `12.5`);
//! - `BACKSTOP_IDEMPOTENCY_KEY`: the same key for the same request, so the script can skip work
//!   it already did. [`TrafficRouter::apply`] derives it from the routes; callers with a journal
//!   pass their step's key to [`CommandRouter::apply_with_key`].
//!
//! `current` runs the optional read command, which must print `BACKSTOP_STABLE_ADDR=…`,
//! `BACKSTOP_CANARY_ADDR=…`, `BACKSTOP_CANARY_WEIGHT=…` lines (other lines are ignored).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{RouterError, TrafficRouter, describe, normalize, unknown_version};
use crate::proxy::{Routes, Upstream, VersionStats};

/// Default cap on captured output per stream.
pub const DEFAULT_OUTPUT_CAP: usize = 16 * 1024;

/// How long a timed-out group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// A command to run: argv (no shell) or `sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Shell(String),
    Argv(Vec<String>),
}

impl Cmd {
    pub fn display(&self) -> String {
        match self {
            Cmd::Shell(s) => s.clone(),
            Cmd::Argv(a) => a.join(" "),
        }
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    pub success: bool,
    /// `exit status 1`, `signal 9`, …
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// stderr then stdout, trimmed, for error messages.
    pub fn combined(&self) -> String {
        let mut s = self.stderr.trim().to_owned();
        let out = self.stdout.trim();
        if !out.is_empty() {
            if !s.is_empty() {
                s.push_str(" | ");
            }
            s.push_str(out);
        }
        s
    }
}

/// Reads a stream to EOF keeping at most `cap` bytes (the rest is drained and dropped, with a
/// marker), so a chatty child never blocks on a full pipe.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut dropped = 0usize;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                let take = room.min(n);
                kept.extend_from_slice(&buf[..take]);
                dropped += n - take;
            }
        }
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        s.push_str(&format!("… [{dropped} more bytes dropped]"));
    }
    s
}

/// Runs `cmd` in its own process group with `env` added, waits at most `timeout`, captures at
/// most `cap` bytes of stdout and of stderr. On timeout the group gets SIGTERM, then SIGKILL
/// after [`KILL_GRACE`], and the result is [`RouterError::Timeout`]. A non-zero exit is *not* an
/// error here (callers decide); failing to start is [`RouterError::Io`].
pub async fn run(
    router: &'static str,
    cmd: &Cmd,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    cap: usize,
) -> Result<CmdOutput, RouterError> {
    let mut command = match cmd {
        Cmd::Shell(s) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(s);
            c
        }
        Cmd::Argv(argv) => {
            let Some((prog, args)) = argv.split_first() else {
                return Err(RouterError::Config {
                    router,
                    message: "empty command".into(),
                });
            };
            let mut c = tokio::process::Command::new(prog);
            c.args(args);
            c
        }
    };
    command
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    crate::without_daemon_secrets(&mut command);
    let mut child = command.spawn().map_err(|source| RouterError::Io {
        router,
        path: std::path::PathBuf::from(cmd.display()),
        source,
    })?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_task = tokio::spawn(async move {
        match stdout {
            Some(s) => read_capped(s, cap).await,
            None => String::new(),
        }
    });
    let err_task = tokio::spawn(async move {
        match stderr {
            Some(s) => read_capped(s, cap).await,
            None => String::new(),
        }
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => {
            return Err(RouterError::Io {
                router,
                path: std::path::PathBuf::from(cmd.display()),
                source,
            });
        }
        Err(_) => {
            tracing::warn!(router, command = %cmd.display(), timeout_ms = timeout.as_millis() as u64, "Command timed out; sending SIGTERM to its process group.");
            if let Some(pgid) = pgid {
                kill_group(pgid, &mut child).await;
            }
            // Grandchildren holding the pipes are dead now, so the readers finish.
            let stdout = out_task.await.unwrap_or_default();
            let stderr = err_task.await.unwrap_or_default();
            let output = CmdOutput {
                success: false,
                status: "killed".into(),
                stdout,
                stderr,
            }
            .combined();
            return Err(RouterError::Timeout {
                router,
                command: cmd.display(),
                timeout,
                output,
            });
        }
    };
    // The child exited; members of its group may still hold the pipes. Give them a moment, then
    // stop reading (and stop the group: it was started for this command only).
    let reads = async { (out_task.await, err_task.await) };
    let (stdout, stderr) = match tokio::time::timeout(Duration::from_secs(1), reads).await {
        Ok((o, e)) => (o.unwrap_or_default(), e.unwrap_or_default()),
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            (
                String::new(),
                "(output not read: the command left children holding it)".into(),
            )
        }
    };
    let status_text = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "unknown status".into(),
    };
    Ok(CmdOutput {
        success: status.success(),
        status: status_text,
        stdout,
        stderr,
    })
}

/// SIGTERM to the group, [`KILL_GRACE`] for the leader to exit, then SIGKILL to the group (the
/// group is killed even if the leader exited, to catch children that ignored SIGTERM).
async fn kill_group(pgid: Pid, child: &mut tokio::process::Child) {
    match killpg(pgid, Signal::SIGTERM) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pgid.as_raw(), error = %e, "Cannot send SIGTERM to the command's group.")
        }
    }
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    match killpg(pgid, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pgid.as_raw(), error = %e, "Cannot send SIGKILL to the command's group.")
        }
    }
    let _ = child.wait().await;
}

/// Settings of a [`CommandRouter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRouterConfig {
    /// Run with `sh -c` to apply a split.
    pub apply_command: String,
    /// Optional: run with `sh -c` to read the current split (see the module docs).
    pub read_command: Option<String>,
    pub timeout: Duration,
    /// Cap on captured stdout and on stderr, in bytes.
    pub output_cap: usize,
}

impl CommandRouterConfig {
    pub fn new(apply_command: impl Into<String>) -> CommandRouterConfig {
        CommandRouterConfig {
            apply_command: apply_command.into(),
            read_command: None,
            timeout: Duration::from_secs(30),
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }
}

/// Runs user commands to switch traffic. See the module docs for the environment.
#[derive(Debug)]
pub struct CommandRouter {
    cfg: CommandRouterConfig,
    versions: Mutex<BTreeMap<SocketAddr, String>>,
}

/// Deterministic key for a split: the same routes give the same key (FNV-1a over the normalized
/// description), so a retried apply carries the key of the first attempt.
pub fn routes_key(routes: &Routes) -> String {
    let text = describe(&normalize(routes));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("routes-{h:016x}")
}

impl CommandRouter {
    pub fn new(cfg: CommandRouterConfig) -> CommandRouter {
        CommandRouter {
            cfg,
            versions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Applies `routes` passing `key` as `BACKSTOP_IDEMPOTENCY_KEY`. A non-zero exit is
    /// [`RouterError::CommandFailed`], a timeout [`RouterError::Timeout`] (group killed). Since
    /// the router cannot know what a failed script did, both are wrapped in
    /// [`RouterError::Apply`] with the state re-read by the read command, or unknown.
    pub async fn apply_with_key(&self, routes: &Routes, key: &str) -> Result<(), RouterError> {
        let r = normalize(routes);
        {
            let mut v = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            for u in [&r.stable, &r.canary].into_iter().flatten() {
                v.insert(u.addr, u.version.clone());
            }
        }
        let addr = |u: &Option<Upstream>| u.as_ref().map_or(String::new(), |u| u.addr.to_string());
        let ver = |u: &Option<Upstream>| u.as_ref().map_or(String::new(), |u| u.version.clone());
        let env = BTreeMap::from([
            ("BACKSTOP_STABLE_ADDR".to_owned(), addr(&r.stable)),
            ("BACKSTOP_CANARY_ADDR".to_owned(), addr(&r.canary)),
            ("BACKSTOP_STABLE_VERSION".to_owned(), ver(&r.stable)),
            ("BACKSTOP_CANARY_VERSION".to_owned(), ver(&r.canary)),
            (
                "BACKSTOP_CANARY_WEIGHT".to_owned(),
                format!("{}", r.canary_weight),
            ),
            ("BACKSTOP_IDEMPOTENCY_KEY".to_owned(), key.to_owned()),
        ]);
        let cmd = Cmd::Shell(self.cfg.apply_command.clone());
        tracing::info!(command = %self.cfg.apply_command, key, routes = %describe(&r), "Running the command router.");
        let result = run("command", &cmd, &env, self.cfg.timeout, self.cfg.output_cap).await;
        let cause = match result {
            Ok(out) if out.success => return Ok(()),
            Ok(out) => RouterError::CommandFailed {
                router: "command",
                command: cmd.display(),
                status: out.status.clone(),
                output: out.combined(),
            },
            Err(e) => e,
        };
        let state = match self.read().await {
            Some(Ok(now)) => super::TargetState::Now(Box::new(now)),
            _ => super::TargetState::Unknown,
        };
        Err(RouterError::Apply {
            router: "command",
            cause: Box::new(cause),
            state,
        })
    }

    async fn read(&self) -> Option<Result<Routes, RouterError>> {
        let read = self.cfg.read_command.as_ref()?;
        let cmd = Cmd::Shell(read.clone());
        let out = match run(
            "command",
            &cmd,
            &BTreeMap::new(),
            self.cfg.timeout,
            self.cfg.output_cap,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        if !out.success {
            return Some(Err(RouterError::CommandFailed {
                router: "command",
                command: cmd.display(),
                status: out.status.clone(),
                output: out.combined(),
            }));
        }
        let versions = self
            .versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Some(
            parse_read_output(&out.stdout, &versions).map_err(|message| RouterError::Parse {
                router: "command",
                target: format!("`{read}`"),
                what: "the current split".into(),
                message,
            }),
        )
    }
}

/// Parses `KEY=VALUE` lines of a read command.
fn parse_read_output(
    text: &str,
    versions: &BTreeMap<SocketAddr, String>,
) -> Result<Routes, String> {
    let mut stable = None;
    let mut canary = None;
    let mut weight = None;
    for (n, line) in text.lines().enumerate() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let upstream = |v: &str| -> Result<Option<Upstream>, String> {
            if v.is_empty() {
                return Ok(None);
            }
            let addr: SocketAddr = v
                .parse()
                .map_err(|e| format!("line {}: `{v}` is not ip:port: {e}", n + 1))?;
            let version = versions
                .get(&addr)
                .cloned()
                .unwrap_or_else(|| unknown_version(addr));
            Ok(Some(Upstream {
                version,
                addr,
                replicas: Vec::new(),
            }))
        };
        match k.trim() {
            "BACKSTOP_STABLE_ADDR" => stable = upstream(v)?,
            "BACKSTOP_CANARY_ADDR" => canary = upstream(v)?,
            "BACKSTOP_CANARY_WEIGHT" => {
                let w: f64 = v
                    .parse()
                    .map_err(|e| format!("line {}: weight `{v}` is not a number: {e}", n + 1))?;
                weight = Some(w);
            }
            _ => {}
        }
    }
    let canary_weight = weight.ok_or("no BACKSTOP_CANARY_WEIGHT line")?;
    Ok(normalize(&Routes {
        stable,
        canary,
        canary_weight,
    }))
}

#[async_trait]
impl TrafficRouter for CommandRouter {
    fn kind(&self) -> &'static str {
        "command"
    }

    async fn apply(&self, routes: &Routes) -> Result<(), RouterError> {
        self.apply_with_key(routes, &routes_key(routes)).await
    }

    async fn current(&self) -> Result<Routes, RouterError> {
        match self.read().await {
            Some(r) => r,
            None => Err(RouterError::Config {
                router: "command",
                message: "no read command configured, so the current split cannot be read".into(),
            }),
        }
    }

    async fn stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_output_is_parsed_with_known_versions() {
        let a: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        let versions = BTreeMap::from([(a, "v1".to_owned())]);
        let r = parse_read_output(
            "noise\nBACKSTOP_STABLE_ADDR=127.0.0.1:8001\nBACKSTOP_CANARY_ADDR=127.0.0.1:8002\nBACKSTOP_CANARY_WEIGHT=25\n",
            &versions,
        )
        .unwrap();
        assert_eq!(r.stable.unwrap().version, "v1");
        assert_eq!(r.canary.unwrap().version, "127.0.0.1:8002");
        assert_eq!(r.canary_weight, 25.0);
        let e = parse_read_output(
            "BACKSTOP_STABLE_ADDR=nope\nBACKSTOP_CANARY_WEIGHT=1",
            &versions,
        )
        .unwrap_err();
        assert!(e.contains("line 1") && e.contains("nope"), "{e}");
        assert!(parse_read_output("BACKSTOP_STABLE_ADDR=127.0.0.1:1", &versions).is_err());
    }

    #[test]
    fn keys_are_stable_per_split() {
        let u = |p| {
            Some(Upstream {
                version: "v".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], p)),
                replicas: Vec::new(),
            })
        };
        let a = Routes {
            stable: u(1),
            canary: u(2),
            canary_weight: 10.0,
        };
        let mut b = a.clone();
        assert_eq!(routes_key(&a), routes_key(&b));
        b.canary_weight = 20.0;
        assert_ne!(routes_key(&a), routes_key(&b));
    }

    #[tokio::test]
    async fn output_is_capped_and_status_reported() {
        let out = run(
            "command",
            &Cmd::Shell("head -c 100000 /dev/zero | tr '\\0' x; echo err >&2; exit 3".into()),
            &BTreeMap::new(),
            Duration::from_secs(10),
            1000,
        )
        .await
        .unwrap();
        assert!(!out.success);
        assert_eq!(out.status, "exit status 3");
        assert!(out.stdout.starts_with(&"x".repeat(1000)));
        assert!(
            out.stdout.contains("99000 more bytes dropped"),
            "{}",
            &out.stdout[1000..]
        );
        assert_eq!(out.stderr.trim(), "err");
    }
}
