//! Alerts from monitoring as triggers (`POST /api/v1/alerts/alertmanager`).
//!
//! Each firing (a fingerprint from one `startsAt`) is stored once, with what the service's
//! severity policy says about it, before anything acts: `notify` is done at once; a rollback
//! is stored as due (`rolling_back`, or `held` until an acknowledgement deadline) and settled by
//! [`settle`] under the alert's lease, here at once and by [`keep_settling`] after a restart or
//! when a held alert's time is up. Settling rolls back only while the linked release still
//! serves and no recovery runs there, so a resend, a second replica or a retry after a crash
//! never rolls back twice (a second rollback would go one release further back).

use std::sync::Arc;
use std::time::Duration;

use backstop_api::alerts::{AlertmanagerPayload, AlertsReceived};
use backstop_config::AlertBlame;
use backstop_core::alert::{
    AlertAction, AlertRecord, AlertStatus, alert_id, in_watch_window, labels_fingerprint,
    severity_of,
};
use backstop_core::duration::millis;
use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Rollout};
use backstop_core::tier::SeverityAction;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::controller::Command;
use crate::error::{ApiError, ApiResult};

/// How often held alerts are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Records each alert of `payload` (sent by `actor`) and starts what its service's policy says.
/// `scope` is the one environment the sender's token is limited to, if it is: alerts about
/// another are recorded and ignored.
pub async fn receive(
    ctx: &Arc<Ctx>,
    payload: AlertmanagerPayload,
    actor: &str,
    scope: Option<&str>,
) -> ApiResult<AlertsReceived> {
    let now = ctx.clock.now_ms();
    let mut out = Vec::with_capacity(payload.alerts.len());
    for (i, a) in payload.alerts.into_iter().enumerate() {
        let status = match a.status.as_str() {
            "firing" => AlertStatus::Firing,
            "resolved" => AlertStatus::Resolved,
            other => {
                return Err(ApiError::bad_request(format!(
                    "alert status {other:?} is neither firing nor resolved"
                ))
                .at(format!("/alerts/{i}/status")));
            }
        };
        let fingerprint = a
            .fingerprint
            .clone()
            .unwrap_or_else(|| labels_fingerprint(&a.labels));
        let id = alert_id(&fingerprint, &a.starts_at);
        let mut record = AlertRecord {
            id: id.clone(),
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            fingerprint,
            starts_at: a.starts_at.clone(),
            status,
            summary: a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .cloned(),
            service: a.labels.get("service").cloned(),
            env: a.labels.get("env").cloned(),
            severity: severity_of(&a.labels),
            labels: a.labels,
            release_id: None,
            rollout_id: None,
            action: AlertAction::Ignored,
            detail: String::new(),
            recovery_id: None,
            deadline_ms: None,
            acknowledged_by: None,
            received_at_ms: now,
            resolved_at_ms: None,
        };
        if status == AlertStatus::Resolved {
            out.push(resolved(ctx, record, actor).await?);
            continue;
        }
        match ctx.store.alert(&id).await {
            Ok(stored) => {
                // A resend of a firing already taken: nothing more.
                out.push(stored);
                continue;
            }
            Err(backstop_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Decided (reads only) before it is stored with what to do, in one write: a firing
        // stored is a firing whose action will happen, even if this daemon dies next.
        match record.env.as_deref() {
            Some(env) if scope.is_some_and(|only| only != env) => {
                record.detail =
                    format!("{actor} may not act in environment {env}: recorded, nothing done");
            }
            _ => decide(ctx, &mut record).await?,
        }
        if !ctx.store.insert_alert(&record).await? {
            // Taken meanwhile by another replica: its decision stands.
            out.push(ctx.store.alert(&id).await?);
            continue;
        }
        crate::audit(
            ctx,
            actor,
            EventKind::AlertFiring,
            &format!("alert/{id}"),
            "alertmanager",
            json!({"alert": record.name, "service": record.service, "env": record.env,
                   "severity": record.severity, "release": record.release_id,
                   "rollout": record.rollout_id, "action": record.action, "detail": record.detail}),
        )
        .await?;
        if record.action == AlertAction::Notified {
            notify(ctx, &record, now);
        }
        if record.action == AlertAction::RollingBack {
            kick(ctx, &id);
        }
        out.push(record);
    }
    Ok(AlertsReceived { alerts: out })
}

/// A PagerDuty v3 webhook event as the alert it amounts to: `incident.triggered` fires,
/// `incident.resolved` resolves (both keyed by the incident's id, so they meet); the service and
/// environment come from the Backstop service whose `alerts.pagerduty` maps the PagerDuty
/// service; the severity from the priority (`P1` critical, `P2` major) or the urgency (`high`
/// critical). `None` for other event types.
pub fn from_pagerduty(
    ctx: &Ctx,
    hook: &backstop_api::alerts::PagerDutyWebhook,
) -> Option<backstop_api::alerts::AlertmanagerAlert> {
    let e = &hook.event;
    let status = match e.event_type.as_str() {
        "incident.triggered" | "incident.reopened" => "firing",
        "incident.resolved" => "resolved",
        _ => return None,
    };
    let incident = &e.data;
    let mut labels = std::collections::BTreeMap::from([(
        "alertname".to_owned(),
        format!("pagerduty {}", incident.id),
    )]);
    if let Some((service, env)) = ctx.config.services.iter().find_map(|s| {
        s.alerts
            .pagerduty
            .get(&incident.service.id)
            .map(|env| (s.name.clone(), env.clone()))
    }) {
        labels.insert("service".to_owned(), service);
        labels.insert("env".to_owned(), env);
    }
    let priority = incident
        .priority
        .as_ref()
        .and_then(|p| p.summary.as_deref())
        .unwrap_or("");
    let severity = match (priority, incident.urgency.as_deref()) {
        ("P1", _) => "critical",
        ("P2", _) => "major",
        ("", Some("high")) => "critical",
        _ => "minor",
    };
    labels.insert("severity".to_owned(), severity.to_owned());
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(title) = &incident.title {
        annotations.insert("summary".to_owned(), title.clone());
    }
    if let Some(url) = &incident.html_url {
        annotations.insert("url".to_owned(), url.clone());
    }
    Some(backstop_api::alerts::AlertmanagerAlert {
        status: status.to_owned(),
        labels,
        annotations,
        // The incident, not the event: its trigger and its resolution are one firing.
        starts_at: format!("pagerduty:{}", incident.id),
        ends_at: None,
        generator_url: incident.html_url.clone(),
        fingerprint: Some(format!("pagerduty/{}", incident.id)),
    })
}

/// Links a new firing to the release it is about, and sets what the policy says to do.
async fn decide(ctx: &Ctx, a: &mut AlertRecord) -> ApiResult<()> {
    let (Some(service), Some(env)) = (a.service.clone(), a.env.clone()) else {
        a.detail = "no `service` and `env` labels: not about a service Backstop releases".into();
        return Ok(());
    };
    let Some(svc) = ctx.config.service(&service) else {
        a.detail = format!("service {service:?} is not in the config");
        return Ok(());
    };
    if svc.environment(&env).is_none() {
        a.detail = format!("service {service} has no environment {env:?}");
        return Ok(());
    }
    let now = ctx.clock.now_ms();
    let linked: Option<(Rollout, String)> = match ctx.store.active_rollout(&service, &env).await? {
        Some(r) => Some((r, "its rollout is under way".into())),
        None => {
            let lkg = ctx
                .store
                .environment(&service, &env)
                .await?
                .and_then(|e| e.lkg_release_id);
            let watch = millis(svc.alerts.watch);
            ctx.store
                .rollouts(Some(&service), 50)
                .await?
                .into_iter()
                .filter(|r| r.env == env && r.phase == Phase::Promoted)
                .max_by_key(|r| r.updated_at_ms)
                .filter(|r| lkg.as_deref() == Some(r.to_release_id.as_str()))
                .filter(|r| in_watch_window(r.updated_at_ms, watch, now))
                .map(|r| {
                    let ago = (now - r.updated_at_ms) / 1000;
                    (r, format!("promoted {ago} s ago, within its watch window"))
                })
        }
    };
    let blamed = match svc.alerts.blame {
        AlertBlame::Labelled => None,
        AlertBlame::Ranked => likeliest_culprit(ctx, &service, &env, now, svc).await?,
    };
    let Some((rollout, why)) = blamed.or(linked) else {
        a.detail = format!(
            "no release of {service} in {env} is new (no rollout under way, none promoted within {})",
            backstop_core::duration::format_duration(svc.alerts.watch)
        );
        return Ok(());
    };
    a.release_id = Some(rollout.to_release_id.clone());
    a.rollout_id = Some(rollout.id.clone());
    let policy = svc.severity_action(a.severity);
    let release = &rollout.to_release_id;
    match policy {
        SeverityAction::Rollback => {
            a.action = AlertAction::RollingBack;
            a.deadline_ms = Some(now);
            a.detail = format!("{release} ({why}): a {} alert rolls it back", a.severity);
        }
        SeverityAction::RollbackUnlessAcknowledged(wait) => {
            a.action = AlertAction::Held;
            a.deadline_ms = Some(now.saturating_add(millis(wait)));
            a.detail = format!(
                "{release} ({why}): rolled back in {} unless acknowledged (backstop alerts acknowledge {})",
                backstop_core::duration::format_duration(wait),
                a.id
            );
        }
        SeverityAction::Notify => {
            a.action = AlertAction::Notified;
            a.detail = format!("{release} ({why}): a {} alert notifies only", a.severity);
        }
    }
    Ok(())
}

/// `alerts.blame: ranked`: the release that changed `env` within the failure-scope window
/// whose canary diverged from its baseline first (and furthest), when it is still new (its
/// rollout under way, or promoted within its service's watch window and still serving), with
/// why it is blamed. `None` when no release diverged: the alert's own service is blamed.
async fn likeliest_culprit(
    ctx: &Ctx,
    service: &str,
    env: &str,
    now: i64,
    svc: &backstop_config::Service,
) -> ApiResult<Option<(Rollout, String)>> {
    let ranking = crate::scope::ranked(ctx, env, now, &svc.analysis).await?;
    let Some((top, rollout)) = ranking.iter().find(|(s, _)| s.diverged_at_s.is_some()) else {
        return Ok(None);
    };
    // A promoted culprit is blamed while it is new there; one under way, held, or failed (its
    // own recovery runs or ran: the alert then rolls nothing else back) always is.
    let new = if rollout.phase == Phase::Promoted {
        let serving = ctx
            .store
            .environment(&rollout.service, env)
            .await?
            .and_then(|e| e.lkg_release_id);
        let watch = ctx
            .config
            .service(&rollout.service)
            .map_or(0, |s| millis(s.alerts.watch));
        serving.as_deref() == Some(rollout.to_release_id.as_str())
            && in_watch_window(rollout.updated_at_ms, watch, now)
    } else {
        true
    };
    if !new {
        return Ok(None);
    }
    let others: Vec<String> = ranking
        .iter()
        .filter(|(s, _)| s.rank != top.rank)
        .map(|(s, _)| format!("{} #{}", s.name, s.rank))
        .collect();
    let labelled = if rollout.service == service {
        String::new()
    } else {
        format!("; {service}, which alerted, is not blamed")
    };
    let why = format!(
        "the likeliest culprit of the {} releases that changed {env} within 30 min: its canary diverged from its baseline first, {:.0} s into the window, errors ×{:.1} its baseline (then {}){labelled}",
        ranking.len(),
        top.diverged_at_s.unwrap_or_default(),
        top.error_ratio_lift,
        others.join(", ")
    );
    Ok(Some((rollout.clone(), why)))
}

/// A resolved alert: recorded on the firing it ends (or on its own when it was never seen
/// firing).
async fn resolved(ctx: &Ctx, mut record: AlertRecord, actor: &str) -> ApiResult<AlertRecord> {
    let now = ctx.clock.now_ms();
    let mut stored = match ctx.store.alert(&record.id).await {
        Ok(s) => s,
        Err(backstop_store::StoreError::NotFound(_)) => {
            record.detail = "resolved before Backstop saw it firing".into();
            record.resolved_at_ms = Some(now);
            ctx.store.insert_alert(&record).await?;
            return Ok(record);
        }
        Err(e) => return Err(e.into()),
    };
    if stored.status == AlertStatus::Resolved {
        return Ok(stored);
    }
    stored.status = AlertStatus::Resolved;
    stored.resolved_at_ms = Some(now);
    ctx.store.update_alert(&stored).await?;
    crate::audit(
        ctx,
        actor,
        EventKind::AlertResolved,
        &format!("alert/{}", stored.id),
        "alertmanager",
        json!({"alert": stored.name, "action": stored.action, "rollout": stored.rollout_id}),
    )
    .await?;
    Ok(stored)
}

/// A person takes a held alert over before its deadline: nothing is rolled back.
pub async fn acknowledge(ctx: &Ctx, id: &str, actor: &str, reason: &str) -> ApiResult<AlertRecord> {
    let mut a = ctx.store.alert(id).await?;
    if a.action != AlertAction::Held {
        return Err(ApiError::conflict(format!(
            "alert {id} is {}; only a held alert can be acknowledged",
            a.action
        )));
    }
    a.action = AlertAction::Acknowledged;
    a.acknowledged_by = Some(actor.to_string());
    a.detail = format!("{} — acknowledged by {actor}: {reason}", a.detail);
    ctx.store.update_alert(&a).await?;
    crate::audit(
        ctx,
        actor,
        EventKind::AlertAcknowledged,
        &format!("alert/{id}"),
        "manual",
        json!({"reason": reason, "rollout": a.rollout_id}),
    )
    .await?;
    Ok(a)
}

/// Looks every [`LOOK_EVERY`] for alerts whose rollback is due and settles them.
pub async fn keep_settling(ctx: Arc<Ctx>, stop: CancellationToken) {
    loop {
        match ctx.store.held_alerts().await {
            Ok(held) => {
                let now = ctx.clock.now_ms();
                for a in held {
                    if a.deadline_ms.is_none_or(|d| d <= now) {
                        kick(&ctx, &a.id);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "Could not read held alerts; trying again."),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

fn kick(ctx: &Arc<Ctx>, id: &str) {
    crate::leased::spawn(
        ctx,
        |c| &c.caches.alerts,
        id,
        format!("alert/{id}"),
        |ctx, id, _lost| async move { settle(&ctx, &id).await },
    );
}

/// Rolls back what alert `id` is about, once: only while its release still serves (or its
/// rollout still runs) and no recovery runs in that environment.
async fn settle(ctx: &Ctx, id: &str) -> ApiResult<()> {
    let mut a = ctx.store.alert(id).await?;
    let due = match a.action {
        AlertAction::RollingBack => true,
        AlertAction::Held => a.deadline_ms.is_none_or(|d| d <= ctx.clock.now_ms()),
        _ => false,
    };
    let (Some(env), Some(release), true) = (a.env.clone(), a.release_id.clone(), due) else {
        return Ok(());
    };
    // The blamed release's service: the alert's own, or the likeliest culprit's
    // (`alerts.blame: ranked`).
    let service = ctx.store.release(&release).await?.service;
    if ctx
        .store
        .unfinished_recoveries()
        .await?
        .iter()
        .any(|r| r.service == service && r.env == env)
    {
        // A recovery runs there: look again once it is over.
        return Ok(());
    }
    let active = ctx.store.active_rollout(&service, &env).await?;
    let serving = ctx
        .store
        .environment(&service, &env)
        .await?
        .and_then(|e| e.lkg_release_id);
    let runs = active.as_ref().is_some_and(|r| r.to_release_id == release);
    if let Some(newer) = active.as_ref().filter(|_| !runs) {
        // A rollback now would fail the newer rollout, not take this release away.
        a.action = AlertAction::Ignored;
        a.detail = format!(
            "{} — a newer rollout ({}) is under way in {service}/{env}: it is judged on its own, nothing is rolled back for this alert",
            a.detail, newer.to_release_id
        );
        ctx.store.update_alert(&a).await?;
        return Ok(());
    }
    let actor = format!("alert:{}", a.name);
    if !runs && serving.as_deref() != Some(release.as_str()) {
        // This alert's own rollback, asked for before a crash and not yet written down here?
        if let Some(rec) = ctx.store.recoveries(50).await?.into_iter().find(|r| {
            r.service == service
                && r.env == env
                && r.actor == actor
                && r.created_at_ms >= a.received_at_ms
        }) {
            a.action = AlertAction::RolledBack;
            a.recovery_id = Some(rec.id);
            ctx.store.update_alert(&a).await?;
            return Ok(());
        }
        a.action = AlertAction::Ignored;
        a.detail = format!(
            "{} — {release} no longer serves {service}/{env} ({}): nothing to roll back",
            a.detail,
            serving.as_deref().unwrap_or("nothing")
        );
        ctx.store.update_alert(&a).await?;
        return Ok(());
    }
    let reason = format!(
        "alert {} ({} severity) fired{}",
        a.name,
        a.severity,
        a.summary
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default()
    );
    let asked = crate::rollouts::send_command(ctx, |reply| Command::Rollback {
        service: service.clone(),
        env: env.clone(),
        actor,
        reason,
        reply,
    })
    .await;
    match asked {
        Ok(rec) => {
            a.action = AlertAction::RolledBack;
            a.recovery_id = Some(rec.id);
        }
        Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
            a.action = AlertAction::Refused;
            a.detail = format!("{} — rollback refused: {}", a.detail, e.message);
        }
        Err(e) => return Err(e),
    }
    ctx.store.update_alert(&a).await?;
    Ok(())
}

fn notify(ctx: &Ctx, a: &AlertRecord, now: i64) {
    if let (Some(service), Some(env)) = (&a.service, &a.env) {
        ctx.notify(backstop_drivers::notify::Notification {
            id: format!("{}/{}", a.id, EventKind::AlertFiring),
            kind: EventKind::AlertFiring.to_string(),
            service: service.clone(),
            env: env.clone(),
            summary: format!("alert {} firing: {}", a.name, a.detail),
            detail: json!({"alert": a.id, "labels": a.labels, "release": a.release_id, "rollout": a.rollout_id}),
            at_ms: now,
        });
    }
}
