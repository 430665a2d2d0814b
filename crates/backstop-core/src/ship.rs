//! Ships: one release of one service taken through the service's environment waves in order
//! (`staging` → `prod-eu` → `prod-us`), each wave's environments rolled out together, each wave
//! baked (judged against its pre-deploy baselines) before the next starts.
//!
//! A failed wave (a canary rolled back, or the bake found the release worse than before) is
//! taken back whole: rollouts still under way are aborted (their own recoveries put traffic
//! back), environments already promoted go back to their previous last known good. Then earlier
//! waves that say `on_later_failure: roll_back` go back too, latest first; later waves never
//! start. Every rollout and recovery a ship makes has an id derived from the ship, so a
//! controller killed at any moment finds what it did instead of doing it again.
//!
//! Pure: the controller reads the environments of the wave [`focus`] names and applies what
//! [`next`] says.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::model::{Phase, RecoveryStatus};
use crate::named::string_enum;

string_enum! {
    /// Where a ship is.
    pub enum ShipPhase {
        /// Waves roll out (and bake) one after the other.
        Shipping = "shipping",
        /// A wave failed: it is being put back (and earlier waves that follow a later failure).
        RollingBack = "rolling_back",
        /// The release passed every wave.
        Shipped = "shipped",
        /// A wave failed and was put back, or the gate refused a wave: later waves never ran.
        Stopped = "stopped",
        /// An environment could not be put back; a person decides (see `halt`).
        Halted = "halted",
    }
}

impl ShipPhase {
    pub fn is_active(self) -> bool {
        matches!(self, ShipPhase::Shipping | ShipPhase::RollingBack)
    }
}

string_enum! {
    /// Where one wave of a ship is.
    pub enum WaveState {
        /// Its turn has not come (or the gate holds it: see the ship's `held`).
        Waiting = "waiting",
        /// Its environments' rollouts run.
        RollingOut = "rolling_out",
        /// Every environment was promoted; the bake judges them until `bake_until_ms`.
        Baking = "baking",
        /// Promoted and baked: the next wave may start.
        Passed = "passed",
        /// A rollout or the bake failed; it is being put back.
        Failed = "failed",
        /// Put back with an earlier failure (its `on_later_failure: roll_back`).
        RollingBack = "rolling_back",
        /// Back on the previous last known good.
        RolledBack = "rolled_back",
        /// Never started: an earlier wave failed or was refused.
        Skipped = "skipped",
    }
}

string_enum! {
    /// Where one environment of a wave is.
    pub enum EnvState {
        Waiting = "waiting",
        RollingOut = "rolling_out",
        Promoted = "promoted",
        /// Its rollout failed or its bake did.
        Failed = "failed",
        /// The ship's recovery puts it back.
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
        /// It ran the release before the ship: nothing to roll out, nothing to put back.
        AlreadyRunning = "already_running",
        Skipped = "skipped",
    }
}

/// The bake of one environment: the new version's requests and errors since the bake began,
/// judged against the error ratio before the deployment ([`backstop_judge::bake`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bake {
    /// The pre-deploy baseline's requests and errors (the rollout's own baseline).
    pub baseline_requests: u64,
    pub baseline_errors: u64,
    /// The error ratio judged against ([`backstop_judge::bake::reference_ratio`]).
    pub reference_ratio: f64,
    /// Totals since the bake began.
    pub requests: u64,
    pub errors: u64,
    /// The cumulative counters last read (a counter that went down was reset: counted anew).
    pub last_requests: u64,
    pub last_errors: u64,
    /// The test's e-value now (`1/alpha` or more fails the wave).
    pub e_value: f64,
    /// The service's analysis is in shadow mode: a failing bake is recorded here, never acted on.
    #[serde(default)]
    pub shadow: bool,
    /// What a failing bake would have done, in shadow mode (the first time it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_verdict: Option<String>,
}

impl Bake {
    /// A bake that starts from cumulative counters `counters` (requests, errors) with a
    /// pre-deploy baseline of `baseline` (requests, errors), judged at `alpha`; `shadow`
    /// records a failure instead of acting on it.
    pub fn begin(baseline: (u64, u64), counters: (u64, u64), alpha: f64, shadow: bool) -> Bake {
        Bake {
            baseline_requests: baseline.0,
            baseline_errors: baseline.1,
            reference_ratio: backstop_judge::bake::reference_ratio(baseline.0, baseline.1, alpha),
            requests: 0,
            errors: 0,
            last_requests: counters.0,
            last_errors: counters.1,
            e_value: 1.0,
            shadow,
            shadow_verdict: None,
        }
    }

    /// What the bake has seen, in words: `0.40 % of 1200 requests vs 0.66 % before`.
    pub fn summary(&self) -> String {
        let ratio = if self.requests > 0 {
            format!("{:.2} %", 100.0 * self.errors as f64 / self.requests as f64)
        } else {
            "no traffic yet".into()
        };
        format!(
            "{ratio} of {} requests vs {:.2} % before",
            self.requests,
            100.0 * self.reference_ratio
        )
    }

