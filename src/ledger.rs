//! The run ledger (DynamoDB): the source of truth for what a run did and may undo.
//!
//! One table, partition key `pk`, sort key `sk` (both strings), three kinds of item:
//! - the **store lock** `STORE#<store id>` / `LOCK`: the one real decommission that may change
//!   the store, taken with a conditional write before anything changes;
//! - one **run record** per real decommission `STORE#<store id>` / `RUN#<execution ARN>`:
//!   store, requester, ticket, input, phase, outcome (a query on the store lists its lock and
//!   every run it had);
//! - one **key record** per key the run is about to change `RUN#<execution ARN>` /
//!   `KEY#<key ARN>`: the key's state before this run (read from KMS by the run itself, never
//!   from tags), its last use at the time, when it was scheduled, its DeletionDate, when it was
//!   seen deleted, when a cancel restored it.
//!
//! Records are never deleted by the workflow (no TTL): auditors read them after the keys are
//! gone (`docs/ledger.md`). Every write that could race is conditional; a re-run after a crash
//! finds its earlier writes and converges.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::aws_error::AwsCallError;
use crate::config::ConfigError;
use crate::error::DecommissionError;
use crate::model::Timestamp;

/// `ApprovalState` of a run that waits for approval.
pub const APPROVAL_REQUESTED: &str = "Requested";
/// `ApprovalState` of an approved run.
pub const APPROVAL_APPROVED: &str = "Approved";

/// Environment variable naming the ledger table.
pub const LEDGER_TABLE_ENV: &str = "LEDGER_TABLE";

type Item = HashMap<String, AttributeValue>;

/// Who holds a store's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The decommission execution holding it.
    pub execution: String,
    /// When it took it.
    pub taken_at: Timestamp,
}

/// What taking a store's lock gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// This run holds the lock (taken now or earlier).
    Held,
    /// Another run holds it.
    HeldBy(LockHolder),
}

/// One run of a decommission (`STORE#` / `RUN#` item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The decommission execution.
    pub execution: String,
    /// The store.
    pub store_id: String,
    /// Who asked (input `RequestedBy`).
    pub requested_by: Option<String>,
    /// Ticket id (input `TicketId`).
    pub ticket_id: Option<String>,
    /// The execution input as Step Functions holds it (JSON text).
    pub input: String,
    /// When the run took the lock.
    pub started_at: Timestamp,
    /// The last step that ran (`plan-decommission`, ...).
    pub phase: String,
    /// How the run ended (`Succeeded`, `Cancelled`, `FAILED`, `ABORTED`, `TIMED_OUT`), once known.
    pub outcome: Option<String>,
    /// What ended it (error name and cause, the cancel execution, ...).
    pub outcome_detail: Option<String>,
    /// When its end was recorded.
    pub ended_at: Option<Timestamp>,
    /// Whether the run needs a second person's approval (known once its plan is done).
    pub approval_required: Option<bool>,
    /// `Requested` while the run waits for approval, `Approved` once recorded.
    pub approval_state: Option<String>,
    /// The task token the state machine waits on while `Requested`.
    pub approval_token: Option<String>,
    /// Who approved.
    pub approved_by: Option<String>,
    /// Whether the run quarantines its store (known once its plan is done).
    pub quarantine_required: Option<bool>,
    /// Where the quarantine stands (`Disconnecting`, `Watching`, `Reconnecting`, `Done`), as
    /// quarantine-store last recorded it.
    pub quarantine_phase: Option<String>,
    /// When the quarantine's window began (the store was disconnected).
    pub quarantine_started_at: Option<Timestamp>,
}

/// The quarantine's whole progress as quarantine-store keeps it in the run's record: the only
/// copy it trusts (the state document carries a copy for the state machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// The progress (the state document's `Quarantine` section, as JSON).
    pub json: String,
    /// Its phase, readable by the later steps without parsing `json`.
    pub phase: String,
    /// When the window began, once it has.
    pub started_at: Option<Timestamp>,
    /// Incremented by every write: a write names the version it read.
    pub version: u64,
}

