//! Incidents in the daemon: opened by a recovery of a major or critical failure (or by a
//! person), mitigated when that recovery has put traffic back, changed by people (status,
//! roles, notes, status updates), reminded about when an update is overdue, announced to the
//! service's webhooks, and shown as one timeline with what the machine did.

use std::sync::Arc;
use std::time::Duration;

use backstop_api::incidents::{IncidentDetail, TimelineItem};
use backstop_core::event::EventKind;
use backstop_core::incident::{Incident, IncidentStatus, Sev};
use backstop_core::model::Rollout;
use backstop_core::severity::Severity;
use backstop_store::StoreError;
use serde_json::json;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};

/// How often the daemon looks for overdue status updates.
pub const REMINDER_CHECK_EVERY: Duration = Duration::from_secs(10);

/// The incident a failed rollout of this severity opens: critical is major (SEV2: it freezes
/// the environment until mitigated), major is SEV3; minor opens none.
#[must_use]
pub fn sev_for(severity: Option<Severity>) -> Option<Sev> {
    match severity? {
        Severity::Critical => Some(Sev::Sev2),
        Severity::Major => Some(Sev::Sev3),
        Severity::Minor => None,
    }
}

/// Opens the incident of a rollout that failed with a major or critical severity (or adds to
/// the one already open in its environment). Never fails the recovery: errors are logged.
pub async fn open_for_rollout(ctx: &Ctx, r: &Rollout, reason: &str) {
    let Some(sev) = sev_for(r.severity) else {
        return;
    };
    if let Err(e) = open_for_rollout_inner(ctx, r, reason, sev).await {
        tracing::warn!(rollout = %r.id, error = format!("{e:#}"), "Could not open the incident of a failed rollout.");
    }
}

async fn open_for_rollout_inner(
    ctx: &Ctx,
    r: &Rollout,
    reason: &str,
    sev: Sev,
) -> Result<(), ApiError> {
    let now = ctx.clock.now_ms();
    let open = ctx
        .store
        .incidents(false)
        .await?
        .into_iter()
        .find(|(i, _)| i.service == r.service && i.env == r.env);
    if let Some((i, _)) = open {
        change(ctx, &i.id, "controller", |i| {
            i.note(
                &format!(
                    "another rollout failed here: {} ({reason})",
                    r.to_release_id
                ),
                "controller",
                now,
            );
            Ok(())
        })
        .await?;
        return Ok(());
    }
    let mut incident = Incident::open(
        format!("inc-{}", uuid::Uuid::now_v7()),
        format!("{} failed in {}: {reason}", r.to_release_id, r.env),
        sev,
        &r.service,
        &r.env,
        "controller",
        now,
    );
    incident.rollout_id = Some(r.id.clone());
    incident.recovery_id = Some(crate::controller::recovery_id_for(&r.id));
    opened(ctx, &incident).await.map(|_| ())
}

/// Stores a new incident (with the config's status update cadence for its severity), audits
/// and announces it.
pub async fn opened(ctx: &Ctx, incident: &Incident) -> Result<Incident, ApiError> {
    let mut incident = incident.clone();
    if let Some(every) = ctx
        .config
        .incidents
        .update_every
        .of(incident.severity.as_str())
    {
        let every = backstop_core::duration::millis(every);
        incident.set_cadence(every, incident.opened_at_ms);
    }
    let incident = &incident;
    ctx.store.create_incident(incident).await?;
    crate::audit(
        ctx,
        &incident.opened_by,
        EventKind::IncidentOpened,
        &format!("incident/{}", incident.id),
        if incident.rollout_id.is_some() {
            "recovery"
        } else {
            "manual"
        },
        json!({"severity": incident.severity, "title": incident.title, "service": incident.service, "env": incident.env, "rollout": incident.rollout_id}),
    )
    .await?;
    announce(
        ctx,
        incident,
        EventKind::IncidentOpened,
        format!("{} opened: {}", incident.severity, incident.title),
    );
    tracing::warn!(incident = %incident.id, severity = %incident.severity, "Incident opened: {}", incident.title);
    Ok(incident.clone())
}

