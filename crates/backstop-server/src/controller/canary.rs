//! Canary progress: start the new version, sample an interval, and advance, hold, pause, fail
//! or promote as [`backstop_core::rollout::next`] decides.

use anyhow::{Result, anyhow};
use backstop_config::NewVersionPartialFailure;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::{EnvironmentState, Phase, Rollout};
use backstop_core::partial::{self, Assessment, Probed};
use backstop_core::rollout::{Next, Observation, Step};
use backstop_core::snapshot::{EnvironmentChange, environment_change, environment_degraded};
use backstop_core::timeline::first_at;
use backstop_drivers::proxy::VersionStats;
use backstop_judge::{AnalysisMode, Decision, Interval, Judge};
use serde_json::{Value, json};

use super::Controller;
use super::journal::Record;
use super::signals::{delta, find, system_ms};

/// What the controller keeps between ticks for a progressing rollout. Rebuildable from the store.
/// How the reason of a rollout held for a broken baseline begins.
const STABLE_DOWN_HOLD: &str = "held: the stable instance";

pub(super) struct Watch {
    /// Behind a mutex only so the controller's futures are `Sync`; never contended.
    judge: std::sync::Mutex<Box<dyn Judge>>,
    /// Proxy counters at the end of the last interval: (baseline, canary).
    last: (Option<VersionStats>, Option<VersionStats>),
    next_sample_at: Millis,
    canary_started_at: Millis,
    first_request_seen: bool,
    /// Consecutive failed health checks of the canary (the per-rollout breaker).
    failed_health_checks: u32,
    /// The partial failure the last check found, when it counted as failed.
    partial: Option<String>,
    /// A shadow judge's verdict is recorded already (read from the events once, at start).
    shadow_heard: bool,
    /// The stable version's traffic before the rollout (what "degraded" is measured against).
    before: Option<backstop_core::snapshot::Baseline>,
    /// Since when the environment is degraded (the stable version far worse than before).
    degraded_since: Option<Millis>,
    /// The arms' instance logs and the service's error pattern, when logs are a signal.
    logs: Option<LogWatch>,
}

/// Where the error lines of each arm are counted per interval (`signals.logs`).
enum LogWatch {
    /// The arms' captured instance logs (every instance of each version).
    Captured {
        pattern: regex::Regex,
        baseline: Vec<backstop_drivers::logs::LogTail>,
        canary: Vec<backstop_drivers::logs::LogTail>,
    },
    /// A Loki-compatible store, asked for each version's lines of the last interval.
    Loki {
        source: Box<backstop_drivers::loki::LokiSource>,
        window: std::time::Duration,
        baseline: String,
        canary: String,
    },
}

impl LogWatch {
    /// The lines matched since the last interval. A captured log that cannot be read counts
    /// none; a store that does not answer gives no count this interval (both said in the
    /// daemon's log).
    async fn count(&mut self) -> Option<backstop_judge::LogLines> {
        match self {
            LogWatch::Captured {
                pattern,
                baseline,
                canary,
            } => {
                let count = |tails: &mut Vec<backstop_drivers::logs::LogTail>| {
                    tails
                        .iter_mut()
                        .map(|t| {
                            t.count_new(pattern).unwrap_or_else(|e| {
                                tracing::warn!(error = %e, "Could not read an instance log; its error lines count as none this interval.");
                                0
                            })
                        })
                        .sum()
                };
                Some(backstop_judge::LogLines {
                    baseline: count(baseline),
                    canary: count(canary),
                })
            }
            LogWatch::Loki {
                source,
                window,
                baseline,
                canary,
            } => match source.error_lines(*window).await {
                Ok(lines) => Some(backstop_judge::LogLines {
                    baseline: lines.get(baseline.as_str()).copied().unwrap_or(0),
                    canary: lines.get(canary.as_str()).copied().unwrap_or(0),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "The log store did not answer; no error-log count this interval.");
                    None
                }
            },
        }
    }
}

/// One analysis interval as measured.
struct Measured {
    judge: Decision,
    report: Value,
    /// When users first reached the new version, if it was in this interval.
    first_request: Option<Millis>,
    environment: Option<EnvironmentChange>,
    degraded: bool,
}

/// The longest one journey against a canary may take, whatever its steps' timeouts.
const SMOKE_JOURNEY_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

