//! DORA's five software delivery figures (practice 7.2) per service and environment over a
//! window, from what Backstop recorded of each rollout, graded against the published
//! performance clusters (DORA 2024, as tabulated in `reference/incident.md`):
//!
//! - **deployment frequency**: rollouts that reached users (promoted or rolled back) per day;
//! - **lead time** (where known): release registered → promoted (Backstop sees the release,
//!   not the commit: this is the part of DORA's lead time that happens after the build);
//! - **change fail rate**: rolled back ÷ deployed;
//! - **failed deployment recovery time**: first exposure → traffic back on the last known good
//!   (median), and → resolved by the post-recovery suite when one ran;
//! - **rework rate**: deployments started while an incident was open in the environment
//!   (fix-forwards, unplanned) ÷ deployed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

/// One rollout as the figures need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub service: String,
    pub env: String,
    pub started_at_ms: Millis,
    /// When its release was registered.
    pub release_at_ms: Option<Millis>,
    /// When it was promoted (it succeeded).
    pub promoted_at_ms: Option<Millis>,
    /// It was rolled back (by the judge, a breaker, or a person).
    pub failed: bool,
    /// First exposure → traffic restored, for a failed one.
    pub restore_ms: Option<Millis>,
    /// First exposure → resolved by the post-recovery suite, for a failed one.
    pub resolve_ms: Option<Millis>,
    /// Started while an incident was open in its environment.
    pub during_incident: bool,
}

/// A performance level of the DORA clusters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Elite,
    High,
    Medium,
    Low,
}

/// One figure: its value and the cluster it falls in (none without data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figure {
    /// The value in the figure's unit (per day, ms, or a ratio 0–1).
    pub value: Option<f64>,
    pub level: Option<Level>,
    /// The cluster bounds this was graded against, for people.
    pub scale: String,
}

/// The figures of one service in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    pub service: String,
    pub env: String,
    pub window_days: f64,
    pub deployments: u64,
    pub failed: u64,
    /// Deployments per day.
    pub deployment_frequency: Figure,
    /// Release registered → promoted, median ms.
    pub lead_time_ms: Figure,
    /// Rolled back ÷ deployed.
    pub change_fail_rate: Figure,
    /// First exposure → traffic restored, median ms.
    pub failed_deployment_recovery_ms: Figure,
    /// First exposure → resolved by the post-recovery suite, median ms (not graded: DORA has
    /// no cluster for it).
    pub time_to_resolve_ms: Option<f64>,
    /// Started during an open incident ÷ deployed (not graded: DORA publishes no bounds).
    pub rework_rate: Option<f64>,
}

fn median(mut xs: Vec<Millis>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_unstable();
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2] as f64
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) as f64 / 2.0
    })
}

fn frequency_level(per_day: f64) -> Level {
    if per_day >= 1.0 {
        Level::Elite
    } else if per_day >= 1.0 / 7.0 {
        Level::High
    } else if per_day >= 1.0 / 30.0 {
        Level::Medium
    } else {
        Level::Low
    }
}

fn duration_level(ms: f64, elite: Millis, high: Millis, medium: Millis) -> Level {
    if ms < elite as f64 {
        Level::Elite
    } else if ms < high as f64 {
        Level::High
    } else if ms < medium as f64 {
        Level::Medium
    } else {
        Level::Low
    }
}

fn fail_rate_level(rate: f64) -> Level {
    // 2024 clusters: elite 5 %, medium 10 %, high 20 %, low 40 %; graded by the nearest bound
    // from below, in the order of the rates (the 2024 report's medium/high inversion aside).
    if rate <= 0.05 {
        Level::Elite
    } else if rate <= 0.10 {
        Level::Medium
    } else if rate <= 0.20 {
        Level::High
    } else {
        Level::Low
    }
}

