//! The Lambda glue shared by the six binaries: tracing, clients built once, the invocation
//! deadline, the state document in and out, errors mapped to `Diagnostic` by name.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::state::DecommissionState;
use crate::steps::{Step, StepContext};

/// Runs `step` as a Lambda function until the runtime stops.
pub async fn run_lambda(step: Step) -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = crate::sdk_config::load().await;
    // A bad configuration does not crash the instance: every invocation reports it by name.
    let context = Config::from_env().map(|config| StepContext::from_sdk_config(&aws, config));
    if let Err(err) = &context {
        tracing::error!(error_type = err.error_type(), error = %err, "invalid configuration");
    }
    let context = &context;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(context, step, event).await
    }))
    .await
}

/// Handles one invocation: parses the state document, runs the step before the invocation
/// deadline, returns the updated document or the error under its contract name.
pub async fn handle(
    context: &Result<StepContext, DecommissionError>,
    step: Step,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let lambda_deadline = event.context.deadline();
    let request_id = event.context.request_id.clone();
    let result = async {
        let context = context.as_ref().map_err(Clone::clone)?;
        let deadline = Deadline::for_invocation(lambda_deadline, context.config.invocation_budget);
        let state = DecommissionState::from_value(event.payload)?;
        let span = tracing::info_span!(
            "step",
            step = step.binary_name(),
            request_id = request_id.as_str(),
            execution = state.execution.as_ref().map(|e| e.id.as_str()),
        );
        let updated = step.run(context, state, deadline).instrument(span).await?;
        updated.to_value()
    }
    .await;
    result.map_err(|err| {
        tracing::error!(
            step = step.binary_name(),
            request_id = request_id.as_str(),
            error_type = err.error_type(),
            error = %err,
            "step failed"
        );
        Diagnostic::from(err)
    })
}

/// JSON logs when Lambda's log format is JSON, plain text otherwise; level from `RUST_LOG`,
/// else `AWS_LAMBDA_LOG_LEVEL`, else INFO. Never panics on a bad value.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .map_err(|_| ())
                .and_then(|level| EnvFilter::try_new(level.to_lowercase()).map_err(|_| ()))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    // Another subscriber may already be installed (tests): keep it.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use serde_json::json;

    fn event(payload: Value) -> LambdaEvent<Value> {
        LambdaEvent::new(payload, Context::default())
    }

    #[tokio::test]
    async fn a_payload_that_is_not_a_state_document_is_invalid_state_document() {
        let context = Ok(crate::test_support::context(crate::test_support::mock_kms(
            &[],
        )));
        for payload in [json!([1, 2]), json!({"Plan": {"Done": "yes"}})] {
            let diagnostic = handle(&context, Step::ScheduleKeyDeletion, event(payload))
                .await
                .unwrap_err();
            assert_eq!(diagnostic.error_type, "InvalidStateDocument");
        }
    }

    #[tokio::test]
    async fn invalid_input_is_reported_by_name_before_any_kms_call() {
        let context = Ok(crate::test_support::context(crate::test_support::mock_kms(
            &[],
        )));
        let payload = json!({
            "Input": {"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": "yes"},
            "Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:sm:x"}
        });
        let diagnostic = handle(&context, Step::PlanDecommission, event(payload))
            .await
            .unwrap_err();
        assert_eq!(diagnostic.error_type, "InvalidInput");
        assert!(diagnostic.error_message.contains("DryRun"));
    }

    #[tokio::test]
    async fn a_bad_configuration_is_reported_by_name_on_every_invocation() {
        let context = Err(DecommissionError::InvalidConfiguration {
            variable: "STORE_POLL_SECONDS".into(),
            reason: "not a number".into(),
        });
        let diagnostic = handle(&context, Step::PlanDecommission, event(json!({})))
            .await
            .unwrap_err();
        assert_eq!(diagnostic.error_type, "InvalidConfiguration");
        assert!(diagnostic.error_message.contains("STORE_POLL_SECONDS"));
    }
}
