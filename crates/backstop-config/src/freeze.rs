//! Scheduled freeze windows (`freeze:` on a service or an environment): when they are in
//! effect, and the checks the schema cannot express.
//!
//! A window is either weekly (`every: "Fri 16:00"` for `for: 64h`, which may run across
//! midnight and across the end of the week; in UTC, or in the IANA time zone `tz`, where
//! `Fri 16:00` stays 16:00 on the wall clock across daylight-saving changes) or absolute
//! (`from` / `until`, RFC 3339 UTC timestamps ending in `Z`; `until` is exclusive).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::Problem;
use crate::yaml::Document;
use backstop_core::duration::{
    DurationString, format_duration, parse_duration, serde_option_duration as option_duration,
};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// Length of a week in milliseconds (the longest a weekly window may be).
pub const WEEK_MS: i64 = 7 * DAY_MS;
const DAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// A scheduled freeze: rollouts into the scope are refused while it is in effect, unless a
/// person overrides it with a reason (never alone in a regulated environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// Weekly start: a day and a 24-hour time, e.g. `Fri 16:00`, in UTC or in `tz`. Needs
    /// `for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<WeeklyTime>")]
    pub every: Option<String>,
    /// How long each weekly occurrence lasts (up to 7 days; it may run across midnight and
    /// into the next week), e.g. `64h`.
    #[serde(
        default,
        rename = "for",
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub length: Option<Duration>,
    /// Start of a one-off window: an RFC 3339 UTC time ending in `Z`, e.g.
    /// `2026-12-20T00:00:00Z`. Needs `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<UtcTime>")]
    pub from: Option<String>,
    /// End of a one-off window (exclusive), RFC 3339 UTC, after `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<UtcTime>")]
    pub until: Option<String>,
    /// The IANA time zone of a weekly window's start, e.g. `Europe/Berlin` (default UTC): the
    /// window starts at that wall-clock time every week, summer and winter alike, and lasts
    /// `for` of real time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tz: Option<String>,
    /// Why deployments are frozen (shown in every refusal), e.g. `weekend`.
    #[schemars(length(min = 1))]
    pub reason: String,
}

/// A window resolved to milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Starts `start_ms_of_week` after Monday 00:00 every week (of UTC, or of the wall clock in
    /// `tz`) and lasts `length_ms`.
    Weekly {
        start_ms_of_week: i64,
        length_ms: i64,
        tz: Option<jiff::tz::TimeZone>,
    },
    /// `[from_ms, until_ms)` in epoch milliseconds.
    Absolute { from_ms: i64, until_ms: i64 },
}

impl FreezeWindow {
    /// The window in milliseconds; `None` only for a window the validation would reject.
    #[must_use]
    pub fn schedule(&self) -> Option<Schedule> {
        match (&self.every, self.length, &self.from, &self.until) {
            (Some(every), Some(length), None, None) => Some(Schedule::Weekly {
                start_ms_of_week: parse_weekly(every).ok()?,
                length_ms: i64::try_from(length.as_millis()).ok()?.min(WEEK_MS),
                tz: match &self.tz {
                    Some(name) => Some(time_zone(name).ok()?),
                    None => None,
                },
            }),
            (None, None, Some(from), Some(until)) => Some(Schedule::Absolute {
                from_ms: parse_utc(from).ok()?,
                until_ms: parse_utc(until).ok()?,
            }),
            _ => None,
        }
    }

    /// The window as written, for messages: `every Fri 16:00 for 64h` or `from … until …`.
    #[must_use]
    pub fn describe(&self) -> String {
        match (&self.every, self.length, &self.from, &self.until) {
            (Some(every), Some(length), _, _) => format!(
                "every {every} {} for {}",
                self.tz.as_deref().unwrap_or("UTC"),
                format_duration(length)
            ),
            (_, _, Some(from), Some(until)) => format!("from {from} until {until}"),
            _ => "an incomplete window".to_owned(),
        }
    }
}

