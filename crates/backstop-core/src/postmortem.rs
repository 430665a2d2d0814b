//! The post-mortem draft of a recovery (practice 7.1): Markdown written from what the daemon
//! recorded, never from placeholders: what happened and how long each phase took, what users
//! met, how it was detected, each recovery step, the deviations from runbooks, what went well
//! and badly by the numbers, and action items with owners. Due 48 hours after resolution.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::incident::Incident;
use crate::model::{Event, Recovery, Rollout, StepStatus};
use crate::runbook_run::RunbookRun;
use crate::timeline::Timeline;

/// A post-mortem is due this long after the recovery resolved, unless the config says
/// otherwise (`incidents.postmortem_due`).
pub const DUE_AFTER_MS: Millis = 48 * 3600 * 1000;

/// What people did with a recovery's post-mortem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostmortemRecord {
    /// When someone said it was written (and reviewed).
    pub done_at_ms: Option<Millis>,
    pub done_by: Option<String>,
    /// Where the final document is.
    pub link: Option<String>,
    /// When the daemon told the service's webhooks it was overdue (once).
    pub reminded_at_ms: Option<Millis>,
}

/// When the post-mortem of `rec` is (or was) due: `due_after_ms` after it resolved.
#[must_use]
pub fn due_at_ms(rec: &Recovery, due_after_ms: Millis) -> Option<Millis> {
    rec.validation
        .as_ref()
        .and_then(crate::validation::RecoveryValidation::resolved_at_ms)
        .map(|r| r + due_after_ms)
}

/// The post-mortem of `rec` is past due at `now` and nobody said it was done.
#[must_use]
pub fn overdue(rec: &Recovery, due_after_ms: Millis, now: Millis) -> bool {
    let done = rec
        .postmortem
        .as_ref()
        .is_some_and(|p| p.done_at_ms.is_some());
    !done && due_at_ms(rec, due_after_ms).is_some_and(|due| now > due)
}

/// What a draft is written from.
pub struct Facts<'a> {
    pub recovery: &'a Recovery,
    /// The service's owner: who action items go to when no incident commander is named.
    pub owner: &'a str,
    /// The service's MTTR objective.
    pub mttr_ms: Millis,
    pub rollout: Option<&'a Rollout>,
    pub events: &'a [Event],
    pub intervals: &'a [backstop_judge::Interval],
    pub incident: Option<&'a Incident>,
    pub runbook_runs: &'a [RunbookRun],
    /// How long after resolution the post-mortem is due.
    pub due_after_ms: Millis,
}

/// The phases of a recovery, each from when users first met the bad version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Phases {
    pub exposed_at_ms: Millis,
    pub detected_at_ms: Option<Millis>,
    pub mitigated_at_ms: Option<Millis>,
    pub restored_at_ms: Option<Millis>,
    pub resolved_at_ms: Option<Millis>,
    pub time_to_detect_ms: Option<Millis>,
    pub time_to_mitigate_ms: Option<Millis>,
    pub time_to_restore_ms: Option<Millis>,
    pub time_to_resolve_ms: Option<Millis>,
}

/// What users of the bad version met, from the judge's intervals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Impact {
    pub requests: u64,
    pub errors: u64,
    /// Errors beyond what the baseline's error ratio would have given.
    pub excess_errors: u64,
    pub error_ratio: Option<f64>,
    pub baseline_error_ratio: Option<f64>,
}

/// An action item, with who owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionItem {
    pub owner: String,
    pub text: String,
}

/// The draft and the numbers it was written from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Draft {
    pub recovery_id: String,
    pub phases: Phases,
    pub impact: Impact,
    pub action_items: Vec<ActionItem>,
    pub due_at_ms: Option<Millis>,
    pub markdown: String,
}

/// `12.3 s`, `4 min 05 s`, `2 h 03 min`.
#[must_use]
pub fn human(ms: Millis) -> String {
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as i64, (s % 60.0) as i64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as i64,
            ((s % 3600.0) / 60.0) as i64
        )
    }
}

fn when(ms: Millis) -> String {
    crate::format_ms(ms)
}

