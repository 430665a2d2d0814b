//! Feature flags (practice 6.6): a flag is on for a sticky percentage of units (users,
//! sessions), and a **staged re-enable** brings a flag switched off during an incident back in
//! steps (1 → 5 → 25 → 100 %), each held until the judge has seen the on cohort do as well as
//! the off cohort, and back to 0 % the moment it does worse.
//!
//! Buckets follow Unleash's gradual rollout: `murmur3_32("{group}:{unit}", seed 0) % 100 + 1`,
//! on when the bucket is at most the percentage. A unit's bucket depends only on the group and
//! the unit, so raising the percentage only adds units: nobody who had the feature loses it
//! as it grows, and an application that already buckets with an Unleash SDK agrees with us.

use backstop_judge::{ArmCounts, Decision, Interval, JudgeSettings};
use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::named::string_enum;

/// The stages of a re-enable when none are given.
pub const DEFAULT_STAGES: [u8; 4] = [1, 5, 25, 100];
/// Changes kept in a flag's history (older ones are dropped).
const HISTORY_KEPT: usize = 200;
/// Intervals kept for the judge of one re-enable (about 80 min at 5 s; a longer re-enable keeps
/// judging on the latest ones), so the stored record stays small.
const INTERVALS_KEPT: usize = 1_000;

/// MurmurHash3, x86 32-bit variant (what Unleash, flagd and most flag SDKs bucket with).
#[must_use]
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The bucket of `unit` in `group`, in `1..=100`.
#[must_use]
pub fn bucket(group: &str, unit: &str) -> u8 {
    (murmur3_32(format!("{group}:{unit}").as_bytes(), 0) % 100 + 1) as u8
}

/// The answer to "is this flag on for this unit", in OpenFeature's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub value: bool,
    /// `on` or `off`.
    pub variant: &'static str,
    /// OpenFeature reason: `DISABLED` (0 %), `STATIC` (100 %) or `SPLIT` (by bucket).
    pub reason: &'static str,
    /// The unit's bucket when the percentage split the units.
    pub bucket: Option<u8>,
}

/// Why a flag could not be evaluated (OpenFeature error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error(
        "flag is on for {0}% of units: the context needs a `targetingKey` (a user or session id) to pick the unit's bucket"
    )]
    TargetingKeyMissing(u8),
}

impl EvalError {
    /// The OpenFeature error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::TargetingKeyMissing(_) => "TARGETING_KEY_MISSING",
        }
    }
}

/// Evaluates a flag on for `percentage` % of `group`'s units for `unit`.
///
/// # Errors
/// A split percentage without a unit: there is no bucket to pick.
pub fn evaluate(percentage: u8, group: &str, unit: Option<&str>) -> Result<Evaluation, EvalError> {
    let answer = |value: bool, reason, bucket| Evaluation {
        value,
        variant: if value { "on" } else { "off" },
        reason,
        bucket,
    };
    match percentage {
        0 => Ok(answer(false, "DISABLED", None)),
        p if p >= 100 => Ok(answer(true, "STATIC", None)),
        p => {
            let unit = unit
                .filter(|u| !u.is_empty())
                .ok_or(EvalError::TargetingKeyMissing(p))?;
            let b = bucket(group, unit);
            Ok(answer(b <= p, "SPLIT", Some(b)))
        }
    }
}

/// A flag in one environment: its percentage now, its staged re-enable if one was started,
/// and who changed it when. Stored whole as JSON, changed by compare-and-set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagState {
    pub key: String,
    pub env: String,
    pub service: String,
    /// Share of units the flag is on for, `0..=100`.
    pub percentage: u8,
    pub updated_at_ms: Millis,
    pub updated_by: String,
    /// The latest staged re-enable (running or over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Reenable>,
    /// Changes of the percentage, oldest first.
    #[serde(default)]
    pub history: Vec<FlagChange>,
    /// Changes written but not yet audited and announced: written with the change itself, so
    /// one a crash interrupted is announced after the restart (at least once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unannounced: Vec<Announcement>,
}

/// A change of a flag to audit and announce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub at_ms: Millis,
    pub actor: String,
    pub kind: crate::event::EventKind,
    pub summary: String,
    /// The percentage right after the change.
    pub percentage: u8,
}

/// One change of a flag's percentage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlagChange {
    pub at_ms: Millis,
    pub by: String,
    pub from: u8,
    pub to: u8,
    pub reason: String,
}

