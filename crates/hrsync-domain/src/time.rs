//! Points in time and time zones.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// An instant in UTC with millisecond precision.
///
/// The wire format (`timestamp-millis`) carries milliseconds, so every
/// constructor truncates to whole milliseconds: a value survives an Avro round
/// trip exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "DateTime<Utc>", into = "DateTime<Utc>")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    ///
    /// # Errors
    /// [`DomainError::TimestampOutOfRange`] if chrono cannot represent it.
    pub fn from_millis(millis: i64) -> Result<Self> {
        DateTime::from_timestamp_millis(millis)
            .map(Self)
            .ok_or(DomainError::TimestampOutOfRange {
                field: "timestamp",
                millis,
            })
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        Self::from(Utc::now())
    }

    /// The instant as a chrono `DateTime`.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    /// Truncates to whole milliseconds.
    fn from(value: DateTime<Utc>) -> Self {
        Self(value.trunc_subsecs(3))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(value: Timestamp) -> Self {
        value.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

/// An IANA time zone, validated against the chrono-tz database, that keeps
/// the name it was given (so `US/Pacific` stays `US/Pacific`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(Tz);

impl TimeZone {
    /// Parses an IANA time zone name such as `Europe/Berlin`.
    ///
    /// # Errors
    /// [`DomainError::UnknownTimeZone`] naming the bad value.
    pub fn new(name: &str) -> Result<Self> {
        name.parse::<Tz>()
            .map(Self)
            .map_err(|_| DomainError::UnknownTimeZone {
                field: "time_zone",
                value: name.to_owned(),
            })
    }

    /// The IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The chrono-tz zone, for local-time arithmetic.
    pub fn tz(&self) -> Tz {
        self.0
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for TimeZone {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(&value)
    }
}

impl From<TimeZone> for String {
    fn from(value: TimeZone) -> String {
        value.name().to_owned()
    }
}

impl std::str::FromStr for TimeZone {
    type Err = DomainError;
    fn from_str(value: &str) -> Result<Self> {
        Self::new(value)
    }
}

/// An HTTP `Retry-After` value, seconds or an HTTP date, as the wait from
/// now (zero for a date past).
pub fn parse_retry_after(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&Utc) - Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn timestamp_truncates_to_millis() {
        let dt = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let ts = Timestamp::from(dt);
        assert_eq!(ts.as_millis(), 1_700_000_000_123);
        assert_eq!(ts.as_datetime().timestamp_subsec_nanos(), 123_000_000);
        assert_eq!(Timestamp::from_millis(ts.as_millis()).unwrap(), ts);
        assert_eq!(ts.to_string(), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn timestamp_negative_millis_round_trip() {
        let ts = Timestamp::from_millis(-1).unwrap();
        assert_eq!(ts.as_millis(), -1);
    }

    #[test]
    fn timestamp_out_of_range_is_an_error() {
        assert_eq!(
            Timestamp::from_millis(i64::MAX),
            Err(DomainError::TimestampOutOfRange {
                field: "timestamp",
                millis: i64::MAX
            })
        );
    }

    #[test]
    fn timestamp_now_is_whole_millis() {
        let now = Timestamp::now();
        assert_eq!(now.as_datetime().timestamp_subsec_nanos() % 1_000_000, 0);
    }

    #[test]
    fn time_zone_keeps_name() {
        assert_eq!(
            TimeZone::new("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(TimeZone::new("US/Pacific").unwrap().name(), "US/Pacific");
        assert_eq!(TimeZone::new("UTC").unwrap().to_string(), "UTC");
    }

    #[test]
    fn time_zone_rejects_unknown() {
        let err = TimeZone::new("Mars/Olympus_Mons").unwrap_err();
        assert_eq!(
            err,
            DomainError::UnknownTimeZone {
                field: "time_zone",
                value: "Mars/Olympus_Mons".into()
            }
        );
        assert!(err.to_string().contains("Mars/Olympus_Mons"));
        assert!(TimeZone::new("").is_err());
        assert!(TimeZone::new("+02:00").is_err());
    }

    #[test]
    fn serde_round_trips() {
        let tz: TimeZone = serde_json::from_str("\"Asia/Tokyo\"").unwrap();
        assert_eq!(serde_json::to_string(&tz).unwrap(), "\"Asia/Tokyo\"");
        assert!(serde_json::from_str::<TimeZone>("\"Nowhere\"").is_err());
        let ts = Timestamp::from_millis(1_234).unwrap();
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
    }
}
