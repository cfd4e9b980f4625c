//! What every step needs besides the state document: KMS (with its pacing), Step Functions (to
//! check who called), the run ledger, configuration and the clock, built once per Lambda
//! instance.

use std::sync::Arc;

use aws_sdk_kms::Client;

use crate::clock::Clock;
use crate::cloudtrail::CloudTrail;
use crate::config::Config;
use crate::kms::Kms;
use crate::ledger::Ledger;
use crate::logs_insights::LogsInsights;
use crate::pacing::Pacing;
use crate::request::TriggerPolicy;
use crate::sfn::Executions;

/// What every step needs besides the state document. Built once per Lambda instance.
#[derive(Debug)]
pub struct StepContext {
    /// KMS, paced per operation; shared by the invocations of this instance.
    pub kms: Kms,
    /// This stack's decommission state machine: whose executions the steps act for.
    pub runs: Executions,
    /// The run ledger.
    pub ledger: Ledger,
    /// Handler configuration.
    pub config: Config,
    /// What a trigger-started run may ask for (`POLICY_*`).
    pub policy: TriggerPolicy,
    /// The clock.
    pub clock: Clock,
    /// CloudTrail, paced under LookupEvents' quota (quarantine-store). `None`: not configured.
    pub cloudtrail: Option<CloudTrail>,
    /// Logs Insights on the trail's CloudWatch Logs group (quarantine-store), used instead of
    /// LookupEvents when `CLOUDTRAIL_LOG_GROUP_NAME` is set. `None`: not configured.
    pub insights: Option<LogsInsights>,
}

impl StepContext {
    /// A context around `client` with pacing from `config` and the system clock.
    pub fn new(client: Client, config: Config, runs: Executions, ledger: Ledger) -> Self {
        Self {
            kms: Kms::new(client, Arc::new(Pacing::new(&config.pacing))),
            runs,
            ledger,
            config,
            policy: TriggerPolicy::default(),
            clock: Clock::system(),
            cloudtrail: None,
            insights: None,
        }
    }

    /// The functions' context: a KMS client from `sdk` whose throttled attempts slow the pacing.
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        config: Config,
        runs: Executions,
        ledger: Ledger,
    ) -> Self {
        Self {
            kms: Kms::from_sdk_config(sdk, Arc::new(Pacing::new(&config.pacing))),
            runs,
            ledger,
            policy: TriggerPolicy::default(),
            clock: Clock::system(),
            cloudtrail: Some(CloudTrail::from_sdk_config(sdk)),
            insights: config
                .cloudtrail_log_group_name
                .as_deref()
                .map(|group| LogsInsights::from_sdk_config(sdk, group)),
            config,
        }
    }

    /// The functions' context from `sdk` and the environment: configuration,
    /// `STATE_MACHINE_ARN` (this stack's decommission state machine) and `LEDGER_TABLE`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, crate::error::DecommissionError> {
        let config = Config::from_env()?;
        let var = |name: &str| std::env::var(name).ok();
        let runs = Executions::from_env(sdk, var)?;
        let ledger = Ledger::from_env(sdk, var)?;
        let mut context = Self::from_sdk_config(sdk, config, runs, ledger);
        context.policy = TriggerPolicy::from_env()?;
        Ok(context)
    }
}