impl FlagState {
    /// A flag never changed: off.
    #[must_use]
    pub fn new(key: &str, env: &str, service: &str) -> FlagState {
        FlagState {
            key: key.to_owned(),
            env: env.to_owned(),
            service: service.to_owned(),
            percentage: 0,
            updated_at_ms: 0,
            updated_by: String::new(),
            plan: None,
            history: vec![],
            unannounced: vec![],
        }
    }

    /// Queues `summary` of a change by `actor` to be audited and announced as `kind`.
    pub fn announce_later(
        &mut self,
        actor: &str,
        kind: crate::event::EventKind,
        summary: String,
        now: Millis,
    ) {
        self.unannounced.push(Announcement {
            at_ms: now,
            actor: actor.to_owned(),
            kind,
            summary,
            percentage: self.percentage,
        });
    }

    /// Sets the percentage (clamped to 100) and records the change.
    pub fn set(&mut self, percentage: u8, by: &str, reason: &str, now: Millis) {
        let to = percentage.min(100);
        self.history.push(FlagChange {
            at_ms: now,
            by: by.to_owned(),
            from: self.percentage,
            to,
            reason: reason.to_owned(),
        });
        if self.history.len() > HISTORY_KEPT {
            self.history.drain(..self.history.len() - HISTORY_KEPT);
        }
        self.percentage = to;
        self.updated_at_ms = now;
        self.updated_by = by.to_owned();
    }

    /// The running re-enable, if any.
    #[must_use]
    pub fn running_plan(&self) -> Option<&Reenable> {
        self.plan
            .as_ref()
            .filter(|p| p.status == PlanStatus::Running)
    }

    /// Starts a staged re-enable at its first stage.
    ///
    /// # Errors
    /// One is already running, or the stages are not a rising list ending at 100.
    pub fn start_reenable(
        &mut self,
        stages: Vec<u8>,
        hold_ms: Millis,
        min_requests: u64,
        by: &str,
        now: Millis,
    ) -> Result<(), String> {
        if self.running_plan().is_some() {
            return Err(format!(
                "a staged re-enable of {} in {} is already running; abort it first (`backstop flag abort {} --env {}`)",
                self.key, self.env, self.key, self.env
            ));
        }
        check_stages(&stages)?;
        // A re-enable only raises the flag: it starts at the first stage above where it is.
        let stages: Vec<u8> = stages
            .into_iter()
            .filter(|s| *s > self.percentage)
            .collect();
        let Some(&first) = stages.first() else {
            return Err(format!(
                "{} is already on for everyone in {}",
                self.key, self.env
            ));
        };
        self.plan = Some(Reenable {
            stages,
            hold_ms,
            min_requests,
            stage: 0,
            stage_started_at_ms: now,
            stage_requests: 0,
            status: PlanStatus::Running,
            started_at_ms: now,
            started_by: by.to_owned(),
            ended_at_ms: None,
            reason: None,
            blocked: None,
            last: None,
            intervals: vec![],
            stage_results: vec![],
        });
        self.set(first, by, "staged re-enable: first stage", now);
        Ok(())
    }

    /// Ends the running re-enable where it stands (the percentage is left as it is).
    ///
    /// # Errors
    /// None is running.
    pub fn abort_reenable(&mut self, by: &str, reason: &str, now: Millis) -> Result<(), String> {
        let Some(plan) = self
            .plan
            .as_mut()
            .filter(|p| p.status == PlanStatus::Running)
        else {
            return Err(format!(
                "no staged re-enable of {} in {} is running",
                self.key, self.env
            ));
        };
        plan.end(
            PlanStatus::Aborted,
            format!("aborted by {by}: {reason}"),
            now,
        );
        Ok(())
    }

    /// Feeds the running re-enable the cohorts' cumulative counts read at `now` and carries out
    /// what it decides (the percentage moves with it). `blocked` names what holds the flag
    /// where it is now (a freeze, an open incident, a recovery not resolved).
    pub fn tick(
        &mut self,
        on: ArmCounts,
        off: ArmCounts,
        blocked: Option<String>,
        settings: &JudgeSettings,
        now: Millis,
    ) -> Step {
        let Some(plan) = self
            .plan
            .as_mut()
            .filter(|p| p.status == PlanStatus::Running)
        else {
            return Step::Idle;
        };
        let step = plan.observe(on, off, blocked, settings, now);
        let by = "backstop";
        match &step {
            Step::Advance { to } => self.set(*to, by, "staged re-enable: the stage held", now),
            Step::RollBack { reason } => self.set(0, by, reason, now),
            Step::Idle | Step::Hold | Step::Promote | Step::Halt { .. } => {}
        }
        step
    }
}

