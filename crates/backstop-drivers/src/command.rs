//! Command deployer: user scripts deploy, stop and health-check a release.
//!
//! Every run is `sh -c SCRIPT` in its own process group, with the caller's variables
//! (`BACKSTOP_VERSION`, `BACKSTOP_ARTIFACT`, `BACKSTOP_IDEMPOTENCY_KEY`, …) added to the
//! inherited environment, plus [`ACTION_VAR`] and [`ATTEMPT_VAR`]. The same idempotency key is
//! passed on every attempt, so a script can recognise work it already did.
//!
//! - **Timeout** (per attempt): SIGTERM to the whole group (the script *and* everything it
//!   started), up to `grace` to exit, then SIGKILL. The group's leader is not reaped before the
//!   group is gone, so its id cannot be recycled under us.
//! - **Output**: stdout and stderr are captured separately, each capped at `output_cap` bytes
//!   (the first and last halves are kept, with `… N bytes cut …` in between).
//! - **Retries**: a nonzero exit or a timeout is retried up to `retries` times, with a delay
//!   starting at `retry_delay` and doubling (at most [`MAX_RETRY_DELAY`]). A script that cannot
//!   be started at all is not retried.
//! - A run ends when the script exits. Processes it left in the background keep running
//!   (that is how a script starts a daemon); output capture stops [`OUTPUT_DRAIN`] after the
//!   exit if they still hold the script's stdout or stderr, so redirect their output.
//! - If the returned future is dropped mid-run, the run's process group is killed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::{group_members, to_pid, wait_group_gone};

/// Version being deployed or stopped.
pub const VERSION_VAR: &str = "BACKSTOP_VERSION";
/// Artifact (image, path, URL) of that version.
pub const ARTIFACT_VAR: &str = "BACKSTOP_ARTIFACT";
/// Idempotency key of the recovery or rollout step; identical on every attempt.
pub const IDEMPOTENCY_KEY_VAR: &str = "BACKSTOP_IDEMPOTENCY_KEY";
/// Set by the deployer: `deploy`, `stop` or `health`.
pub const ACTION_VAR: &str = "BACKSTOP_ACTION";
/// Set by the deployer: attempt number, from 1.
pub const ATTEMPT_VAR: &str = "BACKSTOP_ATTEMPT";

/// Longest delay between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long output is still read after the script exited, while background processes it
/// started hold its stdout or stderr open.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// How long to wait for the group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Read size for the output pipes.
const READ_CHUNK: usize = 8192;

/// Runs user scripts to deploy, stop and health-check a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDeployer {
    /// Script that deploys the version in the variables.
    pub deploy: String,
    /// Script that stops it.
    pub stop: String,
    /// Script whose exit 0 means healthy.
    pub health: Option<String>,
    /// Limit of one attempt.
    pub timeout: Duration,
    /// Attempts after the first on nonzero exit or timeout.
    pub retries: u32,
    /// Bytes kept of each of stdout and stderr.
    pub output_cap: usize,
    /// After SIGTERM on timeout, how long the group may take to exit before SIGKILL.
    pub grace: Duration,
    /// Delay before the first retry; doubles on each further retry.
    pub retry_delay: Duration,
}

impl CommandDeployer {
    /// A deployer with defaults: timeout 5 min, 2 retries, 64 KiB of output per stream,
    /// grace 10 s, first retry after 1 s, no health script.
    pub fn new(deploy: impl Into<String>, stop: impl Into<String>) -> Self {
        CommandDeployer {
            deploy: deploy.into(),
            stop: stop.into(),
            health: None,
            timeout: Duration::from_secs(300),
            retries: 2,
            output_cap: 64 * 1024,
            grace: Duration::from_secs(10),
            retry_delay: Duration::from_secs(1),
        }
    }

