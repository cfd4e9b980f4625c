//! Where a run stands, from its execution and its ledger records: the `status`, `watch` and
//! `list` documents (`--output json` prints them as they are: README, "JSON output").

use std::time::SystemTime;

use kms_decommission::ledger::{KeyRecord, RunRecord};
use serde::Serialize;

use crate::aws::Execution;
use crate::error::CliError;

/// A run's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunStatus {
    /// Execution ARN.
    pub execution: String,
    /// Execution name.
    pub execution_name: String,
    /// The store.
    pub custom_key_store_id: Option<String>,
    /// A dry run.
    pub dry_run: bool,
    /// Step Functions status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// The phase in one word: the state the run is in while it runs, else how it ended.
    pub phase: String,
    /// The state machine state entered last.
    pub state: Option<String>,
    /// The ledger's `Phase` (last step that ran).
    pub ledger_phase: Option<String>,
    /// The ledger's `Outcome` (Succeeded, Cancelled, FAILED...).
    pub outcome: Option<String>,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Ticket.
    pub ticket_id: Option<String>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub stopped_at: Option<String>,
    /// Error name, if it failed.
    pub error: Option<String>,
    /// Cause, if it failed.
    pub cause: Option<String>,
    /// The keys the run recorded.
    pub keys: KeyCounts,
    /// The latest DeletionDate of the keys still pending (RFC 3339).
    pub latest_deletion_date: Option<String>,
    /// Seconds from now to it (negative: passed).
    pub seconds_until_deletion: Option<i64>,
    /// The approval, where the run needs one.
    pub approval: Option<Approval>,
    /// The quarantine, where the run has one.
    pub quarantine: Option<Quarantine>,
}

/// The keys a run recorded, by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyCounts {
    /// Recorded before their first change.
    pub recorded: u64,
    /// Scheduled for deletion by this run.
    pub scheduled: u64,
    /// Scheduled and not yet seen deleted nor restored.
    pub pending: u64,
    /// Seen deleted.
    pub deleted: u64,
    /// Restored by a cancel.
    pub restored: u64,
}

/// The approval gate's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Approval {
    /// `Requested` (waiting), `Approved`, or none yet.
    pub state: Option<String>,
    /// Who approved.
    pub approved_by: Option<String>,
}

/// The quarantine's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Quarantine {
    /// Its phase (docs/quarantine.md).
    pub phase: Option<String>,
    /// When it began (RFC 3339).
    pub started_at: Option<String>,
}

/// Counts the key records.
pub fn key_counts(keys: &[KeyRecord]) -> KeyCounts {
    let mut counts = KeyCounts {
        recorded: keys.len() as u64,
        ..KeyCounts::default()
    };
    for key in keys {
        if key.scheduled_at.is_some() {
            counts.scheduled += 1;
        }
        if key.seen_deleted_at.is_some() {
            counts.deleted += 1;
        } else if key.restored_at.is_some() {
            counts.restored += 1;
        } else if key.scheduled_at.is_some() {
            counts.pending += 1;
        }
    }
    counts
}

