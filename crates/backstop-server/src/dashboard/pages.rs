//! The pages. Each reads what it shows from the API with the signed-in person's token
//! ([`Signed::get`]) and renders it; nothing here decides anything.

use std::fmt::Write as _;

use axum::extract::{Path, Query};
use axum::response::Response;
use backstop_api::audit::AuditVerification;
use backstop_api::rollouts::RolloutDetail;
use backstop_api::services::ServiceView;
use backstop_core::event::EventKind;
use backstop_core::explain::Explanation;
use backstop_core::model::{Phase, Recovery, RecoveryStatus, Rollout};
use backstop_judge::Interval;
use serde::Deserialize;
use serde_json::Value;

use super::chart::{Marker, Series, line_chart};
use super::html::{self, badge, dur, esc, or_dash, seg, table, time};
use super::{Failure, Signed};

/// `?done=ACTION`: the action a redirect came back from, said on the page.
#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

/// A JSON value as text for a cell: strings bare, numbers as written, null as a dash.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn rollout_link(id: &str) -> String {
    format!("<a href=\"/rollouts/{}\">{}</a>", seg(id), esc(id))
}

fn recovery_link(id: &str) -> String {
    format!("<a href=\"/recoveries/{}\">{}</a>", seg(id), esc(id))
}

fn active(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Pending | Phase::Progressing | Phase::Paused | Phase::Recovering
    )
}

fn rollout_rows(list: &[Rollout]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            vec![
                rollout_link(&r.id),
                format!("{} / {}", esc(&r.service), esc(&r.env)),
                format!(
                    "{} → {}",
                    or_dash(r.from_release_id.as_deref()),
                    esc(&r.to_release_id)
                ),
                badge(r.phase.as_str()),
                format!("{}%", r.canary_weight),
                time(r.created_at_ms),
                or_dash(r.reason.as_deref()),
            ]
        })
        .collect()
}

const ROLLOUT_HEAD: &[&str] = &[
    "Rollout",
    "Service / env",
    "Release",
    "Phase",
    "Canary",
    "Started",
    "Reason",
];

fn recovery_rows(list: &[Recovery]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            vec![
                recovery_link(&r.id),
                format!("{} / {}", esc(&r.service), esc(&r.env)),
                esc(&r.trigger),
                badge(r.status.as_str()),
                time(r.created_at_ms),
                r.finished_at_ms
                    .map_or_else(|| "–".into(), |f| dur(f - r.created_at_ms)),
                esc(&r.reason),
            ]
        })
        .collect()
}

pub async fn overview(signed: Signed) -> Response {
    match overview_body(&signed).await {
        Ok(body) => {
            let mut frame = signed.frame("Overview");
            frame.refresh_s = Some(10);
            html::page(&frame, &body)
        }
        Err(f) => signed.failed(f),
    }
}

/// The stable instances' state: a badge, and how many of several are healthy.
fn instances_cell(health: &backstop_api::services::StableHealth) -> String {
    let n = health.instances.len();
    if n < 2 {
        return badge(&health.status);
    }
    let healthy = health.instances.iter().filter(|i| i.healthy).count();
    format!(
        "{}<br><small>{healthy} of {n} instances healthy</small>",
        badge(&health.status)
    )
}

