//! The state document that every step handler receives whole and returns whole
//! (`docs/workflow-contract.md`). PascalCase JSON; a section is absent until its step has run.
//!
//! The document stays small whatever the store size: counts, cursors, timestamps and key
//! samples capped at [`SAMPLE_CAP`](crate::model::SAMPLE_CAP); complete key lists go to the logs.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_kms::types::ConnectionStateType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::DecommissionError;
use crate::model::{kms_name, ExecutionInfo, KeySample, StoreSummary, StoreType, Timestamp};
use crate::report::{last_use_follow_ups, left_behind, Outcome, Report};
use crate::request::DecommissionRequest;
use crate::usage::UsageSummary;

/// The whole state document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecommissionState {
    /// The raw execution input, exactly as given (validated by plan-decommission).
    #[serde(default)]
    pub input: Value,
    /// The execution, from the Step Functions context object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionInfo>,
    /// The validated request (plan-decommission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<DecommissionRequest>,
    /// The store as last described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSummary>,
    /// Inventory and plan (plan-decommission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanProgress>,
    /// The approval gate (plan-decommission decides whether it applies; record-approval
    /// records the approver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalStatus>,
    /// The quarantine (plan-decommission decides whether it applies; quarantine-store runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineStatus>,
    /// Connection of a CloudHSM store (ensure-store-connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionStatus>,
    /// Markers and ScheduleKeyDeletion (schedule-key-deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<SchedulingProgress>,
    /// Checks that the keys are gone (check-keys-deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<DeletionCheck>,
    /// DisconnectCustomKeyStore and its polling (disconnect-store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<DisconnectStatus>,
    /// The final report (delete-store, or plan-decommission for a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Sections written by the state machine or later features (e.g. `Failure`), kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl DecommissionState {
    /// Parses a state document received by a handler.
    pub fn from_value(value: Value) -> Result<Self, DecommissionError> {
        if !value.is_object() {
            return Err(DecommissionError::invalid_state(
                "the payload is not a JSON object",
            ));
        }
        serde_path_to_error::deserialize(value)
            .map_err(|e| DecommissionError::invalid_state(format!("{}: {}", e.path(), e.inner())))
    }

    /// Serializes the document for the handler's response.
    pub fn to_value(&self) -> Result<Value, DecommissionError> {
        serde_json::to_value(self).map_err(|e| {
            DecommissionError::invalid_state(format!("the document cannot be serialized: {e}"))
        })
    }

    /// The validated request; later steps refuse to run without it.
    pub fn require_request(&self) -> Result<&DecommissionRequest, DecommissionError> {
        self.request.as_ref().ok_or_else(|| {
            DecommissionError::invalid_state("no Request section (plan-decommission has not run)")
        })
    }

    /// The validated request of a real run: a dry run never reaches a mutating step.
    pub fn require_real_run(&self) -> Result<&DecommissionRequest, DecommissionError> {
        let request = self.require_request()?;
        if request.dry_run {
            return Err(DecommissionError::invalid_state(
                "Request.DryRun is true: a dry run changes nothing and ends after plan-decommission",
            ));
        }
        Ok(request)
    }

    /// The execution ARN recorded on each key's markers: a Step Functions execution ARN (a
    /// malformed one is this document's error, not a Step Functions failure to retry).
    pub fn execution_id(&self) -> Result<&str, DecommissionError> {
        match &self.execution {
            Some(execution) if !execution.id.is_empty() => {
                let id = execution.id.as_str();
                if crate::arn::Arn::parse(id)
                    .and_then(|arn| arn.execution_names())
                    .is_none()
                {
                    return Err(DecommissionError::invalid_state(format!(
                        "Execution.Id {:?} is not a Step Functions execution ARN (the Initialize \
                         state copies $$.Execution.Id)",
                        crate::input::truncate_for_message(id)
                    )));
                }
                Ok(id)
            }
            _ => Err(DecommissionError::invalid_state(
                "no Execution.Id (the Initialize state copies $$.Execution.Id)",
            )),
        }
    }

    /// The store as described by plan-decommission.
    pub fn require_store(&self) -> Result<&StoreSummary, DecommissionError> {
        self.store.as_ref().ok_or_else(|| {
            DecommissionError::invalid_state("no Store section (plan-decommission has not run)")
        })
    }

    /// Whether the operator accepted, and this execution recorded, that the store could not be
    /// connected and KMS may leave key material behind.
    pub fn orphaned_key_material_accepted(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.orphaned_key_material_accepted)
    }
}

