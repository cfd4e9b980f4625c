//! The workflow's steps, one module each. Every step takes the whole state document and returns
//! it updated; each is idempotent and safe to re-run after a crash at any point. [`flow`] holds
//! the order of the steps and the checks of the document; [`context`] what each step is given.

use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::state::DecommissionState;

pub mod approval;
pub mod caller;
pub mod check_keys_deleted;
pub mod context;
pub mod delete_store;
pub mod disconnect_store;
pub mod ensure_store_connected;
pub mod flow;
pub mod plan;
pub mod quarantine;
pub mod schedule_key_deletion;

pub use context::StepContext;
pub use flow::Step;

impl Step {
    /// Runs the step on a state document, for the running decommission that holds the store's
    /// lock only ([`caller`]), and tells the ledger what it did.
    pub async fn run(
        self,
        ctx: &StepContext,
        state: DecommissionState,
        deadline: Deadline,
    ) -> Result<DecommissionState, DecommissionError> {
        let admitted = Box::pin(caller::admit(ctx, self, &state)).await?;
        let updated = self.run_unchecked(ctx, state, deadline).await?;
        if let Some(run) = &admitted {
            Box::pin(caller::record_result(ctx, self, run, &updated)).await?;
        }
        Ok(updated)
    }

    async fn run_unchecked(
        self,
        ctx: &StepContext,
        state: DecommissionState,
        deadline: Deadline,
    ) -> Result<DecommissionState, DecommissionError> {
        // Boxed: the step futures nested in one type exceed the compiler's layout depth.
        match self {
            Step::PlanDecommission => Box::pin(plan::run(ctx, state, deadline)).await,
            Step::RequestApproval => Box::pin(approval::request(ctx, state, deadline)).await,
            Step::RecordApproval => Box::pin(approval::record(ctx, state, deadline)).await,
            Step::QuarantineStore => Box::pin(quarantine::run(ctx, state, deadline)).await,
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