async fn overview_body(signed: &Signed) -> Result<String, Failure> {
    let services: Vec<ServiceView> = signed.get("/api/v1/services").await?;
    let rollouts: Vec<Rollout> = signed.get("/api/v1/rollouts?limit=20").await?;
    let recoveries: Vec<Recovery> = signed.get("/api/v1/recoveries?limit=10").await?;
    let breakers: Vec<Value> = signed.get("/api/v1/breakers").await?;
    let freezes: Value = signed.get("/api/v1/freezes").await?;
    let incidents: Vec<Value> = signed.get("/api/v1/incidents").await?;

    let mut body = String::new();
    // What runs where.
    let rows: Vec<Vec<String>> = services
        .iter()
        .flat_map(|s| {
            s.environments.iter().map(move |e| {
                let state = e.state.as_ref();
                vec![
                    format!(
                        "<strong>{}</strong><br><small>tier {} · {}</small>",
                        esc(&s.name),
                        s.tier,
                        esc(&s.owner)
                    ),
                    esc(&e.name),
                    or_dash(state.and_then(|st| st.lkg_release_id.as_deref())),
                    e.active_rollout
                        .as_deref()
                        .map_or_else(|| "–".into(), rollout_link),
                    instances_cell(&e.health),
                    format!(
                        "<a class=\"button danger\" href=\"/environments/{}/{}/rollback\">Roll back…</a>",
                        seg(&s.name),
                        seg(&e.name)
                    ),
                ]
            })
        })
        .collect();
    body.push_str("<section><h2>What runs where</h2>");
    body.push_str(&table(
        "services",
        &[
            "Service",
            "Environment",
            "Last known good",
            "Active rollout",
            "Stable instances",
            "",
        ],
        &rows,
        "No services are declared.",
    ));
    body.push_str("</section>");

    let running: Vec<Rollout> = rollouts
        .iter()
        .filter(|r| active(r.phase))
        .cloned()
        .collect();
    body.push_str("<section><h2>Active rollouts</h2>");
    body.push_str(&table(
        "rollouts active",
        ROLLOUT_HEAD,
        &rollout_rows(&running),
        "Nothing is rolling out.",
    ));
    body.push_str("</section>");

    let open_breakers: Vec<Vec<String>> = breakers
        .iter()
        .filter(|b| b["reset_at_ms"].is_null())
        .map(|b| {
            vec![
                text(&b["id"]),
                text(&b["scope"]),
                b["tripped_at_ms"].as_i64().map_or_else(|| "–".into(), time),
                b["failures"].as_array().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect();
    body.push_str("<section><h2>Open circuit breakers</h2>");
    body.push_str(&table(
        "breakers",
        &["Breaker", "Scope", "Tripped", "Failures"],
        &open_breakers,
        "No breaker is open.",
    ));
    body.push_str("</section>");

    let mut freeze_rows: Vec<Vec<String>> = freezes["manual"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["ended_at_ms"].is_null())
        .map(|f| {
            vec![
                text(&f["service"]),
                text(&f["env"]),
                text(&f["reason"]),
                text(&f["actor"]),
                f["until_ms"]
                    .as_i64()
                    .map_or_else(|| "until ended".into(), time),
            ]
        })
        .collect();
    freeze_rows.extend(
        freezes["scheduled"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["active"].as_bool() == Some(true))
            .map(|f| {
                vec![
                    text(&f["service"]),
                    text(&f["env"]),
                    text(&f["name"]),
                    "schedule".into(),
                    "–".into(),
                ]
            }),
    );
    body.push_str("<section><h2>Freezes in force</h2>");
    body.push_str(&table(
        "freezes",
        &["Service", "Environment", "Reason", "By", "Until"],
        &freeze_rows,
        "No freeze is in force.",
    ));
    body.push_str("</section>");

    let open_incidents: Vec<Vec<String>> = incidents
        .iter()
        .filter(|i| i["status"] != "resolved" && i["status"] != "closed")
        .map(incident_row)
        .collect();
    body.push_str("<section><h2>Open incidents</h2>");
    body.push_str(&table(
        "incidents",
        INCIDENT_HEAD,
        &open_incidents,
        "No incident is open.",
    ));
    body.push_str("</section>");

    body.push_str("<section><h2>Recent rollouts</h2>");
    body.push_str(&table(
        "rollouts",
        ROLLOUT_HEAD,
        &rollout_rows(&rollouts),
        "No rollout yet.",
    ));
    body.push_str("</section><section><h2>Recent recoveries</h2>");
    body.push_str(&table(
        "recoveries",
        RECOVERY_HEAD,
        &recovery_rows(&recoveries),
        "No recovery yet.",
    ));
    body.push_str("</section>");
    Ok(body)
}

const RECOVERY_HEAD: &[&str] = &[
    "Recovery",
    "Service / env",
    "Trigger",
    "Status",
    "Started",
    "Took",
    "Reason",
];

pub async fn rollouts(signed: Signed) -> Response {
    match signed
        .get::<Vec<Rollout>>("/api/v1/rollouts?limit=200")
        .await
    {
        Ok(list) => html::page(
            &signed.frame("Rollouts"),
            &table(
                "rollouts",
                ROLLOUT_HEAD,
                &rollout_rows(&list),
                "No rollout yet.",
            ),
        ),
        Err(f) => signed.failed(f),
    }
}

/// What a `?done=` says after an action came back.
fn done_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "promote" => Some("Promoted."),
        "abort" => Some("Aborted: the last known good is being restored."),
        "acknowledge" => Some("Acknowledged: the rollout waits for your promote or abort."),
        "resume" => Some("Resumed."),
        "rollback" => Some("Rollback started."),
        _ => None,
    }
}

pub async fn rollout(signed: Signed, Path(id): Path<String>, Query(q): Query<Done>) -> Response {
    let id_seg = seg(&id);
    let detail: RolloutDetail = match signed.get(&format!("/api/v1/rollouts/{id_seg}")).await {
        Ok(d) => d,
        Err(f) => return signed.failed(f),
    };
    let why: Explanation = match signed
        .get(&format!("/api/v1/rollouts/{id_seg}/explain"))
        .await
    {
        Ok(w) => w,
        Err(f) => return signed.failed(f),
    };
    let intervals = match signed
        .raw(
            axum::http::Method::GET,
            &format!("/api/v1/rollouts/{id_seg}/export"),
            None,
        )
        .await
    {
        Ok((status, bytes)) if status.is_success() => {
            backstop_judge::scenario::parse_scenario(&String::from_utf8_lossy(&bytes))
                .map(|s| s.intervals)
                .unwrap_or_default()
        }
        Ok(_) => Vec::new(),
        Err(f) => return signed.failed(f),
    };
    let r = &detail.rollout;
    let running = matches!(
        r.phase,
        Phase::Pending | Phase::Progressing | Phase::Recovering
    ) || detail
        .recovery
        .as_ref()
        .is_some_and(|rec| rec.status == RecoveryStatus::Running);
    let title = format!("Rollout {} · {}", r.id, r.to_release_id);
    let mut frame = signed.frame(&title);
    frame.refresh_s = running.then_some(2);
    frame.notice = done_notice(q.done.as_deref());
    html::page(&frame, &rollout_body(&signed, &detail, &why, &intervals))
}

fn rollout_body(
    signed: &Signed,
    detail: &RolloutDetail,
    why: &Explanation,
    intervals: &[Interval],
) -> String {
    let r = &detail.rollout;
    let tl = &detail.timeline;
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"decision\"><p class=\"sentence\">{} {}</p><dl class=\"facts\">",
        badge(r.phase.as_str()),
        esc(&why.decision)
    );
    let facts: Vec<(&str, String)> = vec![
        ("Service", format!("{} / {}", esc(&r.service), esc(&r.env))),
        (
            "Release",
            format!(
                "{} → {}",
                or_dash(r.from_release_id.as_deref()),
                esc(&r.to_release_id)
            ),
        ),
        (
            "Started",
            format!("{} by {}", time(r.created_at_ms), esc(&r.actor)),
        ),
        ("Decided by", or_dash(why.decided_by.as_deref())),
        (
            "Decided after",
            why.decided_after_s
                .map_or_else(|| "–".into(), |s| format!("{s:.1} s of canary traffic")),
        ),
        (
            "Time to detect",
            tl.time_to_detect_ms.map_or_else(|| "–".into(), dur),
        ),
        (
            "Time to restore",
            tl.time_to_restore_ms.map_or_else(|| "–".into(), dur),
        ),
        ("Canary weight", format!("{}%", r.canary_weight)),
        (
            "Judge",
            format!(
                "{} · α = {} · {} intervals of {}",
                esc(&why.judge),
                why.alpha,
                why.intervals,
                dur(why.interval_ms)
            ),
        ),
    ];
    for (k, v) in facts {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl>");
    body.push_str(&rollout_actions(signed, r));
    body.push_str("</section>");

    // Canary against baseline, per signal, with the decision marked.
    let canary_started = detail
        .events
        .iter()
        .find(|e| e.kind == EventKind::CanaryStarted)
        .map(|e| e.at_ms);
    let decided = tl.verdict_at_ms.or(tl.promoted_at_ms);
    let marker_label = match r.phase {
        Phase::Promoted => "promoted".to_owned(),
        _ => "rolled back".to_owned(),
    };
    let marker = match (canary_started, decided) {
        (Some(start), Some(at)) => Some(Marker {
            t: (at - start).max(0) as f64 / 1000.0,
            label: &marker_label,
        }),
        _ => None,
    };
    let error_points = |arm: fn(&Interval) -> &backstop_judge::ArmCounts| -> Vec<(f64, f64)> {
        intervals
            .iter()
            .filter_map(|i| {
                let a = arm(i);
                (a.requests > 0).then(|| (i.t, a.errors as f64 / a.requests as f64))
            })
            .collect()
    };
    let p99_points = |arm: fn(&Interval) -> &backstop_judge::ArmCounts| -> Vec<(f64, f64)> {
        intervals
            .iter()
            .filter_map(|i| {
                let h = arm(i).latency_le_ms.as_deref()?;
                backstop_judge::hist::quantile(0.99, h)
                    .filter(|v| v.is_finite())
                    .map(|v| (i.t, v))
            })
            .collect()
    };
    body.push_str("<section><h2>Canary against baseline</h2>");
    if intervals.is_empty() {
        body.push_str("<p class=\"empty\">No interval was measured: the canary never took traffic the judge could compare.</p>");
    }
    let charts = [
        SignalChart {
            signal: "error_ratio",
            title: "Error ratio per interval",
            canary: error_points(|i| &i.canary),
            baseline: error_points(|i| &i.baseline),
            label: |v| format!("{:.1}%", v * 100.0),
        },
        SignalChart {
            signal: "latency",
            title: "Latency p99 per interval (ms)",
            canary: p99_points(|i| &i.canary),
            baseline: p99_points(|i| &i.baseline),
            label: |v| format!("{v:.0}"),
        },
    ];
    for SignalChart {
        signal,
        title,
        canary,
        baseline,
        label,
    } in charts
    {
        let explained = why.signals.iter().find(|s| s.signal == signal);
        if canary.is_empty() && baseline.is_empty() && explained.is_none() {
            continue;
        }
        let _ = write!(body, "<div class=\"signal\" id=\"signal-{signal}\">");
        body.push_str(&line_chart(
            signal,
            title,
            &[
                Series {
                    name: "baseline",
                    points: baseline,
                },
                Series {
                    name: "canary",
                    points: canary,
                },
            ],
            marker.as_ref(),
            label,
        ));
        body.push_str("<div class=\"numbers\">");
        match explained {
            Some(s) => {
                let _ = write!(
                    body,
                    "<h3>{} {}</h3><p>{}</p><p>{}</p>\
                     <details><summary>The judge's numbers</summary><pre>{}</pre></details>",
                    esc(&s.signal),
                    badge(&s.verdict),
                    esc(&s.comparison),
                    esc(&s.evidence),
                    esc(&serde_json::to_string_pretty(&s.numbers).unwrap_or_default())
                );
            }
            None => body.push_str("<p>The judge did not compare this signal.</p>"),
        }
        body.push_str("</div></div>");
    }
    body.push_str("</section>");

    if !why.shadow_verdicts.is_empty() {
        body.push_str(
            "<section><h2>Shadow judge</h2><p>The judge runs in shadow mode here: it is heard, never obeyed.</p><ul>",
        );
        for v in &why.shadow_verdicts {
            let _ = write!(body, "<li>{}</li>", esc(v));
        }
        body.push_str("</ul></section>");
    }
    if !why.would_change.is_empty() {
        body.push_str("<section><h2>What would have changed the decision</h2><ul>");
        for w in &why.would_change {
            let _ = write!(body, "<li>{}</li>", esc(w));
        }
        body.push_str("</ul></section>");
    }

    body.push_str("<section><h2>What happened</h2><ol class=\"timeline\">");
    for s in &why.steps {
        let (at, what) = s.trim_start().split_once("  ").unwrap_or(("", s));
        let _ = write!(
            body,
            "<li><span class=\"at\">{}</span> {}</li>",
            esc(at),
            esc(what.trim())
        );
    }
    body.push_str("</ol></section>");

    if let Some(rec) = &detail.recovery {
        let _ = write!(
            body,
            "<section><h2>Recovery</h2><p>{} {} — {}</p>",
            recovery_link(&rec.id),
            badge(rec.status.as_str()),
            esc(&rec.reason)
        );
        body.push_str(&steps_table(rec));
        body.push_str("</section>");
    }
    body
}

/// One signal's chart: canary and baseline points over seconds since the canary started.
struct SignalChart {
    signal: &'static str,
    title: &'static str,
    canary: Vec<(f64, f64)>,
    baseline: Vec<(f64, f64)>,
    label: fn(f64) -> String,
}

/// The buttons for what can still be done to the rollout (each opens its confirmation).
fn rollout_actions(_signed: &Signed, r: &Rollout) -> String {
    let mut actions: Vec<&str> = Vec::new();
    if matches!(r.phase, Phase::Pending | Phase::Progressing | Phase::Paused) {
        actions.extend(["promote", "abort"]);
    }
    if r.phase == Phase::Paused && r.escalation_deadline_ms.is_some() && r.acknowledged_by.is_none()
    {
        actions.push("acknowledge");
    }
    if actions.is_empty() {
        return String::new();
    }
    let mut out = String::from("<div class=\"actions\">");
    for a in actions {
        let (_, label, _) = super::rollout_action(a).copied().unwrap_or((a, a, ""));
        let class = if a == "abort" {
            "button danger"
        } else {
            "button"
        };
        let _ = write!(
            out,
            "<a class=\"{class}\" id=\"action-{a}\" href=\"/rollouts/{}/{a}\">{label}…</a>",
            seg(&r.id)
        );
    }
    out.push_str("</div>");
    out
}

fn steps_table(rec: &Recovery) -> String {
    let rows: Vec<Vec<String>> = rec
        .steps
        .iter()
        .map(|s| {
            vec![
                s.index.to_string(),
                esc(s.step.name()),
                badge(s.status.as_str()),
                s.attempts.to_string(),
                s.started_at_ms.map_or_else(
                    || "–".into(),
                    |t| format!("+{}", dur(t - rec.created_at_ms)),
                ),
                match (s.started_at_ms, s.finished_at_ms) {
                    (Some(a), Some(b)) => dur(b - a),
                    _ => "–".into(),
                },
                s.outcome.as_ref().map_or_else(
                    || "–".into(),
                    |o| format!("<code>{}</code>", esc(&o.to_string())),
                ),
            ]
        })
        .collect();
    table(
        "steps",
        &[
            "#", "Step", "Status", "Attempts", "Started", "Took", "Outcome",
        ],
        &rows,
        "No step was journaled yet.",
    )
}

pub async fn recovery(signed: Signed, Path(id): Path<String>, Query(q): Query<Done>) -> Response {
    let rec: Recovery = match signed
        .get(&format!("/api/v1/recoveries/{}", seg(&id)))
        .await
    {
        Ok(r) => r,
        Err(f) => return signed.failed(f),
    };
    let title = format!("Recovery {}", rec.id);
    let mut frame = signed.frame(&title);
    frame.refresh_s = (rec.status == RecoveryStatus::Running).then_some(2);
    frame.notice = done_notice(q.done.as_deref());
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"decision\"><p class=\"sentence\">{} {} / {}: {}</p><dl class=\"facts\">",
        badge(rec.status.as_str()),
        esc(&rec.service),
        esc(&rec.env),
        esc(&rec.reason)
    );
    let took = rec
        .finished_at_ms
        .map_or_else(|| "still running".into(), |f| dur(f - rec.created_at_ms));
    for (k, v) in [
        ("Trigger", esc(&rec.trigger)),
        ("By", esc(&rec.actor)),
        ("Started", time(rec.created_at_ms)),
        ("Took", took),
        (
            "Rollout",
            rec.rollout_id
                .as_deref()
                .map_or_else(|| "–".into(), rollout_link),
        ),
    ] {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl>");
    if rec.status == RecoveryStatus::Failed {
        let _ = write!(
            body,
            "<div class=\"actions\"><a class=\"button\" id=\"action-resume\" href=\"/recoveries/{}/resume\">Resume…</a></div>",
            seg(&rec.id)
        );
    }
    body.push_str("</section><section><h2>Journaled steps</h2>");
    body.push_str(&steps_table(&rec));
    body.push_str(&timing_bars(&rec));
    body.push_str("</section>");
    if let Some(v) = &rec.validation {
        body.push_str("<section><h2>After the recovery</h2>");
        let v = serde_json::to_value(v).unwrap_or_default();
        let rows: Vec<Vec<String>> = v["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                vec![
                    text(&c["name"]),
                    badge(c["status"].as_str().unwrap_or("?")),
                    text(&c["detail"]),
                ]
            })
            .collect();
        let _ = write!(
            body,
            "<p>Validation: {}</p>",
            badge(v["status"].as_str().unwrap_or("?"))
        );
        body.push_str(&table(
            "validation",
            &["Check", "Result", "Detail"],
            &rows,
            "No check was declared.",
        ));
        body.push_str("</section>");
    }
    html::page(&frame, &body)
}