/// The recovery of `rollout_id` has put traffic back: its incident, if still investigating or
/// identified, is mitigated (monitoring), which also lifts its freeze.
pub async fn mitigated(ctx: &Ctx, rollout_id: &str) {
    let found = match ctx.store.incidents(false).await {
        Ok(list) => list
            .into_iter()
            .find(|(i, _)| i.rollout_id.as_deref() == Some(rollout_id)),
        Err(e) => {
            tracing::warn!(error = %e, "Could not read incidents to mark one mitigated.");
            return;
        }
    };
    let Some((incident, _)) = found else {
        return;
    };
    if !matches!(
        incident.status,
        IncidentStatus::Investigating | IncidentStatus::Identified
    ) {
        return;
    }
    let now = ctx.clock.now_ms();
    let changed = change(ctx, &incident.id, "controller", |i| {
        i.set_status(
            IncidentStatus::Monitoring,
            "controller",
            "traffic is back on the last known good",
            now,
        )
        .map_err(ApiError::conflict)
    })
    .await;
    if let Err(e) = changed {
        tracing::warn!(incident = %incident.id, error = %e, "Could not mark the incident mitigated.");
    }
}

/// Adds `text` as a note of the controller to the incident a failed rollout opened, if any
/// (what happened after: validation passed or not). Errors are logged.
pub async fn note_for_rollout(ctx: &Ctx, rollout_id: &str, text: &str) {
    let Ok(all) = ctx.store.incidents(true).await else {
        return;
    };
    if let Some((incident, _)) = all
        .into_iter()
        .find(|(i, _)| i.rollout_id.as_deref() == Some(rollout_id))
    {
        note(ctx, &incident.id, text).await;
    }
}

/// Adds `text` as a note of the controller to every open incident of `service` in `env` (a
/// flag changed while it was open). Errors are logged.
pub async fn note_open(ctx: &Ctx, service: &str, env: &str, text: &str) {
    let Ok(open) = ctx.store.incidents(false).await else {
        return;
    };
    for (incident, _) in open {
        if incident.service == service && incident.env == env {
            note(ctx, &incident.id, text).await;
        }
    }
}

async fn note(ctx: &Ctx, id: &str, text: &str) {
    let now = ctx.clock.now_ms();
    if let Err(e) = change(ctx, id, "controller", |i| {
        i.note(text, "controller", now);
        Ok(())
    })
    .await
    {
        tracing::warn!(incident = %id, error = %e, "Could not add a note to the incident.");
    }
}

/// Applies `edit` to incident `id` as `actor` (compare-and-set, read again on a conflict),
/// then audits and announces what changed.
pub async fn change(
    ctx: &Ctx,
    id: &str,
    actor: &str,
    mut edit: impl FnMut(&mut Incident) -> Result<(), ApiError>,
) -> ApiResult<Incident> {
    for _ in 0..5 {
        let (mut incident, version) = ctx.store.incident(id).await?;
        let before = incident.history.len();
        edit(&mut incident)?;
        match ctx.store.update_incident(&incident, version).await {
            Ok(_) => {
                let new: Vec<_> = incident.history[before..].to_vec();
                for entry in &new {
                    let kind = if entry.kind == backstop_core::incident::EntryKind::Reminder {
                        EventKind::IncidentUpdateDue
                    } else {
                        EventKind::IncidentUpdated
                    };
                    crate::audit(
                        ctx,
                        actor,
                        kind,
                        &format!("incident/{id}"),
                        "manual",
                        json!({"kind": entry.kind, "text": entry.text, "status": incident.status}),
                    )
                    .await?;
                    announce(
                        ctx,
                        &incident,
                        kind,
                        format!("{}: {}", incident.id, entry.text),
                    );
                }
                return Ok(incident);
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "incident {id} keeps changing; try again"
    )))
}