impl Controller {
    fn steps_for(&self, service: &str) -> Result<Vec<Step>> {
        // Parsing gives blue-green and all-at-once their one step to 100 %.
        Ok(self.ctx.service(service)?.rollout.steps.clone())
    }

    pub(super) async fn start_canary(&mut self, mut r: Rollout) -> Result<()> {
        let ctx = self.ctx.clone();
        let release = ctx.store.release(&r.to_release_id).await?;
        if r.canary_instance_id.is_none() {
            // Journal the instance id before the process exists, so a restart adopts it.
            r.canary_instance_id = Some(format!(
                "{}-{}-{}-{}",
                r.service,
                r.env,
                release.version,
                &r.id[r.id.len() - 6..]
            ));
            r.updated_at_ms = ctx.clock.now_ms();
            ctx.store.update_rollout(&r).await?;
        }
        let canary_id = r.canary_instance_id.clone().unwrap_or_default();
        if let Err(e) = ctx.ensure_instance(&canary_id, &release, &r.env).await {
            let reason = format!("the new version did not start: {e:#}");
            return self
                .fail(r, reason, "deploy", json!({"error": format!("{e:#}")}))
                .await;
        }
        self.record(Record::of(&r).event(EventKind::CanaryHealthy, json!({"instance": canary_id})))
            .await?;
        let env = ctx.store.environment(&r.service, &r.env).await?;
        if env
            .as_ref()
            .and_then(|e| e.lkg_release_id.as_ref())
            .is_none()
        {
            // First deployment: nothing to compare with, so it simply becomes the baseline.
            return self
                .promote(
                    r,
                    "controller",
                    "first deployment of this environment: it becomes the baseline",
                )
                .await;
        }
        if let Some((journey, detail)) = self.smoke_canary(&r, &canary_id).await? {
            let reason = format!(
                "journey {journey} failed against the canary before it took traffic: {detail}"
            );
            return self
                .fail(
                    r,
                    reason,
                    "smoke",
                    json!({"journey": journey, "detail": detail, "instance": canary_id}),
                )
                .await;
        }
        let steps = self.steps_for(&r.service)?;
        let now = ctx.clock.now_ms();
        r.phase = Phase::Progressing;
        r.step_index = 0;
        r.step_started_at_ms = Some(now);
        r.canary_weight = steps.first().map_or(100.0, |s| s.weight);
        r.updated_at_ms = now;
        ctx.store.update_rollout(&r).await?;
        ctx.apply_routes(&r.service, &r.env).await?;
        self.record(
            Record::of(&r)
                .event(EventKind::CanaryStarted, json!({"weight": r.canary_weight}))
                .audit(
                    "controller",
                    EventKind::RolloutProgressing,
                    "controller",
                    json!({"weight": r.canary_weight, "step": 0}),
                ),
        )
        .await?;
        let watch = self.new_watch(&r, now).await?;
        self.watches.insert(r.id.clone(), watch);
        Ok(())
    }

    /// Sends the service's journeys marked for canaries (practice 3.1) straight to the canary
    /// instance, before it takes any traffic: the first failing one and why, if any. Each
    /// journey is an event either way. Skipped (with an event saying so) when the canary runs
    /// on an agent's host, which this daemon cannot reach directly.
    async fn smoke_canary(&self, r: &Rollout, canary_id: &str) -> Result<Option<(String, String)>> {
        let ctx = &self.ctx;
        let service = ctx.service(&r.service)?;
        let journeys: Vec<_> = service
            .validation
            .as_ref()
            .map(|v| v.journeys.iter().filter(|j| j.canary).collect())
            .unwrap_or_default();
        if journeys.is_empty() {
            return Ok(None);
        }
        if let Some(agent) = service.environment(&r.env).and_then(|e| e.agent.as_deref()) {
            self.record(Record::of(r).event(
                EventKind::CanarySmoke,
                json!({"skipped": format!("the canary runs on agent {agent}'s host: journeys reach it only through the environment's address")}),
            ))
            .await?;
            return Ok(None);
        }
        let port = ctx.store.instance(canary_id).await?.port;
        let base = format!("http://127.0.0.1:{port}");
        for journey in journeys {
            // The controller drives every rollout from one loop: a canary that hangs must not
            // hold the others up for long.
            let (passed, detail) = tokio::time::timeout(
                SMOKE_JOURNEY_LIMIT,
                crate::validation::run_journey(&base, journey),
            )
            .await
            .unwrap_or_else(|_| {
                (
                    false,
                    format!("did not finish within {} s", SMOKE_JOURNEY_LIMIT.as_secs()),
                )
            });
            self.record(Record::of(r).event(
                EventKind::CanarySmoke,
                json!({"journey": journey.name, "passed": passed, "detail": detail}),
            ))
            .await?;
            if !passed {
                return Ok(Some((journey.name.clone(), detail)));
            }
        }
        Ok(None)
    }

