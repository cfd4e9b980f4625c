//! Lambda function `ticket-webhook`, behind a function URL: a ticketing system starts, asks the
//! status of, or cancels a decommission with HMAC-signed JSON requests. See
//! `kms_decommission::triggers::webhook` and docs/triggers.md.

use kms_decommission::triggers::webhook::Webhook;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_decommission::bootstrap::run(Webhook::from_env).await
}
