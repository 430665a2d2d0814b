//! `/metrics` in the OpenMetrics text format, written through `prometheus-client`: the built-in
//! proxies' per-version counters (the embedded signal source) and the controller's own figures,
//! read from live state at scrape time so nothing can drift from what the store and proxies say.

use anyhow::Result;
use backstop_core::model::Phase;
use backstop_drivers::proxy::VersionStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::Ctx;

/// The media type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const PHASES: [Phase; 7] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoted,
    Phase::Failed,
    Phase::Recovering,
    Phase::Recovered,
];

pub async fn render(ctx: &Ctx) -> Result<String> {
    let rollouts = ctx.store.rollouts(None, i64::MAX).await?;
    let mut proxies = Vec::new();
    for ((service, env), proxy) in &ctx.drivers.proxies {
        proxies.push((service.clone(), env.clone(), proxy.stats().await));
    }
    let scrape = Scrape {
        proxies,
        rollouts_by_phase: PHASES
            .map(|phase| (phase, rollouts.iter().filter(|r| r.phase == phase).count())),
        audit_records: ctx.store.audit_head().await?.map_or(0, |h| h.seq),
        audit_chain_ok: ctx.caches.audit_chain.ok(),
        postmortems_overdue: crate::postmortem::overdue(ctx)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len(),
        store_writable: ctx
            .caches
            .store_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none(),
        instances: ctx
            .caches
            .supervision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Everything one scrape reports, read before encoding (the store is async, encoding is not).
#[derive(Debug)]
struct Scrape {
    /// (service, env, per-version stats).
    proxies: Vec<(String, String, Vec<VersionStats>)>,
    rollouts_by_phase: [(Phase, usize); 7],
    audit_records: i64,
    /// What the daemon last found of the audit chain (`None` before its first check).
    audit_chain_ok: Option<bool>,
    /// Recoveries whose post-mortem is past due and not marked done.
    postmortems_overdue: usize,
    /// False while the store refuses writes.
    store_writable: bool,
    /// What supervision found of each instance that should be serving.
    instances: Vec<crate::controller::Supervised>,
}

impl Scrape {
    /// Every (service, env, version) label set with its version's stats.
    fn by_version(&self) -> impl Iterator<Item = ([(&str, String); 3], &VersionStats)> {
        self.proxies.iter().flat_map(|(service, env, stats)| {
            stats.iter().map(move |s| {
                let labels = [
                    ("service", service.clone()),
                    ("env", env.clone()),
                    ("version", s.version.clone()),
                ];
                (labels, s)
            })
        })
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests = encoder.encode_descriptor(
            "backstop_proxy_requests",
            "Requests the built-in proxy forwarded, by version.",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in self.by_version() {
            ConstCounter::new(s.requests).encode(requests.encode_family(&labels)?)?;
        }
        let mut errors = encoder.encode_descriptor(
            "backstop_proxy_errors",
            "Responses with status 5xx or upstream failures, by version.",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in self.by_version() {
            ConstCounter::new(s.errors).encode(errors.encode_family(&labels)?)?;
        }
        let mut latency = encoder.encode_descriptor(
            "backstop_proxy_request_duration_seconds",
            "Latency from request received to response headers, by version.",
            None,
            MetricType::Histogram,
        )?;
        for (labels, s) in self.by_version() {
            latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    s.latency_sum_ms / 1000.0,
                    // Requests that never reached an instance are not latency samples.
                    s.latency_buckets_ms.last().map_or(0, |(_, n)| *n),
                    &buckets_seconds(&s.latency_buckets_ms),
                    None,
                )?;
        }
        let mut rollouts = encoder.encode_descriptor(
            "backstop_rollouts",
            "Rollouts in the store, by phase.",
            None,
            MetricType::Gauge,
        )?;
        for (phase, n) in &self.rollouts_by_phase {
            let labels = [("phase", phase.as_str())];
            ConstGauge::new(*n as i64).encode(rollouts.encode_family(&labels)?)?;
        }
        let instance_labels = |s: &crate::controller::Supervised| {
            [
                ("service", s.service.clone()),
                ("env", s.env.clone()),
                ("role", s.role.to_string()),
            ]
        };
        let mut healthy = encoder.encode_descriptor(
            "backstop_instance_healthy",
            "1 while the supervised instance passes its checks, by role (stable, canary).",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.instances {
            ConstGauge::new(i64::from(s.watch.healthy))
                .encode(healthy.encode_family(&instance_labels(s))?)?;
        }
        let mut restarts = encoder.encode_descriptor(
            "backstop_instance_restarts",
            "Restarts of a supervised instance that crashed or kept failing its health check.",
            None,
            MetricType::Counter,
        )?;
        for s in &self.instances {
            ConstCounter::new(s.watch.restarts_total)
                .encode(restarts.encode_family(&instance_labels(s))?)?;
        }
        let mut crash_loop = encoder.encode_descriptor(
            "backstop_instance_crash_loop",
            "1 while a supervised instance is in a crash loop (its environment is degraded).",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.instances {
            ConstGauge::new(i64::from(s.watch.crash_loop))
                .encode(crash_loop.encode_family(&instance_labels(s))?)?;
        }
        let writable = encoder.encode_descriptor(
            "backstop_store_writable",
            "0 while the store refuses writes (canaries are out of traffic, no step starts).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.store_writable)).encode(writable)?;
        let audit = encoder.encode_descriptor(
            "backstop_audit_records",
            "Records in the audit chain.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.audit_records).encode(audit)?;
        let overdue = encoder.encode_descriptor(
            "backstop_postmortems_overdue",
            "Recoveries whose post-mortem is past its due time and not marked done.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(self.postmortems_overdue).unwrap_or(i64::MAX))
            .encode(overdue)?;
        if let Some(ok) = self.audit_chain_ok {
            let chain = encoder.encode_descriptor(
                "backstop_audit_chain_ok",
                "1 while the audit chain verifies (hashes and the head's signature), 0 once the daemon found it broken.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(ok)).encode(chain)?;
        }
        Ok(())
    }
}

/// The proxy's cumulative buckets (upper bound in ms, +∞ last) as prometheus-client wants them:
/// per-bucket counts by upper bound in seconds (it writes them cumulative again).
fn buckets_seconds(cumulative_ms: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut below = 0;
    cumulative_ms
        .iter()
        .map(|&(le_ms, count)| {
            let in_bucket = count.saturating_sub(below);
            below = count;
            (le_ms / 1000.0, in_bucket)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(scrape: Scrape) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn names_labels_types_and_help_are_those_scrapes_and_queries_rely_on() {
        let stats = VersionStats {
            version: "v\"2".into(),
            requests: 10,
            errors: 2,
            latency_buckets_ms: vec![(5.0, 3), (250.0, 9), (f64::INFINITY, 10)],
            latency_sum_ms: 1500.0,
            ..VersionStats::default()
        };
        let text = encoded(Scrape {
            proxies: vec![("shop".into(), "prod".into(), vec![stats])],
            rollouts_by_phase: PHASES.map(|p| (p, usize::from(p == Phase::Promoted))),
            audit_records: 7,
            audit_chain_ok: Some(true),
            postmortems_overdue: 0,
            store_writable: true,
            instances: vec![crate::controller::Supervised {
                service: "shop".into(),
                env: "prod".into(),
                release_id: "shop@v1".into(),
                role: "stable",
                watch: backstop_core::supervision::InstanceWatch {
                    healthy: true,
                    restarts_total: 2,
                    ..Default::default()
                },
            }],
        });
        let labels = r#"service="shop",env="prod",version="v\"2""#;
        for line in [
            "# HELP backstop_proxy_requests Requests the built-in proxy forwarded, by version.",
            "# TYPE backstop_proxy_requests counter",
            &format!("backstop_proxy_requests_total{{{labels}}} 10"),
            "# HELP backstop_proxy_errors Responses with status 5xx or upstream failures, by version.",
            &format!("backstop_proxy_errors_total{{{labels}}} 2"),
            "# TYPE backstop_proxy_request_duration_seconds histogram",
            &format!("backstop_proxy_request_duration_seconds_sum{{{labels}}} 1.5"),
            &format!("backstop_proxy_request_duration_seconds_count{{{labels}}} 10"),
            &format!("backstop_proxy_request_duration_seconds_bucket{{le=\"0.005\",{labels}}} 3"),
            &format!("backstop_proxy_request_duration_seconds_bucket{{le=\"0.25\",{labels}}} 9"),
            &format!("backstop_proxy_request_duration_seconds_bucket{{le=\"+Inf\",{labels}}} 10"),
            "# HELP backstop_rollouts Rollouts in the store, by phase.",
            "# TYPE backstop_rollouts gauge",
            "backstop_rollouts{phase=\"promoted\"} 1",
            "backstop_rollouts{phase=\"paused\"} 0",
            "# HELP backstop_audit_records Records in the audit chain.",
            "# TYPE backstop_audit_records gauge",
            "backstop_audit_records 7",
            "backstop_audit_chain_ok 1",
            "backstop_store_writable 1",
            "backstop_instance_healthy{service=\"shop\",env=\"prod\",role=\"stable\"} 1",
            "backstop_instance_restarts_total{service=\"shop\",env=\"prod\",role=\"stable\"} 2",
            "backstop_instance_crash_loop{service=\"shop\",env=\"prod\",role=\"stable\"} 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
    }
}
