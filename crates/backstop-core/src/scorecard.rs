//! Readiness scorecards (practice 7.6): per service, checks of how ready it is to be recovered,
//! each at a level. A service is at a level when every check of that level and of the levels
//! below passes.
//!
//! | level  | checks |
//! |---|---|
//! | bronze | every environment's last known good has a verified backup; a post-recovery suite (or heartbeats) is declared |
//! | silver | a passed drill within 90 days; every recovery within 90 days restored within the MTTR objective; runbooks are declared |
//! | gold   | verdicts labelled within 90 days (calibration data); change fail rate medium or better and failed deployment recovery high or better (DORA, 90 days); every recovery within 90 days resolved by its suite; no post-mortem overdue |

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::dora::{Figures, Level as DoraLevel};

/// How far back the checks look.
pub const LOOKBACK_MS: Millis = 90 * 24 * 3_600_000;

/// A readiness level, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    Bronze,
    Silver,
    Gold,
}

impl Readiness {
    /// The level as it reads on the wire: `bronze`, `silver`, `gold`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Bronze => "bronze",
            Readiness::Silver => "silver",
            Readiness::Gold => "gold",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoreCheck {
    pub name: String,
    pub level: Readiness,
    pub passed: bool,
    pub detail: String,
}

/// A service's scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scorecard {
    pub service: String,
    /// The highest level whose checks (and those below) all pass; `None` below bronze.
    pub level: Option<Readiness>,
    pub checks: Vec<ScoreCheck>,
}

/// One recovery of the lookback, as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryFacts {
    pub id: String,
    /// First exposure → restored.
    pub restore_ms: Option<Millis>,
    /// Resolved by the post-recovery suite (or without one declared).
    pub resolved: bool,
    pub suite_passed: bool,
}

/// What a scorecard is computed from.
#[derive(Debug, Clone)]
pub struct Facts {
    pub service: String,
    /// Per environment: `None` when nothing was deployed yet, else whether the last known
    /// good's backup re-verified (with why not).
    pub lkg_backups: Vec<(String, Option<Result<(), String>>)>,
    pub suite_declared: bool,
    pub heartbeats_declared: bool,
    /// When the last passed drill finished, if within the lookback.
    pub last_passed_drill_ms: Option<Millis>,
    pub mttr_ms: Millis,
    pub recoveries: Vec<RecoveryFacts>,
    pub runbooks: usize,
    pub labels: usize,
    pub dora: Vec<Figures>,
    /// Recoveries whose post-mortem is overdue.
    pub overdue_postmortems: Vec<String>,
}

fn check(name: &str, level: Readiness, passed: bool, detail: String) -> ScoreCheck {
    ScoreCheck {
        name: name.into(),
        level,
        passed,
        detail,
    }
}

