//! A run of a runbook (practice 5.2): the steps it followed, pinned to the runbook's sha256,
//! each with who did it, when, with what command and what came out; and every deviation from
//! the written procedure (practice 5.6): a skipped step, an altered command, an ad-hoc action,
//! each with its reason.
//!
//! The run is a small state machine the daemon drives and people steer. Automated steps run
//! one after the other; a manual step, or an automated one that failed, stops the run until a
//! person confirms, retries, skips, alters or aborts. Every change appends to `history`, which
//! is what an incident's timeline shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::named::string_enum;

string_enum! {
    pub enum RunStatus {
        /// The daemon is running automated steps.
        Running = "running",
        /// A step needs a person: a manual step to confirm, or a failed one to decide on.
        Waiting = "waiting",
        /// Every step is done or skipped.
        Succeeded = "succeeded",
        /// Someone stopped it, with a reason.
        Aborted = "aborted",
    }
}

string_enum! {
    pub enum StepStatus {
        Pending = "pending",
        /// An automated step the daemon started (and resumes after a crash).
        Running = "running",
        /// A manual step waiting for a person to say it is done.
        Waiting = "waiting",
        /// An automated step that exited nonzero or timed out; a person decides what next.
        Failed = "failed",
        Done = "done",
        Skipped = "skipped",
    }
}

string_enum! {
    /// How a run departed from the written runbook.
    pub enum DeviationKind {
        Skipped = "skipped",
        /// The step ran a different command than written.
        Altered = "altered",
        /// An action the runbook does not have.
        AdHoc = "ad-hoc",
    }
}

/// One step as this run follows it: the runbook's step with its inputs filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunStep {
    pub id: String,
    /// `manual`, `command`, `verify` or `ad-hoc`.
    pub kind: String,
    pub title: String,
    /// The shell command the daemon runs (inputs filled in); `None`: a person does it.
    pub command: Option<String>,
    pub timeout_ms: Millis,
    #[schema(value_type = String)]
    pub status: StepStatus,
    /// Handed to the command as `BACKSTOP_IDEMPOTENCY_KEY`; the same on a resumed attempt.
    pub idempotency_key: String,
    /// Who ran, confirmed or skipped it last.
    pub actor: Option<String>,
    pub started_at_ms: Option<Millis>,
    pub finished_at_ms: Option<Millis>,
    /// Times the command was started (a retry starts it again).
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// What the person said when confirming, or why the command failed to start.
    pub note: String,
}

impl RunStep {
    /// Step `id` of run `run_id`, not started: the daemon runs `command`, or a person does it.
    #[must_use]
    pub fn pending(
        run_id: &str,
        id: &str,
        kind: &str,
        title: &str,
        command: Option<String>,
        timeout_ms: Millis,
    ) -> RunStep {
        RunStep {
            id: id.into(),
            kind: kind.into(),
            title: title.into(),
            command,
            timeout_ms,
            status: StepStatus::Pending,
            idempotency_key: step_key(run_id, id),
            actor: None,
            started_at_ms: None,
            finished_at_ms: None,
            attempts: 0,
            exit_code: None,
            timed_out: false,
            stdout: String::new(),
            stderr: String::new(),
            note: String::new(),
        }
    }

    /// A step the daemon runs (as opposed to one a person does and confirms).
    #[must_use]
    pub fn automated(&self) -> bool {
        self.command.is_some()
    }

    fn finished(&self) -> bool {
        matches!(self.status, StepStatus::Done | StepStatus::Skipped)
    }
}

/// A departure from the written procedure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deviation {
    pub at_ms: Millis,
    pub actor: String,
    #[schema(value_type = String)]
    pub kind: DeviationKind,
    /// The step's id.
    pub step: String,
    pub reason: String,
    /// What changed: the command written and the one run, or the ad-hoc action.
    pub detail: String,
}

