//! Loading the webhook's shared secret at init, from SSM Parameter Store (a `SecureString`) or
//! AWS Secrets Manager. The secret never comes from a plain environment variable or the
//! template: the environment only names where it is stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::signature::{WeakSecret, WebhookSecret, WebhookSecrets};
use crate::aws_error::AwsCallError;

/// Environment variable naming an SSM `SecureString` parameter that holds the secret.
pub const SECRET_PARAMETER_ENV: &str = "WEBHOOK_SECRET_PARAMETER";
/// Environment variable naming a Secrets Manager secret (ARN or name) that holds the secret.
pub const SECRET_ARN_ENV: &str = "WEBHOOK_SECRET_ARN";

/// Where the webhook secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An SSM Parameter Store `SecureString` parameter (name or ARN).
    SsmParameter(String),
    /// A Secrets Manager secret (name or ARN); its `SecretString` (or binary value) is the secret.
    SecretsManager(String),
}

impl SecretSource {
    /// Reads the source from the environment (through `var`): exactly one of
    /// [`SECRET_PARAMETER_ENV`] and [`SECRET_ARN_ENV`] must be set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, SecretError> {
        let non_empty = |name| var(name).filter(|v: &String| !v.trim().is_empty());
        match (non_empty(SECRET_PARAMETER_ENV), non_empty(SECRET_ARN_ENV)) {
            (Some(parameter), None) => Ok(Self::SsmParameter(parameter.trim().to_owned())),
            (None, Some(secret)) => Ok(Self::SecretsManager(secret.trim().to_owned())),
            (Some(_), Some(_)) => Err(SecretError::AmbiguousSecretSource),
            (None, None) => Err(SecretError::SecretSourceNotConfigured),
        }
    }

    /// Fetches the secrets (current, and previous during a rotation) with clients from `config`.
    pub async fn load(
        &self,
        config: &aws_config::SdkConfig,
    ) -> Result<WebhookSecrets, SecretError> {
        match self {
            Self::SsmParameter(name) => {
                load_from_ssm(&aws_sdk_ssm::Client::new(config), name).await
            }
            Self::SecretsManager(id) => {
                load_from_secrets_manager(&aws_sdk_secretsmanager::Client::new(config), id).await
            }
        }
    }
}

/// Reads a `SecureString` parameter, decrypted. Any other parameter type is refused.
pub async fn load_from_ssm(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<WebhookSecrets, SecretError> {
    let output = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| SecretError::Unreadable(AwsCallError::new("ssm:GetParameter", e)))?;
    let parameter = output.parameter().ok_or(SecretError::SecretEmpty)?;
    match parameter.r#type() {
        Some(aws_sdk_ssm::types::ParameterType::SecureString) => {}
        other => {
            return Err(SecretError::ParameterNotSecureString(
                other.map(|t| t.as_str().to_owned()).unwrap_or_default(),
            ))
        }
    }
    let value = parameter.value().ok_or(SecretError::SecretEmpty)?;
    secrets_from(value.as_bytes())
}

/// Reads a Secrets Manager secret's current value (`SecretString`, else `SecretBinary`).
pub async fn load_from_secrets_manager(
    secrets: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<WebhookSecrets, SecretError> {
    let output = secrets
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            SecretError::Unreadable(AwsCallError::new("secretsmanager:GetSecretValue", e))
        })?;
    let bytes = match (output.secret_string(), output.secret_binary()) {
        (Some(text), _) => text.as_bytes(),
        (None, Some(blob)) => blob.as_ref(),
        (None, None) => return Err(SecretError::SecretEmpty),
    };
    secrets_from(bytes)
}

/// Reads a stored value: the current secret, and during a rotation the previous one on a second
/// line. Each must be strong enough; more than two is refused.
pub fn secrets_from(value: &[u8]) -> Result<WebhookSecrets, SecretError> {
    let lines: Vec<&[u8]> = value
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .collect();
    match lines.as_slice() {
        [] => Err(SecretError::SecretEmpty),
        [current] => Ok(WebhookSecrets::new(WebhookSecret::new(current)?, None)),
        [current, previous] => Ok(WebhookSecrets::new(
            WebhookSecret::new(current)?,
            Some(WebhookSecret::new(previous)?),
        )),
        more => Err(SecretError::TooManySecrets(more.len())),
    }
}

/// Default of `WEBHOOK_SECRET_CACHE_SECONDS`: how long a loaded secret is used before it is read
/// again (a revoked or rotated secret stops working within this time).
pub const DEFAULT_CACHE_SECONDS: u64 = 300;