/// The steps as bars on one time axis: where the recovery spent its time.
fn timing_bars(rec: &Recovery) -> String {
    let start = rec.created_at_ms;
    let end = rec
        .steps
        .iter()
        .filter_map(|s| s.finished_at_ms.or(s.started_at_ms))
        .chain(rec.finished_at_ms)
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let span = (end - start) as f64;
    let mut out = String::from("<svg class=\"bars\" viewBox=\"0 0 640 ");
    let h = 22 * rec.steps.len() + 8;
    let _ = write!(out, "{h}\" role=\"img\" aria-label=\"step timings\">");
    for (row, s) in rec.steps.iter().enumerate() {
        let (Some(a), b) = (s.started_at_ms, s.finished_at_ms) else {
            continue;
        };
        let b = b.unwrap_or(end);
        let x = 150.0 + (a - start) as f64 / span * 480.0;
        let w = ((b - a) as f64 / span * 480.0).max(2.0);
        let y = 4 + row * 22;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"0\" y=\"{}\">{}</text><rect class=\"bar b-{}\" x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\"><title>{} {}</title></rect>",
            y + 12,
            esc(s.step.name()),
            seg(s.status.as_str()),
            esc(s.step.name()),
            dur(b - a)
        );
    }
    out.push_str("</svg>");
    out
}

