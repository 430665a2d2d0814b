//! Partial failures: some, not all, of a version's instances failing (practice 3.3). A version
//! runs as `run.instances` instances; the first has the id the environment or rollout records,
//! the others are named after it ([`replica_id`]). Pure: the controller probes each instance and
//! asks [`assess`] whether what it found is a partial failure.

use serde::Serialize;

/// The most instances of one version (`run.instances`).
pub const MAX_INSTANCES: u32 = 32;

/// The id of instance `k` (1-based) of the version whose first instance is `primary`: the first
/// is `primary` itself, the others `{primary}-r{k}`.
#[must_use]
pub fn replica_id(primary: &str, k: u32) -> String {
    if k <= 1 {
        primary.to_owned()
    } else {
        format!("{primary}-r{k}")
    }
}

/// The ids of all `n` instances of the version whose first instance is `primary`.
#[must_use]
pub fn replica_ids(primary: &str, n: u32) -> Vec<String> {
    (1..=n.max(1)).map(|k| replica_id(primary, k)).collect()
}

/// True when `id` is a further instance (`{primary}-r{k}`, k ≥ 2) of `primary`.
#[must_use]
pub fn is_replica_of(id: &str, primary: &str) -> bool {
    id.strip_prefix(primary)
        .and_then(|rest| rest.strip_prefix("-r"))
        .and_then(|k| k.parse::<u32>().ok())
        .is_some_and(|k| k >= 2 && replica_id(primary, k) == id)
}

/// The first instance of the version `id` is an instance of: `id` itself unless it is a
/// further instance `{primary}-r{k}`.
#[must_use]
pub fn primary_of(id: &str) -> &str {
    match id.rsplit_once("-r") {
        Some((primary, _)) if is_replica_of(id, primary) => primary,
        _ => id,
    }
}

/// One instance's probe result: `None` when healthy, else what failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probed {
    pub instance: String,
    pub problem: Option<String>,
}

/// What the probes of one version's instances amount to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Assessment {
    /// Fewer than the threshold unhealthy (maybe none).
    Healthy,
    /// At least the threshold, not all: `unhealthy` of `of` instances, with their problems.
    Partial { unhealthy: Vec<Probed>, of: usize },
    /// Every instance unhealthy: a plain failure of the version.
    All { of: usize },
}

/// A partial failure is `threshold` (at least 1) or more of a version's instances unhealthy, but
/// not all of them; with a single instance there is no partial failure, only failure.
#[must_use]
pub fn assess(probed: &[Probed], threshold: u32) -> Assessment {
    let unhealthy: Vec<Probed> = probed
        .iter()
        .filter(|p| p.problem.is_some())
        .cloned()
        .collect();
    let of = probed.len();
    if of > 0 && unhealthy.len() == of {
        Assessment::All { of }
    } else if !unhealthy.is_empty() && unhealthy.len() >= threshold.max(1) as usize {
        Assessment::Partial { unhealthy, of }
    } else {
        Assessment::Healthy
    }
}

impl Assessment {
    /// One line for reasons and timelines, e.g. `1 of 3 instances unhealthy (shop-prod-v2-r3:
    /// connection refused)`.
    #[must_use]
    pub fn summary(&self) -> String {
        match self {
            Assessment::Healthy => "healthy".to_owned(),
            Assessment::All { of } => format!("all {of} instances unhealthy"),
            Assessment::Partial { unhealthy, of } => {
                let which: Vec<String> = unhealthy
                    .iter()
                    .map(|p| format!("{}: {}", p.instance, p.problem.as_deref().unwrap_or("")))
                    .collect();
                format!(
                    "{} of {of} instances unhealthy ({})",
                    unhealthy.len(),
                    which.join("; ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(states: &[bool]) -> Vec<Probed> {
        states
            .iter()
            .enumerate()
            .map(|(i, ok)| Probed {
                instance: replica_id("v2", i as u32 + 1),
                problem: (!ok).then(|| "refused".to_owned()),
            })
            .collect()
    }

    #[test]
    fn replica_ids_keep_the_recorded_id_first_and_are_recognised() {
        assert_eq!(
            replica_ids("shop-prod-v2-abc", 3),
            [
                "shop-prod-v2-abc",
                "shop-prod-v2-abc-r2",
                "shop-prod-v2-abc-r3"
            ]
        );
        assert_eq!(replica_ids("x", 0), ["x"]);
        assert!(is_replica_of("x-r2", "x"));
        assert!(is_replica_of("x-r12", "x"));
        assert!(!is_replica_of("x", "x"));
        assert!(!is_replica_of("x-r1", "x"));
        assert!(!is_replica_of("x-r02", "x"));
        assert!(!is_replica_of("x-r2-r3", "x"));
        assert!(!is_replica_of("xy-r2", "x"));
        assert_eq!(primary_of("x-r2"), "x");
        assert_eq!(
            primary_of("shop-prod-v1-r2-abc123-r7"),
            "shop-prod-v1-r2-abc123"
        );
        assert_eq!(
            primary_of("shop-prod-v1-r2-abc123"),
            "shop-prod-v1-r2-abc123"
        );
        assert_eq!(primary_of("x-r1"), "x-r1");
    }

    #[test]
    fn k_of_n_unhealthy_is_partial_and_all_of_them_is_failure() {
        assert_eq!(assess(&probed(&[true, true, true]), 1), Assessment::Healthy);
        let one_bad = assess(&probed(&[true, false, true]), 1);
        assert!(
            matches!(&one_bad, Assessment::Partial { unhealthy, of: 3 } if unhealthy.len() == 1)
        );
        assert_eq!(
            one_bad.summary(),
            "1 of 3 instances unhealthy (v2-r2: refused)"
        );
        assert_eq!(
            assess(&probed(&[true, false, true]), 2),
            Assessment::Healthy
        );
        assert!(matches!(
            assess(&probed(&[false, false, true]), 2),
            Assessment::Partial { of: 3, .. }
        ));
        assert_eq!(
            assess(&probed(&[false, false, false]), 1),
            Assessment::All { of: 3 }
        );
        assert_eq!(assess(&probed(&[false]), 1), Assessment::All { of: 1 });
        assert_eq!(assess(&probed(&[true]), 1), Assessment::Healthy);
    }
}
