//! quarantine-store: before any key is scheduled, make the store's keys unusable, reversibly,
//! and look for anyone who still needs them (docs/quarantine.md).
//!
//! The KMS documentation of `DeleteCustomKeyStore` points to disconnecting the store as the
//! reversible alternative to deleting its keys, and `GetKeyLastUsage`'s says not to trust last
//! use alone: make the key unusable and watch CloudTrail for the failures. So:
//!
//! 1. `Disconnecting`: DisconnectCustomKeyStore (one call; every cryptographic request for the
//!    store's keys now fails with `KMSInvalidStateException`, recorded in CloudTrail), polled
//!    until DISCONNECTED. The window starts at the call.
//! 2. `Watching`: for `Days`, read CloudTrail (LookupEvents, paced under its 2/s quota; or, when
//!    `CLOUDTRAIL_LOG_GROUP_NAME` names the trail's log group, Logs Insights queries of many keys
//!    each, [`logs_insights`](crate::logs_insights)) for every
//!    attempt to use a key of the store, at least every `QUARANTINE_CHECK_SECONDS`, up to
//!    `CLOUDTRAIL_DELIVERY_MARGIN_SECONDS` ago (events show minutes after the call); the last
//!    check reads up to the quarantine's end, once that margin has passed.
//! 3. `Reconnecting`: ConnectCustomKeyStore (if the store was CONNECTED before), polled until
//!    CONNECTED. If anyone was found, the step then fails `KeysNeededDuringQuarantine` naming each
//!    attempt: nothing was scheduled. If nobody was found, one last check (`Watching` again, once
//!    the delivery margin has passed) reads CloudTrail up to the reconnect, so that requests
//!    refused while the store was still disconnected or connecting count too; then the
//!    quarantine is `Done` and the run goes on (ensure-store-connected handles a store that does
//!    not connect, as for any run).
//!
//! One action per invocation; `Quarantine.Next` tells the state machine what to do next.
//!
//! The progress lives in the run ledger ([`QuarantineRecord`]), written by this step alone with
//! a version check; the state document carries a copy for the state machine's choices. Every
//! invocation starts from the ledger's copy, never the document's: a document handed to the
//! function by anyone else cannot end the quarantine early, drop what it found or skip keys, and
//! the steps after it act only once the ledger shows the quarantine `Done`
//! ([`caller`](crate::steps::caller)).

use std::time::Duration;

use aws_sdk_kms::types::ConnectionStateType;
use aws_smithy_types::DateTime;

use crate::clock::seconds_between;
use crate::cloudtrail::CloudTrail;
use crate::deadline::Deadline;
use crate::error::{DecommissionError, KmsErrorCode};
use crate::inventory::{per_call, scan_page};
use crate::key_use::{scan_key_use, KeyUse, ScanWindow};
use crate::keys::TargetStore;
use crate::ledger::QuarantineRecord;
use crate::logs_insights::{scan_key_use_insights, LogsInsights};
use crate::model::{push_capped, Timestamp};
use crate::state::{
    DecommissionState, QuarantineNext, QuarantinePhase, QuarantineScan, QuarantineStatus,
};
use crate::steps::context::StepContext;
use crate::steps::flow::{require_planned_store, Step};
use crate::store;

