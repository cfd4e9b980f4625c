//! The invocation deadline: batch steps stop taking new work before it and return a cursor.

use std::time::{Duration, Instant, SystemTime};

/// When the current invocation must have returned.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline given as wall-clock time (Lambda's `Context::deadline()`).
    pub fn at_system_time(deadline: SystemTime) -> Self {
        let remaining = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self::after(remaining)
    }

    /// A deadline `remaining` from now.
    pub fn after(remaining: Duration) -> Self {
        let now = Instant::now();
        Self {
            at: now.checked_add(remaining).unwrap_or(now),
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether more than `margin` plus `estimate` is left: enough to start work that is expected
    /// to take `estimate` and still return `margin` before the deadline.
    pub fn allows(&self, estimate: Duration, margin: Duration) -> bool {
        self.remaining() > margin.saturating_add(estimate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_deadline_has_nothing_left() {
        let past = Deadline::at_system_time(SystemTime::now() - Duration::from_secs(5));
        assert_eq!(past.remaining(), Duration::ZERO);
        assert!(!past.allows(Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn a_far_deadline_allows_work_within_the_margin() {
        let far = Deadline::after(Duration::from_secs(3600));
        assert!(far.allows(Duration::from_secs(60), Duration::from_secs(10)));
        assert!(!far.allows(Duration::from_secs(3600), Duration::from_secs(10)));
    }
}
