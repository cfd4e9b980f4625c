//! Per-operation request pacing under KMS's request quotas, and bounded concurrency.
//!
//! Each KMS operation has its own quota (they are independent), so each gets its own
//! [`RateLimiter`]. A limiter hands out send slots at least `1/rate` apart and never lets unused
//! time accumulate into a burst, so over any interval it grants at most `rate x interval + 1`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::PacingConfig;

/// Hands out send slots at most `rate` per second.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `rate` requests per second (`rate` > 0).
    pub fn per_second(rate: f64) -> Self {
        let interval = if rate.is_finite() && rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::from_secs(1)
        };
        Self {
            interval,
            next_slot: Mutex::new(None),
        }
    }

    /// The minimum time between two slots.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for the next free slot and returns it; the caller sends its request right after.
    pub async fn acquire(&self) -> Instant {
        let slot = {
            let now = Instant::now();
            // A poisoned lock only means another task panicked between two lines that cannot
            // leave the value inconsistent; keep pacing.
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
        slot
    }
}

/// The limiters of every KMS operation the steps call, and the concurrency bound.
#[derive(Debug)]
pub struct Pacing {
    /// ListKeys.
    pub list_keys: RateLimiter,
    /// DescribeKey.
    pub describe_key: RateLimiter,
    /// ListResourceTags.
    pub list_resource_tags: RateLimiter,
    /// TagResource.
    pub tag_resource: RateLimiter,
    /// ScheduleKeyDeletion.
    pub schedule_key_deletion: RateLimiter,
    /// DescribeCustomKeyStores.
    pub describe_custom_key_stores: RateLimiter,
    /// Connect-, Disconnect- and DeleteCustomKeyStore (each its own quota; they are rare).
    pub change_custom_key_store: RateLimiter,
    /// CancelKeyDeletion (quota 5/s, paced like the custom key store operations).
    pub cancel_key_deletion: RateLimiter,
    /// EnableKey (quota 5/s, paced like the custom key store operations).
    pub enable_key: RateLimiter,
    /// GetKeyLastUsage (quota 5/s, paced like the custom key store operations).
    pub get_key_last_usage: RateLimiter,
    /// KMS calls in flight at once.
    pub concurrency: usize,
}

impl Pacing {
    /// Limiters for the configured rates.
    pub fn new(config: &PacingConfig) -> Self {
        Self {
            list_keys: RateLimiter::per_second(config.list_keys_rps),
            describe_key: RateLimiter::per_second(config.describe_key_rps),
            list_resource_tags: RateLimiter::per_second(config.list_resource_tags_rps),
            tag_resource: RateLimiter::per_second(config.tag_resource_rps),
            schedule_key_deletion: RateLimiter::per_second(config.schedule_key_deletion_rps),
            describe_custom_key_stores: RateLimiter::per_second(config.custom_key_store_rps),
            change_custom_key_store: RateLimiter::per_second(config.custom_key_store_rps),
            cancel_key_deletion: RateLimiter::per_second(config.custom_key_store_rps),
            enable_key: RateLimiter::per_second(config.custom_key_store_rps),
            get_key_last_usage: RateLimiter::per_second(config.custom_key_store_rps),
            concurrency: config.concurrency.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Most slots inside any window of `window` length.
    fn max_in_window(slots: &[Instant], window: Duration) -> usize {
        let mut best = 0;
        let mut start = 0;
        for end in 0..slots.len() {
            while slots[end] - slots[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    #[tokio::test]
    async fn pacing_never_exceeds_the_configured_rate() {
        let rate = 200.0;
        let limiter = Arc::new(RateLimiter::per_second(rate));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let mut slots = Vec::new();
                for _ in 0..40 {
                    slots.push(limiter.acquire().await);
                }
                slots
            }));
        }
        let mut slots = Vec::new();
        for task in tasks {
            slots.extend(task.await.unwrap());
        }
        slots.sort();
        assert_eq!(slots.len(), 320);
        for pair in slots.windows(2) {
            assert!(
                pair[1] - pair[0] >= limiter.interval(),
                "two slots closer than 1/rate"
            );
        }
        assert!(max_in_window(&slots, Duration::from_secs(1)) <= rate as usize);
        let returned_after = Instant::now();
        assert!(returned_after >= *slots.last().unwrap());
    }

    #[tokio::test]
    async fn idle_time_does_not_build_a_burst() {
        let limiter = RateLimiter::per_second(20.0);
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let first = limiter.acquire().await;
        let second = limiter.acquire().await;
        assert!(second - first >= limiter.interval());
    }

    #[test]
    fn pacing_follows_the_configuration() {
        let pacing = Pacing::new(&PacingConfig {
            tag_resource_rps: 10.0,
            schedule_key_deletion_rps: 15.0,
            concurrency: 0,
            ..PacingConfig::default()
        });
        assert_eq!(pacing.tag_resource.interval(), Duration::from_millis(100));
        assert_eq!(
            pacing.schedule_key_deletion.interval(),
            Duration::from_secs_f64(1.0 / 15.0)
        );
        assert_eq!(pacing.concurrency, 1);
    }
}