/// Stages must rise strictly within `1..=100` and end at 100.
///
/// # Errors
/// What is wrong with them.
pub fn check_stages(stages: &[u8]) -> Result<(), String> {
    if stages.is_empty() {
        return Err("give at least one stage (e.g. 1,5,25,100)".into());
    }
    if let Some(s) = stages.iter().find(|s| **s == 0 || **s > 100) {
        return Err(format!("stage {s}% is outside 1..100"));
    }
    if stages.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "stages must rise: {}",
            stages
                .iter()
                .map(|s| format!("{s}%"))
                .collect::<Vec<_>>()
                .join(" → ")
        ));
    }
    if stages.last() != Some(&100) {
        return Err("the last stage must be 100% (a re-enable ends with everyone on)".into());
    }
    Ok(())
}

string_enum! {
    /// Where a staged re-enable stands.
    pub enum PlanStatus {
        /// Moving through its stages.
        Running = "running",
        /// Reached 100 % and held it.
        Promoted = "promoted",
        /// The on cohort did worse than the off cohort: the flag went back to 0 %.
        RolledBack = "rolled_back",
        /// The judge could not tell (both cohorts degraded alike): held for a person.
        Halted = "halted",
        /// A person stopped it.
        Aborted = "aborted",
    }
}

/// A staged re-enable: the stages, where it is, and the judge's evidence so far (kept so a
/// restarted daemon rebuilds the judge exactly where it was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reenable {
    pub stages: Vec<u8>,
    /// How long each stage is held before the next.
    pub hold_ms: Millis,
    /// Requests of the on cohort a stage needs before it may end (no evidence, no advance).
    pub min_requests: u64,
    /// Index of the current stage in `stages`.
    pub stage: usize,
    pub stage_started_at_ms: Millis,
    /// Requests of the on cohort seen in the current stage.
    pub stage_requests: u64,
    pub status: PlanStatus,
    pub started_at_ms: Millis,
    pub started_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<Millis>,
    /// Why it ended (or halted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What holds it at its stage now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The cohorts' cumulative counts at the last tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Cohorts>,
    /// Every interval judged, in order (baseline = off cohort, canary = on cohort).
    #[serde(default)]
    pub intervals: Vec<Interval>,
    /// Each stage's outcome, in order.
    #[serde(default)]
    pub stage_results: Vec<StageResult>,
}

/// Cumulative counts of the two cohorts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohorts {
    pub on: ArmCounts,
    pub off: ArmCounts,
}

/// How one stage went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageResult {
    pub percentage: u8,
    pub started_at_ms: Millis,
    pub ended_at_ms: Millis,
    /// `held`, `failed` or `inconclusive`.
    pub outcome: String,
    pub on_requests: u64,
    pub on_errors: u64,
    pub off_requests: u64,
    pub off_errors: u64,
}

/// What a tick of a re-enable decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No re-enable is running.
    Idle,
    /// Stay at this stage (not held long enough, too little traffic, or blocked).
    Hold,
    /// The stage held: on to `to` %.
    Advance { to: u8 },
    /// The last stage (100 %) held: done.
    Promote,
    /// The on cohort did worse: back to 0 %.
    RollBack { reason: String },
    /// The judge cannot tell: held where it is for a person.
    Halt { reason: String },
}

impl Reenable {
    /// The percentage of the current stage.
    #[must_use]
    pub fn current(&self) -> u8 {
        self.stages.get(self.stage).copied().unwrap_or(100)
    }

    fn end(&mut self, status: PlanStatus, reason: String, now: Millis) {
        self.status = status;
        self.reason = Some(reason);
        self.ended_at_ms = Some(now);
        self.blocked = None;
    }

