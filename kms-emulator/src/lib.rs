//! A local emulator of the AWS KMS API, faithful to the documented semantics of custom key
//! stores (CloudHSM and external key stores): connection states and their asynchronous
//! transitions, key states, pending deletion ending in real deletion, error names and HTTP codes,
//! request quotas, a CloudTrail record of every call answered through CloudTrail `LookupEvents`,
//! and an admin API (clock, faults, call log, caller identities) for tests.
//!
//! In-process use: `let emu = kms_emulator::spawn(EmulatorConfig::fast()).await?;` then point an
//! aws-sdk-kms client at `emu.endpoint()`.

pub mod admin;
pub mod calls;
pub mod cloudtrail;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod faults;
pub mod identity;
pub mod ids;
pub mod logs;
pub mod model;
pub mod ops;
pub mod quotas;
pub mod server;
pub mod state;
pub mod sts;
pub mod wire;

pub use config::EmulatorConfig;
pub use server::{router, serve, serve_until, spawn, RunningEmulator};
