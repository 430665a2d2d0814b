//! Process deployer: runs a release as a supervised child process on a local port.
//!
//! Every instance runs as `sh -c COMMAND` in its own process group, with
//! `BACKSTOP_INSTANCE_ID=<id>` in its environment. That marker lets a controller restarted after
//! a crash recognise (and only ever signal) its own children: a pid is treated as ours only while
//! `/proc/<pid>/environ` carries the marker, so a recycled pid is never killed.
//!
//! Output (stdout and stderr) goes straight to the instance's log file (opened in append mode,
//! so the child keeps logging even if the controller dies). While the controller supervises the
//! child, the file is capped at [`MAX_LOG_BYTES`]: when it grows past that, its content moves to
//! `<log>.1` (replacing an older one) and the file starts again empty.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Environment variable that marks a process as belonging to a Backstop instance.
pub const INSTANCE_ENV: &str = "BACKSTOP_INSTANCE_ID";

/// Size at which an instance's log file is rotated to `<log>.1`.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// How often the supervisor checks the log size.
const LOG_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How many trailing log lines an error carries.
const LOG_TAIL_LINES: usize = 20;

/// What to run for one instance of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub instance_id: String,
    /// Final shell command, port already substituted; run with `sh -c`.
    pub command: String,
    pub port: u16,
    pub env: BTreeMap<String, String>,
    /// Path of the health endpoint on `127.0.0.1:port`, e.g. `/healthz`.
    pub health_path: String,
    /// Timeout of one health request.
    pub health_timeout: Duration,
    /// Pause between health requests while starting.
    pub health_interval: Duration,
    /// How long the instance may take to become healthy before it is killed.
    pub start_timeout: Duration,
    pub log_path: PathBuf,
}

/// A started instance. Persist it to adopt the process after a controller restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    /// Pid of the `sh -c` process, which is also its process group id.
    pub pid: u32,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("instance {instance_id}: cannot start `sh -c {command}`: {source}")]
    Spawn {
        instance_id: String,
        command: String,
        source: io::Error,
    },
    #[error(
        "instance {instance_id}: exited with {status} before becoming healthy on port {port}; last log lines ({}):\n{log_tail}",
        log_path.display()
    )]
    ExitedEarly {
        instance_id: String,
        port: u16,
        status: String,
        log_path: PathBuf,
        log_tail: String,
    },
    #[error(
        "instance {instance_id}: not healthy on http://127.0.0.1:{port}{health_path} within {}s (last check: {last_error}); process group killed; last log lines ({}):\n{log_tail}",
        waited.as_secs_f64(),
        log_path.display()
    )]
    StartTimeout {
        instance_id: String,
        port: u16,
        health_path: String,
        waited: Duration,
        last_error: String,
        log_path: PathBuf,
        log_tail: String,
    },
    #[error("health check http://127.0.0.1:{port}{path}: {reason}")]
    Unhealthy {
        port: u16,
        path: String,
        reason: String,
    },
    #[error("tcp probe 127.0.0.1:{port}: {reason}")]
    TcpRefused { port: u16, reason: String },
    #[error("instance {instance_id} (pid {pid}): cannot send {signal}: {source}")]
    Signal {
        instance_id: String,
        pid: u32,
        signal: &'static str,
        source: Errno,
    },
    #[error("instance {instance_id} (pid {pid}): process group still alive after SIGKILL")]
    StillAlive { instance_id: String, pid: u32 },
}

/// Asks the OS for a free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
pub fn free_port() -> io::Result<u16> {
    let listener = StdTcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Opens the instance's log (appending) and writes a line saying what starts.
fn open_log(spec: &InstanceSpec) -> io::Result<File> {
    if let Some(dir) = spec.log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // An instance's output may carry its secrets: its owner's only.
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&spec.log_path)?;
    writeln!(
        log,
        "--- backstop: starting instance {} on port {}: sh -c {}",
        spec.instance_id, spec.port, spec.command
    )?;
    Ok(log)
}

fn log_unwritable(spec: &InstanceSpec, e: &io::Error) -> Stdio {
    tracing::warn!(instance = %spec.instance_id, log = %spec.log_path.display(), error = %e, "Cannot write the instance's log; starting it without one.");
    Stdio::null()
}

