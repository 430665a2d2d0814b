//! A rollout's stored intervals as a `backstop-scenario/v1` file: the same data the judge saw,
//! replayable with `backstop analyze`.

use backstop_core::model::Rollout;
use backstop_judge::Interval;
use backstop_judge::scenario::{Scenario, to_jsonl};
use serde_json::{Map, Value};

pub fn scenario_text(rollout: &Rollout, interval_s: f64, intervals: &[Interval]) -> String {
    let mut extra = Map::new();
    extra.insert("rollout_id".into(), Value::from(rollout.id.clone()));
    extra.insert(
        "from_release".into(),
        Value::from(rollout.from_release_id.clone()),
    );
    extra.insert(
        "to_release".into(),
        Value::from(rollout.to_release_id.clone()),
    );
    extra.insert("phase".into(), Value::from(rollout.phase.as_str()));
    // `t` must be strictly increasing in the format; a clock step backwards would break that,
    // so such intervals are nudged forward by a millisecond rather than dropped.
    let mut last = f64::NEG_INFINITY;
    let intervals = intervals
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if i.t <= last {
                i.t = last + 0.001;
            }
            last = i.t;
            i
        })
        .collect();
    to_jsonl(&Scenario {
        name: format!("{}/{} rollout {}", rollout.service, rollout.env, rollout.id),
        interval_s: if interval_s > 0.0 { interval_s } else { 1.0 },
        intervals,
        extra,
    })
}
