//! A failed AWS call, reduced to the names an operator needs: which call, which error code.

use std::fmt;

use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::DecommissionError;

/// Error code given to failures that carry no AWS error code (the service could not be
/// reached, the call timed out, the response could not be read).
pub const UNREACHABLE_CODE: &str = "ServiceUnreachable";

/// Error code given to a service error that carries no code.
pub const UNNAMED_SERVICE_ERROR: &str = "UnnamedServiceError";

/// An AWS API call that failed, with the service's own error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCallError {
    /// `service:Operation`, e.g. `states:StartExecution`.
    pub operation: String,
    /// The service's error code (`ExecutionAlreadyExists`, `ThrottlingException`, ...) or
    /// [`UNREACHABLE_CODE`].
    pub code: String,
    /// The full error text.
    pub message: String,
}

impl AwsCallError {
    /// Captures `err`, returned by `operation`.
    pub fn new<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let code = match &err {
            SdkError::ServiceError(service) => {
                service.err().code().unwrap_or(UNNAMED_SERVICE_ERROR)
            }
            _ => UNREACHABLE_CODE,
        };
        Self {
            operation: operation.to_owned(),
            code: code.to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        }
    }
}

impl fmt::Display for AwsCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed with {}: {}",
            self.operation, self.code, self.message
        )
    }
}

impl std::error::Error for AwsCallError {}

impl From<DecommissionError> for AwsCallError {
    /// A KMS failure reported by the library, under the name the library gives it (KMS's wire
    /// code, or `KmsUnavailable`).
    fn from(err: DecommissionError) -> Self {
        let operation = match &err {
            DecommissionError::Kms { operation, .. }
            | DecommissionError::KmsUnavailable { operation, .. }
            | DecommissionError::UnexpectedKmsResponse { operation, .. } => {
                format!("kms:{operation}")
            }
            _ => "kms".to_owned(),
        };
        Self {
            operation,
            code: err.error_type().to_owned(),
            message: err.to_string(),
        }
    }
}

impl From<AwsCallError> for lambda_runtime::Diagnostic {
    /// Reports the AWS error code as the Lambda `errorType` (not a Rust type name).
    fn from(err: AwsCallError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.code.clone(),
            error_message: err.to_string(),
        }
    }
}
