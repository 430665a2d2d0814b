//! `/metrics` in the Prometheus text format: the built-in proxies' per-version counters (the
//! embedded signal source) and the controller's own figures, read from live state at scrape time
//! so nothing can drift from what the store and proxies say.

use std::fmt::Write;

use anyhow::Result;
use backstop_core::model::Phase;

use crate::Ctx;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn render(ctx: &Ctx) -> Result<String> {
    let mut out = String::new();
    let proxies: Vec<_> = ctx.drivers.proxies.iter().collect();
    out.push_str("# HELP backstop_proxy_requests_total Requests the built-in proxy forwarded, by version.\n# TYPE backstop_proxy_requests_total counter\n");
    for ((service, env), proxy) in &proxies {
        for s in proxy.stats() {
            writeln!(
                out,
                "backstop_proxy_requests_total{{service=\"{}\",env=\"{}\",version=\"{}\"}} {}",
                escape(service),
                escape(env),
                escape(&s.version),
                s.requests
            )?;
        }
    }
    out.push_str("# HELP backstop_proxy_errors_total Responses with status 5xx or upstream failures, by version.\n# TYPE backstop_proxy_errors_total counter\n");
    for ((service, env), proxy) in &proxies {
        for s in proxy.stats() {
            writeln!(
                out,
                "backstop_proxy_errors_total{{service=\"{}\",env=\"{}\",version=\"{}\"}} {}",
                escape(service),
                escape(env),
                escape(&s.version),
                s.errors
            )?;
        }
    }
    out.push_str("# HELP backstop_proxy_request_duration_seconds Latency from request received to response headers, by version.\n# TYPE backstop_proxy_request_duration_seconds histogram\n");
    for ((service, env), proxy) in &proxies {
        for s in proxy.stats() {
            let labels = format!(
                "service=\"{}\",env=\"{}\",version=\"{}\"",
                escape(service),
                escape(env),
                escape(&s.version)
            );
            for (le_ms, count) in &s.latency_buckets_ms {
                let le = if le_ms.is_infinite() {
                    "+Inf".to_string()
                } else {
                    format!("{}", le_ms / 1000.0)
                };
                writeln!(
                    out,
                    "backstop_proxy_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}"
                )?;
            }
            writeln!(
                out,
                "backstop_proxy_request_duration_seconds_sum{{{labels}}} {}",
                s.latency_sum_ms / 1000.0
            )?;
            writeln!(
                out,
                "backstop_proxy_request_duration_seconds_count{{{labels}}} {}",
                s.requests
            )?;
        }
    }
    out.push_str("# HELP backstop_rollouts Rollouts in the store, by phase.\n# TYPE backstop_rollouts gauge\n");
    let rollouts = ctx.store.rollouts(None, i64::MAX).await?;
    for phase in [
        Phase::Pending,
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoted,
        Phase::Failed,
        Phase::Recovering,
        Phase::Recovered,
    ] {
        let n = rollouts.iter().filter(|r| r.phase == phase).count();
        writeln!(out, "backstop_rollouts{{phase=\"{phase}\"}} {n}")?;
    }
    out.push_str("# HELP backstop_audit_records Records in the audit chain.\n# TYPE backstop_audit_records gauge\n");
    writeln!(
        out,
        "backstop_audit_records {}",
        ctx.store.audit_head().await?.map_or(0, |h| h.0)
    )?;
    Ok(out)
}