    fn observe(
        &mut self,
        on: ArmCounts,
        off: ArmCounts,
        blocked: Option<String>,
        settings: &JudgeSettings,
        now: Millis,
    ) -> Step {
        let now_counts = Cohorts { on, off };
        let Some(last) = self.last.replace(now_counts.clone()) else {
            // The first reading only sets where counting starts.
            self.set_blocked(blocked, now);
            return Step::Hold;
        };
        let (Some(baseline), Some(canary)) = (
            increments(&last.off, &now_counts.off),
            increments(&last.on, &now_counts.on),
        ) else {
            // A counter went down (an instance or the proxy restarted): counting starts again
            // from this reading rather than taking everything it ever counted as one interval.
            self.set_blocked(blocked, now);
            return Step::Hold;
        };
        let interval = Interval {
            t: (now - self.started_at_ms).max(0) as f64 / 1000.0,
            baseline,
            canary,
            log_lines: None,
        };
        self.stage_requests += interval.canary.requests;
        self.intervals.push(interval);
        if self.intervals.len() > INTERVALS_KEPT {
            self.intervals
                .drain(..self.intervals.len() - INTERVALS_KEPT);
        }
        // The judge is rebuilt from every interval so far: the same decision a judge fed
        // continuously would give, after any number of restarts.
        let mut judge = backstop_judge::build(settings);
        let mut decision = Decision::Continue;
        for i in &self.intervals {
            decision = judge.observe(i);
            if decision == Decision::Fail {
                break;
            }
        }
        if decision == Decision::Continue {
            decision = self.judge_without_off_cohort(settings);
        }
        match decision {
            Decision::Fail => {
                let reason = format!(
                    "the judge found the {}% on cohort worse than the off cohort ({}); back to 0%",
                    self.current(),
                    self.stage_counts()
                );
                self.close_stage("failed", now);
                self.end(PlanStatus::RolledBack, reason.clone(), now);
                return Step::RollBack { reason };
            }
            Decision::Inconclusive => {
                let reason = format!(
                    "the judge cannot tell the cohorts apart at {}% ({}): both may be degraded; a person decides",
                    self.current(),
                    self.stage_counts()
                );
                self.close_stage("inconclusive", now);
                self.end(PlanStatus::Halted, reason.clone(), now);
                return Step::Halt { reason };
            }
            Decision::Continue => {}
        }
        self.set_blocked(blocked, now);
        if self.blocked.is_some()
            || now - self.stage_started_at_ms < self.hold_ms
            || self.stage_requests < self.min_requests
        {
            return Step::Hold;
        }
        self.close_stage("held", now);
        if self.stage + 1 >= self.stages.len() {
            let reason = format!("every stage held, up to {}%", self.current());
            self.end(PlanStatus::Promoted, reason, now);
            return Step::Promote;
        }
        self.stage += 1;
        self.stage_started_at_ms = now;
        self.stage_requests = 0;
        Step::Advance { to: self.current() }
    }

    /// Records what holds the stage now. When a hold ends, the stage starts again: its `hold`
    /// and `min_requests` count from then, as a rollout's step does after a pause.
    fn set_blocked(&mut self, blocked: Option<String>, now: Millis) {
        if self.blocked.is_some() && blocked.is_none() {
            self.stage_started_at_ms = now;
            self.stage_requests = 0;
        }
        self.blocked = blocked;
    }

    /// A stage that leaves no off cohort (100 %) is judged against the off cohort of the
    /// stages before it, pooled: this stage's on cohort so far against it, as one comparison
    /// with the sequential judge. Without earlier stages there is nothing to compare with.
    fn judge_without_off_cohort(&self, settings: &JudgeSettings) -> Decision {
        let since_s = (self.stage_started_at_ms - self.started_at_ms).max(0) as f64 / 1000.0;
        let (earlier, this): (Vec<&Interval>, Vec<&Interval>) =
            self.intervals.iter().partition(|i| i.t <= since_s);
        let off_now: u64 = this.iter().map(|i| i.baseline.requests).sum();
        let reference = pooled(earlier.iter().map(|i| &i.baseline));
        if off_now > 0 || reference.requests == 0 {
            return Decision::Continue;
        }
        let sequential = JudgeSettings {
            judge: backstop_judge::JudgeKind::Sequential,
            ..settings.clone()
        };
        let mut judge = backstop_judge::build(&sequential);
        judge.observe(&Interval {
            t: 0.0,
            baseline: reference,
            canary: pooled(this.iter().map(|i| &i.canary)),
            log_lines: None,
        })
    }

    /// The cohorts' requests and errors during the current stage.
    fn stage_totals(&self) -> (u64, u64, u64, u64) {
        let since_s = (self.stage_started_at_ms - self.started_at_ms).max(0) as f64 / 1000.0;
        self.intervals
            .iter()
            .filter(|i| i.t > since_s)
            .fold((0, 0, 0, 0), |(a, b, c, d), i| {
                (
                    a + i.canary.requests,
                    b + i.canary.errors,
                    c + i.baseline.requests,
                    d + i.baseline.errors,
                )
            })
    }

