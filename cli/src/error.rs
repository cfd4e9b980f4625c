//! The command line's errors: each has a name (printed, and `Error` in JSON), a message, what to
//! do, and an exit code scripts can rely on (README, "Exit codes"; `--help`).

use kms_decommission::error::DecommissionError;

/// Exit code: success (a run that ended well, a command that did what it was asked).
pub const EXIT_OK: u8 = 0;
/// Exit code: the run failed, was refused, or the request was refused (the error's name says why).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad arguments or input (nothing was asked of AWS that changes anything).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the stack, store, run or execution was not found.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: AWS could not be reached or refused the call (credentials, permissions, network).
pub const EXIT_AWS: u8 = 4;
/// Exit code: the run is still running (`report` of an unfinished run, `--timeout` reached).
pub const EXIT_NOT_FINISHED: u8 = 5;

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0    success
  1    the run failed or was refused, or the request was refused (the error's name says why)
  2    bad arguments or input; nothing was started
  3    not found: stack, stack output, store or run
  4    AWS error: credentials, permissions, network, throttling
  5    not finished: the run is still running (report, --timeout)
  130  interrupted (Ctrl-C); the run itself goes on";

/// Everything that can go wrong, by name.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument or the input it makes is invalid (the library's own checks).
    #[error("{0}")]
    InvalidInput(String),

    /// `start` without a terminal to type the name at, and without `--confirm`.
    #[error(
        "starting a decommission needs the store's name typed back, and there is no terminal to \
         ask at"
    )]
    ConfirmationRequired,

    /// The name typed back is not the store's name.
    #[error("{typed:?} is not the name of custom key store {store_id} ({actual:?}); nothing was started")]
    ConfirmationMismatch {
        /// The store.
        store_id: String,
        /// What was typed.
        typed: String,
        /// The store's name.
        actual: String,
    },

    /// The CloudFormation stack does not exist (in this account and Region).
    #[error("stack {stack} was not found in this account and Region")]
    StackNotFound {
        /// The stack name.
        stack: String,
    },

    /// The stack lacks an output this command needs.
    #[error("stack {stack} has no output {output}")]
    StackOutputMissing {
        /// The stack name.
        stack: String,
        /// The output key.
        output: &'static str,
    },

    /// No decommission of the store, or no such execution.
    #[error("{0}")]
    RunNotFound(String),

    /// `approve`/`reject` of a run that is not waiting for approval.
    #[error("{0}")]
    NotWaitingForApproval(String),

    /// The caller requested the run and may not approve it.
    #[error(
        "{approver} requested the decommission of custom key store {store_id} and cannot also \
         approve it; nothing was changed"
    )]
    ApprovalBySameRequester {
        /// The store.
        store_id: String,
        /// The caller.
        approver: String,
    },

    /// The run (or the dry run, or the cancel) ended other than well.
    #[error("execution {execution} ended {status}: {error}: {cause}")]
    RunFailed {
        /// The execution.
        execution: String,
        /// FAILED, TIMED_OUT, ABORTED.
        status: String,
        /// The execution's error name.
        error: String,
        /// Its cause.
        cause: String,
    },

    /// The run is still running.
    #[error("{0}")]
    NotFinished(String),

    /// An AWS call failed.
    #[error("{service} {operation} failed: {code}: {message}")]
    Aws {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// The service's error code, or what kind of failure.
        code: String,
        /// The message.
        message: String,
    },

    /// An answer this tool cannot read.
    #[error("{0}")]
    UnexpectedResponse(String),

    /// Reading the terminal or writing the output failed.
    #[error("{0}")]
    Io(String),
}

