//! The last-use guard: what KMS says about each key's last cryptographic use
//! (GetKeyLastUsage), and the decision whether a key may be scheduled for deletion.
//!
//! A key *blocks* when it was used less than `MinDaysSinceLastUse` days ago. A key without
//! recorded use does not block by itself, but when it was created before KMS's
//! `TrackingStartDate` its earlier use is unknown, and every summary says so.

use std::time::{Duration, SystemTime};

use aws_sdk_kms::operation::get_key_last_usage::GetKeyLastUsageOutput;
use serde::{Deserialize, Serialize};

use crate::clock::from_kms;
use crate::error::DecommissionError;
use crate::keys::StoreKey;
use crate::kms::Kms;
use crate::model::{push_capped, Timestamp, SAMPLE_CAP};

/// Days a key must have been idle before it may be scheduled, when the input gives none.
pub const DEFAULT_MIN_DAYS_SINCE_LAST_USE: u32 = 30;
const SECONDS_PER_DAY: u64 = 86_400;
const OPERATION: &str = "GetKeyLastUsage";

/// What KMS knows about a key's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageStatus {
    /// A successful cryptographic operation is recorded.
    Used,
    /// No use recorded, and tracking covers the key's whole life.
    NeverUsed,
    /// No use recorded since `TrackingStartDate`, but the key is older: earlier use is unknown.
    UnknownBeforeTracking,
}

/// One key's last use, as GetKeyLastUsage answered (timestamps RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyLastUse {
    /// Key id.
    pub key_id: String,
    /// Key ARN.
    pub arn: String,
    /// What is known.
    pub status: UsageStatus,
    /// The last successful operation (`Encrypt`, `Decrypt`, ...), when used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When it happened, when used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// The CloudTrail event of that operation (look it up to find the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_trail_event_id: Option<String>,
    /// KMS's request id of that operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_request_id: Option<String>,
    /// Since when KMS records use of this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_start_date: Option<Timestamp>,
}

impl KeyLastUse {
    /// Reads a GetKeyLastUsage answer for `key`.
    pub fn from_output(
        key: &StoreKey,
        output: &GetKeyLastUsageOutput,
    ) -> Result<Self, DecommissionError> {
        let tracking_start = output.tracking_start_date().map(from_kms);
        let usage = output
            .key_last_usage()
            .filter(|u| u.operation().is_some() || u.timestamp().is_some());
        let mut last_use = Self {
            key_id: key.key_id().to_string(),
            arn: key.arn().to_string(),
            status: UsageStatus::Used,
            operation: None,
            timestamp: None,
            cloud_trail_event_id: None,
            kms_request_id: None,
            tracking_start_date: tracking_start.map(Timestamp::floor),
        };
        if let Some(usage) = usage {
            let timestamp = usage.timestamp().ok_or_else(|| {
                DecommissionError::unexpected(
                    OPERATION,
                    format!(
                        "KeyLastUsage of {} names an operation but no Timestamp",
                        key.arn()
                    ),
                )
            })?;
            last_use.operation = Some(
                usage
                    .operation()
                    .map_or_else(|| "unknown".to_string(), |o| o.as_str().to_string()),
            );
            last_use.timestamp = Some(Timestamp::floor(from_kms(timestamp)));
            last_use.cloud_trail_event_id = usage.cloud_trail_event_id().map(str::to_string);
            last_use.kms_request_id = usage.kms_request_id().map(str::to_string);
            return Ok(last_use);
        }
        let Some(tracking_start) = tracking_start else {
            return Err(DecommissionError::unexpected(
                OPERATION,
                format!("no KeyLastUsage and no TrackingStartDate for {}", key.arn()),
            ));
        };
        // Without a creation date, KMS cannot vouch for the time before tracking began.
        let created = output.key_creation_date().map(from_kms);
        last_use.status = match created {
            Some(created) if created >= tracking_start => UsageStatus::NeverUsed,
            _ => UsageStatus::UnknownBeforeTracking,
        };
        Ok(last_use)
    }

