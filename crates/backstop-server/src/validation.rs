//! Post-recovery validation in the daemon (practice 6.1): once a recovery is done (traffic is
//! back on the last known good: *restored*), the service's suite runs against the environment
//! again and again until every check passes (*resolved*) or its window is over (restored, not
//! resolved: people are told). Until then the gate keeps non-critical deployments out of the
//! environment.
//!
//! Driven like runbook runs: each pending validation by the replica holding its lease, every
//! write inside its fence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop_config::Service;
use backstop_config::validation::{Journey, JourneyStep, Validation, fill, split_request};

use backstop_core::event::EventKind;
use backstop_core::model::Recovery;
use backstop_core::snapshot::Baseline;
use backstop_core::validation::{CheckResult, RecoveryValidation, ValidationStatus};
use backstop_drivers::proxy::VersionStats;
use backstop_drivers::step::RecordedStep;
use backstop_judge::{ArmCounts, Decision, Interval};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use backstop_core::duration::millis;

use crate::Ctx;
use crate::error::ApiResult;

/// How often the daemon looks for validations to run.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// For a recovery without a rollout, KPIs compare with this long before it was asked for.
const KPI_LOOKBACK_WITHOUT_ROLLOUT_MS: backstop_core::Millis = 10 * 60 * 1000;

/// The pause between two attempts of a failing suite.
pub const RETRY_EVERY: Duration = Duration::from_secs(3);

fn lease_key(recovery_id: &str) -> String {
    format!("validation/{recovery_id}")
}

/// The validation a recovery of `service` restored at `now` begins with.
#[must_use]
pub fn begin(service: Option<&Service>, now: backstop_core::Millis) -> RecoveryValidation {
    RecoveryValidation::begin(now, service.and_then(window_ms))
}

/// How long a recovery of `service` may take to validate: its suite's `within`, else (with
/// heartbeats only) long enough for the slowest heartbeat to ping; `None` when there is
/// nothing to validate.
fn window_ms(service: &Service) -> Option<backstop_core::Millis> {
    if let Some(suite) = &service.validation {
        return Some(millis(suite.within));
    }
    service
        .heartbeats
        .iter()
        .map(|h| h.every)
        .max()
        .map(|every| millis(every.max(backstop_config::validation::DEFAULT_VALIDATION_WITHIN)))
}

/// Where journeys of `service` in `env` go: the suite's `url`, else the environment's address.
fn base_url(suite: &Validation, service: &Service, env: &str) -> Option<String> {
    if let Some(url) = &suite.url {
        return Some(url.trim_end_matches('/').to_owned());
    }
    service
        .environment(env)
        .and_then(|e| e.listen)
        .map(|a| format!("http://{a}"))
}

