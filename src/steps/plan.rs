//! plan-decommission: validate the input, describe the store, check the confirmation, and
//! inventory the store's keys page by page with each key's last use. Reads only; a dry run ends
//! here with its report. When the plan is done, the last-use guard refuses (`KeysRecentlyUsed`)
//! if any key to schedule was used too recently (not in a dry run, whose report says it instead).

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::inventory::{per_call, scan_pages, Page, Paging};
use crate::keys::TargetStore;
use crate::model::push_capped;
use crate::report::left_behind;
use crate::request::DecommissionRequest;
use crate::state::{ApprovalStatus, DecommissionState, PlanProgress, QuarantineStatus};
use crate::steps::context::StepContext;
use crate::store;
use crate::usage::{key_last_use, UsageGuard, UsageSummary};

/// Runs one batch of the plan.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    let request = DecommissionRequest::from_input(&state.input)?;
    ctx.policy.check(&request)?;
    let store_id = request.custom_key_store_id.clone();
    let store = store::describe(&ctx.kms, &store_id).await?;
    request.confirm_store_name(&store.custom_key_store_name)?;

    let continuing = state.request.as_ref() == Some(&request)
        && state
            .plan
            .as_ref()
            .is_some_and(|p| !p.done && p.cursor.is_some());
    let guard = UsageGuard::new(request.min_days_since_last_use);
    let mut plan = match state.plan.take() {
        Some(plan) if continuing => plan,
        _ => PlanProgress {
            left_behind: left_behind(&store),
            ..PlanProgress::default()
        },
    };
    let mut usage = match plan.last_use.take() {
        Some(usage) if usage.guard() == guard => usage,
        _ => UsageSummary::new(guard),
    };
    let execution = state.execution.as_ref().map(|e| e.id.clone());
    let target = TargetStore::new(&store);
    let cursor = scan_pages(
        &ctx.kms,
        &target,
        plan.cursor.take(),
        Paging {
            deadline: &deadline,
            margin: ctx.config.deadline_margin,
            max_page_size: ctx.config.list_keys_page_size,
            per_store_key: per_call(ctx.config.pacing.custom_key_store_rps),
        },
        async |page: Page| {
            let last_uses: Vec<_> = stream::iter(&page.keys)
                .map(|key| key_last_use(&ctx.kms, key))
                .buffered(ctx.kms.pacing().concurrency)
                .try_collect()
                .await?;
            let now = ctx.clock.now();
            plan.keys_scanned += page.scanned;
            for (key, last_use) in page.keys.iter().zip(last_uses) {
                let described_use = last_use.as_ref().map(|u| u.describe());
                let recently_used = match last_use {
                    Some(last_use) => usage.record(last_use, !key.is_pending_deletion(), now)?,
                    None => false,
                };
                plan.keys_in_store += 1;
                *plan
                    .keys_by_state
                    .entry(key.state().to_string())
                    .or_default() += 1;
                if !push_capped(&mut plan.keys, key.sample()) {
                    plan.keys_truncated = true;
                }
                tracing::info!(
                    custom_key_store_id = store_id.as_str(),
                    execution = execution.as_deref(),
                    key_id = key.key_id(),
                    key_arn = key.arn(),
                    key_state = key.state().as_str(),
                    xks_key_id = key.xks_key_id(),
                    last_use = described_use.as_deref(),
                    recently_used,
                    "store key"
                );
            }
            Ok(())
        },
    )
    .await?;
    plan.done = cursor.is_none();
    plan.cursor = cursor;
    if plan.done {
        tracing::info!(
            custom_key_store_id = store_id.as_str(),
            custom_key_store_type = store.custom_key_store_type.as_str(),
            connection_state = store.connection_state.as_str(),
            execution = execution.as_deref(),
            ticket = request.ticket_id.as_deref(),
            requested_by = request.requested_by.as_deref(),
            dry_run = request.dry_run,
            keys_scanned = plan.keys_scanned,
            keys_in_store = plan.keys_in_store,
            keys_by_state = ?plan.keys_by_state,
            min_days_since_last_use = usage.min_days_since_last_use,
            keys_recently_used = usage.keys_recently_used,
            keys_unknown_before_tracking = usage.keys_unknown_before_tracking,
            last_use_verdict = usage.verdict.as_str(),
            "plan complete"
        );
    }
    let refusal = (plan.done && !request.dry_run && usage.keys_recently_used > 0)
        .then(|| usage.refusal(&store_id, 0));
    if usage.verdict.is_empty() {
        usage.verdict = usage.verdict_sentence();
    }
    plan.last_use = Some(usage);
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    let dry_run_done = request.dry_run && plan.done;
    if plan.done && !request.dry_run {
        let required = request.needs_approval(ctx.config.approval_required_for_console_and_webhook);
        require_requester(ctx, &request)?;
        state.approval = Some(ApprovalStatus {
            required,
            timeout_seconds: ctx.config.approval_timeout_seconds,
            ..ApprovalStatus::default()
        });
        let days = request
            .quarantine_days
            .unwrap_or(ctx.config.default_quarantine_days);
        state.quarantine = Some(QuarantineStatus {
            required: days > 0,
            days,
            ..QuarantineStatus::default()
        });
    }
    state.request = Some(request);
    state.store = Some(store);
    state.plan = Some(plan);
    if dry_run_done {
        state.report = Some(state.dry_run_report(ctx.clock.now())?);
    }
    Ok(state)
}

/// A run that needs approval must say who asked (`RequestedBy`): the approver must be someone
/// else, which cannot be checked without knowing who asked.
pub(crate) fn require_requester(
    ctx: &StepContext,
    request: &DecommissionRequest,
) -> Result<(), DecommissionError> {
    if request.needs_approval(ctx.config.approval_required_for_console_and_webhook)
        && request.requested_by.is_none()
    {
        return Err(DecommissionError::invalid_input(
            "RequestedBy",
            "required when the run needs approval: the approver must be someone else, which \
             cannot be checked without knowing who asked",
        ));
    }
    Ok(())
}