    fn stage_counts(&self) -> String {
        let (on_r, on_e, off_r, off_e) = self.stage_totals();
        format!("on: {on_e} errors in {on_r} requests; off: {off_e} in {off_r}")
    }

    fn close_stage(&mut self, outcome: &str, now: Millis) {
        let (on_requests, on_errors, off_requests, off_errors) = self.stage_totals();
        self.stage_results.push(StageResult {
            percentage: self.current(),
            started_at_ms: self.stage_started_at_ms,
            ended_at_ms: now,
            outcome: outcome.to_owned(),
            on_requests,
            on_errors,
            off_requests,
            off_errors,
        });
    }
}

/// Counts of several intervals of one arm added up (latency histograms too, when every one
/// has the same bounds).
fn pooled<'a>(arms: impl Iterator<Item = &'a ArmCounts>) -> ArmCounts {
    let mut total = ArmCounts::default();
    let mut latency: Option<Vec<(f64, u64)>> = None;
    let mut latency_whole = true;
    for a in arms {
        total.requests += a.requests;
        total.errors += a.errors;
        match (&mut latency, &a.latency_le_ms) {
            (None, Some(h)) if latency_whole => latency = Some(h.clone()),
            (Some(sum), Some(h)) if sum.len() == h.len() => {
                for ((_, n), (_, m)) in sum.iter_mut().zip(h) {
                    *n += m;
                }
            }
            _ => latency_whole = false,
        }
    }
    total.latency_le_ms = latency.filter(|_| latency_whole);
    total
}