/// Progress and result of plan-decommission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlanProgress {
    /// The inventory is complete (the state machine loops while false).
    pub done: bool,
    /// ListKeys marker of the next page to scan.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Keys of the account examined so far.
    #[serde(default)]
    pub keys_scanned: u64,
    /// Keys of the store found so far.
    #[serde(default)]
    pub keys_in_store: u64,
    /// Keys of the store by key state.
    #[serde(default)]
    pub keys_by_state: BTreeMap<String, u64>,
    /// The first keys found (at most [`SAMPLE_CAP`](crate::model::SAMPLE_CAP)).
    #[serde(default)]
    pub keys: Vec<KeySample>,
    /// More keys exist than `keys` lists (the complete list is in the logs).
    #[serde(default)]
    pub keys_truncated: bool,
    /// What KMS will not delete, one sentence each.
    #[serde(default)]
    pub left_behind: Vec<String>,
    /// The store's keys' last use and the last-use guard's verdict (`src/usage.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_use: Option<UsageSummary>,
}

/// Where the quarantine stands (`Quarantine.Phase`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuarantinePhase {
    /// Disconnecting the store.
    #[default]
    Disconnecting,
    /// The store is disconnected; CloudTrail is read for attempts to use its keys.
    Watching,
    /// Connecting the store again (the quarantine is over, or someone needs a key).
    Reconnecting,
    /// Over, nobody found: the keys may be scheduled.
    Done,
}

/// What the state machine does after quarantine-store (`Quarantine.Next`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuarantineNext {
    /// Wait `PollAfterSeconds`, then call it again (the store's connection is changing).
    #[default]
    Poll,
    /// Call it again at once (a CloudTrail scan goes on from its cursor).
    Continue,
    /// Wait until `NextCheckAt`, then call it again.
    WaitForCheck,
    /// Go on to the next step.
    Done,
}

/// Where a CloudTrail scan of the store's keys resumes: the ListKeys page it is in, and the
/// key and CloudTrail page within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QuarantineScan {
    /// Marker of the ListKeys page being scanned (`None`: the first page).
    #[serde(default)]
    pub list_marker: Option<String>,
    /// Within that page's keys of the store.
    #[serde(default)]
    pub in_page: crate::key_use::ScanCursor,
    /// Within that page's keys of the store, on the Logs Insights path: the key batches and
    /// time ranges still to query, and the query running (polled again by the next invocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights: Option<crate::logs_insights::InsightsCursor>,
    /// The end of the window this scan reads (events up to then).
    pub window_end: Timestamp,
}

/// The quarantine of a real run (`Quarantine` section): the store disconnected for `Days`,
/// CloudTrail read for anyone trying its keys, then connected again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QuarantineStatus {
    /// Whether the run quarantines the store (`Days` > 0 and not a dry run).
    pub required: bool,
    /// How long.
    pub days: u32,
    /// Where it stands.
    #[serde(default)]
    pub phase: QuarantinePhase,
    /// What the state machine does next.
    #[serde(default)]
    pub next: QuarantineNext,
    /// Seconds to wait before the next poll (`Next: Poll`).
    #[serde(default)]
    pub poll_after_seconds: u64,
    /// Whether the store was CONNECTED when the quarantine began (it is connected again at the end).
    #[serde(default)]
    pub was_connected: Option<bool>,
    /// When DisconnectCustomKeyStore was called (or the store was found disconnected): the
    /// window starts here.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When the quarantine ends (`StartedAt` + `Days`).
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    /// When CloudTrail is read next (`Next: WaitForCheck`).
    #[serde(default)]
    pub next_check_at: Option<Timestamp>,
    /// CloudTrail has been read up to here.
    #[serde(default)]
    pub checked_through: Option<Timestamp>,
    /// A scan in progress.
    #[serde(default)]
    pub scan: Option<QuarantineScan>,
    /// Scans completed.
    #[serde(default)]
    pub checks: u32,
    /// CloudTrail lookups made, events read, throttled lookups (tried again).
    #[serde(default)]
    pub lookups: u64,
    /// Logs Insights queries started (when the trail's log group is configured).
    #[serde(default)]
    pub queries: u64,
    /// Events read.
    #[serde(default)]
    pub events_scanned: u64,
    /// Lookups CloudTrail throttled.
    #[serde(default)]
    pub throttled: u64,
    /// Attempts to use a key of the store, found so far (at most `SAMPLE_CAP` kept).
    #[serde(default)]
    pub found: Vec<crate::key_use::KeyUse>,
    /// How many attempts were found in all.
    #[serde(default)]
    pub found_count: u64,
    /// When the current Disconnecting or Reconnecting phase began (timeouts).
    #[serde(default)]
    pub phase_since: Option<Timestamp>,
    /// When the store was found connected again (or, not connected before, left so): a last
    /// check then reads CloudTrail up to here, so attempts refused while it reconnected count.
    #[serde(default)]
    pub reconnected_at: Option<Timestamp>,
}