/// Kicks, every [`CHECK_EVERY`], each pending validation.
pub async fn keep_validating(ctx: Arc<Ctx>, stop: CancellationToken) {
    loop {
        if let Ok(pending) = ctx.store.recoveries_validating().await {
            for rec in pending {
                kick(&ctx, &rec.id);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

fn kick(ctx: &Arc<Ctx>, id: &str) {
    crate::leased::spawn(
        ctx,
        |c| &c.caches.validations,
        id,
        lease_key(id),
        |ctx, id, lost| async move { validate(&ctx, &id, &lost).await },
    );
}

/// Attempts the suite until it passes or its window is over.
async fn validate(ctx: &Ctx, id: &str, lost: &CancellationToken) -> ApiResult<()> {
    // KPIs compare with just before users met the bad version (a rollback a person asked for
    // without a rollout: ten minutes before it was asked for).
    let baseline_at = {
        let rec = ctx.store.recovery(id).await?;
        match &rec.rollout_id {
            Some(rid) => {
                let rollout = ctx.store.rollout(rid).await?;
                let events = ctx.store.events(rid).await?;
                Some(backstop_core::timeline::Timeline::exposed_at_ms(
                    &events, &rollout,
                ))
            }
            None => Some(rec.created_at_ms - KPI_LOOKBACK_WITHOUT_ROLLOUT_MS),
        }
    };
    // The restored version's traffic is compared with its own, stored before the rollout,
    // from where its counters stand now.
    let mut pre_failure = PreFailure::capture(ctx, &ctx.store.recovery(id).await?).await;
    while !lost.is_cancelled() {
        let rec = ctx.store.recovery(id).await?;
        let Some(mut v) = rec.validation.clone() else {
            return Ok(());
        };
        if v.status != ValidationStatus::Pending {
            return Ok(());
        }
        let service = ctx.config.service(&rec.service);
        let mut checks = match service.and_then(|s| s.validation.as_ref().map(|v| (s, v))) {
            Some((svc, suite)) => run_suite(suite, svc, &rec.env, baseline_at).await,
            // The config no longer declares a suite: nothing left to wait for.
            None => vec![],
        };
        let now = ctx.clock.now_ms();
        if let Some(svc) = service {
            let beats = ctx.store.heartbeats().await?;
            checks.extend(heartbeat_checks(svc, &rec.env, &beats, now));
            if let Some(pre) = pre_failure.as_mut() {
                checks.push(pre.check(ctx, svc, &rec.env).await);
            }
        }
        let finished = v.attempted(checks, now);
        ctx.store.check_fence().await?;
        ctx.store.set_recovery_validation(id, &v).await?;
        if finished {
            finished_validation(ctx, &rec, &v).await?;
            return Ok(());
        }
        tokio::select! {
            () = lost.cancelled() => {}
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
    Ok(())
}

/// The validation of `rec` ended: audited, told to the incident, the service's webhooks and,
/// once resolved, written out as a post-mortem draft.
async fn finished_validation(ctx: &Ctx, rec: &Recovery, v: &RecoveryValidation) -> ApiResult<()> {
    let resolved = v.status == ValidationStatus::Passed;
    let failed: Vec<&CheckResult> = v.checks.iter().filter(|c| !c.passed).collect();
    let summary = if resolved {
        format!(
            "recovery {} resolved: the post-recovery suite passed ({} checks, attempt {})",
            rec.id,
            v.checks.len(),
            v.attempts
        )
    } else {
        format!(
            "recovery {} restored but NOT resolved: the post-recovery suite still fails after {} attempts ({})",
            rec.id,
            v.attempts,
            failed
                .iter()
                .map(|c| format!("{} {}: {}", c.kind, c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let kind = if resolved {
        EventKind::RecoveryResolved
    } else {
        EventKind::RecoveryUnresolved
    };
    crate::audit(
        ctx,
        "controller",
        kind,
        &format!("recovery/{}", rec.id),
        "validation",
        json!({"status": v.status, "attempts": v.attempts, "checks": v.checks}),
    )
    .await?;
    if resolved {
        tracing::info!(recovery = %rec.id, "{summary}");
    } else {
        tracing::warn!(recovery = %rec.id, "{summary}");
    }
    ctx.notify(backstop_drivers::notify::Notification {
        id: format!("validation/{}", rec.id),
        kind: kind.as_str().into(),
        service: rec.service.clone(),
        env: rec.env.clone(),
        summary: summary.clone(),
        detail: json!({"recovery": rec.id, "status": v.status, "checks": v.checks}),
        at_ms: ctx.clock.now_ms(),
    });
    if let Some(rollout_id) = &rec.rollout_id {
        crate::incidents::note_for_rollout(ctx, rollout_id, &summary).await;
    }
    if resolved {
        crate::postmortem::write_draft(ctx, &rec.id).await;
    }
    Ok(())
}

/// Fewest requests since the restore before they are judged against the baseline.
const BASELINE_MIN_REQUESTS: u64 = 20;

/// The pre-failure baseline of a recovery's rollout (practice 6.2) and where the restored
/// version's counters stood when the window now judged began.
struct PreFailure {
    baseline: Baseline,
    version: String,
    start: Option<VersionStats>,
    started: Instant,
}

impl PreFailure {
    /// `None` when the recovery has no rollout or its rollout no baseline with traffic.
    async fn capture(ctx: &Ctx, rec: &Recovery) -> Option<PreFailure> {
        let rollout_id = rec.rollout_id.as_deref()?;
        let baseline = ctx
            .store
            .rollout_safeguards(rollout_id)
            .await
            .ok()??
            .baseline?;
        let version = baseline.version.clone()?;
        let start = ctx
            .traffic_stats(&rec.service, &rec.env)
            .await
            .ok()
            .and_then(|stats| stats.into_iter().find(|s| s.version == version));
        Some(PreFailure {
            baseline,
            version,
            start,
            started: Instant::now(),
        })
    }

    /// The restored version's traffic in the latest window (since the last judged one, once it
    /// has enough requests) against the baseline, judged by the service's judge: worse is
    /// residual instability, a failed check (and said so in the post-mortem), not something
    /// hidden behind "traffic is back". A fault that ends passes in the next window.
    async fn check(&mut self, ctx: &Ctx, svc: &Service, env: &str) -> CheckResult {
        let b = &self.baseline;
        let check = |passed: bool, detail: String| CheckResult {
            kind: "baseline".into(),
            name: format!("{} against before the rollout", self.version),
            passed,
            detail,
            took_ms: 0,
        };
        let now = match ctx.traffic_stats(&svc.name, env).await {
            Ok(stats) => stats.into_iter().find(|s| s.version == self.version),
            Err(e) => return check(false, format!("cannot read the traffic: {e:#}")),
        };
        let since = crate::controller::delta(self.start.as_ref(), now.as_ref());
        let before = format!(
            "before the rollout: {} errors in {} requests{}",
            b.errors,
            b.requests,
            b.latency_p99_ms
                .map(|p| format!(", p99 {p:.0} ms"))
                .unwrap_or_default()
        );
        if b.requests < BASELINE_MIN_REQUESTS {
            return check(
                true,
                format!("too little traffic before the rollout to compare ({before})"),
            );
        }
        if since.requests < BASELINE_MIN_REQUESTS {
            // Resolved only after a window of evidence: as many requests as a judgement needs,
            // or as long as the baseline's window with fewer (a quiet service).
            let waited_ms = millis(self.started.elapsed());
            return if waited_ms < b.requested_window_ms {
                check(
                    false,
                    format!(
                        "waiting for traffic to compare: {} of {BASELINE_MIN_REQUESTS} requests ({before})",
                        since.requests
                    ),
                )
            } else {
                check(
                    true,
                    format!(
                        "{} requests in {}: too few to compare ({before})",
                        since.requests,
                        backstop_core::postmortem::human(waited_ms)
                    ),
                )
            };
        }
        let p99 = since
            .latency_le_ms
            .as_ref()
            .and_then(|h| backstop_judge::hist::quantile(0.99, h))
            .map(|p| format!(", p99 {p:.0} ms"))
            .unwrap_or_default();
        let after = format!(
            "now: {} errors in {} requests{p99}",
            since.errors, since.requests
        );
        let latency = (!b.latency_le_ms.is_empty()).then(|| {
            b.latency_le_ms
                .iter()
                .map(|(le, n)| (le.unwrap_or(f64::INFINITY), *n))
                .collect()
        });
        let interval = Interval {
            t: self.started.elapsed().as_secs_f64(),
            baseline: ArmCounts {
                requests: b.requests,
                errors: b.errors,
                latency_le_ms: latency,
            },
            canary: since,
            log_lines: None,
        };
        // The next window starts here.
        self.start = now;
        self.started = Instant::now();
        // One window is one comparison of two arms: the sequential judge makes it whatever
        // judge the canaries use (Kayenta waits for its first checkpoint, the threshold judge
        // for several failed checks; neither decides on one interval).
        let sequential = backstop_judge::JudgeSettings {
            judge: backstop_judge::JudgeKind::Sequential,
            ..svc.analysis.clone()
        };
        let mut judge = backstop_judge::build(&sequential);
        match judge.observe(&interval) {
            Decision::Fail => check(
                false,
                format!("residual instability: worse than before the rollout ({after}; {before})"),
            ),
            Decision::Continue | Decision::Inconclusive => {
                check(true, format!("as before the rollout ({after}; {before})"))
            }
        }
    }
}

/// One check per heartbeat of `service` in `env`: passed while it is not late.
#[must_use]
pub fn heartbeat_checks(
    service: &Service,
    env: &str,
    beats: &[backstop_core::heartbeat::Beat],
    now: backstop_core::Millis,
) -> Vec<CheckResult> {
    use backstop_core::heartbeat::{BeatStatus, status};
    service
        .heartbeats
        .iter()
        .filter(|h| h.env.as_deref().is_none_or(|e| e == env))
        .map(|h| {
            let beat = beats.iter().find(|b| b.name == h.name);
            let every = millis(h.every);
            let state = status(beat, every, now);
            let detail = match (state, beat) {
                (BeatStatus::Never, _) | (_, None) => format!(
                    "never pinged (expected every {})",
                    backstop_core::postmortem::human(every)
                ),
                (_, Some(b)) => format!(
                    "last ping {} ago by {} (expected every {})",
                    backstop_core::postmortem::human(now - b.last_at_ms),
                    b.last_by,
                    backstop_core::postmortem::human(every)
                ),
            };
            CheckResult {
                kind: "heartbeat".into(),
                name: h.name.clone(),
                passed: state == BeatStatus::Ok,
                detail,
                took_ms: 0,
            }
        })
        .collect()
}

/// One attempt: every journey, probe, command and KPI, each timed. KPIs compare with their
/// value at `baseline_at_ms`.
pub async fn run_suite(
    suite: &Validation,
    service: &Service,
    env: &str,
    baseline_at_ms: Option<backstop_core::Millis>,
) -> Vec<CheckResult> {
    let base = base_url(suite, service, env);
    let mut out = Vec::new();
    for kpi in &suite.kpis {
        let started = Instant::now();
        let url = kpi
            .prometheus
            .clone()
            .or_else(|| service.signals.prometheus.as_ref().map(|p| p.url.clone()));
        let (passed, detail) = match url {
            Some(url) => run_kpi(&url, kpi, baseline_at_ms).await,
            None => (
                false,
                "no Prometheus to ask: give the KPI `prometheus` or the service `signals.prometheus`".into(),
            ),
        };
        out.push(CheckResult {
            kind: "kpi".into(),
            name: kpi.name.clone(),
            passed,
            detail,
            took_ms: millis(started.elapsed()),
        });
    }
    for journey in &suite.journeys {
        let started = Instant::now();
        let (passed, detail) = match &base {
            Some(base) => run_journey(base, journey).await,
            None => (
                false,
                format!(
                    "no address to send journeys to: environment {env} has no `listen` and the suite no `url`"
                ),
            ),
        };
        out.push(CheckResult {
            kind: "journey".into(),
            name: journey.name.clone(),
            passed,
            detail,
            took_ms: millis(started.elapsed()),
        });
    }
    for probe in &suite.probes {
        let started = Instant::now();
        let (passed, detail) = run_probe(probe).await;
        out.push(CheckResult {
            kind: "probe".into(),
            name: probe.name.clone(),
            passed,
            detail,
            took_ms: millis(started.elapsed()),
        });
    }
    for command in &suite.commands {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!("backstop-validate-{}", uuid::Uuid::now_v7()));
        let step = RecordedStep {
            dir: dir.clone(),
            command: command.run.clone(),
            idempotency_key: format!("validation/{}/{}/{}", service.name, env, command.name),
            timeout: command.timeout,
            vars: BTreeMap::from([
                ("BACKSTOP_SERVICE".to_owned(), service.name.clone()),
                ("BACKSTOP_ENV".to_owned(), env.to_owned()),
                ("BACKSTOP_URL".to_owned(), base.clone().unwrap_or_default()),
            ]),
        };
        let (passed, detail) = match step.run().await {
            Ok(o) if o.exit_code == 0 && !o.timed_out => (true, "exit 0".to_owned()),
            Ok(o) => (
                false,
                format!(
                    "{}; stderr: {}",
                    if o.timed_out {
                        "timed out".to_owned()
                    } else {
                        format!("exit {}", o.exit_code)
                    },
                    tail(&o.stderr)
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        let _ = std::fs::remove_dir_all(&dir);
        out.push(CheckResult {
            kind: "command".into(),
            name: command.name.clone(),
            passed,
            detail,
            took_ms: millis(started.elapsed()),
        });
    }
    out
}

/// A KPI now against its value at `baseline_at_ms`: within its tolerance on the bad side.
pub async fn run_kpi(
    url: &str,
    kpi: &backstop_config::validation::Kpi,
    baseline_at_ms: Option<backstop_core::Millis>,
) -> (bool, String) {
    use backstop_config::validation::Better;
    let timeout = Duration::from_secs(10);
    let Some(at) = baseline_at_ms else {
        return (false, "no time to take the baseline at".into());
    };
    let before =
        match backstop_drivers::prometheus::value_at(url, &kpi.query, Some(at), timeout).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                return (
                    false,
                    format!(
                        "no value before the failure ({})",
                        backstop_core::format_ms(at)
                    ),
                );
            }
            Err(e) => return (false, e.to_string()),
        };
    let now = match backstop_drivers::prometheus::value_at(url, &kpi.query, None, timeout).await {
        Ok(Some(v)) => v,
        Ok(None) => return (false, "no value now".into()),
        Err(e) => return (false, e.to_string()),
    };
    let (ok, bound) = match kpi.better {
        Better::Higher => {
            let floor = before * (1.0 - kpi.tolerance);
            (now >= floor, format!("at least {floor:.4}"))
        }
        Better::Lower => {
            let ceiling = before * (1.0 + kpi.tolerance);
            (now <= ceiling, format!("at most {ceiling:.4}"))
        }
    };
    (
        ok,
        format!("{now:.4} now, {before:.4} before the failure ({bound} expected)"),
    )
}

/// A dependency answers: a TCP connect, or an HTTP GET with the expected status.
pub async fn run_probe(probe: &backstop_config::validation::Probe) -> (bool, String) {
    if let Some(addr) = &probe.tcp {
        return match tokio::time::timeout(probe.timeout, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(_)) => (true, format!("connected to {addr}")),
            Ok(Err(e)) => (false, format!("cannot connect to {addr}: {e}")),
            Err(_) => (
                false,
                format!(
                    "no connection to {addr} within {} ms",
                    probe.timeout.as_millis()
                ),
            ),
        };
    }
    let Some(url) = &probe.http else {
        return (false, "neither tcp nor http is given".into());
    };
    let client = match reqwest::Client::builder().timeout(probe.timeout).build() {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot make an HTTP client: {e}")),
    };
    match client.get(url).send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let ok = probe
                .status
                .map_or((200..300).contains(&status), |want| want == status);
            (ok, format!("GET {url}: {status}"))
        }
        Err(e) => (false, format!("GET {url}: {e}")),
    }
}

fn tail(text: &str) -> String {
    let t = text.trim();
    let start = t.char_indices().rev().nth(300).map_or(0, |(i, _)| i);
    t[start..].to_owned()
}

/// Runs a journey's steps in order: whether all held, and what was seen (each request's status
/// and latency, then the first failed assertion).
pub async fn run_journey(base: &str, journey: &Journey) -> (bool, String) {
    let client = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot make an HTTP client: {e}")),
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = Vec::new();
    for (i, step) in journey.steps.iter().enumerate() {
        match run_step(&client, base, step, &mut vars).await {
            Ok(line) => seen.push(line),
            Err(why) => {
                seen.push(format!("step {} `{}`: {why}", i + 1, step.request));
                return (false, seen.join("; "));
            }
        }
    }
    (true, seen.join("; "))
}

async fn run_step(
    client: &reqwest::Client,
    base: &str,
    step: &JourneyStep,
    vars: &mut BTreeMap<String, String>,
) -> Result<String, String> {
    let (method, path) = split_request(&step.request)?;
    let url = format!("{base}{}", fill(path, vars));
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = client.request(method, &url).timeout(step.timeout);
    for (name, value) in &step.headers {
        req = req.header(name, fill(value, vars));
    }
    if let Some(body) = &step.body {
        req = req.body(fill(body, vars));
    }
    let started = Instant::now();
    let answer = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let body = answer
        .text()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    let latency = started.elapsed();
    let line = format!("{} {status} in {} ms", step.request, latency.as_millis());
    let expect = &step.expect;
    match expect.status {
        Some(want) if want != status => {
            return Err(format!(
                "status {status}, expected {want} ({})",
                snippet(&body)
            ));
        }
        None if !(200..300).contains(&status) => {
            return Err(format!(
                "status {status}, expected 2xx ({})",
                snippet(&body)
            ));
        }
        _ => {}
    }
    for (name, want) in &expect.headers {
        let want = fill(want, vars);
        let got = headers.get(name).and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return Err(format!("header {name}: {got:?}, expected {want:?}"));
        }
    }
    if let Some(text) = &expect.body_contains {
        let text = fill(text, vars);
        if !body.contains(&text) {
            return Err(format!(
                "the body does not contain {text:?} ({})",
                snippet(&body)
            ));
        }
    }
    if let Some(max) = expect.max_latency
        && latency > max
    {
        return Err(format!(
            "took {} ms, at most {} ms expected",
            latency.as_millis(),
            max.as_millis()
        ));
    }
    if !expect.json.is_empty() || !step.save.is_empty() {
        let doc: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("the body is not JSON ({e}): {}", snippet(&body)))?;
        for (pointer, want) in &expect.json {
            let got = doc.pointer(pointer);
            if got != Some(want) {
                return Err(format!(
                    "{pointer} is {}, expected {want}",
                    got.map_or_else(|| "missing".to_owned(), ToString::to_string)
                ));
            }
        }
        for (name, pointer) in &step.save {
            let value = doc
                .pointer(pointer)
                .ok_or_else(|| format!("nothing at {pointer} to save as {name}"))?;
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.insert(name.clone(), text);
        }
    }
    Ok(line)
}

fn snippet(body: &str) -> String {
    let b = body.trim();
    match b.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &b[..i]),
        None => b.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::{get, post};

    async fn shop() -> String {
        let app = Router::new()
            .route(
                "/orders",
                post(|| async {
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(json!({"id": 42, "status": "new"})),
                    )
                }),
            )
            .route(
                "/orders/42",
                get(|| async {
                    (
                        [("x-shop", "yes")],
                        axum::Json(json!({"id": 42, "status": "paid"})),
                    )
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn journey(yaml: &str) -> Journey {
        serde_json::from_value(serde_yaml_value(yaml)).unwrap()
    }

    fn serde_yaml_value(text: &str) -> serde_json::Value {
        let config = format!(
            "services:\n  - name: s\n    owner: t\n    tier: 1\n    run: {{command: 'x --port {{port}}'}}\n    environments: [{{name: prod, listen: '127.0.0.1:1'}}]\n    validation:\n      journeys:\n{text}"
        );
        let parsed = backstop_config::parse(&config, "test.yaml").unwrap();
        serde_json::to_value(&parsed.services[0].validation.as_ref().unwrap().journeys[0]).unwrap()
    }

    #[tokio::test]
    async fn a_journey_carries_saved_values_and_checks_status_headers_json_and_latency() {
        let base = shop().await;
        let good = journey(
            "        - name: buy\n          steps:\n            - {request: POST /orders, expect: {status: 201}, save: {order: /id}}\n            - {request: 'GET /orders/{order}', expect: {headers: {x-shop: 'yes'}, json: {/status: paid}, body_contains: '\"id\":{order}'}}\n",
        );
        let (passed, detail) = run_journey(&base, &good).await;
        assert!(passed, "{detail}");
        assert!(detail.contains("POST /orders 201 in"), "{detail}");

        let wrong = journey(
            "        - name: buy\n          steps:\n            - {request: POST /orders, save: {order: /id}}\n            - {request: 'GET /orders/{order}', expect: {json: {/status: new}}}\n",
        );
        let (passed, detail) = run_journey(&base, &wrong).await;
        assert!(!passed);
        assert!(
            detail.contains("step 2 `GET /orders/{order}`: /status is \"paid\", expected \"new\""),
            "{detail}"
        );

        let slow = journey(
            "        - name: slow\n          steps:\n            - {request: GET /slow, expect: {max_latency: 50ms}}\n",
        );
        let (passed, detail) = run_journey(&base, &slow).await;
        assert!(
            !passed && detail.contains("at most 50 ms expected"),
            "{detail}"
        );

        let missing =
            journey("        - name: gone\n          steps:\n            - {request: GET /nope}\n");
        let (passed, detail) = run_journey(&base, &missing).await;
        assert!(
            !passed && detail.contains("status 404, expected 2xx"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn probes_connect_or_get_and_say_why_they_failed() {
        let base = shop().await;
        let addr = base.trim_start_matches("http://").to_owned();
        let probe = |tcp: Option<&str>, http: Option<String>, status: Option<u16>| {
            backstop_config::validation::Probe {
                name: "dep".into(),
                tcp: tcp.map(str::to_owned),
                http,
                status,
                timeout: Duration::from_secs(2),
            }
        };
        assert!(run_probe(&probe(Some(&addr), None, None)).await.0);
        let closed = backstop_drivers::process::free_port().unwrap();
        let (ok, why) = run_probe(&probe(Some(&format!("127.0.0.1:{closed}")), None, None)).await;
        assert!(!ok && why.contains("cannot connect"), "{why}");
        assert!(
            run_probe(&probe(None, Some(format!("{base}/orders/42")), None))
                .await
                .0
        );
        let (ok, why) = run_probe(&probe(None, Some(format!("{base}/nope")), None)).await;
        assert!(!ok && why.ends_with(": 404"), "{why}");
        assert!(
            run_probe(&probe(None, Some(format!("{base}/nope")), Some(404)))
                .await
                .0
        );
    }

    #[tokio::test]
    async fn a_kpi_must_be_back_within_its_tolerance_of_its_value_before_the_failure() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let value = Arc::new(AtomicU64::new(0.5f64.to_bits()));
        let served = value.clone();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let v = f64::from_bits(served.load(Ordering::SeqCst));
                async move {
                    format!("# TYPE shop_orders_per_request gauge\nshop_orders_per_request {v}\n")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let port = backstop_testkit::free_port();
        let prom = tokio::task::spawn_blocking(move || {
            backstop_testkit::servers::Prometheus::start(port, &[target])
        })
        .await
        .unwrap();
        let url = prom.url.clone();
        let now_is = |want: f64| {
            let url = url.clone();
            async move {
                for _ in 0..100 {
                    let got = backstop_drivers::prometheus::value_at(
                        &url,
                        "shop_orders_per_request",
                        None,
                        Duration::from_secs(5),
                    )
                    .await
                    .unwrap();
                    if got == Some(want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                panic!("prometheus never saw {want}");
            }
        };
        now_is(0.5).await;
        let before = backstop_core::clock::Clock::now_ms(&crate::SystemClock);
        value.store(0.2f64.to_bits(), Ordering::SeqCst);
        now_is(0.2).await;
        let kpi = backstop_config::validation::Kpi {
            name: "orders".into(),
            prometheus: None,
            query: "shop_orders_per_request".into(),
            better: backstop_config::validation::Better::Higher,
            tolerance: 0.1,
        };
        let (ok, detail) = run_kpi(&url, &kpi, Some(before)).await;
        assert!(!ok, "{detail}");
        assert!(
            detail.contains("0.2000 now, 0.5000 before the failure (at least 0.4500 expected)"),
            "{detail}"
        );
        let lower = backstop_config::validation::Kpi {
            better: backstop_config::validation::Better::Lower,
            ..kpi.clone()
        };
        assert!(
            run_kpi(&url, &lower, Some(before)).await.0,
            "a drop is fine when lower is better"
        );
        value.store(0.48f64.to_bits(), Ordering::SeqCst);
        now_is(0.48).await;
        let (ok, detail) = run_kpi(&url, &kpi, Some(before)).await;
        assert!(ok, "{detail}");
        let (ok, detail) = run_kpi(&url, &kpi, Some(0)).await;
        assert!(
            !ok && detail.contains("no value before the failure"),
            "{detail}"
        );
        drop(prom);
    }
}
