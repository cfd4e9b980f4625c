//! The keys of the target store: the proof that a key belongs to it, the markers kept on each
//! key for people (never read to decide anything), and scheduling its deletion with its record
//! in the run ledger.
//!
//! A key can be mutated only through a [`StoreKey`], which can only be built from DescribeKey
//! metadata showing a customer managed key of the target store: nothing outside the named store
//! is ever changed.

use std::time::SystemTime;

use aws_sdk_kms::types::{KeyMetadata, KeyState, Tag};

use crate::clock::from_kms;
use crate::error::{DecommissionError, KmsErrorCode};
use crate::kms::Kms;
use crate::ledger::{KeyRecord, Ledger};
use crate::model::{KeySample, StoreSummary, StoreType, Timestamp};

/// Tag key of the marker naming the execution that scheduled the key.
pub const MARKER_EXECUTION: &str = "kms-decommission:execution";
/// Tag key of the marker holding the key state before scheduling.
pub const MARKER_PRIOR_STATE: &str = "kms-decommission:prior-state";
/// Tag key of the marker holding the ticket id, when the request gave one.
pub const MARKER_TICKET: &str = "kms-decommission:ticket";
/// Key states a key can be scheduled from (and restored to by a cancel).
pub const SCHEDULABLE_STATES: [KeyState; 3] =
    [KeyState::Enabled, KeyState::Disabled, KeyState::Unavailable];
/// Longest KMS tag value.
const MAX_TAG_VALUE_CHARS: usize = 256;

/// The store whose keys may be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStore {
    id: String,
    store_type: StoreType,
}

impl TargetStore {
    /// The store described by `store`.
    pub fn new(store: &StoreSummary) -> Self {
        Self {
            id: store.custom_key_store_id.clone(),
            store_type: store.custom_key_store_type,
        }
    }

    /// The store id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A customer managed key of the target store, as DescribeKey showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKey {
    key_id: String,
    arn: String,
    state: KeyState,
    deletion_date: Option<SystemTime>,
    xks_key_id: Option<String>,
    creation_date: Option<SystemTime>,
}

impl StoreKey {
    /// The key, if `metadata` shows a customer managed key of `target` with the origin of its
    /// store type; `None` for every other key (another store, AWS_KMS, AWS managed, ...).
    pub fn from_metadata(metadata: &KeyMetadata, target: &TargetStore) -> Option<Self> {
        let in_store = metadata.custom_key_store_id() == Some(target.id.as_str());
        let customer_managed = metadata
            .key_manager()
            .is_some_and(|m| m.as_str() == "CUSTOMER");
        let origin_matches = metadata
            .origin()
            .is_some_and(|o| o.as_str() == target.store_type.key_origin());
        if !(in_store && customer_managed && origin_matches) {
            if in_store {
                tracing::warn!(
                    key_id = metadata.key_id(),
                    custom_key_store_id = target.id.as_str(),
                    "key names the store but is not a customer managed key of its type; left alone"
                );
            }
            return None;
        }
        let key_id = metadata.key_id().to_string();
        Some(Self {
            arn: metadata
                .arn()
                .map_or_else(|| key_id.clone(), str::to_string),
            key_id,
            state: metadata
                .key_state()
                .cloned()
                .unwrap_or_else(|| KeyState::from("Unknown")),
            deletion_date: metadata.deletion_date().map(from_kms),
            creation_date: metadata.creation_date().map(from_kms),
            xks_key_id: metadata
                .xks_key_configuration()
                .and_then(|x| x.id())
                .map(str::to_string),
        })
    }

    /// Key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Key ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Key state when described.
    pub fn state(&self) -> &KeyState {
        &self.state
    }

    /// Whether the key is pending deletion.
    pub fn is_pending_deletion(&self) -> bool {
        self.state == KeyState::PendingDeletion
    }

    /// DeletionDate (pending keys).
    pub fn deletion_date(&self) -> Option<SystemTime> {
        self.deletion_date
    }