/// Starts the instance and waits until its health endpoint answers 2xx.
///
/// On timeout (or if the process exits first) the whole process group is killed and the error
/// carries the last lines of the log.
pub async fn start(spec: &InstanceSpec) -> Result<Instance, DeployError> {
    // Users come before logs: an instance (a rollback's, a restart of the stable version) must
    // start even when its log cannot be written, for example on a full disk.
    let (stdout, stderr) = match open_log(spec) {
        Ok(log) => match log.try_clone() {
            Ok(stderr) => (Stdio::from(log), Stdio::from(stderr)),
            Err(e) => (Stdio::from(log), log_unwritable(spec, &e)),
        },
        Err(e) => (log_unwritable(spec, &e), Stdio::null()),
    };

    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .envs(&spec.env)
        .env(INSTANCE_ENV, &spec.instance_id)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    crate::without_daemon_secrets(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| DeployError::Spawn {
        instance_id: spec.instance_id.clone(),
        command: spec.command.clone(),
        source,
    })?;
    let Some(pid) = child.id() else {
        // Already reaped: it cannot have become healthy.
        let status = child
            .wait()
            .await
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        return Err(exited_early(spec, status));
    };
    let inst = Instance {
        instance_id: spec.instance_id.clone(),
        pid,
        port: spec.port,
    };
    // If this future is dropped before the instance is healthy, kill the group: nobody would
    // know about the process otherwise.
    let mut guard = GroupGuard(Some(inst.clone()));
    tracing::info!(instance = %spec.instance_id, pid, port = spec.port, "Instance started; waiting for health.");

    let started = Instant::now();
    let deadline = started + spec.start_timeout;
    let interval = spec.health_interval.max(Duration::from_millis(10));
    let mut last_error = String::from("no check completed");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // The leader is reaped; its grandchildren (if any) still hold the group id.
            kill_group_if_ours(&inst);
            return Err(exited_early(spec, status.to_string()));
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let attempt_timeout = spec.health_timeout.min(deadline - now);
        match check_health(spec.port, &spec.health_path, attempt_timeout).await {
            Ok(()) if matches!(child.try_wait(), Ok(Some(_))) => {
                // Something answered, but our process is gone (e.g. the port was taken).
                last_error = "health answered, but the instance process had exited".to_owned();
            }
            Ok(()) => {
                guard.0 = None;
                tracing::info!(instance = %spec.instance_id, pid, port = spec.port, waited_ms = started.elapsed().as_millis() as u64, "Instance healthy.");
                tokio::spawn(supervise(
                    child,
                    spec.instance_id.clone(),
                    spec.log_path.clone(),
                ));
                return Ok(inst);
            }
            Err(e) => last_error = e.to_string(),
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }

    tracing::warn!(instance = %spec.instance_id, pid, "Instance not healthy in time; killing its process group.");
    kill_group_if_ours(&inst);
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Err(DeployError::StartTimeout {
        instance_id: spec.instance_id.clone(),
        port: spec.port,
        health_path: spec.health_path.clone(),
        waited: started.elapsed(),
        last_error,
        log_path: spec.log_path.clone(),
        log_tail: log_tail(&spec.log_path),
    })
}

fn exited_early(spec: &InstanceSpec, status: String) -> DeployError {
    DeployError::ExitedEarly {
        instance_id: spec.instance_id.clone(),
        port: spec.port,
        status,
        log_path: spec.log_path.clone(),
        log_tail: log_tail(&spec.log_path),
    }
}

/// Kills the process group on drop unless disarmed (set to `None`).
struct GroupGuard(Option<Instance>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(inst) = self.0.take() {
            kill_group_if_ours(&inst);
        }
    }
}

/// SIGKILL to the instance's process group, if a live member still carries its marker (so a
/// group id freed and reused meanwhile is never hit).
fn kill_group_if_ours(inst: &Instance) {
    if let Some(pgid) = target_group(inst) {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

/// Reaps the child when it exits (no zombies) and keeps its log under the size cap meanwhile.
async fn supervise(mut child: Child, instance_id: String, log_path: PathBuf) {
    let mut tick = tokio::time::interval(LOG_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            status = child.wait() => {
                match status {
                    Ok(s) => tracing::info!(instance = %instance_id, status = %s, "Instance exited."),
                    Err(e) => tracing::warn!(instance = %instance_id, error = %e, "Waiting for instance failed."),
                }
                return;
            }
            _ = tick.tick() => {
                if let Err(e) = cap_log(&log_path, MAX_LOG_BYTES) {
                    tracing::warn!(instance = %instance_id, path = %log_path.display(), error = %e, "Cannot rotate instance log.");
                }
            }
        }
    }
}

/// For an instance adopted after a controller restart (not our child, so nothing to reap):
/// keeps its log under [`MAX_LOG_BYTES`] until the instance is no longer running.
pub fn supervise_adopted(inst: Instance, log_path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LOG_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !is_running(&inst) {
                tracing::info!(instance = %inst.instance_id, pid = inst.pid, "Adopted instance is gone.");
                return;
            }
            if let Err(e) = cap_log(&log_path, MAX_LOG_BYTES) {
                tracing::warn!(instance = %inst.instance_id, path = %log_path.display(), error = %e, "Cannot rotate instance log.");
            }
        }
    })
}

