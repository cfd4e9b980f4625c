//! Wall-clock time and the RFC 3339 timestamps of the state document.
//!
//! Step Functions `TimestampPath` needs RFC 3339 with an uppercase `T` and `Z`; the document
//! uses whole seconds, rounded up so that a Wait never ends before the instant it stands for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;

use crate::error::DecommissionError;

/// The source of "now" for every step. Production uses the system clock; tests shift it to follow
/// an emulator whose clock was advanced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset_seconds: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system clock shifted by `offset_seconds` (positive: in the future).
    pub fn shifted(offset_seconds: i64) -> Self {
        Self { offset_seconds }
    }

    /// This clock, `seconds` further ahead.
    pub fn advanced_by(self, seconds: i64) -> Self {
        Self {
            offset_seconds: self.offset_seconds.saturating_add(seconds),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        let offset = Duration::from_secs(self.offset_seconds.unsigned_abs());
        if self.offset_seconds >= 0 {
            now + offset
        } else {
            now.checked_sub(offset).unwrap_or(UNIX_EPOCH)
        }
    }
}

/// Whole epoch seconds of `time`, rounded up.
pub fn epoch_seconds_ceil(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => {
            let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
            if since.subsec_nanos() > 0 {
                secs.saturating_add(1)
            } else {
                secs
            }
        }
        Err(_) => 0,
    }
}

/// `time` as RFC 3339 in UTC, whole seconds rounded up (`2026-12-28T10:00:00Z`): for instants
/// to wait for (a Wait never ends before the instant it stands for).
pub fn to_rfc3339(time: SystemTime) -> String {
    format_epoch_seconds(epoch_seconds_ceil(time))
}

/// `time` as RFC 3339 in UTC, whole seconds rounded down: for instants already passed
/// (when something started).
pub fn to_rfc3339_floor(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    format_epoch_seconds(seconds)
}

fn format_epoch_seconds(seconds: i64) -> String {
    DateTime::from_secs(seconds)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parses an RFC 3339 timestamp written in a state document field named `field`.
pub fn parse_rfc3339(field: &str, text: &str) -> Result<SystemTime, DecommissionError> {
    let parsed = DateTime::from_str(text, Format::DateTime).map_err(|e| {
        DecommissionError::invalid_state(format!(
            "{field} {text:?} is not an RFC 3339 timestamp: {e}"
        ))
    })?;
    SystemTime::try_from(parsed).map_err(|e| {
        DecommissionError::invalid_state(format!("{field} {text:?} is out of range: {e}"))
    })
}

/// Parses an optional RFC 3339 field of the state document.
pub fn parse_optional_rfc3339(
    field: &str,
    text: &Option<String>,
) -> Result<Option<SystemTime>, DecommissionError> {
    text.as_deref().map(|t| parse_rfc3339(field, t)).transpose()
}

/// Converts a KMS timestamp; KMS sends epoch seconds, possibly fractional.
pub fn from_kms(time: &DateTime) -> SystemTime {
    SystemTime::try_from(*time).unwrap_or(UNIX_EPOCH)
}

/// Whole seconds from `earlier` to `later`, 0 when `later` is not later.
pub fn seconds_between(earlier: SystemTime, later: SystemTime) -> u64 {
    later
        .duration_since(earlier)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Earlier of two optional times.
pub fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Later of two optional times.
pub fn max_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_whole_seconds_rounded_up() {
        let exact = UNIX_EPOCH + Duration::from_secs(1_798_452_000);
        assert_eq!(to_rfc3339(exact), "2026-12-28T10:00:00Z");
        let fractional = exact + Duration::from_millis(1);
        assert_eq!(to_rfc3339(fractional), "2026-12-28T10:00:01Z");
        assert_eq!(to_rfc3339_floor(fractional), "2026-12-28T10:00:00Z");
    }

    #[test]
    fn timestamps_round_trip() {
        let time = UNIX_EPOCH + Duration::from_secs(1_798_452_000);
        assert_eq!(parse_rfc3339("X", &to_rfc3339(time)).unwrap(), time);
        assert_eq!(
            parse_rfc3339("X", "2026-11-28T10:00:00.000Z").unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_795_860_000)
        );
    }

    #[test]
    fn bad_timestamps_are_named_errors() {
        let err = parse_rfc3339("Scheduling.WaitUntil", "tomorrow").unwrap_err();
        assert_eq!(err.error_type(), "InvalidStateDocument");
        assert!(err.to_string().contains("Scheduling.WaitUntil"));
    }

    #[test]
    fn kms_fractional_timestamps_convert() {
        let kms = DateTime::from_fractional_secs(1_615_929_453, 0.686);
        let time = from_kms(&kms);
        assert_eq!(to_rfc3339(time), "2021-03-16T21:17:34Z");
    }

    #[test]
    fn a_shifted_clock_runs_ahead() {
        let ahead = Clock::shifted(3_600).advanced_by(82_800).now();
        let now = Clock::system().now();
        assert!(seconds_between(now, ahead) >= 86_399);
        assert_eq!(seconds_between(ahead, now), 0);
    }
}