    /// When the key was created.
    pub fn creation_date(&self) -> Option<SystemTime> {
        self.creation_date
    }

    /// External key id (external key stores).
    pub fn xks_key_id(&self) -> Option<&str> {
        self.xks_key_id.as_deref()
    }

    /// The key as a state-document sample.
    pub fn sample(&self) -> KeySample {
        KeySample {
            key_id: self.key_id.clone(),
            arn: self.arn.clone(),
            key_state: self.state.clone(),
            xks_key_id: self.xks_key_id.clone(),
            deletion_date: self.deletion_date.map(Timestamp::ceil),
        }
    }
}

/// The markers found on a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    /// Execution ARN that scheduled (or is scheduling) the key.
    pub execution: Option<String>,
    /// Key state before scheduling.
    pub prior_state: Option<String>,
    /// Ticket id.
    pub ticket: Option<String>,
}

impl Markers {
    /// Reads the markers among a key's tags.
    pub fn from_tags(tags: &[Tag]) -> Self {
        let find = |key: &str| {
            tags.iter()
                .find(|t| t.tag_key() == key)
                .map(|t| t.tag_value().to_string())
        };
        Self {
            execution: find(MARKER_EXECUTION),
            prior_state: find(MARKER_PRIOR_STATE),
            ticket: find(MARKER_TICKET),
        }
    }

    /// What in these markers disagrees with what run `execution` read from KMS (`state`): a
    /// marker naming another execution, or a prior state that is not the key's. `None` when the
    /// key carries no markers or only this run's own, consistent ones.
    pub fn disagreement(&self, execution: &str, state: &KeyState) -> Option<String> {
        let mut notes = Vec::new();
        if let Some(other) = self.execution.as_deref().filter(|e| *e != execution) {
            notes.push(format!("{MARKER_EXECUTION}={other}"));
        }
        if let Some(prior) = self.prior_state.as_deref().filter(|p| *p != state.as_str()) {
            notes.push(format!(
                "{MARKER_PRIOR_STATE}={prior} while KMS showed {}",
                state.as_str()
            ));
        }
        (!notes.is_empty()).then(|| notes.join(", "))
    }
}

/// The run a key is changed for: its execution, its ticket, its ledger.
#[derive(Debug, Clone, Copy)]
pub struct MarkerContext<'a> {
    /// The run ledger, where the key's record is written before its first change.
    pub ledger: &'a Ledger,
    /// Execution ARN.
    pub execution: &'a str,
    /// Ticket id, when given.
    pub ticket: Option<&'a str>,
    /// Store id (for logs).
    pub store_id: &'a str,
}

/// What became of one key in the scheduling step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Pending deletion, scheduled by this run (its ledger holds the key's record).
    ScheduledByThisExecution {
        /// DeletionDate.
        deletion_date: Option<SystemTime>,
        /// Marker tags found on the key that disagreed with what the run read from KMS.
        marker_note: Option<String>,
    },
    /// Pending deletion before this run came (the ledger has no record of it for this run).
    AlreadyPending {
        /// DeletionDate.
        deletion_date: Option<SystemTime>,
    },
    /// The key no longer exists.
    Gone,
}

/// Reads a key's markers (all tag pages). `None` when the key no longer exists.
pub async fn read_markers(kms: &Kms, key: &StoreKey) -> Result<Option<Markers>, DecommissionError> {
    Ok(kms
        .list_resource_tags(key.key_id())
        .await?
        .map(|tags| Markers::from_tags(&tags)))
}

