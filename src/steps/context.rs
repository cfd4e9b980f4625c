//! What every step needs besides the state document: KMS (with its pacing), configuration and
//! the clock, built once per Lambda instance.

use std::sync::Arc;

use aws_sdk_kms::Client;

use crate::clock::Clock;
use crate::config::Config;
use crate::kms::Kms;
use crate::pacing::Pacing;

/// What every step needs besides the state document. Built once per Lambda instance.
#[derive(Debug)]
pub struct StepContext {
    /// KMS, paced per operation; shared by the invocations of this instance.
    pub kms: Kms,
    /// Handler configuration.
    pub config: Config,
    /// The clock.
    pub clock: Clock,
}

impl StepContext {
    /// A context around `client` with pacing from `config` and the system clock.
    pub fn new(client: Client, config: Config) -> Self {
        Self {
            kms: Kms::new(client, Arc::new(Pacing::new(&config.pacing))),
            config,
            clock: Clock::system(),
        }
    }

    /// The functions' context: a KMS client from `sdk` whose throttled attempts slow the pacing.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, config: Config) -> Self {
        Self {
            kms: Kms::from_sdk_config(sdk, Arc::new(Pacing::new(&config.pacing))),
            config,
            clock: Clock::system(),
        }
    }
}
