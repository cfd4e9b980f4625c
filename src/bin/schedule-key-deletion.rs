//! Lambda function `schedule-key-deletion`: see `kms_decommission::steps` and docs/workflow-contract.md.

use kms_decommission::handler::run_lambda;
use kms_decommission::steps::Step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    run_lambda(Step::ScheduleKeyDeletion).await
}
