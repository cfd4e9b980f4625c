//! Lambda function `cancel-decommission`: see `kms_decommission::steps::cancel_decommission` and docs/cancel.md.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_decommission::steps::cancel_decommission::run_lambda().await
}