/// The approval gate of a real run (`Approval` section).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApprovalStatus {
    /// A second person must approve before the first change (the state machine waits).
    pub required: bool,
    /// How long the state machine waits for the answer (`ApprovalTimedOut` after).
    pub timeout_seconds: u64,
    /// The run was approved (record-approval).
    #[serde(default)]
    pub approved: bool,
    /// Who approved.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// When the approval was recorded.
    #[serde(default)]
    pub approved_at: Option<Timestamp>,
}

/// Progress of ensure-store-connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionStatus {
    /// The store is ready for the waiting period (the state machine polls while false).
    pub ready: bool,
    /// Connection state last seen.
    #[serde(with = "kms_name")]
    pub connection_state: ConnectionStateType,
    /// ConnectionErrorCode last seen (FAILED only).
    #[serde(default)]
    pub connection_error_code: Option<String>,
    /// ConnectCustomKeyStore calls in the current connect episode.
    #[serde(default)]
    pub connect_attempts: u32,
    /// Seconds to wait before the next poll.
    pub poll_after_seconds: u64,
    /// When the current connect episode started (RFC 3339), null when ready.
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// The store could not be connected and AllowOrphanedKeyMaterial let the workflow go on.
    #[serde(default)]
    pub orphaned_key_material_accepted: bool,
}

/// Progress and result of schedule-key-deletion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchedulingProgress {
    /// Every key of the store is pending deletion (the state machine loops while false).
    pub done: bool,
    /// ListKeys marker of the next page to process.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Keys of the account examined so far.
    #[serde(default)]
    pub keys_scanned: u64,
    /// Keys of the store pending deletion with this execution's marker.
    #[serde(default)]
    pub keys_scheduled: u64,
    /// Keys of the store that were already pending deletion before this execution.
    #[serde(default)]
    pub keys_already_pending: u64,
    /// Earliest DeletionDate among the store's keys (RFC 3339).
    #[serde(default)]
    pub earliest_deletion_date: Option<Timestamp>,
    /// Latest DeletionDate among the store's keys (RFC 3339).
    #[serde(default)]
    pub latest_deletion_date: Option<Timestamp>,
    /// When check-keys-deleted should first run (RFC 3339, whole seconds, rounded up).
    #[serde(default)]
    pub wait_until: Option<Timestamp>,
    /// Whether the state machine should Wait for `wait_until` (false when under 60 s ahead).
    #[serde(default)]
    pub wait_required: bool,
    /// Keys whose last use was checked again just before they were scheduled.
    #[serde(default)]
    pub keys_last_use_rechecked: u64,
    /// Keys that carried decommission markers this run did not write (ignored; named in the
    /// report).
    #[serde(default)]
    pub keys_with_foreign_markers: u64,
    /// The first of them: `ARN (marker ...)`.
    #[serde(default)]
    pub keys_with_foreign_markers_sample: Vec<String>,
}

