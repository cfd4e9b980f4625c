//! Per-operation request pacing under KMS's request quotas, and bounded concurrency.
//!
//! Each KMS operation has its own quota (they are independent), so each gets its own
//! [`RateLimiter`]. A limiter hands out send slots at least `1/rate` apart and never lets unused
//! time accumulate into a burst, so over any interval it grants at most `rate x interval + 1`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::PacingConfig;

/// How much slower a limiter sends after each ThrottlingException (its interval doubles).
const THROTTLED_SLOWDOWN: f64 = 2.0;
/// The slowest a limiter gets: this many times its configured interval.
const MAX_SLOWDOWN: f64 = 16.0;
/// Recovery without throttling: the interval shrinks by this factor every second, back to the
/// configured one (from the slowest, in about 26 s).
const RECOVERY_PER_SECOND: f64 = 0.9;

/// Hands out send slots at most `rate` per second, and slower for a while after KMS throttled the
/// operation ([`RateLimiter::throttled`]): the quota is shared with every other client of the
/// account, so our own pacing alone cannot keep below it.
#[derive(Debug)]
pub struct RateLimiter {
    base: Duration,
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    next_slot: Option<Instant>,
    interval: Duration,
    adjusted_at: Instant,
}

impl Slots {
    /// Lets the interval recover towards `base` for the time since the last adjustment.
    fn recover(&mut self, base: Duration, now: Instant) {
        if self.interval > base {
            let seconds = now
                .saturating_duration_since(self.adjusted_at)
                .as_secs_f64();
            let recovered = self.interval.mul_f64(RECOVERY_PER_SECOND.powf(seconds));
            self.interval = recovered.max(base);
        }
        self.adjusted_at = now;
    }
}

impl RateLimiter {
    /// A limiter for `rate` requests per second (`rate` > 0).
    pub fn per_second(rate: f64) -> Self {
        let base = if rate.is_finite() && rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::from_secs(1)
        };
        Self {
            base,
            slots: Mutex::new(Slots {
                next_slot: None,
                interval: base,
                adjusted_at: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A poisoned lock only means another task panicked between two lines that cannot leave
        // the value inconsistent; keep pacing.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current minimum time between two slots: the configured one, or longer after throttling.
    pub fn interval(&self) -> Duration {
        let mut slots = self.lock();
        slots.recover(self.base, Instant::now());
        slots.interval
    }

    /// KMS answered this operation with ThrottlingException: send at half the current rate (at
    /// most 16 times slower than configured), recovering by 10% a second.
    pub fn throttled(&self) {
        let mut slots = self.lock();
        slots.recover(self.base, Instant::now());
        slots.interval = slots
            .interval
            .mul_f64(THROTTLED_SLOWDOWN)
            .min(self.base.mul_f64(MAX_SLOWDOWN));
    }

    /// Waits for the next free slot and returns it; the caller sends its request right after.
    pub async fn acquire(&self) -> Instant {
        let slot = {
            let now = Instant::now();
            let mut slots = self.lock();
            slots.recover(self.base, now);
            let slot = slots.next_slot.map_or(now, |n| n.max(now));
            slots.next_slot = Some(slot + slots.interval);
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
    /// The limiter that paces KMS operation `operation` (its API name, e.g. `DescribeKey`).
    pub fn for_operation(&self, operation: &str) -> Option<&RateLimiter> {
        Some(match operation {
            "ListKeys" => &self.list_keys,
            "DescribeKey" => &self.describe_key,
            "ListResourceTags" => &self.list_resource_tags,
            "TagResource" => &self.tag_resource,
            "ScheduleKeyDeletion" => &self.schedule_key_deletion,
            "DescribeCustomKeyStores" => &self.describe_custom_key_stores,
            "ConnectCustomKeyStore" | "DisconnectCustomKeyStore" | "DeleteCustomKeyStore" => {
                &self.change_custom_key_store
            }
            "CancelKeyDeletion" => &self.cancel_key_deletion,
            "EnableKey" => &self.enable_key,
            "GetKeyLastUsage" => &self.get_key_last_usage,
            _ => return None,
        })
    }

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

    #[tokio::test]
    async fn a_throttled_limiter_slows_down_then_recovers_to_its_rate() {
        let limiter = RateLimiter::per_second(100.0);
        let base = limiter.interval();
        limiter.throttled();
        let slowed = limiter.interval();
        assert!(
            slowed >= base.mul_f64(1.9),
            "halved rate: {slowed:?} after {base:?}"
        );
        for _ in 0..10 {
            limiter.throttled();
        }
        assert!(
            limiter.interval() <= base.mul_f64(MAX_SLOWDOWN),
            "bounded slowdown"
        );
        let first = limiter.acquire().await;
        let second = limiter.acquire().await;
        assert!(
            second - first >= base.mul_f64(MAX_SLOWDOWN * 0.8),
            "slots follow the slower interval"
        );
        // Recovery is continuous: after a while without throttling the configured rate is back.
        limiter.lock().adjusted_at -= Duration::from_secs(60);
        assert_eq!(limiter.interval(), base);
    }

    #[test]
    fn every_paced_operation_has_its_limiter() {
        let pacing = Pacing::new(&PacingConfig::default());
        for operation in [
            "ListKeys",
            "DescribeKey",
            "ListResourceTags",
            "TagResource",
            "ScheduleKeyDeletion",
            "DescribeCustomKeyStores",
            "ConnectCustomKeyStore",
            "DisconnectCustomKeyStore",
            "DeleteCustomKeyStore",
            "CancelKeyDeletion",
            "EnableKey",
            "GetKeyLastUsage",
        ] {
            assert!(pacing.for_operation(operation).is_some(), "{operation}");
        }
        assert!(pacing.for_operation("Encrypt").is_none());
        pacing.for_operation("TagResource").unwrap().throttled();
        assert!(pacing.tag_resource.interval() > Duration::from_millis(150));
        assert_eq!(
            pacing.schedule_key_deletion.interval(),
            Duration::from_secs_f64(1.0 / 14.25),
            "only that operation slows"
        );
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