/// Runs one action of the quarantine.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::QuarantineStore.check_document(&state)?;
    state.require_real_run()?;
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    let execution = state.execution_id()?.to_owned();
    let handed = state
        .quarantine
        .take()
        .ok_or_else(|| DecommissionError::invalid_state("no Quarantine section"))?;
    let (mut quarantine, version) = match ctx.ledger.quarantine(&store_id, &execution).await? {
        Some(recorded) => (
            serde_json::from_str::<QuarantineStatus>(&recorded.json).map_err(|e| {
                DecommissionError::invalid_state(format!(
                    "the ledger's quarantine record of run {execution} is unreadable: {e}"
                ))
            })?,
            recorded.version,
        ),
        None => (first_status(ctx, &state, &handed)?, 0),
    };
    quarantine.poll_after_seconds = ctx.config.store_poll_seconds;
    let now = Timestamp::floor(ctx.clock.now());
    let result = match quarantine.phase {
        QuarantinePhase::Disconnecting => disconnect(ctx, &mut state, &mut quarantine, now).await,
        QuarantinePhase::Watching => watch(ctx, &mut state, &mut quarantine, now, &deadline).await,
        QuarantinePhase::Reconnecting => reconnect(ctx, &mut state, &mut quarantine, now).await,
        QuarantinePhase::Done => {
            quarantine.next = QuarantineNext::Done;
            Ok(())
        }
    };
    tracing::info!(
        custom_key_store_id = store_id.as_str(),
        phase = ?quarantine.phase,
        next = ?quarantine.next,
        found = quarantine.found_count,
        checks = quarantine.checks,
        "quarantine"
    );
    let record = QuarantineRecord {
        json: serde_json::to_string(&quarantine).map_err(|e| {
            DecommissionError::invalid_state(format!("the quarantine cannot be recorded: {e}"))
        })?,
        phase: phase_name(quarantine.phase),
        started_at: quarantine.started_at,
        version: version + 1,
    };
    if !ctx
        .ledger
        .save_quarantine(&store_id, &execution, &record, now)
        .await?
    {
        // Another invocation recorded progress since this one read it: the retry starts from
        // that progress.
        return Err(DecommissionError::LedgerUnavailable {
            operation: "UpdateItem",
            code: "QuarantineRecordChanged".into(),
            message: format!(
                "the quarantine record of run {execution} changed during this invocation (version {version} was read)"
            ),
        });
    }
    state.quarantine = Some(quarantine);
    result.map(|()| state)
}

/// The progress of a quarantine that has not begun: only `Days`, which must be what the run's
/// own request (the execution input, checked by the caller) asks for, is taken from the
/// document.
fn first_status(
    ctx: &StepContext,
    state: &DecommissionState,
    handed: &QuarantineStatus,
) -> Result<QuarantineStatus, DecommissionError> {
    let days = state
        .require_request()?
        .quarantine_days
        .unwrap_or(ctx.config.default_quarantine_days);
    if !handed.required || handed.days != days || days == 0 {
        return Err(DecommissionError::invalid_state(format!(
            "Quarantine.Days {} (Required {}) is not the run's own QuarantineDays {days}",
            handed.days, handed.required
        )));
    }
    Ok(QuarantineStatus {
        required: true,
        days,
        ..QuarantineStatus::default()
    })
}

/// The phase as the ledger records it (its name in the state document).
fn phase_name(phase: QuarantinePhase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{phase:?}"))
}

/// Disconnects the store and waits for DISCONNECTED; then the watch begins.
async fn disconnect(
    ctx: &StepContext,
    state: &mut DecommissionState,
    q: &mut QuarantineStatus,
    now: Timestamp,
) -> Result<(), DecommissionError> {
    let store_id = require_planned_store(state)?.custom_key_store_id.clone();
    let phase_since = *q.phase_since.get_or_insert(now);
    let described = store::describe(&ctx.kms, &store_id).await?;
    let connection = described.connection_state.clone();
    state.store = Some(described);
    match connection {
        ConnectionStateType::Disconnected => {
            q.was_connected.get_or_insert(false);
            let started = *q.started_at.get_or_insert(now);
            q.ends_at = Some(add_seconds(
                started,
                u64::from(q.days) * ctx.config.quarantine_day_seconds,
            ));
            q.phase = QuarantinePhase::Watching;
            q.phase_since = None;
            schedule_next_check(ctx, q, now);
            tracing::warn!(
                custom_key_store_id = store_id.as_str(),
                days = q.days,
                ends_at = ?q.ends_at,
                "store disconnected for its quarantine: its keys are unusable until it is connected again"
            );
            return Ok(());
        }
        ConnectionStateType::Disconnecting => {}
        ConnectionStateType::Connected
        | ConnectionStateType::Connecting
        | ConnectionStateType::Failed => {
            q.was_connected.get_or_insert(matches!(
                connection,
                ConnectionStateType::Connected | ConnectionStateType::Connecting
            ));
            match store::disconnect(&ctx.kms, &store_id).await {
                Ok(()) => {
                    q.started_at.get_or_insert(now);
                }
                Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreInvalidState) => {}
                Err(err) => return Err(err),
            }
        }
        other => {
            return Err(DecommissionError::unexpected(
                "DescribeCustomKeyStores",
                format!("store {store_id} has unknown ConnectionState {other}"),
            ))
        }
    }
    let waited = seconds_between(phase_since.time(), now.time());
    if waited > ctx.config.disconnect_timeout_seconds {
        return Err(DecommissionError::DisconnectTimedOut {
            store_id,
            state: connection.as_str().to_owned(),
            waited_seconds: waited,
        });
    }
    q.next = QuarantineNext::Poll;
    Ok(())
}

