//! The global circuit breaker: counting failures towards a trip, pausing the progressive
//! rollouts in its scope, and resuming them once it is reset.

use anyhow::Result;
use backstop_core::Millis;
use backstop_core::breaker;
use backstop_core::event::EventKind;
use backstop_core::model::{BreakerTrip, Phase, Rollout};
use serde_json::json;

use super::Controller;
use super::journal::target;
use crate::{now_ms, policy};

/// Reason prefix of rollouts paused by the global breaker (they resume when it is reset).
pub(super) const BREAKER_PAUSE: &str = "circuit breaker open";

impl Controller {
    /// Counts a judged failure towards the global breaker and trips it when the policy says so.
    pub(super) async fn record_failure_for_breaker(&self, r: &Rollout, now: Millis) -> Result<()> {
        let ctx = &self.ctx;
        let policy = policy::breaker(&ctx.config);
        let within = policy.within.as_millis() as Millis;
        // The event for this failure is written by the caller just before.
        let failures = ctx.store.failures_since(now - within).await?;
        let key = breaker::scope_key(policy.scope_all, &r.env);
        if !breaker::should_trip(&key, &failures, now, policy.trips_after, within) {
            return Ok(());
        }
        if ctx.store.open_trips().await?.iter().any(|t| t.scope == key) {
            return Ok(());
        }
        let trip = BreakerTrip {
            id: uuid::Uuid::now_v7().to_string(),
            scope: key.clone(),
            tripped_at_ms: now,
            failures: json!(failures),
            reset_at_ms: None,
            reset_by: None,
            reset_reason: None,
        };
        ctx.store.create_trip(&trip).await?;
        tracing::warn!(scope = %key, failures = failures.len(), "Circuit breaker tripped; progressive rollouts in scope are paused.");
        self.audit(
            "controller",
            EventKind::BreakerTripped,
            &format!("breaker/{key}"),
            "policy",
            json!({
                "failures": failures, "trips_after": policy.trips_after, "within_ms": within,
            }),
        )
        .await
    }

    pub(super) async fn pause_for_breaker(
        &mut self,
        mut r: Rollout,
        trip: &BreakerTrip,
    ) -> Result<()> {
        let reason = format!(
            "{BREAKER_PAUSE} for {} since {}; `backstop breaker reset --scope {}` resumes it",
            trip.scope,
            backstop_core::format_ms(trip.tripped_at_ms),
            trip.scope
        );
        r.phase = Phase::Paused;
        r.reason = Some(reason.clone());
        r.updated_at_ms = now_ms();
        self.ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        self.event(&r.id, EventKind::RolloutPaused, json!({"reason": reason}))
            .await?;
        self.audit(
            "controller",
            EventKind::RolloutPaused,
            &target(&r),
            "breaker",
            json!({"trip": trip.id, "scope": trip.scope}),
        )
        .await
    }

    pub(super) async fn resume_after_breaker(&mut self, mut r: Rollout) -> Result<()> {
        let now = now_ms();
        r.phase = Phase::Progressing;
        r.reason = None;
        r.step_started_at_ms = Some(now);
        r.updated_at_ms = now;
        self.ctx.store.update_rollout(&r).await?;
        self.event(&r.id, EventKind::RolloutResumed, json!({}))
            .await?;
        self.audit(
            "controller",
            EventKind::RolloutResumed,
            &target(&r),
            EventKind::BreakerReset.as_str(),
            json!({}),
        )
        .await
    }
}
