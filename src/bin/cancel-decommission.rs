//! Lambda function `cancel-decommission`: see `kms_decommission::cancel::step` and docs/cancel.md.

use kms_decommission::cancel::step::CancelFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_decommission::bootstrap::run(async |sdk| Ok(CancelFunction::from_env(sdk))).await
}