fn seconds_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl RunStatus {
    /// The status of `execution` with its ledger record and key records, at `now`.
    pub fn build(
        execution: &Execution,
        run: Option<&RunRecord>,
        keys: &[KeyRecord],
        now: SystemTime,
    ) -> Self {
        let pending_dates = keys
            .iter()
            .filter(|k| k.seen_deleted_at.is_none() && k.restored_at.is_none())
            .filter_map(|k| k.deletion_date);
        let latest = pending_dates.max();
        let phase = if execution.is_running() {
            execution
                .state
                .clone()
                .unwrap_or_else(|| "Starting".to_owned())
        } else if execution.status == "SUCCEEDED" {
            if execution.dry_run() {
                "DryRunComplete".to_owned()
            } else {
                "Decommissioned".to_owned()
            }
        } else if let Some(error) = &execution.error {
            error.clone()
        } else if run.and_then(|r| r.outcome.as_deref()) == Some("Cancelled") {
            "Cancelled".to_owned()
        } else {
            execution.status.clone()
        };
        let approval = run.and_then(|r| {
            (r.approval_required == Some(true) || r.approval_state.is_some()).then(|| Approval {
                state: r.approval_state.clone(),
                approved_by: r.approved_by.clone(),
            })
        });
        let quarantine = run.and_then(|r| {
            (r.quarantine_required == Some(true) || r.quarantine_phase.is_some()).then(|| {
                Quarantine {
                    phase: r.quarantine_phase.clone(),
                    started_at: r.quarantine_started_at.map(|t| t.to_string()),
                }
            })
        });
        Self {
            execution: execution.arn.clone(),
            execution_name: execution.name.clone(),
            custom_key_store_id: execution
                .store_id()
                .or_else(|| run.map(|r| r.store_id.clone())),
            dry_run: execution.dry_run(),
            status: execution.status.clone(),
            phase,
            state: execution.state.clone(),
            ledger_phase: run.map(|r| r.phase.clone()),
            outcome: run.and_then(|r| r.outcome.clone()),
            requested_by: run.and_then(|r| r.requested_by.clone()).or_else(|| {
                execution
                    .input
                    .as_ref()
                    .and_then(|i| i.get("RequestedBy")?.as_str().map(str::to_owned))
            }),
            ticket_id: run.and_then(|r| r.ticket_id.clone()),
            started_at: execution.started_at.clone(),
            stopped_at: execution.stopped_at.clone(),
            error: execution.error.clone(),
            cause: execution
                .cause
                .as_deref()
                .map(crate::aws::readable_cause)
                .or_else(|| {
                    let ended_badly = !execution.is_running() && execution.status != "SUCCEEDED";
                    run.and_then(|r| r.outcome_detail.clone())
                        .filter(|_| ended_badly)
                }),
            keys: key_counts(keys),
            latest_deletion_date: latest.map(|t| t.to_string()),
            seconds_until_deletion: latest.map(|t| seconds_between(now, t.time())),
            approval,
            quarantine,
        }
    }

    /// The run's end as an error (for a run that did not succeed): named by its error, else by
    /// its phase (`Cancelled`, `ABORTED`, ...).
    pub fn failure(&self) -> CliError {
        CliError::RunFailed {
            execution: self.execution.clone(),
            status: self.status.clone(),
            error: self.error.clone().unwrap_or_else(|| self.phase.clone()),
            cause: self.cause.clone().unwrap_or_default(),
        }
    }

    /// Whether the run waits for a second person.
    pub fn waits_for_approval(&self) -> bool {
        self.approval
            .as_ref()
            .is_some_and(|a| a.state.as_deref() == Some("Requested"))
    }
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedRun {
    /// The store.
    pub custom_key_store_id: String,
    /// Execution ARN.
    pub execution: String,
    /// Execution name (the ARN's last part).
    pub execution_name: String,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Ticket.
    pub ticket_id: Option<String>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// The ledger's `Phase`.
    pub phase: String,
    /// RUNNING, or how it ended (the ledger's `Outcome`, else Step Functions' status).
    pub status: String,
    /// Whether it holds the store's lock.
    pub holds_lock: bool,
}

impl ListedRun {
    /// A run record, with its execution's status when the ledger has no outcome.
    pub fn new(run: &RunRecord, execution_status: Option<&str>, holds_lock: bool) -> Self {
        Self {
            custom_key_store_id: run.store_id.clone(),
            execution: run.execution.clone(),
            execution_name: run
                .execution
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned(),
            requested_by: run.requested_by.clone(),
            ticket_id: run.ticket_id.clone(),
            started_at: run.started_at.to_string(),
            phase: run.phase.clone(),
            status: run
                .outcome
                .clone()
                .or_else(|| execution_status.map(str::to_owned))
                .unwrap_or_else(|| "UNKNOWN".to_owned()),
            holds_lock,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use kms_decommission::model::Timestamp;
    use serde_json::json;
    use std::time::Duration;

    pub fn at(seconds: u64) -> Timestamp {
        Timestamp::floor(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
    }

    pub fn key(n: u32, deletion: Option<u64>, deleted: bool, restored: bool) -> KeyRecord {
        KeyRecord {
            scheduled_at: deletion.map(|_| at(110)),
            deletion_date: deletion.map(at),
            seen_deleted_at: deleted.then(|| at(5000)),
            restored_at: restored.then(|| at(5000)),
            ..KeyRecord::new(
                &format!("arn:aws:kms:us-east-1:123456789012:key/k{n}"),
                &format!("k{n}"),
                "cks-1234567890abcdef0",
                "Enabled",
                at(100),
            )
        }
    }

    pub fn execution(status: &str, state: &str) -> Execution {
        Execution {
            arn: "arn:aws:states:us-east-1:123456789012:execution:kms-decommission:decom-1".into(),
            name: "decom-1".into(),
            status: status.into(),
            started_at: "1970-01-01T00:01:40Z".into(),
            stopped_at: None,
            input: Some(
                json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "RequestedBy": "alice"}),
            ),
            output: None,
            error: None,
            cause: None,
            state: Some(state.into()),
        }
    }

    pub fn run_record() -> RunRecord {
        RunRecord {
            execution: execution("RUNNING", "x").arn,
            store_id: "cks-1234567890abcdef0".into(),
            requested_by: Some("arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice".into()),
            ticket_id: Some("CHG-1".into()),
            input: "{}".into(),
            started_at: at(100),
            phase: "ScheduleKeyDeletion".into(),
            outcome: None,
            outcome_detail: None,
            ended_at: None,
            approval_required: Some(true),
            approval_state: Some("Approved".into()),
            approval_token: None,
            approved_by: Some("arn:aws:sts::123456789012:assumed-role/KeyAdmin/bob".into()),
            quarantine_required: Some(false),
            quarantine_phase: None,
            quarantine_started_at: None,
        }
    }

    #[test]
    fn keys_are_counted_by_what_became_of_them() {
        let keys = [
            key(1, Some(1000), false, false),
            key(2, Some(2000), true, false),
            key(3, Some(3000), false, true),
            key(4, None, false, false),
        ];
        assert_eq!(
            key_counts(&keys),
            KeyCounts {
                recorded: 4,
                scheduled: 3,
                pending: 1,
                deleted: 1,
                restored: 1
            }
        );
    }

    #[test]
    fn the_countdown_is_to_the_latest_date_of_the_keys_still_pending() {
        let keys = [
            key(1, Some(1000), false, false),
            key(2, Some(9000), true, false),
        ];
        let now = at(400).time();
        let status = RunStatus::build(
            &execution("RUNNING", "WaitForDeletionDate"),
            Some(&run_record()),
            &keys,
            now,
        );
        assert_eq!(status.phase, "WaitForDeletionDate");
        assert_eq!(
            status.latest_deletion_date.as_deref(),
            Some("1970-01-01T00:16:40Z")
        );
        assert_eq!(status.seconds_until_deletion, Some(600));
        assert_eq!(
            status.approval.as_ref().and_then(|a| a.state.as_deref()),
            Some("Approved")
        );
        assert_eq!(status.quarantine, None);
        assert!(!status.waits_for_approval());
    }

    #[test]
    fn an_ended_run_is_named_by_its_end() {
        let mut failed = execution("FAILED", "PlanDecommission");
        failed.error = Some("KeysRecentlyUsed".into());
        assert_eq!(
            RunStatus::build(&failed, None, &[], at(0).time()).phase,
            "KeysRecentlyUsed"
        );
        let done = execution("SUCCEEDED", "Decommissioned");
        assert_eq!(
            RunStatus::build(&done, None, &[], at(0).time()).phase,
            "Decommissioned"
        );
    }

    #[test]
    fn the_json_field_names_are_stable() {
        let status = RunStatus::build(
            &execution("RUNNING", "WaitForApproval"),
            Some(&RunRecord {
                approval_state: Some("Requested".into()),
                approved_by: None,
                ..run_record()
            }),
            &[],
            at(0).time(),
        );
        assert!(status.waits_for_approval());
        let value = serde_json::to_value(&status).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "Execution",
            "ExecutionName",
            "CustomKeyStoreId",
            "DryRun",
            "Status",
            "Phase",
            "State",
            "LedgerPhase",
            "Outcome",
            "RequestedBy",
            "TicketId",
            "StartedAt",
            "StoppedAt",
            "Error",
            "Cause",
            "Keys",
            "LatestDeletionDate",
            "SecondsUntilDeletion",
            "Approval",
            "Quarantine",
        ];
        fields.sort_unstable();
        expected.sort_unstable();
        assert_eq!(fields, expected);
        assert_eq!(
            value["Keys"],
            json!({"Recorded": 0, "Scheduled": 0, "Pending": 0, "Deleted": 0, "Restored": 0})
        );
        assert_eq!(
            value["Approval"],
            json!({"State": "Requested", "ApprovedBy": null})
        );
    }
}