    /// Runs the deploy script (retried as configured).
    pub async fn deploy(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<CommandOutcome, CommandError> {
        self.run(Action::Deploy, &self.deploy, vars).await
    }

    /// Runs the stop script (retried as configured).
    pub async fn stop(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<CommandOutcome, CommandError> {
        self.run(Action::Stop, &self.stop, vars).await
    }

    /// Runs the health script (retried as configured); `Ok` means it exited 0.
    /// [`CommandError::NotConfigured`] if there is none.
    pub async fn health(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<CommandOutcome, CommandError> {
        let Some(script) = &self.health else {
            return Err(CommandError::NotConfigured {
                action: Action::Health,
            });
        };
        self.run(Action::Health, script, vars).await
    }

    async fn run(
        &self,
        action: Action,
        script: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<CommandOutcome, CommandError> {
        if script.trim().is_empty() {
            return Err(CommandError::NotConfigured { action });
        }
        check_vars(action, vars)?;
        let key = vars.get(IDEMPOTENCY_KEY_VAR).map_or("", String::as_str);
        if !key.is_empty() {
            self.settle_earlier_attempt(action, key).await?;
        }
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(self.retry_delay)
            .with_max_delay(MAX_RETRY_DELAY.max(self.retry_delay))
            .with_max_times(self.retries as usize)
            .build();
        let started = Instant::now();
        let mut attempt = 1u32;
        loop {
            let run = self.run_once(action, script, vars, attempt).await?;
            let outcome = CommandOutcome {
                exit_code: run.exit_code,
                stdout: run.stdout,
                stderr: run.stderr,
                attempts: attempt,
                duration: started.elapsed(),
            };
            if run.exit_code == 0 && !run.timed_out {
                // Health scripts and probes pass every second: news only when they fail.
                if action == Action::Health {
                    tracing::debug!(%action, attempts = attempt, duration_ms = outcome.duration.as_millis() as u64, "Command succeeded.");
                } else {
                    tracing::info!(%action, idempotency_key = key, attempts = attempt, duration_ms = outcome.duration.as_millis() as u64, "Command succeeded.");
                }
                return Ok(outcome);
            }
            let how = if run.timed_out {
                format!("timed out after {:.1}s", self.timeout.as_secs_f64())
            } else {
                format!("exited with code {}", run.exit_code)
            };
            match delays.next() {
                Some(delay) => {
                    tracing::warn!(%action, idempotency_key = key, attempt, exit_code = run.exit_code, timed_out = run.timed_out, retry_in_ms = delay.as_millis() as u64, "Command failed ({how}); retrying.");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => {
                    tracing::warn!(%action, idempotency_key = key, attempts = attempt, exit_code = run.exit_code, timed_out = run.timed_out, "Command failed ({how}); no attempts left.");
                    return Err(CommandError::Failed {
                        action,
                        command: script.to_owned(),
                        timed_out: run.timed_out,
                        outcome: Box::new(outcome),
                    });
                }
            }
        }
    }

    /// Never two attempts at once: a controller killed mid-command leaves its attempt running
    /// (in its own process group, marked with the step's idempotency key). Before a new
    /// attempt, that one is waited for, up to one attempt's timeout, and then ended.
    /// Returns `Some(true)` when an earlier attempt was running and ended by itself,
    /// `Some(false)` when it outlived the timeout and was ended, `None` when there was none.
    pub async fn settle_earlier_attempt(
        &self,
        action: Action,
        key: &str,
    ) -> Result<Option<bool>, CommandError> {
        let Some(pgid) =
            crate::process::find_marked_group(IDEMPOTENCY_KEY_VAR, key).and_then(to_pid)
        else {
            return Ok(None);
        };
        tracing::warn!(%action, idempotency_key = key, pgid = pgid.as_raw(), "An earlier attempt of this command is still running (its controller stopped); waiting for it before running it again.");
        if wait_group_gone(pgid, self.timeout).await {
            return Ok(Some(true));
        }
        tracing::warn!(%action, idempotency_key = key, pgid = pgid.as_raw(), "The earlier attempt outlived the timeout; ending it.");
        terminate_group(action, pgid, self.grace).await?;
        Ok(Some(false))
    }

    async fn run_once(
        &self,
        action: Action,
        script: &str,
        vars: &BTreeMap<String, String>,
        attempt: u32,
    ) -> Result<RunResult, CommandError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .envs(vars)
            .env(ACTION_VAR, action.as_str())
            .env(ATTEMPT_VAR, attempt.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        crate::without_daemon_secrets(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
            action,
            command: script.to_owned(),
            source,
        })?;
        // Readers stop when the pipes close, or when cancelled (also if this future is dropped).
        let stop_reading = CancellationToken::new();
        let _stop_on_drop = stop_reading.clone().drop_guard();
        let stdout = child
            .stdout
            .take()
            .map(|r| tokio::spawn(read_capped(r, self.output_cap, stop_reading.clone())));
        let stderr = child
            .stderr
            .take()
            .map(|r| tokio::spawn(read_capped(r, self.output_cap, stop_reading.clone())));
        let Some(pgid) = child.id().and_then(to_pid) else {
            // Already reaped (cannot happen before we wait): nothing left to signal.
            let status = child
                .wait()
                .await
                .map_err(|source| CommandError::Wait { action, source })?;
            return Ok(finish(status, false, stdout, stderr, &stop_reading).await);
        };
        // Declared after `child`, so dropped before it: kills the group while the leader is
        // still unreaped (its id cannot have been reused).
        let mut guard = GroupKill(Some(pgid));
        tracing::debug!(%action, attempt, pgid = pgid.as_raw(), "Command started.");

        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let (status, timed_out) = match waited {
            Ok(status) => {
                guard.0 = None;
                let status = status.map_err(|source| CommandError::Wait { action, source })?;
                let left = group_members(pgid.as_raw()).len();
                if left > 0 {
                    tracing::info!(%action, attempt, pgid = pgid.as_raw(), processes = left, "Command exited and left processes running in the background.");
                }
                (status, false)
            }
            Err(_) => {
                tracing::warn!(%action, attempt, pgid = pgid.as_raw(), timeout_ms = self.timeout.as_millis() as u64, grace_ms = self.grace.as_millis() as u64, "Command timed out; terminating its process group.");
                terminate_group(action, pgid, self.grace).await?;
                guard.0 = None;
                let status = match tokio::time::timeout(KILL_WAIT, child.wait()).await {
                    Ok(status) => status.map_err(|source| CommandError::Wait { action, source })?,
                    Err(_) => {
                        return Err(CommandError::StillAlive {
                            action,
                            pgid: pgid.as_raw(),
                        });
                    }
                };
                (status, true)
            }
        };
        Ok(finish(status, timed_out, stdout, stderr, &stop_reading).await)
    }
}

/// Result of one attempt.
struct RunResult {
    exit_code: i32,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

type Reader = Option<tokio::task::JoinHandle<Capped>>;

async fn finish(
    status: ExitStatus,
    timed_out: bool,
    stdout: Reader,
    stderr: Reader,
    stop_reading: &CancellationToken,
) -> RunResult {
    let drain_deadline = Instant::now() + OUTPUT_DRAIN;
    let cancel_at_deadline = async {
        tokio::time::sleep_until(drain_deadline).await;
        stop_reading.cancel();
    };
    let collect = async {
        let out = collect(stdout).await;
        let err = collect(stderr).await;
        (out, err)
    };
    tokio::pin!(collect);
    let (stdout, stderr) = tokio::select! {
        r = &mut collect => r,
        () = cancel_at_deadline => {
            tracing::info!("Background processes still hold the command's output open; output capture stopped.");
            collect.await
        }
    };
    RunResult {
        exit_code: exit_code(status),
        timed_out,
        stdout,
        stderr,
    }
}

async fn collect(reader: Reader) -> String {
    match reader {
        Some(handle) => match handle.await {
            Ok(capped) => capped.render(),
            Err(e) => format!("(output lost: {e})"),
        },
        None => String::new(),
    }
}

/// Exit code, or 128 + signal number for a process killed by a signal (as shells report it).
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// SIGTERM to the group, `grace` to vanish, then SIGKILL.
async fn terminate_group(action: Action, pgid: Pid, grace: Duration) -> Result<(), CommandError> {
    let signal_err = |signal: &'static str, source| CommandError::Signal {
        action,
        pgid: pgid.as_raw(),
        signal,
        source,
    };
    match killpg(pgid, Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(signal_err("SIGTERM", e)),
    }
    if wait_group_gone(pgid, grace).await {
        return Ok(());
    }
    tracing::warn!(%action, pgid = pgid.as_raw(), "Command ignored SIGTERM; sending SIGKILL to its process group.");
    match killpg(pgid, Signal::SIGKILL) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(signal_err("SIGKILL", e)),
    }
    if wait_group_gone(pgid, KILL_WAIT).await {
        Ok(())
    } else {
        Err(CommandError::StillAlive {
            action,
            pgid: pgid.as_raw(),
        })
    }
}

/// SIGKILL to the group on drop unless disarmed.
struct GroupKill(Option<Pid>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            tracing::warn!(
                pgid = pgid.as_raw(),
                "Command abandoned mid-run; killing its process group."
            );
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

fn check_vars(action: Action, vars: &BTreeMap<String, String>) -> Result<(), CommandError> {
    for (name, value) in vars {
        let reason = if name.is_empty() {
            Some("empty name")
        } else if name.contains('=') {
            Some("the name contains `=`")
        } else if name.contains('\0') {
            Some("the name contains a NUL byte")
        } else if value.contains('\0') {
            Some("the value contains a NUL byte")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(CommandError::InvalidVar {
                action,
                name: name.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// `bytes` as text, at most `cap` of them: the first and last halves, with `… N bytes cut …`
/// between (how captured output is kept).
#[must_use]
pub fn cap_text(bytes: &[u8], cap: usize) -> String {
    let mut capped = Capped::new(cap);
    capped.push(bytes);
    capped.render()
}

/// Keeps the first and last bytes of a stream, counting what was cut between.
#[derive(Debug)]
struct Capped {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
    error: Option<String>,
}

impl Capped {
    fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        Capped {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: cap - head_cap,
            total: 0,
            error: None,
        }
    }

    fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let n = room.min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
        }
        if self.tail_cap == 0 {
            return;
        }
        if chunk.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + chunk.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(chunk);
        }
    }

    fn render(&self) -> String {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let cut = self.total - kept;
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if cut > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("… {cut} bytes cut …\n"));
        }
        let (a, b) = self.tail.as_slices();
        let tail = [a, b].concat();
        out.push_str(&String::from_utf8_lossy(&tail));
        if let Some(e) = &self.error {
            out.push_str(&format!("\n(output read error: {e})"));
        }
        out
    }
}

async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
    stop: CancellationToken,
) -> Capped {
    let mut capped = Capped::new(cap);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            biased;
            read = r.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => capped.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    capped.error = Some(e.to_string());
                    break;
                }
            },
            () = stop.cancelled() => break,
        }
    }
    capped
}