/// Who decided to roll back, and whether that was Backstop on its own: the rollout's failure
/// says (`judge`, `breaker`, `deploy`, `escalation`, or a person); a recovery without a rollout
/// was asked for by a person.
#[must_use]
pub fn decided_by(rec: &Recovery, events: &[Event]) -> (String, bool) {
    let decided = events
        .iter()
        .find(|e| e.kind == crate::event::EventKind::RolloutFailed)
        .and_then(|e| e.detail["trigger"].as_str())
        .unwrap_or(rec.trigger.as_str())
        .to_owned();
    let automatic = matches!(
        decided.as_str(),
        "judge" | "breaker" | "deploy" | "smoke" | "escalation"
    );
    (decided, automatic)
}

/// The phases of recovery `rec` (of `rollout`, with its `events`, if it had one).
#[must_use]
pub fn phases(rec: &Recovery, rollout: Option<&Rollout>, events: &[Event]) -> Phases {
    let timeline = rollout.map(|r| Timeline::from_events(r, events));
    let exposed = match rollout {
        Some(r) => Timeline::exposed_at_ms(events, r),
        None => rec.created_at_ms,
    };
    let detected = timeline
        .as_ref()
        .and_then(|t| t.verdict_at_ms)
        .or(Some(rec.created_at_ms));
    let mitigated = timeline
        .as_ref()
        .and_then(|t| t.traffic_restored_at_ms)
        .or(rec.finished_at_ms);
    let restored = rec.finished_at_ms;
    let resolved = rec.validation.as_ref().and_then(|v| v.resolved_at_ms());
    let since = |at: Option<Millis>| at.map(|a| (a - exposed).max(0));
    Phases {
        exposed_at_ms: exposed,
        detected_at_ms: detected,
        mitigated_at_ms: mitigated,
        restored_at_ms: restored,
        resolved_at_ms: resolved,
        time_to_detect_ms: since(detected),
        time_to_mitigate_ms: since(mitigated),
        time_to_restore_ms: since(restored),
        time_to_resolve_ms: since(resolved),
    }
}

fn impact(intervals: &[backstop_judge::Interval]) -> Impact {
    let (mut req, mut err, mut breq, mut berr) = (0u64, 0u64, 0u64, 0u64);
    for i in intervals {
        req += i.canary.requests;
        err += i.canary.errors;
        breq += i.baseline.requests;
        berr += i.baseline.errors;
    }
    let ratio = |e: u64, r: u64| (r > 0).then(|| e as f64 / r as f64);
    let baseline = ratio(berr, breq);
    let expected = baseline.map_or(0.0, |b| b * req as f64);
    Impact {
        requests: req,
        errors: err,
        excess_errors: (err as f64 - expected).max(0.0).round() as u64,
        error_ratio: ratio(err, req),
        baseline_error_ratio: baseline,
    }
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |r| format!("{:.2} %", r * 100.0))
}