const INCIDENT_HEAD: &[&str] = &[
    "Incident",
    "Title",
    "Severity",
    "Status",
    "Service / env",
    "Opened",
];

fn incident_row(i: &Value) -> Vec<String> {
    let id = i["id"].as_str().unwrap_or("?");
    vec![
        format!("<a href=\"/incidents/{}\">{}</a>", seg(id), esc(id)),
        text(&i["title"]),
        badge(i["severity"].as_str().unwrap_or("?")),
        badge(i["status"].as_str().unwrap_or("?")),
        format!("{} / {}", text(&i["service"]), text(&i["env"])),
        i["opened_at_ms"].as_i64().map_or_else(|| "–".into(), time),
    ]
}

pub async fn incidents(signed: Signed) -> Response {
    match signed.get::<Vec<Value>>("/api/v1/incidents").await {
        Ok(list) => {
            let rows: Vec<Vec<String>> = list.iter().map(incident_row).collect();
            html::page(
                &signed.frame("Incidents"),
                &table("incidents", INCIDENT_HEAD, &rows, "No incident yet."),
            )
        }
        Err(f) => signed.failed(f),
    }
}

pub async fn incident(signed: Signed, Path(id): Path<String>) -> Response {
    let detail: Value = match signed.get(&format!("/api/v1/incidents/{}", seg(&id))).await {
        Ok(d) => d,
        Err(f) => return signed.failed(f),
    };
    let i = &detail["incident"];
    let title = format!("Incident {}", i["id"].as_str().unwrap_or("?"));
    let mut body = format!(
        "<section class=\"decision\"><p class=\"sentence\">{} {} {}</p><dl class=\"facts\">",
        badge(i["severity"].as_str().unwrap_or("?")),
        badge(i["status"].as_str().unwrap_or("?")),
        text(&i["title"])
    );
    let roles = i["roles"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{}: {}", esc(k), text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    for (k, v) in [
        (
            "Service",
            format!("{} / {}", text(&i["service"]), text(&i["env"])),
        ),
        (
            "Opened",
            i["opened_at_ms"].as_i64().map_or_else(|| "–".into(), time),
        ),
        ("Opened by", text(&i["opened_by"])),
        (
            "Roles",
            if roles.is_empty() {
                "–".into()
            } else {
                roles
            },
        ),
        (
            "Rollout",
            i["rollout_id"]
                .as_str()
                .map_or_else(|| "–".into(), rollout_link),
        ),
        (
            "Recovery",
            i["recovery_id"]
                .as_str()
                .map_or_else(|| "–".into(), recovery_link),
        ),
    ] {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl></section><section><h2>Timeline</h2><ol class=\"timeline\">");
    for t in detail["timeline"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<li><span class=\"at\">{}</span> <span class=\"source\">{}</span> {} <small>{}</small></li>",
            t["at_ms"].as_i64().map_or_else(|| "–".into(), time),
            text(&t["source"]),
            text(&t["text"]),
            text(&t["actor"])
        );
    }
    body.push_str("</ol></section>");
    html::page(&signed.frame(&title), &body)
}

