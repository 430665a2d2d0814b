//! `backstop-scenario/v1` files (JSON Lines) and replaying them through a judge.
//!
//! See `spec/canary-scenario.md`. Every input error names the line (1-based) and the field.

use std::io::BufRead;

use serde_json::{Map, Value, json};

use crate::{ArmCounts, Decision, Interval, Judge, LogLines};

/// The format tag of the first line.
pub const FORMAT: &str = "backstop-scenario/v1";

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Free text from the header.
    pub name: String,
    /// Interval length in seconds (> 0).
    pub interval_s: f64,
    /// The intervals in file order (`t` strictly increasing).
    pub intervals: Vec<Interval>,
    /// Every header key other than `format`, `name`, `interval_s` (e.g. a benchmark's truth).
    /// Judges never see these.
    pub extra: Map<String, Value>,
}

/// A bad scenario file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The content is not a valid scenario.
    #[error("line {line}: {field}: {message}")]
    Invalid {
        line: usize,
        field: String,
        message: String,
    },
    /// The file has no header line.
    #[error("line 1: format: empty file, expected a header line {{\"format\":\"{FORMAT}\",...}}")]
    Empty,
    /// Reading failed.
    #[error("line {line}: cannot read: {source}")]
    Io { line: usize, source: std::io::Error },
}

fn bad(line: usize, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        line,
        field: field.into(),
        message: message.into(),
    }
}

/// Parses a whole scenario text.
pub fn parse_scenario(text: &str) -> Result<Scenario, ScenarioError> {
    read_scenario(text.as_bytes())
}

/// Reads a scenario line by line.
pub fn read_scenario<R: BufRead>(reader: R) -> Result<Scenario, ScenarioError> {
    let mut parser: Option<Parser> = None;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|source| ScenarioError::Io {
            line: number,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| bad(number, "(line)", format!("not valid JSON: {e}")))?;
        match parser.as_mut() {
            None => parser = Some(Parser::header(number, value)?),
            Some(p) => p.interval(number, value)?,
        }
    }
    parser.map(|p| p.scenario).ok_or(ScenarioError::Empty)
}

struct Parser {
    scenario: Scenario,
    bounds: Option<Vec<f64>>,
}

