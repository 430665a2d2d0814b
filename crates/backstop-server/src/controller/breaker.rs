//! The global circuit breaker: counting failures towards a trip, pausing the progressive
//! rollouts in its scope, and resuming them once it is reset. The rules are
//! [`backstop_core::breaker`]'s.

use anyhow::Result;
use backstop_config::BreakerScope;
use backstop_core::Millis;
use backstop_core::breaker::{self, TripScope};
use backstop_core::event::EventKind;
use backstop_core::model::{BreakerTrip, Phase, Rollout};
use serde_json::json;

use super::Controller;
use super::journal::Record;

impl Controller {
    /// Counts a judged failure towards the global breaker and trips it when the policy says so.
    pub(super) async fn record_failure_for_breaker(&self, r: &Rollout, now: Millis) -> Result<()> {
        let ctx = &self.ctx;
        let policy = ctx.config.breaker();
        let within = policy.within.as_millis() as Millis;
        // The event for this failure is written by the caller just before.
        let failures = ctx.store.failures_since(now - within).await?;
        let key = TripScope::of_failure_in(policy.scope == BreakerScope::All, &r.env);
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
        self.record(Record::audit_only(
            "controller",
            EventKind::BreakerTripped,
            format!("breaker/{key}"),
            "policy",
            json!({
                "failures": failures, "trips_after": policy.trips_after, "within_ms": within,
            }),
        ))
        .await
    }

    /// Holds a progressing rollout where it is while trip `trip_id` of `scope` is open (no
    /// rollback).
    pub(super) async fn pause_for_breaker(
        &mut self,
        mut r: Rollout,
        reason: String,
        trip_id: &str,
        scope: &TripScope,
    ) -> Result<()> {
        r.phase = Phase::Paused;
        r.reason = Some(reason.clone());
        r.updated_at_ms = self.ctx.clock.now_ms();
        self.ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        self.record(
            Record::of(&r)
                .event(EventKind::RolloutPaused, json!({"reason": reason}))
                .audit(
                    "controller",
                    EventKind::RolloutPaused,
                    "breaker",
                    json!({"trip": trip_id, "scope": scope}),
                ),
        )
        .await
    }

    /// The breaker that paused `r` was reset: its current step starts again.
    pub(super) async fn resume_after_breaker(&mut self, mut r: Rollout) -> Result<()> {
        let now = self.ctx.clock.now_ms();
        r.phase = Phase::Progressing;
        r.reason = None;
        r.step_started_at_ms = Some(now);
        r.updated_at_ms = now;
        self.ctx.store.update_rollout(&r).await?;
        self.record(
            Record::of(&r)
                .event(EventKind::RolloutResumed, json!({}))
                .audit(
                    "controller",
                    EventKind::RolloutResumed,
                    EventKind::BreakerReset.as_str(),
                    json!({}),
                ),
        )
        .await
    }
}