/// Progress and result of check-keys-deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeletionCheck {
    /// The current scan is complete (the state machine loops while false).
    pub scan_done: bool,
    /// ListKeys marker of the next page of the current scan.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Keys of the store still pending deletion (so far, while the scan runs).
    #[serde(default)]
    pub keys_pending: u64,
    /// No key of the store is left.
    #[serde(default)]
    pub all_deleted: bool,
    /// A CloudHSM store was found not CONNECTED while keys are still pending.
    #[serde(default)]
    pub needs_reconnect: bool,
    /// Completed or started scans.
    #[serde(default)]
    pub checks: u32,
    /// Seconds to wait before the next scan.
    #[serde(default)]
    pub poll_after_seconds: u64,
    /// Keys of the account examined in the current scan.
    #[serde(default)]
    pub keys_scanned: u64,
    /// Earliest DeletionDate among pending keys in the current scan.
    #[serde(default)]
    pub earliest_deletion_date: Option<Timestamp>,
    /// Latest DeletionDate among pending keys in the current scan.
    #[serde(default)]
    pub latest_deletion_date: Option<Timestamp>,
    /// Keys of the store found not pending deletion in the current scan.
    #[serde(default)]
    pub keys_not_pending: u64,
    /// The first of them, as `ARN (State)` (at most [`SAMPLE_CAP`](crate::model::SAMPLE_CAP)).
    #[serde(default)]
    pub keys_not_pending_sample: Vec<String>,
    /// CloudHSM stores, once no key is left: what KMS's `DeleteKey` events say of the key
    /// material in the cluster (`AllDeleted` waits for this check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_material: Option<KeyMaterialCheck>,
}

/// Progress and result of the key material check (`crate::key_material`): the verdict comes
/// from the run's ledger, never from this document; the document carries only where the
/// CloudTrail scan stands and when the check began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMaterialCheck {
    /// When the run first found every key gone (the check waits for CloudTrail from here).
    pub started_at: Option<Timestamp>,
    /// LookupEvents token of the next page of the current scan.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Complete scans of the `DeleteKey` events.
    #[serde(default)]
    pub scans: u32,
    /// `DeleteKey` events of the store read in the current scan.
    #[serde(default)]
    pub events_read: u64,
    /// Keys of this run whose material KMS deleted (from the ledger, after the last scan).
    #[serde(default)]
    pub keys_deleted: u64,
    /// Keys whose material KMS could not delete: still in the cluster.
    #[serde(default)]
    pub keys_orphaned: u64,
    /// `ARN (keyHandle ..., backingKeyId ..., CloudTrail event ...)` of the first of them.
    #[serde(default)]
    pub keys_orphaned_sample: Vec<String>,
    /// Of them, keys not scheduled by this run (pending before it, or deleted before it began)
    /// found orphaned by the current scan.
    #[serde(default)]
    pub other_keys_orphaned: u64,
    /// The first of those.
    #[serde(default)]
    pub other_keys_orphaned_sample: Vec<String>,
    /// Keys of this run without a readable `DeleteKey` event yet.
    #[serde(default)]
    pub keys_unconfirmed: u64,
    /// The first of them.
    #[serde(default)]
    pub keys_unconfirmed_sample: Vec<String>,
    /// The check is over: every key of the run is accounted for, or the wait ran out.
    #[serde(default)]
    pub done: bool,
}

/// Progress of disconnect-store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DisconnectStatus {
    /// The store is DISCONNECTED (the state machine polls while false).
    pub disconnected: bool,
    /// Connection state last seen.
    #[serde(with = "kms_name")]
    pub connection_state: ConnectionStateType,
    /// DisconnectCustomKeyStore calls made by this step.
    #[serde(default)]
    pub disconnect_attempts: u32,
    /// Seconds to wait before the next poll.
    pub poll_after_seconds: u64,
    /// When this step first found the store not yet DISCONNECTED (RFC 3339).
    #[serde(default)]
    pub since: Option<Timestamp>,
}

impl Default for ConnectionStatus {
    fn default() -> Self {
        Self {
            ready: false,
            connection_state: ConnectionStateType::from(""),
            connection_error_code: None,
            connect_attempts: 0,
            poll_after_seconds: 0,
            since: None,
            orphaned_key_material_accepted: false,
        }
    }
}

impl Default for DisconnectStatus {
    fn default() -> Self {
        Self {
            disconnected: false,
            connection_state: ConnectionStateType::from(""),
            disconnect_attempts: 0,
            poll_after_seconds: 0,
            since: None,
        }
    }
}