/// Writes the draft.
#[must_use]
pub fn draft(f: &Facts) -> Draft {
    let rec = f.recovery;
    let p = phases(rec, f.rollout, f.events);
    let imp = impact(f.intervals);
    let owner = f
        .incident
        .and_then(|i| i.roles.get("commander").cloned())
        .unwrap_or_else(|| f.owner.to_owned());
    let release = f
        .rollout
        .map_or("(no rollout)", |r| r.to_release_id.as_str());
    let (decided, automatic) = decided_by(rec, f.events);
    let mut md = String::new();
    let mut line = |s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    line(format!(
        "# Post-mortem (draft): {release} in {}/{}",
        rec.service, rec.env
    ));
    line(String::new());
    line(format!(
        "Recovery `{}`, written by Backstop from its records{}. Edit it: the numbers are measured; the causes are yours to find.",
        rec.id,
        f.incident.map_or(String::new(), |i| format!(
            "; incident `{}` ({})",
            i.id, i.severity
        ))
    ));
    line(String::new());

    // Summary.
    line("## Summary".into());
    line(String::new());
    let how = match decided.as_str() {
        "judge" => "the judge found it worse than the baseline".to_owned(),
        "breaker" => "the rollout's circuit breaker tripped".to_owned(),
        "deploy" => "the canary failed to deploy".to_owned(),
        "smoke" => {
            "a synthetic journey failed against the canary before it took traffic".to_owned()
        }
        "escalation" => "nobody acknowledged it before its escalation deadline".to_owned(),
        "manual" => format!("{} asked for a rollback", rec.actor),
        person => format!("{person} asked for a rollback"),
    };
    let mut summary = format!(
        "{release} reached users at {}; {how} ({}).",
        when(p.exposed_at_ms),
        rec.reason
    );
    if let Some(t) = p.time_to_mitigate_ms {
        let _ = write!(
            summary,
            " Traffic was back on the last known good {} after the first exposure",
            human(t)
        );
    }
    match (
        p.time_to_resolve_ms,
        rec.validation.as_ref().map(|v| v.status),
    ) {
        (Some(t), Some(crate::validation::ValidationStatus::Passed)) => {
            let _ = write!(
                summary,
                "; the post-recovery suite passed and the recovery was resolved after {}.",
                human(t)
            );
        }
        (Some(t), _) => {
            let _ = write!(
                summary,
                "; resolved after {} (no post-recovery suite is declared, so nothing beyond the restore was checked).",
                human(t)
            );
        }
        (None, _) => summary.push_str("; the recovery is not resolved yet."),
    }
    line(summary);
    line(String::new());

    // Impact.
    line("## Impact".into());
    line(String::new());
    if imp.requests > 0 {
        line(format!(
            "- Requests served by {release}: {} ({} failed, error ratio {}; baseline {}): about {} failures more than the baseline would have given.",
            imp.requests,
            imp.errors,
            pct(imp.error_ratio),
            pct(imp.baseline_error_ratio),
            imp.excess_errors
        ));
    } else {
        line(format!(
            "- No per-version traffic was recorded for {release}."
        ));
    }
    if let Some(t) = p.time_to_mitigate_ms {
        line(format!(
            "- Users could meet the bad version for {} ({} → {}).",
            human(t),
            when(p.exposed_at_ms),
            when(p.mitigated_at_ms.unwrap_or(p.exposed_at_ms))
        ));
    }
    line(String::new());

    // Phases.
    line("## Timeline metrics".into());
    line(String::new());
    line("| phase | at | since exposure |".into());
    line("|---|---|---|".into());
    for (name, at, since) in [
        ("exposed (first request)", Some(p.exposed_at_ms), Some(0)),
        ("detected", p.detected_at_ms, p.time_to_detect_ms),
        (
            "mitigated (traffic back)",
            p.mitigated_at_ms,
            p.time_to_mitigate_ms,
        ),
        (
            "restored (recovery done)",
            p.restored_at_ms,
            p.time_to_restore_ms,
        ),
        (
            "resolved (validated)",
            p.resolved_at_ms,
            p.time_to_resolve_ms,
        ),
    ] {
        line(format!(
            "| {name} | {} | {} |",
            at.map_or_else(|| "—".to_owned(), when),
            since.map_or_else(|| "—".to_owned(), human)
        ));
    }
    line(format!("\nMTTR objective: {}.", human(f.mttr_ms)));
    line(String::new());

    // Timeline.
    line("## Timeline".into());
    line(String::new());
    let mut items: Vec<(Millis, String)> = Vec::new();
    for e in f.events {
        items.push((e.at_ms, format!("rollout: {}", e.kind.as_str())));
    }
    for s in &rec.steps {
        if let Some(at) = s.finished_at_ms.or(s.started_at_ms) {
            items.push((
                at,
                format!(
                    "recovery step {} `{}`: {:?}",
                    s.index + 1,
                    s.step.name(),
                    s.status
                )
                .to_lowercase(),
            ));
        }
    }
    if let Some(v) = &rec.validation
        && let Some(at) = v.finished_at_ms
    {
        items.push((
            at,
            format!("validation {} after {} attempt(s)", v.status, v.attempts),
        ));
    }
    if let Some(i) = f.incident {
        for e in &i.history {
            items.push((
                e.at_ms,
                format!("incident {} by {}: {}", e.kind, e.actor, e.text),
            ));
        }
    }
    for run in f.runbook_runs {
        for e in &run.history {
            items.push((e.at_ms, format!("runbook {}: {}", run.runbook, e.text)));
        }
    }
    items.sort_by_key(|(at, _)| *at);
    for (at, text) in &items {
        let offset = *at - p.exposed_at_ms;
        line(format!(
            "- {} ({}{}) {text}",
            when(*at),
            if offset < 0 { "−" } else { "+" },
            human(offset.abs())
        ));
    }
    line(String::new());

    // Detection.
    line("## Detection".into());
    line(String::new());
    match p.time_to_detect_ms {
        Some(t) if automatic => line(format!(
            "Detected automatically ({decided}) {} after the first exposure: {}.",
            human(t),
            rec.reason
        )),
        _ => line(format!(
            "Detected by a person ({}), not by a signal: a coverage gap.",
            if decided == "manual" {
                rec.actor.as_str()
            } else {
                decided.as_str()
            }
        )),
    }
    line(String::new());

    // Recovery steps.
    line("## Recovery steps".into());
    line(String::new());
    line("| # | step | status | attempts | took |".into());
    line("|---|---|---|---|---|".into());
    for s in &rec.steps {
        let took = match (s.started_at_ms, s.finished_at_ms) {
            (Some(a), Some(b)) => human(b - a),
            _ => "—".to_owned(),
        };
        line(format!(
            "| {} | {} | {:?} | {} | {took} |",
            s.index + 1,
            s.step.name(),
            s.status,
            s.attempts
        ));
    }
    if let Some(v) = &rec.validation {
        line(format!(
            "\nPost-recovery validation: {} after {} attempt(s).",
            v.status, v.attempts
        ));
        for c in &v.checks {
            line(format!(
                "- {} `{}`: {} ({}; {})",
                c.kind,
                c.name,
                if c.passed { "passed" } else { "FAILED" },
                human(c.took_ms),
                c.detail
            ));
        }
    }
    line(String::new());

    // Deviations.
    let deviations: Vec<_> = f
        .runbook_runs
        .iter()
        .flat_map(|r| r.deviations.iter().map(move |d| (r, d)))
        .collect();
    line("## Deviations from runbooks".into());
    line(String::new());
    if deviations.is_empty() {
        line(if f.runbook_runs.is_empty() {
            "No runbook was run for this recovery.".to_owned()
        } else {
            "None: every runbook was followed as written.".to_owned()
        });
    }
    for (run, d) in &deviations {
        line(format!(
            "- {} step `{}` of runbook {} by {}: {} ({})",
            d.kind, d.step, run.runbook, d.actor, d.reason, d.detail
        ));
    }
    line(String::new());

    // Went well / badly.
    let mut well = Vec::new();
    let mut badly = Vec::new();
    if automatic && let Some(t) = p.time_to_detect_ms {
        well.push(format!(
            "Detected automatically, {} after exposure.",
            human(t)
        ));
    }
    if !automatic {
        badly.push("No signal caught it: a person had to.".to_owned());
    }
    match p.time_to_restore_ms {
        Some(t) if t <= f.mttr_ms => well.push(format!(
            "Restored in {}, within the MTTR objective of {}.",
            human(t),
            human(f.mttr_ms)
        )),
        Some(t) => badly.push(format!(
            "Restored in {}, over the MTTR objective of {}.",
            human(t),
            human(f.mttr_ms)
        )),
        None => {}
    }
    let retried: Vec<_> = rec.steps.iter().filter(|s| s.attempts > 1).collect();
    if retried.is_empty() && rec.steps.iter().all(|s| s.status == StepStatus::Done) {
        well.push("Every recovery step succeeded on its first attempt.".to_owned());
    }
    for s in &retried {
        badly.push(format!(
            "Step {} `{}` needed {} attempts.",
            s.index + 1,
            s.step.name(),
            s.attempts
        ));
    }
    if let Some(v) = &rec.validation {
        match v.status {
            crate::validation::ValidationStatus::Passed if v.attempts <= 1 => {
                well.push("The post-recovery suite passed on its first attempt.".to_owned());
            }
            crate::validation::ValidationStatus::Passed => badly.push(format!(
                "The post-recovery suite needed {} attempts: residual instability after the restore.",
                v.attempts
            )),
            crate::validation::ValidationStatus::Failed => {
                badly.push("The post-recovery suite never passed.".to_owned());
            }
            crate::validation::ValidationStatus::NotDeclared => {
                badly.push("No post-recovery suite is declared: nothing proved the service works beyond the restore.".to_owned());
            }
            crate::validation::ValidationStatus::Pending => {}
        }
    }
    if !deviations.is_empty() {
        badly.push(format!("{} deviation(s) from runbooks.", deviations.len()));
    }
    line("## What went well".into());
    line(String::new());
    for w in &well {
        line(format!("- {w}"));
    }
    if well.is_empty() {
        line("- (nothing the records show)".into());
    }
    line(String::new());
    line("## What went badly".into());
    line(String::new());
    for b in &badly {
        line(format!("- {b}"));
    }
    if badly.is_empty() {
        line("- (nothing the records show)".into());
    }
    line(String::new());

    // Action items.
    let mut items = vec![ActionItem {
        owner: owner.clone(),
        text: format!("Find and fix why {release} failed ({}).", rec.reason),
    }];
    if !automatic {
        items.push(ActionItem {
            owner: owner.clone(),
            text:
                "Coverage gap: add or tune a signal so the judge catches this before a person does."
                    .into(),
        });
    }
    if p.time_to_restore_ms.is_some_and(|t| t > f.mttr_ms) {
        items.push(ActionItem {
            owner: owner.clone(),
            text: format!(
                "Bring recovery under the MTTR objective of {}.",
                human(f.mttr_ms)
            ),
        });
    }
    if rec.validation.as_ref().map(|v| v.status)
        == Some(crate::validation::ValidationStatus::NotDeclared)
    {
        items.push(ActionItem {
            owner: owner.clone(),
            text: format!(
                "Declare a post-recovery suite (`validation:`) for {}.",
                rec.service
            ),
        });
    }
    for (run, d) in &deviations {
        items.push(ActionItem {
            owner: owner.clone(),
            text: format!(
                "Update runbook {}: {} step `{}` ({}).",
                run.runbook, d.kind, d.step, d.reason
            ),
        });
    }
    for run in f.runbook_runs {
        for s in run
            .steps
            .iter()
            .filter(|s| s.command.is_none() && s.status == crate::runbook_run::StepStatus::Done)
        {
            items.push(ActionItem {
                owner: owner.clone(),
                text: format!(
                    "Automate: {} (manual step `{}` of runbook {}).",
                    s.title, s.id, run.runbook
                ),
            });
        }
    }
    line("## Action items".into());
    line(String::new());
    for a in &items {
        line(format!("- [ ] {} — owner: {}", a.text, a.owner));
    }
    let due = p.resolved_at_ms.map(|r| r + f.due_after_ms);
    if let Some(d) = due {
        line(format!(
            "\nThis post-mortem is due by {} ({} after resolution).",
            when(d),
            human(f.due_after_ms)
        ));
    }
    Draft {
        recovery_id: rec.id.clone(),
        phases: p,
        impact: imp,
        action_items: items,
        due_at_ms: due,
        markdown: md,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::fixtures::{event, rollout};
    use crate::model::{Phase, RecoveryStatus, RecoveryStep};
    use crate::recovery::StepKind;
    use crate::validation::RecoveryValidation;
    use backstop_judge::{ArmCounts, Interval};

    fn arm(requests: u64, errors: u64) -> ArmCounts {
        ArmCounts {
            requests,
            errors,
            latency_le_ms: None,
        }
    }

    fn recovery(attempts: i64) -> Recovery {
        let mut validation = RecoveryValidation::begin(20_000, Some(60_000));
        validation.attempted(vec![], 26_000);
        Recovery {
            id: "rec-1".into(),
            rollout_id: Some("r1".into()),
            service: "svc".into(),
            env: "prod".into(),
            actor: "controller".into(),
            trigger: "rollout.failed".into(),
            reason: "error ratio 9 %".into(),
            status: RecoveryStatus::Done,
            created_at_ms: 11_000,
            finished_at_ms: Some(20_000),
            steps: vec![RecoveryStep {
                index: 0,
                idempotency_key: "k".into(),
                step: StepKind::ShiftTraffic {
                    instance_id: "i-1".into(),
                    release_id: "svc@v1".into(),
                },
                status: crate::model::StepStatus::Done,
                attempts,
                started_at_ms: Some(11_000),
                finished_at_ms: Some(12_000),
                outcome: None,
            }],
            validation: Some(validation),
            postmortem: None,
        }
    }

    #[test]
    fn a_draft_is_written_from_the_numbers_recorded() {
        let r = rollout(Phase::Recovered);
        let mut failed = event(10_000, EventKind::RolloutFailed);
        failed.detail = serde_json::json!({"trigger": "judge"});
        let events = vec![
            event(1_000, EventKind::CanaryFirstRequest),
            failed,
            event(12_000, EventKind::TrafficRestored),
        ];
        let intervals = vec![
            Interval {
                t: 1.0,
                baseline: arm(900, 9),
                canary: arm(100, 10),
                log_lines: None,
            },
            Interval {
                t: 2.0,
                baseline: arm(900, 9),
                canary: arm(100, 10),
                log_lines: None,
            },
        ];
        let rec = recovery(1);
        let facts = Facts {
            recovery: &rec,
            owner: "team-svc",
            mttr_ms: 15_000,
            rollout: Some(&r),
            events: &events,
            intervals: &intervals,
            incident: None,
            runbook_runs: &[],
            due_after_ms: DUE_AFTER_MS,
        };
        let d = draft(&facts);
        assert_eq!(d.phases.time_to_detect_ms, Some(9_000));
        assert_eq!(d.phases.time_to_mitigate_ms, Some(11_000));
        assert_eq!(d.phases.time_to_restore_ms, Some(19_000));
        assert_eq!(d.phases.time_to_resolve_ms, Some(25_000));
        assert_eq!(
            (d.impact.requests, d.impact.errors, d.impact.excess_errors),
            (200, 20, 18)
        );
        assert_eq!(d.due_at_ms, Some(26_000 + DUE_AFTER_MS));
        let md = &d.markdown;
        assert!(
            md.contains("Detected automatically (judge) 9.0 s after the first exposure"),
            "{md}"
        );
        assert!(
            md.contains("Restored in 19.0 s, over the MTTR objective of 15.0 s."),
            "{md}"
        );
        assert!(md.contains("| resolved (validated) |"), "{md}");
        assert!(
            md.contains("Bring recovery under the MTTR objective"),
            "{md}"
        );
        assert!(md.contains("owner: team-svc"), "{md}");
        assert!(md.contains("(48 h 00 min after resolution)"), "{md}");
        // Overdue once the due time passed, until someone says it is done.
        assert!(!overdue(&rec, DUE_AFTER_MS, 26_000 + DUE_AFTER_MS));
        assert!(overdue(&rec, DUE_AFTER_MS, 26_001 + DUE_AFTER_MS));
        let mut done = rec.clone();
        done.postmortem = Some(PostmortemRecord {
            done_at_ms: Some(30_000),
            ..PostmortemRecord::default()
        });
        assert!(!overdue(&done, DUE_AFTER_MS, 26_001 + DUE_AFTER_MS));

        // A person's rollback is a coverage gap; a retried step is what went badly.
        let rec = recovery(3);
        let manual = Facts {
            recovery: &rec,
            events: &[],
            rollout: None,
            intervals: &[],
            ..facts
        };
        let md = draft(&manual).markdown;
        assert!(md.contains("Detected by a person"), "{md}");
        assert!(md.contains("Coverage gap:"), "{md}");
        assert!(
            md.contains("Step 1 `shift_traffic` needed 3 attempts."),
            "{md}"
        );
    }
}
