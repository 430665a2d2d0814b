//! Post-mortem drafts in the daemon: gathered from the store (the recovery, its rollout's
//! events and intervals, the incident and its runbook runs) and written by
//! [`backstop_core::postmortem::draft`]; served by `GET /recoveries/{id}/postmortem` and
//! written to `STATE/postmortems/RECOVERY.md` when the recovery resolves.

use std::path::PathBuf;

use backstop_core::postmortem::{Draft, Facts, draft};

use crate::Ctx;
use crate::error::ApiResult;

/// Where the draft of recovery `id` is written.
#[must_use]
pub fn draft_path(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.state_dir.join("postmortems").join(format!("{id}.md"))
}

/// The draft of recovery `id` from what the store holds now.
pub async fn of(ctx: &Ctx, id: &str) -> ApiResult<Draft> {
    let recovery = ctx.store.recovery(id).await?;
    let (rollout, events, intervals) = match &recovery.rollout_id {
        Some(rid) => (
            Some(ctx.store.rollout(rid).await?),
            ctx.store.events(rid).await?,
            ctx.store.intervals(rid).await?,
        ),
        None => (None, vec![], vec![]),
    };
    let incident = match &recovery.rollout_id {
        Some(rid) => ctx
            .store
            .incidents(true)
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .find(|i| i.rollout_id.as_deref() == Some(rid.as_str())),
        None => None,
    };
    let runbook_runs = match &incident {
        Some(i) => ctx.store.incident_runbook_runs(&i.id).await?,
        None => vec![],
    };
    let service = ctx.config.service(&recovery.service);
    let owner = service.map_or("the service's owner", |s| s.owner.as_str());
    let mttr_ms = service.map_or(0, |s| backstop_core::duration::millis(s.mttr()));
    Ok(draft(&Facts {
        recovery: &recovery,
        owner,
        mttr_ms,
        rollout: rollout.as_ref(),
        events: &events,
        intervals: &intervals,
        incident: incident.as_ref(),
        runbook_runs: &runbook_runs,
        due_after_ms: ctx.config.incidents.postmortem_due_ms(),
    }))
}

/// Writes the draft of recovery `id` to [`draft_path`] (0600, atomically). Never fails the
/// caller: errors are logged.
pub async fn write_draft(ctx: &Ctx, id: &str) {
    let written = match of(ctx, id).await {
        Ok(d) => {
            let path = draft_path(ctx, id);
            let dir = path.parent().map(std::path::Path::to_path_buf);
            if let Some(dir) = dir {
                let _ = std::fs::create_dir_all(dir);
            }
            crate::auth::write_private(&path, &d.markdown).map(|()| path)
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    match written {
        Ok(path) => {
            tracing::info!(recovery = %id, path = %path.display(), "Post-mortem draft written.");
        }
        Err(e) => {
            tracing::warn!(recovery = %id, error = %e, "Could not write the post-mortem draft.")
        }
    }
}

/// Recoveries whose post-mortem is overdue now (resolved more than `incidents.postmortem_due`
/// ago, not marked done), oldest first.
pub async fn overdue(ctx: &Ctx) -> ApiResult<Vec<backstop_core::model::Recovery>> {
    let due = ctx.config.incidents.postmortem_due_ms();
    let now = ctx.clock.now_ms();
    Ok(ctx
        .store
        .recoveries_awaiting_postmortem()
        .await?
        .into_iter()
        .filter(|r| backstop_core::postmortem::overdue(r, due, now))
        .collect())
}

/// Tells the service's webhooks, once per recovery, that its post-mortem is overdue, and audits
/// it. Every replica may run this; a reminder written twice is harmless (same id to webhooks).
pub async fn remind_overdue(ctx: &Ctx) -> ApiResult<()> {
    for rec in overdue(ctx).await? {
        let mut record = rec.postmortem.clone().unwrap_or_default();
        if record.reminded_at_ms.is_some() {
            continue;
        }
        let now = ctx.clock.now_ms();
        record.reminded_at_ms = Some(now);
        ctx.store.set_recovery_postmortem(&rec.id, &record).await?;
        let due =
            backstop_core::postmortem::due_at_ms(&rec, ctx.config.incidents.postmortem_due_ms());
        let summary = format!(
            "the post-mortem of recovery {} ({}/{}) is overdue since {}: `backstop recovery postmortem {} --done --link URL` once written",
            rec.id,
            rec.service,
            rec.env,
            due.map_or_else(String::new, backstop_core::format_ms),
            rec.id
        );
        crate::audit(
            ctx,
            "controller",
            backstop_core::event::EventKind::PostmortemOverdue,
            &format!("recovery/{}", rec.id),
            "measurement",
            serde_json::json!({"due_at_ms": due}),
        )
        .await?;
        if let Some(n) = ctx.drivers.notifiers.get(&rec.service) {
            n.notify(backstop_drivers::notify::Notification {
                id: format!("postmortem-overdue/{}", rec.id),
                kind: backstop_core::event::EventKind::PostmortemOverdue
                    .as_str()
                    .into(),
                service: rec.service.clone(),
                env: rec.env.clone(),
                summary: summary.clone(),
                detail: serde_json::json!({"recovery": rec.id, "due_at_ms": due}),
                at_ms: now,
            });
        }
        tracing::warn!(recovery = %rec.id, "{summary}");
    }
    Ok(())
}
