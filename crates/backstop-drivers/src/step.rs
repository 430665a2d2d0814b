//! A journaled command step that never runs twice for one attempt, even across a `kill -9` of
//! the controller.
//!
//! The command runs under a small `sh` wrapper that writes its output to files in the
//! attempt's own folder and, when the command has ended, its exit code (to `exit.tmp`, then
//! renamed to `exit`: the file is there whole or not at all). The process group carries the
//! step's idempotency key, as every [`crate::command`] run does. A controller that starts
//! again and finds the step still marked running then:
//!
//! 1. reads the `exit` file if the command ended meanwhile: the outcome is recorded and the
//!    command is not run again;
//! 2. else waits for the attempt still running (found by its key), up to the step's timeout,
//!    ending it after that, and reads `exit` then;
//! 3. only if neither (the host rebooted, the folder is gone) runs the command again, with the
//!    same idempotency key, so a script can still tell.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::command::{Action, CommandDeployer, CommandError, IDEMPOTENCY_KEY_VAR, cap_text};

/// The command to run, in the wrapper's environment.
pub const STEP_COMMAND_VAR: &str = "BACKSTOP_STEP_COMMAND";
/// The attempt's folder (output and exit code), in the wrapper's environment.
pub const STEP_DIR_VAR: &str = "BACKSTOP_STEP_DIR";

/// Bytes kept of each of stdout and stderr.
pub const OUTPUT_CAP: usize = 64 * 1024;

const WRAPPER: &str = r#"sh -c "$BACKSTOP_STEP_COMMAND" >"$BACKSTOP_STEP_DIR/stdout" 2>"$BACKSTOP_STEP_DIR/stderr" </dev/null
rc=$?
printf '%s\n' "$rc" >"$BACKSTOP_STEP_DIR/exit.tmp" && mv "$BACKSTOP_STEP_DIR/exit.tmp" "$BACKSTOP_STEP_DIR/exit"
exit "$rc""#;

/// One attempt of a step.
#[derive(Debug, Clone)]
pub struct RecordedStep {
    /// The attempt's own folder (created if missing); one per step and attempt.
    pub dir: PathBuf,
    pub command: String,
    pub idempotency_key: String,
    pub timeout: Duration,
    /// Extra variables for the command (the key is added).
    pub vars: BTreeMap<String, String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOutcome {
    pub exit_code: i32,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// The outcome was found recorded (the command was not started by this call).
    pub from_record: bool,
}

impl RecordedStep {
    /// Runs the attempt, or collects it if an earlier controller already did (see the module
    /// docs).
    ///
    /// # Errors
    /// The folder cannot be made, or the command cannot be started or signalled.
    pub async fn run(&self) -> Result<RecordedOutcome, CommandError> {
        let spawn_error = |source| CommandError::Spawn {
            action: Action::Deploy,
            command: self.command.clone(),
            source,
        };
        if let Some(done) = self.recorded() {
            return Ok(done);
        }
        let mut runner = CommandDeployer::new(WRAPPER, "true");
        runner.timeout = self.timeout;
        runner.retries = 0;
        let settled = runner
            .settle_earlier_attempt(Action::Deploy, &self.idempotency_key)
            .await?;
        if let Some(done) = self.recorded() {
            return Ok(done);
        }
        if settled == Some(false) {
            // The earlier attempt outlived its timeout and was ended: that is this attempt's
            // outcome, not a reason to run the command once more.
            return Ok(RecordedOutcome {
                exit_code: 143,
                timed_out: true,
                stdout: self.read("stdout"),
                stderr: self.read("stderr"),
                from_record: true,
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(spawn_error)?;
        let mut vars = self.vars.clone();
        vars.insert(IDEMPOTENCY_KEY_VAR.into(), self.idempotency_key.clone());
        vars.insert(STEP_COMMAND_VAR.into(), self.command.clone());
        vars.insert(STEP_DIR_VAR.into(), self.dir.display().to_string());
        let (exit_code, timed_out) = match runner.deploy(&vars).await {
            Ok(out) => (out.exit_code, false),
            Err(CommandError::Failed {
                timed_out, outcome, ..
            }) => (outcome.exit_code, timed_out),
            Err(e) => return Err(e),
        };
        Ok(RecordedOutcome {
            exit_code,
            timed_out,
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
            from_record: false,
        })
    }

    /// The outcome recorded by an attempt that ended, if any.
    fn recorded(&self) -> Option<RecordedOutcome> {
        let exit = std::fs::read_to_string(self.dir.join("exit")).ok()?;
        let exit_code = exit.trim().parse().ok()?;
        Some(RecordedOutcome {
            exit_code,
            timed_out: false,
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
            from_record: true,
        })
    }

    fn read(&self, stream: &str) -> String {
        std::fs::read(self.dir.join(stream))
            .map(|bytes| cap_text(&bytes, OUTPUT_CAP))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(dir: &std::path::Path, command: &str, key: &str) -> RecordedStep {
        RecordedStep {
            dir: dir.join("attempt-1"),
            command: command.into(),
            idempotency_key: key.into(),
            timeout: Duration::from_secs(20),
            vars: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn an_ended_attempt_is_collected_not_run_again() {
        let tmp = tempfile::tempdir().unwrap();
        let count = tmp.path().join("count");
        let cmd = format!(
            "echo ran >> {}; echo out; echo err >&2; exit 3",
            count.display()
        );
        let key = format!("test/{}", uuid_like(tmp.path()));
        let s = step(tmp.path(), &cmd, &key);
        let first = s.run().await.unwrap();
        assert_eq!(
            (
                first.exit_code,
                first.from_record,
                first.stdout.as_str(),
                first.stderr.as_str()
            ),
            (3, false, "out\n", "err\n")
        );
        let again = s.run().await.unwrap();
        assert_eq!((again.exit_code, again.from_record), (3, true));
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\n");
    }

    #[tokio::test]
    async fn an_attempt_still_running_is_waited_for_not_started_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let count = tmp.path().join("count");
        let cmd = format!("echo ran >> {}; sleep 1; echo done", count.display());
        let key = format!("test/{}", uuid_like(tmp.path()));
        let s = step(tmp.path(), &cmd, &key);
        // A controller that is dropped mid-run (its future abandoned) would kill the group; one
        // killed by SIGKILL cannot. Stand in for the latter: start the wrapper by hand, marked.
        std::fs::create_dir_all(&s.dir).unwrap();
        let mut first = std::process::Command::new("sh");
        first
            .arg("-c")
            .arg(WRAPPER)
            .env(IDEMPOTENCY_KEY_VAR, &key)
            .env(STEP_COMMAND_VAR, &cmd)
            .env(STEP_DIR_VAR, &s.dir);
        std::os::unix::process::CommandExt::process_group(&mut first, 0);
        let mut child = first.spawn().unwrap();
        // Let it start (and write its first line).
        while std::fs::read_to_string(&count)
            .unwrap_or_default()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = s.run().await.unwrap();
        child.wait().unwrap();
        assert_eq!((out.exit_code, out.from_record), (0, true));
        assert_eq!(out.stdout, "done\n");
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\n");
    }

    fn uuid_like(p: &std::path::Path) -> String {
        p.file_name().unwrap().to_string_lossy().into_owned()
    }
}
