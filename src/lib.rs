//! Safely decommissions AWS KMS custom key stores (CloudHSM and external key stores): find every
//! key of a store, schedule its deletion, keep a CloudHSM store connected through the waiting
//! period, then disconnect and delete the store, and tell the operator what KMS leaves behind.
//!
//! Layers, each using only those below it (`python -m tools.module_cycles --print` shows the
//! graph; `make test` fails on a cycle):
//! - entry points: [`bootstrap`] runs every binary in `src/bin`; [`handler`] (the six steps),
//!   [`cancel::step`], [`triggers`] (tag changes, the ticketing webhook);
//! - the workflow: [`steps`] (one module per step, [`steps::flow`] for their order and checks),
//!   [`cancel`] (restoring what a run scheduled);
//! - the domain: [`state`] (the state document), [`inventory`], [`keys`], [`store`], [`usage`],
//!   [`report`], [`request`];
//! - AWS: [`kms`] (every KMS call, paced, errors by KMS name), [`sfn`] (Step Functions),
//!   [`ledger`] (the run ledger in DynamoDB),
//!   [`sdk_config`], [`pacing`], [`aws_error`];
//! - values: [`model`], [`error`], [`clock`], [`config`], [`deadline`].
//!
//! The interface between the functions, the state machine and the local stack is
//! `docs/workflow-contract.md`.

pub mod arn;
pub mod aws_error;
pub mod bootstrap;
pub mod cancel;
pub mod clock;
pub mod cloudtrail;
pub mod config;
pub mod deadline;
pub mod error;
pub mod handler;
pub mod input;
pub mod inventory;
pub mod key_material;
pub mod key_use;
pub mod keys;
pub mod kms;
pub mod ledger;
pub mod logs_insights;
pub mod model;
pub mod pacing;
pub mod report;
pub mod request;
pub mod sdk_config;
pub mod sfn;
pub mod state;
pub mod steps;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod triggers;
pub mod usage;
