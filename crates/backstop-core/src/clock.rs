//! Where "now" comes from. Decisions in this crate take `now` as a plain value; the runtime reads
//! it from the [`Clock`] it is given, so what it decides can be replayed at any instant.

use crate::Millis;

/// A source of the current time in epoch milliseconds (UTC).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}