/// Makes sure `key` is pending deletion, scheduled by this run (or was already pending before
/// it came). Before the first change, the key's record goes into the ledger with the state this
/// run read from KMS (and `last_use`); a record already there (an earlier attempt) is kept.
/// Then the markers (information for people; TagResource fails on a pending key), then
/// ScheduleKeyDeletion, then the ledger learns the DeletionDate. Tags already on the key are
/// read only to report those that disagree. Safe to repeat after a crash at any point.
pub async fn ensure_scheduled(
    kms: &Kms,
    key: &StoreKey,
    target: &TargetStore,
    markers_for: MarkerContext<'_>,
    pending_window_in_days: i32,
    last_use: Option<String>,
    now: Timestamp,
) -> Result<KeyOutcome, DecommissionError> {
    let ledger = markers_for.ledger;
    if key.is_pending_deletion() {
        return pending_outcome(ledger, key, markers_for.execution, now).await;
    }
    if !SCHEDULABLE_STATES.contains(key.state()) {
        return Err(DecommissionError::unexpected(
            "DescribeKey",
            format!(
                "key {} of store {} is in state {}, which a custom key store key cannot have",
                key.arn(),
                target.id(),
                key.state().as_str()
            ),
        ));
    }
    let Some(markers) = read_markers(kms, key).await? else {
        return Ok(KeyOutcome::Gone);
    };
    let mut record = KeyRecord::new(
        key.arn(),
        key.key_id(),
        target.id(),
        key.state().as_str(),
        now,
    );
    record.last_use = last_use;
    record.marker_note = markers.disagreement(markers_for.execution, key.state());
    if let Some(note) = &record.marker_note {
        tracing::warn!(
            key_id = key.key_id(),
            key_arn = key.arn(),
            custom_key_store_id = markers_for.store_id,
            execution = markers_for.execution,
            markers = note.as_str(),
            "key carries decommission markers this run did not write; they are ignored"
        );
    }
    let record = ledger.record_key(markers_for.execution, &record).await?;
    match write_markers(kms, key, markers_for, &record.prior_state).await {
        Ok(()) => {}
        Err(err) if err.is_kms(KmsErrorCode::NotFound) => return Ok(KeyOutcome::Gone),
        Err(err) if err.is_kms(KmsErrorCode::InvalidState) => {
            // Scheduled since we described it (by us before a crash, or by someone else).
            return match refreshed(kms, key, target).await? {
                Some(now_key) if now_key.is_pending_deletion() => {
                    pending_outcome(ledger, &now_key, markers_for.execution, now).await
                }
                Some(_) => Err(err),
                None => Ok(KeyOutcome::Gone),
            };
        }
        Err(err) => return Err(err),
    }

    let result = kms
        .schedule_key_deletion(key.key_id(), pending_window_in_days)
        .await;
    match result {
        Ok(deletion_date) => {
            let deletion_date = deletion_date.as_ref().map(from_kms);
            ledger
                .mark_scheduled(
                    markers_for.execution,
                    key.arn(),
                    now,
                    deletion_date.map(Timestamp::ceil),
                )
                .await?;
            tracing::info!(
                key_id = key.key_id(),
                key_arn = key.arn(),
                custom_key_store_id = markers_for.store_id,
                execution = markers_for.execution,
                ticket = markers_for.ticket,
                prior_state = record.prior_state.as_str(),
                pending_window_in_days,
                deletion_date = deletion_date.map(|d| Timestamp::ceil(d).to_string()),
                "scheduled key deletion"
            );
            Ok(KeyOutcome::ScheduledByThisExecution {
                deletion_date,
                marker_note: record.marker_note,
            })
        }
        Err(err) if err.is_kms(KmsErrorCode::NotFound) => Ok(KeyOutcome::Gone),
        // Already pending (a repeated call): done only if DescribeKey agrees.
        Err(err) if err.is_kms(KmsErrorCode::InvalidState) => {
            match refreshed(kms, key, target).await? {
                Some(now_key) if now_key.is_pending_deletion() => {
                    pending_outcome(ledger, &now_key, markers_for.execution, now).await
                }
                Some(_) => Err(err),
                None => Ok(KeyOutcome::Gone),
            }
        }
        Err(err) => Err(err),
    }
}