/// If the file at `path` is larger than `max_bytes`, copies it to `<path>.1` and empties it.
/// Writers that opened it in append mode continue at the new end. Returns whether it rotated.
pub fn cap_log(path: &Path, max_bytes: u64) -> io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes {
        return Ok(false);
    }
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    std::fs::copy(path, PathBuf::from(rotated))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Last lines of a log file (reads at most the last 8 KiB).
pub fn log_tail(path: &Path) -> String {
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(8192)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        Ok(lines[from..].join("\n"))
    };
    read().unwrap_or_else(|e| format!("(cannot read log: {e})"))
}

/// Waits, for at most `within`, until an instance that is already running (one adopted after a
/// controller restart, or restarted by supervision) answers its health check. A process found
/// running may still be starting: it gets no traffic before this passes.
pub async fn await_healthy(
    inst: &Instance,
    health_path: &str,
    health_timeout: Duration,
    interval: Duration,
    within: Duration,
) -> Result<(), DeployError> {
    let deadline = Instant::now() + within;
    let interval = interval.max(Duration::from_millis(10));
    loop {
        if !is_running(inst) {
            return Err(DeployError::Unhealthy {
                port: inst.port,
                path: health_path.to_owned(),
                reason: format!("instance {} is no longer running", inst.instance_id),
            });
        }
        let now = Instant::now();
        let attempt = health_timeout.min(deadline.saturating_duration_since(now));
        let result = check_health(
            inst.port,
            health_path,
            attempt.max(Duration::from_millis(1)),
        )
        .await;
        if result.is_ok() || Instant::now() >= deadline {
            return result;
        }
        tokio::time::sleep(interval.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// One `GET http://127.0.0.1:{port}{path}`; Ok iff it answers 2xx within `timeout`.
/// One TCP probe: a connection to `127.0.0.1:port` is accepted within `timeout`.
pub async fn check_tcp(port: u16, timeout: Duration) -> Result<(), DeployError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let unhealthy = |reason: String| DeployError::TcpRefused { port, reason };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unhealthy(e.to_string())),
        Err(_) => Err(unhealthy(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

pub async fn check_health(port: u16, path: &str, timeout: Duration) -> Result<(), DeployError> {
    let unhealthy = |reason: String| DeployError::Unhealthy {
        port,
        path: path.to_owned(),
        reason,
    };
    let target = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let req = Request::get(target.as_str())
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "backstop-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| unhealthy(format!("invalid health path: {e}")))?;
    let attempt = async {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn_task = tokio::spawn(conn);
        let result = sender.send_request(req).await;
        conn_task.abort();
        let resp = result.map_err(|e| format!("request: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", resp.status()))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(unhealthy(reason)),
        Err(_) => Err(unhealthy(format!(
            "no answer within {}ms",
            timeout.as_millis()
        ))),
    }
}

pub(crate) fn to_pid(pid: u32) -> Option<Pid> {
    // 0 and 1 would mean "our own group" / init: never signal those.
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// State char and process group of `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

fn has_marker(pid: i32, instance_id: &str) -> bool {
    let want = format!("{INSTANCE_ENV}={instance_id}");
    // While a process is inside execve (e.g. `sh -c 'exec server'`), its environ reads back
    // empty for a moment (longer on a busy machine): retry briefly before concluding it is not
    // ours. Only processes with an empty environment pay the full wait.
    let deadline = std::time::Instant::now() + Duration::from_millis(250);
    loop {
        let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
            Err(_) => Vec::new(),
        };
        if !environ.is_empty() {
            return environ
                .split(|b| *b == 0)
                .any(|entry| entry == want.as_bytes());
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(
            |pid| matches!(proc_stat(*pid), Some((state, pgrp)) if pgrp == pgid && state != 'Z'),
        )
        .collect()
}

/// True iff the pid is alive (not a zombie) and carries this instance's marker in its
/// environment, i.e. it is really our process and not a recycled pid.
pub fn is_running(inst: &Instance) -> bool {
    let Some(pid) = to_pid(inst.pid) else {
        return false;
    };
    let alive = matches!(kill(pid, None), Ok(()) | Err(Errno::EPERM));
    alive
        && matches!(proc_stat(pid.as_raw()), Some((state, _)) if state != 'Z')
        && has_marker(pid.as_raw(), &inst.instance_id)
}

/// The process group to signal for `inst`, if it is ours: normally the group led by
/// `inst.pid` (ours while a live member carries the marker: while any member lives, the group id
/// cannot be reused); if `inst.pid` is a marked process that does not lead a group, the group it
/// belongs to. Never the caller's own process group.
fn target_group(inst: &Instance) -> Option<Pid> {
    let pid = to_pid(inst.pid)?;
    let group = if group_members(pid.as_raw())
        .into_iter()
        .any(|p| has_marker(p, &inst.instance_id))
    {
        pid
    } else if is_running(inst) {
        let (_, pgrp) = proc_stat(pid.as_raw())?;
        to_pid(u32::try_from(pgrp).ok()?)?
    } else {
        return None;
    };
    if group == nix::unistd::getpgrp() {
        tracing::warn!(instance = %inst.instance_id, pid = inst.pid, "Instance runs in the controller's own process group; not signalling it.");
        return None;
    }
    Some(group)
}

/// Finds the process group of a running instance from its id alone (for a controller that
/// crashed after starting an instance but before recording its pid). Returns the group id,
/// which is the pid to put in [`Instance::pid`]. A process caught inside `execve` may be
/// missed: call again if it matters.
pub fn find_group(instance_id: &str) -> Option<u32> {
    find_marked_group(INSTANCE_ENV, instance_id)
}

/// The process group of a live process whose environment has `var=value` (the marker Backstop
/// gives everything it starts), other than the caller's own group.
pub(crate) fn find_marked_group(var: &str, value: &str) -> Option<u32> {
    let want = format!("{var}={value}");
    let own = nix::unistd::getpgrp().as_raw();
    let dir = std::fs::read_dir("/proc").ok()?;
    let mut groups: Vec<(bool, i32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let (state, pgrp) = proc_stat(pid)?;
            if state == 'Z' || pgrp <= 1 || pgrp == own {
                return None;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|entry| entry == want.as_bytes())
                .then_some((pid == pgrp, pgrp))
        })
        .collect();
    // Prefer a group whose leader is alive and marked.
    groups.sort_unstable_by_key(|(leader, pgrp)| (!*leader, *pgrp));
    groups
        .first()
        .and_then(|(_, pgrp)| u32::try_from(*pgrp).ok())
}

/// Stops the instance: SIGTERM to its process group, up to `grace` to exit, then SIGKILL.
/// Idempotent: an instance already gone (or a pid that is no longer ours) is `Ok`.
pub async fn stop(inst: &Instance, grace: Duration) -> Result<(), DeployError> {
    let Some(pgid) = target_group(inst) else {
        tracing::debug!(instance = %inst.instance_id, pid = inst.pid, "Instance already gone.");
        return Ok(());
    };
    let signal_err = |signal: &'static str, source| DeployError::Signal {
        instance_id: inst.instance_id.clone(),
        pid: inst.pid,
        signal,
        source,
    };
    tracing::info!(instance = %inst.instance_id, pid = inst.pid, pgid = pgid.as_raw(), grace_ms = grace.as_millis() as u64, "Stopping instance (SIGTERM to its process group).");
    match killpg(pgid, Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(signal_err("SIGTERM", e)),
    }
    if wait_group_gone(pgid, grace).await {
        return Ok(());
    }
    tracing::warn!(instance = %inst.instance_id, pid = inst.pid, "Instance ignored SIGTERM; sending SIGKILL to its process group.");
    match killpg(pgid, Signal::SIGKILL) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(signal_err("SIGKILL", e)),
    }
    if wait_group_gone(pgid, Duration::from_secs(5)).await {
        Ok(())
    } else {
        Err(DeployError::StillAlive {
            instance_id: inst.instance_id.clone(),
            pid: inst.pid,
        })
    }
}

/// Waits until no live (non-zombie) process is left in group `pgid`, at most `within`.
pub(crate) async fn wait_group_gone(pgid: Pid, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if group_members(pgid.as_raw()).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_log_rotates_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"0123456789").unwrap();
        assert!(!cap_log(&path, 10).unwrap());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"abc").unwrap();
        assert!(cap_log(&path, 10).unwrap());
        assert_eq!(
            std::fs::read(dir.path().join("app.log.1")).unwrap(),
            b"0123456789abc"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // The appending writer continues at the new end, not at its old offset.
        f.write_all(b"xy").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"xy");
        assert!(!cap_log(&dir.path().join("missing.log"), 10).unwrap());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path);
        assert!(tail.starts_with("line 80"), "{tail}");
        assert!(tail.ends_with("line 99"), "{tail}");
    }

    #[test]
    fn never_targets_pid_zero_or_init() {
        assert!(to_pid(0).is_none());
        assert!(to_pid(1).is_none());
        assert!(to_pid(u32::MAX).is_none());
        let inst = Instance {
            instance_id: "x".into(),
            pid: 1,
            port: 1,
        };
        assert!(!is_running(&inst));
    }

    #[test]
    fn own_process_is_not_an_instance_without_marker() {
        let inst = Instance {
            instance_id: "not-ours".into(),
            pid: std::process::id(),
            port: 1,
        };
        assert!(!is_running(&inst));
    }
}
