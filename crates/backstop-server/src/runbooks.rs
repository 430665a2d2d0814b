//! Runbook runs in the daemon (practices 5.2 and 5.6): started by a person holding the
//! runbook's role, driven step by step by the replica holding the run's lease, steered by
//! people when a step needs them, and audited at every change.
//!
//! - Runbooks are read from the config's `runbooks` path at every start, so an edited file is
//!   used by the next run; the run records the sha256 of the one it followed and a copy of its
//!   steps with the inputs filled in, so it never changes under a run.
//! - A command step is written `running` before its command starts, and runs through
//!   [`RecordedStep`]: a daemon killed mid-step collects the step's recorded end (or waits for
//!   the attempt still running) instead of running the command a second time.
//! - Every change goes through [`change`]: compare-and-set on the run's version, then one audit
//!   record per new history line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backstop_api::runbooks::{RunbookInfo, RunbookInput, RunbookStepInfo};
use backstop_config::runbook::Runbook;
use backstop_core::event::EventKind;
use backstop_core::runbook_run::{Next, RunStatus, RunbookRun, StepOutcome, StepStatus};
use backstop_drivers::step::RecordedStep;
use backstop_store::StoreError;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use backstop_core::duration::millis;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};

/// How often the daemon looks for runs to drive that no request kicked (one resumed after a
/// restart, or whose replica died).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The lease of a runbook run.
#[must_use]
pub fn lease_key(run_id: &str) -> String {
    format!("runbook-run/{run_id}")
}

/// Where the config's runbooks are, if it names any.
fn runbooks_path(ctx: &Ctx) -> Option<PathBuf> {
    ctx.config
        .runbooks
        .as_ref()
        .map(|p| ctx.config.base_dir.join(p))
}

/// Every runbook as its file reads now.
///
/// # Errors
/// None configured (404), or a file that does not read as a runbook (500, every problem at
/// FILE:LINE:COL).
pub fn catalog(ctx: &Ctx) -> ApiResult<Vec<Runbook>> {
    let Some(path) = runbooks_path(ctx) else {
        return Ok(vec![]);
    };
    backstop_config::runbook::load_runbooks(&path).map_err(|e| {
        ApiError::internal(format!(
            "the runbooks at {} do not read (fix them, then `backstop runbook check`):\n{e}",
            path.display()
        ))
    })
}

/// The runbook `name`; 404 naming the known ones.
pub fn find(ctx: &Ctx, name: &str) -> ApiResult<Runbook> {
    let all = catalog(ctx)?;
    let names: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    all.into_iter().find(|r| r.name == name).ok_or_else(|| {
        ApiError::not_found(if names.is_empty() {
            format!(
                "no runbook {name}: the config names no runbooks (`runbooks: FOLDER` in backstop.yaml)"
            )
        } else {
            format!("no runbook {name}; known: {}", names.join(", "))
        })
    })
}

/// A runbook as the API shows it.
#[must_use]
pub fn info(rb: &Runbook) -> RunbookInfo {
    RunbookInfo {
        name: rb.name.clone(),
        version: rb.version,
        description: rb.description.clone(),
        role: rb.role.as_str().into(),
        digest: rb.digest.clone(),
        inputs: rb
            .inputs
            .iter()
            .map(|i| RunbookInput {
                name: i.name.clone(),
                description: i.description.clone(),
                default: i.default.clone(),
            })
            .collect(),
        steps: rb
            .steps
            .iter()
            .map(|s| RunbookStepInfo {
                id: s.id.clone(),
                kind: step_kind(s.kind).into(),
                title: s.title.clone(),
                run: s.run.clone(),
                timeout_ms: millis(s.timeout),
            })
            .collect(),
    }
}

fn step_kind(kind: backstop_config::runbook::StepKind) -> &'static str {
    use backstop_config::runbook::StepKind;
    match kind {
        StepKind::Manual => "manual",
        StepKind::Command => "command",
        StepKind::Verify => "verify",
    }
}

/// A new run of `rb` (not yet stored): its steps with `inputs` filled in.
#[must_use]
pub fn new_run(
    rb: &Runbook,
    inputs: &[(String, String)],
    env: &str,
    service: Option<String>,
    incident: Option<String>,
    actor: &str,
    now: backstop_core::Millis,
) -> RunbookRun {
    let id = format!("rb-{}", uuid::Uuid::now_v7());
    let steps = rb
        .steps
        .iter()
        .map(|s| {
            backstop_core::runbook_run::RunStep::pending(
                &id,
                &s.id,
                step_kind(s.kind),
                &s.title,
                s.command(inputs),
                millis(s.timeout),
            )
        })
        .collect();
    RunbookRun::start(
        id,
        (&rb.name, rb.version, &rb.digest),
        rb.role.as_str(),
        env,
        service,
        incident,
        inputs.iter().cloned().collect(),
        steps,
        actor,
        now,
    )
}