    /// The last use in words: "Decrypt at <time> (CloudTrail event <id>)", "never used since
    /// <date>" or "no use since <date>, unknown before".
    pub fn describe(&self) -> String {
        let text =
            |t: Option<Timestamp>| t.map_or_else(|| "unknown".to_string(), |t| t.to_string());
        let since = text(self.tracking_start_date);
        match self.status {
            UsageStatus::Used => format!(
                "{} at {} (CloudTrail event {}, KMS request {})",
                self.operation.as_deref().unwrap_or("unknown"),
                text(self.timestamp),
                self.cloud_trail_event_id.as_deref().unwrap_or("unknown"),
                self.kms_request_id.as_deref().unwrap_or("unknown"),
            ),
            UsageStatus::NeverUsed => format!("never used since {since}"),
            UsageStatus::UnknownBeforeTracking => {
                format!("not used since {since}; unknown before {since}")
            }
        }
    }

    /// `ARN: <describe>`, as error messages list keys.
    pub fn labelled(&self) -> String {
        format!("{}: {}", self.arn, self.describe())
    }
}

/// Asks KMS for a key's last use (paced under the GetKeyLastUsage quota). `None` when the key
/// no longer exists.
pub async fn key_last_use(
    kms: &Kms,
    key: &StoreKey,
) -> Result<Option<KeyLastUse>, DecommissionError> {
    match kms.get_key_last_usage(key.key_id()).await? {
        Some(output) => KeyLastUse::from_output(key, &output).map(Some),
        None => Ok(None),
    }
}

/// The guard's setting: keys must have been idle at least this many days (0: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageGuard {
    min_days_since_last_use: u32,
}

impl UsageGuard {
    /// A guard requiring `min_days_since_last_use` idle days (0 turns it off).
    pub fn new(min_days_since_last_use: u32) -> Self {
        Self {
            min_days_since_last_use,
        }
    }

    /// Whether the guard is on.
    pub fn is_on(&self) -> bool {
        self.min_days_since_last_use > 0
    }

    /// Whether `last_use`, seen at `now`, forbids scheduling the key: it was used less than
    /// the minimum number of days before `now` (a use stamped in the future blocks too).
    pub fn blocks(
        &self,
        last_use: &KeyLastUse,
        now: SystemTime,
    ) -> Result<bool, DecommissionError> {
        if !self.is_on() || last_use.status != UsageStatus::Used {
            return Ok(false);
        }
        let Some(used_at) = last_use.timestamp.map(Timestamp::time) else {
            return Ok(true);
        };
        let min_idle =
            Duration::from_secs(u64::from(self.min_days_since_last_use) * SECONDS_PER_DAY);
        Ok(match now.duration_since(used_at) {
            Ok(idle) => idle < min_idle,
            Err(_) => true,
        })
    }
}

/// The last use of the store's keys, for the plan, the report and the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageSummary {
    /// The input's `MinDaysSinceLastUse`.
    pub min_days_since_last_use: u32,
    /// False when `MinDaysSinceLastUse` is 0: last use is reported but nothing is refused.
    pub guard_on: bool,
    /// Keys whose last use was asked.
    #[serde(default)]
    pub keys_checked: u64,
    /// Keys with a recorded use.
    #[serde(default)]
    pub keys_used: u64,
    /// Keys never used (tracking covers their whole life).
    #[serde(default)]
    pub keys_never_used: u64,
    /// Keys without recorded use, created before tracking began: earlier use unknown.
    #[serde(default)]
    pub keys_unknown_before_tracking: u64,
    /// Keys used less than `MinDaysSinceLastUse` days ago (that are not already pending deletion).
    #[serde(default)]
    pub keys_recently_used: u64,
    /// The most recent use among the store's keys.
    #[serde(default)]
    pub most_recent_use: Option<KeyLastUse>,
    /// The first recently used keys (at most 25).
    #[serde(default)]
    pub recently_used: Vec<KeyLastUse>,
    /// The first keys with unknown use before tracking (at most 25).
    #[serde(default)]
    pub unknown_before_tracking: Vec<KeyLastUse>,
    /// The last use of the first keys of the store (at most 25; every key is in the logs).
    #[serde(default)]
    pub keys: Vec<KeyLastUse>,
    /// What the guard says, in one sentence.
    #[serde(default)]
    pub verdict: String,
}

impl UsageSummary {
    /// An empty summary for `guard`.
    pub fn new(guard: UsageGuard) -> Self {
        Self {
            min_days_since_last_use: guard.min_days_since_last_use,
            guard_on: guard.is_on(),
            ..Self::default()
        }
    }

