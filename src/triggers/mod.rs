//! Entry points that start decommissions from outside Step Functions: EventBridge tag changes
//! ([`tag`]) and a ticketing-system webhook ([`webhook`]), with deterministic execution names
//! ([`naming`]) and at most one decommission per store ([`executions`]).
//!
//! See `docs/triggers.md` for the events, the request format, the signature and the SAM
//! resources.

pub mod aws_error;
pub mod executions;
pub mod naming;
pub mod secret;
pub mod signature;
pub mod tag;
pub mod webhook;

#[cfg(test)]
mod mocks;

/// Environment variable holding the decommission state machine's ARN.
pub const STATE_MACHINE_ENV: &str = "STATE_MACHINE_ARN";
/// Environment variable holding the cancel state machine's ARN (optional).
pub const CANCEL_STATE_MACHINE_ENV: &str = "CANCEL_STATE_MACHINE_ARN";

/// What an execution does: plan only, or really decommission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunMode {
    /// Plan only; changes nothing (`DryRun: true`).
    DryRun,
    /// Schedule key deletion and delete the store (`DryRun: false`).
    Decommission,
}

impl RunMode {
    /// The mode an execution input's `DryRun` flag selects.
    pub fn from_dry_run(dry_run: bool) -> Self {
        if dry_run {
            Self::DryRun
        } else {
            Self::Decommission
        }
    }
}

/// A trigger function's environment is incomplete or wrong; the function does not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable has an unusable value.
    #[error("environment variable {variable}: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Reads a state machine ARN from `variable`: it must look like
/// `arn:<partition>:states:<region>:<account>:stateMachine:<name>`.
pub fn state_machine_arn_from_env(
    var: impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = var(variable)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    if executions::execution_arn(&value, "probe").is_none() {
        return Err(ConfigError::Invalid {
            variable,
            reason: format!("{value:?} is not a state machine ARN"),
        });
    }
    Ok(Some(value))
}