/// What the ledger knows of one key of a run (`RUN#` / `KEY#` item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Key ARN.
    pub key_arn: String,
    /// Key id.
    pub key_id: String,
    /// The store.
    pub store_id: String,
    /// The key state this run read from KMS before its first change to the key.
    pub prior_state: String,
    /// When the record was written (before the first change).
    pub recorded_at: Timestamp,
    /// The key's last use as GetKeyLastUsage told it then (when the guard asked).
    pub last_use: Option<String>,
    /// When ScheduleKeyDeletion succeeded for this run.
    pub scheduled_at: Option<Timestamp>,
    /// The DeletionDate KMS gave.
    pub deletion_date: Option<Timestamp>,
    /// When the run first found the key gone (deleted by KMS).
    pub seen_deleted_at: Option<Timestamp>,
    /// When a cancel restored the key.
    pub restored_at: Option<Timestamp>,
    /// The key state a cancel left.
    pub state_after_restore: Option<String>,
    /// Marker tags found on the key that disagree with this record (someone else wrote them).
    pub marker_note: Option<String>,
    /// CloudHSM keys: what KMS's `DeleteKey` event says of the key material in the cluster
    /// (`Deleted`, `Orphaned`, `Unknown`), once the run has read it.
    pub key_material: Option<String>,
    /// The key handles and backing key ids of that event, and its CloudTrail event id.
    pub key_material_detail: Option<String>,
}

impl KeyRecord {
    /// A fresh record of `key_arn` in state `prior_state`, written at `now`.
    pub fn new(
        key_arn: &str,
        key_id: &str,
        store_id: &str,
        prior_state: &str,
        now: Timestamp,
    ) -> Self {
        Self {
            key_arn: key_arn.to_owned(),
            key_id: key_id.to_owned(),
            store_id: store_id.to_owned(),
            prior_state: prior_state.to_owned(),
            recorded_at: now,
            last_use: None,
            scheduled_at: None,
            deletion_date: None,
            seen_deleted_at: None,
            restored_at: None,
            state_after_restore: None,
            marker_note: None,
            key_material: None,
            key_material_detail: None,
        }
    }
}

/// One page of a run's key records and where the next starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRecordPage {
    /// The records, in key ARN order.
    pub records: Vec<KeyRecord>,
    /// The sort key to resume after; `None` after the last page.
    pub next: Option<String>,
}

/// The ledger table: see the module documentation.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
}

/// Partition key of a store's lock and run records (`STORE#<store id>`).
pub fn store_pk(store_id: &str) -> String {
    format!("STORE#{store_id}")
}

/// Sort key of a run's record under its store, and partition key of its key records
/// (`RUN#<execution ARN>`).
pub fn run_pk(execution: &str) -> String {
    format!("RUN#{execution}")
}

fn key_sk(key_arn: &str) -> String {
    format!("KEY#{key_arn}")
}

const LOCK_SK: &str = "LOCK";

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn ts(value: Timestamp) -> AttributeValue {
    s(value.to_string())
}

impl Ledger {
    /// The ledger in `table`, through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A client from `sdk` on the table named by [`LEDGER_TABLE_ENV`], read through `var`.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let table = var(LEDGER_TABLE_ENV)
            .filter(|t| !t.trim().is_empty())
            .ok_or(ConfigError::Missing(LEDGER_TABLE_ENV))?;
        Ok(Self::new(Client::new(sdk), table.trim()))
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Takes the lock of `store_id` for `execution`, unless another run holds it. Holding it
    /// already is success (a re-run of the same step).
    pub async fn take_lock(
        &self,
        store_id: &str,
        execution: &str,
        now: Timestamp,
    ) -> Result<LockOutcome, DecommissionError> {
        self.put_lock(
            store_id,
            execution,
            now,
            "attribute_not_exists(pk) OR Execution = :me",
            None,
        )
        .await
    }

    /// Takes the lock of `store_id` over from `previous` (a run found no longer running), for
    /// `execution`; `HeldBy` when someone else changed it first.
    pub async fn take_over_lock(
        &self,
        store_id: &str,
        previous: &str,
        execution: &str,
        now: Timestamp,
    ) -> Result<LockOutcome, DecommissionError> {
        self.put_lock(
            store_id,
            execution,
            now,
            "attribute_not_exists(pk) OR Execution = :previous OR Execution = :me",
            Some(previous),
        )
        .await
    }