    /// The guard this summary was made with.
    pub fn guard(&self) -> UsageGuard {
        UsageGuard::new(self.min_days_since_last_use)
    }

    /// Records one key's last use. `schedulable` is false for keys already pending deletion,
    /// which this execution does not schedule and so never blocks on. Returns whether it blocks.
    pub fn record(
        &mut self,
        last_use: KeyLastUse,
        schedulable: bool,
        now: SystemTime,
    ) -> Result<bool, DecommissionError> {
        self.keys_checked += 1;
        match last_use.status {
            UsageStatus::Used => self.keys_used += 1,
            UsageStatus::NeverUsed => self.keys_never_used += 1,
            UsageStatus::UnknownBeforeTracking => {
                self.keys_unknown_before_tracking += 1;
                push_capped(&mut self.unknown_before_tracking, last_use.clone());
            }
        }
        if last_use.status == UsageStatus::Used
            && self
                .most_recent_use
                .as_ref()
                .is_none_or(|m| m.timestamp < last_use.timestamp)
        {
            self.most_recent_use = Some(last_use.clone());
        }
        let blocks = schedulable && self.guard().blocks(&last_use, now)?;
        if blocks {
            self.keys_recently_used += 1;
            push_capped(&mut self.recently_used, last_use.clone());
        }
        push_capped(&mut self.keys, last_use);
        self.verdict = self.verdict_sentence();
        Ok(blocks)
    }

    /// The guard's verdict in one sentence.
    pub fn verdict_sentence(&self) -> String {
        let unknown = if self.keys_unknown_before_tracking > 0 {
            format!(
                " {} key(s) were created before KMS began tracking their use, so use before \
                 their TrackingStartDate is unknown (check older CloudTrail logs); this does not \
                 block.",
                self.keys_unknown_before_tracking
            )
        } else {
            String::new()
        };
        if !self.guard_on {
            return format!(
                "Last-use guard off (MinDaysSinceLastUse 0): keys are scheduled whatever their \
                 last use ({} of {} used since tracking began).{unknown}",
                self.keys_used, self.keys_checked
            );
        }
        if self.keys_recently_used > 0 {
            format!(
                "Refused: {} key(s) were used within the last {} day(s) (KeysRecentlyUsed).{unknown}",
                self.keys_recently_used, self.min_days_since_last_use
            )
        } else {
            format!(
                "Passed: no key to schedule was used within the last {} day(s).{unknown}",
                self.min_days_since_last_use
            )
        }
    }

    /// The `KeysRecentlyUsed` error for the keys recorded as blocking.
    pub fn refusal(&self, store_id: &str, keys_already_scheduled: u64) -> DecommissionError {
        recently_used_error(
            store_id,
            self.min_days_since_last_use,
            self.keys_recently_used,
            &self.recently_used,
            keys_already_scheduled,
        )
    }
}