/// The figures per (service, environment) of the deployments started in
/// `[now - window_ms, now]`.
#[must_use]
pub fn figures(deployments: &[Deployment], now: Millis, window_ms: Millis) -> Vec<Figures> {
    let mut by: BTreeMap<(String, String), Vec<&Deployment>> = BTreeMap::new();
    for d in deployments {
        if d.started_at_ms >= now - window_ms && d.started_at_ms <= now {
            by.entry((d.service.clone(), d.env.clone()))
                .or_default()
                .push(d);
        }
    }
    let days = window_ms as f64 / DAY as f64;
    by.into_iter()
        .map(|((service, env), ds)| {
            let deployed = ds
                .iter()
                .filter(|d| d.failed || d.promoted_at_ms.is_some())
                .count() as u64;
            let failed = ds.iter().filter(|d| d.failed).count() as u64;
            let per_day = deployed as f64 / days;
            let lead = median(
                ds.iter()
                    .filter_map(|d| Some(d.promoted_at_ms? - d.release_at_ms?))
                    .filter(|ms| *ms >= 0)
                    .collect(),
            );
            let restore = median(ds.iter().filter_map(|d| d.restore_ms).collect());
            let resolve = median(ds.iter().filter_map(|d| d.resolve_ms).collect());
            let ratio = |n: u64| (deployed > 0).then(|| n as f64 / deployed as f64);
            let cfr = ratio(failed);
            let rework = ratio(
                ds.iter()
                    .filter(|d| d.during_incident && (d.failed || d.promoted_at_ms.is_some()))
                    .count() as u64,
            );
            Figures {
                service,
                env,
                window_days: days,
                deployments: deployed,
                failed,
                deployment_frequency: Figure {
                    value: Some(per_day),
                    level: (deployed > 0).then(|| frequency_level(per_day)),
                    scale: "elite ≥ 1/day (on demand), high ≥ 1/week, medium ≥ 1/month, low less"
                        .into(),
                },
                lead_time_ms: Figure {
                    value: lead,
                    level: lead.map(|ms| duration_level(ms, DAY, 7 * DAY, 30 * DAY)),
                    scale: "elite < 1 day, high < 1 week, medium < 1 month, low more".into(),
                },
                change_fail_rate: Figure {
                    value: cfr,
                    level: cfr.map(fail_rate_level),
                    scale: "elite ≤ 5 %, medium ≤ 10 %, high ≤ 20 %, low more (DORA 2024)".into(),
                },
                failed_deployment_recovery_ms: Figure {
                    value: restore,
                    level: restore.map(|ms| duration_level(ms, HOUR, DAY, 7 * DAY)),
                    scale: "elite < 1 hour, high/medium < 1 day, low more".into(),
                },
                time_to_resolve_ms: resolve,
                rework_rate: rework,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(day: i64, failed: bool) -> Deployment {
        Deployment {
            service: "shop".into(),
            env: "prod".into(),
            started_at_ms: day * DAY,
            release_at_ms: Some(day * DAY - 2 * HOUR),
            promoted_at_ms: (!failed).then_some(day * DAY + HOUR),
            failed,
            restore_ms: failed.then_some(30_000),
            resolve_ms: failed.then_some(90_000),
            during_incident: false,
        }
    }

    #[test]
    fn figures_are_computed_per_environment_and_graded() {
        // 20 deployments in 10 days, 2 rolled back, one a fix-forward during an incident.
        let mut ds: Vec<Deployment> = (0..20).map(|i| dep(i / 2, i % 10 == 3)).collect();
        ds[5].during_incident = true;
        let mut other = dep(1, false);
        other.env = "staging".into();
        ds.push(other);
        let mut old = dep(-40, true);
        old.started_at_ms = -40 * DAY;
        ds.push(old);
        let f = figures(&ds, 10 * DAY, 10 * DAY);
        assert_eq!(f.len(), 2);
        let prod = &f[0];
        assert_eq!(
            (prod.env.as_str(), prod.deployments, prod.failed),
            ("prod", 20, 2)
        );
        assert_eq!(prod.deployment_frequency.value, Some(2.0));
        assert_eq!(prod.deployment_frequency.level, Some(Level::Elite));
        assert_eq!(prod.change_fail_rate.value, Some(0.1));
        assert_eq!(prod.change_fail_rate.level, Some(Level::Medium));
        assert_eq!(prod.lead_time_ms.value, Some(3.0 * HOUR as f64));
        assert_eq!(prod.failed_deployment_recovery_ms.level, Some(Level::Elite));
        assert_eq!(prod.time_to_resolve_ms, Some(90_000.0));
        assert_eq!(prod.rework_rate, Some(0.05));
        let staging = &f[1];
        assert_eq!(staging.deployment_frequency.level, Some(Level::Medium));
        assert_eq!(staging.change_fail_rate.level, Some(Level::Elite));
        assert_eq!(staging.failed_deployment_recovery_ms.value, None);
    }
}
