//! Who still needs a key: the attempts to use the keys of a store that CloudTrail recorded in a
//! time window (the quarantine, when the store is disconnected and every cryptographic request
//! for its keys fails with `KMSInvalidStateException`).
//!
//! The scan asks CloudTrail for the events of each key in turn (`ResourceName` = the key ARN),
//! page by page, in batches that end before the invocation's deadline and resume from a cursor
//! (the key index and CloudTrail's page token), like the other scans. It costs one paced lookup
//! per key per 50 events: at CloudTrail's 2 lookups a second, a store of N quiet keys takes about
//! N / 1.9 seconds.

use std::time::Duration;

use aws_smithy_types::DateTime;
use serde::{Deserialize, Serialize};

use crate::aws_error::AwsCallError;
use crate::cloudtrail::{CloudTrail, TrailEvent};
use crate::deadline::Deadline;

/// KMS operations that use a key (cryptographic operations): an attempt at any of them, failed
/// or not, means someone still needs the key. Describe/List/Get-metadata calls do not.
pub const KEY_USE_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "ReEncrypt",
    "Sign",
    "Verify",
    "VerifyMac",
    "DeriveSharedSecret",
    "GetPublicKey",
];

/// One attempt to use a key of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyUse {
    /// The key.
    pub key_arn: String,
    /// The operation (`Decrypt`, ...).
    pub operation: String,
    /// Who: the caller's ARN, or the AWS service that called.
    pub principal: Option<String>,
    /// From where: the source IP, or the AWS service.
    pub source: Option<String>,
    /// When (ISO 8601).
    pub time: Option<String>,
    /// The CloudTrail event id.
    pub event_id: String,
    /// The error KMS answered (`KMSInvalidStateException` while the store is disconnected).
    pub error_code: Option<String>,
}

impl KeyUse {
    /// The use `event` records of `key_arn`, if it is an attempt to use the key.
    pub fn from_event(key_arn: &str, event: &TrailEvent) -> Option<Self> {
        let uses_key = KEY_USE_OPERATIONS.contains(&event.event_name.as_str())
            && event.key_arns.iter().any(|k| k == key_arn);
        uses_key.then(|| Self {
            key_arn: key_arn.to_owned(),
            operation: event.event_name.clone(),
            principal: event.principal.clone(),
            source: event.source.clone(),
            time: event.event_time.map(|t| {
                t.fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap_or_default()
            }),
            event_id: event.event_id.clone(),
            error_code: event.error_code.clone(),
        })
    }
}

/// Where a scan resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScanCursor {
    /// Index of the next key to look up.
    pub key_index: usize,
    /// CloudTrail's token for the next page of that key.
    pub next_token: Option<String>,
}

/// What one batch of a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanBatch {
    /// Uses found in this batch.
    pub found: Vec<KeyUse>,
    /// Where the next batch starts; `None` when every key has been looked up.
    pub cursor: Option<ScanCursor>,
    /// Lookups made.
    pub lookups: u32,
    /// Events read.
    pub events_scanned: u64,
    /// Results CloudTrail gave without a readable record (reported, never silently dropped).
    pub unreadable: u64,
    /// Lookups CloudTrail throttled (and that were tried again).
    pub throttled: u32,
}

/// The time window a scan looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanWindow {
    /// From (the quarantine's start).
    pub start: DateTime,
    /// To (now, less CloudTrail's delivery margin).
    pub end: DateTime,
}

/// Looks up the events of `keys[cursor.key_index..]` in `window`, until every key is done or
/// the deadline leaves less than `per_lookup` (plus `margin`) for another lookup.
pub async fn scan_key_use(
    cloudtrail: &CloudTrail,
    keys: &[String],
    window: ScanWindow,
    cursor: ScanCursor,
    deadline: &Deadline,
    (per_lookup, margin): (Duration, Duration),
) -> Result<ScanBatch, AwsCallError> {
    let mut batch = ScanBatch::default();
    let mut at = cursor;
    while let Some(key) = keys.get(at.key_index) {
        if batch.lookups > 0 && !deadline.allows(per_lookup, margin) {
            batch.cursor = Some(at);
            return Ok(batch);
        }
        let page = cloudtrail
            .resource_events(key, window.start, window.end, at.next_token.as_deref())
            .await?;
        batch.lookups += 1;
        batch.throttled += page.throttled;
        batch.events_scanned += page.events.len() as u64;
        batch.unreadable += page.unreadable as u64;
        batch.found.extend(
            page.events
                .iter()
                .filter_map(|event| KeyUse::from_event(key, event)),
        );
        at = match page.next_token {
            Some(token) => ScanCursor {
                key_index: at.key_index,
                next_token: Some(token),
            },
            None => ScanCursor {
                key_index: at.key_index + 1,
                next_token: None,
            },
        };
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, keys: &[&str]) -> TrailEvent {
        TrailEvent {
            event_id: "e-1".into(),
            event_name: name.into(),
            event_time: Some(DateTime::from_secs(1_796_032_800)),
            error_code: Some("KMSInvalidStateException".into()),
            error_message: None,
            principal: Some("arn:aws:iam::111122223333:user/payments-app".into()),
            source: Some("192.0.2.7".into()),
            key_arns: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn cryptographic_attempts_on_the_key_count_and_metadata_calls_do_not() {
        let key = "arn:aws:kms:us-east-1:111122223333:key/k1";
        let used = KeyUse::from_event(key, &event("Decrypt", &[key])).unwrap();
        assert_eq!(used.operation, "Decrypt");
        assert_eq!(used.time.as_deref(), Some("2026-11-30T10:00:00Z"));
        assert_eq!(
            used.principal.as_deref(),
            Some("arn:aws:iam::111122223333:user/payments-app")
        );
        for name in [
            "DescribeKey",
            "ListResourceTags",
            "GetKeyLastUsage",
            "ScheduleKeyDeletion",
        ] {
            assert_eq!(
                KeyUse::from_event(key, &event(name, &[key])),
                None,
                "{name}"
            );
        }
        // An event about another key (ResourceName matched an alias, say) is not this key's.
        assert_eq!(
            KeyUse::from_event(
                key,
                &event("Encrypt", &["arn:aws:kms:us-east-1:111122223333:key/k2"])
            ),
            None
        );
    }
}
