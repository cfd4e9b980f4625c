//! schedule-key-deletion: record every key of the store in the run ledger (its state and last
//! use as this run reads them from KMS), put this execution's markers on it, then schedule its
//! deletion; page by page, resuming from the ListKeys marker. Keys already pending deletion are
//! success. When done, computes when the first check should run.
//!
//! The last-use guard holds at the moment each key is scheduled: just before tagging a key, its
//! last use is asked again (GetKeyLastUsage). A key used too recently is not touched, no key not
//! yet started is touched after it, and the step fails with `KeysRecentlyUsed` naming the keys
//! and how many keys this execution had already scheduled (they stay pending; cancel restores
//! them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};

use aws_sdk_kms::types::ConnectionStateType;

use crate::clock::{max_time, min_time};
use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::inventory::{per_call, scan_pages, Page, Paging};
use crate::keys::{ensure_scheduled, KeyOutcome, MarkerContext, TargetStore};
use crate::model::{push_capped, StoreType, Timestamp};
use crate::state::{DecommissionState, SchedulingProgress};
use crate::steps::context::StepContext;
use crate::steps::flow::{next_check_time, require_planned_store, Step};
use crate::store;
use crate::usage::{key_last_use, recently_used_error, KeyLastUse, UsageGuard};

/// What became of one key of a page.
enum KeyStep {
    /// Checked (when the guard is on) and made pending deletion, or found gone.
    Done(KeyOutcome),
    /// Used too recently: left untouched.
    RecentlyUsed(KeyLastUse),
    /// Left untouched because another key of the page was found recently used.
    Skipped,
}

/// The last use a key's ledger record holds when the guard was off.
const LAST_USE_NOT_ASKED: &str =
    "not asked again before scheduling: the last-use guard was off (MinDaysSinceLastUse 0)";

/// A Wait shorter than this is skipped (never Wait on a timestamp about to pass).
const MIN_WAIT_SECONDS: u64 = 60;

