//! What people say a verdict really was (practice 7.5): the judge's failure confirmed or a
//! false alarm, or a promoted release that was bad after all (missed). `backstop calibrate`
//! replays labelled rollouts to measure settings against these.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::model::{Phase, Rollout};
use crate::named::string_enum;

string_enum! {
    pub enum Label {
        /// The rollback was right: the release was bad.
        Confirmed = "confirmed",
        /// The rollback was wrong: the release was fine.
        FalseAlarm = "false-alarm",
        /// The release was promoted but was bad.
        Missed = "missed",
    }
}

/// A label on a rollout's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictLabel {
    pub rollout_id: String,
    pub service: String,
    pub env: String,
    #[schema(value_type = String)]
    pub label: Label,
    pub by: String,
    pub at_ms: Millis,
    pub note: String,
}

impl Label {
    /// Whether this label fits how `r` ended: `confirmed` and `false-alarm` are about a
    /// rollback, `missed` about a promotion.
    ///
    /// # Errors
    /// Why it does not fit.
    pub fn fits(self, r: &Rollout) -> Result<(), String> {
        let rolled_back = matches!(
            r.phase,
            Phase::Recovered | Phase::Failed | Phase::Recovering
        );
        match self {
            Label::Confirmed | Label::FalseAlarm if !rolled_back => Err(format!(
                "rollout {} is {}: `{self}` labels a rollback (a promoted release that was bad is `missed`)",
                r.id, r.phase
            )),
            Label::Missed if r.phase != Phase::Promoted => Err(format!(
                "rollout {} is {}: `missed` labels a promoted release that was bad",
                r.id, r.phase
            )),
            _ => Ok(()),
        }
    }

    /// Whether the release was bad.
    #[must_use]
    pub fn bad(self) -> bool {
        matches!(self, Label::Confirmed | Label::Missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::rollout;

    #[test]
    fn labels_fit_how_the_rollout_ended() {
        let rolled_back = rollout(Phase::Recovered);
        let promoted = rollout(Phase::Promoted);
        assert!(Label::Confirmed.fits(&rolled_back).is_ok());
        assert!(Label::FalseAlarm.fits(&rolled_back).is_ok());
        assert!(
            Label::Missed
                .fits(&rolled_back)
                .unwrap_err()
                .contains("promoted")
        );
        assert!(Label::Missed.fits(&promoted).is_ok());
        assert!(
            Label::FalseAlarm
                .fits(&promoted)
                .unwrap_err()
                .contains("missed")
        );
        assert!(Label::Confirmed.bad() && Label::Missed.bad() && !Label::FalseAlarm.bad());
    }
}