/// Counts between two cumulative readings; `None` when a counter went down (an instance or
/// the proxy restarted), so no interval is made of it.
#[must_use]
pub fn increments(before: &ArmCounts, after: &ArmCounts) -> Option<ArmCounts> {
    if after.requests < before.requests || after.errors < before.errors {
        return None;
    }
    let latency = match (&before.latency_le_ms, &after.latency_le_ms) {
        (Some(b), Some(a)) if b.len() == a.len() => Some(
            a.iter()
                .zip(b)
                .map(|((le, n), (_, m))| (*le, n.saturating_sub(*m)))
                .collect(),
        ),
        (None, Some(a)) => Some(a.clone()),
        _ => None,
    };
    Some(ArmCounts {
        requests: after.requests - before.requests,
        errors: after.errors - before.errors,
        latency_le_ms: latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_implementation() {
        // Values from the reference MurmurHash3_x86_32 (Python mmh3, seed 0, unsigned).
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"abc", 0), 3_017_643_002);
        assert_eq!(murmur3_32(b"abcd", 0), 1_139_631_978);
        assert_eq!(murmur3_32(b"abcde", 0), 3_902_511_862);
        assert_eq!(murmur3_32(b"Hello world", 0), 2_911_983_372);
        assert_eq!(murmur3_32("é".as_bytes(), 0), 269_551_495);
    }

    #[test]
    fn buckets_agree_with_unleash() {
        // Unleash's normalizedValue("123", "gr1") is 73 in its client specification.
        assert_eq!(bucket("gr1", "123"), 73);
        assert_eq!(bucket("groupY", "999"), 94);
        assert_eq!(bucket("new-checkout", "user-42"), 75);
    }

    #[test]
    fn buckets_are_spread_evenly_and_growing_the_percentage_only_adds_units() {
        let units: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        let on_at = |p: u8| -> Vec<bool> {
            units
                .iter()
                .map(|u| evaluate(p, "checkout", Some(u)).unwrap().value)
                .collect()
        };
        let mut before = on_at(1);
        for p in [5u8, 25, 50, 99] {
            let now = on_at(p);
            let share = now.iter().filter(|v| **v).count() as f64 / units.len() as f64;
            assert!(
                (share - f64::from(p) / 100.0).abs() < 0.015,
                "{p}%: {share}"
            );
            assert!(
                before.iter().zip(&now).all(|(b, n)| !b || *n),
                "{p}%: a unit lost the flag"
            );
            before = now;
        }
    }

    #[test]
    fn zero_and_hundred_need_no_unit_but_a_split_does() {
        assert_eq!(evaluate(0, "g", None).unwrap().reason, "DISABLED");
        let all = evaluate(100, "g", None).unwrap();
        assert!(all.value && all.reason == "STATIC");
        let err = evaluate(30, "g", Some("")).unwrap_err();
        assert_eq!(err.code(), "TARGETING_KEY_MISSING");
    }

    #[test]
    fn stages_must_rise_to_100() {
        assert!(check_stages(&[1, 5, 25, 100]).is_ok());
        assert!(check_stages(&[100]).is_ok());
        assert!(check_stages(&[]).unwrap_err().contains("at least one"));
        assert!(check_stages(&[5, 5, 100]).unwrap_err().contains("rise"));
        assert!(check_stages(&[1, 50]).unwrap_err().contains("last stage"));
        assert!(check_stages(&[0, 100]).unwrap_err().contains("outside"));
    }

    fn counts(requests: u64, errors: u64) -> ArmCounts {
        // With a latency histogram: its infinite bound must survive the JSON round trip.
        ArmCounts {
            requests,
            errors,
            latency_le_ms: Some(vec![(50.0, requests / 2), (f64::INFINITY, requests)]),
        }
    }

    fn flag() -> FlagState {
        let mut f = FlagState::new("new-checkout", "production", "checkout");
        f.start_reenable(vec![1, 5, 100], 10_000, 20, "ana", 0)
            .unwrap();
        f
    }

    fn errors_only() -> JudgeSettings {
        JudgeSettings {
            signals: vec![backstop_judge::SignalKind::Errors],
            ..JudgeSettings::default()
        }
    }

    /// Ticks every second from `from` s to `to` s with cohorts growing by `per_s` requests a
    /// second, `on_err`/`off_err` of them failing; returns every step that was not a hold.
    fn run(f: &mut FlagState, from: i64, to: i64, rates: (u64, f64, f64)) -> Vec<Step> {
        let (per_s, on_err, off_err) = rates;
        let mut steps = vec![];
        for s in from..=to {
            let n = per_s * s as u64;
            let on = counts(n, (n as f64 * on_err) as u64);
            let off = counts(n * 10, (n as f64 * 10.0 * off_err) as u64);
            let step = f.tick(on, off, None, &errors_only(), s * 1000);
            if step != Step::Hold {
                steps.push(step);
            }
        }
        steps
    }

    #[test]
    fn a_healthy_flag_climbs_every_stage_after_its_hold() {
        let mut f = flag();
        assert_eq!(f.percentage, 1);
        let steps = run(&mut f, 0, 40, (50, 0.01, 0.01));
        let moves: Vec<&Step> = steps.iter().filter(|s| **s != Step::Idle).collect();
        assert_eq!(
            moves,
            vec![
                &Step::Advance { to: 5 },
                &Step::Advance { to: 100 },
                &Step::Promote
            ]
        );
        assert_eq!(f.percentage, 100);
        let plan = f.plan.as_ref().unwrap();
        assert_eq!(plan.status, PlanStatus::Promoted);
        assert_eq!(plan.stage_results.len(), 3);
        assert!(plan.stage_results.iter().all(|r| r.outcome == "held"));
        let changes: Vec<u8> = f.history.iter().map(|c| c.to).collect();
        assert_eq!(changes, vec![1, 5, 100]);
    }

    #[test]
    fn a_broken_flag_goes_back_to_zero() {
        let mut f = flag();
        let steps = run(&mut f, 0, 40, (50, 0.30, 0.01));
        assert!(
            matches!(steps.first(), Some(Step::RollBack { reason }) if reason.contains("worse")),
            "{steps:?}"
        );
        assert_eq!(f.percentage, 0);
        assert_eq!(f.plan.as_ref().unwrap().status, PlanStatus::RolledBack);
        assert!(f.running_plan().is_none());
    }

    #[test]
    fn no_stage_ends_without_traffic_or_while_blocked() {
        let mut f = flag();
        // No traffic at all: held at 1% however long.
        for s in 0..100 {
            assert_eq!(
                f.tick(counts(0, 0), counts(0, 0), None, &errors_only(), s * 1000),
                Step::Hold
            );
        }
        // Traffic, but blocked by an open incident.
        let mut f = flag();
        for s in 0..100u64 {
            let step = f.tick(
                counts(50 * s, 0),
                counts(500 * s, 0),
                Some("incident INC-1 is open".into()),
                &errors_only(),
                s as i64 * 1000,
            );
            assert_eq!(step, Step::Hold);
        }
        assert_eq!(f.percentage, 1);
        assert_eq!(
            f.plan.unwrap().blocked.as_deref(),
            Some("incident INC-1 is open")
        );
    }

    #[test]
    fn a_plan_read_back_from_json_decides_as_if_never_stopped() {
        let mut straight = flag();
        let mut restarted = flag();
        run(&mut straight, 0, 40, (50, 0.02, 0.01));
        run(&mut restarted, 0, 12, (50, 0.02, 0.01));
        let json = serde_json::to_string(&restarted).unwrap();
        let mut restarted: FlagState = serde_json::from_str(&json).unwrap();
        run(&mut restarted, 13, 40, (50, 0.02, 0.01));
        assert_eq!(straight, restarted);
    }

    #[test]
    fn only_one_running_plan_and_abort_leaves_the_percentage() {
        let mut f = flag();
        assert!(
            f.start_reenable(vec![100], 0, 0, "bo", 5)
                .unwrap_err()
                .contains("already running")
        );
        f.abort_reenable("bo", "customer call", 6).unwrap();
        assert_eq!(f.percentage, 1);
        assert!(f.abort_reenable("bo", "again", 7).is_err());
        f.start_reenable(vec![100], 0, 0, "bo", 8).unwrap();
        assert_eq!(f.percentage, 100);
    }

    #[test]
    fn the_last_stage_is_judged_against_the_off_cohort_of_the_stages_before() {
        let mut f = flag();
        let steps = run(&mut f, 0, 20, (50, 0.01, 0.01));
        assert_eq!(steps.last(), Some(&Step::Advance { to: 100 }), "{steps:?}");
        assert_eq!(f.percentage, 100);
        // At 100 % nobody is off; the on cohort now fails a third of its requests.
        let last = f.plan.as_ref().unwrap().last.clone().unwrap();
        let mut step = Step::Hold;
        for s in 1..=20u64 {
            let on = counts(last.on.requests + 500 * s, last.on.errors + 150 * s);
            step = f.tick(
                on,
                last.off.clone(),
                None,
                &errors_only(),
                (20 + s as i64) * 1000,
            );
            if step != Step::Hold {
                break;
            }
        }
        assert!(matches!(step, Step::RollBack { .. }), "{step:?}");
        assert_eq!(f.percentage, 0);
    }

    #[test]
    fn a_counter_that_goes_down_starts_counting_again_instead_of_counting_it_all() {
        let mut f = flag();
        f.tick(counts(1000, 300), counts(1000, 10), None, &errors_only(), 0);
        // An instance restarted: both sums went down. Nothing of their history is judged.
        f.tick(counts(10, 0), counts(900, 9), None, &errors_only(), 1000);
        let plan = f.plan.as_ref().unwrap();
        assert!(plan.intervals.is_empty(), "{:?}", plan.intervals);
        assert_eq!(plan.last.as_ref().unwrap().on.requests, 10);
    }

    #[test]
    fn a_stage_held_by_a_freeze_counts_its_hold_again_from_the_end_of_the_freeze() {
        let mut f = flag();
        for s in 0..30u64 {
            f.tick(
                counts(50 * s, 0),
                counts(500 * s, 0),
                Some("freeze".into()),
                &errors_only(),
                s as i64 * 1000,
            );
        }
        // The freeze ends at 30 s: the stage needs its 10 s hold from then.
        let step = f.tick(
            counts(1500, 0),
            counts(15000, 0),
            None,
            &errors_only(),
            30_000,
        );
        assert_eq!(step, Step::Hold);
        assert_eq!(f.plan.as_ref().unwrap().stage_started_at_ms, 30_000);
    }

    #[test]
    fn a_re_enable_only_raises_the_flag() {
        let mut f = FlagState::new("k", "prod", "shop");
        f.set(30, "ana", "by hand", 0);
        f.start_reenable(vec![1, 5, 25, 50, 100], 0, 0, "ana", 1)
            .unwrap();
        assert_eq!(f.percentage, 50);
        assert_eq!(f.plan.as_ref().unwrap().stages, vec![50, 100]);
        f.abort_reenable("ana", "x", 2).unwrap();
        f.set(100, "ana", "all", 3);
        assert!(
            f.start_reenable(vec![1, 100], 0, 0, "ana", 4)
                .unwrap_err()
                .contains("already on for everyone")
        );
    }
}
