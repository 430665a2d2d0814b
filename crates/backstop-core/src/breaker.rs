//! The global circuit breaker: when `trips_after` rollouts fail within `within` in one scope
//! (an environment, or everything), every progressive rollout in that scope pauses until a
//! person resets the breaker. Pure: the caller passes the failures it has stored.

use crate::Millis;
use crate::model::BreakerTrip;

/// Reason prefix of rollouts paused by the breaker (they resume when it is reset).
const PAUSE_PREFIX: &str = "circuit breaker open";

/// Why a progressive rollout is paused by `trip`.
pub fn pause_reason(trip: &BreakerTrip) -> String {
    format!(
        "{PAUSE_PREFIX} for {} since {}; `backstop breaker reset --scope {}` resumes it",
        trip.scope,
        crate::format_ms(trip.tripped_at_ms),
        trip.scope
    )
}

/// Whether a paused rollout's `reason` says the breaker paused it.
pub fn paused_by_breaker(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.starts_with(PAUSE_PREFIX))
}

/// Where a breaker applies: `env:<name>` or `all`.
pub fn scope_key(scope_is_all: bool, env: &str) -> String {
    if scope_is_all {
        "all".to_string()
    } else {
        format!("env:{env}")
    }
}

/// Whether a rollout in `env` is covered by a trip of scope `key`.
pub fn covers(key: &str, env: &str) -> bool {
    key == "all" || key.strip_prefix("env:") == Some(env)
}

/// Should the breaker for `key` trip now? `failures` are (time, environment) of failed
/// rollouts; only those in scope and inside the window count.
pub fn should_trip(
    key: &str,
    failures: &[(Millis, String)],
    now: Millis,
    trips_after: u32,
    within_ms: Millis,
) -> bool {
    if trips_after == 0 {
        return false;
    }
    let recent = failures
        .iter()
        .filter(|(at, env)| covers(key, env) && *at <= now && now - *at <= within_ms)
        .count();
    recent >= trips_after as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(at: Millis, env: &str) -> (Millis, String) {
        (at, env.to_string())
    }

    #[test]
    fn trips_on_the_kth_failure_inside_the_window() {
        let fails = [f(0, "prod"), f(10, "prod")];
        assert!(!should_trip("env:prod", &fails, 20, 3, 100));
        let fails = [f(0, "prod"), f(10, "prod"), f(20, "prod")];
        assert!(should_trip("env:prod", &fails, 20, 3, 100));
    }

    #[test]
    fn three_failures_within_the_window_trip_two_or_older_ones_do_not() {
        let minute = 60_000;
        let three = [f(0, "prod"), f(20_000, "prod"), f(40_000, "prod")];
        assert!(should_trip("env:prod", &three, 40_000, 3, minute));
        assert!(!should_trip("env:prod", &three[..2], 40_000, 3, minute));
        // The first failure left the window: two remain.
        assert!(!should_trip("env:prod", &three, 60_001, 3, minute));
        // A failure after `now` (a clock step back) does not count either.
        assert!(!should_trip("env:prod", &three, 20_000, 3, minute));
    }

    #[test]
    fn a_breaker_pause_is_recognised_by_its_reason() {
        let trip = BreakerTrip {
            id: "t".into(),
            scope: "env:prod".into(),
            tripped_at_ms: 0,
            failures: serde_json::json!([]),
            reset_at_ms: None,
            reset_by: None,
            reset_reason: None,
        };
        let reason = pause_reason(&trip);
        assert_eq!(
            reason,
            "circuit breaker open for env:prod since 1970-01-01T00:00:00.000Z; `backstop breaker reset --scope env:prod` resumes it"
        );
        assert!(paused_by_breaker(Some(&reason)));
        assert!(!paused_by_breaker(Some("the judge could not attribute")));
        assert!(!paused_by_breaker(None));
    }

    #[test]
    fn old_failures_and_other_scopes_do_not_count() {
        let fails = [
            f(0, "prod"),
            f(500, "prod"),
            f(510, "staging"),
            f(520, "prod"),
        ];
        assert!(!should_trip("env:prod", &fails, 520, 3, 100));
        assert!(should_trip("all", &fails, 520, 3, 100));
        assert!(covers("all", "x") && covers("env:x", "x") && !covers("env:x", "y"));
    }
}
