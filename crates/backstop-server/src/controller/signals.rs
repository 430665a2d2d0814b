//! The traffic counters a rollout is judged on: reading them, and turning two cumulative
//! snapshots into one interval's counts.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::Rollout;
use backstop_drivers::proxy::VersionStats;
use backstop_judge::ArmCounts;
use serde_json::json;

use super::Controller;
use super::journal::Record;

impl Controller {
    /// The traffic counters of `r`'s environment. When they cannot be read (a signal source
    /// down or a bad query), the rollout holds where it is (no step advances without data) and
    /// the reason becomes an `analysis.source_error` event, once per distinct reason.
    pub(super) async fn stats_or_event(&self, r: &Rollout) -> Result<Vec<VersionStats>> {
        match self.ctx.traffic_stats(&r.service, &r.env).await {
            Ok(stats) => Ok(stats),
            Err(e) => {
                let reason = format!("{e:#}");
                let events = self.ctx.store.events(&r.id).await?;
                let last = events
                    .iter()
                    .rev()
                    .find(|ev| ev.kind == EventKind::AnalysisSourceError);
                if last.is_none_or(|ev| ev.detail["error"] != reason.as_str()) {
                    self.record(
                        Record::of(r)
                            .event(EventKind::AnalysisSourceError, json!({"error": reason})),
                    )
                    .await?;
                }
                Err(e)
            }
        }
    }

    pub(super) async fn arm_versions(&self, r: &Rollout) -> Result<(String, String)> {
        let store = &self.ctx.store;
        let canary = store.release(&r.to_release_id).await?.version;
        let baseline = match &r.from_release_id {
            Some(id) => store.release(id).await?.version,
            None => String::new(),
        };
        Ok((baseline, canary))
    }
}

pub(super) fn find(stats: &[VersionStats], version: &str) -> Option<VersionStats> {
    stats.iter().find(|s| s.version == version).cloned()
}

pub(super) fn system_ms(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Counts during one interval from two cumulative snapshots. A counter that went down (the
/// proxy restarted with the daemon) counts from zero.
pub fn delta(before: Option<&VersionStats>, after: Option<&VersionStats>) -> ArmCounts {
    let Some(after) = after else {
        return ArmCounts::default();
    };
    let increments =
        match before.filter(|b| b.requests <= after.requests && b.errors <= after.errors) {
            Some(b) => after.since(b),
            None => after.clone(),
        };
    // Routers without latency data (HAProxy, nginx) have no buckets: no latency signal then.
    let latency =
        (!increments.latency_buckets_ms.is_empty()).then_some(increments.latency_buckets_ms);
    ArmCounts {
        requests: increments.requests,
        errors: increments.errors,
        latency_le_ms: latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64) -> VersionStats {
        VersionStats {
            version: "v".into(),
            requests,
            errors,
            latency_buckets_ms: vec![(5.0, requests / 2), (f64::INFINITY, requests)],
            latency_sum_ms: 0.0,
            first_request_at: None,
            last_error_at: None,
        }
    }

    #[test]
    fn interval_counts_are_increments() {
        let d = delta(Some(&stats(10, 1)), Some(&stats(30, 4)));
        assert_eq!((d.requests, d.errors), (20, 3));
        assert_eq!(d.latency_le_ms, Some(vec![(5.0, 10), (f64::INFINITY, 20)]));
    }

    #[test]
    fn a_reset_counter_counts_from_zero_and_a_missing_arm_is_empty() {
        let d = delta(Some(&stats(100, 9)), Some(&stats(7, 1)));
        assert_eq!((d.requests, d.errors), (7, 1));
        assert_eq!(delta(Some(&stats(1, 0)), None), ArmCounts::default());
    }
}