    /// Builds the judge and replays the intervals stored so far (after a restart).
    async fn new_watch(&self, r: &Rollout, now: Millis) -> Result<Watch> {
        let ctx = &self.ctx;
        let svc = ctx.service(&r.service)?;
        let settings = &svc.analysis;
        let mut judge = backstop_judge::build(settings);
        for interval in ctx.store.intervals(&r.id).await? {
            judge.observe(&interval);
        }
        let events = ctx.store.events(&r.id).await?;
        let canary_started_at = first_at(&events, EventKind::CanaryStarted).unwrap_or(now);
        let first_request_seen = first_at(&events, EventKind::CanaryFirstRequest).is_some();
        let (baseline, canary) = self.arm_versions(r).await?;
        if let Some(source) = ctx
            .drivers
            .signal_sources
            .get(&(r.service.clone(), r.env.clone()))
            && first_at(&events, EventKind::AnalysisSource).is_none()
        {
            // Where the judged numbers come from, for whoever reads the rollout later.
            self.record(Record::of(r).event(EventKind::AnalysisSource, source.describe()))
                .await?;
        }
        let stats = self.stats_or_event(r).await?;
        let before = ctx
            .store
            .rollout_safeguards(&r.id)
            .await?
            .and_then(|s| s.baseline);
        // A degradation still open when the daemon stopped is still open.
        let degraded_since = events
            .iter()
            .rev()
            .find(|e| {
                e.kind == EventKind::EnvironmentDegraded
                    || e.kind == EventKind::EnvironmentRecovered
            })
            .filter(|e| e.kind == EventKind::EnvironmentDegraded)
            .map(|e| e.at_ms);
        let remote = svc
            .environment(&r.env)
            .and_then(|e| e.agent.as_deref())
            .is_some();
        let logs = match &svc.signals.logs {
            Some(l) if l.loki.is_some() => {
                let loki = l.loki.as_ref().ok_or_else(|| anyhow!("no loki"))?;
                let render =
                    |q: &str| backstop_config::PrometheusSignals::render(q, &r.service, &r.env);
                Some(LogWatch::Loki {
                    source: Box::new(backstop_drivers::loki::LokiSource::new(
                        backstop_drivers::loki::LokiConfig {
                            url: loki.url.clone(),
                            selector: render(&loki.selector),
                            pattern: l.pattern.clone(),
                            version_label: loki.version_label.clone(),
                            tenant: loki.tenant.clone(),
                            timeout: loki.timeout,
                        },
                    )?),
                    window: settings.interval,
                    baseline: baseline.clone(),
                    canary: canary.clone(),
                })
            }
            Some(_) if remote => {
                // The instances' output is on their agent's host: no log lines to count here.
                tracing::warn!(service = %r.service, env = %r.env, "signals.logs: the instances run on another host's agent, whose logs are not read; the logs signal sees nothing there.");
                None
            }
            Some(l) => {
                let stable = ctx
                    .store
                    .environment(&r.service, &r.env)
                    .await?
                    .and_then(|e| e.stable_instance_id);
                let tail = |id: Option<String>| -> Result<Vec<_>> {
                    Ok(match id {
                        Some(id) => ctx
                            .replica_ids(&r.service, &id)?
                            .iter()
                            .map(|i| backstop_drivers::logs::LogTail::from_end(ctx.log_path(i)))
                            .collect(),
                        None => Vec::new(),
                    })
                };
                Some(LogWatch::Captured {
                    pattern: regex::Regex::new(&l.pattern)?,
                    baseline: tail(stable)?,
                    canary: tail(r.canary_instance_id.clone())?,
                })
            }
            None => None,
        };
        Ok(Watch {
            logs,
            judge: std::sync::Mutex::new(judge),
            last: (find(&stats, &baseline), find(&stats, &canary)),
            next_sample_at: now + settings.interval.as_millis() as Millis,
            canary_started_at,
            first_request_seen,
            failed_health_checks: 0,
            partial: None,
            shadow_heard: first_at(&events, EventKind::JudgeShadowVerdict).is_some(),
            before,
            degraded_since,
        })
    }