    /// Adds what cumulative counters `counters` say happened since the last read, then judges
    /// at `alpha`. Returns why the release is worse than before, when it is and the bake acts
    /// (in shadow mode the reason is kept in `shadow_verdict` instead).
    pub fn observe(&mut self, counters: (u64, u64), alpha: f64) -> Option<String> {
        let (requests, errors) = counters;
        if requests < self.last_requests || errors < self.last_errors {
            // The counters were reset (the proxy restarted): they count from zero.
            self.requests += requests;
            self.errors += errors;
        } else {
            self.requests += requests - self.last_requests;
            self.errors += errors - self.last_errors;
        }
        (self.last_requests, self.last_errors) = (requests, errors);
        let judged =
            backstop_judge::bake::judge(self.requests, self.errors, self.reference_ratio, alpha);
        self.e_value = judged.e_value;
        let why = judged.worse.then(|| {
            format!(
                "its error ratio during the bake is {:.2} % ({} of {} requests), above {:.2} % at most before the deployment (e-value {} ≥ 2/α = {:.0})",
                100.0 * judged.error_ratio.unwrap_or_default(),
                self.errors,
                self.requests,
                100.0 * self.reference_ratio,
                if judged.e_value < 1e6 {
                    format!("{:.0}", judged.e_value)
                } else {
                    format!("{:.1e}", judged.e_value)
                },
                2.0 / alpha
            )
        });
        if self.shadow {
            if self.shadow_verdict.is_none() {
                self.shadow_verdict = why.map(|w| format!("would have failed the wave: {w}"));
            }
            return None;
        }
        why
    }
}

/// One environment of a wave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveEnv {
    pub env: String,
    pub state: EnvState,
    /// Its rollout ([`rollout_id`]) once started.
    pub rollout_id: Option<String>,
    /// The ship's recovery of it ([`recovery_id`]) once planned.
    pub recovery_id: Option<String>,
    pub bake: Option<Bake>,
    /// What happened to it, in a sentence (a failure, a refusal).
    pub note: Option<String>,
}

/// One wave of a ship.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveRun {
    pub envs: Vec<WaveEnv>,
    /// How long the wave bakes once promoted (`None`: not at all).
    pub bake_ms: Option<Millis>,
    /// Whether it goes back when a later wave fails (`on_later_failure: roll_back`).
    pub roll_back_with_later: bool,
    pub state: WaveState,
    pub started_at_ms: Option<Millis>,
    pub bake_started_at_ms: Option<Millis>,
    pub bake_until_ms: Option<Millis>,
    pub finished_at_ms: Option<Millis>,
}

/// A wave as declared: its environments, its bake, its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavePlan {
    pub envs: Vec<String>,
    pub bake_ms: Option<Millis>,
    pub roll_back_with_later: bool,
}

/// Why a ship halted, and what a person can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShipHalt {
    pub wave: usize,
    pub env: String,
    pub reason: String,
    pub options: Vec<String>,
}

/// One release taken through a service's waves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ship {
    pub id: String,
    pub service: String,
    /// `service@version`.
    pub release_id: String,
    pub version: String,
    pub actor: String,
    pub reason: Option<String>,
    pub phase: ShipPhase,
    pub waves: Vec<WaveRun>,
    /// Why the next wave waits (the gate's blocking checks), while it does.
    pub held: Option<String>,
    /// The wave whose failure (or refusal) stopped the ship.
    pub failed_wave: Option<usize>,
    pub failure: Option<String>,
    pub halt: Option<ShipHalt>,
    /// A person asked to stop the ship; the controller applies it at its next pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<StopRequest>,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
    pub finished_at_ms: Option<Millis>,
}

/// Who asked to stop a ship, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopRequest {
    pub actor: String,
    pub reason: String,
    pub at_ms: Millis,
}

/// The rollout id of environment `env` in wave `wave` of ship `ship_id`: derived, so starting
/// it again after a crash finds the rollout already stored.
pub fn rollout_id(ship_id: &str, wave: usize, env: &str) -> String {
    format!("{ship_id}-w{}-{env}", wave + 1)
}

/// The id of the ship's recovery of environment `env` of wave `wave` (its way back), derived
/// likewise; apart from its rollout's own recovery (`rec-` and the rollout's id).
pub fn recovery_id(ship_id: &str, wave: usize, env: &str) -> String {
    format!("rec-{ship_id}-w{}-{env}-back", wave + 1)
}

impl Ship {
    /// A new ship of `release_id` (`version`) of `service` through `waves`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        service: &str,
        release_id: &str,
        version: &str,
        waves: &[WavePlan],
        actor: &str,
        reason: Option<String>,
        now: Millis,
    ) -> Ship {
        Ship {
            id,
            service: service.to_string(),
            release_id: release_id.to_string(),
            version: version.to_string(),
            actor: actor.to_string(),
            reason,
            phase: ShipPhase::Shipping,
            waves: waves
                .iter()
                .map(|w| WaveRun {
                    envs: w
                        .envs
                        .iter()
                        .map(|e| WaveEnv {
                            env: e.clone(),
                            state: EnvState::Waiting,
                            rollout_id: None,
                            recovery_id: None,
                            bake: None,
                            note: None,
                        })
                        .collect(),
                    bake_ms: w.bake_ms,
                    roll_back_with_later: w.roll_back_with_later,
                    state: WaveState::Waiting,
                    started_at_ms: None,
                    bake_started_at_ms: None,
                    bake_until_ms: None,
                    finished_at_ms: None,
                })
                .collect(),
            held: None,
            failed_wave: None,
            failure: None,
            halt: None,
            stop_requested: None,
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: None,
        }
    }
}

