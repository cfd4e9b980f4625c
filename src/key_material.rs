//! Whether KMS deleted the key material of a CloudHSM key store's keys from the cluster.
//!
//! KMS deletes a CloudHSM key's material on a best-effort basis when the key's waiting period
//! ends; it cannot when the store is not connected then, and the material stays in the cluster
//! (orphaned). The only record of the outcome is the CloudTrail `DeleteKey` event KMS writes
//! (`eventType` `AwsServiceEvent`): `additionalEventData.backingKeysDeletionStatus`, JSON text
//! of an array of `{keyHandle?, backingKeyId, deletionStatus}` (kms-facts.md section 5). KMS
//! itself answers only `NotFoundException` for a deleted key, so a run reads these events before
//! it disconnects and deletes the store, records each key's outcome in its ledger, and stops
//! with `KeyMaterialOrphaned` (or `KeyMaterialDeletionUnconfirmed`) rather than report a
//! decommission whose material is still in the cluster.

use serde_json::Value;

/// The CloudTrail event name of a key deletion.
pub const DELETE_KEY_EVENT: &str = "DeleteKey";

/// What a `DeleteKey` event says of a key's material in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaterialStatus {
    /// Every backing key's `deletionStatus` is `SUCCESS`.
    Deleted,
    /// A backing key's `deletionStatus` is `FAILURE`: the material is still in the cluster.
    Orphaned,
    /// The event names no readable status (a format this code does not know): not a proof.
    Unknown,
}

impl MaterialStatus {
    /// The value recorded in the ledger (`KeyMaterial`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "Deleted",
            Self::Orphaned => "Orphaned",
            Self::Unknown => "Unknown",
        }
    }
}

/// One backing key of a `DeleteKey` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackingKey {
    /// `keyHandle`, when the event gives it (older events do).
    pub key_handle: Option<String>,
    /// `backingKeyId`.
    pub backing_key_id: Option<String>,
    /// `deletionStatus`: `SUCCESS` or `FAILURE`.
    pub deletion_status: Option<String>,
}

/// A `DeleteKey` event of a key in a custom key store, reduced to what says where its material
/// went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDeletionEvent {
    /// `eventID`.
    pub event_id: String,
    /// The deleted key (`responseElements.keyId`, else the key of `resources`).
    pub key_arn: String,
    /// `additionalEventData.customKeyStoreId`.
    pub custom_key_store_id: Option<String>,
    /// The backing keys with their deletion status.
    pub backing_keys: Vec<BackingKey>,
}