/// The webhook's secrets, read again from where they are stored once they are older than the
/// cache time. A failed read refuses requests (fail closed) until a read succeeds.
#[derive(Debug, Clone)]
pub struct SecretCache {
    source: Option<(SecretSource, aws_config::SdkConfig)>,
    ttl: Duration,
    audience: String,
    loaded: Arc<tokio::sync::Mutex<Loaded>>,
}

/// The secrets last read, when, and when a read last failed.
#[derive(Debug)]
struct Loaded {
    at: Instant,
    secrets: WebhookSecrets,
    failed_at: Option<Instant>,
}

impl Loaded {
    fn new(secrets: WebhookSecrets) -> Self {
        Self {
            at: Instant::now(),
            secrets,
            failed_at: None,
        }
    }
}

/// After a failed read, requests are refused without reading again for this long, so that a
/// flood of requests (signed or not) cannot turn an outage into a flood of reads.
pub const RETRY_AFTER_FAILED_READ: Duration = Duration::from_secs(5);

impl SecretCache {
    /// Secrets that never change (tests, or a secret given in code).
    pub fn fixed(secrets: WebhookSecrets) -> Self {
        Self {
            source: None,
            ttl: Duration::MAX,
            audience: super::signature::DEFAULT_AUDIENCE.to_owned(),
            loaded: Arc::new(tokio::sync::Mutex::new(Loaded::new(secrets))),
        }
    }

    /// Loads the secrets from `source` now, for requests meant for `audience` (the stack name),
    /// to be read again after `ttl`.
    pub async fn load(
        source: SecretSource,
        sdk: &aws_config::SdkConfig,
        ttl: Duration,
        audience: &str,
    ) -> Result<Self, SecretError> {
        let secrets = source.load(sdk).await?.for_audience(audience);
        Ok(Self {
            source: Some((source, sdk.clone())),
            ttl,
            audience: audience.to_owned(),
            loaded: Arc::new(tokio::sync::Mutex::new(Loaded::new(secrets))),
        })
    }

    /// The secrets to verify with: read again first when older than the cache time. A failed
    /// read refuses (fail closed), and for [`RETRY_AFTER_FAILED_READ`] no read is tried again.
    pub async fn current(&self) -> Result<WebhookSecrets, SecretError> {
        let mut loaded = self.loaded.lock().await;
        let Some((source, sdk)) = &self.source else {
            return Ok(loaded.secrets.clone());
        };
        if loaded.at.elapsed() < self.ttl {
            return Ok(loaded.secrets.clone());
        }
        if loaded
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILED_READ)
        {
            return Err(SecretError::RecentlyUnreadable);
        }
        match source.load(sdk).await {
            Ok(secrets) => {
                *loaded = Loaded::new(secrets.for_audience(&self.audience));
                Ok(loaded.secrets.clone())
            }
            Err(err) => {
                loaded.failed_at = Some(Instant::now());
                Err(err)
            }
        }
    }
}

/// `WEBHOOK_SECRET_CACHE_SECONDS` (0 to 3600) read through `var`.
pub fn cache_time_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Duration, SecretError> {
    match var(CACHE_SECONDS_ENV) {
        None => Ok(Duration::from_secs(DEFAULT_CACHE_SECONDS)),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 3600)
            .map(Duration::from_secs)
            .ok_or(SecretError::BadCacheTime(raw)),
    }
}

/// Environment variable: the audience requests must be signed for (the stack name).
pub const AUDIENCE_ENV: &str = "WEBHOOK_AUDIENCE";

/// Environment variable: seconds a loaded secret is used before it is read again.
pub const CACHE_SECONDS_ENV: &str = "WEBHOOK_SECRET_CACHE_SECONDS";