/// Reads CloudTrail for attempts to use the store's keys: one batch of a scan per invocation.
async fn watch(
    ctx: &StepContext,
    state: &mut DecommissionState,
    q: &mut QuarantineStatus,
    now: Timestamp,
    deadline: &Deadline,
) -> Result<(), DecommissionError> {
    let (Some(started), Some(ends)) = (q.started_at, q.ends_at) else {
        return Err(DecommissionError::invalid_state(
            "Quarantine.StartedAt and EndsAt are required while watching",
        ));
    };
    let reader = match (&ctx.insights, &ctx.cloudtrail) {
        (Some(insights), _) => Reader::Insights(insights),
        (None, Some(cloudtrail)) => Reader::LookupEvents(cloudtrail),
        (None, None) => {
            return Err(DecommissionError::InvalidConfiguration {
                variable: "CloudTrail".into(),
                reason: "quarantine-store has no CloudTrail client".into(),
            })
        }
    };
    let margin = ctx.config.cloudtrail_delivery_margin_seconds;
    let mut scan = match q.scan.take() {
        Some(scan) => scan,
        None => {
            // Woken before the check is due: wait on for it.
            if q.next_check_at.is_some_and(|at| now < at) {
                q.next = QuarantineNext::WaitForCheck;
                return Ok(());
            }
            // A new scan reads up to `margin` ago, never past the quarantine's end.
            let readable = sub_seconds(now, margin);
            if readable <= started {
                schedule_next_check(ctx, q, now);
                return Ok(());
            }
            QuarantineScan {
                list_marker: None,
                in_page: Default::default(),
                insights: None,
                window_end: readable.min(ends),
            }
        }
    };
    let store = state.require_store()?.clone();
    let target = TargetStore::new(&store);
    let window = ScanWindow {
        start: to_datetime(started),
        end: to_datetime(scan.window_end),
    };
    let per_lookup = per_call(crate::cloudtrail::DEFAULT_LOOKUPS_PER_SECOND) * 4;
    loop {
        let page = scan_page(
            &ctx.kms,
            &target,
            scan.list_marker.as_deref(),
            ctx.config.list_keys_page_size,
        )
        .await?;
        let arns: Vec<String> = page.keys.iter().map(|k| k.arn().to_owned()).collect();
        let more_in_page = match reader {
            Reader::LookupEvents(cloudtrail) => {
                let batch = scan_key_use(
                    cloudtrail,
                    &arns,
                    window,
                    scan.in_page.clone(),
                    deadline,
                    (per_lookup, ctx.config.deadline_margin),
                )
                .await
                .map_err(cloudtrail_unavailable)?;
                q.lookups += u64::from(batch.lookups);
                q.events_scanned += batch.events_scanned;
                q.throttled += u64::from(batch.throttled);
                if batch.unreadable > 0 {
                    tracing::warn!(
                        unreadable = batch.unreadable,
                        "CloudTrail returned events without a readable record"
                    );
                }
                record_found(q, batch.found);
                batch.cursor.map(|in_page| scan.in_page = in_page).is_some()
            }
            Reader::Insights(insights) => {
                let result = scan_key_use_insights(
                    insights,
                    &arns,
                    window,
                    scan.insights.clone().unwrap_or_default(),
                    deadline,
                    (per_lookup, ctx.config.deadline_margin),
                )
                .await;
                let batch = match result {
                    Ok(batch) => batch,
                    Err(e) => {
                        // Keep the scan (and the query, unless it ended): the retry goes on
                        // from here.
                        q.scan = Some(scan);
                        return Err(cloudtrail_unavailable(e.into_call_error()));
                    }
                };
                q.queries += u64::from(batch.queries);
                q.events_scanned += batch.records_scanned;
                q.throttled += u64::from(batch.throttled);
                if batch.capped > 0 {
                    tracing::warn!(
                        capped = batch.capped,
                        "Logs Insights returned its row cap for one key in one second: the uses found are a lower bound"
                    );
                }
                record_found(q, batch.found);
                scan.insights = batch.cursor;
                scan.insights.is_some()
            }
        };
        let batch_cursor = more_in_page.then_some(());
        match (batch_cursor, page.next_cursor) {
            (Some(()), _) => {
                q.scan = Some(scan);
                q.next = QuarantineNext::Continue;
                return Ok(());
            }
            (None, Some(next_page)) => {
                scan.list_marker = Some(next_page);
                scan.in_page = Default::default();
                scan.insights = None;
                if !deadline.allows(per_lookup, ctx.config.deadline_margin) {
                    q.scan = Some(scan);
                    q.next = QuarantineNext::Continue;
                    return Ok(());
                }
            }
            (None, None) => break,
        }
    }
    // The scan read every key up to its window's end.
    q.checks += 1;
    q.checked_through = Some(scan.window_end);
    let reconnected = q.reconnected_at.is_some();
    if q.found_count > 0 && reconnected {
        // Found by the last check: the store is as the reconnect left it.
        return Err(keys_needed(state, q, &store.custom_key_store_id));
    }
    if q.found_count > 0 || scan.window_end >= ends {
        if reconnected {
            q.phase = QuarantinePhase::Done;
            q.next = QuarantineNext::Done;
        } else {
            q.phase = QuarantinePhase::Reconnecting;
            q.phase_since = None;
            q.next = QuarantineNext::Continue;
        }
    } else {
        schedule_next_check(ctx, q, now);
    }
    Ok(())
}