    /// Takes one interval of counts when due, asks the judge, and acts on what
    /// [`backstop_core::rollout::next`] decides.
    pub(super) async fn sample(&mut self, mut r: Rollout) -> Result<()> {
        let ctx = self.ctx.clone();
        let now = ctx.clock.now_ms();
        if !self.watches.contains_key(&r.id) {
            let watch = self.new_watch(&r, now).await?;
            self.watches.insert(r.id.clone(), watch);
            return Ok(());
        }
        // Ticks come every 200 ms; the counters (a router socket, Prometheus queries) are read
        // only when an interval is due.
        if self
            .watches
            .get(&r.id)
            .is_some_and(|w| now < w.next_sample_at)
        {
            return Ok(());
        }
        let (baseline_v, canary_v) = self.arm_versions(&r).await?;
        let measured = self.measure(&r, &baseline_v, &canary_v, now).await?;
        if let Some(at) = measured.first_request {
            self.record(
                Record::of(&r)
                    .event(EventKind::CanaryFirstRequest, json!({"version": canary_v}))
                    .at(at),
            )
            .await?;
        }
        match &measured.environment {
            Some(EnvironmentChange::Degraded(why)) => {
                let detail =
                    json!({"reason": why, "stable_version": baseline_v, "step": r.step_index});
                let summary = format!(
                    "{} in {} holds: {why}; the new version is not to blame so far, a person should look",
                    r.to_release_id, r.env
                );
                self.record(
                    Record::of(&r)
                        .event(EventKind::EnvironmentDegraded, detail.clone())
                        .audit(
                            "controller",
                            EventKind::RolloutHeld,
                            "environment",
                            detail.clone(),
                        )
                        .notify(EventKind::EnvironmentDegraded, summary, detail),
                )
                .await?;
            }
            Some(EnvironmentChange::Recovered { held_ms }) => {
                let detail = json!({"held_ms": held_ms, "step": r.step_index});
                let summary = format!(
                    "{} in {} goes on: the stable version is back to its usual figures",
                    r.to_release_id, r.env
                );
                self.record(
                    Record::of(&r)
                        .event(EventKind::EnvironmentRecovered, detail.clone())
                        .notify(EventKind::EnvironmentRecovered, summary, detail),
                )
                .await?;
            }
            None => {}
        }
        let failed_health_checks = self.check_canary_health(&r).await?;
        if ctx.service(&r.service)?.partial_failures.new_version
            == NewVersionPartialFailure::Rollback
            && let Some((reason, evidence)) = self.canary_outlier(&r, &canary_v).await?
        {
            self.record(Record::of(&r).event(EventKind::InstanceOutlier, evidence.clone()))
                .await?;
            return self.fail(r, reason, "breaker", evidence).await;
        }
        let partial = self.watches.get(&r.id).and_then(|w| w.partial.clone());
        // A baseline that is down (supervision is restarting the stable instance) is no
        // baseline: the canary is neither judged against it nor advanced.
        let stable_down = ctx.stable_down(&r.service, &r.env);
        let steps = self.steps_for(&r.service)?;
        let health_check_limit = ctx.service(&r.service)?.breaker.failed_checks;
        let observed = |judge: Decision| Observation {
            steps: &steps,
            step_index: usize::try_from(r.step_index).unwrap_or(0),
            step_started_at: r.step_started_at_ms.unwrap_or(now),
            judge,
            degraded: measured.degraded,
            baseline_down: stable_down.is_some(),
            failed_health_checks,
            health_check_limit,
            now,
        };
        let mut next = backstop_core::rollout::next(&observed(measured.judge));
        if ctx.service(&r.service)?.analysis.mode == AnalysisMode::Shadow
            && measured.judge != Decision::Continue
        {
            // A shadow judge is heard, once per rollout, not obeyed.
            let heard = self.watches.get(&r.id).is_some_and(|w| w.shadow_heard);
            if let (false, Next::Fail { reason } | Next::Pause { reason }) = (heard, &next) {
                self.shadow_verdict(&r, measured.judge, reason, &measured.report)
                    .await?;
                if let Some(w) = self.watches.get_mut(&r.id) {
                    w.shadow_heard = true;
                }
            }
            next = backstop_core::rollout::next(&observed(Decision::Continue));
        }
        if stable_down.is_none()
            && r.reason
                .as_deref()
                .is_some_and(|why| why.starts_with(STABLE_DOWN_HOLD))
        {
            r.reason = None;
            r.updated_at_ms = now;
            ctx.store.update_rollout(&r).await?;
        }
        let report = measured.report;
        match next {
            Next::Wait => Ok(()),
            Next::Hold => {
                // Held: the step's time starts again once the environment is healthy.
                r.step_started_at_ms = Some(now);
                r.updated_at_ms = now;
                if let Some((instance, sup)) = stable_down {
                    let why = format!(
                        "{STABLE_DOWN_HOLD} {instance} is unhealthy ({}); the canary is not judged against it",
                        sup.watch
                            .last_problem
                            .as_deref()
                            .unwrap_or("failing its checks")
                    );
                    if r.reason.as_deref() != Some(why.as_str()) {
                        r.reason = Some(why.clone());
                        ctx.store.update_rollout(&r).await?;
                        self.record(
                            Record::of(&r)
                                .event(
                                    EventKind::RolloutHeld,
                                    json!({"reason": why, "instance": instance}),
                                )
                                .notify(
                                    EventKind::RolloutHeld,
                                    why.clone(),
                                    json!({"instance": instance}),
                                ),
                        )
                        .await?;
                        return Ok(());
                    }
                }
                ctx.store.update_rollout(&r).await?;
                Ok(())
            }
            Next::Advance { index, weight } => {
                r.step_index = index as i64;
                r.step_started_at_ms = Some(now);
                r.canary_weight = weight;
                r.updated_at_ms = now;
                ctx.store.update_rollout(&r).await?;
                ctx.apply_routes(&r.service, &r.env).await?;
                self.record(
                    Record::of(&r)
                        .event(
                            EventKind::StepAdvanced,
                            json!({"step": index, "weight": weight}),
                        )
                        .audit(
                            "controller",
                            EventKind::RolloutStep,
                            "schedule",
                            json!({"step": index, "weight": weight, "judge": report}),
                        ),
                )
                .await
            }
            Next::Promote => {
                r.verdict = Some(report);
                self.promote(r, "controller", "every step held without a failing verdict")
                    .await
            }
            Next::Break { reason } => {
                let reason = match partial {
                    Some(which) => format!(
                        "partial failure ({}) of the new version: {which}; {reason}",
                        ctx.service(&r.service)?.partial_failures.severity
                    ),
                    None => reason,
                };
                self.fail(r, reason, "breaker", report).await
            }
            Next::Fail { reason } => self.judged_bad(r, reason, report).await,
            Next::Pause { reason } => {
                r.phase = Phase::Paused;
                r.reason = Some(reason.clone());
                r.verdict = Some(report.clone());
                r.updated_at_ms = now;
                ctx.store.update_rollout(&r).await?;
                self.record(
                    Record::of(&r)
                        .event(EventKind::JudgeInconclusive, json!({"reason": reason}))
                        .audit("controller", EventKind::RolloutPaused, "judge", report),
                )
                .await
            }
        }
    }

