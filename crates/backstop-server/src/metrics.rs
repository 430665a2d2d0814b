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

use backstop_store::{DecisionCounts, DurationCounts, TIME_BUCKETS_S};

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
    // Counted by the database: a scrape never reads every rollout row.
    let counts = ctx.store.decision_counts().await?;
    let routed = ctx
        .caches
        .applied_routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut proxies = Vec::new();
    for ((service, env), proxy) in &ctx.drivers.proxies {
        let mut stats = proxy.stats().await;
        // Only versions the proxy routes to now: a version rolled back or replaced leaves the
        // scrape, so the series do not grow with every release ever deployed.
        if let Some(routes) = routed.get(&(service.clone(), env.clone())) {
            let live: Vec<&str> = [&routes.stable, &routes.canary]
                .into_iter()
                .flatten()
                .map(|u| u.version.as_str())
                .collect();
            stats.retain(|s| live.contains(&s.version.as_str()));
        }
        proxies.push((service.clone(), env.clone(), stats));
    }
    let scrape = Scrape {
        proxies,
        decisions: counts,
        api_requests: ctx.caches.api_requests.snapshot(),
        process: process_figures(),
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
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
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
    /// Verdicts, finished rollouts, recoveries, breaker trips, SLA breaches, times.
    decisions: DecisionCounts,
    /// ((method, route, status), calls) this daemon answered.
    api_requests: Vec<((String, String, u16), u64)>,
    process: Process,
    audit_records: i64,
    /// What the daemon last found of the audit chain (`None` before its first check).
    audit_chain_ok: Option<bool>,
    /// Recoveries whose post-mortem is past due and not marked done.
    postmortems_overdue: usize,
    /// False while the store refuses writes.
    store_writable: bool,
    /// What supervision found of each instance that should be serving.
    /// Supervised instances by id.
    instances: Vec<(String, crate::controller::Supervised)>,
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
        for phase in PHASES {
            let labels = [("phase", phase.as_str())];
            ConstGauge::new(self.rollouts_in(phase)).encode(rollouts.encode_family(&labels)?)?;
        }
        // One series per instance: a version may run several (`run.instances`).
        let instance_labels = |(id, s): &(String, crate::controller::Supervised)| {
            [
                ("service", s.service.clone()),
                ("env", s.env.clone()),
                ("role", s.role.to_string()),
                ("instance", id.clone()),
            ]
        };
        let mut healthy = encoder.encode_descriptor(
            "backstop_instance_healthy",
            "1 while the supervised instance passes its checks, by role (stable, warm) and instance.",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.instances {
            ConstGauge::new(i64::from(s.1.watch.healthy))
                .encode(healthy.encode_family(&instance_labels(s))?)?;
        }
        let mut restarts = encoder.encode_descriptor(
            "backstop_instance_restarts",
            "Restarts of a supervised instance that crashed or kept failing its health check.",
            None,
            MetricType::Counter,
        )?;
        for s in &self.instances {
            ConstCounter::new(s.1.watch.restarts_total)
                .encode(restarts.encode_family(&instance_labels(s))?)?;
        }
        let mut crash_loop = encoder.encode_descriptor(
            "backstop_instance_crash_loop",
            "1 while a supervised instance is in a crash loop (its environment is degraded).",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.instances {
            ConstGauge::new(i64::from(s.1.watch.crash_loop))
                .encode(crash_loop.encode_family(&instance_labels(s))?)?;
        }
        self.encode_decisions(&mut encoder)?;
        let mut api = encoder.encode_descriptor(
            "backstop_api_requests",
            "HTTP calls this daemon answered, by method, route template and status.",
            None,
            MetricType::Counter,
        )?;
        for ((method, route, status), n) in &self.api_requests {
            let labels = [
                ("method", method.clone()),
                ("route", route.clone()),
                ("status", status.to_string()),
            ];
            ConstCounter::new(*n).encode(api.encode_family(&labels)?)?;
        }
        self.process.encode(&mut encoder)?;
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

impl Scrape {
    /// Rollouts in `phase` now, as the database counted them.
    fn rollouts_in(&self, phase: Phase) -> i64 {
        self.decisions
            .rollouts_by_phase
            .iter()
            .find(|(p, _)| p == phase.as_str())
            .map_or(0, |(_, n)| *n)
    }

    fn encode_decisions(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = &self.decisions;
        let mut finished = encoder.encode_descriptor(
            "backstop_rollouts_finished",
            "Rollouts that ended, by result (promoted, recovered, failed).",
            None,
            MetricType::Counter,
        )?;
        for phase in [Phase::Promoted, Phase::Recovered, Phase::Failed] {
            ConstCounter::new(u64::try_from(self.rollouts_in(phase)).unwrap_or(0))
                .encode(finished.encode_family(&[("result", phase.as_str())])?)?;
        }
        let mut verdicts = encoder.encode_descriptor(
            "backstop_verdicts",
            "Decided rollouts by the judge that decided and its last verdict.",
            None,
            MetricType::Counter,
        )?;
        for (judge, verdict, n) in &d.verdicts {
            let labels = [("judge", judge.as_str()), ("result", verdict.as_str())];
            ConstCounter::new(u64::try_from(*n).unwrap_or(0))
                .encode(verdicts.encode_family(&labels)?)?;
        }
        let mut recoveries = encoder.encode_descriptor(
            "backstop_recoveries",
            "Recoveries by what triggered them and their outcome (running, done, failed).",
            None,
            MetricType::Counter,
        )?;
        for (trigger, status, n) in &d.recoveries {
            let labels = [("trigger", trigger.as_str()), ("outcome", status.as_str())];
            ConstCounter::new(u64::try_from(*n).unwrap_or(0))
                .encode(recoveries.encode_family(&labels)?)?;
        }
        let mut groups = encoder.encode_descriptor(
            "backstop_group_runs",
            "Release group runs by phase (progressing, recovering, promoted, rolled_back, halted).",
            None,
            MetricType::Gauge,
        )?;
        for (phase, n) in &d.group_runs_by_phase {
            ConstGauge::new(*n).encode(groups.encode_family(&[("phase", phase.as_str())])?)?;
        }
        let mut ships = encoder.encode_descriptor(
            "backstop_ships",
            "Ships through environment waves by phase (shipping, rolling_back, shipped, stopped, halted).",
            None,
            MetricType::Gauge,
        )?;
        for (phase, n) in &d.ships_by_phase {
            ConstGauge::new(*n).encode(ships.encode_family(&[("phase", phase.as_str())])?)?;
        }
        let mut alerts = encoder.encode_descriptor(
            "backstop_alerts",
            "Alert firings received from monitoring, by what each started (rolled_back, held, notified, ignored, …).",
            None,
            MetricType::Counter,
        )?;
        for (action, n) in &d.alerts_by_action {
            ConstCounter::new(u64::try_from(*n).unwrap_or(0))
                .encode(alerts.encode_family(&[("action", action.as_str())])?)?;
        }
        let trips = encoder.encode_descriptor(
            "backstop_breaker_trips",
            "Times the global circuit breaker tripped.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(u64::try_from(d.breaker_trips).unwrap_or(0)).encode(trips)?;
        let sla = encoder.encode_descriptor(
            "backstop_rollback_sla_breaches",
            "Rollbacks whose verdict-to-restored time exceeded the environment's rollback SLA.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(u64::try_from(d.sla_breaches).unwrap_or(0)).encode(sla)?;
        for (name, help, h) in [
            (
                "backstop_time_to_detect_seconds",
                "First canary request to the failing verdict, per failed rollout.",
                &d.time_to_detect,
            ),
            (
                "backstop_time_to_restore_seconds",
                "First canary request to traffic back on the last known good, per rollback.",
                &d.time_to_restore,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            family.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &histogram_buckets(h), None)?;
        }
        Ok(())
    }
}

/// Database-counted cumulative buckets as prometheus-client wants them (per bucket, +Inf last).
fn histogram_buckets(h: &DurationCounts) -> Vec<(f64, u64)> {
    let mut below = 0;
    let mut out: Vec<(f64, u64)> = TIME_BUCKETS_S
        .iter()
        .zip(h.at_most.iter().chain(std::iter::repeat(&h.count)))
        .map(|(le, at_most)| {
            let in_bucket = at_most.saturating_sub(below);
            below = *at_most;
            (*le, in_bucket)
        })
        .collect();
    out.push((f64::INFINITY, h.count.saturating_sub(below)));
    out
}

/// This process's own figures, read from `/proc` (Linux); absent elsewhere.
#[derive(Debug, Default)]
struct Process {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

fn process_figures() -> Process {
    let ticks = 100.0; // USER_HZ on Linux
    let page = 4096u64;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .map(|v| v.trim().parse::<f64>().ok())
            })
        })
        .flatten();
    Process {
        cpu_seconds: field(14).zip(field(15)).map(|(u, s)| (u + s) / ticks),
        resident_bytes: field(24).map(|p| p as u64 * page),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        start_time_seconds: boot.zip(field(22)).map(|(b, t)| b + t / ticks),
    }
}

impl Process {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(v) = self.cpu_seconds {
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time the daemon spent.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(m)?;
        }
        if let Some(v) = self.resident_bytes {
            let m = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the daemon.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
        }
        if let Some(v) = self.open_fds {
            let m = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors of the daemon.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
        }
        if let Some(v) = self.start_time_seconds {
            let m = encoder.encode_descriptor(
                "process_start_time_seconds",
                "When the daemon started, in seconds since the Unix epoch.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(v).encode(m)?;
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
            decisions: DecisionCounts {
                rollouts_by_phase: vec![("promoted".into(), 1), ("recovered".into(), 2)],
                verdicts: vec![("sequential".into(), "fail".into(), 2)],
                recoveries: vec![("rollout.failed".into(), "done".into(), 2)],
                breaker_trips: 1,
                sla_breaches: 0,
                group_runs_by_phase: vec![("rolled_back".into(), 1)],
                ships_by_phase: vec![("shipped".into(), 2)],
                alerts_by_action: vec![("rolled_back".into(), 1)],
                time_to_detect: DurationCounts {
                    count: 2,
                    sum_s: 7.5,
                    at_most: vec![0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2],
                },
                time_to_restore: DurationCounts::default(),
            },
            api_requests: vec![(("GET".into(), "/api/v1/rollouts/{id}".into(), 200), 3)],
            process: Process {
                open_fds: Some(12),
                ..Process::default()
            },
            audit_records: 7,
            audit_chain_ok: Some(true),
            postmortems_overdue: 0,
            store_writable: true,
            instances: vec![(
                "shop-prod-v1-abc123".into(),
                crate::controller::Supervised {
                    service: "shop".into(),
                    env: "prod".into(),
                    release_id: "shop@v1".into(),
                    role: "stable",
                    watch: backstop_core::supervision::InstanceWatch {
                        healthy: true,
                        restarts_total: 2,
                        ..Default::default()
                    },
                },
            )],
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
            "backstop_instance_healthy{service=\"shop\",env=\"prod\",role=\"stable\",instance=\"shop-prod-v1-abc123\"} 1",
            "backstop_instance_restarts_total{service=\"shop\",env=\"prod\",role=\"stable\",instance=\"shop-prod-v1-abc123\"} 2",
            "backstop_instance_crash_loop{service=\"shop\",env=\"prod\",role=\"stable\",instance=\"shop-prod-v1-abc123\"} 0",
            "backstop_rollouts_finished_total{result=\"recovered\"} 2",
            "backstop_rollouts_finished_total{result=\"failed\"} 0",
            "backstop_verdicts_total{judge=\"sequential\",result=\"fail\"} 2",
            "backstop_recoveries_total{trigger=\"rollout.failed\",outcome=\"done\"} 2",
            "backstop_group_runs{phase=\"rolled_back\"} 1",
            "backstop_ships{phase=\"shipped\"} 2",
            "backstop_alerts_total{action=\"rolled_back\"} 1",
            "backstop_breaker_trips_total 1",
            "backstop_rollback_sla_breaches_total 0",
            "# TYPE backstop_time_to_detect_seconds histogram",
            "backstop_time_to_detect_seconds_bucket{le=\"2.0\"} 0",
            "backstop_time_to_detect_seconds_bucket{le=\"5.0\"} 1",
            "backstop_time_to_detect_seconds_bucket{le=\"10.0\"} 2",
            "backstop_time_to_detect_seconds_bucket{le=\"+Inf\"} 2",
            "backstop_time_to_detect_seconds_count 2",
            "backstop_time_to_detect_seconds_sum 7.5",
            "backstop_api_requests_total{method=\"GET\",route=\"/api/v1/rollouts/{id}\",status=\"200\"} 3",
            "process_open_fds 12",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
    }
}
