//! check-keys-deleted: scan the store's keys; all gone -> done; still pending -> poll again
//! (reconnecting a CloudHSM store that is no longer CONNECTED); a key not pending deletion
//! -> `KeysNotPendingDeletion`; pending far past its DeletionDate -> `KeyDeletionOverdue`.
//! Never disconnects or changes anything.

use std::time::{Duration, SystemTime};

use aws_sdk_kms::types::ConnectionStateType;

use aws_smithy_types::DateTime;

use crate::clock::{max_time, min_time, seconds_between};
use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::inventory::{scan_pages, Page, Paging};
use crate::key_material::{KeyDeletionEvent, MaterialStatus, DELETE_KEY_EVENT};
use crate::keys::TargetStore;
use crate::model::{push_capped, StoreType, Timestamp, SAMPLE_CAP};
use crate::state::{DecommissionState, DeletionCheck, KeyMaterialCheck};
use crate::steps::caller::LEDGER_PAGE;
use crate::steps::context::StepContext;
use crate::steps::flow::{next_check_time, require_planned_store, Step};
use crate::steps::quarantine::cloudtrail_unavailable;
use crate::store;

/// How far back CloudTrail's event history (LookupEvents) reaches: 90 days.
const CLOUDTRAIL_HISTORY_SECONDS: u64 = 90 * 86_400;

/// Runs one batch of a check.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::CheckKeysDeleted.check_document(&state)?;
    let request = state.require_real_run()?.clone();
    let store = require_planned_store(&state)?.clone();
    let execution = state.execution.as_ref().map(|e| e.id.clone());
    let store_id = store.custom_key_store_id.clone();
    let target = TargetStore::new(&store);

    let mut check = match state.deletion.take() {
        Some(check) if !check.scan_done && check.cursor.is_some() => check,
        previous => DeletionCheck {
            checks: previous.as_ref().map_or(0, |p| p.checks) + 1,
            key_material: previous.and_then(|p| p.key_material),
            ..DeletionCheck::default()
        },
    };
    let mut earliest = check.earliest_deletion_date.map(Timestamp::time);
    let mut latest = check.latest_deletion_date.map(Timestamp::time);
    let cursor = scan_pages(
        &ctx.kms,
        &target,
        check.cursor.take(),
        Paging {
            deadline: &deadline,
            margin: ctx.config.deadline_margin,
            max_page_size: ctx.config.list_keys_page_size,
            per_store_key: Duration::ZERO,
        },
        async |page: Page| {
            check.keys_scanned += page.scanned;
            for key in &page.keys {
                if key.is_pending_deletion() {
                    check.keys_pending += 1;
                    earliest = min_time(earliest, key.deletion_date());
                    latest = max_time(latest, key.deletion_date());
                } else {
                    check.keys_not_pending += 1;
                    push_capped(
                        &mut check.keys_not_pending_sample,
                        format!("{} ({})", key.arn(), key.state().as_str()),
                    );
                    tracing::warn!(
                        custom_key_store_id = store_id.as_str(),
                        execution = execution.as_deref(),
                        ticket = request.ticket_id.as_deref(),
                        key_id = key.key_id(),
                        key_arn = key.arn(),
                        key_state = key.state().as_str(),
                        "key of the store is not pending deletion"
                    );
                }
            }
            Ok(())
        },
    )
    .await?;
    check.earliest_deletion_date = earliest.map(Timestamp::ceil);
    check.latest_deletion_date = latest.map(Timestamp::ceil);
    check.scan_done = cursor.is_none();
    check.cursor = cursor;
    check.all_deleted = false;
    check.needs_reconnect = false;
    check.poll_after_seconds = ctx.config.key_deletion_poll_seconds;
    if !check.scan_done {
        state.deletion = Some(check);
        return Ok(state);
    }

    if check.keys_not_pending > 0 {
        let more = check.keys_not_pending.saturating_sub(SAMPLE_CAP as u64);
        return Err(DecommissionError::KeysNotPendingDeletion {
            store_id,
            count: check.keys_not_pending,
            keys: check.keys_not_pending_sample,
            more: if more > 0 {
                format!(", and {more} more (see the logs)")
            } else {
                String::new()
            },
        });
    }

    let now = ctx.clock.now();
    if check.keys_pending == 0 {
        if store.custom_key_store_type == StoreType::CloudHsm {
            let run = execution
                .clone()
                .ok_or_else(|| DecommissionError::invalid_state("Execution.Id is required"))?;
            let material = check_key_material(
                ctx,
                &store_id,
                &run,
                check.key_material.take(),
                // The execution's own input (the caller check compared it), not the document.
                request.allow_orphaned_key_material,
                &deadline,
            )
            .await?;
            let done = material.done;
            check.key_material = Some(material);
            if !done {
                check.poll_after_seconds = ctx
                    .config
                    .cloudtrail_delivery_margin_seconds
                    .min(ctx.config.key_deletion_poll_seconds)
                    .max(1);
                state.deletion = Some(check);
                return Ok(state);
            }
        }
        check.all_deleted = true;
        tracing::info!(
            custom_key_store_id = store_id.as_str(),
            execution = execution.as_deref(),
            ticket = request.ticket_id.as_deref(),
            checks = check.checks,
            "every key of the store is deleted"
        );
        state.deletion = Some(check);
        return Ok(state);
    }

    if let Some(earliest) = earliest {
        let overdue_since = earliest + Duration::from_secs(ctx.config.key_deletion_overdue_seconds);
        if now > overdue_since {
            return Err(DecommissionError::KeyDeletionOverdue {
                store_id,
                pending: check.keys_pending,
                earliest_deletion_date: Timestamp::ceil(earliest).to_string(),
                overdue_seconds: ctx.config.key_deletion_overdue_seconds,
            });
        }
    }

    if store.custom_key_store_type == StoreType::CloudHsm && !state.orphaned_key_material_accepted()
    {
        let described = store::describe(&ctx.kms, &store_id).await?;
        if described.connection_state != ConnectionStateType::Connected {
            tracing::warn!(
                custom_key_store_id = store_id.as_str(),
                execution = execution.as_deref(),
                connection_state = described.connection_state.as_str(),
                keys_pending = check.keys_pending,
                "CloudHSM store is not CONNECTED while keys are pending deletion; reconnecting"
            );
            check.needs_reconnect = true;
        }
        state.store = Some(described);
    }

    check.poll_after_seconds = poll_after_seconds(now, earliest, ctx);
    tracing::info!(
        custom_key_store_id = store_id.as_str(),
        execution = execution.as_deref(),
        keys_pending = check.keys_pending,
        earliest_deletion_date = check.earliest_deletion_date.map(|t| t.to_string()),
        poll_after_seconds = check.poll_after_seconds,
        "keys still pending deletion"
    );
    state.deletion = Some(check);
    Ok(state)
}