impl DecommissionState {
    /// The report of a dry run, from a completed plan (`Report` of the document).
    pub fn dry_run_report(&self, now: SystemTime) -> Result<Report, DecommissionError> {
        let state = self;
        let plan = state
            .plan
            .as_ref()
            .ok_or_else(|| DecommissionError::invalid_state("no Plan section"))?;
        let already_pending = plan
            .keys_by_state
            .get("PendingDeletion")
            .copied()
            .unwrap_or(0);
        let mut report = state.base_report(Outcome::DryRun, now)?;
        report.keys_scheduled = plan.keys_in_store.saturating_sub(already_pending);
        report.keys_already_pending = already_pending;
        Ok(report)
    }

    /// The report of a completed decommission.
    pub fn final_report(
        &self,
        outcome: Outcome,
        now: SystemTime,
    ) -> Result<Report, DecommissionError> {
        let state = self;
        let scheduling = state.scheduling.as_ref().ok_or_else(|| {
            DecommissionError::invalid_state(
                "no Scheduling section (schedule-key-deletion has not run)",
            )
        })?;
        let mut report = state.base_report(outcome, now)?;
        report.keys_scheduled = scheduling.keys_scheduled;
        report.keys_already_pending = scheduling.keys_already_pending;
        report.keys_deleted = scheduling
            .keys_scheduled
            .saturating_add(scheduling.keys_already_pending);
        report.keys_with_foreign_markers = scheduling.keys_with_foreign_markers_sample.clone();
        if let Some(material) = state
            .deletion
            .as_ref()
            .and_then(|d| d.key_material.as_ref())
        {
            if material.keys_orphaned > 0 {
                report.follow_ups.push(format!(
                    "KMS could not delete the key material of {} key(s) from the cluster \
                     (DeleteKey events with FAILURE; AllowOrphanedKeyMaterial was true): {}. \
                     Delete each backing key as kmsuser, and the backups that hold it.",
                    material.keys_orphaned,
                    material.keys_orphaned_sample.join("; ")
                ));
            }
            if material.keys_unconfirmed > 0 {
                report.follow_ups.push(format!(
                    "CloudTrail showed no readable DeleteKey event for {} key(s) within the wait \
                     (AllowOrphanedKeyMaterial was true): {}. Check whether their material left \
                     the cluster (findKey -l <key ARN> as kmsuser).",
                    material.keys_unconfirmed,
                    material.keys_unconfirmed_sample.join(", ")
                ));
            }
            report.key_material = Some(crate::report::KeyMaterialSummary {
                keys_deleted: material.keys_deleted,
                keys_orphaned: material.keys_orphaned,
                orphaned: material.keys_orphaned_sample.clone(),
                keys_unconfirmed: material.keys_unconfirmed,
                unconfirmed: material.keys_unconfirmed_sample.clone(),
            });
        }
        if scheduling.keys_with_foreign_markers > 0 {
            report.follow_ups.push(format!(
                "{} key(s) carried kms-decommission marker tags this run did not write (they \
                 disagree with what the run read from KMS and recorded in its ledger): \
                 KeysWithForeignMarkers. The markers were ignored; find who wrote them (CloudTrail \
                 TagResource events).",
                scheduling.keys_with_foreign_markers
            ));
        }
        Ok(report)
    }

