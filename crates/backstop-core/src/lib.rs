//! Backstop's domain: the nouns (releases, rollouts, recoveries, audit records) and the pure
//! decisions taken on them. Nothing here touches the network, the disk or the clock: callers pass
//! `now` in, so every decision can be tested with plain values.

pub mod access;
pub mod alert;
pub mod approval;
pub mod audit;
pub mod breaker;
pub mod clock;
pub mod dora;
pub mod drill;
pub mod duration;
pub mod env_var;
pub mod event;
pub mod explain;
#[cfg(test)]
mod fixtures;
pub mod flag;
pub mod gaps;
pub mod group;
pub mod heartbeat;
pub mod incident;
pub mod label;
pub mod model;
pub mod named;
pub mod partial;
pub mod postmortem;
pub mod reconcile;
pub mod recovery;
pub mod rollout;
pub mod runbook_run;
pub mod schema;
pub mod scorecard;
pub mod secret;
pub mod severity;
pub mod ship;
pub mod snapshot;
pub mod supervision;
pub mod tier;
pub mod timeline;
pub mod validation;

/// Implements `schemars::JsonSchema` for `$ty` as the string schema `$schema`, named `$name` and
/// always inlined where it is used (never a `$defs` entry): for schema-only types that describe a
/// string field's shape, and for types read from one string.
#[macro_export]
macro_rules! inline_string_schema {
    ($ty:ty, $name:literal, $schema:tt) => {
        impl ::schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!($schema)
            }
        }
    };
}

/// Milliseconds since the Unix epoch, UTC. The one time unit stored and exchanged.
pub type Millis = i64;

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-26T05:03:01.123Z`.
pub fn format_ms(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_ms(1_795_662_181_007), "2026-11-26T03:03:01.007Z");
    }
}
