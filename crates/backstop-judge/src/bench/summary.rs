//! Censored medians and their ratios to the oracle and the Flagger preset.

use serde_json::{Value, json};

use crate::report::num;

use super::runner::{FamilyResult, JudgeStats};
use super::{FamilyKind, ORACLE_UNKNOWN_ONSET};

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// How a number relates to the quantity it stands for: exact, or only a bound (a run a judge
/// never failed is censored at the run's end, so a median over such runs is a lower bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Exact,
    AtLeast,
    AtMost,
}

impl Bound {
    fn prefix(self) -> &'static str {
        match self {
            Bound::Exact => "",
            Bound::AtLeast => "≥",
            Bound::AtMost => "≤",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bound::Exact => "exact",
            Bound::AtLeast => "at_least",
            Bound::AtMost => "at_most",
        }
    }

    /// The bound of `a / b` given the bounds of `a` and `b` (`None` = no bound follows).
    pub(super) fn ratio(a: Bound, b: Bound) -> Option<Bound> {
        match (a, b) {
            (Bound::Exact, Bound::Exact) => Some(Bound::Exact),
            (Bound::AtLeast | Bound::Exact, Bound::AtMost | Bound::Exact) => Some(Bound::AtLeast),
            (Bound::AtMost | Bound::Exact, Bound::AtLeast | Bound::Exact) => Some(Bound::AtMost),
            _ => None,
        }
    }

    /// The bound of a product (or geometric mean) of terms with bounds `a` and `b`.
    fn combine(a: Bound, b: Bound) -> Option<Bound> {
        match (a, b) {
            (x, Bound::Exact) | (Bound::Exact, x) => Some(x),
            (x, y) if x == y => Some(x),
            _ => None,
        }
    }
}

/// A value with its [`Bound`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounded {
    pub value: f64,
    pub bound: Bound,
}

impl Bounded {
    pub(super) fn text(&self, suffix: &str) -> String {
        format!("{}{:.1}{suffix}", self.bound.prefix(), self.value)
    }

    pub(super) fn json(&self) -> Value {
        json!({"value": num(self.value), "bound": self.bound.name()})
    }

    pub(super) fn ratio(a: Bounded, b: Bounded) -> Option<Bounded> {
        (b.value > 0.0 && a.value > 0.0).then_some(())?;
        Some(Bounded {
            value: a.value / b.value,
            bound: Bound::ratio(a.bound, b.bound)?,
        })
    }
}

/// Median delay of one judge on one regression family: over the runs it failed after the
/// onset (their delays) and the runs it never failed (censored at `horizon_s`, the run's time
/// left after the onset). Runs failed before the onset are false alarms, not delays, and are
/// left out. A median that falls on a censored run is a lower bound.
pub(super) fn censored_median(j: &JudgeStats, horizon_s: f64) -> Option<Bounded> {
    let misses = j.runs.saturating_sub(j.detections + j.false_fails);
    let mut sample: Vec<(f64, bool)> = j
        .delays
        .iter()
        .flatten()
        .map(|d| (*d, false))
        .chain(std::iter::repeat_n((horizon_s, true), misses))
        .collect();
    if sample.is_empty() {
        return None;
    }
    sample.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let n = sample.len();
    let (lo, hi) = if n % 2 == 1 {
        (sample[n / 2], sample[n / 2])
    } else {
        (sample[n / 2 - 1], sample[n / 2])
    };
    Some(Bounded {
        value: 0.5 * (lo.0 + hi.0),
        bound: if lo.1 || hi.1 {
            Bound::AtLeast
        } else {
            Bound::Exact
        },
    })
}

/// Summary numbers of one judge over a set of families.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub judge: String,
    pub aa_runs: usize,
    pub aa_fails: usize,
    pub reg_runs: usize,
    pub early_fails: usize,
    pub detections: usize,
    /// Median delay over the detected runs of all the families (pooled).
    pub median_delay_s: Option<f64>,
    /// One family: its censored median delay (see [`censored_median`]).
    pub family_median_s: Option<Bounded>,
    /// This judge's median delay / the oracle's, per family; over several families their
    /// geometric mean.
    pub vs_oracle: Option<Bounded>,
    /// The Flagger tutorial preset's median delay / this judge's, per family; over several
    /// families their geometric mean.
    pub speedup_vs_flagger: Option<Bounded>,
    /// This judge's median delay / the oracle-not-told-the-onset's, like `vs_oracle`.
    pub vs_oracle_unknown_onset: Option<Bounded>,
    /// Regression families summarised (the geometric means are over all of them, or absent).
    pub families_in_ratios: usize,
}

