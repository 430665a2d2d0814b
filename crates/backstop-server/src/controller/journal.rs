//! What the controller writes about what it did: timeline events, audit records and webhook
//! notifications.

use anyhow::{Context, Result};
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::{Event, Rollout};

use super::Controller;
use crate::now_ms;

impl Controller {
    /// Sends a webhook notification for a rollout (queued; never blocks or fails the caller).
    pub(super) fn notify(
        &self,
        r: &Rollout,
        kind: EventKind,
        summary: String,
        detail: serde_json::Value,
    ) {
        if let Some(n) = self.ctx.notifiers.get(&r.service) {
            n.notify(backstop_drivers::notify::Notification {
                id: format!("{}/{kind}", r.id),
                kind: kind.to_string(),
                service: r.service.clone(),
                env: r.env.clone(),
                summary,
                detail,
                at_ms: now_ms(),
            });
        }
    }

    pub(super) async fn event(
        &self,
        rollout_id: &str,
        kind: EventKind,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.event_at(rollout_id, now_ms(), kind, detail).await
    }

    pub(super) async fn event_at(
        &self,
        rollout_id: &str,
        at_ms: Millis,
        kind: EventKind,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.ctx
            .store
            .add_event(&Event {
                at_ms,
                rollout_id: rollout_id.to_string(),
                kind,
                detail,
            })
            .await
            .context("recording a timeline event")
    }

    pub(super) async fn audit(
        &self,
        actor: &str,
        action: EventKind,
        target: &str,
        trigger: &str,
        evidence: serde_json::Value,
    ) -> Result<()> {
        crate::audit(&self.ctx, actor, action, target, trigger, evidence).await
    }
}

pub(super) fn target(r: &Rollout) -> String {
    format!("rollout/{}", r.id)
}
