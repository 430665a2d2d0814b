//! The tier policy: what a service's criticality (tier 0, most critical, to 3) implies when
//! nothing else is configured — its recovery objectives and what each severity of failed
//! analysis does.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{DurationString, serde_duration, serde_option_duration};
use crate::severity::Severity;

/// Recovery objectives. Defaults by tier: `mttr` 15m / 1h / 4h / 24h and `rollback_sla`
/// 5m / 10m / 30m / 1h for tiers 0 / 1 / 2 / 3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Target mean time to restore service after a bad release (e.g. `15m`).
    #[serde(
        default,
        with = "serde_option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub mttr: Option<Duration>,
    /// Longest allowed time from detection to traffic restored (e.g. `5m`); at most `mttr`.
    #[serde(
        default,
        with = "serde_option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_sla: Option<Duration>,
}

impl Objectives {
    /// The default objectives of a tier (0..=3); tiers above 3 get the tier-3 values.
    #[must_use]
    pub fn for_tier(tier: u8) -> Self {
        let (mttr, sla) = match tier {
            0 => (15 * 60, 5 * 60),
            1 => (60 * 60, 10 * 60),
            2 => (4 * 60 * 60, 30 * 60),
            _ => (24 * 60 * 60, 60 * 60),
        };
        Self {
            mttr: Some(Duration::from_secs(mttr)),
            rollback_sla: Some(Duration::from_secs(sla)),
        }
    }
}

/// What a failed analysis of a given severity does: `rollback`, `notify`, or
/// `{rollback_unless_acknowledged: 2m}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeverityAction {
    /// Roll back now.
    Rollback,
    /// Roll back unless a human acknowledges within this time (e.g. `2m`).
    RollbackUnlessAcknowledged(
        #[serde(with = "serde_duration")]
        #[schemars(with = "DurationString")]
        Duration,
    ),
    /// Notify only; nothing is rolled back automatically.
    Notify,
}

impl SeverityAction {
    /// The name used in the config (`rollback`, `rollback_unless_acknowledged`, `notify`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rollback => "rollback",
            Self::RollbackUnlessAcknowledged(_) => "rollback_unless_acknowledged",
            Self::Notify => "notify",
        }
    }
}

/// What each severity of failed analysis does; unset ones take the tier default (all three are
/// set after parsing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityPolicy {
    /// Workflow for a critical failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SeverityAction")]
    pub critical: Option<SeverityAction>,
    /// Workflow for a major failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SeverityAction")]
    pub major: Option<SeverityAction>,
    /// Workflow for a minor failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SeverityAction")]
    pub minor: Option<SeverityAction>,
}

impl SeverityPolicy {
    /// The defaults of a tier: tiers 0 and 1 roll back on everything; tier 2: critical
    /// rollback, major rollback unless acknowledged within 5m, minor notify; tier 3 (and above):
    /// critical rollback unless acknowledged within 5m, major and minor notify.
    #[must_use]
    pub fn for_tier(tier: u8) -> Self {
        use SeverityAction::{Notify, Rollback, RollbackUnlessAcknowledged};
        let ack = RollbackUnlessAcknowledged(Duration::from_secs(5 * 60));
        let (critical, major, minor) = match tier {
            0 | 1 => (Rollback, Rollback, Rollback),
            2 => (Rollback, ack, Notify),
            _ => (ack, Notify, Notify),
        };
        Self {
            critical: Some(critical),
            major: Some(major),
            minor: Some(minor),
        }
    }

    /// Every severity rolls back (regulated services).
    fn all_rollback() -> Self {
        Self {
            critical: Some(SeverityAction::Rollback),
            major: Some(SeverityAction::Rollback),
            minor: Some(SeverityAction::Rollback),
        }
    }

    /// This policy with every severity set: what was written, else the default — every
    /// severity rolls back when the service is regulated, else the tier's. A default
    /// acknowledgement window that would not end before `strictest_sla` (the service's shortest
    /// rollback SLA) becomes an immediate rollback (a written one that long is refused).
    #[must_use]
    pub fn filled(self, tier: u8, regulated: bool, strictest_sla: Option<Duration>) -> Self {
        let defaults = if regulated {
            Self::all_rollback()
        } else {
            Self::for_tier(tier)
        };
        let fit = |action: Option<SeverityAction>| match (action, strictest_sla) {
            (Some(SeverityAction::RollbackUnlessAcknowledged(ack)), Some(sla)) if ack >= sla => {
                Some(SeverityAction::Rollback)
            }
            (other, _) => other,
        };
        Self {
            critical: self.critical.or(fit(defaults.critical)),
            major: self.major.or(fit(defaults.major)),
            minor: self.minor.or(fit(defaults.minor)),
        }
    }

    /// What a failed analysis of `severity` does: always a rollback when the service is
    /// regulated, else the action written, else the tier's default.
    #[must_use]
    pub fn action(&self, severity: Severity, tier: u8, regulated: bool) -> SeverityAction {
        if regulated {
            return SeverityAction::Rollback;
        }
        self.get(severity)
            .or_else(|| Self::for_tier(tier).get(severity))
            .unwrap_or(SeverityAction::Rollback)
    }

    /// The action written for `severity`, if any.
    #[must_use]
    pub fn get(&self, severity: Severity) -> Option<SeverityAction> {
        match severity {
            Severity::Critical => self.critical,
            Severity::Major => self.major,
            Severity::Minor => self.minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK_5M: SeverityAction =
        SeverityAction::RollbackUnlessAcknowledged(Duration::from_secs(300));

    #[test]
    fn unset_severities_take_the_tier_default() {
        let written = SeverityPolicy {
            minor: Some(SeverityAction::Rollback),
            ..SeverityPolicy::default()
        };
        let filled = written.filled(2, false, None);
        assert_eq!(filled.critical, Some(SeverityAction::Rollback));
        assert_eq!(filled.major, Some(ACK_5M));
        assert_eq!(filled.minor, Some(SeverityAction::Rollback));
        assert_eq!(written.action(Severity::Major, 2, false), ACK_5M);
        assert_eq!(
            written.action(Severity::Major, 2, true),
            SeverityAction::Rollback
        );
    }

    #[test]
    fn a_default_window_not_shorter_than_the_sla_rolls_back_at_once() {
        let filled = SeverityPolicy::default().filled(3, false, Some(Duration::from_secs(300)));
        assert_eq!(filled.critical, Some(SeverityAction::Rollback));
        assert_eq!(filled.major, Some(SeverityAction::Notify));
        let regulated = SeverityPolicy::default().filled(3, true, None);
        assert_eq!(regulated, SeverityPolicy::all_rollback());
    }
}