impl Schedule {
    /// `Some((start, end))` of the occurrence in effect at `now_ms`, `None` when outside.
    #[must_use]
    pub fn occurrence_at(&self, now_ms: i64) -> Option<(i64, i64)> {
        match self {
            Schedule::Weekly {
                start_ms_of_week,
                length_ms,
                tz,
            } => {
                let start = latest_start(*start_ms_of_week, tz.as_ref(), now_ms)?;
                (now_ms < start + length_ms).then_some((start, start + length_ms))
            }
            Schedule::Absolute { from_ms, until_ms } => {
                (*from_ms <= now_ms && now_ms < *until_ms).then_some((*from_ms, *until_ms))
            }
        }
    }

    /// The first occurrence that starts after `now_ms` (`None` for a past one-off window).
    #[must_use]
    pub fn next_start_after(&self, now_ms: i64) -> Option<i64> {
        match self {
            Schedule::Weekly {
                start_ms_of_week,
                tz,
                ..
            } => {
                // The latest start a week and a day on, stepped back until it is the first
                // after `now_ms` (a week is 167 to 169 hours on a zone's wall clock).
                let mut at = now_ms + WEEK_MS + DAY_MS;
                loop {
                    let start = latest_start(*start_ms_of_week, tz.as_ref(), at)?;
                    let earlier = latest_start(*start_ms_of_week, tz.as_ref(), start - 1)?;
                    if earlier <= now_ms {
                        return Some(start);
                    }
                    at = earlier;
                }
            }
            Schedule::Absolute { from_ms, .. } => (*from_ms > now_ms).then_some(*from_ms),
        }
    }
}

/// The latest weekly start (`start_ms_of_week` after Monday 00:00 of UTC, or of `tz`'s wall
/// clock) at or before `now_ms`, in epoch milliseconds. In a zone, a start time that does not
/// exist on the day (skipped by a daylight-saving change) starts when the clock resumes; one
/// that happens twice starts the first time.
fn latest_start(
    start_ms_of_week: i64,
    tz: Option<&jiff::tz::TimeZone>,
    now_ms: i64,
) -> Option<i64> {
    let Some(tz) = tz else {
        let since_start = (ms_of_week(now_ms) - start_ms_of_week).rem_euclid(WEEK_MS);
        return Some(now_ms - since_start);
    };
    let now = jiff::Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned(tz.clone());
    let monday = now
        .date()
        .checked_sub(jiff::Span::new().days(i64::from(now.weekday().to_monday_zero_offset())))
        .ok()?;
    let day = start_ms_of_week.div_euclid(DAY_MS);
    let minutes = start_ms_of_week.rem_euclid(DAY_MS) / MINUTE_MS;
    let start_of = |weeks_back: i64| -> Option<i64> {
        let date = monday
            .checked_add(jiff::Span::new().days(day - 7 * weeks_back))
            .ok()?;
        let civil = date.at(
            i8::try_from(minutes / 60).ok()?,
            i8::try_from(minutes % 60).ok()?,
            0,
            0,
        );
        let zoned = tz.to_ambiguous_zoned(civil).compatible().ok()?;
        Some(zoned.timestamp().as_millisecond())
    };
    let this_week = start_of(0)?;
    if this_week <= now_ms {
        Some(this_week)
    } else {
        start_of(1)
    }
}

/// The IANA time zone `name` (from the tz database built into Backstop).
///
/// # Errors
/// A message naming the zone.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|_| {
        format!("unknown time zone {name:?} (an IANA name such as \"Europe/Berlin\" or \"America/New_York\")")
    })
}

/// Milliseconds since the last Monday 00:00 UTC (1970-01-01 was a Thursday).
fn ms_of_week(now_ms: i64) -> i64 {
    let days = now_ms.div_euclid(DAY_MS);
    (days + 3).rem_euclid(7) * DAY_MS + now_ms.rem_euclid(DAY_MS)
}

/// Parses `Fri 16:00` (day name or 3-letter abbreviation, any case; 24-hour UTC time) into
/// milliseconds after Monday 00:00.
///
/// # Errors
/// A message that shows the expected form.
pub fn parse_weekly(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "invalid weekly time {text:?} (expected a day and a 24-hour UTC time, e.g. \"Fri 16:00\")"
        )
    };
    let (day, time) = text.trim().split_once(' ').ok_or_else(bad)?;
    let day = day.to_ascii_lowercase();
    let index = DAYS
        .iter()
        .position(|(short, long)| day == *short || day == *long)
        .ok_or_else(bad)?;
    let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return Err(bad());
    }
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(i64::try_from(index).map_err(|_| bad())? * DAY_MS + h * 60 * MINUTE_MS + m * MINUTE_MS)
}