/// Why the webhook secret could not be loaded (the function then refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither variable is set.
    #[error("set {SECRET_PARAMETER_ENV} (an SSM SecureString parameter) or {SECRET_ARN_ENV} (a Secrets Manager secret)")]
    SecretSourceNotConfigured,
    /// Both variables are set.
    #[error("set only one of {SECRET_PARAMETER_ENV} and {SECRET_ARN_ENV}")]
    AmbiguousSecretSource,
    /// The parameter exists but is not a `SecureString`.
    #[error("the SSM parameter is of type {0:?}; the webhook secret must be a SecureString")]
    ParameterNotSecureString(String),
    /// The stored value is absent.
    #[error("the stored webhook secret has no value")]
    SecretEmpty,
    /// The stored value is too short.
    #[error(transparent)]
    Weak(#[from] WeakSecret),
    /// The AWS call failed.
    #[error("cannot read the webhook secret: {0}")]
    Unreadable(AwsCallError),
    /// The stored value holds more than a current and a previous secret.
    #[error("the stored webhook secret holds {0} lines; it may hold the current secret and, during a rotation, the previous one on a second line")]
    TooManySecrets(usize),
    /// A read failed moments ago: not tried again yet.
    #[error("the webhook secret could not be read moments ago; not read again yet")]
    RecentlyUnreadable,
    /// `WEBHOOK_SECRET_CACHE_SECONDS` is malformed.
    #[error("{CACHE_SECONDS_ENV} {0:?} is not a whole number of seconds from 0 to 3600")]
    BadCacheTime(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fakes::mocked;
    use aws_smithy_mocks::mock;

    const GOOD: &str = "0123456789abcdef0123456789abcdef-good";

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn exactly_one_source_must_be_configured() {
        assert_eq!(
            SecretSource::from_env(env(&[(SECRET_PARAMETER_ENV, "/kms-decommission/webhook")]))
                .unwrap(),
            SecretSource::SsmParameter("/kms-decommission/webhook".into())
        );
        assert_eq!(
            SecretSource::from_env(env(&[(
                SECRET_ARN_ENV,
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:w"
            )]))
            .unwrap(),
            SecretSource::SecretsManager(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:w".into()
            )
        );
        assert!(matches!(
            SecretSource::from_env(env(&[(SECRET_PARAMETER_ENV, "a"), (SECRET_ARN_ENV, "b")])),
            Err(SecretError::AmbiguousSecretSource)
        ));
        assert!(matches!(
            SecretSource::from_env(env(&[("WEBHOOK_SECRET", GOOD), (SECRET_ARN_ENV, " ")])),
            Err(SecretError::SecretSourceNotConfigured)
        ));
    }

    fn parameter(
        kind: aws_sdk_ssm::types::ParameterType,
        value: &str,
    ) -> aws_sdk_ssm::types::Parameter {
        aws_sdk_ssm::types::Parameter::builder()
            .name("p")
            .r#type(kind)
            .value(value)
            .build()
    }

    #[tokio::test]
    async fn a_secure_string_parameter_is_read_decrypted() {
        let rule = mock!(aws_sdk_ssm::Client::get_parameter)
            .match_requests(|r| r.with_decryption() == Some(true) && r.name() == Some("/w"))
            .then_output(|| {
                aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
                    .parameter(parameter(
                        aws_sdk_ssm::types::ParameterType::SecureString,
                        GOOD,
                    ))
                    .build()
            });
        let ssm = mocked!(aws_sdk_ssm, [&rule]);
        let secret = load_from_ssm(&ssm, "/w").await.unwrap();
        let reference = WebhookSecret::new(GOOD.as_bytes()).unwrap();
        let signed = reference.sign("1000", b"x");
        assert_eq!(
            secret.verify(Some("1000"), Some(&signed), b"x", 1000),
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_plain_string_parameter_or_a_short_value_is_refused() {
        let plain = mock!(aws_sdk_ssm::Client::get_parameter).then_output(|| {
            aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
                .parameter(parameter(aws_sdk_ssm::types::ParameterType::String, GOOD))
                .build()
        });
        let ssm = mocked!(aws_sdk_ssm, [&plain]);
        assert!(matches!(
            load_from_ssm(&ssm, "/w").await,
            Err(SecretError::ParameterNotSecureString(t)) if t == "String"
        ));
        let short = mock!(aws_sdk_ssm::Client::get_parameter).then_output(|| {
            aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
                .parameter(parameter(
                    aws_sdk_ssm::types::ParameterType::SecureString,
                    "hunter2",
                ))
                .build()
        });
        let ssm = mocked!(aws_sdk_ssm, [&short]);
        assert!(matches!(
            load_from_ssm(&ssm, "/w").await,
            Err(SecretError::Weak(WeakSecret(7)))
        ));
    }

    #[tokio::test]
    async fn a_missing_parameter_is_a_named_error() {
        let missing = mock!(aws_sdk_ssm::Client::get_parameter).then_error(|| {
            aws_sdk_ssm::operation::get_parameter::GetParameterError::ParameterNotFound(
                aws_sdk_ssm::types::error::ParameterNotFound::builder()
                    .message("no such parameter")
                    .meta(
                        aws_sdk_ssm::error::ErrorMetadata::builder()
                            .code("ParameterNotFound")
                            .build(),
                    )
                    .build(),
            )
        });
        let ssm = mocked!(aws_sdk_ssm, [&missing]);
        match load_from_ssm(&ssm, "/w").await {
            Err(SecretError::Unreadable(e)) => assert_eq!(e.code, "ParameterNotFound"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_secrets_manager_string_is_read() {
        let rule = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .match_requests(|r| r.secret_id() == Some("webhook"))
            .then_output(|| {
                aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput::builder()
                    .secret_string(format!("{GOOD}\n"))
                    .build()
            });
        let client = mocked!(aws_sdk_secretsmanager, [&rule]);
        let secret = load_from_secrets_manager(&client, "webhook").await.unwrap();
        let reference = WebhookSecret::new(GOOD.as_bytes()).unwrap();
        let signed = reference.sign("1000", b"x");
        assert_eq!(
            secret.verify(Some("1000"), Some(&signed), b"x", 1000),
            Ok(())
        );
        let empty = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(|| {
            aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput::builder()
                .build()
        });
        let client = mocked!(aws_sdk_secretsmanager, [&empty]);
        assert!(matches!(
            load_from_secrets_manager(&client, "webhook").await,
            Err(SecretError::SecretEmpty)
        ));
    }

    #[tokio::test]
    async fn during_a_rotation_the_current_and_the_previous_secret_are_both_accepted() {
        const OLD: &str = "fedcba9876543210fedcba9876543210-old";
        const OTHER: &str = "another-secret-entirely-0123456789ab";
        let sign = |secret: &str| {
            WebhookSecret::new(secret.as_bytes())
                .unwrap()
                .sign("1000", b"x")
        };
        let both = secrets_from(format!("{GOOD}\n{OLD}\n").as_bytes()).unwrap();
        assert_eq!(both.len(), 2);
        for secret in [GOOD, OLD] {
            assert_eq!(
                both.verify(Some("1000"), Some(&sign(secret)), b"x", 1000),
                Ok(())
            );
        }
        assert_eq!(
            both.verify(Some("1000"), Some(&sign(OTHER)), b"x", 1000),
            Err(super::super::signature::SignatureError::SignatureMismatch)
        );
        let after = secrets_from(GOOD.as_bytes()).unwrap();
        assert!(after
            .verify(Some("1000"), Some(&sign(OLD)), b"x", 1000)
            .is_err());
        assert!(matches!(
            secrets_from(format!("{GOOD}\n{OLD}\n{OTHER}").as_bytes()),
            Err(SecretError::TooManySecrets(3))
        ));
        assert!(matches!(
            secrets_from(format!("{GOOD}\nshort").as_bytes()),
            Err(SecretError::Weak(_))
        ));
    }

    #[tokio::test]
    async fn a_secret_is_read_again_after_the_cache_time_and_a_failed_read_refuses() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = reads.clone();
        let rule = mock!(aws_sdk_ssm::Client::get_parameter)
            .sequence()
            .output(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
                    .parameter(parameter(
                        aws_sdk_ssm::types::ParameterType::SecureString,
                        GOOD,
                    ))
                    .build()
            })
            .error(|| {
                aws_sdk_ssm::operation::get_parameter::GetParameterError::ParameterNotFound(
                    aws_sdk_ssm::types::error::ParameterNotFound::builder().build(),
                )
            })
            .build();
        let ssm = mocked!(aws_sdk_ssm, [&rule]);
        let first = load_from_ssm(&ssm, "/w").await;
        assert!(first.is_ok());
        // The parameter was deleted (the secret revoked): the next read fails, closed.
        assert!(matches!(
            load_from_ssm(&ssm, "/w").await,
            Err(SecretError::Unreadable(_))
        ));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache_time_from_env(|_| None).unwrap(),
            Duration::from_secs(DEFAULT_CACHE_SECONDS)
        );
        assert!(cache_time_from_env(|_| Some("7200".into())).is_err());
    }

    #[tokio::test]
    async fn after_a_failed_read_requests_are_refused_without_reading_again_for_a_while() {
        // SSM at a port nothing listens on: every read fails at once.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .credentials_provider(aws_sdk_ssm::config::SharedCredentialsProvider::new(
                aws_sdk_ssm::config::Credentials::new("a", "b", None, None, "test"),
            ))
            .build();
        let stale = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .unwrap_or_else(Instant::now);
        let cache = SecretCache {
            source: Some((SecretSource::SsmParameter("/w".into()), sdk)),
            ttl: Duration::from_secs(1),
            audience: "kms-decommission".into(),
            loaded: Arc::new(tokio::sync::Mutex::new(Loaded {
                at: stale,
                secrets: secrets_from(GOOD.as_bytes()).unwrap(),
                failed_at: None,
            })),
        };
        assert!(matches!(
            cache.current().await,
            Err(SecretError::Unreadable(_))
        ));
        assert!(matches!(
            cache.current().await,
            Err(SecretError::RecentlyUnreadable)
        ));
        // A fixed secret never expires.
        let fixed = SecretCache::fixed(secrets_from(GOOD.as_bytes()).unwrap());
        assert_eq!(fixed.current().await.unwrap().len(), 1);
    }
}