impl CliError {
    /// The error's name: `Error` in JSON, first word of the message on stderr. A workflow error
    /// keeps the workflow's name (docs: README, "Error names").
    pub fn name(&self) -> &str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::ConfirmationRequired => "ConfirmationRequired",
            Self::ConfirmationMismatch { .. } => "ConfirmationMismatch",
            Self::StackNotFound { .. } => "StackNotFound",
            Self::StackOutputMissing { .. } => "StackOutputMissing",
            Self::RunNotFound(_) => "RunNotFound",
            Self::NotWaitingForApproval(_) => "NotWaitingForApproval",
            Self::ApprovalBySameRequester { .. } => "ApprovalBySameRequester",
            Self::RunFailed { error, .. } => error,
            Self::NotFinished(_) => "RunNotFinished",
            Self::Aws { code, .. } => code,
            Self::UnexpectedResponse(_) => "UnexpectedResponse",
            Self::Io(_) => "IoError",
        }
    }

    /// What to do about it, one sentence.
    pub fn what_to_do(&self) -> String {
        match self {
            Self::InvalidInput(_) => "fix the argument; nothing was started".into(),
            Self::ConfirmationRequired => {
                "run it in a terminal, or pass --confirm <store name> in scripts".into()
            }
            Self::ConfirmationMismatch { .. } => {
                "check that you named the right store, then type its exact name".into()
            }
            Self::StackNotFound { .. } => "pass --stack-name (or set KMS_DECOMMISSION_STACK), \
                 --region or --profile for the account and Region the stack is deployed in"
                .into(),
            Self::StackOutputMissing { .. } => {
                "deploy the current template (sam deploy): older stacks lack this output".into()
            }
            Self::RunNotFound(_) => {
                "check the store id or execution ARN; `kms-decommission list` shows the runs".into()
            }
            Self::NotWaitingForApproval(_) => {
                "`kms-decommission status STORE` shows the approval state".into()
            }
            Self::ApprovalBySameRequester { .. } => {
                "another person approves (signed in as themselves)".into()
            }
            Self::RunFailed { error, .. } => workflow_advice(error).into(),
            Self::NotFinished(_) => "wait, or follow it with `kms-decommission watch`".into(),
            Self::Aws { code, .. } => aws_advice(code).into(),
            Self::UnexpectedResponse(_) => {
                "check that --endpoint-url and --stack-name point at a kms-decommission stack"
                    .into()
            }
            Self::Io(_) => "check the terminal or the output pipe".into(),
        }
    }

    /// The exit code (see [`EXIT_CODES_HELP`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidInput(_) | Self::ConfirmationRequired => EXIT_USAGE,
            Self::RunFailed { error, .. }
                if error == "CustomKeyStoreNotFoundException" || error == "NotFoundException" =>
            {
                EXIT_NOT_FOUND
            }
            Self::ConfirmationMismatch { .. }
            | Self::NotWaitingForApproval(_)
            | Self::ApprovalBySameRequester { .. }
            | Self::RunFailed { .. } => EXIT_FAILED,
            Self::StackNotFound { .. } | Self::StackOutputMissing { .. } | Self::RunNotFound(_) => {
                EXIT_NOT_FOUND
            }
            Self::NotFinished(_) => EXIT_NOT_FINISHED,
            Self::Aws { .. } | Self::UnexpectedResponse(_) | Self::Io(_) => EXIT_AWS,
        }
    }
}

impl From<DecommissionError> for CliError {
    /// The library's errors keep their names: input refusals are usage errors, the rest AWS's.
    fn from(err: DecommissionError) -> Self {
        let name = err.error_type().to_string();
        match name.as_str() {
            "InvalidInput" => Self::InvalidInput(err.to_string()),
            "ConfirmationMismatch" | "ApprovalBySameRequester" => Self::RunFailed {
                execution: "-".into(),
                status: "REFUSED".into(),
                error: name,
                cause: err.to_string(),
            },
            _ => Self::Aws {
                service: "kms-decommission",
                operation: "ledger",
                code: name,
                message: err.to_string(),
            },
        }
    }
}

