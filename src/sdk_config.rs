//! The AWS SDK configuration every function loads once at init.
//!
//! Retries use the SDK's **standard** mode (3 attempts, exponential backoff with jitter). Not its
//! adaptive mode: that mode keeps one send-rate limiter per client for all operations, so a burst
//! of throttles on TagResource (10/s) would also slow DescribeKey (2,000/s) to its floor of half a
//! request per second, for minutes (measured on the local stack: the throttling-burst scenario
//! took 178 s instead of 19 s). Adapting per operation is the pacer's job
//! ([`crate::pacing::RateLimiter::throttled`]).

use std::sync::Arc;

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};

use crate::pacing::Pacing;

/// Attempts per call, the first included (the SDK's standard default).
pub const MAX_ATTEMPTS: u32 = 3;

/// The retry configuration to set in code: standard with [`MAX_ATTEMPTS`], unless the environment
/// chooses one with `AWS_RETRY_MODE` or `AWS_MAX_ATTEMPTS` (which the SDK then reads itself).
pub fn retry_config(var: impl Fn(&str) -> Option<String>) -> Option<RetryConfig> {
    if var("AWS_RETRY_MODE").is_some() || var("AWS_MAX_ATTEMPTS").is_some() {
        return None;
    }
    Some(
        RetryConfig::standard()
            .with_retry_mode(RetryMode::Standard)
            .with_max_attempts(MAX_ATTEMPTS),
    )
}

/// Loads the SDK configuration from the environment (region, credentials, endpoints), with
/// standard retries unless the environment sets a retry mode.
pub async fn load() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(retry) = retry_config(|name| std::env::var(name).ok()) {
        loader = loader.retry_config(retry);
    }
    loader.load().await
}

/// A KMS client whose every ThrottlingException, retried attempts included, slows the limiter of
/// its operation in `pacing` ([`ThrottleFeedback`]).
pub fn kms_client(sdk: &SdkConfig, pacing: Arc<Pacing>) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::config::Builder::from(sdk)
        .interceptor(ThrottleFeedback { pacing })
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// An SDK interceptor that tells the pacer of each KMS attempt KMS throttled, including those the
/// SDK retries on its own, so the operation's limiter slows down at once.
#[derive(Debug, Clone)]
pub struct ThrottleFeedback {
    /// The limiters to slow.
    pub pacing: Arc<Pacing>,
}

impl Intercept for ThrottleFeedback {
    fn name(&self) -> &'static str {
        "ThrottleFeedback"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let throttled = context.response().is_some_and(is_throttling);
        if let (true, Some(metadata)) = (throttled, cfg.load::<Metadata>()) {
            if let Some(limiter) = self.pacing.for_operation(metadata.name()) {
                limiter.throttled();
                tracing::warn!(
                    operation = metadata.name(),
                    "KMS throttled: slowing this operation"
                );
            }
        }
        Ok(())
    }
}

/// Whether a KMS response is a ThrottlingException (awsJson 1.1: HTTP 400 with the error type in
/// the `X-Amzn-ErrorType` header or the body's `__type`).
fn is_throttling(response: &HttpResponse) -> bool {
    const THROTTLING: &[u8] = b"ThrottlingException";
    if response.status().as_u16() != 400 {
        return false;
    }
    let in_header = response
        .headers()
        .get("x-amzn-errortype")
        .is_some_and(|value| value.starts_with("ThrottlingException"));
    let in_body = response
        .body()
        .bytes()
        .is_some_and(|body| body.windows(THROTTLING.len()).any(|w| w == THROTTLING));
    in_header || in_body
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_mocks::mock;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use std::time::Duration;

    use crate::config::PacingConfig;

    /// A KMS client that answers every TagResource with `status` and `body`, with feedback.
    fn client_answering(
        status: u16,
        body: &'static str,
        pacing: Arc<Pacing>,
    ) -> aws_sdk_kms::Client {
        let rule = mock!(aws_sdk_kms::Client::tag_resource).then_http_response(move || {
            HttpResponse::new(
                StatusCode::try_from(status).expect("valid status"),
                SdkBody::from(body),
            )
        });
        let config = crate::test_support::mock_kms_config(&[&rule])
            .interceptor(ThrottleFeedback { pacing })
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    #[tokio::test]
    async fn a_throttled_attempt_slows_only_its_operations_limiter() {
        let pacing = Arc::new(Pacing::new(&PacingConfig::default()));
        let base = pacing.tag_resource.interval();
        let kms = client_answering(
            400,
            r#"{"__type":"ThrottlingException","message":"You have exceeded the rate at which you may call KMS."}"#,
            pacing.clone(),
        );
        let result = kms.tag_resource().key_id("k").send().await;
        assert!(result.is_err());
        assert!(
            pacing.tag_resource.interval() >= base.mul_f64(1.9),
            "TagResource slowed"
        );
        assert_eq!(
            pacing.schedule_key_deletion.interval(),
            Duration::from_secs_f64(1.0 / PacingConfig::default().schedule_key_deletion_rps),
            "other operations keep their pace"
        );
    }

    #[tokio::test]
    async fn other_errors_do_not_slow_the_pacing() {
        let pacing = Arc::new(Pacing::new(&PacingConfig::default()));
        let base = pacing.tag_resource.interval();
        for (status, body) in [
            (
                400,
                r#"{"__type":"NotFoundException","message":"Key 'k' does not exist"}"#,
            ),
            (
                500,
                r#"{"__type":"KMSInternalException","message":"internal"}"#,
            ),
        ] {
            let kms = client_answering(status, body, pacing.clone());
            assert!(kms.tag_resource().key_id("k").send().await.is_err());
        }
        assert_eq!(pacing.tag_resource.interval(), base);
    }

    #[test]
    fn retries_are_standard_by_default_not_one_limiter_for_every_operation() {
        let retry = retry_config(|_| None).expect("set in code");
        assert_eq!(retry.mode(), RetryMode::Standard);
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
