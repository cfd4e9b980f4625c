//! The final report, and what KMS leaves for the operator to clean up by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{KeySample, StoreSummary, StoreType, Timestamp};
use crate::usage::UsageSummary;

/// How the decommission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A dry run: nothing was changed.
    DryRun,
    /// DeleteCustomKeyStore succeeded.
    Deleted,
    /// The store was already gone when this execution deleted it (an earlier attempt succeeded).
    AlreadyDeleted,
}

/// The execution's output (`OutputPath: $.Report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Store id.
    pub custom_key_store_id: String,
    /// Store name.
    pub custom_key_store_name: String,
    /// Store type.
    pub custom_key_store_type: StoreType,
    /// CloudHSM cluster (CloudHSM stores).
    #[serde(default)]
    pub cloud_hsm_cluster_id: Option<String>,
    /// The execution ARN.
    #[serde(default)]
    pub execution_id: Option<String>,
    /// From the input.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// From the input.
    #[serde(default)]
    pub reason: Option<String>,
    /// From the input.
    #[serde(default)]
    pub ticket_id: Option<String>,
    /// Pending window requested.
    pub pending_window_in_days: i32,
    /// Keys of the store found by the plan.
    pub keys_in_store: u64,
    /// Keys of the store by state, as planned.
    pub keys_by_state: BTreeMap<String, u64>,
    /// Keys a real run would schedule (dry run) / keys this execution scheduled.
    pub keys_scheduled: u64,
    /// Keys that were already pending deletion before this execution.
    pub keys_already_pending: u64,
    /// Keys confirmed deleted (0 for a dry run).
    pub keys_deleted: u64,
    /// The first keys of the store (at most 25; the complete list is in the logs).
    pub keys: Vec<KeySample>,
    /// More keys exist than `keys` lists.
    pub keys_truncated: bool,
    /// Keys that carried decommission markers this run did not write: `ARN (marker ...)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_with_foreign_markers: Vec<String>,
    /// Where the run ledger keeps this run's records (real runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerLocation>,
    /// The store could not be connected and the operator accepted orphaned key material.
    pub orphaned_key_material_accepted: bool,
    /// The keys' last use as planned, and the last-use guard's verdict (`GuardOn` false when
    /// `MinDaysSinceLastUse` was 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_use: Option<UsageSummary>,
    /// The quarantine the store went through before its keys were scheduled, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineSummary>,
    /// CloudHSM stores: what KMS's `DeleteKey` events said of the deleted keys' material in
    /// the cluster (the run's ledger holds it per key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material: Option<KeyMaterialSummary>,
    /// What the operator must do by hand, one sentence each.
    pub follow_ups: Vec<String>,
    /// Execution start (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    /// When the report was written (RFC 3339).
    pub finished_at: Timestamp,
}

/// The report's quarantine section (docs/quarantine.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QuarantineSummary {
    /// Days the store stayed disconnected (asked for).
    pub days: u32,
    /// When it was disconnected.
    pub started_at: Option<Timestamp>,
    /// When the quarantine ended.
    pub ends_at: Option<Timestamp>,
    /// CloudTrail was read up to here.
    pub checked_through: Option<Timestamp>,
    /// CloudTrail checks made.
    pub checks: u32,
    /// LookupEvents calls made.
    pub lookups: u64,
    /// CloudTrail events read.
    pub events_scanned: u64,
    /// Attempts to use a key of the store found (0: nobody tried).
    pub attempts_found: u64,
}

/// The report's key material section (`KeyMaterial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMaterialSummary {
    /// Keys of this run whose material KMS deleted from the cluster.
    pub keys_deleted: u64,
    /// Keys whose material KMS could not delete (orphaned in the cluster).
    pub keys_orphaned: u64,
    /// The first of them: `ARN (keyHandle ..., backingKeyId ..., CloudTrail event ...)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphaned: Vec<String>,
    /// Keys without a readable DeleteKey event when the run went on.
    pub keys_unconfirmed: u64,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
}

/// Where the ledger keeps a run (`docs/ledger.md` shows the AWS CLI queries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LedgerLocation {
    /// The DynamoDB table.
    pub table: String,
    /// Partition key of the store's lock and run records (`STORE#<id>`).
    pub store_key: String,
    /// Sort key of this run's record under `StoreKey` (`RUN#<execution ARN>`).
    pub run_record_key: String,
    /// Partition key of this run's key records (`RUN#<execution ARN>`).
    pub key_records_key: String,
}

impl LedgerLocation {
    /// The location of run `execution` of store `store_id` in `table`.
    pub fn of_run(table: &str, store_id: &str, execution: &str) -> Self {
        Self {
            table: table.to_owned(),
            store_key: crate::ledger::store_pk(store_id),
            run_record_key: crate::ledger::run_pk(execution),
            key_records_key: crate::ledger::run_pk(execution),
        }
    }
}