/// What the controller read of one environment of the [`focus`] wave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSeen {
    /// The phase of its ship rollout ([`rollout_id`]), when stored.
    pub rollout: Option<Phase>,
    /// The status of the ship's recovery of it ([`recovery_id`]), when stored.
    pub recovery: Option<RecoveryStatus>,
    /// It serves the shipped release now (its last known good).
    pub serving: bool,
    /// Another unfinished recovery of the environment (an alert's, a person's rollback).
    pub other_recovery: Option<String>,
    /// The shipped version's cumulative requests and errors there (while baking).
    pub counters: Option<(u64, u64)>,
    /// A recovery the environment waits on that stopped on a failed step (the ship's way back,
    /// or its canary's own recovery): its id.
    pub failed_recovery: Option<String>,
}

/// What a ship needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipStep {
    /// Nothing until a rollout, a recovery or the clock moves (changes made are stored).
    Wait,
    /// Gate wave `wave`'s environments, then start their rollouts (derived ids); a hold or a
    /// refusal is the controller's to apply ([`hold`], [`refuse`]).
    StartWave(usize),
    /// Every environment of the wave is promoted: begin its bake ([`Bake::begin`] for each).
    BeginBake(usize),
    /// Abort the rollout of environment `env` of wave `wave` (its own recovery puts it back).
    Abort { wave: usize, env: usize },
    /// Plan the ship's recovery of environment `env` of wave `wave` (id [`recovery_id`]);
    /// `bad` keeps the release's bad mark (its own bake failed there).
    PutBack { wave: usize, env: usize, bad: bool },
    /// A change to record (stored with it).
    Changed(ShipEvent),
}

/// A change [`next`] made, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipEvent {
    WavePassed(usize),
    WaveFailed(usize),
    WaveRolledBack(usize),
    Shipped,
    Stopped,
    /// A person's stop was applied.
    StoppedByPerson,
    /// A recovery the ship waits on failed: the ship halted.
    Halted,
}

/// The wave [`next`] looks at: `None` when there is none left (the ship finishes).
pub fn focus(ship: &Ship) -> Option<usize> {
    match ship.phase {
        ShipPhase::Shipping => ship.waves.iter().position(|w| w.state != WaveState::Passed),
        ShipPhase::RollingBack => {
            let failed = ship.failed_wave?;
            if matches!(
                ship.waves[failed].state,
                WaveState::Failed | WaveState::RollingBack
            ) {
                return Some(failed);
            }
            ship.waves[..failed].iter().rposition(|w| {
                w.roll_back_with_later
                    && matches!(w.state, WaveState::Passed | WaveState::RollingBack)
            })
        }
        _ => None,
    }
}

/// Moves `ship` on from what was `seen` of the environments of its [`focus`] wave (in the
/// wave's order), at `now`, judging bakes at `alpha`: changes are applied to `ship`; the work
/// to do (or the change to record) is returned.
pub fn next(ship: &mut Ship, seen: &[EnvSeen], alpha: f64, now: Millis) -> ShipStep {
    let Some(w) = focus(ship) else {
        return finish(ship, now);
    };
    let ship_id = ship.id.clone();
    // What was stored under the derived ids belongs to the ship, also when the controller died
    // before it wrote them down.
    for (e, s) in ship.waves[w].envs.iter_mut().zip(seen) {
        if s.rollout.is_some() && e.rollout_id.is_none() {
            e.rollout_id = Some(rollout_id(&ship_id, w, &e.env));
            if e.state == EnvState::Waiting {
                e.state = EnvState::RollingOut;
            }
        }
        if s.recovery.is_some() && e.recovery_id.is_none() {
            e.recovery_id = Some(recovery_id(&ship_id, w, &e.env));
        }
    }
    if ship.phase == ShipPhase::Shipping
        && let Some(req) = ship.stop_requested.clone()
    {
        stop(ship, &req.actor, &req.reason, now);
        return ShipStep::Changed(ShipEvent::StoppedByPerson);
    }
    match (ship.phase, ship.waves[w].state) {
        (ShipPhase::Shipping, WaveState::Waiting) => ShipStep::StartWave(w),
        (ShipPhase::Shipping, WaveState::RollingOut) => rolling_out(ship, w, seen, now),
        (ShipPhase::Shipping, WaveState::Baking) => baking(ship, w, seen, alpha, now),
        (ShipPhase::RollingBack, _) => rolling_back(ship, w, seen, now),
        _ => ShipStep::Wait,
    }
}

