//! The invocation deadline: batch steps stop taking new work before it and return a cursor.

use std::time::{Duration, Instant, SystemTime};

/// When the current invocation must have returned.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline of an invocation: Lambda's, or `budget` from now when Lambda's is not in
    /// the future (`cargo lambda watch` sends a constant deadline in 1970; real Lambda never
    /// starts an invocation past its deadline).
    pub fn for_invocation(lambda_deadline: SystemTime, budget: Duration) -> Self {
        match lambda_deadline.duration_since(SystemTime::now()) {
            Ok(remaining) if !remaining.is_zero() => Self::after(remaining),
            _ => Self::after(budget),
        }
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
        let past = Deadline::after(Duration::ZERO);
        assert_eq!(past.remaining(), Duration::ZERO);
        assert!(!past.allows(Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn a_past_lambda_deadline_falls_back_to_the_budget() {
        let local = Deadline::for_invocation(
            SystemTime::UNIX_EPOCH + Duration::from_millis(600_000),
            Duration::from_secs(300),
        );
        assert!(local.remaining() > Duration::from_secs(290));
        let real = Deadline::for_invocation(
            SystemTime::now() + Duration::from_secs(30),
            Duration::from_secs(300),
        );
        assert!(real.remaining() <= Duration::from_secs(30));
    }

    #[test]
    fn a_far_deadline_allows_work_within_the_margin() {
        let far = Deadline::after(Duration::from_secs(3600));
        assert!(far.allows(Duration::from_secs(60), Duration::from_secs(10)));
        assert!(!far.allows(Duration::from_secs(3600), Duration::from_secs(10)));
    }
}
