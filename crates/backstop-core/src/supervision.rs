//! Supervision decisions: what to do with one instance Backstop runs (a stable version, a
//! canary) after a liveness and health check. Pure: the controller checks the real process,
//! calls [`InstanceWatch::observe`], and executes what it says.
//!
//! A crashed process is restarted at once; a live process that fails its health check is
//! restarted after [`FAILED_CHECKS_BEFORE_RESTART`] failures in a row (one slow answer under
//! load is not a crash). Restarts back off exponentially, and [`CRASH_LOOP_RESTARTS`] restarts
//! within [`CRASH_LOOP_WINDOW_MS`] are a crash loop: reported once, and the environment counts
//! as degraded until the instance has stayed healthy for a whole window.

use serde::Serialize;

use crate::Millis;

/// Failed health checks in a row of a live process before it is restarted.
pub const FAILED_CHECKS_BEFORE_RESTART: u32 = 3;
/// Restarts within [`CRASH_LOOP_WINDOW_MS`] that make a crash loop.
pub const CRASH_LOOP_RESTARTS: usize = 3;
pub const CRASH_LOOP_WINDOW_MS: Millis = 5 * 60 * 1000;
/// The first restart waits this long after the previous one; each further one twice as long.
pub const FIRST_BACKOFF_MS: Millis = 1_000;
pub const MAX_BACKOFF_MS: Millis = 60_000;

/// What one check of an instance found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Healthy,
    /// The process is gone.
    Exited,
    /// The process runs but its health check failed (the reason is kept for the record).
    Unhealthy(String),
}

/// What to do after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: healthy, or not failing long enough yet.
    Keep,
    /// Restart it now; `crash_loop_started` is true the first time restarts reach a crash loop
    /// (report it once).
    Restart {
        reason: String,
        crash_loop_started: bool,
    },
    /// It should be restarted, but the backoff runs until `until_ms`.
    BackOff { until_ms: Millis },
}

/// What supervision remembers of one instance (in memory: a restarted daemon starts afresh,
/// and adopts instances only after a health check anyway).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InstanceWatch {
    pub healthy: bool,
    pub failed_checks: u32,
    /// When it was restarted, within the crash-loop window.
    pub recent_restarts: Vec<Millis>,
    pub restarts_total: u64,
    pub crash_loop: bool,
    pub last_problem: Option<String>,
}

impl InstanceWatch {
    /// Takes one check's result and decides.
    pub fn observe(&mut self, check: &Check, now: Millis) -> Decision {
        self.recent_restarts
            .retain(|at| now.saturating_sub(*at) < CRASH_LOOP_WINDOW_MS);
        let reason = match check {
            Check::Healthy => {
                self.healthy = true;
                self.failed_checks = 0;
                if self.recent_restarts.is_empty() {
                    self.crash_loop = false;
                }
                return Decision::Keep;
            }
            Check::Exited => "its process exited".to_string(),
            Check::Unhealthy(why) => {
                self.failed_checks += 1;
                if self.failed_checks < FAILED_CHECKS_BEFORE_RESTART {
                    return Decision::Keep;
                }
                format!(
                    "{} health checks in a row failed (last: {why})",
                    self.failed_checks
                )
            }
        };
        self.healthy = false;
        self.last_problem = Some(reason.clone());
        if let Some(until_ms) = self.backoff_until()
            && now < until_ms
        {
            return Decision::BackOff { until_ms };
        }
        Decision::Restart {
            reason,
            crash_loop_started: !self.crash_loop
                && self.recent_restarts.len() + 1 >= CRASH_LOOP_RESTARTS,
        }
    }

    /// Records a restart attempt made at `now` (whether or not it came up).
    pub fn restarted(&mut self, now: Millis, crash_loop_started: bool) {
        self.recent_restarts.push(now);
        self.restarts_total += 1;
        self.failed_checks = 0;
        self.crash_loop |= crash_loop_started;
    }

    /// The earliest time of the next restart: the last one plus a backoff that doubles with
    /// every restart in the window.
    fn backoff_until(&self) -> Option<Millis> {
        let last = *self.recent_restarts.last()?;
        let doublings = (self.recent_restarts.len() - 1).min(16) as u32;
        let backoff = (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS);
        Some(last + backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crashed_process_is_restarted_at_once() {
        let mut w = InstanceWatch::default();
        assert_eq!(w.observe(&Check::Healthy, 0), Decision::Keep);
        assert!(matches!(
            w.observe(&Check::Exited, 1_000),
            Decision::Restart {
                crash_loop_started: false,
                ..
            }
        ));
        assert!(!w.healthy);
    }

    #[test]
    fn a_live_process_is_restarted_only_after_several_failed_checks() {
        let mut w = InstanceWatch::default();
        let slow = Check::Unhealthy("no answer within 1000ms".into());
        assert_eq!(w.observe(&slow, 0), Decision::Keep);
        assert_eq!(w.observe(&slow, 1_000), Decision::Keep);
        assert!(matches!(w.observe(&slow, 2_000), Decision::Restart { .. }));
        // A healthy answer in between starts the count again.
        let mut w = InstanceWatch::default();
        w.observe(&slow, 0);
        w.observe(&slow, 1_000);
        w.observe(&Check::Healthy, 2_000);
        assert_eq!(w.observe(&slow, 3_000), Decision::Keep);
    }

    /// Observes an exit at `now`, expects a restart, records it; returns whether it started a
    /// crash loop.
    fn restart_after_exit(w: &mut InstanceWatch, now: Millis) -> bool {
        let Decision::Restart {
            crash_loop_started, ..
        } = w.observe(&Check::Exited, now)
        else {
            panic!("expected a restart at {now}: {w:?}")
        };
        w.restarted(now, crash_loop_started);
        crash_loop_started
    }

    #[test]
    fn restarts_back_off_and_a_third_within_the_window_is_a_crash_loop_reported_once() {
        let mut w = InstanceWatch::default();
        assert!(!restart_after_exit(&mut w, 0));
        // Dies again at once: the second restart waits 1 s, the third 2 s.
        assert_eq!(
            w.observe(&Check::Exited, 100),
            Decision::BackOff { until_ms: 1_000 }
        );
        assert!(!restart_after_exit(&mut w, 1_000));
        assert_eq!(
            w.observe(&Check::Exited, 2_500),
            Decision::BackOff { until_ms: 3_000 }
        );
        assert!(
            restart_after_exit(&mut w, 3_000),
            "the third restart in the window is a crash loop"
        );
        assert!(w.crash_loop);
        assert!(!restart_after_exit(&mut w, 7_000), "reported once");
        // Healthy, but still in a crash loop until a whole window passes without restarts.
        w.observe(&Check::Healthy, 8_000);
        assert!(w.crash_loop);
        w.observe(&Check::Healthy, 7_000 + CRASH_LOOP_WINDOW_MS);
        assert!(!w.crash_loop);
        assert_eq!(w.restarts_total, 4);
    }
}
