//! The workflow steps as Lambda functions: the invocation deadline, the state document in
//! and out, errors mapped to `Diagnostic` by name. Started by [`crate::bootstrap::run`].

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

use crate::bootstrap::LambdaFunction;
use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::state::DecommissionState;
use crate::steps::{Step, StepContext};

/// One step of the workflow as a Lambda function.
#[derive(Debug)]
pub struct StepFunction {
    step: Step,
    context: Result<StepContext, DecommissionError>,
}

impl StepFunction {
    /// The function of `step`, with clients from `sdk` and configuration from the environment.
    /// A bad configuration is kept and reported by name on every invocation.
    pub fn from_env(step: Step, sdk: &aws_config::SdkConfig) -> Self {
        Self {
            step,
            context: StepContext::from_env(sdk),
        }
    }
}

impl LambdaFunction for StepFunction {
    type Event = Value;
    type Output = Value;

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        handle(&self.context, self.step, event).await
    }
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
        let state = DecommissionState::from_value(document_of(step, event.payload)?)?;
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

/// The state document an invocation of `step` carries, before [`DecommissionState::from_value`]
/// reads it. request-approval is a `.waitForTaskToken` task given
/// `{"Document": <document>, "TaskToken": <token>}`: the token goes into the document's
/// `ApprovalTaskToken` for the step (its output is never used by the state machine).
pub fn document_of(step: Step, payload: Value) -> Result<Value, DecommissionError> {
    if step != Step::RequestApproval {
        return Ok(payload);
    }
    let Value::Object(mut wrapper) = payload else {
        return Err(DecommissionError::invalid_state(
            "request-approval expects {\"Document\": <state document>, \"TaskToken\": <token>}",
        ));
    };
    let token = wrapper.remove("TaskToken");
    let mut document = wrapper.remove("Document").unwrap_or(Value::Null);
    match (document.as_object_mut(), token) {
        (Some(fields), Some(Value::String(token))) => {
            fields.insert(
                crate::steps::approval::TASK_TOKEN_FIELD.to_owned(),
                Value::String(token),
            );
            Ok(document)
        }
        _ => Err(DecommissionError::invalid_state(
            "request-approval expects {\"Document\": <state document>, \"TaskToken\": <token>}",
        )),
    }
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