/// Parses an RFC 3339 UTC timestamp (`2026-12-20T00:00:00Z`) into epoch milliseconds.
///
/// # Errors
/// A message that shows the expected form.
pub fn parse_utc(text: &str) -> Result<i64, String> {
    let bad = |why: String| {
        format!(
            "invalid UTC time {text:?}: {why} (expected RFC 3339 in UTC ending in Z, e.g. 2026-12-20T00:00:00Z)"
        )
    };
    let t = humantime::parse_rfc3339(text.trim()).map_err(|e| bad(e.to_string()))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad("before 1970".to_owned()))?;
    i64::try_from(d.as_millis()).map_err(|_| bad("too far in the future".to_owned()))
}

/// Checks of every `freeze` list the schema cannot express: the two forms, `until` after
/// `from`, `for` within a week.
pub(crate) fn problems(doc: &Document, root: &Value) -> Vec<Problem> {
    let mut lists: Vec<(String, &Value)> = Vec::new();
    for (i, svc) in root
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(list) = svc.get("freeze") {
            lists.push((format!("/services/{i}/freeze"), list));
        }
        for (k, env) in svc
            .get("environments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(list) = env.get("freeze") {
                lists.push((format!("/services/{i}/environments/{k}/freeze"), list));
            }
        }
    }
    let mut out = Vec::new();
    let mut push = |path: String, message: String| {
        out.push(Problem {
            pos: doc.value_pos(&path),
            path,
            message,
        });
    };
    for (base, list) in lists {
        for (j, w) in list.as_array().into_iter().flatten().enumerate() {
            let Some(obj) = w.as_object() else { continue };
            let p = format!("{base}/{j}");
            let has = |k: &str| obj.contains_key(k);
            let weekly = has("every") || has("for");
            let absolute = has("from") || has("until");
            if weekly && absolute {
                push(
                    format!("{p}/{}", if has("from") { "from" } else { "until" }),
                    "a freeze window is either weekly (`every` + `for`) or one-off (`from` + `until`), not both".to_owned(),
                );
                continue;
            }
            if !weekly && !absolute {
                push(
                    p.clone(),
                    "a freeze window needs `every` + `for` (weekly, UTC) or `from` + `until` (one-off, UTC)".to_owned(),
                );
                continue;
            }
            for (key, other) in [
                ("every", "for"),
                ("for", "every"),
                ("from", "until"),
                ("until", "from"),
            ] {
                if has(key) && !has(other) {
                    push(format!("{p}/{key}"), format!("`{key}` needs `{other}`"));
                }
            }
            if let Some(Ok(d)) = obj.get("for").and_then(Value::as_str).map(parse_duration) {
                if d.is_zero() {
                    push(format!("{p}/for"), "must be greater than 0".to_owned());
                } else if d.as_millis() > WEEK_MS as u128 {
                    push(
                        format!("{p}/for"),
                        format!(
                            "a weekly window lasts at most 7 days, got {}",
                            format_duration(d)
                        ),
                    );
                }
            }
            if let Some(name) = obj.get("tz").and_then(Value::as_str) {
                if absolute {
                    push(
                        format!("{p}/tz"),
                        "`tz` is for weekly windows; `from` and `until` are UTC times ending in Z"
                            .to_owned(),
                    );
                } else if let Err(e) = time_zone(name) {
                    push(format!("{p}/tz"), e);
                }
            }
            let time = |k: &str| obj.get(k).and_then(Value::as_str).map(parse_utc);
            if let (Some(Ok(from)), Some(Ok(until))) = (time("from"), time("until"))
                && until <= from
            {
                push(
                    format!("{p}/until"),
                    "must be after `from` (the window would never be in effect)".to_owned(),
                );
            }
        }
    }
    out
}

/// Schema of a weekly start time.
pub(crate) struct WeeklyTime;

backstop_core::inline_string_schema!(
    WeeklyTime,
    "WeeklyTime",
    {
        "type": "string",
        "format": "weekly-time",
        "description": "A day and a 24-hour time (UTC, or the window's `tz`).",
        "examples": ["Fri 16:00", "sat 00:00"],
    }
);

/// Schema of a UTC timestamp.
pub(crate) struct UtcTime;