/// What to do about a workflow error (README, "Error names").
fn workflow_advice(error: &str) -> &'static str {
    match error {
        "InvalidInput" => "fix the input; nothing was changed",
        "ConfirmationMismatch" => "check you named the right store; nothing was changed",
        "ConnectionFailed" => {
            "fix the cluster, or accept orphaned key material with AllowOrphanedKeyMaterial"
        }
        "KeysRecentlyUsed" => {
            "find who uses the key (the cause names it); keys already scheduled can be restored \
             with `kms-decommission cancel`"
        }
        "KeysNeededDuringQuarantine" | "KeysCreatedAfterQuarantine" => {
            "find who needs or creates keys in the store; decommission once nobody does"
        }
        "DecommissionInProgress" => "wait for the running decommission, or cancel it",
        "ApprovalRejected" | "ApprovalTimedOut" => {
            "nothing was changed; start again when the change is agreed"
        }
        "ApprovalBySameRequester" | "InvalidApproval" => {
            "nothing was changed; another person approves a new run"
        }
        "PolicyViolation" => "nothing was changed; ask within the stack's policy",
        "KeyDeletionOverdue" => "open a case with AWS Support",
        "Cancelled" => {
            "the run was cancelled: `kms-decommission report` of the cancel says what was restored"
        }
        "KmsUnavailable" | "LedgerUnavailable" | "StepFunctionsUnavailable" => {
            "check networking and permissions, then start again"
        }
        _ => "see README, \"Error names\", and the cause; every step can be run again",
    }
}

/// What to do about an AWS error code.
fn aws_advice(code: &str) -> &'static str {
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException" => {
            "check your credentials (--profile) and that they may call this operation"
        }
        "ThrottlingException" | "Throttling" => "wait a moment and run the command again",
        "NoCredentials" => "configure credentials (aws configure, AWS_PROFILE or --profile)",
        "NoRegion" => "pass --region or set AWS_REGION",
        "Unreachable" => "check --endpoint-url, the Region and your network",
        _ => "see the message; run the command again once it is fixed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_exit_code() {
        let cases: Vec<(CliError, u8)> = vec![
            (CliError::InvalidInput("x".into()), EXIT_USAGE),
            (CliError::ConfirmationRequired, EXIT_USAGE),
            (
                CliError::ConfirmationMismatch {
                    store_id: "cks-1".into(),
                    typed: "a".into(),
                    actual: "b".into(),
                },
                EXIT_FAILED,
            ),
            (
                CliError::StackNotFound { stack: "s".into() },
                EXIT_NOT_FOUND,
            ),
            (CliError::RunNotFound("r".into()), EXIT_NOT_FOUND),
            (
                CliError::ApprovalBySameRequester {
                    store_id: "cks-1".into(),
                    approver: "alice".into(),
                },
                EXIT_FAILED,
            ),
            (CliError::NotFinished("n".into()), EXIT_NOT_FINISHED),
            (
                CliError::Aws {
                    service: "sts",
                    operation: "GetCallerIdentity",
                    code: "ExpiredToken".into(),
                    message: "m".into(),
                },
                EXIT_AWS,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{}", error.name());
            assert!(!error.what_to_do().is_empty());
        }
    }

    #[test]
    fn a_failed_run_is_named_by_the_workflow_error() {
        let error = CliError::RunFailed {
            execution: "arn".into(),
            status: "FAILED".into(),
            error: "KeysRecentlyUsed".into(),
            cause: "key k".into(),
        };
        assert_eq!(error.name(), "KeysRecentlyUsed");
        assert_eq!(error.exit_code(), EXIT_FAILED);
        assert!(error.what_to_do().contains("cancel"));
    }

    #[test]
    fn library_errors_keep_their_names() {
        let invalid: CliError =
            DecommissionError::invalid_input("PendingWindowInDays", "7-30").into();
        assert_eq!(invalid.name(), "InvalidInput");
        assert_eq!(invalid.exit_code(), EXIT_USAGE);
        let same: CliError = DecommissionError::ApprovalBySameRequester {
            store_id: "cks-1".into(),
            approver: "alice".into(),
        }
        .into();
        assert_eq!(same.name(), "ApprovalBySameRequester");
        assert_eq!(same.exit_code(), EXIT_FAILED);
    }
}