    /// Reads the counters, stores the interval, asks the judge, and updates the watch: when
    /// users first came, whether the environment turned degraded or healthy again.
    async fn measure(
        &mut self,
        r: &Rollout,
        baseline_v: &str,
        canary_v: &str,
        now: Millis,
    ) -> Result<Measured> {
        let ctx = self.ctx.clone();
        let interval_ms = ctx.service(&r.service)?.analysis.interval.as_millis() as Millis;
        let stats = self.stats_or_event(r).await?;
        let log_lines = match self.watches.get_mut(&r.id).and_then(|w| w.logs.as_mut()) {
            Some(logs) => logs.count().await,
            None => None,
        };
        let watch = self
            .watches
            .get_mut(&r.id)
            .ok_or_else(|| anyhow!("watch vanished"))?;
        let cur = (find(&stats, baseline_v), find(&stats, canary_v));
        let interval = Interval {
            t: (now - watch.canary_started_at) as f64 / 1000.0,
            baseline: delta(watch.last.0.as_ref(), cur.0.as_ref()),
            canary: delta(watch.last.1.as_ref(), cur.1.as_ref()),
            log_lines,
        };
        ctx.store.append_interval(&r.id, &interval).await?;
        let (judge, report) = {
            let mut judge = watch
                .judge
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let decision = judge.observe(&interval);
            (decision, judge.report())
        };
        watch.last = cur.clone();
        watch.next_sample_at = now + interval_ms;
        // The proxy knows when the canary's first request came; a source that only has counters
        // (Prometheus) tells the interval in which requests first showed.
        let first_request = if watch.first_request_seen {
            None
        } else {
            cur.1
                .as_ref()
                .and_then(|c| c.first_request_at)
                .map(system_ms)
                .or_else(|| (interval.canary.requests > 0).then_some(now))
        };
        if first_request.is_some() {
            watch.first_request_seen = true;
        }
        // A shared degradation (the stable version far worse than before the rollout) is the
        // environment's, not the new version's: the judge compares the arms and does not fail
        // for it, but the rollout must not advance through it either. It holds, and people are
        // told; the judge keeps watching (a canary worse than the stable version still fails).
        let p99 = interval
            .baseline
            .latency_le_ms
            .as_deref()
            .and_then(|b| backstop_judge::hist::quantile(0.99, b));
        let degraded_now = watch.before.as_ref().and_then(|before| {
            environment_degraded(
                before,
                interval.baseline.requests,
                interval.baseline.errors,
                p99,
            )
        });
        let environment = environment_change(
            degraded_now,
            watch.degraded_since,
            interval.baseline.requests,
            now,
        );
        match environment {
            Some(EnvironmentChange::Degraded(_)) => watch.degraded_since = Some(now),
            Some(EnvironmentChange::Recovered { .. }) => watch.degraded_since = None,
            None => {}
        }
        Ok(Measured {
            judge,
            report,
            first_request,
            environment,
            degraded: watch.degraded_since.is_some(),
        })
    }

