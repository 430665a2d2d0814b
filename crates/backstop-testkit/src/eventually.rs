//! Waiting for a condition that becomes true some time later, failing with what was awaited.

use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Looks at `probe()` until `done` holds for its value (returned) or `timeout` passes (the last
/// value seen is the error). Blocking: for synchronous tests.
pub fn poll_until<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe();
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(value);
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Polls `probe` until `done` holds for its value, within [`patience`](crate::patience); yields
/// that value. On timeout the test fails with what was awaited (the message, else the
/// condition's text) and the last value seen (`{:#?}`).
///
/// ```ignore
/// let detail = assert_eventually!(d.rollout(&id), |r| r["phase"] == "recovered", "rollout {id} recovers");
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($probe:expr, $done:expr $(,)?) => {
        $crate::assert_eventually!($probe, $done, "{}", stringify!($done))
    };
    ($probe:expr, $done:expr, $($what:tt)+) => {
        match $crate::poll_until($crate::patience(), || $probe, $done) {
            Ok(value) => value,
            Err(last) => panic!(
                "awaited for {:?}: {}; last value seen: {:#?}",
                $crate::patience(),
                format!($($what)+),
                last
            ),
        }
    };
}