fn rolling_out(ship: &mut Ship, w: usize, seen: &[EnvSeen], now: Millis) -> ShipStep {
    // The started environments first: a failure there counts even while others wait to start.
    for (i, s) in seen.iter().enumerate().take(ship.waves[w].envs.len()) {
        let env = &mut ship.waves[w].envs[i];
        if env.state != EnvState::RollingOut {
            continue;
        }
        match s.rollout {
            Some(Phase::Promoted) => {
                env.state = EnvState::Promoted;
                ship.updated_at_ms = now;
            }
            Some(Phase::Failed | Phase::Recovering | Phase::Recovered) => {
                let why = format!("its canary in {} failed", env.env);
                fail(ship, w, i, &why, now);
                return ShipStep::Changed(ShipEvent::WaveFailed(w));
            }
            _ => {}
        }
    }
    let wave = &ship.waves[w];
    if wave
        .envs
        .iter()
        .any(|e| e.state == EnvState::Waiting && e.rollout_id.is_none())
    {
        // Started in part (before a crash, or while the gate holds the rest): the rest is
        // started (what exists is found).
        return ShipStep::StartWave(w);
    }
    if !wave
        .envs
        .iter()
        .all(|e| matches!(e.state, EnvState::Promoted | EnvState::AlreadyRunning))
    {
        return ShipStep::Wait;
    }
    // Only what this ship deployed bakes: a wave whose environments all ran the release
    // already has nothing to judge.
    if wave.bake_ms.is_some() && wave.envs.iter().any(|e| e.state == EnvState::Promoted) {
        return ShipStep::BeginBake(w);
    }
    pass(ship, w, now)
}

fn baking(ship: &mut Ship, w: usize, seen: &[EnvSeen], alpha: f64, now: Millis) -> ShipStep {
    for (i, s) in seen.iter().enumerate().take(ship.waves[w].envs.len()) {
        let env = &mut ship.waves[w].envs[i];
        let name = env.env.clone();
        let why = if let Some(other) = &s.other_recovery {
            Some(format!(
                "{name} is being rolled back during the bake ({other})"
            ))
        } else if !s.serving {
            Some(format!("{name} no longer runs the release during the bake"))
        } else {
            match (&mut env.bake, s.counters) {
                (Some(bake), Some(counters)) => bake
                    .observe(counters, alpha)
                    .map(|why| format!("the bake of {name} failed: {why}")),
                _ => None,
            }
        };
        if let Some(why) = why {
            fail(ship, w, i, &why, now);
            return ShipStep::Changed(ShipEvent::WaveFailed(w));
        }
    }
    if ship.waves[w]
        .bake_until_ms
        .is_some_and(|until| now >= until)
    {
        return pass(ship, w, now);
    }
    ShipStep::Wait
}

fn rolling_back(ship: &mut Ship, w: usize, seen: &[EnvSeen], now: Millis) -> ShipStep {
    let before = ship.waves[w].clone();
    if ship.waves[w].state == WaveState::Passed {
        ship.waves[w].state = WaveState::RollingBack;
    }
    for (i, s) in seen.iter().enumerate().take(ship.waves[w].envs.len()) {
        let env = &mut ship.waves[w].envs[i];
        let bake_failed = env.state == EnvState::Failed && s.rollout == Some(Phase::Promoted);
        if let Some(failed) = &s.failed_recovery
            && matches!(
                env.state,
                EnvState::Failed | EnvState::RollingBack | EnvState::RollingOut
            )
        {
            let reason = format!(
                "recovery {failed} of {} stopped on a failed step; the ship cannot put it back",
                env.env
            );
            let options = vec![
                format!(
                    "fix what failed and resume it: backstop recovery resume {failed} (the ship stays halted; what it put back stays back)"
                ),
                format!(
                    "or roll {} back by hand: backstop rollback {} --env {} --reason …",
                    env.env, ship.service, env.env
                ),
            ];
            halt(ship, w, i, reason, options, now);
            return ShipStep::Changed(ShipEvent::Halted);
        }
        match env.state {
            EnvState::RollingOut => match s.rollout {
                Some(Phase::Promoted) => env.state = EnvState::Promoted,
                Some(Phase::Failed | Phase::Recovering) => env.state = EnvState::Failed,
                Some(Phase::Recovered) => env.state = EnvState::RolledBack,
                _ => return ShipStep::Abort { wave: w, env: i },
            },
            EnvState::Failed
                if !bake_failed && matches!(s.rollout, Some(Phase::Recovered) | None) =>
            {
                env.state = EnvState::RolledBack;
            }
            EnvState::Failed if !bake_failed => {}
            EnvState::Promoted | EnvState::Failed | EnvState::RollingBack => match s.recovery {
                Some(RecoveryStatus::Done) => env.state = EnvState::RolledBack,
                Some(_) => env.state = EnvState::RollingBack,
                None if s.other_recovery.is_some() => {}
                // Put back by someone else meanwhile (an alert's rollback, a person's).
                None if !s.serving => {
                    env.state = EnvState::RolledBack;
                    env.note = Some("put back by another recovery".into());
                }
                None => {
                    return ShipStep::PutBack {
                        wave: w,
                        env: i,
                        bad: bake_failed,
                    };
                }
            },
            _ => {}
        }
    }
    let wave = &mut ship.waves[w];
    let done = wave.envs.iter().all(|e| {
        matches!(
            e.state,
            EnvState::RolledBack | EnvState::AlreadyRunning | EnvState::Skipped | EnvState::Waiting
        )
    });
    if !done {
        if *wave != before {
            ship.updated_at_ms = now;
        }
        return ShipStep::Wait;
    }
    wave.state = WaveState::RolledBack;
    wave.finished_at_ms = Some(now);
    ship.updated_at_ms = now;
    ShipStep::Changed(ShipEvent::WaveRolledBack(w))
}