    pub(super) async fn promote(&mut self, mut r: Rollout, actor: &str, why: &str) -> Result<()> {
        let ctx = self.ctx.clone();
        let now = ctx.clock.now_ms();
        let old = ctx.store.environment(&r.service, &r.env).await?;
        let env = EnvironmentState {
            service: r.service.clone(),
            env: r.env.clone(),
            lkg_release_id: Some(r.to_release_id.clone()),
            stable_instance_id: r.canary_instance_id.clone(),
            previous_lkg_release_id: old.as_ref().and_then(|o| o.lkg_release_id.clone()),
        };
        r.phase = Phase::Promoted;
        r.canary_weight = 100.0;
        r.reason = Some(why.to_string());
        r.updated_at_ms = now;
        ctx.store.commit_promotion(&r, &env).await?;
        ctx.apply_routes(&r.service, &r.env).await?;
        self.watches.remove(&r.id);
        tracing::info!(rollout = %r.id, release = %r.to_release_id, "Rollout promoted; the new version is now the last known good.");
        self.record(
            Record::of(&r)
                .event(
                    EventKind::RolloutPromoted,
                    json!({"release": r.to_release_id}),
                )
                .audit(
                    actor,
                    EventKind::RolloutPromoted,
                    if actor == "controller" {
                        "controller"
                    } else {
                        "manual"
                    },
                    json!({
                        "release": r.to_release_id, "reason": why, "judge": r.verdict,
                    }),
                )
                .notify(
                    EventKind::RolloutPromoted,
                    format!("{} promoted in {}: {why}", r.to_release_id, r.env),
                    json!({"release": r.to_release_id}),
                ),
        )
        .await?;
        if let Some(previous) = old
            .and_then(|o| o.stable_instance_id)
            .filter(|p| Some(p) != r.canary_instance_id.as_ref())
        {
            self.keep_warm(&r.service, previous)?;
        }
        Ok(())
    }