impl KeyDeletionEvent {
    /// Reads a CloudTrail record; `None` unless it is KMS's own `DeleteKey` service event
    /// naming a key (a `DeleteKey` API call by someone does not exist in KMS, and whoever
    /// could write such a record elsewhere would not be KMS).
    pub fn from_record(record: &Value) -> Option<Self> {
        let text = |pointer: &str| record.pointer(pointer).and_then(Value::as_str);
        if text("/eventSource") != Some("kms.amazonaws.com")
            || text("/eventName") != Some(DELETE_KEY_EVENT)
            || text("/eventType") != Some("AwsServiceEvent")
        {
            return None;
        }
        let key_arn = text("/responseElements/keyId")
            .filter(|arn| arn.starts_with("arn:"))
            .or_else(|| {
                record
                    .get("resources")
                    .and_then(Value::as_array)?
                    .iter()
                    .find(|r| r.get("type").and_then(Value::as_str) == Some("AWS::KMS::Key"))?
                    .get("ARN")
                    .and_then(Value::as_str)
            })?;
        let data = record.get("additionalEventData");
        let embedded = |name: &str| -> Vec<Value> {
            let Some(field) = data.and_then(|d| d.get(name)) else {
                return Vec::new();
            };
            // JSON text of an array (as documented), or already an array or one object.
            let value = match field {
                Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                other => other.clone(),
            };
            match value {
                Value::Array(items) => items,
                object @ Value::Object(_) => vec![object],
                _ => Vec::new(),
            }
        };
        let field = |item: &Value, name: &str| -> Option<String> {
            match item.get(name)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let mut backing_keys: Vec<BackingKey> = embedded("backingKeysDeletionStatus")
            .iter()
            .map(|item| BackingKey {
                key_handle: field(item, "keyHandle"),
                backing_key_id: field(item, "backingKeyId"),
                deletion_status: field(item, "deletionStatus"),
            })
            .collect();
        // Handles the status list leaves out, from `backingKeys` (same backing key id).
        for listed in embedded("backingKeys") {
            let id = field(&listed, "backingKeyId");
            match backing_keys.iter_mut().find(|b| b.backing_key_id == id) {
                Some(known) if known.key_handle.is_none() => {
                    known.key_handle = field(&listed, "keyHandle");
                }
                Some(_) => {}
                None => backing_keys.push(BackingKey {
                    key_handle: field(&listed, "keyHandle"),
                    backing_key_id: id,
                    deletion_status: None,
                }),
            }
        }
        Some(Self {
            event_id: text("/eventID")?.to_owned(),
            key_arn: key_arn.to_owned(),
            custom_key_store_id: data
                .and_then(|d| d.get("customKeyStoreId"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            backing_keys,
        })
    }

    /// The material's fate: orphaned if any backing key failed, deleted if every one (at least
    /// one) succeeded, otherwise unknown.
    pub fn status(&self) -> MaterialStatus {
        let statuses: Vec<Option<&str>> = self
            .backing_keys
            .iter()
            .map(|b| b.deletion_status.as_deref())
            .collect();
        if statuses.contains(&Some("FAILURE")) {
            MaterialStatus::Orphaned
        } else if !statuses.is_empty() && statuses.iter().all(|s| *s == Some("SUCCESS")) {
            MaterialStatus::Deleted
        } else {
            MaterialStatus::Unknown
        }
    }

    /// `keyHandle 01, backingKeyId b-1; ...`: what an operator needs to find the material.
    pub fn handles(&self) -> String {
        let described: Vec<String> = self
            .backing_keys
            .iter()
            .map(|b| {
                let mut parts = Vec::new();
                if let Some(handle) = &b.key_handle {
                    parts.push(format!("keyHandle {handle}"));
                }
                if let Some(id) = &b.backing_key_id {
                    parts.push(format!("backingKeyId {id}"));
                }
                parts.join(", ")
            })
            .filter(|s| !s.is_empty())
            .collect();
        if described.is_empty() {
            "no backing key named".to_owned()
        } else {
            described.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn event(additional: Value) -> Value {
        json!({
            "eventVersion": "1.08",
            "userIdentity": {"accountId": "111122223333", "invokedBy": "AWS Internal"},
            "eventSource": "kms.amazonaws.com",
            "eventName": "DeleteKey",
            "requestParameters": null,
            "responseElements": {"keyId": ARN},
            "additionalEventData": additional,
            "eventID": "1234585c-4b0c-4340-ab11-662414b79239",
            "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": ARN}],
            "eventType": "AwsServiceEvent",
        })
    }

    #[test]
    fn both_documented_formats_give_the_status_and_the_handle() {
        // The older format: keyHandle in both lists.
        let older = event(json!({
            "customKeyStoreId": "cks-1234567890abcdef0",
            "clusterId": "cluster-1a23b4cdefg",
            "backingKeys": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"backing-key-id\"}]",
            "backingKeysDeletionStatus": "[{\"keyHandle\":\"01\",\"backingKeyId\":\"backing-key-id\",\"deletionStatus\":\"SUCCESS\"}]"
        }));
        let read = KeyDeletionEvent::from_record(&older).unwrap();
        assert_eq!(read.key_arn, ARN);
        assert_eq!(
            read.custom_key_store_id.as_deref(),
            Some("cks-1234567890abcdef0")
        );
        assert_eq!(read.status(), MaterialStatus::Deleted);
        assert_eq!(read.handles(), "keyHandle 01, backingKeyId backing-key-id");

        // The newer format: backingKeyId only.
        let newer = event(json!({
            "customKeyStoreId": "cks-1234567890abcdef0",
            "backingKeys": "[{\"backingKeyId\":\"b-2\"}]",
            "backingKeysDeletionStatus": "[{\"backingKeyId\":\"b-2\",\"deletionStatus\":\"FAILURE\"}]"
        }));
        let read = KeyDeletionEvent::from_record(&newer).unwrap();
        assert_eq!(read.status(), MaterialStatus::Orphaned);
        assert_eq!(read.handles(), "backingKeyId b-2");
    }

    #[test]
    fn anything_short_of_every_backing_key_succeeding_is_not_a_proof() {
        let cases = [
            (json!({}), MaterialStatus::Unknown),
            (
                json!({"backingKeysDeletionStatus": "not json"}),
                MaterialStatus::Unknown,
            ),
            (
                json!({"backingKeysDeletionStatus": "[]"}),
                MaterialStatus::Unknown,
            ),
            (
                json!({"backingKeysDeletionStatus": "[{\"deletionStatus\":\"SUCCESS\"},{\"deletionStatus\":\"PENDING\"}]"}),
                MaterialStatus::Unknown,
            ),
            (
                json!({"backingKeysDeletionStatus": "[{\"deletionStatus\":\"SUCCESS\"},{\"deletionStatus\":\"FAILURE\"}]"}),
                MaterialStatus::Orphaned,
            ),
            // A backing key listed without a status: not every one is known to be deleted.
            (
                json!({"backingKeys": "[{\"backingKeyId\":\"a\"},{\"backingKeyId\":\"b\"}]",
                       "backingKeysDeletionStatus": "[{\"backingKeyId\":\"a\",\"deletionStatus\":\"SUCCESS\"}]"}),
                MaterialStatus::Unknown,
            ),
            // Already parsed, one object instead of an array.
            (
                json!({"backingKeysDeletionStatus": {"deletionStatus": "SUCCESS"}}),
                MaterialStatus::Deleted,
            ),
        ];
        for (additional, expected) in cases {
            let read = KeyDeletionEvent::from_record(&event(additional.clone())).unwrap();
            assert_eq!(read.status(), expected, "{additional}");
        }
    }

    #[test]
    fn only_kms_own_delete_key_service_events_count() {
        let good =
            event(json!({"backingKeysDeletionStatus": "[{\"deletionStatus\":\"SUCCESS\"}]"}));
        for (pointer, value) in [
            ("/eventSource", json!("cloudhsm.amazonaws.com")),
            ("/eventName", json!("ScheduleKeyDeletion")),
            ("/eventType", json!("AwsApiCall")),
            ("/eventID", Value::Null),
        ] {
            let mut record = good.clone();
            *record.pointer_mut(pointer).unwrap() = value;
            assert_eq!(KeyDeletionEvent::from_record(&record), None, "{pointer}");
        }
        // No key ARN in responseElements: the resources name it.
        let mut record = good.clone();
        record["responseElements"] = Value::Null;
        assert_eq!(KeyDeletionEvent::from_record(&record).unwrap().key_arn, ARN);
        record["resources"] = json!([]);
        assert_eq!(KeyDeletionEvent::from_record(&record), None);
    }
}
