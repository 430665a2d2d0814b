//! Fail safe when the store fails: when writes are refused (disk full, I/O error, read-only
//! file system) nothing can be journaled, so no step may start; but users must not stay on an
//! unjudged canary meanwhile. The controller takes every canary out of traffic (all of it back
//! to the version that was stable: reads still work, and routes live in the proxies), reports
//! unhealthy on `/healthz` and in `/metrics`, and probes with the record of what it did. When
//! that record is written, writes work again: the routes go back to what the store says and
//! the rollouts carry on.

use anyhow::Result;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_store::StoreError;
use serde::Serialize;
use serde_json::json;

use super::Controller;

/// A period in which the store refused writes.
#[derive(Debug, Clone, Serialize)]
pub struct StoreOutage {
    pub since_ms: Millis,
    pub reason: String,
    /// `service/env` whose canary was taken out of traffic.
    pub withdrawn: Vec<String>,
}

/// The current outage, if writes are failing (in memory: it is what cannot be written).
pub type StoreHealth = std::sync::Mutex<Option<StoreOutage>>;

/// The reason, when `e` comes from the store refusing a write.
pub(super) fn write_failure(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<StoreError>())
        .find(|s| s.is_write_failure())
        .map(|s| s.to_string())
}

impl Controller {
    /// True while writes are known to fail.
    pub(super) fn in_fail_safe(&self) -> bool {
        self.ctx
            .caches
            .store_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Writes failed: take every canary out of traffic and say so.
    pub(super) async fn enter_fail_safe(&mut self, reason: String) {
        let ctx = self.ctx.clone();
        tracing::error!(reason = %reason, "The store refuses writes: taking every canary out of traffic, starting no step until writes work again.");
        let mut withdrawn = Vec::new();
        for (service, env) in ctx.drivers.routers.keys() {
            match ctx.apply_stable_only(service, env).await {
                Ok(true) => withdrawn.push(format!("{service}/{env}")),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(service = %service, env = %env, error = format!("{e:#}"), "Could not take the canary out of traffic.");
                }
            }
        }
        *ctx.caches
            .store_health
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(StoreOutage {
            since_ms: ctx.clock.now_ms(),
            reason,
            withdrawn,
        });
    }

    /// Probes with the record of the outage; once it is written, puts the routes back and
    /// returns true.
    pub(super) async fn try_leave_fail_safe(&mut self) -> Result<bool> {
        let ctx = self.ctx.clone();
        let Some(outage) = ctx
            .caches
            .store_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Ok(true);
        };
        let now = ctx.clock.now_ms();
        let written = crate::audit(
            &ctx,
            "controller",
            EventKind::StoreWriteFailed,
            "store",
            &outage.reason,
            json!({"since_ms": outage.since_ms, "until_ms": now, "reason": outage.reason,
                   "canaries_withdrawn": outage.withdrawn}),
        )
        .await;
        if let Err(e) = written {
            if write_failure(&e).is_none() {
                return Err(e);
            }
            return Ok(false);
        }
        *ctx.caches
            .store_health
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        tracing::info!(
            down_ms = now - outage.since_ms,
            "The store takes writes again; routes restored, rollouts carry on."
        );
        for (service, env) in ctx.drivers.routers.keys() {
            ctx.apply_routes(service, env).await?;
        }
        Ok(true)
    }
}
