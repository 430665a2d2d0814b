//! `rollout`: how a new release takes over traffic, and the per-rollout breaker.

use std::time::Duration;

use backstop_core::duration::{DurationString, serde_option_duration as option_duration};
use backstop_core::rollout::Step;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a new release takes over traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// `canary` (default): traffic moves by steps while the judge watches; `blue-green`: the new
    /// colour is warmed and checked, then takes all traffic at once; `all-at-once`: the new
    /// version takes 100 % at once.
    #[serde(default)]
    pub strategy: Strategy,
    /// Canary steps, weights strictly increasing, the last one 100; every step but the last
    /// holds for `for`. Default: 10 % for 30s, 50 % for 30s, 100 %.
    #[serde(default)]
    #[schemars(extend("default" = [{"weight": 10, "for": "30s"}, {"weight": 50, "for": "30s"}, {"weight": 100}]))]
    pub steps: Vec<Step>,
    /// How long the previous version keeps running, warm, after a promotion, so that a late
    /// rollback is one traffic switch rather than a cold start; then it is scaled down.
    /// Blue-green: default `5m`. Canary and all-at-once: default none (the previous version
    /// stops after `run.scale_down_delay`).
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_window: Option<Duration>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            strategy: Strategy::Canary,
            steps: Step::default_canary(),
            rollback_window: None,
        }
    }
}

/// Default blue-green rollback window.
pub const DEFAULT_ROLLBACK_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Rollout strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Traffic moves to the new version by steps while the judge watches.
    #[default]
    Canary,
    /// The new colour is warmed and checked, then takes all traffic at once; the old colour is
    /// kept for `rollback_window`.
    BlueGreen,
    /// The new version takes all traffic at once.
    AllAtOnce,
}

/// Per-rollout circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutBreaker {
    /// How many failed checks of the new version (health checks, analysis thresholds) halt the
    /// rollout (at least 1, default 3).
    #[schemars(range(min = 1))]
    pub failed_checks: u32,
}

impl Default for RolloutBreaker {
    fn default() -> Self {
        Self { failed_checks: 3 }
    }
}