/// Reads KMS's `DeleteKey` events of the store since the run began (one scan, across
/// invocations when the deadline cuts it), records each key's material status in the run's
/// ledger, then counts the run's key records: done once every key of the run has a status, or
/// once `KEY_MATERIAL_CHECK_SECONDS` have passed since every key was gone. Orphaned or
/// unconfirmed material then ends the run (`KeyMaterialOrphaned`,
/// `KeyMaterialDeletionUnconfirmed`) unless the operator accepted orphaned material
/// (`AllowOrphanedKeyMaterial`), in which case the report lists it.
async fn check_key_material(
    ctx: &StepContext,
    store_id: &str,
    execution: &str,
    previous: Option<KeyMaterialCheck>,
    orphans_accepted: bool,
    deadline: &Deadline,
) -> Result<KeyMaterialCheck, DecommissionError> {
    let now = Timestamp::floor(ctx.clock.now());
    let Some(cloudtrail) = &ctx.cloudtrail else {
        return Err(DecommissionError::InvalidConfiguration {
            variable: "CloudTrail".into(),
            reason: "check-keys-deleted has no CloudTrail client".into(),
        });
    };
    let run = ctx
        .ledger
        .run_record(store_id, execution)
        .await?
        .ok_or_else(|| {
            DecommissionError::invalid_state(format!(
                "the ledger has no record of run {execution} of store {store_id}"
            ))
        })?;
    let mut material = previous.unwrap_or_default();
    let started_at = *material.started_at.get_or_insert(now);
    if material.cursor.is_none() {
        material.events_read = 0;
        material.other_keys_orphaned = 0;
        material.other_keys_orphaned_sample.clear();
    }
    // CloudTrail's whole history before the run (90 days), fixed by the run's start so a scan
    // resumed with its NextToken asks the same question: keys of the store deleted before this
    // run (by an earlier run, or by hand) count too.
    let start = DateTime::from(
        run.started_at
            .time()
            .checked_sub(Duration::from_secs(CLOUDTRAIL_HISTORY_SECONDS))
            .unwrap_or(std::time::UNIX_EPOCH),
    );
    loop {
        let page = cloudtrail
            .named_events(DELETE_KEY_EVENT, start, material.cursor.as_deref())
            .await
            .map_err(cloudtrail_unavailable)?;
        for event in page
            .records
            .iter()
            .filter_map(KeyDeletionEvent::from_record)
        {
            if event.custom_key_store_id.as_deref() != Some(store_id) {
                continue;
            }
            material.events_read += 1;
            let status = event.status();
            let detail = format!("{} (CloudTrail event {})", event.handles(), event.event_id);
            let recorded = ctx
                .ledger
                .record_key_material(execution, &event.key_arn, status.as_str(), &detail)
                .await?;
            if !recorded && status == MaterialStatus::Orphaned {
                // Not a key of this run (pending before it, or deleted before it began): its
                // material is in the cluster all the same.
                material.other_keys_orphaned += 1;
                push_capped(
                    &mut material.other_keys_orphaned_sample,
                    format!("{} ({detail}; not scheduled by this run)", event.key_arn),
                );
            }
            tracing::info!(
                custom_key_store_id = store_id,
                execution,
                key_arn = event.key_arn.as_str(),
                key_material = status.as_str(),
                detail = detail.as_str(),
                key_of_this_run = recorded,
                "DeleteKey event read"
            );
        }
        material.cursor = page.next_token;
        if material.cursor.is_none() {
            break;
        }
        if !deadline.allows(Duration::from_secs(2), ctx.config.deadline_margin) {
            // Go on from the cursor in the next invocation.
            return Ok(material);
        }
    }
    material.scans += 1;
    count_key_material(ctx, execution, &mut material).await?;
    material.keys_orphaned += material.other_keys_orphaned;
    for other in &material.other_keys_orphaned_sample {
        push_capped(&mut material.keys_orphaned_sample, other.clone());
    }
    let waited = seconds_between(started_at.time(), now.time());
    material.done =
        material.keys_unconfirmed == 0 || waited >= ctx.config.key_material_check_seconds;
    if !material.done || orphans_accepted {
        return Ok(material);
    }
    let more = |count: u64, sample: &[String]| {
        let more = count.saturating_sub(sample.len() as u64);
        if more > 0 {
            format!(", and {more} more (see the logs and the ledger)")
        } else {
            String::new()
        }
    };
    if material.keys_orphaned > 0 {
        return Err(DecommissionError::KeyMaterialOrphaned {
            store_id: store_id.to_owned(),
            count: material.keys_orphaned,
            more: more(material.keys_orphaned, &material.keys_orphaned_sample),
            keys: material.keys_orphaned_sample,
        });
    }
    if material.keys_unconfirmed > 0 {
        return Err(DecommissionError::KeyMaterialDeletionUnconfirmed {
            store_id: store_id.to_owned(),
            count: material.keys_unconfirmed,
            more: more(material.keys_unconfirmed, &material.keys_unconfirmed_sample),
            keys: material.keys_unconfirmed_sample,
            waited_seconds: waited,
        });
    }
    Ok(material)
}

