//! delete-store: delete the DISCONNECTED, empty store and write the final report.
//! `CustomKeyStoreHasCMKsException` passes through (the state machine goes back to checking
//! keys); `CustomKeyStoreNotFoundException` after this execution saw the store DISCONNECTED
//! means an earlier attempt deleted it: success.

use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::report::{Outcome, Report};
use crate::state::DecommissionState;
use crate::steps::{require_planned_store, StepContext};
use crate::store;

/// Deletes the store.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    _deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    let request = state.require_real_run()?.clone();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    if !state.disconnect.as_ref().is_some_and(|d| d.disconnected) {
        return Err(DecommissionError::invalid_state(
            "Disconnect.Disconnected is not true (disconnect-store has not finished)",
        ));
    }
    let execution = state.execution.as_ref().map(|e| e.id.clone());
    let outcome = match store::delete(&ctx.kms, &ctx.pacing, &store_id).await {
        Ok(()) => Outcome::Deleted,
        Err(err) if err.kms_code() == Some("CustomKeyStoreNotFoundException") => {
            Outcome::AlreadyDeleted
        }
        Err(err) => return Err(err),
    };
    let report = Report::decommissioned(&state, outcome, ctx.clock.now())?;
    tracing::info!(
        custom_key_store_id = store_id.as_str(),
        execution = execution.as_deref(),
        ticket = request.ticket_id.as_deref(),
        requested_by = request.requested_by.as_deref(),
        outcome = ?outcome,
        keys_deleted = report.keys_deleted,
        follow_ups = ?report.follow_ups,
        "custom key store deleted"
    );
    state.report = Some(report);
    Ok(state)
}
