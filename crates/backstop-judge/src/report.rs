//! The report shape shared by every judge (`backstop analyze --output json`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A final verdict, for the whole analysis or one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No evidence of a regression (so far, or by the end of the data).
    Pass,
    /// The canary is worse than the baseline: roll back.
    Fail,
    /// The judge could not decide (too little data, or an environmental degradation).
    Inconclusive,
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A time in seconds as JSON: whole seconds print as integers (`35`, not `35.0`).
pub(crate) fn time_json(t: Option<f64>) -> Value {
    match t {
        None => Value::Null,
        Some(t) if t.is_finite() && t.fract() == 0.0 && t.abs() < 9.0e15 => json!(t as i64),
        Some(t) => num(t),
    }
}

/// A number as JSON; non-finite values (which JSON cannot carry) become `null`.
pub(crate) fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// One entry of `signals`.
pub(crate) fn signal_json(
    signal: &str,
    verdict: Verdict,
    decided_at: Option<f64>,
    evidence: Value,
) -> Value {
    let mut out = json!({"signal": signal, "verdict": verdict.as_str(), "decided_at_s": time_json(decided_at)});
    out["evidence"] = evidence;
    out
}

/// The whole report.
pub(crate) fn report_json(
    judge: &str,
    verdict: Verdict,
    decided_at: Option<f64>,
    signals: Vec<Value>,
) -> Value {
    let mut out =
        json!({"judge": judge, "verdict": verdict.as_str(), "decided_at_s": time_json(decided_at)});
    out["signals"] = Value::Array(signals);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_print_as_integers_and_non_finite_as_null() {
        assert_eq!(time_json(Some(35.0)).to_string(), "35");
        assert_eq!(time_json(Some(2.5)).to_string(), "2.5");
        assert_eq!(time_json(None), Value::Null);
        assert_eq!(num(f64::INFINITY), Value::Null);
    }
}