pub async fn runbooks(signed: Signed) -> Response {
    let books: Vec<Value> = match signed.get("/api/v1/runbooks").await {
        Ok(b) => b,
        Err(f) => return signed.failed(f),
    };
    let runs: Vec<Value> = match signed.get("/api/v1/runbook-runs").await {
        Ok(r) => r,
        Err(f) => return signed.failed(f),
    };
    let book_rows: Vec<Vec<String>> = books
        .iter()
        .map(|b| {
            vec![
                text(&b["name"]),
                text(&b["version"]),
                text(&b["description"]),
                text(&b["role"]),
                b["steps"].as_array().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect();
    let run_rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let steps = r["steps"].as_array().map_or(&[][..], Vec::as_slice);
            let done = steps
                .iter()
                .filter(|s| matches!(s["status"].as_str(), Some("done" | "skipped")))
                .count();
            vec![
                text(&r["id"]),
                text(&r["runbook"]),
                text(&r["env"]),
                badge(r["status"].as_str().unwrap_or("?")),
                format!("{done} / {}", steps.len()),
                r["deviations"].as_array().map_or(0, Vec::len).to_string(),
                text(&r["started_by"]),
                r["started_at_ms"].as_i64().map_or_else(|| "–".into(), time),
            ]
        })
        .collect();
    let mut body = String::from("<section><h2>Runbooks</h2>");
    body.push_str(&table(
        "runbooks",
        &["Runbook", "Version", "What it does", "Role", "Steps"],
        &book_rows,
        "No runbook is declared.",
    ));
    body.push_str("</section><section><h2>Runs</h2>");
    body.push_str(&table(
        "runs",
        &[
            "Run",
            "Runbook",
            "Environment",
            "Status",
            "Steps done",
            "Deviations",
            "By",
            "Started",
        ],
        &run_rows,
        "No runbook was run yet.",
    ));
    body.push_str("</section>");
    html::page(&signed.frame("Runbooks"), &body)
}

pub async fn scorecards(signed: Signed) -> Response {
    let cards: Vec<Value> = match signed.get("/api/v1/scorecards").await {
        Ok(c) => c,
        Err(f) => return signed.failed(f),
    };
    let mut body = String::new();
    if cards.is_empty() {
        body.push_str("<p class=\"empty\">No service is declared.</p>");
    }
    for c in &cards {
        let _ = write!(
            body,
            "<section><h2>{} {}</h2>",
            text(&c["service"]),
            badge(c["level"].as_str().unwrap_or("below bronze"))
        );
        let rows: Vec<Vec<String>> = c["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                vec![
                    text(&k["name"]),
                    text(&k["level"]),
                    badge(if k["passed"].as_bool() == Some(true) {
                        "pass"
                    } else {
                        "fail"
                    }),
                    text(&k["detail"]),
                ]
            })
            .collect();
        body.push_str(&table(
            "checks",
            &["Check", "Level", "Result", "Detail"],
            &rows,
            "No check.",
        ));
        body.push_str("</section>");
    }
    html::page(&signed.frame("Scorecards"), &body)
}

