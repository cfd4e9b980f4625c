//! Lambda function `tag-trigger`: EventBridge "Tag Change on Resource" events on KMS keys and
//! CloudHSM clusters start a dry run or a decommission of the store the tag names.
//!
//! Environment: `STATE_MACHINE_ARN` (required), `CANCEL_STATE_MACHINE_ARN` (optional),
//! `TRIGGER_TAG_KEY` (default `DecommissionCustomKeyStore`), `TRIGGER_MODE` (`dry-run`, the
//! default, or `decommission`). Ignored and refused events return their named outcome (no
//! retry); AWS failures return an error named by the AWS error code (EventBridge retries).

use kms_decommission::triggers::executions::Executions;
use kms_decommission::triggers::tag::{TagOutcome, TagTrigger, TagTriggerConfig};
use kms_decommission::triggers::{
    state_machine_arn_from_env, ConfigError, CANCEL_STATE_MACHINE_ENV, STATE_MACHINE_ENV,
};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let var = |name: &str| std::env::var(name).ok();
    let config = TagTriggerConfig::from_env(var)?;
    let machine = state_machine_arn_from_env(var, STATE_MACHINE_ENV)?
        .ok_or(ConfigError::Missing(STATE_MACHINE_ENV))?;
    let cancel_machine = state_machine_arn_from_env(var, CANCEL_STATE_MACHINE_ENV)?;
    let aws = kms_decommission::sdk_config::load().await;
    let executions = Executions::new(aws_sdk_sfn::Client::new(&aws), machine, cancel_machine);
    let trigger = TagTrigger::new(aws_sdk_kms::Client::new(&aws), executions, config);
    let trigger = &trigger;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let outcome = trigger.handle(&event.payload).await.map_err(|e| {
            tracing::error!(error = %e, "tag trigger failed; the event will be retried");
            Diagnostic::from(e)
        })?;
        match &outcome {
            TagOutcome::Refused(_) => tracing::warn!(outcome = %outcome, "tag change refused"),
            _ => tracing::info!(outcome = %outcome, "tag change handled"),
        }
        Ok::<Value, Diagnostic>(outcome.to_json())
    }))
    .await
}
