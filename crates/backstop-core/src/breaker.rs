//! The global circuit breaker: when `trips_after` rollouts fail within `within` in one scope
//! (an environment, or everything), every progressive rollout in that scope pauses until a
//! person resets the breaker. Pure: the caller passes the failures it has stored.

use crate::Millis;
use crate::model::BreakerTrip;
use crate::named::UnknownValue;

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

/// What one trip covers: the rollouts into one environment, or all of them. Stored and served
/// as `env:<name>` or `all`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TripScope {
    Env(String),
    All,
}

impl TripScope {
    /// The scope a failure in `env` counts towards: everything with `scope_is_all`, else `env`.
    #[must_use]
    pub fn of_failure_in(scope_is_all: bool, env: &str) -> Self {
        if scope_is_all {
            Self::All
        } else {
            Self::Env(env.to_string())
        }
    }

    /// Whether a rollout in `env` is covered.
    #[must_use]
    pub fn covers(&self, env: &str) -> bool {
        match self {
            Self::All => true,
            Self::Env(name) => name == env,
        }
    }
}

const ALL: &str = "all";
const ENV_PREFIX: &str = "env:";

/// Pads like a string, so `{:<12}` lines up as it did when scopes were strings.
impl std::fmt::Display for TripScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.pad(ALL),
            Self::Env(name) => f.pad(&format!("{ENV_PREFIX}{name}")),
        }
    }
}

impl std::str::FromStr for TripScope {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == ALL {
            return Ok(Self::All);
        }
        s.strip_prefix(ENV_PREFIX)
            .map(|name| Self::Env(name.to_string()))
            .ok_or_else(|| UnknownValue {
                expected: &[ALL, "env:<name>"],
                got: s.to_string(),
            })
    }
}

impl serde::Serialize for TripScope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TripScope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Should the breaker for `scope` trip now? `failures` are (time, environment) of failed
/// rollouts; only those in scope and inside the window count.
pub fn should_trip(
    scope: &TripScope,
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
        .filter(|(at, env)| scope.covers(env) && *at <= now && now - *at <= within_ms)
        .count();
    recent >= trips_after as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(at: Millis, env: &str) -> (Millis, String) {
        (at, env.to_string())
    }

    fn scope(text: &str) -> TripScope {
        text.parse().expect("scope")
    }

    #[test]
    fn trips_on_the_kth_failure_inside_the_window() {
        let fails = [f(0, "prod"), f(10, "prod")];
        assert!(!should_trip(&scope("env:prod"), &fails, 20, 3, 100));
        let fails = [f(0, "prod"), f(10, "prod"), f(20, "prod")];
        assert!(should_trip(&scope("env:prod"), &fails, 20, 3, 100));
    }

    #[test]
    fn three_failures_within_the_window_trip_two_or_older_ones_do_not() {
        let minute = 60_000;
        let three = [f(0, "prod"), f(20_000, "prod"), f(40_000, "prod")];
        assert!(should_trip(&scope("env:prod"), &three, 40_000, 3, minute));
        assert!(!should_trip(
            &scope("env:prod"),
            &three[..2],
            40_000,
            3,
            minute
        ));
        // The first failure left the window: two remain.
        assert!(!should_trip(&scope("env:prod"), &three, 60_001, 3, minute));
        // A failure after `now` (a clock step back) does not count either.
        assert!(!should_trip(&scope("env:prod"), &three, 20_000, 3, minute));
    }

    #[test]
    fn a_breaker_pause_is_recognised_by_its_reason() {
        let trip = crate::fixtures::trip("env:prod");
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
        assert!(!should_trip(&scope("env:prod"), &fails, 520, 3, 100));
        assert!(should_trip(&scope("all"), &fails, 520, 3, 100));
        assert!(
            scope("all").covers("x") && scope("env:x").covers("x") && !scope("env:x").covers("y")
        );
    }

    #[test]
    fn scopes_read_and_write_as_env_name_or_all() {
        for text in ["all", "env:prod", "env:"] {
            assert_eq!(scope(text).to_string(), text);
            let json = serde_json::to_string(&scope(text)).expect("json");
            assert_eq!(json, format!("{text:?}"));
            assert_eq!(
                serde_json::from_str::<TripScope>(&json).expect("parse"),
                scope(text)
            );
        }
        assert_eq!(
            TripScope::of_failure_in(false, "prod"),
            TripScope::Env("prod".into())
        );
        assert_eq!(TripScope::of_failure_in(true, "prod"), TripScope::All);
        let err = "prod".parse::<TripScope>().expect_err("no prefix");
        assert_eq!(err.to_string(), r#""prod" is not one of all, env:<name>"#);
    }
}