/// The scorecard of `f`.
#[must_use]
pub fn score(f: &Facts) -> Scorecard {
    let human = crate::postmortem::human;
    let mut checks = Vec::new();

    let missing: Vec<String> = f
        .lkg_backups
        .iter()
        .filter_map(|(env, b)| match b {
            Some(Err(why)) => Some(format!("{env}: {why}")),
            _ => None,
        })
        .collect();
    let verified = f
        .lkg_backups
        .iter()
        .filter(|(_, b)| matches!(b, Some(Ok(()))))
        .count();
    checks.push(check(
        "lkg_backup",
        Readiness::Bronze,
        missing.is_empty(),
        if missing.is_empty() {
            format!("{verified} last known good backup(s) re-verified")
        } else {
            missing.join("; ")
        },
    ));
    checks.push(check(
        "validation",
        Readiness::Bronze,
        f.suite_declared || f.heartbeats_declared,
        match (f.suite_declared, f.heartbeats_declared) {
            (true, true) => "a post-recovery suite and heartbeats are declared".into(),
            (true, false) => "a post-recovery suite is declared".into(),
            (false, true) => "heartbeats are declared (no journeys, commands or probes)".into(),
            (false, false) => {
                "nothing proves a recovery worked beyond the restore: declare `validation:`".into()
            }
        },
    ));

    checks.push(check(
        "drill",
        Readiness::Silver,
        f.last_passed_drill_ms.is_some(),
        match f.last_passed_drill_ms {
            Some(at) => format!("last passed drill {}", crate::format_ms(at)),
            None => "no passed drill in 90 days (`backstop drill`)".into(),
        },
    ));
    let slow: Vec<String> = f
        .recoveries
        .iter()
        .filter_map(|r| match r.restore_ms {
            Some(t) if t > f.mttr_ms => Some(format!("{} took {}", r.id, human(t))),
            _ => None,
        })
        .collect();
    checks.push(check(
        "mttr",
        Readiness::Silver,
        slow.is_empty(),
        if slow.is_empty() {
            format!(
                "{} recoveries in 90 days, all within the MTTR objective of {}",
                f.recoveries.len(),
                human(f.mttr_ms)
            )
        } else {
            format!(
                "over the MTTR objective of {}: {}",
                human(f.mttr_ms),
                slow.join(", ")
            )
        },
    ));
    checks.push(check(
        "runbooks",
        Readiness::Silver,
        f.runbooks > 0,
        if f.runbooks > 0 {
            format!("{} runbook(s) declared", f.runbooks)
        } else {
            "no runbook declared (`runbooks:` in backstop.yaml)".into()
        },
    ));

    checks.push(check(
        "calibration",
        Readiness::Gold,
        f.labels > 0,
        if f.labels > 0 {
            format!(
                "{} verdict(s) labelled in 90 days (`backstop calibrate`)",
                f.labels
            )
        } else {
            "no verdict labelled in 90 days: nothing to calibrate the judge with".into()
        },
    ));
    let weak: Vec<String> = f
        .dora
        .iter()
        .filter_map(|d| {
            let cfr = d.change_fail_rate.level;
            let fdrt = d.failed_deployment_recovery_ms.level;
            let bad_cfr = cfr.is_some_and(|l| l == DoraLevel::Low);
            let bad_fdrt = fdrt.is_some_and(|l| l > DoraLevel::High);
            (bad_cfr || bad_fdrt).then(|| {
                format!(
                    "{}: change fail rate {}, recovery {}",
                    d.env,
                    cfr.map_or("n/a".into(), |l| format!("{l:?}").to_lowercase()),
                    fdrt.map_or("n/a".into(), |l| format!("{l:?}").to_lowercase())
                )
            })
        })
        .collect();
    checks.push(check(
        "dora",
        Readiness::Gold,
        weak.is_empty(),
        if weak.is_empty() {
            format!(
                "{} environment(s): change fail rate medium or better, recovery high or better",
                f.dora.len()
            )
        } else {
            weak.join("; ")
        },
    ));
    let unresolved: Vec<&str> = f
        .recoveries
        .iter()
        .filter(|r| !r.resolved)
        .map(|r| r.id.as_str())
        .collect();
    checks.push(check(
        "resolved",
        Readiness::Gold,
        unresolved.is_empty(),
        if unresolved.is_empty() {
            format!(
                "every recovery in 90 days resolved ({} by a passing suite)",
                f.recoveries.iter().filter(|r| r.suite_passed).count()
            )
        } else {
            format!("restored but not resolved: {}", unresolved.join(", "))
        },
    ));

    checks.push(check(
        "postmortems",
        Readiness::Gold,
        f.overdue_postmortems.is_empty(),
        if f.overdue_postmortems.is_empty() {
            "no post-mortem overdue".into()
        } else {
            format!("overdue: {}", f.overdue_postmortems.join(", "))
        },
    ));

    let level = [Readiness::Bronze, Readiness::Silver, Readiness::Gold]
        .into_iter()
        .take_while(|l| checks.iter().filter(|c| c.level <= *l).all(|c| c.passed))
        .last();
    Scorecard {
        service: f.service.clone(),
        level,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            service: "shop".into(),
            lkg_backups: vec![("prod".into(), Some(Ok(()))), ("staging".into(), None)],
            suite_declared: true,
            heartbeats_declared: false,
            last_passed_drill_ms: Some(1),
            mttr_ms: 60_000,
            recoveries: vec![RecoveryFacts {
                id: "rec-1".into(),
                restore_ms: Some(9_000),
                resolved: true,
                suite_passed: true,
            }],
            runbooks: 1,
            labels: 2,
            dora: vec![],
            overdue_postmortems: vec![],
        }
    }

    #[test]
    fn a_level_needs_its_checks_and_those_below() {
        assert_eq!(score(&facts()).level, Some(Readiness::Gold));
        let mut f = facts();
        f.labels = 0;
        assert_eq!(score(&f).level, Some(Readiness::Silver));
        let mut f = facts();
        f.recoveries[0].restore_ms = Some(120_000);
        let card = score(&f);
        assert_eq!(
            card.level,
            Some(Readiness::Bronze),
            "a slow recovery costs silver, and so gold"
        );
        assert!(
            card.checks
                .iter()
                .any(|c| c.name == "mttr" && c.detail.contains("rec-1 took 2 min 00 s"))
        );
        let mut f = facts();
        f.lkg_backups[0].1 = Some(Err("sha256 mismatch".into()));
        assert_eq!(score(&f).level, None);
    }
}
