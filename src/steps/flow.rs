//! The order of the workflow's steps and what each requires of the state document it is
//! handed: the checks every step makes before it acts.

use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::error::DecommissionError;
use crate::state::DecommissionState;

/// The steps, named after their binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Step {
    /// `plan-decommission`.
    PlanDecommission,
    /// `request-approval`: records the task token the state machine waits on.
    RequestApproval,
    /// `record-approval`: records who approved, refusing the requester.
    RecordApproval,
    /// `quarantine-store`: disconnects the store, reads CloudTrail for anyone trying its keys,
    /// connects it again.
    QuarantineStore,
    /// `ensure-store-connected`.
    EnsureStoreConnected,
    /// `schedule-key-deletion`.
    ScheduleKeyDeletion,
    /// `check-keys-deleted`.
    CheckKeysDeleted,
    /// `disconnect-store`.
    DisconnectStore,
    /// `delete-store`.
    DeleteStore,
}

impl Step {
    /// Every step in flow order.
    pub const ALL: [Step; 9] = [
        Step::PlanDecommission,
        Step::RequestApproval,
        Step::RecordApproval,
        Step::QuarantineStore,
        Step::EnsureStoreConnected,
        Step::ScheduleKeyDeletion,
        Step::CheckKeysDeleted,
        Step::DisconnectStore,
        Step::DeleteStore,
    ];

    /// The binary (and local function) name.
    pub fn binary_name(self) -> &'static str {
        self.into()
    }

    /// Checks that `state` is a document this step may act on: a valid input for the plan; for
    /// every later step a real run (never a dry run) of the planned store with every section the
    /// steps before it in the flow write. `InvalidStateDocument` names what is missing.
    pub fn check_document(self, state: &DecommissionState) -> Result<(), DecommissionError> {
        if self == Step::PlanDecommission {
            return crate::request::DecommissionRequest::from_input(&state.input).map(|_| ());
        }
        state.require_real_run()?;
        require_planned_store(state)?;
        let order = |step: Step| Step::ALL.iter().position(|s| *s == step);
        let after = |step: Step| order(self) > order(step);
        let require = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(DecommissionError::invalid_state(what))
            }
        };
        if after(Step::PlanDecommission) {
            require(
                state.plan.as_ref().is_some_and(|p| p.done),
                "Plan.Done is not true (plan-decommission has not finished)",
            )?;
        }
        if matches!(self, Step::RequestApproval | Step::RecordApproval) {
            require(
                state.approval.as_ref().is_some_and(|a| a.required),
                "Approval.Required is not true: this run does not wait for approval",
            )?;
        }
        if after(Step::RecordApproval) {
            require(
                state
                    .approval
                    .as_ref()
                    .is_none_or(|a| !a.required || a.approved),
                "Approval.Approved is not true (record-approval has not recorded an approval)",
            )?;
        }
        if self == Step::QuarantineStore {
            require(
                state.quarantine.as_ref().is_some_and(|q| q.required),
                "Quarantine.Required is not true: this run has no quarantine",
            )?;
        }
        if after(Step::QuarantineStore) {
            require(
                state
                    .quarantine
                    .as_ref()
                    .is_none_or(|q| !q.required || q.phase == crate::state::QuarantinePhase::Done),
                "Quarantine.Phase is not Done (quarantine-store has not finished the quarantine)",
            )?;
        }
        if after(Step::EnsureStoreConnected) {
            state.execution_id()?;
            require(
                state.connection.as_ref().is_some_and(|c| c.ready),
                "Connection.Ready is not true (ensure-store-connected has not made the store ready)",
            )?;
        }
        if after(Step::ScheduleKeyDeletion) {
            require(
                state.scheduling.as_ref().is_some_and(|s| s.done),
                "Scheduling.Done is not true (schedule-key-deletion has not finished)",
            )?;
        }
        if after(Step::CheckKeysDeleted) {
            require(
                state.deletion.as_ref().is_some_and(|d| d.all_deleted),
                "Deletion.AllDeleted is not true: the store is disconnected only after \
                 check-keys-deleted found every key deleted (disconnecting earlier orphans \
                 CloudHSM key material)",
            )?;
        }
        if after(Step::DisconnectStore) {
            require(
                state.disconnect.as_ref().is_some_and(|d| d.disconnected),
                "Disconnect.Disconnected is not true (disconnect-store has not finished)",
            )?;
        }
        Ok(())
    }
}

/// When the next key check should run, given the earliest DeletionDate among pending keys:
/// `None` when a deletion is due within the lead (`store_connection_lead_seconds`, at least
/// `key_deletion_poll_seconds`: check now, then poll, reconnecting a CloudHSM store each time it
/// is found not CONNECTED); otherwise the lead before the earliest DeletionDate, but no later
/// than `connection_check_seconds` from now (keys and a CloudHSM store's connection are checked
/// at least that often during the waiting period).
pub fn next_check_time(
    now: SystemTime,
    earliest_pending_deletion: Option<SystemTime>,
    config: &Config,
) -> Option<SystemTime> {
    let earliest = earliest_pending_deletion?;
    let lead = config
        .key_deletion_poll_seconds
        .max(config.store_connection_lead_seconds);
    let wake = earliest.checked_sub(Duration::from_secs(lead))?;
    if wake <= now {
        return None;
    }
    Some(wake.min(now + Duration::from_secs(config.connection_check_seconds)))
}

/// Checks that the document's store is the request's store (a later step never acts on
/// another store than the one planned).
pub fn require_planned_store(
    state: &DecommissionState,
) -> Result<&crate::model::StoreSummary, DecommissionError> {
    let request = state.require_request()?;
    let store = state.require_store()?;
    if store.custom_key_store_id != request.custom_key_store_id {
        return Err(DecommissionError::invalid_state(format!(
            "Store.CustomKeyStoreId {} differs from Request.CustomKeyStoreId {}",
            store.custom_key_store_id, request.custom_key_store_id
        )));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_next_check_comes_the_connection_lead_before_the_earliest_deletion_but_at_least_daily() {
        let config = Config::default();
        assert_eq!(config.store_connection_lead_seconds, 6 * 3600);
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let day = Duration::from_secs(86_400);
        assert_eq!(next_check_time(now, None, &config), None);
        assert_eq!(next_check_time(now, Some(now + hour / 2), &config), None);
        assert_eq!(next_check_time(now, Some(now - hour), &config), None);
        // Within the six-hour lead: check now (and then every poll).
        assert_eq!(next_check_time(now, Some(now + 3 * hour), &config), None);
        assert_eq!(
            next_check_time(now, Some(now + 8 * hour), &config),
            Some(now + 2 * hour)
        );
        // A lead shorter than the poll interval: one poll before.
        let short = Config {
            store_connection_lead_seconds: 60,
            ..Config::default()
        };
        assert_eq!(
            next_check_time(now, Some(now + 3 * hour), &short),
            Some(now + 2 * hour)
        );
        assert_eq!(
            next_check_time(now, Some(now + 30 * day), &config),
            Some(now + day)
        );
    }

    #[test]
    fn binary_names_match_the_contract() {
        let names: Vec<_> = Step::ALL.iter().map(|s| s.binary_name()).collect();
        assert_eq!(
            names,
            [
                "plan-decommission",
                "request-approval",
                "record-approval",
                "quarantine-store",
                "ensure-store-connected",
                "schedule-key-deletion",
                "check-keys-deleted",
                "disconnect-store",
                "delete-store"
            ]
        );
    }
}
