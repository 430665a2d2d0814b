//! Durations as people write them (`30s`, `5m`, `1h 30m`): parsing, formatting, the serde
//! adapters the configuration's fields use, and their JSON Schema.

use std::time::Duration;

/// Pattern (for editors) of a duration string; the exact check is humantime's parser.
pub const DURATION_PATTERN: &str = r"^\s*[0-9]+\s*[a-zA-Zµμ]+(\s*[0-9]+\s*[a-zA-Zµμ]+)*\s*$";

/// `d` in milliseconds, as stored and compared (saturating at `Millis::MAX`).
#[must_use]
pub fn millis(d: Duration) -> crate::Millis {
    crate::Millis::try_from(d.as_millis()).unwrap_or(crate::Millis::MAX)
}

/// Parses a humantime duration (`30s`, `5m`, `1h 30m`), with an error that says what was expected.
///
/// # Errors
/// Text humantime does not read, with examples of what it does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected e.g. 30s, 5m, 1h 30m)"))
}

/// Formats a duration the way the config writes it (`30s`, `1h 30m`).
#[must_use]
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// serde adapter (`#[serde(with = "…")]`) for a `Duration` written as a duration string.
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes the duration as a string (`30s`).
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads a duration string.
    ///
    /// # Errors
    /// Not a string, or not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// serde adapter (`#[serde(with = "…")]`) for an optional `Duration` written as a duration string.
pub mod serde_option_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes the duration as a string (`30s`), or nothing.
    ///
    /// # Errors
    /// Those of the serializer.
    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional duration string.
    ///
    /// # Errors
    /// Not a string, or not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Schema of a duration string (`30s`, `5m`, `1h 30m`).
pub struct DurationString;

crate::inline_string_schema!(
    DurationString,
    "Duration",
    {
        "type": "string",
        "format": "duration",
        "pattern": DURATION_PATTERN,
        "examples": ["30s", "5m", "1h 30m"],
    }
);
