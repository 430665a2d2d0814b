//! `rollout`: canary steps, strategies and the rollback window.

use serde_json::Value;

use super::semantic::positive_duration;

/// `rollout`: canary steps strictly increasing up to 100 with a hold on all but the last, no
/// steps for the one-step strategies, a positive rollback window.
pub(super) fn check_rollout(svc: &Value, sp: &str, push: &mut impl FnMut(String, String)) {
    let Some(rollout) = svc.get("rollout") else {
        return;
    };
    let strategy = rollout
        .get("strategy")
        .and_then(Value::as_str)
        .unwrap_or("canary");
    let window_ptr = format!("{sp}/rollout/rollback_window");
    positive_duration(rollout.get("rollback_window"), &window_ptr, push);
    let Some(steps) = rollout.get("steps").and_then(Value::as_array) else {
        return;
    };
    let steps_ptr = format!("{sp}/rollout/steps");
    match strategy {
        "all-at-once" | "blue-green" => {
            let only_full = matches!(steps.as_slice(), [s] if s.get("weight").and_then(Value::as_f64) == Some(100.0) && s.get("for").is_none());
            if !steps.is_empty() && !only_full {
                let why = if strategy == "blue-green" {
                    "a blue-green rollout has no steps (traffic switches at once when the new colour is warm and healthy; remove `steps`, or use `strategy: canary`)"
                } else {
                    "an all-at-once rollout has no steps (remove `steps`, or use `strategy: canary`)"
                };
                push(steps_ptr, why.to_owned());
            }
        }
        "canary" => {
            if steps.is_empty() {
                push(
                    steps_ptr,
                    "a canary needs at least one step (remove `steps` for the default 10% → 50% → 100%)".to_owned(),
                );
                return;
            }
            let mut previous: Option<f64> = None;
            let last = steps.len() - 1;
            for (j, step) in steps.iter().enumerate() {
                let weight = step.get("weight").and_then(Value::as_f64);
                let wp = format!("{steps_ptr}/{j}/weight");
                if let (Some(w), Some(p)) = (weight, previous)
                    && w <= p
                {
                    push(
                        wp.clone(),
                        format!("step weights must increase: {w} comes after {p}"),
                    );
                }
                if j == last
                    && let Some(w) = weight
                    && w != 100.0
                {
                    push(
                        wp,
                        format!("the last step must send all traffic: weight 100, found {w}"),
                    );
                }
                if j < last && step.get("for").is_none_or(Value::is_null) {
                    let w = weight.map(|w| format!(" at {w}%")).unwrap_or_default();
                    push(
                        format!("{steps_ptr}/{j}"),
                        format!(
                            "step {} needs `for`: how long to hold{w} before the next step (e.g. `for: 1m`)",
                            j + 1
                        ),
                    );
                }
                previous = weight.or(previous);
            }
        }
        _ => {}
    }
}