/// Wave `w` passed: the next one may start.
fn pass(ship: &mut Ship, w: usize, now: Millis) -> ShipStep {
    let wave = &mut ship.waves[w];
    wave.state = WaveState::Passed;
    wave.finished_at_ms = Some(now);
    ship.updated_at_ms = now;
    ShipStep::Changed(ShipEvent::WavePassed(w))
}

/// Environment `env` of wave `w` failed with `why`: the wave is put back, later waves never
/// start.
pub fn fail(ship: &mut Ship, w: usize, env: usize, why: &str, now: Millis) {
    let wave = &mut ship.waves[w];
    wave.state = WaveState::Failed;
    wave.envs[env].state = EnvState::Failed;
    wave.envs[env].note = Some(why.to_string());
    skip_after(ship, w);
    ship.phase = ShipPhase::RollingBack;
    ship.failed_wave = Some(w);
    ship.failure = Some(format!("wave {} failed: {why}", w + 1));
    ship.held = None;
    ship.updated_at_ms = now;
}

/// The gate refused wave `w` for a reason waiting does not cure (a bad release, a missing
/// backup): the ship stops there; nothing of the wave ran, and what passed keeps the release.
pub fn refuse(ship: &mut Ship, w: usize, why: &str, now: Millis) {
    skip(&mut ship.waves[w]);
    skip_after(ship, w);
    ship.failed_wave = Some(w);
    ship.failure = Some(format!("wave {} was refused by the gate: {why}", w + 1));
    ship.held = None;
    ship.phase = ShipPhase::Stopped;
    ship.updated_at_ms = now;
    ship.finished_at_ms = Some(now);
}

/// The gate holds the next wave for `why` (a freeze, an open breaker, an incident): the ship
/// waits and asks again. Returns whether the reason is new (to record).
pub fn hold(ship: &mut Ship, why: String, now: Millis) -> bool {
    if ship.held.as_deref() == Some(why.as_str()) {
        return false;
    }
    ship.held = Some(why);
    ship.updated_at_ms = now;
    true
}

/// A person stopped the ship: waves that have not started never will. A wave under way is left
/// to its rollouts (each goes on, or is aborted, as any rollout); nothing is rolled back.
pub fn stop(ship: &mut Ship, actor: &str, reason: &str, now: Millis) {
    for wave in ship
        .waves
        .iter_mut()
        .filter(|w| w.state == WaveState::Waiting)
    {
        if wave.envs.iter().any(|e| e.rollout_id.is_some()) {
            // Started before the stop was applied (found under its derived ids): its
            // rollouts run on, as the wave under way's do.
            wave.state = WaveState::RollingOut;
        } else {
            skip(wave);
        }
    }
    ship.failure = Some(format!("stopped by {actor}: {reason}"));
    ship.held = None;
    ship.stop_requested = None;
    ship.phase = ShipPhase::Stopped;
    ship.updated_at_ms = now;
    ship.finished_at_ms = Some(now);
}

/// An environment could not be put back: the ship halts, explained.
pub fn halt(
    ship: &mut Ship,
    w: usize,
    env: usize,
    reason: String,
    options: Vec<String>,
    now: Millis,
) {
    ship.waves[w].envs[env].note = Some(reason.clone());
    ship.halt = Some(ShipHalt {
        wave: w,
        env: ship.waves[w].envs[env].env.clone(),
        reason,
        options,
    });
    ship.phase = ShipPhase::Halted;
    ship.updated_at_ms = now;
    ship.finished_at_ms = Some(now);
}

fn skip_after(ship: &mut Ship, w: usize) {
    ship.waves[w + 1..].iter_mut().for_each(skip);
}

/// Wave `wave` never starts: it and its environments are skipped.
fn skip(wave: &mut WaveRun) {
    wave.state = WaveState::Skipped;
    for e in &mut wave.envs {
        e.state = EnvState::Skipped;
    }
}