pub(super) fn geomean(values: &[Bounded]) -> Option<Bounded> {
    let first = values.first()?;
    let mut bound = first.bound;
    for v in &values[1..] {
        bound = Bound::combine(bound, v.bound)?;
    }
    let logs: Vec<f64> = values.iter().map(|v| v.value.ln()).collect();
    Some(Bounded {
        value: (logs.iter().sum::<f64>() / logs.len() as f64).exp(),
        bound,
    })
}

/// Per family: (vs oracle, speedup vs flagger-tutorial, vs the oracle not told the onset).
fn family_ratios(
    f: &FamilyResult,
    judge_index: usize,
) -> (Option<Bounded>, Option<Bounded>, Option<Bounded>) {
    let median_of = |name: &str| {
        f.judges
            .iter()
            .find(|x| x.judge == name)
            .and_then(|x| censored_median(x, f.horizon_s))
    };
    let me = &f.judges[judge_index];
    let mine = censored_median(me, f.horizon_s);
    let same = |name: &str| {
        (me.judge == name).then_some(Bounded {
            value: 1.0,
            bound: Bound::Exact,
        })
    };
    let oracle = median_of("oracle");
    let flagger = median_of("flagger-tutorial");
    let unknown = median_of(ORACLE_UNKNOWN_ONSET);
    (
        same("oracle").or_else(|| mine.zip(oracle).and_then(|(m, o)| Bounded::ratio(m, o))),
        same("flagger-tutorial")
            .or_else(|| flagger.zip(mine).and_then(|(fl, m)| Bounded::ratio(fl, m))),
        same(ORACLE_UNKNOWN_ONSET)
            .or_else(|| mine.zip(unknown).and_then(|(m, o)| Bounded::ratio(m, o))),
    )
}

pub(super) fn summarize(families: &[&FamilyResult], judge_index: usize) -> Summary {
    let mut s = Summary {
        judge: families
            .first()
            .map_or(String::new(), |f| f.judges[judge_index].judge.clone()),
        aa_runs: 0,
        aa_fails: 0,
        reg_runs: 0,
        early_fails: 0,
        detections: 0,
        median_delay_s: None,
        family_median_s: None,
        vs_oracle: None,
        speedup_vs_flagger: None,
        vs_oracle_unknown_onset: None,
        families_in_ratios: 0,
    };
    let mut delays = Vec::new();
    let (mut vs_oracle, mut vs_flagger, mut vs_unknown) =
        (Some(Vec::new()), Some(Vec::new()), Some(Vec::new()));
    for f in families {
        let j = &f.judges[judge_index];
        match f.kind {
            FamilyKind::AA => {
                s.aa_runs += j.runs;
                s.aa_fails += j.false_fails;
            }
            FamilyKind::Regression => {
                s.reg_runs += j.runs;
                s.early_fails += j.false_fails;
                s.detections += j.detections;
                delays.extend(j.delays.iter().flatten().copied());
                s.families_in_ratios += 1;
                let (o, fl, u) = family_ratios(f, judge_index);
                vs_unknown = vs_unknown.zip(u).map(|(mut v, u)| {
                    v.push(u);
                    v
                });
                // A family without a ratio leaves the geometric mean undefined.
                vs_oracle = vs_oracle.zip(o).map(|(mut v, o)| {
                    v.push(o);
                    v
                });
                vs_flagger = vs_flagger.zip(fl).map(|(mut v, fl)| {
                    v.push(fl);
                    v
                });
                if families.len() == 1 {
                    s.family_median_s = censored_median(j, f.horizon_s);
                }
            }
        }
    }
    s.median_delay_s = median(delays);
    s.vs_oracle = vs_oracle.and_then(|v| geomean(&v));
    s.speedup_vs_flagger = vs_flagger.and_then(|v| geomean(&v));
    s.vs_oracle_unknown_onset = vs_unknown.and_then(|v| geomean(&v));
    s
}