impl Parser {
    fn header(line: usize, value: Value) -> Result<Self, ScenarioError> {
        let Value::Object(mut map) = value else {
            return Err(bad(
                line,
                "(header)",
                "the first line must be a JSON object (the header)",
            ));
        };
        match map.remove("format") {
            Some(Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(bad(
                    line,
                    "format",
                    format!("expected \"{FORMAT}\", found {other}"),
                ));
            }
            None => {
                return Err(bad(
                    line,
                    "format",
                    format!("missing; expected \"{FORMAT}\""),
                ));
            }
        }
        let name = match map.remove("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(bad(
                    line,
                    "name",
                    format!("expected a string, found {other}"),
                ));
            }
        };
        let interval_s = match map.remove("interval_s") {
            Some(v) => match v.as_f64() {
                Some(x) if x > 0.0 && x.is_finite() => x,
                _ => {
                    return Err(bad(
                        line,
                        "interval_s",
                        format!("expected a number > 0, found {v}"),
                    ));
                }
            },
            None => {
                return Err(bad(
                    line,
                    "interval_s",
                    "missing; expected the interval length in seconds (> 0)",
                ));
            }
        };
        Ok(Self {
            scenario: Scenario {
                name,
                interval_s,
                intervals: Vec::new(),
                extra: map,
            },
            bounds: None,
        })
    }

    fn interval(&mut self, line: usize, value: Value) -> Result<(), ScenarioError> {
        let Value::Object(map) = value else {
            return Err(bad(
                line,
                "(interval)",
                "each line after the header must be a JSON object",
            ));
        };
        let t = match map.get("t") {
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    bad(
                        line,
                        "t",
                        format!(
                            "expected seconds since the canary started (a number >= 0), found {v}"
                        ),
                    )
                })?,
            None => return Err(bad(line, "t", "missing")),
        };
        if let Some(prev) = self.scenario.intervals.last()
            && t <= prev.t
        {
            return Err(bad(
                line,
                "t",
                format!("must be strictly increasing: {t} after {}", prev.t),
            ));
        }
        let baseline = self.arm(line, &map, "baseline")?;
        let canary = self.arm(line, &map, "canary")?;
        let log_lines = match map.get("log_lines") {
            None => None,
            Some(v) => Some(serde_json::from_value::<LogLines>(v.clone()).map_err(|e| {
                bad(
                    line,
                    "log_lines",
                    format!(
                        "expected {{\"baseline\": N, \"canary\": N}} (error-log lines per arm): {e}"
                    ),
                )
            })?),
        };
        self.scenario.intervals.push(Interval {
            t,
            baseline,
            canary,
            log_lines,
        });
        Ok(())
    }

    fn arm(
        &mut self,
        line: usize,
        map: &Map<String, Value>,
        arm: &str,
    ) -> Result<ArmCounts, ScenarioError> {
        let Some(value) = map.get(arm) else {
            return Err(bad(line, arm, "missing arm"));
        };
        let Value::Object(obj) = value else {
            return Err(bad(
                line,
                arm,
                format!("expected an object with requests and errors, found {value}"),
            ));
        };
        let count = |key: &str| -> Result<u64, ScenarioError> {
            match obj.get(key) {
                Some(v) => v.as_u64().ok_or_else(|| {
                    bad(
                        line,
                        format!("{arm}.{key}"),
                        format!("expected an integer >= 0, found {v}"),
                    )
                }),
                None => Err(bad(line, format!("{arm}.{key}"), "missing")),
            }
        };
        let requests = count("requests")?;
        let errors = count("errors")?;
        if errors > requests {
            return Err(bad(
                line,
                format!("{arm}.errors"),
                format!("{errors} errors > {requests} requests"),
            ));
        }
        let latency_le_ms = match obj.get("latency_le_ms") {
            None | Some(Value::Null) => None,
            Some(Value::Object(h)) => Some(self.histogram(line, arm, h, requests)?),
            Some(other) => {
                return Err(bad(
                    line,
                    format!("{arm}.latency_le_ms"),
                    format!("expected an object, found {other}"),
                ));
            }
        };
        Ok(ArmCounts {
            requests,
            errors,
            latency_le_ms,
        })
    }

    fn histogram(
        &mut self,
        line: usize,
        arm: &str,
        h: &Map<String, Value>,
        requests: u64,
    ) -> Result<Vec<(f64, u64)>, ScenarioError> {
        let field = format!("{arm}.latency_le_ms");
        let mut buckets = Vec::with_capacity(h.len());
        for (key, v) in h {
            let bound = if matches!(key.as_str(), "+Inf" | "Inf" | "inf" | "+inf") {
                f64::INFINITY
            } else {
                match key.parse::<f64>() {
                    Ok(b) if b.is_finite() && b >= 0.0 => b,
                    _ => {
                        return Err(bad(
                            line,
                            format!("{field}[\"{key}\"]"),
                            "bound must be a number of ms or \"+Inf\"",
                        ));
                    }
                }
            };
            let count = v.as_u64().ok_or_else(|| {
                bad(
                    line,
                    format!("{field}[\"{key}\"]"),
                    format!("expected an integer >= 0, found {v}"),
                )
            })?;
            buckets.push((bound, count, key.clone()));
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in buckets.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(bad(
                    line,
                    field,
                    format!("bound {} appears twice", pair[0].2),
                ));
            }
            if pair[1].1 < pair[0].1 {
                return Err(bad(
                    line,
                    format!("{field}[\"{}\"]", pair[1].2),
                    format!(
                        "cumulative counts must not decrease: {} after {} at \"{}\"",
                        pair[1].1, pair[0].1, pair[0].2
                    ),
                ));
            }
        }
        match buckets.last() {
            Some((b, c, _)) if b.is_infinite() => {
                if *c != requests {
                    return Err(bad(
                        line,
                        format!("{field}[\"+Inf\"]"),
                        format!("must equal {arm}.requests ({requests}), found {c}"),
                    ));
                }
            }
            _ => return Err(bad(line, field, "missing the \"+Inf\" bucket")),
        }
        let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
        match &self.bounds {
            None => self.bounds = Some(bounds),
            Some(first) if *first != bounds => {
                return Err(bad(
                    line,
                    field,
                    "bucket bounds differ from the earlier lines of this file",
                ));
            }
            Some(_) => {}
        }
        Ok(buckets.into_iter().map(|(b, c, _)| (b, c)).collect())
    }
}

