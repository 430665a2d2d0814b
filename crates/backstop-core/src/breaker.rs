//! The global circuit breaker: when `trips_after` rollouts fail within `within` in one scope
//! (an environment, or everything), every progressive rollout in that scope pauses until a
//! person resets the breaker. Pure: the caller passes the failures it has stored.

use crate::Millis;

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