fn announce(ctx: &Ctx, incident: &Incident, kind: EventKind, summary: String) {
    let now = ctx.clock.now_ms();
    ctx.notify(backstop_drivers::notify::Notification {
        id: format!("incident/{}/{}/{now}", incident.id, kind.as_str()),
        kind: kind.as_str().into(),
        service: incident.service.clone(),
        env: incident.env.clone(),
        summary,
        detail: json!({
            "incident": incident.id, "severity": incident.severity, "status": incident.status,
            "title": incident.title, "roles": incident.roles,
        }),
        at_ms: now,
    });
}

/// Reminds, once per due time, about every open incident whose status update is overdue (and,
/// once, about each overdue post-mortem).
/// Every replica runs this; the compare-and-set and the due time recorded make one of them
/// remind.
pub async fn keep_reminding(ctx: Arc<Ctx>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REMINDER_CHECK_EVERY) => {}
        }
        if let Err(e) = crate::postmortem::remind_overdue(ctx.as_ref()).await {
            tracing::debug!(error = %e, "Could not look for overdue post-mortems now.");
        }
        let Ok(open) = ctx.store.incidents(false).await else {
            continue;
        };
        let now = ctx.clock.now_ms();
        for (incident, _) in open {
            if let Some(due) = incident.reminder_due(now) {
                let reminded = change(ctx.as_ref(), &incident.id, "controller", |i| {
                    // Another replica may have reminded meanwhile: once per due time.
                    if i.reminder_due(now) == Some(due) {
                        i.remind(due, now);
                        Ok(())
                    } else {
                        Err(ApiError::conflict("reminded already"))
                    }
                })
                .await;
                if let Err(e) = reminded {
                    tracing::debug!(incident = %incident.id, error = %e, "Could not record a reminder now.");
                }
            }
        }
    }
}

/// The incident with its timeline: its history, the rollout's events and the recovery's
/// steps, in time order.
pub async fn detail(ctx: &Ctx, id: &str) -> ApiResult<IncidentDetail> {
    let (incident, _) = ctx.store.incident(id).await?;
    let mut timeline: Vec<TimelineItem> = incident
        .history
        .iter()
        .map(|e| TimelineItem {
            at_ms: e.at_ms,
            source: "incident".into(),
            actor: e.actor.clone(),
            kind: e.kind.as_str().into(),
            text: e.text.clone(),
        })
        .collect();
    if let Some(rollout) = &incident.rollout_id {
        for e in ctx.store.events(rollout).await.unwrap_or_default() {
            timeline.push(TimelineItem {
                at_ms: e.at_ms,
                source: "rollout".into(),
                actor: "controller".into(),
                kind: e.kind.as_str().into(),
                text: event_text(&e),
            });
        }
    }
    if let Some(recovery) = &incident.recovery_id
        && let Ok(rec) = ctx.store.recovery(recovery).await
    {
        for s in rec.steps {
            if let Some(at) = s.finished_at_ms.or(s.started_at_ms) {
                timeline.push(TimelineItem {
                    at_ms: at,
                    source: "recovery".into(),
                    actor: rec.actor.clone(),
                    kind: s.step.name().into(),
                    text: format!("step {} {} ({:?})", s.index, s.step.name(), s.status)
                        .to_lowercase(),
                });
            }
        }
    }
    // The runbook runs of the incident: every step, confirmation and deviation (with reason).
    for run in ctx
        .store
        .incident_runbook_runs(id)
        .await
        .unwrap_or_default()
    {
        for e in run.history {
            timeline.push(TimelineItem {
                at_ms: e.at_ms,
                source: "runbook".into(),
                actor: e.actor,
                kind: e.kind,
                text: format!("{} ({}): {}", run.runbook, run.id, e.text),
            });
        }
    }
    timeline.sort_by_key(|t| t.at_ms);
    Ok(IncidentDetail { incident, timeline })
}

fn event_text(e: &backstop_core::model::Event) -> String {
    let d = &e.detail;
    for key in ["reason", "summary", "verdict"] {
        if let Some(text) = d[key].as_str() {
            return text.to_string();
        }
    }
    if let Some(w) = d["weight"].as_f64() {
        return format!("canary at {w}%");
    }
    String::new()
}