    async fn put_lock(
        &self,
        store_id: &str,
        execution: &str,
        now: Timestamp,
        condition: &str,
        previous: Option<&str>,
    ) -> Result<LockOutcome, DecommissionError> {
        let mut values = HashMap::from([(":me".to_owned(), s(execution))]);
        if let Some(previous) = previous {
            values.insert(":previous".to_owned(), s(previous));
        }
        // A lock released between the failed write and the read is tried again (twice at most).
        for _ in 0..3 {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(store_pk(store_id)))
                .item("sk", s(LOCK_SK))
                .item("Execution", s(execution))
                .item("CustomKeyStoreId", s(store_id))
                .item("TakenAt", ts(now))
                .condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(LockOutcome::Held),
                Err(err) if is_condition_failed(&err) => match self.lock_holder(store_id).await? {
                    Some(holder) if holder.execution == execution => return Ok(LockOutcome::Held),
                    Some(holder) => return Ok(LockOutcome::HeldBy(holder)),
                    None => continue,
                },
                Err(err) => return Err(ledger_error("PutItem", err)),
            }
        }
        Err(DecommissionError::LedgerUnavailable {
            operation: "PutItem",
            code: "ConditionalCheckFailedException".into(),
            message: format!(
                "the lock of store {store_id} kept changing while it was taken; retry"
            ),
        })
    }

    /// Who holds the lock of `store_id` (a strongly consistent read).
    pub async fn lock_holder(
        &self,
        store_id: &str,
    ) -> Result<Option<LockHolder>, DecommissionError> {
        let item = self.get(store_pk(store_id), LOCK_SK.to_owned()).await?;
        item.map(|item| {
            Ok(LockHolder {
                execution: required(&item, "Execution")?,
                taken_at: required_time(&item, "TakenAt")?,
            })
        })
        .transpose()
    }

    /// Releases the lock of `store_id` if `execution` holds it; a lock held by another run (or
    /// none) is left as it is.
    pub async fn release_lock(
        &self,
        store_id: &str,
        execution: &str,
    ) -> Result<(), DecommissionError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(store_pk(store_id)))
            .key("sk", s(LOCK_SK))
            .condition_expression("Execution = :me")
            .expression_attribute_values(":me", s(execution))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failed(&err) => Ok(()),
            Err(err) => Err(ledger_error("DeleteItem", err)),
        }
    }

    /// Writes the record of a run unless it exists (the first one written stays).
    pub async fn record_run(&self, run: &RunRecord) -> Result<(), DecommissionError> {
        let mut item = Item::from([
            ("pk".to_owned(), s(store_pk(&run.store_id))),
            ("sk".to_owned(), s(run_pk(&run.execution))),
            ("Execution".to_owned(), s(&run.execution)),
            ("CustomKeyStoreId".to_owned(), s(&run.store_id)),
            ("Input".to_owned(), s(&run.input)),
            ("StartedAt".to_owned(), ts(run.started_at)),
            ("Phase".to_owned(), s(&run.phase)),
            ("UpdatedAt".to_owned(), ts(run.started_at)),
        ]);
        if let Some(by) = &run.requested_by {
            item.insert("RequestedBy".into(), s(by));
        }
        if let Some(ticket) = &run.ticket_id {
            item.insert("TicketId".into(), s(ticket));
        }
        self.put_if_absent(item).await.map(|_| ())
    }

    /// Writes `item` unless an item with its key exists; `false` when one did (nothing written).
    async fn put_if_absent(&self, item: Item) -> Result<bool, DecommissionError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failed(&err) => Ok(false),
            Err(err) => Err(ledger_error("PutItem", err)),
        }
    }

    /// The record of run `execution` of `store_id`.
    pub async fn run_record(
        &self,
        store_id: &str,
        execution: &str,
    ) -> Result<Option<RunRecord>, DecommissionError> {
        let item = self.get(store_pk(store_id), run_pk(execution)).await?;
        item.as_ref().map(run_record_from).transpose()
    }

    /// Records the step a run is in.
    pub async fn set_phase(
        &self,
        store_id: &str,
        execution: &str,
        phase: &str,
        now: Timestamp,
    ) -> Result<(), DecommissionError> {
        self.update_run(
            store_id,
            execution,
            "SET Phase = :phase, UpdatedAt = :now",
            vec![(":phase", s(phase)), (":now", ts(now))],
        )
        .await
    }

    /// Records, once its plan is done, whether the run needs approval and whether it
    /// quarantines its store: the gates the later steps require the ledger to show passed.
    pub async fn set_plan_gates(
        &self,
        store_id: &str,
        execution: &str,
        approval_required: bool,
        quarantine_required: bool,
        now: Timestamp,
    ) -> Result<(), DecommissionError> {
        let flag = |b: bool| s(if b { "true" } else { "false" });
        self.update_run(
            store_id,
            execution,
            "SET ApprovalRequired = :approval, QuarantineRequired = :quarantine, UpdatedAt = :now",
            vec![
                (":approval", flag(approval_required)),
                (":quarantine", flag(quarantine_required)),
                (":now", ts(now)),
            ],
        )
        .await
    }

    /// The quarantine's progress as quarantine-store last recorded it; `None` before its first
    /// record.
    pub async fn quarantine(
        &self,
        store_id: &str,
        execution: &str,
    ) -> Result<Option<QuarantineRecord>, DecommissionError> {
        let Some(item) = self.get(store_pk(store_id), run_pk(execution)).await? else {
            return Err(DecommissionError::invalid_state(format!(
                "the ledger has no record of run {execution} of store {store_id}"
            )));
        };
        let Some(json) = optional(&item, "Quarantine") else {
            return Ok(None);
        };
        let version = required(&item, "QuarantineVersion")?
            .parse()
            .map_err(|_| unreadable("GetItem", "QuarantineVersion"))?;
        Ok(Some(QuarantineRecord {
            json,
            phase: required(&item, "QuarantinePhase")?,
            started_at: optional_time(&item, "QuarantineStartedAt")?,
            version,
        }))
    }

    /// Writes the quarantine's progress as version `record.version`, provided the ledger
    /// still holds version `record.version - 1` (none at all for version 1); `false` when it
    /// does not (another invocation wrote first: nothing written). The window's start is
    /// written once.
    pub async fn save_quarantine(
        &self,
        store_id: &str,
        execution: &str,
        record: &QuarantineRecord,
        now: Timestamp,
    ) -> Result<bool, DecommissionError> {
        let mut values = vec![
            (":json", s(&record.json)),
            (":phase", s(&record.phase)),
            (":version", s(record.version.to_string())),
            (":now", ts(now)),
        ];
        let condition = if record.version <= 1 {
            "attribute_exists(pk) AND attribute_not_exists(QuarantineVersion)"
        } else {
            values.push((":read", s((record.version - 1).to_string())));
            "attribute_exists(pk) AND QuarantineVersion = :read"
        };
        let mut expression = "SET Quarantine = :json, QuarantinePhase = :phase, \
             QuarantineVersion = :version, UpdatedAt = :now"
            .to_owned();
        if let Some(started) = record.started_at {
            expression
                .push_str(", QuarantineStartedAt = if_not_exists(QuarantineStartedAt, :started)");
            values.push((":started", ts(started)));
        }
        self.update(
            (store_pk(store_id), run_pk(execution)),
            &expression,
            condition,
            values,
        )
        .await
    }

    /// Records that the run waits for approval on `token` (what the approver sees in
    /// `summary`); `false` when the ledger has no such run waiting (no record, approved
    /// already, or, unless `replace_earlier`, another token recorded).
    pub async fn request_approval(
        &self,
        store_id: &str,
        execution: &str,
        token: &str,
        summary: &str,
        replace_earlier: bool,
        now: Timestamp,
    ) -> Result<bool, DecommissionError> {
        // A token the run's history vouches for replaces an earlier attempt's; one it cannot
        // vouch for is written once and never replaced.
        let condition = if replace_earlier {
            "attribute_exists(pk) AND (attribute_not_exists(ApprovalState) OR ApprovalState = :requested)"
        } else {
            "attribute_exists(pk) AND (attribute_not_exists(ApprovalState) OR \
             (ApprovalState = :requested AND ApprovalToken = :token))"
        };
        let waiting = self
            .update(
                (store_pk(store_id), run_pk(execution)),
                "SET ApprovalState = :requested, ApprovalToken = :token, \
                 ApprovalRequestedAt = :now, ApprovalSummary = :summary, UpdatedAt = :now",
                condition,
                vec![
                    (":requested", s(APPROVAL_REQUESTED)),
                    (":token", s(token)),
                    (":summary", s(summary)),
                    (":now", ts(now)),
                ],
            )
            .await?;
        Ok(waiting)
    }

    /// Records the approval of a run that waits for it; `false` when it was not waiting
    /// (approved already, or never asked).
    pub async fn record_approval(
        &self,
        store_id: &str,
        execution: &str,
        approver: &str,
        via: &str,
        now: Timestamp,
    ) -> Result<bool, DecommissionError> {
        self.update(
            (store_pk(store_id), run_pk(execution)),
            "SET ApprovalState = :approved, ApprovedBy = :approver, ApprovedVia = :via, \
             ApprovedAt = :now, UpdatedAt = :now REMOVE ApprovalToken",
            "ApprovalState = :requested",
            vec![
                (":approved", s(APPROVAL_APPROVED)),
                (":requested", s(APPROVAL_REQUESTED)),
                (":approver", s(approver)),
                (":via", s(via)),
                (":now", ts(now)),
            ],
        )
        .await
    }

    /// Records how a run ended; the first outcome recorded stays.
    pub async fn set_outcome(
        &self,
        store_id: &str,
        execution: &str,
        outcome: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<(), DecommissionError> {
        self.update(
            (store_pk(store_id), run_pk(execution)),
            "SET Outcome = :outcome, OutcomeDetail = :detail, EndedAt = :now, UpdatedAt = :now",
            "attribute_exists(pk) AND attribute_not_exists(Outcome)",
            vec![
                (":outcome", s(outcome)),
                (":detail", s(detail)),
                (":now", ts(now)),
            ],
        )
        .await
        .map(|_| ())
    }

    /// One conditional UpdateItem: `Ok(false)` when the condition does not hold (nothing
    /// written).
    async fn update(
        &self,
        (pk, sk): (String, String),
        expression: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, DecommissionError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(
                values
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failed(&err) => Ok(false),
            Err(err) => Err(ledger_error("UpdateItem", err)),
        }
    }

    /// Updates an item that must exist (`what` names it in the error when it does not).
    async fn update_existing(
        &self,
        key: (String, String),
        what: impl FnOnce() -> String,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), DecommissionError> {
        if self
            .update(key, expression, "attribute_exists(pk)", values)
            .await?
        {
            Ok(())
        } else {
            Err(DecommissionError::invalid_state(format!(
                "the ledger has no record of {}",
                what()
            )))
        }
    }

    async fn update_run(
        &self,
        store_id: &str,
        execution: &str,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), DecommissionError> {
        let what = || format!("run {execution} of store {store_id}");
        let key = (store_pk(store_id), run_pk(execution));
        self.update_existing(key, what, expression, values).await
    }

    /// Writes `record` for run `execution` unless the run already has a record of that key, and
    /// returns the record the ledger holds (the first one written: a re-run keeps the prior
    /// state read before its first change).
    pub async fn record_key(
        &self,
        execution: &str,
        record: &KeyRecord,
    ) -> Result<KeyRecord, DecommissionError> {
        let mut item = Item::from([
            ("pk".to_owned(), s(run_pk(execution))),
            ("sk".to_owned(), s(key_sk(&record.key_arn))),
            ("KeyArn".to_owned(), s(&record.key_arn)),
            ("KeyId".to_owned(), s(&record.key_id)),
            ("CustomKeyStoreId".to_owned(), s(&record.store_id)),
            ("Execution".to_owned(), s(execution)),
            ("PriorState".to_owned(), s(&record.prior_state)),
            ("RecordedAt".to_owned(), ts(record.recorded_at)),
        ]);
        if let Some(last_use) = &record.last_use {
            item.insert("LastUse".into(), s(last_use));
        }
        if let Some(note) = &record.marker_note {
            item.insert("MarkerNote".into(), s(note));
        }
        if self.put_if_absent(item).await? {
            return Ok(record.clone());
        }
        self.key_record(execution, &record.key_arn)
            .await?
            .ok_or_else(|| DecommissionError::LedgerUnavailable {
                operation: "PutItem",
                code: "ConditionalCheckFailedException".into(),
                message: format!(
                    "the record of key {} exists but cannot be read",
                    record.key_arn
                ),
            })
    }

    /// The record of `key_arn` in run `execution`.
    pub async fn key_record(
        &self,
        execution: &str,
        key_arn: &str,
    ) -> Result<Option<KeyRecord>, DecommissionError> {
        self.get(run_pk(execution), key_sk(key_arn))
            .await?
            .map(|item| key_record_from(&item))
            .transpose()
    }

    /// Records that ScheduleKeyDeletion succeeded for the key (the first time stays).
    pub async fn mark_scheduled(
        &self,
        execution: &str,
        key_arn: &str,
        now: Timestamp,
        deletion_date: Option<Timestamp>,
    ) -> Result<(), DecommissionError> {
        let mut expression = "SET ScheduledAt = if_not_exists(ScheduledAt, :now)".to_owned();
        let mut values = vec![(":now", ts(now))];
        if let Some(date) = deletion_date {
            expression.push_str(", DeletionDate = :date");
            values.push((":date", ts(date)));
        }
        self.update_key(execution, key_arn, &expression, values)
            .await
    }

    /// Records that the key was found deleted (the first time stays).
    pub async fn mark_seen_deleted(
        &self,
        execution: &str,
        key_arn: &str,
        now: Timestamp,
    ) -> Result<(), DecommissionError> {
        self.update_key(
            execution,
            key_arn,
            "SET SeenDeletedAt = if_not_exists(SeenDeletedAt, :now)",
            vec![(":now", ts(now))],
        )
        .await
    }

    /// Records what KMS's `DeleteKey` event says of the key's material (`status`, `detail`);
    /// `false` when run `execution` has no record of the key (it was pending deletion before
    /// the run, or is another store's).
    pub async fn record_key_material(
        &self,
        execution: &str,
        key_arn: &str,
        status: &str,
        detail: &str,
    ) -> Result<bool, DecommissionError> {
        self.update(
            (run_pk(execution), key_sk(key_arn)),
            "SET KeyMaterial = :status, KeyMaterialDetail = :detail",
            "attribute_exists(pk)",
            vec![(":status", s(status)), (":detail", s(detail))],
        )
        .await
    }

    /// Records that a cancel restored the key (the latest restore), leaving it in `state`.
    pub async fn mark_restored(
        &self,
        execution: &str,
        key_arn: &str,
        state: &str,
        now: Timestamp,
    ) -> Result<(), DecommissionError> {
        self.update_key(
            execution,
            key_arn,
            "SET RestoredAt = :now, StateAfterRestore = :state",
            vec![(":now", ts(now)), (":state", s(state))],
        )
        .await
    }

    async fn update_key(
        &self,
        execution: &str,
        key_arn: &str,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), DecommissionError> {
        let what = || format!("key {key_arn} in run {execution}");
        let key = (run_pk(execution), key_sk(key_arn));
        self.update_existing(key, what, expression, values).await
    }

    /// One page (at most `limit`) of the key records of run `execution`, after `after` (a sort
    /// key from the previous page).
    pub async fn key_records(
        &self,
        execution: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<KeyRecordPage, DecommissionError> {
        let start = after.map(|sk| {
            HashMap::from([
                ("pk".to_owned(), s(run_pk(execution))),
                ("sk".to_owned(), s(sk)),
            ])
        });
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :key)")
            .expression_attribute_values(":pk", s(run_pk(execution)))
            .expression_attribute_values(":key", s("KEY#"))
            .consistent_read(true)
            .limit(limit.max(1))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|err| ledger_error("Query", err))?;
        let records = page
            .items()
            .iter()
            .map(key_record_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match page.last_evaluated_key() {
            Some(key) => Some(
                key.get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .ok_or_else(|| unreadable("Query", "a LastEvaluatedKey without sk"))?,
            ),
            None => None,
        };
        Ok(KeyRecordPage { records, next })
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>, DecommissionError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| ledger_error("GetItem", err))?;
        Ok(answer.item)
    }
}