/// What the operator should know about the keys' last use, one sentence each.
pub fn last_use_follow_ups(usage: &UsageSummary) -> Vec<String> {
    let mut follow_ups = Vec::new();
    if !usage.guard_on {
        follow_ups.push(format!(
            "The last-use guard was off (MinDaysSinceLastUse 0): keys were scheduled whatever \
             their last use; {} of {} keys had recorded use.",
            usage.keys_used, usage.keys_checked
        ));
    }
    if usage.keys_recently_used > 0 {
        follow_ups.push(format!(
            "{} key(s) were used within the last {} day(s) (LastUse.RecentlyUsed, with CloudTrail \
             event ids): a real run refuses with KeysRecentlyUsed until they are idle.",
            usage.keys_recently_used, usage.min_days_since_last_use
        ));
    }
    if usage.keys_unknown_before_tracking > 0 {
        follow_ups.push(format!(
            "{} key(s) were created before KMS began tracking their use: their use before \
             TrackingStartDate is unknown (LastUse.UnknownBeforeTracking); check older CloudTrail \
             logs.",
            usage.keys_unknown_before_tracking
        ));
    }
    follow_ups
}

/// What KMS never deletes for a store of this type, one sentence each.
pub fn left_behind(store: &StoreSummary) -> Vec<String> {
    match store.custom_key_store_type {
        StoreType::CloudHsm => {
            let cluster = store
                .cloud_hsm_cluster_id
                .as_deref()
                .unwrap_or("(cluster id not reported)");
            vec![
                format!(
                    "The CloudHSM cluster {cluster} is not deleted: its HSMs, its kmsuser crypto user \
                     and any keys KMS did not create stay until you remove them."
                ),
                "KMS deletes each key's material from the cluster on a best-effort basis; the \
                 material is labelled with the KMS key ARN (not the key id), so search leftovers by \
                 the key ARNs (findKey -l <key ARN> as kmsuser)."
                    .to_string(),
                "For each key, the CloudTrail DeleteKey event (eventSource kms.amazonaws.com, \
                 eventType AwsServiceEvent) tells in additionalEventData.backingKeysDeletionStatus \
                 whether its material was deleted (SUCCESS) or orphaned (FAILURE; delete the \
                 keyHandle from backingKeys as kmsuser)."
                    .to_string(),
                format!(
                    "KMS never cleans cluster backups: every backup of {cluster} taken before the \
                     deletion still holds the key material; delete those backups when your retention \
                     policy allows."
                ),
            ]
        }
        StoreType::External => {
            let mut sentences = vec![
                "The external keys are not deleted: KMS never deletes keys in the external key \
                 manager; retire each external key (XksKeyId) with your external key manager's tools."
                    .to_string(),
            ];
            let proxy = match (
                &store.xks_proxy_uri_endpoint,
                &store.xks_proxy_vpc_endpoint_service_name,
            ) {
                (Some(uri), Some(service)) => format!("{uri} (VPC endpoint service {service})"),
                (Some(uri), None) => uri.clone(),
                (None, Some(service)) => format!("behind VPC endpoint service {service}"),
                (None, None) => "(endpoint not reported)".to_string(),
            };
            sentences.push(format!(
                "The external key store proxy {proxy} is not deleted; retire it when no other \
                 store uses it."
            ));
            sentences.push(
                "A deleted KMS key cannot be recreated, even from the same external key: data \
                 encrypted under it can no longer be decrypted."
                    .to_string(),
            );
            sentences
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(kind: StoreType) -> StoreSummary {
        StoreSummary {
            custom_key_store_id: "cks-1234567890abcdef0".into(),
            custom_key_store_name: "Example".into(),
            custom_key_store_type: kind,
            cloud_hsm_cluster_id: (kind == StoreType::CloudHsm).then(|| "cluster-abc".to_string()),
            xks_proxy_uri_endpoint: (kind == StoreType::External)
                .then(|| "https://xks.example.com".to_string()),
            xks_proxy_vpc_endpoint_service_name: None,
            connection_state: "CONNECTED".into(),
            connection_error_code: None,
        }
    }

    #[test]
    fn cloudhsm_follow_ups_name_the_cluster_labels_cloudtrail_and_backups() {
        let text = left_behind(&store(StoreType::CloudHsm)).join(" ");
        assert!(text.contains("cluster-abc"));
        assert!(text.contains("key ARN"));
        assert!(text.contains("DeleteKey"));
        assert!(text.contains("backups"));
    }

    #[test]
    fn xks_follow_ups_name_the_external_keys_and_the_proxy() {
        let text = left_behind(&store(StoreType::External)).join(" ");
        assert!(text.contains("XksKeyId"));
        assert!(text.contains("https://xks.example.com"));
        assert!(!text.contains("backups"));
    }
}
