//! Timestamps: microseconds since the Unix epoch, shown in the one fixed-width format of DESIGN.md §2
//! (`2023-11-03T13:02:25.584885+00:00`) so that they sort as text.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// `2038-01-19T03:14:07+00:00`: the end of an availability whose `end` was omitted.
pub const DEFAULT_AVAILABILITY_END: Timestamp = Timestamp(2_147_483_647_000_000);
/// The "distant past": the start of an availability whose `start` was omitted.
pub const DEFAULT_AVAILABILITY_START: Timestamp = Timestamp(0);

impl Timestamp {
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    pub fn plus(self, duration: std::time::Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// Accepts any RFC 3339 date-time (any offset, any precision); stored as UTC microseconds.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|dt| Self(dt.with_timezone(&Utc).timestamp_micros()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::<Utc>::from_timestamp_micros(self.0) {
            // `Micros` gives exactly six digits; `false` keeps `+00:00` rather than `Z`.
            Some(dt) => f.write_str(&dt.to_rfc3339_opts(SecondsFormat::Micros, false)),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_digits_and_explicit_offset() {
        let t = Timestamp::from_micros(1_699_016_545_584_885);
        assert_eq!(t.to_string(), "2023-11-03T13:02:25.584885+00:00");
        assert_eq!(
            Timestamp::from_secs(1_699_016_545).to_string(),
            "2023-11-03T13:02:25.000000+00:00"
        );
    }

    #[test]
    fn default_end_is_2038() {
        assert_eq!(
            DEFAULT_AVAILABILITY_END.to_string(),
            "2038-01-19T03:14:07.000000+00:00"
        );
    }

    #[test]
    fn parses_any_offset_to_utc() {
        let t = Timestamp::parse_rfc3339("2023-11-03T15:02:25.5+02:00").expect("valid");
        assert_eq!(t.to_string(), "2023-11-03T13:02:25.500000+00:00");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }
}