/// Where the quarantine reads CloudTrail's events.
#[derive(Clone, Copy)]
enum Reader<'a> {
    /// CloudTrail's event history, one key per LookupEvents request.
    LookupEvents(&'a CloudTrail),
    /// The trail's CloudWatch Logs group, many keys per Logs Insights query.
    Insights(&'a LogsInsights),
}

/// A failed CloudTrail or Logs Insights read: the retried `CloudTrailUnavailable`.
pub(super) fn cloudtrail_unavailable(e: crate::aws_error::AwsCallError) -> DecommissionError {
    DecommissionError::CloudTrailUnavailable {
        operation: e.operation,
        code: e.code,
        message: e.message,
    }
}

/// Keeps the attempts found (a capped sample; every one is logged).
fn record_found(q: &mut QuarantineStatus, found: Vec<KeyUse>) {
    for attempt in found {
        if q.found.iter().any(|f| f.event_id == attempt.event_id) {
            continue;
        }
        tracing::warn!(
            key = attempt.key_arn.as_str(),
            operation = attempt.operation.as_str(),
            principal = attempt.principal.as_deref(),
            source = attempt.source.as_deref(),
            time = attempt.time.as_deref(),
            event_id = attempt.event_id.as_str(),
            error_code = attempt.error_code.as_deref(),
            "a key of the quarantined store was used"
        );
        q.found_count += 1;
        push_capped(&mut q.found, attempt);
    }
}

/// The next check: a check interval from now, but no later than when the quarantine's end
/// becomes readable in CloudTrail.
fn schedule_next_check(ctx: &StepContext, q: &mut QuarantineStatus, now: Timestamp) {
    let margin = ctx.config.cloudtrail_delivery_margin_seconds;
    let last = q.ends_at.map(|ends| add_seconds(ends, margin));
    let regular = add_seconds(now, ctx.config.quarantine_check_seconds);
    q.next_check_at = Some(last.map_or(regular, |last| regular.min(last)).max(now));
    q.next = QuarantineNext::WaitForCheck;
}

/// Connects the store again (if it was connected), then ends the quarantine.
async fn reconnect(
    ctx: &StepContext,
    state: &mut DecommissionState,
    q: &mut QuarantineStatus,
    now: Timestamp,
) -> Result<(), DecommissionError> {
    let store_id = require_planned_store(state)?.custom_key_store_id.clone();
    let phase_since = *q.phase_since.get_or_insert(now);
    let described = store::describe(&ctx.kms, &store_id).await?;
    let connection = described.connection_state.clone();
    state.store = Some(described);
    let wanted = q.was_connected.unwrap_or(true);
    let waited = seconds_between(phase_since.time(), now.time());
    let settled = match connection {
        ConnectionStateType::Connected => true,
        _ if !wanted => true,
        ConnectionStateType::Disconnected => {
            match store::connect(&ctx.kms, &store_id).await {
                Ok(()) => false,
                Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreInvalidState) => false,
                // A connect KMS refuses at once: the store stays disconnected; a finding is
                // still reported, a quiet quarantine leaves it to ensure-store-connected.
                Err(err) if q.found_count > 0 => {
                    tracing::error!(error = %err, "the quarantined store could not be connected again");
                    true
                }
                Err(_) => true,
            }
        }
        ConnectionStateType::Connecting | ConnectionStateType::Disconnecting => {
            waited > ctx.config.connect_timeout_seconds
        }
        // FAILED: ensure-store-connected knows how to recover it; a finding is reported now.
        _ => true,
    };
    if !settled {
        q.next = QuarantineNext::Poll;
        return Ok(());
    }
    if q.found_count > 0 {
        return Err(keys_needed(state, q, &store_id));
    }
    // One last check, up to now: requests refused while the store was reconnecting count too.
    q.reconnected_at = Some(now);
    q.ends_at = Some(now);
    q.phase = QuarantinePhase::Watching;
    q.phase_since = None;
    schedule_next_check(ctx, q, now);
    Ok(())
}

