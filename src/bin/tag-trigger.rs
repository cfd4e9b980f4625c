//! Lambda function `tag-trigger`: EventBridge "Tag Change on Resource" events on KMS keys and
//! CloudHSM clusters start a dry run or a decommission of the store the tag names. See
//! `kms_decommission::triggers::tag` and docs/triggers.md.

use kms_decommission::triggers::tag::TagTrigger;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_decommission::bootstrap::run(async |sdk| Ok(TagTrigger::from_env(sdk)?)).await
}