    /// Checks every instance of the new version once (health check and probes); returns how
    /// many checks in a row it failed. A partial failure (some, at least
    /// `partial_failures.unhealthy`, of its instances unhealthy) counts as a failed check when
    /// the policy rolls back, and is kept in the watch to name it; with `replace`, those
    /// instances are restarted instead.
    async fn check_canary_health(&mut self, r: &Rollout) -> Result<u32> {
        let ctx = self.ctx.clone();
        let svc = ctx.service(&r.service)?;
        let Some(id) = &r.canary_instance_id else {
            return Ok(0);
        };
        let release = ctx.store.release(&r.to_release_id).await?;
        let instances = super::supervise::instances_of(&ctx, &r.service, id).await?;
        let mut probed = Vec::with_capacity(instances.len());
        for inst in &instances {
            // Script deployers report health through their own health script at start.
            let problem = if svc.run.command_scripts().is_some() {
                None
            } else {
                ctx.instance_health(svc, &release, inst)
                    .await
                    .err()
                    .map(|e| format!("{e:#}"))
            };
            probed.push(Probed {
                instance: inst.id.clone(),
                problem,
            });
        }
        let policy = &svc.partial_failures;
        let assessment = partial::assess(&probed, policy.unhealthy);
        let failed = match &assessment {
            Assessment::Healthy => false,
            Assessment::All { .. } => true,
            Assessment::Partial { .. }
                if policy.new_version == NewVersionPartialFailure::Rollback =>
            {
                true
            }
            Assessment::Partial { unhealthy, .. } => {
                self.replace_canary_instances(r, &release, &instances, unhealthy, &assessment)
                    .await?;
                false
            }
        };
        let Some(watch) = self.watches.get_mut(&r.id) else {
            return Ok(0);
        };
        watch.partial = match &assessment {
            Assessment::Partial { .. } if failed => Some(assessment.summary()),
            _ => None,
        };
        watch.failed_health_checks = if failed {
            watch.failed_health_checks + 1
        } else {
            0
        };
        Ok(watch.failed_health_checks)
    }

    /// `partial_failures.new_version: replace`: restarts the new version's unhealthy instances
    /// (a partial failure recorded, not a verdict on the release).
    async fn replace_canary_instances(
        &mut self,
        r: &Rollout,
        release: &backstop_core::model::Release,
        instances: &[backstop_core::model::InstanceRecord],
        unhealthy: &[Probed],
        assessment: &Assessment,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        let severity = ctx.service(&r.service)?.partial_failures.severity;
        let detail = json!({
            "role": "canary", "release": r.to_release_id, "severity": severity,
            "unhealthy": unhealthy, "instances": instances.len(), "action": "replace",
        });
        self.record(
            Record::of(r)
                .event(EventKind::PartialFailure, detail.clone())
                .notify(
                    EventKind::PartialFailure,
                    format!(
                        "partial failure ({severity}) of {} in {}: {}; replacing them",
                        r.to_release_id,
                        r.env,
                        assessment.summary()
                    ),
                    detail,
                ),
        )
        .await?;
        for p in unhealthy {
            if let Some(inst) = instances.iter().find(|i| i.id == p.instance) {
                ctx.eject(inst).await?;
            }
            ctx.stop_one(&p.instance).await?;
            if let Err(e) = ctx.ensure_one(&p.instance, release, &r.env).await {
                tracing::warn!(instance = %p.instance, error = format!("{e:#}"), "A replaced instance of the new version did not come back.");
            }
        }
        ctx.apply_routes(&r.service, &r.env).await?;
        Ok(())
    }

    /// The new version's instance whose errors stand out from its siblings', as the reason
    /// and evidence of a partial failure, once the test finds one.
    async fn canary_outlier(
        &mut self,
        r: &Rollout,
        version: &str,
    ) -> Result<Option<(String, Value)>> {
        let Some(id) = &r.canary_instance_id else {
            return Ok(None);
        };
        let instances: Vec<_> = super::supervise::instances_of(&self.ctx, &r.service, id)
            .await?
            .into_iter()
            .filter(|i| i.state == backstop_core::model::InstanceState::Running)
            .collect();
        let Some((inst, outlier)) = self.outlier_of(&instances, version).await? else {
            return Ok(None);
        };
        let severity = self.ctx.service(&r.service)?.partial_failures.severity;
        let reason = format!(
            "partial failure ({severity}) of the new version: instance {} of {} errs apart from the other {} ({} of {} requests against {} of {}, p = {:.2e})",
            inst.id,
            instances.len(),
            instances.len() - 1,
            outlier.errors,
            outlier.requests,
            outlier.others_errors,
            outlier.others_requests,
            outlier.p_value
        );
        Ok(Some((
            reason,
            json!({"partial_failure": {"severity": severity, "outlier": outlier, "instances": instances.len()}}),
        )))
    }
}
