//! Entry points that start decommissions from outside Step Functions: EventBridge tag changes
//! ([`tag`]) and a ticketing-system webhook ([`webhook`]). Execution names and the one-run-per-store
//! rule live in [`crate::sfn`].
//!
//! See `docs/triggers.md` for the events, the request format, the signature and the SAM
//! resources.

pub mod status;
pub mod tag;
pub mod tagger;
pub mod webhook;