/// Reads a run record item (`STORE#` / `RUN#`) as [`Ledger::run_record`] does. Public for the
/// operator's command line, which lists runs with its own `Query` and `Scan`: the functions never
/// scan the ledger, and only the calls in this module are granted to them.
pub fn run_record_from(item: &Item) -> Result<RunRecord, DecommissionError> {
    Ok(RunRecord {
        execution: required(item, "Execution")?,
        store_id: required(item, "CustomKeyStoreId")?,
        requested_by: optional(item, "RequestedBy"),
        ticket_id: optional(item, "TicketId"),
        input: required(item, "Input")?,
        started_at: required_time(item, "StartedAt")?,
        phase: required(item, "Phase")?,
        outcome: optional(item, "Outcome"),
        outcome_detail: optional(item, "OutcomeDetail"),
        ended_at: optional_time(item, "EndedAt")?,
        approval_required: optional(item, "ApprovalRequired").map(|v| v == "true"),
        approval_state: optional(item, "ApprovalState"),
        approval_token: optional(item, "ApprovalToken"),
        approved_by: optional(item, "ApprovedBy"),
        quarantine_required: optional(item, "QuarantineRequired").map(|v| v == "true"),
        quarantine_phase: optional(item, "QuarantinePhase"),
        quarantine_started_at: optional_time(item, "QuarantineStartedAt")?,
    })
}

