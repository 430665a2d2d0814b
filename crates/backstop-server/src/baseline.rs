//! Baselines: the stable version's traffic over the window before a rollout starts. The
//! controller samples every router's cumulative counters once per `analysis.interval` (the
//! source the judge uses); a baseline is the difference between now and the oldest sample
//! inside `interval` × [`BASELINE_INTERVALS`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use backstop_core::Millis;
use backstop_core::snapshot::{BASELINE_INTERVALS, Baseline};
use backstop_drivers::proxy::VersionStats;
use backstop_judge::hist::quantile;

use crate::Ctx;

type Samples = VecDeque<(Millis, Vec<VersionStats>)>;

/// Recent samples of each (service, environment)'s per-version counters.
#[derive(Default)]
pub struct History(Mutex<BTreeMap<(String, String), Samples>>);

impl History {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<(String, String), Samples>) -> T) -> T {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The baseline of `version` between two cumulative samples `window_ms` apart.
pub fn baseline_between(
    version: Option<&str>,
    before: Option<&VersionStats>,
    now: Option<&VersionStats>,
    requested_window_ms: Millis,
    window_ms: Millis,
) -> Baseline {
    let counts = crate::controller::delta(before, now);
    let buckets = counts.latency_le_ms.unwrap_or_default();
    let secs = window_ms as f64 / 1000.0;
    Baseline {
        version: version.map(str::to_string),
        requested_window_ms,
        window_ms,
        requests: counts.requests,
        errors: counts.errors,
        requests_per_s: (secs > 0.0).then(|| counts.requests as f64 / secs),
        error_ratio: (counts.requests > 0).then(|| counts.errors as f64 / counts.requests as f64),
        latency_p50_ms: quantile(0.5, &buckets),
        latency_p99_ms: quantile(0.99, &buckets),
        latency_le_ms: buckets
            .iter()
            .map(|(le, n)| (le.is_finite().then_some(*le), *n))
            .collect(),
    }
}

impl Ctx {
    /// Takes one sample of every router whose last sample is at least its service's
    /// `analysis.interval` old; keeps the samples a baseline window needs.
    pub async fn sample_traffic(&self) {
        let now = self.clock.now_ms();
        for (service, env) in self.drivers.routers.keys() {
            let Ok(svc) = self.service(service) else {
                continue;
            };
            let interval = svc.analysis.interval.as_millis() as Millis;
            let key = (service.clone(), env.clone());
            let due = self.caches.traffic_history.with(|h| {
                h.get(&key)
                    .and_then(|s| s.back())
                    .is_none_or(|(at, _)| now - at >= interval)
            });
            if !due {
                continue;
            }
            let Ok(stats) = self.traffic_stats(service, env).await else {
                continue;
            };
            self.caches.traffic_history.with(|h| {
                let samples = h.entry(key).or_default();
                samples.push_back((now, stats));
                while samples.len() > BASELINE_INTERVALS as usize + 2 {
                    samples.pop_front();
                }
            });
        }
    }

    /// The latest sample of `service/env`'s per-version counters, and when it was taken (once
    /// per `analysis.interval`, by [`Ctx::sample_traffic`]): what a judge that looks every tick
    /// reads instead of asking the router again.
    pub fn latest_traffic(&self, service: &str, env: &str) -> Option<(Millis, Vec<VersionStats>)> {
        let key = (service.to_string(), env.to_string());
        self.caches
            .traffic_history
            .with(|h| h.get(&key).and_then(|s| s.back().cloned()))
    }

    /// The baseline of `version` (the stable version) in `service/env` now.
    pub async fn capture_baseline(
        &self,
        service: &str,
        env: &str,
        version: Option<&str>,
    ) -> anyhow::Result<Baseline> {
        let svc = self.service(service)?;
        let requested = (svc.analysis.interval * BASELINE_INTERVALS).as_millis() as Millis;
        let stats = self.traffic_stats(service, env).await?;
        let now = self.clock.now_ms();
        let key = (service.to_string(), env.to_string());
        let oldest = self.caches.traffic_history.with(|h| {
            h.get(&key).and_then(|s| {
                s.iter()
                    .find(|(at, _)| now - at <= requested + requested / BASELINE_INTERVALS as i64)
                    .cloned()
            })
        });
        let find = |list: &[VersionStats]| {
            version.and_then(|v| list.iter().find(|s| s.version == v).cloned())
        };
        let current = find(&stats);
        Ok(match oldest {
            Some((at, earlier)) => baseline_between(
                version,
                find(&earlier).as_ref(),
                current.as_ref(),
                requested,
                now - at,
            ),
            None => baseline_between(version, current.as_ref(), current.as_ref(), requested, 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64, fast: u64) -> VersionStats {
        VersionStats {
            version: "v1".into(),
            requests,
            errors,
            // 1 % slower than 50 ms, so that p99 (interpolated) lands on the 50 ms bound.
            latency_buckets_ms: vec![
                (5.0, fast),
                (50.0, requests - requests / 100),
                (f64::INFINITY, requests),
            ],
            latency_sum_ms: 0.0,
            first_request_at: None,
            last_error_at: None,
        }
    }

    #[test]
    fn a_baseline_is_the_increments_over_the_window() {
        let b = baseline_between(
            Some("v1"),
            Some(&stats(100, 1, 50)),
            Some(&stats(300, 5, 150)),
            5000,
            4000,
        );
        assert_eq!((b.requests, b.errors), (200, 4));
        assert_eq!(b.requests_per_s, Some(50.0));
        assert_eq!(b.error_ratio, Some(0.02));
        assert_eq!(b.latency_p50_ms, Some(5.0));
        assert_eq!(b.latency_p99_ms, Some(50.0));
        assert_eq!(b.latency_le_ms.last(), Some(&(None, 200)));
        let json = serde_json::to_string(&b).expect("json");
        let back: Baseline = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back, b);
        let empty = baseline_between(None, None, None, 5000, 0);
        assert_eq!((empty.requests, empty.error_ratio), (0, None));
    }
}