/// No wave left to look at: the ship ends shipped or stopped.
fn finish(ship: &mut Ship, now: Millis) -> ShipStep {
    let event = match ship.phase {
        ShipPhase::Shipping => {
            ship.phase = ShipPhase::Shipped;
            ShipEvent::Shipped
        }
        ShipPhase::RollingBack => {
            ship.phase = ShipPhase::Stopped;
            ShipEvent::Stopped
        }
        _ => return ShipStep::Wait,
    };
    ship.held = None;
    ship.updated_at_ms = now;
    ship.finished_at_ms = Some(now);
    ShipStep::Changed(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ship(bake: Option<Millis>, keep_first: bool) -> Ship {
        let waves = [
            WavePlan {
                envs: vec!["staging".into()],
                bake_ms: bake,
                roll_back_with_later: !keep_first,
            },
            WavePlan {
                envs: vec!["prod-eu".into(), "prod-us".into()],
                bake_ms: None,
                roll_back_with_later: false,
            },
        ];
        Ship::new(
            "shp-1".into(),
            "shop",
            "shop@v2",
            "v2",
            &waves,
            "ana",
            None,
            0,
        )
    }

    fn rollout(phase: Phase) -> EnvSeen {
        EnvSeen {
            rollout: Some(phase),
            serving: phase == Phase::Promoted,
            ..EnvSeen::default()
        }
    }

    /// What the controller does for `StartWave`: every environment's rollout started.
    fn start(s: &mut Ship, w: usize) {
        s.waves[w].state = WaveState::RollingOut;
        for e in &mut s.waves[w].envs {
            e.state = EnvState::RollingOut;
            e.rollout_id = Some(rollout_id("shp-1", w, &e.env));
        }
    }

    /// What the controller does for `BeginBake`.
    fn begin_bake(s: &mut Ship, w: usize, now: Millis) {
        let wave = &mut s.waves[w];
        wave.state = WaveState::Baking;
        wave.bake_started_at_ms = Some(now);
        wave.bake_until_ms = Some(now + wave.bake_ms.unwrap());
        for e in &mut wave.envs {
            e.bake = Some(Bake::begin((10_000, 50), (0, 0), 0.05, false));
        }
    }

    #[test]
    fn waves_go_in_order_and_a_bake_holds_the_next_until_its_time_is_up() {
        let mut s = ship(Some(60_000), true);
        assert_eq!(
            next(&mut s, &[EnvSeen::default()], 0.05, 1),
            ShipStep::StartWave(0)
        );
        start(&mut s, 0);
        let progressing = [rollout(Phase::Progressing)];
        assert_eq!(next(&mut s, &progressing, 0.05, 2), ShipStep::Wait);
        assert_eq!(
            next(&mut s, &[rollout(Phase::Promoted)], 0.05, 3),
            ShipStep::BeginBake(0)
        );
        begin_bake(&mut s, 0, 3);
        let baking = |req, err| EnvSeen {
            counters: Some((req, err)),
            ..rollout(Phase::Promoted)
        };
        assert_eq!(
            next(&mut s, &[baking(1_000, 5)], 0.05, 30_000),
            ShipStep::Wait
        );
        assert_eq!(s.waves[0].envs[0].bake.as_ref().unwrap().requests, 1_000);
        // The second wave has not started while the first bakes.
        assert_eq!(s.waves[1].state, WaveState::Waiting);
        assert_eq!(
            next(&mut s, &[baking(2_000, 10)], 0.05, 60_003),
            ShipStep::Changed(ShipEvent::WavePassed(0))
        );
        let two = [EnvSeen::default(), EnvSeen::default()];
        assert_eq!(next(&mut s, &two, 0.05, 60_004), ShipStep::StartWave(1));
        start(&mut s, 1);
        let both = [rollout(Phase::Promoted), rollout(Phase::Progressing)];
        assert_eq!(next(&mut s, &both, 0.05, 60_005), ShipStep::Wait);
        assert_eq!(s.waves[1].envs[0].state, EnvState::Promoted);
        let both = [rollout(Phase::Promoted), rollout(Phase::Promoted)];
        assert_eq!(
            next(&mut s, &both, 0.05, 60_006),
            ShipStep::Changed(ShipEvent::WavePassed(1))
        );
        assert_eq!(
            next(&mut s, &[], 0.05, 60_007),
            ShipStep::Changed(ShipEvent::Shipped)
        );
        assert_eq!(s.phase, ShipPhase::Shipped);
        assert_eq!(next(&mut s, &[], 0.05, 60_008), ShipStep::Wait);
    }

    #[test]
    fn a_failed_canary_in_the_first_wave_stops_the_ship_before_the_second() {
        let mut s = ship(None, true);
        start(&mut s, 0);
        assert_eq!(
            next(&mut s, &[rollout(Phase::Recovering)], 0.05, 5),
            ShipStep::Changed(ShipEvent::WaveFailed(0))
        );
        assert_eq!(s.phase, ShipPhase::RollingBack);
        assert_eq!(s.waves[1].state, WaveState::Skipped);
        assert!(
            s.failure.as_deref().unwrap().contains("staging"),
            "{:?}",
            s.failure
        );
        // Its own recovery puts it back; the ship waits for it, then stops.
        assert_eq!(
            next(&mut s, &[rollout(Phase::Recovering)], 0.05, 6),
            ShipStep::Wait
        );
        assert_eq!(
            next(&mut s, &[rollout(Phase::Recovered)], 0.05, 7),
            ShipStep::Changed(ShipEvent::WaveRolledBack(0))
        );
        assert_eq!(
            next(&mut s, &[], 0.05, 8),
            ShipStep::Changed(ShipEvent::Stopped)
        );
        assert_eq!(s.phase, ShipPhase::Stopped);
        assert!(s.waves[1].envs.iter().all(|e| e.rollout_id.is_none()));
    }

    #[test]
    fn a_worse_bake_fails_the_wave_and_puts_it_back_marked_bad() {
        let mut s = ship(Some(60_000), true);
        start(&mut s, 0);
        next(&mut s, &[rollout(Phase::Promoted)], 0.05, 1);
        begin_bake(&mut s, 0, 1);
        let worse = EnvSeen {
            counters: Some((2_000, 200)),
            ..rollout(Phase::Promoted)
        };
        assert_eq!(
            next(&mut s, std::slice::from_ref(&worse), 0.05, 10_000),
            ShipStep::Changed(ShipEvent::WaveFailed(0))
        );
        let note = s.waves[0].envs[0].note.clone().unwrap();
        assert!(
            note.contains("10.00 %") && note.contains("0.66 %") && note.contains("e-value 9.6e157"),
            "{note}"
        );
        assert_eq!(
            next(&mut s, &[worse], 0.05, 10_001),
            ShipStep::PutBack {
                wave: 0,
                env: 0,
                bad: true
            }
        );
        let putting_back = EnvSeen {
            recovery: Some(RecoveryStatus::Running),
            ..rollout(Phase::Promoted)
        };
        assert_eq!(next(&mut s, &[putting_back], 0.05, 10_002), ShipStep::Wait);
        assert_eq!(s.waves[0].envs[0].state, EnvState::RollingBack);
        let back = EnvSeen {
            recovery: Some(RecoveryStatus::Done),
            ..rollout(Phase::Promoted)
        };
        assert_eq!(
            next(&mut s, &[back], 0.05, 10_003),
            ShipStep::Changed(ShipEvent::WaveRolledBack(0))
        );
    }

    #[test]
    fn a_later_failure_aborts_its_wave_and_takes_back_earlier_waves_that_ask_for_it() {
        let mut s = ship(None, false);
        start(&mut s, 0);
        next(&mut s, &[rollout(Phase::Promoted)], 0.05, 1);
        assert_eq!(s.waves[0].state, WaveState::Passed);
        start(&mut s, 1);
        let seen = [rollout(Phase::Progressing), rollout(Phase::Failed)];
        assert_eq!(
            next(&mut s, &seen, 0.05, 2),
            ShipStep::Changed(ShipEvent::WaveFailed(1))
        );
        // The sibling still under way is aborted.
        assert_eq!(
            next(&mut s, &seen, 0.05, 3),
            ShipStep::Abort { wave: 1, env: 0 }
        );
        let seen = [rollout(Phase::Recovered), rollout(Phase::Recovered)];
        // Aborted: it fails; then recovered.
        s.waves[1].envs[0].state = EnvState::Failed;
        assert_eq!(
            next(&mut s, &seen, 0.05, 4),
            ShipStep::Changed(ShipEvent::WaveRolledBack(1))
        );
        // Then the first wave, which follows a later failure, goes back (not marked bad).
        assert_eq!(focus(&s), Some(0));
        assert_eq!(
            next(&mut s, &[rollout(Phase::Promoted)], 0.05, 5),
            ShipStep::PutBack {
                wave: 0,
                env: 0,
                bad: false
            }
        );
        let done = EnvSeen {
            recovery: Some(RecoveryStatus::Done),
            ..EnvSeen::default()
        };
        assert_eq!(
            next(&mut s, &[done], 0.05, 6),
            ShipStep::Changed(ShipEvent::WaveRolledBack(0))
        );
        assert_eq!(
            next(&mut s, &[], 0.05, 7),
            ShipStep::Changed(ShipEvent::Stopped)
        );
    }

    #[test]
    fn a_wave_that_keeps_the_release_stays_when_a_later_one_fails() {
        let mut s = ship(None, true);
        start(&mut s, 0);
        next(&mut s, &[rollout(Phase::Promoted)], 0.05, 1);
        start(&mut s, 1);
        let seen = [rollout(Phase::Recovered), rollout(Phase::Recovered)];
        next(&mut s, &seen, 0.05, 2);
        s.waves[1].envs[1].state = EnvState::Failed;
        next(&mut s, &seen, 0.05, 3);
        assert_eq!(focus(&s), None);
        assert_eq!(
            next(&mut s, &[], 0.05, 4),
            ShipStep::Changed(ShipEvent::Stopped)
        );
        assert_eq!(s.waves[0].state, WaveState::Passed);
    }

    #[test]
    fn a_rollout_found_under_its_derived_id_is_the_ships_after_a_crash() {
        let mut s = ship(None, true);
        // Started, but the controller died before writing it down.
        assert_eq!(
            next(&mut s, &[rollout(Phase::Progressing)], 0.05, 1),
            ShipStep::StartWave(0)
        );
        assert_eq!(
            s.waves[0].envs[0].rollout_id.as_deref(),
            Some("shp-1-w1-staging")
        );
        assert_eq!(s.waves[0].envs[0].state, EnvState::RollingOut);
    }

    #[test]
    fn a_shadow_bake_records_what_it_would_have_done_and_lets_the_wave_pass() {
        let mut bake = Bake::begin((10_000, 50), (0, 0), 0.05, true);
        assert_eq!(bake.observe((2_000, 200), 0.05), None);
        let verdict = bake.shadow_verdict.clone().unwrap();
        assert!(
            verdict.starts_with("would have failed the wave"),
            "{verdict}"
        );
        // Kept as first seen.
        bake.observe((4_000, 400), 0.05);
        assert_eq!(bake.shadow_verdict.as_deref(), Some(verdict.as_str()));
        let mut acting = Bake::begin((10_000, 50), (0, 0), 0.05, false);
        assert!(acting.observe((2_000, 200), 0.05).is_some());
        assert_eq!(acting.shadow_verdict, None);
    }

    #[test]
    fn a_stopped_ship_skips_the_waves_not_started_and_leaves_the_running_one() {
        let mut s = ship(None, true);
        start(&mut s, 0);
        s.stop_requested = Some(StopRequest {
            actor: "ana".into(),
            reason: "wrong version".into(),
            at_ms: 1,
        });
        let seen = [rollout(Phase::Progressing)];
        assert_eq!(
            next(&mut s, &seen, 0.05, 1),
            ShipStep::Changed(ShipEvent::StoppedByPerson)
        );
        assert_eq!(s.phase, ShipPhase::Stopped);
        assert_eq!(s.stop_requested, None);
        assert_eq!(s.waves[0].state, WaveState::RollingOut);
        assert_eq!(s.waves[1].state, WaveState::Skipped);
        assert_eq!(s.failure.as_deref(), Some("stopped by ana: wrong version"));
        assert_eq!(next(&mut s, &[], 0.05, 2), ShipStep::Wait);
    }

    #[test]
    fn a_stop_applied_after_a_wave_started_unrecorded_leaves_that_wave_running() {
        let mut s = ship(None, true);
        s.stop_requested = Some(StopRequest {
            actor: "ana".into(),
            reason: "hold on".into(),
            at_ms: 1,
        });
        // The controller started staging's rollout, then died before storing it.
        next(&mut s, &[rollout(Phase::Progressing)], 0.05, 2);
        assert_eq!(s.phase, ShipPhase::Stopped);
        assert_eq!(s.waves[0].state, WaveState::RollingOut);
        assert_eq!(s.waves[0].envs[0].state, EnvState::RollingOut);
        assert_eq!(s.waves[1].state, WaveState::Skipped);
    }

    #[test]
    fn a_failed_way_back_halts_the_ship_with_the_options() {
        let mut s = ship(None, true);
        start(&mut s, 0);
        next(&mut s, &[rollout(Phase::Recovering)], 0.05, 1);
        let stuck = EnvSeen {
            failed_recovery: Some("rec-shp-1-w1-staging".into()),
            ..rollout(Phase::Recovering)
        };
        assert_eq!(
            next(&mut s, &[stuck], 0.05, 2),
            ShipStep::Changed(ShipEvent::Halted)
        );
        assert_eq!(s.phase, ShipPhase::Halted);
        let halt = s.halt.unwrap();
        assert!(halt.options[0].contains("backstop recovery resume rec-shp-1-w1-staging"));
    }

    #[test]
    fn a_wave_started_in_part_fails_on_a_started_environment_while_the_rest_waits() {
        let mut s = ship(None, true);
        start(&mut s, 0);
        next(&mut s, &[rollout(Phase::Promoted)], 0.05, 1);
        s.waves[1].state = WaveState::RollingOut;
        s.waves[1].envs[0].state = EnvState::RollingOut;
        s.waves[1].envs[0].rollout_id = Some(rollout_id("shp-1", 1, "prod-eu"));
        let seen = [rollout(Phase::Progressing), EnvSeen::default()];
        assert_eq!(next(&mut s, &seen, 0.05, 2), ShipStep::StartWave(1));
        let seen = [rollout(Phase::Recovering), EnvSeen::default()];
        assert_eq!(
            next(&mut s, &seen, 0.05, 3),
            ShipStep::Changed(ShipEvent::WaveFailed(1))
        );
    }

    #[test]
    fn a_wave_that_ran_the_release_already_does_not_bake() {
        let mut s = ship(Some(60_000), true);
        s.waves[0].state = WaveState::RollingOut;
        s.waves[0].envs[0].state = EnvState::AlreadyRunning;
        assert_eq!(
            next(&mut s, &[EnvSeen::default()], 0.05, 1),
            ShipStep::Changed(ShipEvent::WavePassed(0))
        );
    }

    #[test]
    fn waiting_on_a_rollback_writes_nothing() {
        let mut s = ship(None, true);
        start(&mut s, 0);
        next(&mut s, &[rollout(Phase::Recovering)], 0.05, 1);
        let before = s.clone();
        assert_eq!(
            next(&mut s, &[rollout(Phase::Recovering)], 0.05, 2),
            ShipStep::Wait
        );
        assert_eq!(s, before);
    }

    #[test]
    fn a_hold_is_recorded_once_and_a_refusal_stops_without_rolling_back() {
        let mut s = ship(None, true);
        assert!(hold(&mut s, "freeze: weekend".into(), 1));
        assert!(!hold(&mut s, "freeze: weekend".into(), 2));
        refuse(&mut s, 0, "release: marked bad", 3);
        assert_eq!(s.phase, ShipPhase::Stopped);
        assert_eq!(s.held, None);
        assert_eq!(focus(&s), None);
        assert!(s.failure.unwrap().contains("refused by the gate"));
    }
}
