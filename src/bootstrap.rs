//! The one Lambda bootstrap of all nine functions: logging that honours Lambda's log settings,
//! the SDK configuration loaded once, the function built once from it and the environment, then
//! every invocation served, its errors reported under their contract names.
//!
//! A function whose configuration is wrong does not crash its instance: the error is logged at
//! start and every invocation reports it by name (`InvalidConfiguration`), so the state machine
//! and the operator see why.

use std::future::Future;

use aws_config::SdkConfig;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A Lambda function, built once per instance: how it answers one event.
pub trait LambdaFunction {
    /// The event it receives.
    type Event: DeserializeOwned;
    /// What it answers.
    type Output: Serialize;

    /// Answers one event; an error carries its contract name as `errorType`.
    fn handle(
        &self,
        event: LambdaEvent<Self::Event>,
    ) -> impl Future<Output = Result<Self::Output, Diagnostic>>;
}

/// Runs the function that `init` builds from the SDK configuration and the environment, until
/// the runtime stops.
pub async fn run<F: LambdaFunction>(
    init: impl AsyncFnOnce(&SdkConfig) -> Result<F, Diagnostic>,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = crate::sdk_config::load().await;
    let function = init(&sdk).await;
    if let Err(err) = &function {
        tracing::error!(
            error_type = err.error_type.as_str(),
            error = err.error_message.as_str(),
            "invalid configuration: every invocation will report it"
        );
    }
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<F::Event>| async move {
        match function {
            // Boxed: some handlers' futures nest deeper than the compiler lays out inline.
            Ok(function) => Box::pin(function.handle(event)).await,
            Err(err) => Err(err.clone()),
        }
    }))
    .await
}