#[derive(Deserialize, Default)]
pub struct AuditPage {
    /// Show records up to this sequence number (older pages).
    before: Option<i64>,
}

const AUDIT_PAGE: i64 = 100;

pub async fn audit(signed: Signed, Query(q): Query<AuditPage>) -> Response {
    let verification: AuditVerification = match signed.get("/api/v1/audit/verify").await {
        Ok(v) => v,
        Err(f) => return signed.failed(f),
    };
    let newest = verification.records as i64;
    let before = q.before.unwrap_or(newest + 1).clamp(1, newest + 1);
    let after = (before - 1 - AUDIT_PAGE).max(0);
    let mut records: Vec<Value> = match signed
        .get(&format!(
            "/api/v1/audit?after={after}&limit={}",
            before - 1 - after
        ))
        .await
    {
        Ok(r) => r,
        Err(f) => return signed.failed(f),
    };
    records.retain(|r| r["seq"].as_i64().is_some_and(|s| s < before));
    records.reverse();
    let mut body = String::new();
    if verification.ok {
        let _ = write!(
            body,
            "<p class=\"verified ok\" id=\"audit-status\">{} The chain of {} records verifies (signature: {}).</p>",
            badge("verified"),
            verification.records,
            esc(&verification.signature)
        );
    } else {
        let _ = write!(
            body,
            "<p class=\"verified broken\" id=\"audit-status\">{} The chain is broken at record {}: {}</p>",
            badge("broken"),
            verification
                .broken_at
                .map_or_else(|| "?".into(), |b| b.to_string()),
            or_dash(verification.reason.as_deref())
        );
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let target = r["target"].as_str().unwrap_or("");
            let target_html = match target.split_once('/') {
                Some(("rollout", id)) => rollout_link(id),
                Some(("recovery", id)) => recovery_link(id),
                _ => esc(target),
            };
            vec![
                text(&r["seq"]),
                r["at_ms"].as_i64().map_or_else(|| "–".into(), time),
                text(&r["actor"]),
                text(&r["action"]),
                target_html,
                text(&r["trigger"]),
                format!(
                    "<code title=\"{}\">{}</code>",
                    text(&r["hash"]),
                    esc(r["hash"].as_str().unwrap_or("").get(..12).unwrap_or(""))
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        "audit",
        &["#", "At", "Actor", "Action", "Target", "Trigger", "Hash"],
        &rows,
        "The audit log is empty.",
    ));
    if after > 0 {
        let _ = write!(
            body,
            "<p><a class=\"button\" href=\"/audit?before={}\">Older records</a></p>",
            after + 1
        );
    }
    html::page(&signed.frame("Audit log"), &body)
}

/// Release groups: each run as its members in shipping order, each with its state, so a
/// group's progress and its way back read left to right.
pub async fn groups(signed: Signed) -> Response {
    let groups: Vec<backstop_core::group::ReleaseGroup> = match signed.get("/api/v1/groups").await {
        Ok(g) => g,
        Err(f) => return signed.failed(f),
    };
    let mut body = String::new();
    if groups.is_empty() {
        body.push_str(
            "<p class=\"empty\">No release group yet (backstop release group create).</p>",
        );
    }
    for g in &groups {
        let view: backstop_api::groups::GroupView = match signed
            .get(&format!("/api/v1/groups/{}", seg(&g.name)))
            .await
        {
            Ok(v) => v,
            Err(f) => return signed.failed(f),
        };
        let _ = write!(body, "<section><h2>{}</h2>", esc(&g.name));
        let rows: Vec<Vec<String>> = view.runs.iter().rev().map(group_run_row).collect();
        body.push_str(&table(
            "groups",
            &["Run", "Env", "Phase", "Members, in order", "Why", "Started"],
            &rows,
            "Not shipped yet.",
        ));
        body.push_str("</section>");
    }
    html::page(&signed.frame("Release groups"), &body)
}

fn group_run_row(run: &backstop_core::group::GroupRun) -> Vec<String> {
    let members: Vec<String> = run
        .members
        .iter()
        .map(|m| {
            let name = match &m.rollout_id {
                Some(id) => format!(
                    "<a href=\"/rollouts/{}\">{}</a>",
                    seg(id),
                    esc(&m.release_id)
                ),
                None => esc(&m.release_id),
            };
            format!("{name} {}", badge(m.state.as_str()))
        })
        .collect();
    let why = match (&run.halt, &run.failure) {
        (Some(h), _) => format!(
            "halted: {}{}",
            esc(&h.reason),
            h.options
                .iter()
                .map(|o| format!("<br>option: {}", esc(o)))
                .collect::<String>()
        ),
        (None, Some(f)) => esc(f),
        (None, None) => "–".into(),
    };
    vec![
        esc(&run.id),
        esc(&run.env),
        badge(run.phase.as_str()),
        members.join(" → "),
        why,
        time(run.created_at_ms),
    ]
}

/// Ships: each a strip of its waves in order, each wave its environments with their states and
/// its bake as a bar filling up, so where a release is on its way to production reads at a
/// glance. Refreshes while one moves.
pub async fn ships(signed: Signed) -> Response {
    let ships: Vec<backstop_core::ship::Ship> = match signed.get("/api/v1/ships?all=true").await {
        Ok(s) => s,
        Err(f) => return signed.failed(f),
    };
    // For the bake bars only: how far along each is, as the person looks.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as backstop_core::Millis);
    let mut body = String::new();
    if ships.is_empty() {
        body.push_str(
            "<p class=\"empty\">No ship yet (backstop release ship SERVICE --version V).</p>",
        );
    }
    for ship in ships.iter().rev().take(50) {
        let _ = write!(
            body,
            "<section><h2>{} {}</h2><p class=\"hint\">{} · started by {} · {}</p><ol class=\"waves\">",
            esc(&ship.release_id),
            badge(ship.phase.as_str()),
            esc(&ship.id),
            esc(&ship.actor),
            time(ship.created_at_ms)
        );
        for (i, wave) in ship.waves.iter().enumerate() {
            let _ = write!(
                body,
                "<li class=\"wave\"><strong>Wave {}</strong> {}<ul>",
                i + 1,
                badge(wave.state.as_str())
            );
            for e in &wave.envs {
                let name = match &e.rollout_id {
                    Some(id) => format!("<a href=\"/rollouts/{}\">{}</a>", seg(id), esc(&e.env)),
                    None => esc(&e.env),
                };
                let _ = write!(body, "<li>{name} {}", badge(e.state.as_str()));
                if let Some(b) = &e.bake {
                    let _ = write!(body, "<br><small>{}</small>", esc(&b.summary()));
                    if let Some(shadow) = &b.shadow_verdict {
                        let _ = write!(body, "<br><small>shadow: {}</small>", esc(shadow));
                    }
                }
                if let Some(note) = &e.note {
                    let _ = write!(body, "<br><small>{}</small>", esc(note));
                }
                body.push_str("</li>");
            }
            body.push_str("</ul>");
            if let (Some(ms), Some(from), Some(until)) =
                (wave.bake_ms, wave.bake_started_at_ms, wave.bake_until_ms)
            {
                let done = match wave.finished_at_ms {
                    Some(_) => 1.0,
                    None => ((now - from) as f64 / (until - from).max(1) as f64).clamp(0.0, 1.0),
                };
                let _ = write!(
                    body,
                    "<div class=\"bake\"><div style=\"width:{:.0}%\"></div></div><small>bake {}</small>",
                    100.0 * done,
                    esc(&length(ms))
                );
            } else if let Some(ms) = wave.bake_ms {
                let _ = write!(body, "<small>bakes {}</small>", esc(&length(ms)));
            }
            body.push_str("</li>");
        }
        body.push_str("</ol>");
        if let Some(held) = &ship.held {
            let _ = write!(body, "<p class=\"notice\">Held: {}</p>", esc(held));
        }
        if let Some(h) = &ship.halt {
            let _ = write!(
                body,
                "<p class=\"error\">Halted at {}: {}",
                esc(&h.env),
                esc(&h.reason)
            );
            for o in &h.options {
                let _ = write!(body, "<br>option: {}", esc(o));
            }
            body.push_str("</p>");
        } else if let Some(f) = &ship.failure {
            let _ = write!(body, "<p class=\"error\">Stopped: {}</p>", esc(f));
        }
        body.push_str("</section>");
    }
    let mut frame = signed.frame("Ships");
    frame.refresh_s = ships.iter().any(|s| s.phase.is_active()).then_some(2);
    html::page(&frame, &body)
}

/// `30m`, `1h 30m`: a length of time in milliseconds, as people write it.
fn length(ms: backstop_core::Millis) -> String {
    backstop_core::duration::format_duration(std::time::Duration::from_millis(ms.unsigned_abs()))
}

/// Alerts from monitoring and what each started.
pub async fn alerts(signed: Signed) -> Response {
    let list: Vec<backstop_core::alert::AlertRecord> =
        match signed.get("/api/v1/alerts?limit=200").await {
            Ok(l) => l,
            Err(f) => return signed.failed(f),
        };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                esc(&a.id),
                esc(&a.name),
                badge(a.severity.as_str()),
                badge(a.status.as_str()),
                a.rollout_id.as_deref().map_or_else(
                    || "–".into(),
                    |id| {
                        format!(
                            "<a href=\"/rollouts/{}\">{}</a>",
                            seg(id),
                            esc(a.release_id.as_deref().unwrap_or(id))
                        )
                    },
                ),
                badge(a.action.as_str()),
                esc(&a.detail),
                time(a.received_at_ms),
            ]
        })
        .collect();
    html::page(
        &signed.frame("Alerts"),
        &table(
            "alerts",
            &[
                "Alert", "Name", "Severity", "Status", "Release", "Action", "Why", "Received",
            ],
            &rows,
            "No alert received (point an Alertmanager webhook at /api/v1/alerts/alertmanager).",
        ),
    )
}
