//! Safely decommissions AWS KMS custom key stores (CloudHSM and external key stores): find every
//! key of a store, schedule its deletion, keep a CloudHSM store connected through the waiting
//! period, then disconnect and delete the store, and tell the operator what KMS leaves behind.
//!
//! The steps of the Step Functions workflow live in [`steps`]; each Lambda binary in `src/bin`
//! is a thin wrapper around [`handler::run_lambda`]. The interface between them, the state
//! machine and the local stack is `docs/workflow-contract.md`.

pub mod cancel;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod error;
pub mod handler;
pub mod inventory;
pub mod keys;
pub mod pacing;
pub mod report;
pub mod request;
pub mod sdk_config;
pub mod state;
pub mod steps;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod triggers;
pub mod usage;
