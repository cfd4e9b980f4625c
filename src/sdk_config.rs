//! The AWS SDK configuration every function loads once at init.
//!
//! Retries are **adaptive** by default: on top of the standard mode's exponential backoff, the
//! client limits its own send rate as soon as KMS answers ThrottlingException, and raises it again
//! as calls succeed. The steps' pacing ([`crate::pacing`]) keeps each operation below its quota;
//! adaptive retries slow the client further when someone else in the account is using the same
//! quota, so our calls stop adding to the throttling (every throttle also slows other KMS users).

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::{BehaviorVersion, SdkConfig};

/// Attempts per call, the first included (the SDK's standard default).
pub const MAX_ATTEMPTS: u32 = 3;

/// The retry configuration to set in code: adaptive, unless the environment chooses one with
/// `AWS_RETRY_MODE` or `AWS_MAX_ATTEMPTS` (which the SDK then reads itself).
pub fn retry_config(var: impl Fn(&str) -> Option<String>) -> Option<RetryConfig> {
    if var("AWS_RETRY_MODE").is_some() || var("AWS_MAX_ATTEMPTS").is_some() {
        return None;
    }
    Some(
        RetryConfig::standard()
            .with_retry_mode(RetryMode::Adaptive)
            .with_max_attempts(MAX_ATTEMPTS),
    )
}

/// Loads the SDK configuration from the environment (region, credentials, endpoints), with
/// adaptive retries unless the environment sets a retry mode.
pub async fn load() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(retry) = retry_config(|name| std::env::var(name).ok()) {
        loader = loader.retry_config(retry);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_adaptive_by_default() {
        let retry = retry_config(|_| None).expect("set in code");
        assert_eq!(retry.mode(), RetryMode::Adaptive);
        assert_eq!(retry.max_attempts(), MAX_ATTEMPTS);
    }

    #[test]
    fn the_environment_may_choose_its_own_retry_mode() {
        assert!(
            retry_config(|name| (name == "AWS_RETRY_MODE").then(|| "standard".into())).is_none()
        );
        assert!(retry_config(|name| (name == "AWS_MAX_ATTEMPTS").then(|| "5".into())).is_none());
    }
}
