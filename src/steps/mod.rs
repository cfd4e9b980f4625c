//! The workflow's steps, one module each. Every step takes the whole state document and returns
//! it updated; each is idempotent and safe to re-run after a crash at any point.

use std::sync::Arc;

use std::time::{Duration, SystemTime};

use aws_sdk_kms::Client;

use crate::clock::Clock;
use crate::config::Config;
use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::pacing::Pacing;
use crate::state::DecommissionState;

pub mod cancel_decommission;
pub mod check_keys_deleted;
pub mod delete_store;
pub mod disconnect_store;
pub mod ensure_store_connected;
pub mod plan;
pub mod schedule_key_deletion;

/// What every step needs besides the state document: clients, configuration, pacing, time.
/// Built once per Lambda instance.
#[derive(Debug)]
pub struct StepContext {
    /// The KMS client.
    pub kms: Client,
    /// Handler configuration.
    pub config: Config,
    /// Request pacing, shared by the invocations of this instance (and told of throttling by
    /// the KMS client built with [`crate::sdk_config::kms_client`]).
    pub pacing: Arc<Pacing>,
    /// The clock.
    pub clock: Clock,
}

impl StepContext {
    /// A context with pacing from `config` and the system clock.
    pub fn new(kms: Client, config: Config) -> Self {
        Self {
            pacing: Arc::new(Pacing::new(&config.pacing)),
            kms,
            config,
            clock: Clock::system(),
        }
    }

    /// The functions' context: a KMS client from `sdk` whose throttled attempts slow the pacing.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, config: Config) -> Self {
        let pacing = Arc::new(Pacing::new(&config.pacing));
        Self {
            kms: crate::sdk_config::kms_client(sdk, pacing.clone()),
            pacing,
            config,
            clock: Clock::system(),
        }
    }
}

/// The six steps, named after their binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `plan-decommission`.
    PlanDecommission,
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
    pub const ALL: [Step; 6] = [
        Step::PlanDecommission,
        Step::EnsureStoreConnected,
        Step::ScheduleKeyDeletion,
        Step::CheckKeysDeleted,
        Step::DisconnectStore,
        Step::DeleteStore,
    ];

    /// The binary (and local function) name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Step::PlanDecommission => "plan-decommission",
            Step::EnsureStoreConnected => "ensure-store-connected",
            Step::ScheduleKeyDeletion => "schedule-key-deletion",
            Step::CheckKeysDeleted => "check-keys-deleted",
            Step::DisconnectStore => "disconnect-store",
            Step::DeleteStore => "delete-store",
        }
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

    /// Runs the step on a state document.
    pub async fn run(
        self,
        ctx: &StepContext,
        state: DecommissionState,
        deadline: Deadline,
    ) -> Result<DecommissionState, DecommissionError> {
        // Boxed: the six step futures nested in one type exceed the compiler's layout depth.
        match self {
            Step::PlanDecommission => Box::pin(plan::run(ctx, state, deadline)).await,
            Step::EnsureStoreConnected => {
                Box::pin(ensure_store_connected::run(ctx, state, deadline)).await
            }
            Step::ScheduleKeyDeletion => {
                Box::pin(schedule_key_deletion::run(ctx, state, deadline)).await
            }
            Step::CheckKeysDeleted => Box::pin(check_keys_deleted::run(ctx, state, deadline)).await,
            Step::DisconnectStore => Box::pin(disconnect_store::run(ctx, state, deadline)).await,
            Step::DeleteStore => Box::pin(delete_store::run(ctx, state, deadline)).await,
        }
    }
}

/// When the next key check should run, given the earliest DeletionDate among pending keys:
/// `None` when a deletion is due within `key_deletion_poll_seconds` (check now, then poll);
/// otherwise that long before the earliest DeletionDate, but no later than
/// `connection_check_seconds` from now (keys and a CloudHSM store's connection are checked
/// at least that often during the waiting period).
pub fn next_check_time(
    now: SystemTime,
    earliest_pending_deletion: Option<SystemTime>,
    config: &Config,
) -> Option<SystemTime> {
    let earliest = earliest_pending_deletion?;
    let wake = earliest.checked_sub(Duration::from_secs(config.key_deletion_poll_seconds))?;
    if wake <= now {
        return None;
    }
    Some(wake.min(now + Duration::from_secs(config.connection_check_seconds)))
}

/// Earlier of two optional times.
pub(crate) fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Later of two optional times.
pub(crate) fn max_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Checks that the document's store is the request's store (a later step never acts on
/// another store than the one planned).
pub(crate) fn require_planned_store(
    state: &DecommissionState,
) -> Result<&crate::state::StoreSummary, DecommissionError> {
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
    fn the_next_check_comes_one_poll_before_the_earliest_deletion_but_at_least_daily() {
        let config = Config::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let day = Duration::from_secs(86_400);
        assert_eq!(next_check_time(now, None, &config), None);
        assert_eq!(next_check_time(now, Some(now + hour / 2), &config), None);
        assert_eq!(next_check_time(now, Some(now - hour), &config), None);
        assert_eq!(
            next_check_time(now, Some(now + 3 * hour), &config),
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
                "ensure-store-connected",
                "schedule-key-deletion",
                "check-keys-deleted",
                "disconnect-store",
                "delete-store"
            ]
        );
    }
}