/// Counts the run's key records by the material status the ledger holds.
async fn count_key_material(
    ctx: &StepContext,
    execution: &str,
    material: &mut KeyMaterialCheck,
) -> Result<(), DecommissionError> {
    material.keys_deleted = 0;
    material.keys_orphaned = 0;
    material.keys_unconfirmed = 0;
    material.keys_orphaned_sample.clear();
    material.keys_unconfirmed_sample.clear();
    let mut after: Option<String> = None;
    loop {
        let page = ctx
            .ledger
            .key_records(execution, after.as_deref(), LEDGER_PAGE)
            .await?;
        for record in &page.records {
            match record.key_material.as_deref() {
                Some("Deleted") => material.keys_deleted += 1,
                Some("Orphaned") => {
                    material.keys_orphaned += 1;
                    push_capped(
                        &mut material.keys_orphaned_sample,
                        format!(
                            "{} ({})",
                            record.key_arn,
                            record.key_material_detail.as_deref().unwrap_or("no detail")
                        ),
                    );
                }
                _ => {
                    material.keys_unconfirmed += 1;
                    push_capped(
                        &mut material.keys_unconfirmed_sample,
                        record.key_arn.clone(),
                    );
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Seconds until the next check: the poll interval while a deletion is due, otherwise until
/// one poll interval before the earliest DeletionDate (at most `connection_check_seconds`).
fn poll_after_seconds(now: SystemTime, earliest: Option<SystemTime>, ctx: &StepContext) -> u64 {
    match next_check_time(now, earliest, &ctx.config) {
        Some(next) => seconds_between(now, next).max(1),
        None => ctx.config.key_deletion_poll_seconds,
    }
}