/// One line of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunEntry {
    pub at_ms: Millis,
    pub actor: String,
    /// `started`, `step-started`, `step-done`, `step-failed`, `confirmed`, `retried`,
    /// `deviation`, `aborted` or `succeeded`.
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunbookRun {
    pub id: String,
    pub runbook: String,
    pub runbook_version: u32,
    /// sha256 of the runbook file as it was when the run started.
    pub digest: String,
    /// The least role that may run and steer it (the runbook's).
    pub role: String,
    pub env: String,
    pub service: Option<String>,
    /// The incident this run is part of: its timeline shows the run's steps and deviations.
    pub incident_id: Option<String>,
    pub started_by: String,
    pub started_at_ms: Millis,
    /// Every input's value, defaults filled in.
    #[schema(value_type = Object)]
    pub inputs: BTreeMap<String, String>,
    #[schema(value_type = String)]
    pub status: RunStatus,
    pub steps: Vec<RunStep>,
    pub deviations: Vec<Deviation>,
    pub history: Vec<RunEntry>,
    pub finished_at_ms: Option<Millis>,
}

/// What the daemon should do next for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run (or resume) the automated step at this index.
    Execute(usize),
    /// Nothing until a person acts.
    Wait,
    /// The run is over.
    Done,
}

/// How an automated step's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub exit_code: i32,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// The key a command step is run with: stable for the run and step, whatever the attempt.
#[must_use]
pub fn step_key(run_id: &str, step_id: &str) -> String {
    format!("runbook-run/{run_id}/{step_id}")
}

impl RunbookRun {
    /// A new run, `running`, as `actor` at `now`.
    #[allow(clippy::too_many_arguments, reason = "a run has this many facts")]
    #[must_use]
    pub fn start(
        id: String,
        runbook: (&str, u32, &str),
        role: &str,
        env: &str,
        service: Option<String>,
        incident_id: Option<String>,
        inputs: BTreeMap<String, String>,
        steps: Vec<RunStep>,
        actor: &str,
        now: Millis,
    ) -> RunbookRun {
        let (name, version, digest) = runbook;
        let mut run = RunbookRun {
            id,
            runbook: name.into(),
            runbook_version: version,
            digest: digest.into(),
            role: role.into(),
            env: env.into(),
            service,
            incident_id,
            started_by: actor.into(),
            started_at_ms: now,
            inputs,
            status: RunStatus::Running,
            steps,
            deviations: vec![],
            history: vec![],
            finished_at_ms: None,
        };
        let text = format!(
            "runbook {name} v{version} (sha256 {}) started",
            &digest[..digest.len().min(12)]
        );
        run.log(now, actor, "started", text);
        run
    }

    fn log(&mut self, at_ms: Millis, actor: &str, kind: &str, text: String) {
        self.history.push(RunEntry {
            at_ms,
            actor: actor.into(),
            kind: kind.into(),
            text,
        });
    }

    /// The run is over (succeeded or aborted).
    #[must_use]
    pub fn over(&self) -> bool {
        matches!(self.status, RunStatus::Succeeded | RunStatus::Aborted)
    }

    /// Decides what comes next, marking a manual step waiting and the run waiting or
    /// succeeded as it goes. Returns whether the run changed (so the caller writes it).
    pub fn advance(&mut self, now: Millis) -> (Next, bool) {
        if self.over() {
            return (Next::Done, false);
        }
        let Some(i) = self.steps.iter().position(|s| !s.finished()) else {
            self.status = RunStatus::Succeeded;
            self.finished_at_ms = Some(now);
            let text = if self.deviations.is_empty() {
                "every step done".to_owned()
            } else {
                format!(
                    "every step done or skipped, with {} deviation(s)",
                    self.deviations.len()
                )
            };
            self.log(now, "controller", "succeeded", text);
            return (Next::Done, true);
        };
        let step = &mut self.steps[i];
        match step.status {
            StepStatus::Pending if step.automated() => {
                let was = self.status;
                self.status = RunStatus::Running;
                (Next::Execute(i), was != RunStatus::Running)
            }
            StepStatus::Running => (Next::Execute(i), false),
            StepStatus::Pending => {
                step.status = StepStatus::Waiting;
                step.started_at_ms = Some(now);
                let text = format!("step {}: waiting for a person: {}", step.id, step.title);
                self.status = RunStatus::Waiting;
                self.log(now, "controller", "step-waiting", text);
                (Next::Wait, true)
            }
            _ => {
                let was = self.status;
                self.status = RunStatus::Waiting;
                (Next::Wait, was != RunStatus::Waiting)
            }
        }
    }

