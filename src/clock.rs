//! Wall-clock time and the RFC 3339 timestamps of the state document.
//!
//! Step Functions `TimestampPath` needs RFC 3339 with an uppercase `T` and `Z`; the document
//! uses whole seconds, rounded up so that a Wait never ends before the instant it stands for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;

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
    fn kms_fractional_timestamps_convert() {
        let kms = DateTime::from_fractional_secs(1_615_929_453, 0.686);
        let time = from_kms(&kms);
        assert_eq!(
            time.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_615_929_453_686)
        );
    }

    #[test]
    fn a_shifted_clock_runs_ahead() {
        let ahead = Clock::shifted(3_600).advanced_by(82_800).now();
        let now = Clock::system().now();
        assert!(seconds_between(now, ahead) >= 86_399);
        assert_eq!(seconds_between(ahead, now), 0);
    }
}