/// `KeysNeededDuringQuarantine` for the attempts found, saying where the store's connection is.
fn keys_needed(
    state: &DecommissionState,
    q: &QuarantineStatus,
    store_id: &str,
) -> DecommissionError {
    let wanted = q.was_connected.unwrap_or(true);
    let connected = state.store.as_ref().map(|s| s.connection_state.clone());
    let reconnected = match connected {
        Some(ConnectionStateType::Connected) => "The store is CONNECTED again.".to_owned(),
        _ if !wanted => "The store was not connected before the quarantine and stays so.".to_owned(),
        other => format!(
            "The store could not be connected again ({}): connect it (ConnectCustomKeyStore) before its users retry.",
            other.map_or_else(|| "unknown".to_owned(), |c| c.as_str().to_owned())
        ),
    };
    let uses = q.found.iter().map(describe_use).collect();
    let shown = q.found.len() as u64;
    DecommissionError::KeysNeededDuringQuarantine {
        store_id: store_id.to_owned(),
        count: q.found_count,
        uses,
        more: if q.found_count > shown {
            format!(", and {} more (see the logs)", q.found_count - shown)
        } else {
            String::new()
        },
        reconnected,
    }
}

/// `key: Operation by principal from source at time (CloudTrail event id, error)`.
fn describe_use(u: &KeyUse) -> String {
    format!(
        "{}: {} by {} from {} at {} (CloudTrail event {}{})",
        u.key_arn,
        u.operation,
        u.principal.as_deref().unwrap_or("an unnamed caller"),
        u.source.as_deref().unwrap_or("an unknown source"),
        u.time.as_deref().unwrap_or("an unknown time"),
        u.event_id,
        u.error_code
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    )
}

fn add_seconds(t: Timestamp, seconds: u64) -> Timestamp {
    Timestamp::floor(t.time() + Duration::from_secs(seconds))
}

fn sub_seconds(t: Timestamp, seconds: u64) -> Timestamp {
    Timestamp::floor(
        t.time()
            .checked_sub(Duration::from_secs(seconds))
            .unwrap_or(std::time::UNIX_EPOCH),
    )
}

fn to_datetime(t: Timestamp) -> DateTime {
    DateTime::from(t.time())
}