/// Classifies a pending key by the ledger: scheduled by this run when the run recorded it
/// (the ledger then learns its DeletionDate, if a crash kept it from that), else already pending.
async fn pending_outcome(
    ledger: &Ledger,
    key: &StoreKey,
    execution: &str,
    now: Timestamp,
) -> Result<KeyOutcome, DecommissionError> {
    let deletion_date = key.deletion_date();
    match ledger.key_record(execution, key.arn()).await? {
        Some(record) => {
            if record.scheduled_at.is_none() || record.deletion_date.is_none() {
                ledger
                    .mark_scheduled(
                        execution,
                        key.arn(),
                        now,
                        deletion_date.map(Timestamp::ceil),
                    )
                    .await?;
            }
            Ok(KeyOutcome::ScheduledByThisExecution {
                deletion_date,
                marker_note: record.marker_note,
            })
        }
        None => Ok(KeyOutcome::AlreadyPending { deletion_date }),
    }
}

/// The key described again; `None` when it is gone. Still proven to belong to the store
/// (`UnexpectedKmsResponse` when KMS now shows it elsewhere).
pub async fn refreshed(
    kms: &Kms,
    key: &StoreKey,
    target: &TargetStore,
) -> Result<Option<StoreKey>, DecommissionError> {
    let Some(metadata) = kms.describe_key(key.key_id()).await? else {
        return Ok(None);
    };
    StoreKey::from_metadata(&metadata, target)
        .map(Some)
        .ok_or_else(|| {
            DecommissionError::unexpected(
                "DescribeKey",
                format!("key {} no longer shows store {}", key.arn(), target.id()),
            )
        })
}

/// Writes this execution's markers on a key (one TagResource call).
async fn write_markers(
    kms: &Kms,
    key: &StoreKey,
    markers_for: MarkerContext<'_>,
    prior_state: &str,
) -> Result<(), DecommissionError> {
    if markers_for.execution.chars().count() > MAX_TAG_VALUE_CHARS {
        return Err(DecommissionError::invalid_state(format!(
            "Execution.Id is longer than the {MAX_TAG_VALUE_CHARS} characters a KMS tag value holds"
        )));
    }
    let mut tags = vec![
        tag(MARKER_EXECUTION, markers_for.execution)?,
        tag(MARKER_PRIOR_STATE, prior_state)?,
    ];
    if let Some(ticket) = markers_for.ticket {
        tags.push(tag(MARKER_TICKET, ticket)?);
    }
    kms.tag_resource(key.key_id(), tags).await?;
    tracing::info!(
        key_id = key.key_id(),
        key_arn = key.arn(),
        custom_key_store_id = markers_for.store_id,
        execution = markers_for.execution,
        ticket = markers_for.ticket,
        prior_state,
        "wrote decommission markers"
    );
    Ok(())
}