/// Stores a new run, audits it and starts driving it.
pub async fn started(ctx: &Arc<Ctx>, run: &RunbookRun) -> ApiResult<()> {
    ctx.store.create_runbook_run(run).await?;
    crate::audit(
        ctx,
        &run.started_by,
        EventKind::RunbookStarted,
        &format!("runbook-run/{}", run.id),
        "manual",
        json!({"runbook": run.runbook, "version": run.runbook_version, "sha256": run.digest,
               "env": run.env, "service": run.service, "incident": run.incident_id, "inputs": run.inputs}),
    )
    .await?;
    tracing::info!(run = %run.id, runbook = %run.runbook, sha256 = %run.digest, "Runbook run started.");
    kick(ctx, &run.id);
    Ok(())
}

fn audit_kind(entry_kind: &str) -> EventKind {
    match entry_kind {
        "started" => EventKind::RunbookStarted,
        "deviation" => EventKind::RunbookDeviation,
        "aborted" | "succeeded" => EventKind::RunbookEnded,
        _ => EventKind::RunbookStep,
    }
}

/// Applies `edit` to run `id` as `actor` (compare-and-set, read again on a conflict; nothing
/// written when nothing changed), then audits each new history line.
pub async fn change(
    ctx: &Ctx,
    id: &str,
    actor: &str,
    mut edit: impl FnMut(&mut RunbookRun) -> ApiResult<()>,
) -> ApiResult<RunbookRun> {
    for _ in 0..5 {
        let (before, version) = ctx.store.runbook_run(id).await?;
        let mut run = before.clone();
        edit(&mut run)?;
        if run == before {
            return Ok(run);
        }
        match ctx.store.update_runbook_run(&run, version).await {
            Ok(_) => {
                for entry in &run.history[before.history.len()..] {
                    crate::audit(
                        ctx,
                        &entry.actor,
                        audit_kind(&entry.kind),
                        &format!("runbook-run/{id}"),
                        if actor == "controller" {
                            "runbook"
                        } else {
                            "manual"
                        },
                        json!({"kind": entry.kind, "text": entry.text, "status": run.status, "sha256": run.digest}),
                    )
                    .await?;
                }
                return Ok(run);
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "runbook run {id} keeps changing; try again"
    )))
}

/// Starts driving run `id` on this daemon unless it is already, or another replica holds it.
pub fn kick(ctx: &Arc<Ctx>, id: &str) {
    crate::leased::spawn(
        ctx,
        |c| &c.caches.runbook_runs,
        id,
        lease_key(id),
        |ctx, id, lost| async move { drive(&ctx, &id, &lost).await },
    );
}

/// Kicks, every [`CHECK_EVERY`], each run the daemon should be driving.
pub async fn keep_driving(ctx: Arc<Ctx>, stop: CancellationToken) {
    loop {
        if let Ok(runs) = ctx.store.runbook_runs(false).await {
            for (run, _) in runs {
                if run.status == RunStatus::Running {
                    kick(&ctx, &run.id);
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// Runs automated steps one after another until the run waits for a person or is over.
async fn drive(ctx: &Ctx, id: &str, lost: &CancellationToken) -> ApiResult<()> {
    while !lost.is_cancelled() {
        let mut next = Next::Wait;
        let now = ctx.clock.now_ms();
        let run = change(ctx, id, "controller", |r| {
            let (n, _) = r.advance(now);
            next = n;
            if let Next::Execute(i) = n
                && r.steps[i].status == StepStatus::Pending
            {
                r.begin(i, now);
            }
            Ok(())
        })
        .await?;
        let Next::Execute(i) = next else {
            return Ok(());
        };
        let step = run.steps[i].clone();
        let Some(command) = step.command.clone() else {
            return Ok(());
        };
        // Never act for a run whose lease moved on.
        ctx.store.check_fence().await?;
        let recorded = RecordedStep {
            dir: ctx
                .state_dir
                .join("runbook-runs")
                .join(&run.id)
                .join(format!("{}.{}", step.id, step.attempts)),
            command,
            idempotency_key: step.idempotency_key.clone(),
            timeout: Duration::from_millis(step.timeout_ms.max(0).unsigned_abs()),
            vars: [
                ("BACKSTOP_RUNBOOK".to_owned(), run.runbook.clone()),
                ("BACKSTOP_RUNBOOK_RUN".to_owned(), run.id.clone()),
                ("BACKSTOP_ENV".to_owned(), run.env.clone()),
                (
                    "BACKSTOP_SERVICE".to_owned(),
                    run.service.clone().unwrap_or_default(),
                ),
            ]
            .into(),
        }
        .run()
        .await
        .map_err(|e| format!("{e}"));
        if let Ok(o) = &recorded
            && o.from_record
        {
            tracing::info!(run = %id, step = %step.id, "Collected a step that ended while no daemon was watching; not running it again.");
        }
        let now = ctx.clock.now_ms();
        change(ctx, id, "controller", |r| {
            let Some(i) = r.steps.iter().position(|s| s.id == step.id) else {
                return Ok(());
            };
            if r.steps[i].status != StepStatus::Running {
                return Ok(());
            }
            match &recorded {
                Ok(o) => r.finish(
                    i,
                    StepOutcome {
                        exit_code: o.exit_code,
                        timed_out: o.timed_out,
                        stdout: o.stdout.clone(),
                        stderr: o.stderr.clone(),
                    },
                    now,
                ),
                Err(why) => r.could_not_start(i, why, now),
            }
            Ok(())
        })
        .await?;
    }
    Ok(())
}