    /// Marks step `i` running for a new attempt (written before the command starts, so a crash
    /// after this point resumes the same attempt). The daemon runs it on behalf of the person
    /// who last steered the step (altered or retried it), else of the one who started the run.
    pub fn begin(&mut self, i: usize, now: Millis) {
        let started_by = self.started_by.clone();
        let step = &mut self.steps[i];
        let actor = step.actor.clone().unwrap_or(started_by);
        step.status = StepStatus::Running;
        step.attempts += 1;
        step.actor = Some(actor.clone());
        step.started_at_ms = Some(now);
        step.finished_at_ms = None;
        let text = format!(
            "step {} started (attempt {}): {}",
            step.id,
            step.attempts,
            step.command.as_deref().unwrap_or_default()
        );
        self.log(now, &actor, "step-started", text);
    }

    /// Records how step `i`'s command ended: done on exit 0, else failed (the run waits).
    pub fn finish(&mut self, i: usize, outcome: StepOutcome, now: Millis) {
        let step = &mut self.steps[i];
        let ok = outcome.exit_code == 0 && !outcome.timed_out;
        step.status = if ok {
            StepStatus::Done
        } else {
            StepStatus::Failed
        };
        step.exit_code = Some(outcome.exit_code);
        step.timed_out = outcome.timed_out;
        step.stdout = outcome.stdout;
        step.stderr = outcome.stderr;
        step.finished_at_ms = Some(now);
        let actor = step.actor.clone().unwrap_or_else(|| "controller".into());
        let (kind, text) = if ok {
            ("step-done", format!("step {} done", step.id))
        } else if outcome.timed_out {
            (
                "step-failed",
                format!("step {} timed out; waiting for a person", step.id),
            )
        } else {
            (
                "step-failed",
                format!(
                    "step {} failed with exit code {}; waiting for a person",
                    step.id, outcome.exit_code
                ),
            )
        };
        if !ok {
            self.status = RunStatus::Waiting;
        }
        self.log(now, &actor, kind, text);
    }

    /// Step `i`'s command could not be started at all (a spawn error): failed, with why.
    pub fn could_not_start(&mut self, i: usize, why: &str, now: Millis) {
        let step = &mut self.steps[i];
        step.status = StepStatus::Failed;
        step.note = why.into();
        step.finished_at_ms = Some(now);
        let text = format!("step {} could not run: {why}", step.id);
        self.status = RunStatus::Waiting;
        self.log(now, "controller", "step-failed", text);
    }

    fn step_index(&self, step: &str) -> Result<usize, String> {
        self.steps.iter().position(|s| s.id == step).ok_or_else(|| {
            let ids: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
            format!(
                "run {} has no step {step:?}; its steps are {}",
                self.id,
                ids.join(", ")
            )
        })
    }

    fn steerable(&self) -> Result<(), String> {
        if self.over() {
            return Err(format!(
                "run {} is {}; it changes no more",
                self.id, self.status
            ));
        }
        Ok(())
    }

    /// After a person's action: the daemon picks the run up again.
    fn resume(&mut self) {
        if self.status == RunStatus::Waiting {
            self.status = RunStatus::Running;
        }
    }