fn arm_json(arm: &ArmCounts) -> Value {
    let mut out = json!({"requests": arm.requests, "errors": arm.errors});
    if let Some(h) = &arm.latency_le_ms {
        let mut map = Map::new();
        for (bound, count) in h {
            let key = if bound.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{bound}")
            };
            map.insert(key, json!(count));
        }
        out["latency_le_ms"] = Value::Object(map);
    }
    out
}

/// Writes a scenario in the `backstop-scenario/v1` format (one JSON object per line).
pub fn to_jsonl(scenario: &Scenario) -> String {
    let mut header = Map::new();
    header.insert("format".into(), json!(FORMAT));
    header.insert("name".into(), json!(scenario.name));
    header.insert(
        "interval_s".into(),
        crate::report::time_json(Some(scenario.interval_s)),
    );
    for (k, v) in &scenario.extra {
        header.insert(k.clone(), v.clone());
    }
    let mut out = Value::Object(header).to_string();
    out.push('\n');
    for iv in &scenario.intervals {
        let line = json!({"t": crate::report::time_json(Some(iv.t)), "baseline": arm_json(&iv.baseline), "canary": arm_json(&iv.canary)});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// What a replay ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// `Fail` if the judge failed the canary, else the last decision.
    pub decision: Decision,
    /// `t` of the interval that failed the canary.
    pub failed_at_s: Option<f64>,
    /// Intervals fed to the judge.
    pub intervals_seen: usize,
    /// The judge's report (the `backstop analyze --output json` object).
    pub report: Value,
}

/// Feeds `intervals` to `judge` one by one, as the live controller does, and stops at the first
/// `Fail`. `Inconclusive` does not stop the replay (the controller pauses and a person decides).
pub fn replay(judge: &mut dyn Judge, intervals: &[Interval]) -> Replay {
    let mut decision = Decision::Continue;
    let mut seen = 0;
    let mut failed_at_s = None;
    for iv in intervals {
        seen += 1;
        decision = judge.observe(iv);
        if decision == Decision::Fail {
            failed_at_s = Some(iv.t);
            break;
        }
    }
    Replay {
        decision,
        failed_at_s,
        intervals_seen: seen,
        report: judge.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"format":"backstop-scenario/v1","name":"checkout","interval_s":5,"truth":"aa","onset_s":30}"#;
    const LINE: &str = r#"{"t":5,"baseline":{"requests":451,"errors":4,"latency_le_ms":{"5":0,"10":3,"25":120,"50":300,"100":420,"250":449,"500":451,"1000":451,"2500":451,"5000":451,"10000":451,"+Inf":451}},"canary":{"requests":49,"errors":2,"latency_le_ms":{"5":0,"10":0,"25":11,"50":30,"100":45,"250":49,"500":49,"1000":49,"2500":49,"5000":49,"10000":49,"+Inf":49}}}"#;

    fn err(text: &str) -> String {
        match parse_scenario(text) {
            Ok(_) => String::from("parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_the_spec_example_and_keeps_extra_header_keys_aside() {
        let s = parse_scenario(&format!("{HEADER}\n{LINE}\n\n")).expect("the spec example parses");
        assert_eq!(s.name, "checkout");
        assert_eq!(s.interval_s, 5.0);
        assert_eq!(s.intervals.len(), 1);
        let c = &s.intervals[0].canary;
        assert_eq!((c.requests, c.errors), (49, 2));
        let h = c.latency_le_ms.as_ref().expect("buckets");
        assert_eq!(h.first(), Some(&(5.0, 0)));
        assert_eq!(h.last(), Some(&(f64::INFINITY, 49)));
        assert_eq!(s.extra.get("truth"), Some(&json!("aa")));
        assert!(!s.extra.contains_key("format"));
        // Round trip.
        assert_eq!(parse_scenario(&to_jsonl(&s)).expect("round trip"), s);
    }

    #[test]
    fn errors_name_line_and_field() {
        let zero =
            r#"{"t":5,"baseline":{"requests":0,"errors":0},"canary":{"requests":0,"errors":0}}"#;
        assert_eq!(
            err(&format!("{HEADER}\n{zero}")),
            "parsed",
            "zero traffic is legal"
        );
        assert_eq!(err(""), ScenarioError::Empty.to_string());
        assert!(err(r#"{"format":"v0","interval_s":5}"#).starts_with("line 1: format:"));
        assert!(
            err(r#"{"format":"backstop-scenario/v1","interval_s":0}"#)
                .starts_with("line 1: interval_s:")
        );
        let missing = r#"{"t":5,"baseline":{"requests":1,"errors":0}}"#;
        assert!(err(&format!("{HEADER}\n{missing}")).starts_with("line 2: canary: missing arm"));
        let neg =
            r#"{"t":5,"baseline":{"requests":-1,"errors":0},"canary":{"requests":1,"errors":0}}"#;
        assert!(err(&format!("{HEADER}\n{neg}")).starts_with("line 2: baseline.requests:"));
        let over =
            r#"{"t":5,"baseline":{"requests":1,"errors":0},"canary":{"requests":1,"errors":2}}"#;
        assert!(err(&format!("{HEADER}\n{over}")).starts_with("line 2: canary.errors:"));
        assert!(
            err(&format!("{HEADER}\n{zero}\n{zero}"))
                .starts_with("line 3: t: must be strictly increasing")
        );
        let no_inf = r#"{"t":5,"baseline":{"requests":1,"errors":0,"latency_le_ms":{"5":1}},"canary":{"requests":1,"errors":0}}"#;
        assert!(err(&format!("{HEADER}\n{no_inf}")).starts_with("line 2: baseline.latency_le_ms:"));
        let dec = r#"{"t":5,"baseline":{"requests":2,"errors":0,"latency_le_ms":{"5":2,"10":1,"+Inf":2}},"canary":{"requests":1,"errors":0}}"#;
        assert!(
            err(&format!("{HEADER}\n{dec}")).starts_with("line 2: baseline.latency_le_ms[\"10\"]:")
        );
        let inf = r#"{"t":5,"baseline":{"requests":2,"errors":0,"latency_le_ms":{"5":1,"+Inf":3}},"canary":{"requests":1,"errors":0}}"#;
        assert!(
            err(&format!("{HEADER}\n{inf}"))
                .starts_with("line 2: baseline.latency_le_ms[\"+Inf\"]:")
        );
        assert!(err(&format!("{HEADER}\nnot json")).starts_with("line 2: (line): not valid JSON"));
    }

    #[test]
    fn replay_stops_at_the_first_fail() {
        let mut settings = crate::JudgeSettings {
            judge: crate::JudgeKind::Threshold,
            ..Default::default()
        };
        settings.threshold.preset = crate::ThresholdPreset::ArgoExample;
        let mut judge = crate::build(&settings);
        let bad = |t: f64| Interval {
            t,
            baseline: ArmCounts {
                requests: 100,
                errors: 0,
                latency_le_ms: None,
            },
            canary: ArmCounts {
                requests: 100,
                errors: 50,
                latency_le_ms: None,
            },
            log_lines: None,
        };
        let intervals: Vec<Interval> = (1..=10).map(|i| bad(5.0 * i as f64)).collect();
        let r = replay(judge.as_mut(), &intervals);
        assert_eq!(r.decision, Decision::Fail);
        assert_eq!(r.failed_at_s, Some(10.0));
        assert_eq!(r.intervals_seen, 2);
        assert_eq!(r.report["decided_at_s"], 10);
    }
}
