//! What the controller writes about what it did, through one call: [`Controller::record`] takes
//! a [`Record`] (a timeline event on a rollout, an audit record, a webhook notification, each
//! optional) and writes its parts in that order.

use anyhow::{Context, Result};
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::{Event, Rollout};
use serde_json::Value;

use super::Controller;

/// One happening, as the journal keeps it.
pub(super) struct Record<'r> {
    /// The rollout it happened to: its timeline gets the event, its service's webhooks the
    /// notification, and the audit record names it unless told otherwise.
    rollout: Option<&'r Rollout>,
    event: Option<(EventKind, Value)>,
    /// When the event happened, if not now (e.g. a first request seen by the proxy earlier).
    event_at_ms: Option<Millis>,
    audit: Option<Audit>,
    notice: Option<(EventKind, String, Value)>,
}

impl<'r> Record<'r> {
    /// Something that happened to rollout `r`; add its parts with the builder methods.
    pub(super) fn of(r: &'r Rollout) -> Self {
        Self {
            rollout: Some(r),
            event: None,
            event_at_ms: None,
            audit: None,
            notice: None,
        }
    }

    /// An audit record about something other than one rollout (a recovery, a breaker, …).
    pub(super) fn audit_only(
        actor: &str,
        action: EventKind,
        target: String,
        trigger: &str,
        evidence: Value,
    ) -> Self {
        Self {
            rollout: None,
            event: None,
            event_at_ms: None,
            audit: Some(audit_entry(actor, action, target, trigger, evidence)),
            notice: None,
        }
    }

    /// An event on the rollout's timeline.
    pub(super) fn event(mut self, kind: EventKind, detail: Value) -> Self {
        self.event = Some((kind, detail));
        self
    }

    /// The event happened at `at_ms` rather than now.
    pub(super) fn at(mut self, at_ms: Millis) -> Self {
        self.event_at_ms = Some(at_ms);
        self
    }

    /// An audit record whose target is the rollout.
    pub(super) fn audit(
        self,
        actor: &str,
        action: EventKind,
        trigger: &str,
        evidence: Value,
    ) -> Self {
        let target = self.rollout.map(target).unwrap_or_default();
        self.audit_on(actor, action, target, trigger, evidence)
    }

    /// An audit record with its own target (e.g. `recovery/<id>`).
    pub(super) fn audit_on(
        mut self,
        actor: &str,
        action: EventKind,
        target: String,
        trigger: &str,
        evidence: Value,
    ) -> Self {
        self.audit = Some(audit_entry(actor, action, target, trigger, evidence));
        self
    }

    /// A webhook notification to the rollout's service (queued; never blocks or fails).
    pub(super) fn notify(mut self, kind: EventKind, summary: String, detail: Value) -> Self {
        self.notice = Some((kind, summary, detail));
        self
    }
}

impl Controller {
    /// Writes a record: the event, then the audit record, then the notification.
    pub(super) async fn record(&self, record: Record<'_>) -> Result<()> {
        let ctx = &self.ctx;
        let now = ctx.clock.now_ms();
        // One log line per decision and per recovery step, with what the timeline and the
        // audit keep (the detail stays there: it can be large).
        let what = record
            .event
            .as_ref()
            .map(|(kind, _)| kind.as_str())
            .or_else(|| record.audit.as_ref().map(|a| a.action.as_str()));
        if let Some(what) = what {
            tracing::info!(
                rollout = record.rollout.map_or("", |r| r.id.as_str()),
                service = record.rollout.map_or("", |r| r.service.as_str()),
                env = record.rollout.map_or("", |r| r.env.as_str()),
                target = record.audit.as_ref().map_or("", |a| a.target.as_str()),
                actor = record
                    .audit
                    .as_ref()
                    .map_or("controller", |a| a.actor.as_str()),
                trigger = record.audit.as_ref().map_or("", |a| a.trigger.as_str()),
                event = what,
                "Decision: {what}."
            );
        }
        if let (Some(r), Some((kind, detail))) = (record.rollout, record.event) {
            ctx.store
                .add_event(&Event {
                    at_ms: record.event_at_ms.unwrap_or(now),
                    rollout_id: r.id.clone(),
                    kind,
                    detail,
                })
                .await
                .context("recording a timeline event")?;
        }
        if let Some(a) = record.audit {
            crate::audit(ctx, &a.actor, a.action, &a.target, &a.trigger, a.evidence).await?;
        }
        if let (Some(r), Some((kind, summary, detail))) = (record.rollout, record.notice)
            && let Some(n) = ctx.drivers.notifiers.get(&r.service)
        {
            n.notify(backstop_drivers::notify::Notification {
                id: format!("{}/{kind}", r.id),
                kind: kind.to_string(),
                service: r.service.clone(),
                env: r.env.clone(),
                summary,
                detail,
                at_ms: now,
            });
        }
        Ok(())
    }
}

/// The parts of an audit record, written by [`crate::audit`].
struct Audit {
    actor: String,
    action: EventKind,
    target: String,
    trigger: String,
    evidence: Value,
}

fn audit_entry(
    actor: &str,
    action: EventKind,
    target: String,
    trigger: &str,
    evidence: Value,
) -> Audit {
    Audit {
        actor: actor.into(),
        action,
        target,
        trigger: trigger.into(),
        evidence,
    }
}

/// How audit records name a rollout.
pub(super) fn target(r: &Rollout) -> String {
    format!("rollout/{}", r.id)
}
