//! Lambda function `ticket-webhook`, behind a function URL: a ticketing system starts, asks the
//! status of, or cancels a decommission with HMAC-signed JSON requests.
//!
//! Environment: `STATE_MACHINE_ARN` (required), `CANCEL_STATE_MACHINE_ARN` (optional), and
//! where the shared secret is stored: `WEBHOOK_SECRET_PARAMETER` (an SSM SecureString) or
//! `WEBHOOK_SECRET_ARN` (a Secrets Manager secret). The secret is read once, at init.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use kms_decommission::triggers::executions::Executions;
use kms_decommission::triggers::secret::SecretSource;
use kms_decommission::triggers::webhook::Webhook;
use kms_decommission::triggers::{
    state_machine_arn_from_env, ConfigError, CANCEL_STATE_MACHINE_ENV, STATE_MACHINE_ENV,
};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let var = |name: &str| std::env::var(name).ok();
    let machine = state_machine_arn_from_env(var, STATE_MACHINE_ENV)?
        .ok_or(ConfigError::Missing(STATE_MACHINE_ENV))?;
    let cancel_machine = state_machine_arn_from_env(var, CANCEL_STATE_MACHINE_ENV)?;
    let aws = kms_decommission::sdk_config::load().await;
    let secret = SecretSource::from_env(var)?
        .load(&aws)
        .await
        .inspect_err(|e| {
            tracing::error!(error = %e, "cannot load the webhook secret; refusing to start");
        })?;
    let executions = Executions::new(aws_sdk_sfn::Client::new(&aws), machine, cancel_machine);
    let webhook = Webhook::new(secret, aws_sdk_kms::Client::new(&aws), executions);
    let webhook = &webhook;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            Ok::<LambdaFunctionUrlResponse, Diagnostic>(webhook.handle(&event.payload, now).await)
        },
    ))
    .await
}
