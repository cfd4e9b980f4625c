//! check-keys-deleted: scan the store's keys; all gone -> done; still pending -> poll again
//! (reconnecting a CloudHSM store that is no longer CONNECTED); a key not pending deletion
//! -> `KeysNotPendingDeletion`; pending far past its DeletionDate -> `KeyDeletionOverdue`.
//! Never disconnects or changes anything.

use std::time::{Duration, SystemTime};

use aws_sdk_kms::types::ConnectionStateType;

use crate::clock::{max_time, min_time, seconds_between};
use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::inventory::{scan_pages, Page, Paging};
use crate::keys::TargetStore;
use crate::model::{push_capped, StoreType, Timestamp, SAMPLE_CAP};
use crate::state::{DecommissionState, DeletionCheck};
use crate::steps::context::StepContext;
use crate::steps::flow::{next_check_time, require_planned_store, Step};
use crate::store;

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
            checks: previous.map_or(0, |p| p.checks) + 1,
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

/// Seconds until the next check: the poll interval while a deletion is due, otherwise until
/// one poll interval before the earliest DeletionDate (at most `connection_check_seconds`).
fn poll_after_seconds(now: SystemTime, earliest: Option<SystemTime>, ctx: &StepContext) -> u64 {
    match next_check_time(now, earliest, &ctx.config) {
        Some(next) => seconds_between(now, next).max(1),
        None => ctx.config.key_deletion_poll_seconds,
    }
}