    /// A person says the manual step `step` is done (or a verify step without a command holds).
    ///
    /// # Errors
    /// No such step, or it is not waiting for a person.
    pub fn confirm(
        &mut self,
        step: &str,
        actor: &str,
        note: &str,
        now: Millis,
    ) -> Result<(), String> {
        self.steerable()?;
        let i = self.step_index(step)?;
        let s = &mut self.steps[i];
        if s.status != StepStatus::Waiting {
            return Err(format!(
                "step {step} is {}; only a manual step waiting for a person can be confirmed{}",
                s.status,
                if s.status == StepStatus::Failed {
                    " (retry, alter or skip a failed one)"
                } else {
                    ""
                }
            ));
        }
        s.status = StepStatus::Done;
        s.actor = Some(actor.into());
        s.finished_at_ms = Some(now);
        s.note = note.into();
        let text = if note.trim().is_empty() {
            format!("step {step} confirmed done")
        } else {
            format!("step {step} confirmed done: {note}")
        };
        self.log(now, actor, "confirmed", text);
        self.resume();
        Ok(())
    }

    /// Runs the failed step `step` again, as written (not a deviation).
    ///
    /// # Errors
    /// No such step, or it has not failed.
    pub fn retry(&mut self, step: &str, actor: &str, now: Millis) -> Result<(), String> {
        self.steerable()?;
        let i = self.step_index(step)?;
        let s = &mut self.steps[i];
        if s.status != StepStatus::Failed {
            return Err(format!(
                "step {step} is {}; only a failed step is retried",
                s.status
            ));
        }
        s.status = StepStatus::Pending;
        s.actor = Some(actor.into());
        self.log(
            now,
            actor,
            "retried",
            format!("step {step} to be run again"),
        );
        self.resume();
        Ok(())
    }

    fn open_for_deviation(&self, step: &str) -> Result<usize, String> {
        let i = self.step_index(step)?;
        let s = &self.steps[i];
        match s.status {
            StepStatus::Pending | StepStatus::Waiting | StepStatus::Failed => Ok(i),
            StepStatus::Running => Err(format!(
                "step {step} is running; wait for it to end (or for its timeout)"
            )),
            StepStatus::Done | StepStatus::Skipped => {
                Err(format!("step {step} is {} already", s.status))
            }
        }
    }

    fn deviate(
        &mut self,
        kind: DeviationKind,
        step: &str,
        actor: &str,
        reason: &str,
        detail: String,
        now: Millis,
    ) {
        let text = format!("{kind} step {step}: {reason}");
        self.deviations.push(Deviation {
            at_ms: now,
            actor: actor.into(),
            kind,
            step: step.into(),
            reason: reason.into(),
            detail,
        });
        self.log(now, actor, "deviation", text);
    }