backstop_core::inline_string_schema!(
    UtcTime,
    "UtcTime",
    {
        "type": "string",
        "format": "utc-time",
        "description": "RFC 3339 time in UTC, ending in Z.",
        "examples": ["2026-12-20T00:00:00Z"],
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 is a Friday.
    fn at(text: &str) -> i64 {
        parse_utc(text).expect("test time")
    }

    fn weekly(every: &str, hours: u64) -> Schedule {
        FreezeWindow {
            every: Some(every.into()),
            length: Some(Duration::from_secs(hours * 3600)),
            from: None,
            until: None,
            tz: None,
            reason: "weekend".into(),
        }
        .schedule()
        .expect("valid window")
    }

    fn weekly_in(every: &str, hours: u64, tz: &str) -> Schedule {
        FreezeWindow {
            every: Some(every.into()),
            length: Some(Duration::from_secs(hours * 3600)),
            from: None,
            until: None,
            tz: Some(tz.into()),
            reason: "weekend".into(),
        }
        .schedule()
        .expect("valid window")
    }

    #[test]
    fn a_zoned_window_keeps_its_wall_clock_time_across_daylight_saving_changes() {
        // Berlin: CEST (UTC+2) until 2026-10-25 03:00, then CET (UTC+1).
        let s = weekly_in("Fri 16:00", 64, "Europe/Berlin");
        // Friday 2026-10-23, summer time: 16:00 in Berlin is 14:00 UTC.
        let summer = at("2026-10-23T14:00:00Z");
        assert_eq!(s.occurrence_at(summer - 1), None);
        assert_eq!(
            s.occurrence_at(summer),
            Some((summer, summer + 64 * 3_600_000))
        );
        // The next Friday, winter time: 16:00 in Berlin is 15:00 UTC, a week and an hour on.
        let winter = at("2026-10-30T15:00:00Z");
        assert_eq!(s.next_start_after(summer), Some(winter));
        assert_eq!(s.occurrence_at(at("2026-10-30T14:30:00Z")), None);
        assert!(s.occurrence_at(winter).is_some());
        // New York in March: EST (UTC-5) until 2026-03-08, then EDT (UTC-4).
        let s = weekly_in("Mon 09:00", 8, "America/New_York");
        assert_eq!(
            s.occurrence_at(at("2026-03-02T14:00:00Z")).map(|o| o.0),
            Some(at("2026-03-02T14:00:00Z"))
        );
        assert_eq!(
            s.occurrence_at(at("2026-03-09T13:00:00Z")).map(|o| o.0),
            Some(at("2026-03-09T13:00:00Z"))
        );
        assert_eq!(s.occurrence_at(at("2026-03-09T12:59:00Z")), None);
        // A start the clock skips (02:30 on the spring-forward Sunday) starts when it resumes.
        let s = weekly_in("Sun 02:30", 1, "America/New_York");
        assert_eq!(
            s.occurrence_at(at("2026-03-08T07:30:00Z")).map(|o| o.0),
            Some(at("2026-03-08T07:30:00Z")),
            "02:30 does not exist: 03:30 EDT, which is 07:30 UTC"
        );
    }

    proptest::proptest! {
        /// Whatever the zone and the moment: an occurrence in effect contains it, and the next
        /// start is after it, the start of an occurrence, with none in between.
        #[test]
        fn occurrences_and_next_starts_agree(
            now in 1_700_000_000_000i64..1_900_000_000_000,
            day in 0usize..7,
            hour in 0u32..24,
            hours in 1u64..=168,
            zone in proptest::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
        ) {
            let every = format!("{} {hour:02}:30", DAYS[day].0);
            let s = weekly_in(&every, hours, zone);
            if let Some((start, end)) = s.occurrence_at(now) {
                proptest::prop_assert!(start <= now && now < end);
            }
            let next = s.next_start_after(now).expect("weekly windows recur");
            proptest::prop_assert!(next > now);
            proptest::prop_assert!(next - now <= WEEK_MS + 2 * 3_600_000);
            proptest::prop_assert_eq!(s.occurrence_at(next).map(|o| o.0), Some(next));
        }
    }

    #[test]
    fn unknown_zones_are_named() {
        assert!(time_zone("Europe/Berlin").is_ok());
        assert!(
            time_zone("Mars/Olympus")
                .unwrap_err()
                .contains("Mars/Olympus")
        );
    }

    #[test]
    fn weekday_arithmetic_matches_the_calendar() {
        assert_eq!(ms_of_week(at("1970-01-05T00:00:00Z")), 0, "a Monday");
        assert_eq!(
            ms_of_week(at("2026-11-27T16:00:00Z")),
            4 * DAY_MS + 16 * 60 * MINUTE_MS,
            "Friday 16:00"
        );
        assert_eq!(
            parse_weekly("Fri 16:00"),
            Ok(4 * DAY_MS + 16 * 60 * MINUTE_MS)
        );
        assert_eq!(parse_weekly("friday 16:00"), parse_weekly("FRI 16:00"));
        assert_eq!(parse_weekly("sun 23:59"), Ok(7 * DAY_MS - MINUTE_MS));
        for bad in [
            "Fri",
            "Fri 24:00",
            "Fri 16:60",
            "Fry 16:00",
            "Fri 4pm",
            "Fri 6:00",
            "fr 16:00",
            "fridays 16:00",
        ] {
            assert!(parse_weekly(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn weekend_window_wraps_over_midnight_and_the_end_of_the_week() {
        // Fri 16:00 + 64h = Mon 08:00 of the next week.
        let s = weekly("Fri 16:00", 64);
        assert_eq!(s.occurrence_at(at("2026-11-27T15:59:59Z")), None);
        let start = at("2026-11-27T16:00:00Z");
        let end = at("2026-11-30T08:00:00Z");
        for inside in [
            "2026-11-27T16:00:00Z",
            "2026-11-28T00:00:00Z",
            "2026-11-29T23:59:59Z",
            "2026-11-30T00:00:00Z",
            "2026-11-30T07:59:59Z",
        ] {
            assert_eq!(s.occurrence_at(at(inside)), Some((start, end)), "{inside}");
        }
        assert_eq!(s.occurrence_at(end), None, "the end is exclusive");
        assert_eq!(s.occurrence_at(at("2026-12-02T12:00:00Z")), None);
        assert_eq!(
            s.next_start_after(at("2026-12-02T12:00:00Z")),
            Some(at("2026-12-04T16:00:00Z"))
        );
        // A Sunday-night window runs into Monday, across the week boundary.
        let s = weekly("Sun 22:00", 4);
        assert!(
            s.occurrence_at(at("2026-11-30T01:00:00Z")).is_some(),
            "Mon 01:00"
        );
        assert!(
            s.occurrence_at(at("2026-11-30T02:00:00Z")).is_none(),
            "Mon 02:00"
        );
        assert!(
            s.occurrence_at(at("2026-11-29T21:59:00Z")).is_none(),
            "Sun 21:59"
        );
    }

    #[test]
    fn a_full_week_window_is_always_in_effect() {
        let s = weekly("Wed 09:30", 24 * 7);
        for t in [
            "2026-11-25T09:30:00Z",
            "2026-12-01T09:29:59Z",
            "2026-11-27T00:00:00Z",
        ] {
            assert!(s.occurrence_at(at(t)).is_some(), "{t}");
        }
    }

    #[test]
    fn absolute_windows_include_from_and_exclude_until() {
        let w = FreezeWindow {
            every: None,
            length: None,
            from: Some("2026-12-20T00:00:00Z".into()),
            until: Some("2027-01-03T00:00:00Z".into()),
            tz: None,
            reason: "holidays".into(),
        };
        let s = w.schedule().expect("valid");
        assert_eq!(s.occurrence_at(at("2026-12-19T23:59:59Z")), None);
        assert!(s.occurrence_at(at("2026-12-20T00:00:00Z")).is_some());
        assert!(s.occurrence_at(at("2027-01-02T23:59:59Z")).is_some());
        assert_eq!(s.occurrence_at(at("2027-01-03T00:00:00Z")), None);
        assert_eq!(
            s.next_start_after(at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-20T00:00:00Z"))
        );
        assert_eq!(s.next_start_after(at("2027-02-01T00:00:00Z")), None);
        assert!(parse_utc("2026-12-20T00:00:00+01:00").is_err(), "UTC only");
        assert!(parse_utc("2026-12-20").is_err());
    }
}