fn tag(key: &str, value: &str) -> Result<Tag, DecommissionError> {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .map_err(|e| DecommissionError::unexpected("TagResource", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::types::{KeyManagerType, KeyState, OriginType, XksKeyConfigurationType};

    fn target(kind: StoreType) -> TargetStore {
        TargetStore {
            id: "cks-1234567890abcdef0".into(),
            store_type: kind,
        }
    }

    fn metadata(store: Option<&str>, manager: KeyManagerType, origin: OriginType) -> KeyMetadata {
        KeyMetadata::builder()
            .key_id("k1")
            .arn("arn:aws:kms:us-east-1:123456789012:key/k1")
            .set_custom_key_store_id(store.map(str::to_string))
            .key_manager(manager)
            .origin(origin)
            .key_state(KeyState::Enabled)
            .xks_key_configuration(XksKeyConfigurationType::builder().id("ext-1").build())
            .build()
            .unwrap()
    }

    #[test]
    fn only_customer_keys_of_the_target_store_qualify() {
        let cloudhsm = target(StoreType::CloudHsm);
        let ours = metadata(
            Some("cks-1234567890abcdef0"),
            KeyManagerType::Customer,
            OriginType::AwsCloudhsm,
        );
        let key = StoreKey::from_metadata(&ours, &cloudhsm).unwrap();
        assert_eq!(key.arn(), "arn:aws:kms:us-east-1:123456789012:key/k1");
        assert_eq!(key.state(), &KeyState::Enabled);

        for other in [
            metadata(
                Some("cks-99999999999999999"),
                KeyManagerType::Customer,
                OriginType::AwsCloudhsm,
            ),
            metadata(None, KeyManagerType::Customer, OriginType::AwsKms),
            metadata(None, KeyManagerType::Aws, OriginType::AwsKms),
            metadata(
                Some("cks-1234567890abcdef0"),
                KeyManagerType::Aws,
                OriginType::AwsCloudhsm,
            ),
            metadata(
                Some("cks-1234567890abcdef0"),
                KeyManagerType::Customer,
                OriginType::AwsKms,
            ),
            metadata(
                Some("cks-1234567890abcdef0"),
                KeyManagerType::Customer,
                OriginType::ExternalKeyStore,
            ),
        ] {
            assert_eq!(
                StoreKey::from_metadata(&other, &cloudhsm),
                None,
                "{other:?}"
            );
        }

        let xks = StoreKey::from_metadata(
            &metadata(
                Some("cks-1234567890abcdef0"),
                KeyManagerType::Customer,
                OriginType::ExternalKeyStore,
            ),
            &target(StoreType::External),
        )
        .unwrap();
        assert_eq!(xks.xks_key_id(), Some("ext-1"));
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
        pairs.iter().map(|(k, v)| tag(k, v).unwrap()).collect()
    }

    #[test]
    fn markers_this_run_did_not_write_or_that_contradict_kms_are_named() {
        let exec = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1";
        let ours = Markers::from_tags(&tags(&[
            (MARKER_EXECUTION, exec),
            (MARKER_PRIOR_STATE, "Enabled"),
            ("team", "payments"),
        ]));
        assert_eq!(ours.disagreement(exec, &KeyState::Enabled), None);
        assert_eq!(
            ours.disagreement(exec, &KeyState::Disabled).as_deref(),
            Some("kms-decommission:prior-state=Enabled while KMS showed Disabled")
        );
        let other = "arn:aws:states:us-east-1:123456789012:execution:sm:run-0";
        assert_eq!(
            ours.disagreement(other, &KeyState::Enabled).as_deref(),
            Some(&*format!("kms-decommission:execution={exec}"))
        );
        assert_eq!(Markers::from_tags(&[]), Markers::default());
        assert_eq!(
            Markers::default().disagreement(exec, &KeyState::Enabled),
            None
        );
    }

    mod with_mocked_kms {
        use super::super::*;
        use crate::test_support::*;
        use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
        use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
        use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
        use aws_sdk_dynamodb::types::AttributeValue;
        use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
        use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;
        use aws_sdk_kms::operation::schedule_key_deletion::{
            ScheduleKeyDeletionError, ScheduleKeyDeletionOutput,
        };
        use aws_sdk_kms::operation::tag_resource::{TagResourceError, TagResourceOutput};
        use aws_sdk_kms::types::error::KmsInvalidStateException;
        use aws_sdk_kms::types::KeyState;
        use aws_sdk_kms::Client;
        use aws_smithy_mocks::{mock, Rule};
        use std::collections::HashMap;

        type Ddb = aws_sdk_dynamodb::Client;

        const NOW: Timestamp = Timestamp::EPOCH;

        fn markers_for(ledger: &Ledger) -> MarkerContext<'_> {
            MarkerContext {
                ledger,
                execution: EXECUTION,
                ticket: Some("CHG-1"),
                store_id: STORE_ID,
            }
        }

        fn tags_of(pairs: &[(&str, &str)]) -> ListResourceTagsOutput {
            ListResourceTagsOutput::builder()
                .set_tags(Some(
                    pairs.iter().map(|(k, v)| tag(k, v).unwrap()).collect(),
                ))
                .build()
        }

        fn no_tags() -> Rule {
            mock!(Client::list_resource_tags).then_output(|| tags_of(&[]))
        }

        /// The ledger's record of k1 for this run, as GetItem returns it.
        fn recorded(prior: &str, scheduled: bool) -> GetItemOutput {
            let mut item = HashMap::from([
                ("KeyArn", "arn:aws:kms:us-east-1:123456789012:key/k1"),
                ("KeyId", "k1"),
                ("CustomKeyStoreId", STORE_ID),
                ("PriorState", prior),
                ("RecordedAt", "2026-11-28T10:00:00Z"),
            ]);
            if scheduled {
                item.insert("ScheduledAt", "2026-11-28T10:00:01Z");
                item.insert("DeletionDate", "2026-12-05T10:00:01Z");
            }
            GetItemOutput::builder()
                .set_item(Some(
                    item.into_iter()
                        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())))
                        .collect(),
                ))
                .build()
        }

        fn invalid_state() -> ScheduleKeyDeletionError {
            ScheduleKeyDeletionError::KmsInvalidStateException(
                KmsInvalidStateException::builder()
                    .meta(kms_error(
                        "KMSInvalidStateException",
                        "key/k1 is pending deletion",
                    ))
                    .build(),
            )
        }

        fn put_ok() -> Rule {
            mock!(Ddb::put_item).then_output(|| PutItemOutput::builder().build())
        }

        fn update_ok() -> Rule {
            mock!(Ddb::update_item).then_output(|| UpdateItemOutput::builder().build())
        }

        #[tokio::test]
        async fn an_already_pending_answer_is_done_once_describe_key_and_the_ledger_confirm_it() {
            let tag_resource =
                mock!(Client::tag_resource).then_output(|| TagResourceOutput::builder().build());
            let schedule = mock!(Client::schedule_key_deletion).then_error(invalid_state);
            let describe = mock!(Client::describe_key).then_output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(store_key_metadata("k1", KeyState::PendingDeletion))
                    .build()
            });
            let kms = Kms::with_default_pacing(mock_kms(&[
                &no_tags(),
                &tag_resource,
                &schedule,
                &describe,
            ]));
            let (put, get, update) = (
                put_ok(),
                mock!(Ddb::get_item).then_output(|| recorded("Enabled", false)),
                update_ok(),
            );
            let ledger = mock_ledger(&[&put, &get, &update]);
            let key = store_key("k1", KeyState::Enabled);
            let outcome =
                ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                    .await
                    .unwrap();
            assert_eq!(
                outcome,
                KeyOutcome::ScheduledByThisExecution {
                    deletion_date: None,
                    marker_note: None
                }
            );
            assert_eq!(describe.num_calls(), 1);
            assert_eq!(update.num_calls(), 1, "the ledger learns it is scheduled");
        }

        #[tokio::test]
        async fn an_invalid_state_answer_on_a_key_that_is_not_pending_is_an_error() {
            let tag_resource =
                mock!(Client::tag_resource).then_output(|| TagResourceOutput::builder().build());
            let schedule = mock!(Client::schedule_key_deletion).then_error(invalid_state);
            let describe = mock!(Client::describe_key).then_output(|| {
                DescribeKeyOutput::builder()
                    .key_metadata(store_key_metadata("k1", KeyState::Enabled))
                    .build()
            });
            let kms = Kms::with_default_pacing(mock_kms(&[
                &no_tags(),
                &tag_resource,
                &schedule,
                &describe,
            ]));
            let put = put_ok();
            let ledger = mock_ledger(&[&put]);
            let key = store_key("k1", KeyState::Enabled);
            let err = ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), "KMSInvalidStateException");
        }

        #[tokio::test]
        async fn the_record_goes_into_the_ledger_before_any_change_and_a_failed_tag_schedules_nothing(
        ) {
            let tag_resource = mock!(Client::tag_resource).then_error(|| {
                TagResourceError::generic(kms_error("ThrottlingException", "Rate exceeded"))
            });
            let schedule = mock!(Client::schedule_key_deletion)
                .then_output(|| ScheduleKeyDeletionOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&no_tags(), &tag_resource, &schedule]));
            let put = put_ok();
            let ledger = mock_ledger(&[&put]);
            let key = store_key("k1", KeyState::Disabled);
            let err = ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), "ThrottlingException");
            assert_eq!((put.num_calls(), schedule.num_calls()), (1, 0));
        }

        #[tokio::test]
        async fn a_ledger_that_cannot_be_written_stops_the_key_before_any_change() {
            let tag_resource =
                mock!(Client::tag_resource).then_output(|| TagResourceOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&no_tags(), &tag_resource]));
            let put = mock!(Ddb::put_item).then_error(|| {
                PutItemError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("ProvisionedThroughputExceededException")
                        .message("slow down")
                        .build(),
                )
            });
            let ledger = mock_ledger(&[&put]);
            let key = store_key("k1", KeyState::Enabled);
            let err = ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                .await
                .unwrap_err();
            assert_eq!(err.error_type(), "LedgerUnavailable");
            assert_eq!(tag_resource.num_calls(), 0);
        }

        #[tokio::test]
        async fn a_fresh_key_is_recorded_with_the_state_kms_shows_then_marked_then_scheduled() {
            let tag_resource = mock!(Client::tag_resource)
                .match_requests(|req| {
                    let tags = req.tags();
                    tags.iter()
                        .any(|t| t.tag_key() == MARKER_PRIOR_STATE && t.tag_value() == "Disabled")
                        && tags
                            .iter()
                            .any(|t| t.tag_key() == MARKER_EXECUTION && t.tag_value() == EXECUTION)
                        && tags
                            .iter()
                            .any(|t| t.tag_key() == MARKER_TICKET && t.tag_value() == "CHG-1")
                })
                .then_output(|| TagResourceOutput::builder().build());
            let schedule = mock!(Client::schedule_key_deletion)
                .match_requests(|req| req.pending_window_in_days() == Some(7))
                .then_output(|| {
                    ScheduleKeyDeletionOutput::builder()
                        .deletion_date(aws_smithy_types::DateTime::from_secs(1_798_452_000))
                        .build()
                });
            let kms = Kms::with_default_pacing(mock_kms(&[&no_tags(), &tag_resource, &schedule]));
            let put = mock!(Ddb::put_item)
                .match_requests(|req| {
                    let item = req.item().unwrap();
                    item.get("PriorState") == Some(&AttributeValue::S("Disabled".into()))
                        && item.get("LastUse") == Some(&AttributeValue::S("never used".into()))
                        && req.condition_expression() == Some("attribute_not_exists(pk)")
                })
                .then_output(|| PutItemOutput::builder().build());
            let update = mock!(Ddb::update_item)
                .match_requests(|req| {
                    req.expression_attribute_values()
                        .and_then(|v| v.get(":date"))
                        .is_some()
                })
                .then_output(|| UpdateItemOutput::builder().build());
            let ledger = mock_ledger(&[&put, &update]);
            let key = store_key("k1", KeyState::Disabled);
            let outcome = ensure_scheduled(
                &kms,
                &key,
                &target(),
                markers_for(&ledger),
                7,
                Some("never used".into()),
                NOW,
            )
            .await
            .unwrap();
            assert_eq!(
                (
                    put.num_calls(),
                    tag_resource.num_calls(),
                    update.num_calls()
                ),
                (1, 1, 1)
            );
            assert_eq!(
                outcome,
                KeyOutcome::ScheduledByThisExecution {
                    deletion_date: Some(from_kms(&aws_smithy_types::DateTime::from_secs(
                        1_798_452_000
                    ))),
                    marker_note: None
                }
            );
        }

        #[tokio::test]
        async fn planted_markers_change_nothing_the_ledger_keeps_what_kms_showed() {
            // Someone tagged a Disabled key as if this run had found it Enabled.
            let planted = mock!(Client::list_resource_tags).then_output(|| {
                tags_of(&[
                    (MARKER_EXECUTION, EXECUTION),
                    (MARKER_PRIOR_STATE, "Enabled"),
                ])
            });
            let tag_resource = mock!(Client::tag_resource)
                .match_requests(|req| {
                    req.tags()
                        .iter()
                        .any(|t| t.tag_key() == MARKER_PRIOR_STATE && t.tag_value() == "Disabled")
                })
                .then_output(|| TagResourceOutput::builder().build());
            let schedule = mock!(Client::schedule_key_deletion)
                .then_output(|| ScheduleKeyDeletionOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&planted, &tag_resource, &schedule]));
            let put = mock!(Ddb::put_item)
                .match_requests(|req| {
                    let item = req.item().unwrap();
                    item.get("PriorState") == Some(&AttributeValue::S("Disabled".into()))
                        && item.contains_key("MarkerNote")
                })
                .then_output(|| PutItemOutput::builder().build());
            let update = update_ok();
            let ledger = mock_ledger(&[&put, &update]);
            let key = store_key("k1", KeyState::Disabled);
            let outcome =
                ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                    .await
                    .unwrap();
            let KeyOutcome::ScheduledByThisExecution { marker_note, .. } = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(
                marker_note.as_deref(),
                Some("kms-decommission:prior-state=Enabled while KMS showed Disabled")
            );
            assert_eq!((put.num_calls(), tag_resource.num_calls()), (1, 1));
        }

        #[tokio::test]
        async fn a_rerun_keeps_the_prior_state_the_ledger_recorded_first() {
            // The first attempt recorded the key Enabled, then died; someone disabled it since.
            let tag_resource = mock!(Client::tag_resource)
                .match_requests(|req| {
                    req.tags()
                        .iter()
                        .any(|t| t.tag_key() == MARKER_PRIOR_STATE && t.tag_value() == "Enabled")
                })
                .then_output(|| TagResourceOutput::builder().build());
            let schedule = mock!(Client::schedule_key_deletion)
                .then_output(|| ScheduleKeyDeletionOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&no_tags(), &tag_resource, &schedule]));
            let put = mock!(Ddb::put_item).then_error(|| {
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .meta(
                            aws_smithy_types::error::ErrorMetadata::builder()
                                .code("ConditionalCheckFailedException")
                                .build(),
                        )
                        .build(),
                )
            });
            let get = mock!(Ddb::get_item).then_output(|| recorded("Enabled", false));
            let update = update_ok();
            let ledger = mock_ledger(&[&put, &get, &update]);
            let key = store_key("k1", KeyState::Disabled);
            ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                .await
                .unwrap();
            assert_eq!((tag_resource.num_calls(), schedule.num_calls()), (1, 1));
        }

        #[tokio::test]
        async fn a_pending_key_this_run_did_not_record_was_already_pending() {
            let schedule = mock!(Client::schedule_key_deletion)
                .then_output(|| ScheduleKeyDeletionOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&schedule]));
            let get = mock!(Ddb::get_item).then_output(|| GetItemOutput::builder().build());
            let ledger = mock_ledger(&[&get]);
            let key = store_key("k1", KeyState::PendingDeletion);
            let outcome =
                ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                    .await
                    .unwrap();
            assert_eq!(
                outcome,
                KeyOutcome::AlreadyPending {
                    deletion_date: None
                }
            );
            assert_eq!(schedule.num_calls(), 0);
        }

        #[tokio::test]
        async fn a_pending_key_this_run_recorded_and_scheduled_is_its_own() {
            let kms = Kms::with_default_pacing(mock_kms(&[]));
            let get = mock!(Ddb::get_item).then_output(|| recorded("Enabled", true));
            let ledger = mock_ledger(&[&get]);
            let key = store_key("k1", KeyState::PendingDeletion);
            let outcome =
                ensure_scheduled(&kms, &key, &target(), markers_for(&ledger), 7, None, NOW)
                    .await
                    .unwrap();
            assert!(matches!(
                outcome,
                KeyOutcome::ScheduledByThisExecution { .. }
            ));
        }
    }
}