    /// Skips `step`: a deviation, with its reason.
    ///
    /// # Errors
    /// No reason, no such step, or it is running or over.
    pub fn skip(
        &mut self,
        step: &str,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<(), String> {
        self.steerable()?;
        need_reason(reason)?;
        let i = self.open_for_deviation(step)?;
        let s = &mut self.steps[i];
        s.status = StepStatus::Skipped;
        s.actor = Some(actor.into());
        s.finished_at_ms = Some(now);
        let detail = format!("{} ({})", s.title, s.command.as_deref().unwrap_or("manual"));
        self.deviate(DeviationKind::Skipped, step, actor, reason, detail, now);
        self.resume();
        Ok(())
    }

    /// Replaces `step`'s command with `command` (a manual step becomes one the daemon runs): a
    /// deviation, with its reason.
    ///
    /// # Errors
    /// No reason or command, no such step, or it is running or over.
    pub fn alter(
        &mut self,
        step: &str,
        command: &str,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<(), String> {
        self.steerable()?;
        need_reason(reason)?;
        if command.trim().is_empty() {
            return Err("the altered command is empty".into());
        }
        let i = self.open_for_deviation(step)?;
        let s = &mut self.steps[i];
        let detail = format!(
            "written: {}; run instead: {command}",
            s.command.as_deref().unwrap_or("(a manual step)")
        );
        s.command = Some(command.into());
        s.status = StepStatus::Pending;
        s.actor = Some(actor.into());
        self.deviate(DeviationKind::Altered, step, actor, reason, detail, now);
        self.resume();
        Ok(())
    }

    /// Records an action the runbook does not have, before the step the run is at: a command
    /// the daemon runs next, or (without one) something a person already did. A deviation,
    /// with its reason.
    ///
    /// # Errors
    /// No reason or title.
    pub fn ad_hoc(
        &mut self,
        title: &str,
        command: Option<&str>,
        timeout_ms: Millis,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<String, String> {
        self.steerable()?;
        need_reason(reason)?;
        if title.trim().is_empty() {
            return Err("the ad-hoc step needs a title".into());
        }
        let command = command.filter(|c| !c.trim().is_empty());
        let n = self.steps.iter().filter(|s| s.kind == "ad-hoc").count() + 1;
        let id = format!("ad-hoc-{n}");
        // Before the step the run is at, after one that is running.
        let at = self
            .steps
            .iter()
            .position(|s| !s.finished() && s.status != StepStatus::Running)
            .unwrap_or(self.steps.len());
        let done = command.is_none();
        let mut step = RunStep::pending(
            &self.id,
            &id,
            "ad-hoc",
            title,
            command.map(str::to_owned),
            timeout_ms,
        );
        step.actor = Some(actor.into());
        if done {
            step.status = StepStatus::Done;
            step.started_at_ms = Some(now);
            step.finished_at_ms = Some(now);
        }
        self.steps.insert(at, step);
        let detail = match command {
            Some(c) => format!("{title}: ran {c}"),
            None => format!("{title}: done by hand"),
        };
        self.deviate(DeviationKind::AdHoc, &id, actor, reason, detail, now);
        self.resume();
        Ok(id)
    }

    /// Stops the run for good, with a reason.
    ///
    /// # Errors
    /// No reason, over already, or a step is running.
    pub fn abort(&mut self, actor: &str, reason: &str, now: Millis) -> Result<(), String> {
        self.steerable()?;
        need_reason(reason)?;
        if let Some(s) = self.steps.iter().find(|s| s.status == StepStatus::Running) {
            return Err(format!(
                "step {} is running; abort once it ended (or its timeout of {} s passed)",
                s.id,
                s.timeout_ms / 1000
            ));
        }
        self.status = RunStatus::Aborted;
        self.finished_at_ms = Some(now);
        self.log(now, actor, "aborted", format!("run aborted: {reason}"));
        Ok(())
    }
}

fn need_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() {
        return Err("a deviation needs a reason (--reason)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, command: Option<&str>) -> RunStep {
        let kind = if command.is_some() {
            "command"
        } else {
            "manual"
        };
        let title = format!("do {id}");
        RunStep::pending("r1", id, kind, &title, command.map(str::to_owned), 60_000)
    }

    fn run(steps: Vec<RunStep>) -> RunbookRun {
        RunbookRun::start(
            "r1".into(),
            ("restore", 2, "abcdef0123456789"),
            "releaser",
            "prod",
            None,
            None,
            BTreeMap::new(),
            steps,
            "token:alice",
            1_000,
        )
    }

    fn ok() -> StepOutcome {
        StepOutcome {
            exit_code: 0,
            timed_out: false,
            stdout: "fine".into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn automated_steps_run_in_order_and_a_manual_one_waits_for_a_person() {
        let mut r = run(vec![
            step("a", Some("true")),
            step("b", None),
            step("c", Some("x")),
        ]);
        assert_eq!(r.advance(1), (Next::Execute(0), false));
        r.begin(0, 2);
        // A crash now: the step is resumed, not started again.
        assert_eq!(r.advance(3), (Next::Execute(0), false));
        r.finish(0, ok(), 4);
        assert_eq!(r.advance(5), (Next::Wait, true));
        assert_eq!(r.status, RunStatus::Waiting);
        assert_eq!(r.steps[1].status, StepStatus::Waiting);
        assert!(
            r.retry("b", "bob", 6).is_err(),
            "a waiting step is confirmed, not retried"
        );
        r.confirm("b", "token:bob", "announced in #orders", 7)
            .unwrap();
        assert_eq!(r.status, RunStatus::Running);
        assert_eq!(r.advance(8).0, Next::Execute(2));
        r.begin(2, 9);
        r.finish(2, ok(), 10);
        assert_eq!(r.advance(11), (Next::Done, true));
        assert_eq!(r.status, RunStatus::Succeeded);
        assert!(r.deviations.is_empty());
        assert!(
            r.confirm("b", "x", "", 12).is_err(),
            "a finished run changes no more"
        );
    }

    #[test]
    fn a_failed_step_waits_and_every_way_past_it_but_retry_is_a_deviation_with_a_reason() {
        let mut r = run(vec![step("a", Some("false")), step("b", Some("y"))]);
        r.advance(1);
        r.begin(0, 2);
        r.finish(
            0,
            StepOutcome {
                exit_code: 3,
                timed_out: false,
                stdout: String::new(),
                stderr: "boom".into(),
            },
            3,
        );
        assert_eq!(r.status, RunStatus::Waiting);
        assert_eq!(r.advance(4).0, Next::Wait);
        r.retry("a", "token:alice", 5).unwrap();
        assert_eq!(r.advance(6).0, Next::Execute(0));
        r.begin(0, 7);
        assert_eq!(r.steps[0].attempts, 2);
        assert!(
            r.skip("a", "x", "r", 8).is_err(),
            "a running step is not skipped"
        );
        r.finish(
            0,
            StepOutcome {
                exit_code: 1,
                timed_out: true,
                stdout: String::new(),
                stderr: String::new(),
            },
            9,
        );
        assert!(
            r.alter("a", "fixed", "token:alice", " ", 10).is_err(),
            "a reason is required"
        );
        r.alter(
            "a",
            "fixed --force",
            "token:alice",
            "the flag changed name",
            10,
        )
        .unwrap();
        assert_eq!(r.steps[0].command.as_deref(), Some("fixed --force"));
        r.skip("b", "token:alice", "done by the DBA already", 11)
            .unwrap();
        let id = r
            .ad_hoc(
                "told support",
                None,
                60_000,
                "token:carol",
                "customers asked",
                12,
            )
            .unwrap();
        assert_eq!(id, "ad-hoc-1");
        assert_eq!(r.steps[0].id, "ad-hoc-1", "recorded where the run stood");
        let kinds: Vec<_> = r.deviations.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                DeviationKind::Altered,
                DeviationKind::Skipped,
                DeviationKind::AdHoc
            ]
        );
        assert!(r.deviations.iter().all(|d| !d.reason.is_empty()));
        assert_eq!(
            r.advance(13).0,
            Next::Execute(1),
            "the altered step runs next"
        );
        r.begin(1, 14);
        assert!(r.abort("x", "stop", 15).is_err(), "not while a step runs");
        r.finish(1, ok(), 16);
        assert_eq!(r.advance(17).0, Next::Done);
    }

    #[test]
    fn abort_needs_a_reason_and_ends_the_run() {
        let mut r = run(vec![step("a", None)]);
        r.advance(1);
        assert!(r.abort("x", "", 2).is_err());
        r.abort("token:alice", "wrong runbook", 3).unwrap();
        assert_eq!(r.status, RunStatus::Aborted);
        assert_eq!(r.advance(4), (Next::Done, false));
        assert!(r.skip("a", "x", "y", 5).is_err());
    }
}
