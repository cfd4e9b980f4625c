//! Request quotas: one token bucket per quota, refilled at the documented rate per second.

use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per quota name. Each holds at most one second of requests.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: HashMap<&'static str, Bucket>,
}

impl Quotas {
    /// Takes one token from the bucket of `quota` (rate `per_second`); false when it is empty.
    pub fn try_acquire(&mut self, quota: &'static str, per_second: f64, now: Instant) -> bool {
        let bucket = self.buckets.entry(quota).or_insert(Bucket {
            tokens: per_second,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(per_second);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Refills every bucket.
    pub fn reset(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_rate_then_refills() {
        let mut q = Quotas::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(q.try_acquire("CreateKey", 5.0, t0));
        }
        assert!(!q.try_acquire("CreateKey", 5.0, t0));
        // other quotas are independent
        assert!(q.try_acquire("DescribeKey", 2000.0, t0));
        // 200 ms refill one token at 5/s
        assert!(q.try_acquire("CreateKey", 5.0, t0 + Duration::from_millis(200)));
        assert!(!q.try_acquire("CreateKey", 5.0, t0 + Duration::from_millis(200)));
    }
}