fn key_record_from(item: &Item) -> Result<KeyRecord, DecommissionError> {
    Ok(KeyRecord {
        key_arn: required(item, "KeyArn")?,
        key_id: required(item, "KeyId")?,
        store_id: required(item, "CustomKeyStoreId")?,
        prior_state: required(item, "PriorState")?,
        recorded_at: required_time(item, "RecordedAt")?,
        last_use: optional(item, "LastUse"),
        scheduled_at: optional_time(item, "ScheduledAt")?,
        deletion_date: optional_time(item, "DeletionDate")?,
        seen_deleted_at: optional_time(item, "SeenDeletedAt")?,
        restored_at: optional_time(item, "RestoredAt")?,
        state_after_restore: optional(item, "StateAfterRestore"),
        marker_note: optional(item, "MarkerNote"),
        key_material: optional(item, "KeyMaterial"),
        key_material_detail: optional(item, "KeyMaterialDetail"),
    })
}

fn optional(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn required(item: &Item, name: &str) -> Result<String, DecommissionError> {
    optional(item, name).ok_or_else(|| unreadable("GetItem", &format!("an item without {name}")))
}

fn optional_time(item: &Item, name: &str) -> Result<Option<Timestamp>, DecommissionError> {
    optional(item, name)
        .map(|text| {
            Timestamp::parse(&text)
                .map_err(|e| unreadable("GetItem", &format!("{name} {text:?} is not a time: {e}")))
        })
        .transpose()
}

fn required_time(item: &Item, name: &str) -> Result<Timestamp, DecommissionError> {
    optional_time(item, name)?
        .ok_or_else(|| unreadable("GetItem", &format!("an item without {name}")))
}

fn unreadable(operation: &'static str, what: &str) -> DecommissionError {
    DecommissionError::LedgerUnavailable {
        operation,
        code: "UnreadableLedgerItem".into(),
        message: format!("the ledger answered {what}; was the table written by something else?"),
    }
}

fn is_condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

fn ledger_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> DecommissionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let call = AwsCallError::new(operation, err);
    DecommissionError::LedgerUnavailable {
        operation,
        code: call.code,
        message: call.message,
    }
}