/// Runs one batch of scheduling.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::ScheduleKeyDeletion.check_document(&state)?;
    let request = state.require_real_run()?.clone();
    let execution = state.execution_id()?.to_string();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();

    // The first irreversible step: look at the store again, by id, and re-check the name.
    let described = store::describe(&ctx.kms, &store_id).await?;
    request.confirm_store_name(&described.custom_key_store_name)?;
    if described.custom_key_store_type == StoreType::CloudHsm
        && described.connection_state != ConnectionStateType::Connected
        && !state.orphaned_key_material_accepted()
    {
        return Err(DecommissionError::StoreNotConnected {
            store_id,
            state: described.connection_state.as_str().to_string(),
        });
    }
    let target = TargetStore::new(&described);
    state.store = Some(described);
    // With a quarantine, only keys that existed when it began were watched (and planned, and
    // approved): a key created since is not scheduled. No key can be created while the store is
    // disconnected, so one created after the second the quarantine began (its start is kept in
    // whole seconds) was created after the store was connected again.
    // The start is the ledger's (quarantine-store wrote it once), not the document's.
    let quarantined_since = ctx
        .ledger
        .run_record(&store_id, &execution)
        .await?
        .filter(|run| run.quarantine_required == Some(true))
        .and_then(|run| run.quarantine_started_at)
        .map(|t| t.time() + Duration::from_secs(1));

    let mut progress = match state.scheduling.take() {
        Some(progress) if !progress.done && progress.cursor.is_some() => progress,
        _ => SchedulingProgress::default(),
    };
    let mut earliest = progress.earliest_deletion_date.map(Timestamp::time);
    let mut latest = progress.latest_deletion_date.map(Timestamp::time);
    let markers_for = MarkerContext {
        ledger: &ctx.ledger,
        execution: &execution,
        ticket: request.ticket_id.as_deref(),
        store_id: &store_id,
    };
    let guard = UsageGuard::new(request.min_days_since_last_use);
    // Each key of the store costs a TagResource and a ScheduleKeyDeletion, plus a GetKeyLastUsage
    // with the guard on: the slowest of their paced rates bounds a page.
    let pacing = &ctx.config.pacing;
    let mut per_key_rps = pacing
        .tag_resource_rps
        .min(pacing.schedule_key_deletion_rps);
    if guard.is_on() {
        per_key_rps = per_key_rps.min(pacing.custom_key_store_rps);
    }
    let per_store_key = per_call(per_key_rps);
    let cursor = scan_pages(
        &ctx.kms,
        &target,
        progress.cursor.take(),
        Paging {
            deadline: &deadline,
            margin: ctx.config.deadline_margin,
            max_page_size: ctx.config.list_keys_page_size,
            per_store_key,
        },
        async |page: Page| {
            if let Some(since) = quarantined_since {
                let created_since: Vec<&crate::keys::StoreKey> = page
                    .keys
                    .iter()
                    .filter(|k| !k.is_pending_deletion())
                    .filter(|k| k.creation_date().is_none_or(|created| created >= since))
                    .collect();
                if !created_since.is_empty() {
                    return Err(created_after_quarantine(
                        &store_id,
                        since,
                        &created_since,
                        progress.keys_scheduled,
                    ));
                }
            }
            let refused = AtomicBool::new(false);
            let steps: Vec<KeyStep> = stream::iter(&page.keys)
                .map(|key| {
                    let (refused, target, request) = (&refused, &target, &request);
                    async move {
                        // The last use the ledger records: asked again with the guard on (its
                        // recheck), not asked with it off.
                        let mut last_use = None;
                        if guard.is_on() && !key.is_pending_deletion() {
                            if refused.load(Ordering::SeqCst) {
                                return Ok(KeyStep::Skipped);
                            }
                            let Some(used) = key_last_use(&ctx.kms, key).await? else {
                                return Ok(KeyStep::Done(KeyOutcome::Gone));
                            };
                            if guard.blocks(&used, ctx.clock.now())? {
                                refused.store(true, Ordering::SeqCst);
                                return Ok(KeyStep::RecentlyUsed(used));
                            }
                            if refused.load(Ordering::SeqCst) {
                                return Ok(KeyStep::Skipped);
                            }
                            last_use = Some(used.describe());
                        } else if !guard.is_on() {
                            last_use = Some(LAST_USE_NOT_ASKED.to_owned());
                        }
                        ensure_scheduled(
                            &ctx.kms,
                            key,
                            target,
                            markers_for,
                            request.pending_window_in_days,
                            last_use,
                            Timestamp::floor(ctx.clock.now()),
                        )
                        .await
                        .map(KeyStep::Done)
                    }
                })
                .buffered(ctx.kms.pacing().concurrency)
                .try_collect::<Vec<KeyStep>>()
                .await?;
            if refused.load(Ordering::SeqCst) {
                return Err(refusal(&store_id, &request, &progress, &page.keys, &steps));
            }
            progress.keys_last_use_rechecked += page
                .keys
                .iter()
                .filter(|k| guard.is_on() && !k.is_pending_deletion())
                .count() as u64;
            let outcomes: Vec<KeyOutcome> = steps
                .into_iter()
                .filter_map(|step| match step {
                    KeyStep::Done(outcome) => Some(outcome),
                    KeyStep::RecentlyUsed(_) | KeyStep::Skipped => None,
                })
                .collect();
            // The page is complete: only now do its counts join the progress, so a page cut off
            // halfway is counted once, when it is processed again.
            progress.keys_scanned += page.scanned;
            for (key, outcome) in page.keys.iter().zip(&outcomes) {
                let (date, by_us) = match outcome {
                    KeyOutcome::ScheduledByThisExecution {
                        deletion_date,
                        marker_note,
                    } => {
                        if let Some(note) = marker_note {
                            progress.keys_with_foreign_markers += 1;
                            push_capped(
                                &mut progress.keys_with_foreign_markers_sample,
                                format!("{} ({note})", key.arn()),
                            );
                        }
                        (*deletion_date, true)
                    }
                    KeyOutcome::AlreadyPending { deletion_date } => (*deletion_date, false),
                    KeyOutcome::Gone => continue,
                };
                if by_us {
                    progress.keys_scheduled += 1;
                } else {
                    progress.keys_already_pending += 1;
                }
                let date = date.or(key.deletion_date());
                earliest = min_time(earliest, date);
                latest = max_time(latest, date);
                tracing::info!(
                    custom_key_store_id = store_id.as_str(),
                    execution = execution.as_str(),
                    ticket = request.ticket_id.as_deref(),
                    key_id = key.key_id(),
                    key_arn = key.arn(),
                    scheduled_by_this_execution = by_us,
                    deletion_date = date.map(|d| Timestamp::ceil(d).to_string()),
                    "key pending deletion"
                );
            }
            Ok(())
        },
    )
    .await?;
    progress.done = cursor.is_none();
    progress.cursor = cursor;
    progress.earliest_deletion_date = earliest.map(Timestamp::ceil);
    progress.latest_deletion_date = latest.map(Timestamp::ceil);
    if progress.done {
        let now = ctx.clock.now();
        let wait_until = next_check_time(now, earliest, &ctx.config).unwrap_or(now);
        let wait = wait_until.duration_since(now).unwrap_or(Duration::ZERO);
        progress.wait_until = Some(Timestamp::ceil(wait_until));
        progress.wait_required = wait.as_secs() >= MIN_WAIT_SECONDS;
        tracing::info!(
            custom_key_store_id = store_id.as_str(),
            execution = execution.as_str(),
            ticket = request.ticket_id.as_deref(),
            keys_scheduled = progress.keys_scheduled,
            keys_already_pending = progress.keys_already_pending,
            earliest_deletion_date = progress.earliest_deletion_date.map(|t| t.to_string()),
            latest_deletion_date = progress.latest_deletion_date.map(|t| t.to_string()),
            wait_until = progress.wait_until.map(|t| t.to_string()),
            "scheduling complete"
        );
    } else {
        progress.wait_until = None;
        progress.wait_required = false;
    }
    state.scheduling = Some(progress);
    Ok(state)
}