    fn base_report(&self, outcome: Outcome, now: SystemTime) -> Result<Report, DecommissionError> {
        let state = self;
        let request = state.require_request()?;
        let store = state.require_store()?;
        let plan = state.plan.clone().unwrap_or_default();
        let orphaned = state.orphaned_key_material_accepted();
        let mut follow_ups = left_behind(store);
        if orphaned {
            follow_ups.push(format!(
                "The store could not be connected (ConnectionErrorCode {}) and \
                 AllowOrphanedKeyMaterial was true: expect the material of every deleted key to \
                 remain in the cluster (DeleteKey events with FAILURE).",
                state
                    .connection
                    .as_ref()
                    .and_then(|c| c.connection_error_code.as_deref())
                    .unwrap_or("unknown")
            ));
        }
        if let Some(usage) = &plan.last_use {
            follow_ups.extend(last_use_follow_ups(usage));
        }
        if plan.keys_truncated {
            follow_ups.push(format!(
                "Only the first {} of {} keys are listed here; the complete list (key ARNs{}) is \
                 in the plan-decommission logs of this execution (message \"store key\").",
                plan.keys.len(),
                plan.keys_in_store,
                if store.custom_key_store_type == StoreType::External {
                    " and external key ids"
                } else {
                    ""
                }
            ));
        }
        Ok(Report {
            outcome,
            custom_key_store_id: store.custom_key_store_id.clone(),
            custom_key_store_name: store.custom_key_store_name.clone(),
            custom_key_store_type: store.custom_key_store_type,
            cloud_hsm_cluster_id: store.cloud_hsm_cluster_id.clone(),
            execution_id: state.execution.as_ref().map(|e| e.id.clone()),
            requested_by: request.requested_by.clone(),
            reason: request.reason.clone(),
            ticket_id: request.ticket_id.clone(),
            pending_window_in_days: request.pending_window_in_days,
            keys_in_store: plan.keys_in_store,
            keys_by_state: plan.keys_by_state,
            keys_scheduled: 0,
            keys_already_pending: 0,
            keys_deleted: 0,
            keys: plan.keys,
            keys_truncated: plan.keys_truncated,
            keys_with_foreign_markers: Vec::new(),
            ledger: None,
            orphaned_key_material_accepted: orphaned,
            last_use: plan.last_use,
            key_material: None,
            quarantine: state.quarantine.as_ref().filter(|q| q.required).map(|q| {
                crate::report::QuarantineSummary {
                    days: q.days,
                    started_at: q.started_at,
                    ends_at: q.ends_at,
                    checked_through: q.checked_through,
                    checks: q.checks,
                    lookups: q.lookups,
                    events_scanned: q.events_scanned,
                    attempts_found: q.found_count,
                }
            }),
            follow_ups,
            started_at: state.execution.as_ref().and_then(|e| e.start_time.clone()),
            finished_at: Timestamp::floor(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{push_capped, SAMPLE_CAP};
    use serde_json::json;

    #[test]
    fn the_initial_document_parses_and_round_trips() {
        let doc = json!({
            "Input": {"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true},
            "Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
                          "Name": "run-1", "StartTime": "2026-11-28T10:00:00.000Z"}
        });
        let state = DecommissionState::from_value(doc.clone()).unwrap();
        assert_eq!(
            state.execution_id().unwrap(),
            "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"
        );
        assert_eq!(state.to_value().unwrap(), doc);
    }

    #[test]
    fn absent_sections_are_not_written_and_unknown_sections_are_kept() {
        let doc = json!({
            "Input": {},
            "Execution": {"Id": "arn:x"},
            "Failure": {"Error": "X", "Cause": "y"}
        });
        let value = DecommissionState::from_value(doc)
            .unwrap()
            .to_value()
            .unwrap();
        assert!(value.get("Plan").is_none());
        assert!(value.get("Scheduling").is_none());
        assert_eq!(value["Failure"]["Error"], "X");
    }

    #[test]
    fn fields_the_state_machine_reads_have_their_contract_names() {
        let state = DecommissionState {
            plan: Some(PlanProgress::default()),
            connection: Some(ConnectionStatus::default()),
            scheduling: Some(SchedulingProgress {
                wait_until: Some(Timestamp::parse("2026-12-28T10:00:00Z").unwrap()),
                ..Default::default()
            }),
            deletion: Some(DeletionCheck::default()),
            disconnect: Some(DisconnectStatus::default()),
            ..Default::default()
        };
        let value = state.to_value().unwrap();
        for (section, field) in [
            ("Plan", "Done"),
            ("Connection", "Ready"),
            ("Connection", "PollAfterSeconds"),
            ("Scheduling", "Done"),
            ("Scheduling", "WaitRequired"),
            ("Scheduling", "WaitUntil"),
            ("Deletion", "ScanDone"),
            ("Deletion", "AllDeleted"),
            ("Deletion", "NeedsReconnect"),
            ("Deletion", "PollAfterSeconds"),
            ("Disconnect", "Disconnected"),
            ("Disconnect", "PollAfterSeconds"),
        ] {
            assert!(
                value[section].get(field).is_some(),
                "{section}.{field} missing"
            );
        }
    }

    #[test]
    fn malformed_documents_are_named_errors() {
        for bad in [
            json!([1, 2]),
            json!("text"),
            json!({"Plan": {"Done": "yes"}}),
            json!({"Store": {"CustomKeyStoreId": "cks-1"}}),
        ] {
            let err = DecommissionState::from_value(bad).unwrap_err();
            assert_eq!(err.error_type(), "InvalidStateDocument");
        }
    }

    #[test]
    fn later_steps_require_a_real_run_with_an_execution() {
        let state = DecommissionState::default();
        assert_eq!(
            state.require_request().unwrap_err().error_type(),
            "InvalidStateDocument"
        );
        assert_eq!(
            state.execution_id().unwrap_err().error_type(),
            "InvalidStateDocument"
        );
        let dry = DecommissionState {
            request: Some(
                DecommissionRequest::from_input(
                    &json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true}),
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        assert_eq!(
            dry.require_real_run().unwrap_err().error_type(),
            "InvalidStateDocument"
        );
    }

    /// Found by the `state_document` fuzz target: counts near `u64::MAX` overflowed the sum of
    /// keys deleted (a panic in a debug build, a wrapped count in a release build).
    #[test]
    fn the_final_report_of_a_document_with_huge_counts_does_not_overflow() {
        let mut state = DecommissionState::from_value(json!({
            "Input": {"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true},
            "Request": DecommissionRequest::from_input(
                &json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true}),
            )
            .unwrap(),
            "Store": {"CustomKeyStoreId": "cks-1234567890abcdef0",
                      "CustomKeyStoreName": "ExampleStore",
                      "CustomKeyStoreType": "AWS_CLOUDHSM", "ConnectionState": "CONNECTED"},
            "Scheduling": {"Done": true, "KeysScheduled": 2, "KeysAlreadyPending": u64::MAX}
        }))
        .unwrap();
        let report = state
            .final_report(Outcome::Deleted, SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(report.keys_deleted, u64::MAX);
        state.scheduling.as_mut().unwrap().keys_already_pending = 3;
        let report = state
            .final_report(Outcome::Deleted, SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(report.keys_deleted, 5);
    }

    #[test]
    fn the_final_report_lists_the_key_material_the_operator_accepted_to_leave() {
        let mut state = DecommissionState::from_value(json!({
            "Input": {"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true},
            "Request": DecommissionRequest::from_input(
                &json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true}),
            )
            .unwrap(),
            "Store": {"CustomKeyStoreId": "cks-1234567890abcdef0",
                      "CustomKeyStoreName": "ExampleStore",
                      "CustomKeyStoreType": "AWS_CLOUDHSM", "ConnectionState": "CONNECTED"},
            "Scheduling": {"Done": true, "KeysScheduled": 3, "KeysAlreadyPending": 0},
            "Deletion": {"ScanDone": true, "AllDeleted": true, "KeyMaterial": {
                "StartedAt": "2026-11-30T10:00:00Z", "Done": true, "KeysDeleted": 1,
                "KeysOrphaned": 1, "KeysOrphanedSample": ["arn:k2 (keyHandle 7, backingKeyId b)"],
                "KeysUnconfirmed": 1, "KeysUnconfirmedSample": ["arn:k3"]}}
        }))
        .unwrap();
        let report = state
            .final_report(Outcome::Deleted, SystemTime::UNIX_EPOCH)
            .unwrap();
        let material = report.key_material.clone().unwrap();
        assert_eq!(
            (
                material.keys_deleted,
                material.keys_orphaned,
                material.keys_unconfirmed
            ),
            (1, 1, 1)
        );
        let follow_ups = report.follow_ups.join(" ");
        assert!(
            follow_ups.contains("arn:k2 (keyHandle 7, backingKeyId b)"),
            "{follow_ups}"
        );
        assert!(follow_ups.contains("arn:k3"), "{follow_ups}");
        // An XKS store, or a run before the check, has no such section.
        state.deletion = None;
        let report = state
            .final_report(Outcome::Deleted, SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(report.key_material.is_none());
        assert!(serde_json::to_value(&report)
            .unwrap()
            .get("KeyMaterial")
            .is_none());
    }

    #[test]
    fn samples_are_capped() {
        let mut sample = Vec::new();
        for i in 0..100 {
            push_capped(&mut sample, i);
        }
        assert_eq!(sample.len(), SAMPLE_CAP);
    }
}