/// `KeysRecentlyUsed` naming `count` keys (a sample of at most [`SAMPLE_CAP`]).
pub fn recently_used_error(
    store_id: &str,
    min_days_since_last_use: u32,
    count: u64,
    sample: &[KeyLastUse],
    keys_already_scheduled: u64,
) -> DecommissionError {
    let shown = sample.len().min(SAMPLE_CAP);
    let more = count.saturating_sub(shown as u64);
    DecommissionError::KeysRecentlyUsed {
        store_id: store_id.to_string(),
        count,
        min_days_since_last_use,
        keys: sample[..shown].iter().map(KeyLastUse::labelled).collect(),
        more: if more > 0 {
            format!(", and {more} more (see the logs)")
        } else {
            String::new()
        },
        keys_already_scheduled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(at: &str) -> KeyLastUse {
        KeyLastUse {
            key_id: "k1".into(),
            arn: "arn:aws:kms:us-east-1:123456789012:key/k1".into(),
            status: UsageStatus::Used,
            operation: Some("Decrypt".into()),
            timestamp: Some(Timestamp::parse(at).unwrap()),
            cloud_trail_event_id: Some("ev-1".into()),
            kms_request_id: Some("req-1".into()),
            tracking_start_date: Some(Timestamp::parse("2026-01-01T00:00:00Z").unwrap()),
        }
    }

    fn now() -> SystemTime {
        Timestamp::parse("2026-11-28T12:00:00Z").unwrap().time()
    }

    #[test]
    fn a_key_used_less_than_the_minimum_days_ago_blocks() {
        let guard = UsageGuard::new(30);
        assert!(guard.blocks(&used("2026-11-27T12:00:00Z"), now()).unwrap());
        // one second short of 30 days
        assert!(guard.blocks(&used("2026-10-29T12:00:01Z"), now()).unwrap());
        // exactly 30 days idle is enough
        assert!(!guard.blocks(&used("2026-10-29T12:00:00Z"), now()).unwrap());
        assert!(!guard.blocks(&used("2026-01-02T00:00:00Z"), now()).unwrap());
    }

    #[test]
    fn a_use_stamped_in_the_future_blocks() {
        assert!(UsageGuard::new(1)
            .blocks(&used("2026-11-28T12:05:00Z"), now())
            .unwrap());
    }

    #[test]
    fn zero_days_turns_the_guard_off() {
        let guard = UsageGuard::new(0);
        assert!(!guard.is_on());
        assert!(!guard.blocks(&used("2026-11-28T11:59:59Z"), now()).unwrap());
    }

    #[test]
    fn unknown_or_absent_use_does_not_block_but_is_reported() {
        let guard = UsageGuard::new(365);
        let mut unknown = used("2026-11-28T11:00:00Z");
        unknown.status = UsageStatus::UnknownBeforeTracking;
        unknown.operation = None;
        unknown.timestamp = None;
        assert!(!guard.blocks(&unknown, now()).unwrap());
        let mut summary = UsageSummary::new(guard);
        assert!(!summary.record(unknown.clone(), true, now()).unwrap());
        assert_eq!(summary.keys_unknown_before_tracking, 1);
        assert!(summary.verdict.starts_with("Passed"));
        assert!(summary.verdict.contains("unknown"), "{}", summary.verdict);
        assert_eq!(
            unknown.describe(),
            "not used since 2026-01-01T00:00:00Z; unknown before 2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn keys_already_pending_deletion_never_block() {
        let mut summary = UsageSummary::new(UsageGuard::new(30));
        assert!(!summary
            .record(used("2026-11-28T11:00:00Z"), false, now())
            .unwrap());
        assert_eq!(summary.keys_recently_used, 0);
        assert_eq!(summary.keys_used, 1);
        assert!(summary.most_recent_use.is_some());
    }

    #[test]
    fn the_refusal_names_keys_operation_time_and_cloudtrail_event() {
        let mut summary = UsageSummary::new(UsageGuard::new(30));
        for _ in 0..(SAMPLE_CAP + 2) {
            assert!(summary
                .record(used("2026-11-28T11:00:00Z"), true, now())
                .unwrap());
        }
        assert_eq!(summary.recently_used.len(), SAMPLE_CAP);
        assert!(summary.verdict.starts_with("Refused: 27 key(s)"));
        let err = summary.refusal("cks-1", 0);
        assert_eq!(err.error_type(), "KeysRecentlyUsed");
        let message = err.to_string();
        assert!(message.contains("Decrypt at 2026-11-28T11:00:00Z (CloudTrail event ev-1"));
        assert!(message.contains("and 2 more"), "{message}");
        assert!(message.contains("nothing was changed"), "{message}");
        let after_some = summary.refusal("cks-1", 3).to_string();
        assert!(
            after_some.contains("3 key(s) this execution scheduled"),
            "{after_some}"
        );
    }

    #[test]
    fn the_most_recent_use_wins() {
        let mut summary = UsageSummary::new(UsageGuard::new(0));
        summary
            .record(used("2026-11-01T00:00:00Z"), true, now())
            .unwrap();
        summary
            .record(used("2026-11-20T00:00:00Z"), true, now())
            .unwrap();
        summary
            .record(used("2026-11-10T00:00:00Z"), true, now())
            .unwrap();
        assert_eq!(
            summary.most_recent_use.unwrap().timestamp,
            Timestamp::parse("2026-11-20T00:00:00Z").ok()
        );
        assert!(summary.verdict.starts_with("Last-use guard off"));
    }
}