/// The `KeysRecentlyUsed` error of a page on which the guard stopped scheduling; logs every
/// refused key and counts the keys this execution has scheduled so far.
/// `KeysCreatedAfterQuarantine` for the keys of a page created since the quarantine began.
fn created_after_quarantine(
    store_id: &str,
    since: std::time::SystemTime,
    keys: &[&crate::keys::StoreKey],
    keys_already_scheduled: u64,
) -> DecommissionError {
    let when = |t: Option<std::time::SystemTime>| {
        t.map_or_else(
            || "an unknown time".to_owned(),
            |t| Timestamp::floor(t).to_string(),
        )
    };
    let mut sample = Vec::new();
    for key in keys {
        tracing::warn!(
            custom_key_store_id = store_id,
            key_arn = key.arn(),
            created = when(key.creation_date()).as_str(),
            "key created after the quarantine began: not scheduled"
        );
        push_capped(
            &mut sample,
            format!("{} (created at {})", key.arn(), when(key.creation_date())),
        );
    }
    let shown = sample.len();
    DecommissionError::KeysCreatedAfterQuarantine {
        store_id: store_id.to_owned(),
        since: when(Some(since)),
        count: keys.len() as u64,
        keys: sample,
        more: if keys.len() > shown {
            format!(", and {} more (see the logs)", keys.len() - shown)
        } else {
            String::new()
        },
        keys_already_scheduled,
    }
}

fn refusal(
    store_id: &str,
    request: &crate::request::DecommissionRequest,
    progress: &SchedulingProgress,
    keys: &[crate::keys::StoreKey],
    steps: &[KeyStep],
) -> crate::error::DecommissionError {
    let mut recently_used = Vec::new();
    let mut scheduled_on_page = 0;
    let mut skipped = 0;
    for (key, step) in keys.iter().zip(steps) {
        match step {
            KeyStep::RecentlyUsed(last_use) => {
                tracing::warn!(
                    custom_key_store_id = store_id,
                    key_id = key.key_id(),
                    key_arn = key.arn(),
                    last_use = last_use.describe().as_str(),
                    min_days_since_last_use = request.min_days_since_last_use,
                    "key used too recently: not scheduled"
                );
                recently_used.push(last_use.clone());
            }
            KeyStep::Done(KeyOutcome::ScheduledByThisExecution { .. }) => scheduled_on_page += 1,
            KeyStep::Done(_) => {}
            KeyStep::Skipped => skipped += 1,
        }
    }
    let keys_already_scheduled = progress.keys_scheduled + scheduled_on_page;
    tracing::warn!(
        custom_key_store_id = store_id,
        keys_recently_used = recently_used.len(),
        keys_left_unchecked_on_page = skipped,
        keys_already_scheduled,
        "last-use guard stopped scheduling"
    );
    recently_used_error(
        store_id,
        request.min_days_since_last_use,
        recently_used.len() as u64,
        &recently_used,
        keys_already_scheduled,
    )
}
