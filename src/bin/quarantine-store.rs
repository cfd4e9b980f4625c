//! Lambda function `quarantine-store`: see `kms_decommission::steps::quarantine` and docs/quarantine.md.

use kms_decommission::handler::StepFunction;
use kms_decommission::steps::Step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_decommission::bootstrap::run(async |sdk| {
        Ok(StepFunction::from_env(Step::QuarantineStore, sdk))
    })
    .await
}