/// Which script ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Deploy,
    Stop,
    Health,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Stop => "stop",
            Action::Health => "health",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful run (or, inside [`CommandError::Failed`], the last failed attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit code of the last attempt; 128 + N if it was killed by signal N.
    pub exit_code: i32,
    /// Captured stdout of the last attempt, capped at `output_cap` bytes.
    pub stdout: String,
    /// Captured stderr of the last attempt, capped at `output_cap` bytes.
    pub stderr: String,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Time from the first attempt's start to the end, retry delays included.
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{action} command: none is configured")]
    NotConfigured { action: Action },
    #[error("{action} command: environment variable {name:?} is invalid: {reason}")]
    InvalidVar {
        action: Action,
        name: String,
        reason: &'static str,
    },
    #[error("{action} command `sh -c {command}`: cannot start: {source}")]
    Spawn {
        action: Action,
        command: String,
        source: io::Error,
    },
    #[error("{action} command: waiting for it failed: {source}")]
    Wait { action: Action, source: io::Error },
    #[error(
        "{action} command `sh -c {command}`: {} on attempt {} of {} ({:.1}s in all); stderr:\n{}",
        failure(*timed_out, outcome.exit_code),
        outcome.attempts,
        outcome.attempts,
        outcome.duration.as_secs_f64(),
        if outcome.stderr.trim().is_empty() { "(empty)" } else { outcome.stderr.trim_end() }
    )]
    Failed {
        action: Action,
        command: String,
        /// The last attempt hit the timeout (and its process group was killed).
        timed_out: bool,
        /// The last attempt's output and the attempt count.
        outcome: Box<CommandOutcome>,
    },
    #[error("{action} command: cannot send {signal} to process group {pgid}: {source}")]
    Signal {
        action: Action,
        pgid: i32,
        signal: &'static str,
        source: Errno,
    },
    #[error("{action} command: process group {pgid} still alive after SIGKILL")]
    StillAlive { action: Action, pgid: i32 },
}

fn failure(timed_out: bool, exit_code: i32) -> String {
    if timed_out {
        "timed out (process group killed)".to_owned()
    } else {
        format!("exited with code {exit_code}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(cap: usize, chunks: &[&[u8]]) -> String {
        let mut c = Capped::new(cap);
        for ch in chunks {
            c.push(ch);
        }
        c.render()
    }

    #[test]
    fn small_output_is_kept_whole() {
        assert_eq!(capped(16, &[b"hello ", b"world"]), "hello world");
        assert_eq!(capped(11, &[b"hello world"]), "hello world");
    }

    #[test]
    fn large_output_keeps_head_and_tail() {
        let out = capped(10, &[b"0123456789", b"abcdefghij", b"KLMNO"]);
        assert_eq!(out, "01234\n… 15 bytes cut …\nKLMNO");
        // Many small chunks: the tail is the last bytes.
        let chunks: Vec<[u8; 1]> = (0..100u8).map(|i| [b'a' + i % 26]).collect();
        let refs: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let out = capped(6, &refs);
        assert_eq!(out, "abc\n… 94 bytes cut …\ntuv");
    }

    #[test]
    fn zero_cap_says_how_much_was_cut() {
        assert_eq!(capped(0, &[b"abc"]), "… 3 bytes cut …\n");
    }

    #[test]
    fn invalid_vars_are_refused() {
        for (name, value) in [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0y")] {
            let vars = BTreeMap::from([(name.to_owned(), value.to_owned())]);
            assert!(
                matches!(
                    check_vars(Action::Deploy, &vars),
                    Err(CommandError::InvalidVar { .. })
                ),
                "{name:?}={value:?}"
            );
        }
        let ok = BTreeMap::from([(VERSION_VAR.to_owned(), "v1 = two".to_owned())]);
        assert!(check_vars(Action::Deploy, &ok).is_ok());
    }
}
