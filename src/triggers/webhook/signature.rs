//! Webhook request signatures: HMAC-SHA256 over `<timestamp>.<audience>.<raw body>`, where the
//! audience names the stack the request is meant for (its stack name, `WEBHOOK_AUDIENCE`), so a
//! request signed for one stack is refused by another that shares the secret.
//!
//! The sender puts the Unix time in seconds in `X-Signature-Timestamp` and
//! `sha256=<lowercase hex HMAC>` in `X-Signature`. The timestamp is part of the signed message,
//! so an old request cannot be replayed with a fresh timestamp; requests older than
//! [`MAX_AGE_SECONDS`] or more than [`MAX_FUTURE_SKEW_SECONDS`] ahead are refused.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Header carrying the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-signature";
/// Oldest accepted signature, in seconds.
pub const MAX_AGE_SECONDS: i64 = 300;
/// How far ahead of our clock a timestamp may be (clock skew), in seconds.
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 30;
/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

const SIGNATURE_PREFIX: &str = "sha256=";
/// The audience of a secret not bound to another: the default stack name.
pub const DEFAULT_AUDIENCE: &str = "kms-decommission";

/// The shared webhook secret, kept as a keyed HMAC. Its `Debug` output never shows the value.
#[derive(Clone)]
pub struct WebhookSecret {
    keyed: Hmac<Sha256>,
    len: usize,
    audience: String,
}

/// The secret is too short to be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the webhook secret is {0} bytes long; at least {MIN_SECRET_BYTES} are required")]
pub struct WeakSecret(pub usize);

impl WebhookSecret {
    /// Wraps a secret of at least [`MIN_SECRET_BYTES`] bytes (surrounding whitespace, such as a
    /// trailing newline from a file, is not part of it).
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        let trimmed = secret.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(trimmed.len()));
        }
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(trimmed)
            .map_err(|_| WeakSecret(trimmed.len()))?;
        Ok(Self {
            keyed,
            len: trimmed.len(),
            audience: DEFAULT_AUDIENCE.to_owned(),
        })
    }

    /// The same secret, signing and verifying for `audience` (a stack name).
    pub fn for_audience(mut self, audience: &str) -> Self {
        audience.clone_into(&mut self.audience);
        self
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(self.audience.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `X-Signature` header value for `body` signed at `timestamp` (what a sender computes).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!(
            "{SIGNATURE_PREFIX}{}",
            hex::encode(self.mac(timestamp, body))
        )
    }

    /// Checks the headers of a request whose raw (decoded) body is `body`, at Unix time `now`.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let signature = signature.ok_or(SignatureError::MissingSignature)?;
        let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
        let signed_at = parse_timestamp(timestamp)?;
        if signed_at < now - MAX_AGE_SECONDS {
            return Err(SignatureError::StaleTimestamp {
                age: now - signed_at,
            });
        }
        if signed_at > now + MAX_FUTURE_SKEW_SECONDS {
            return Err(SignatureError::FutureTimestamp {
                ahead: signed_at - now,
            });
        }
        let given = signature
            .trim()
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(|hex_digits| hex::decode(hex_digits).ok())
            .filter(|bytes| bytes.len() == 32)
            .ok_or(SignatureError::MalformedSignature)?;
        let expected = self.mac(timestamp, body);
        if bool::from(expected.ct_eq(given.as_slice())) {
            Ok(())
        } else {
            Err(SignatureError::SignatureMismatch)
        }
    }
}

/// The secrets a request may be signed with: the current one and, during a rotation, the
/// previous one. Stored as one value, the current secret first and the previous one on a second
/// line.
#[derive(Clone, Debug)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl WebhookSecrets {
    /// The current secret, then the previous one during a rotation.
    pub fn new(current: WebhookSecret, previous: Option<WebhookSecret>) -> Self {
        Self(std::iter::once(current).chain(previous).collect())
    }

    /// The same secrets, for `audience` (a stack name).
    pub fn for_audience(self, audience: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|s| s.for_audience(audience))
                .collect(),
        )
    }

    /// How many secrets are accepted (2 during a rotation).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Accepts a request signed with any of the secrets (see [`WebhookSecret::verify`]); the
    /// first secret's refusal otherwise.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let mut first_error = None;
        for secret in &self.0 {
            match secret.verify(timestamp, signature, body, now) {
                Ok(()) => return Ok(()),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or(SignatureError::SignatureMismatch))
    }
}

impl From<WebhookSecret> for WebhookSecrets {
    fn from(secret: WebhookSecret) -> Self {
        Self(vec![secret])
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebhookSecret(<{} bytes redacted>, audience {:?})",
            self.len, self.audience
        )
    }
}

fn parse_timestamp(timestamp: &str) -> Result<i64, SignatureError> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::MalformedTimestamp);
    }
    timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)
}

/// Why a request's signature was refused (answered 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq, strum::IntoStaticStr)]
pub enum SignatureError {
    /// No `X-Signature` header.
    #[error("the request has no X-Signature header")]
    MissingSignature,
    /// No `X-Signature-Timestamp` header.
    #[error("the request has no X-Signature-Timestamp header")]
    MissingTimestamp,
    /// The timestamp is not a decimal number of seconds.
    #[error("X-Signature-Timestamp must be the Unix time in whole seconds")]
    MalformedTimestamp,
    /// The timestamp is older than five minutes.
    #[error("the signature is {age} s old; requests older than {MAX_AGE_SECONDS} s are refused")]
    StaleTimestamp {
        /// Seconds between the timestamp and now.
        age: i64,
    },
    /// The timestamp is in the future.
    #[error("the signature timestamp is {ahead} s in the future")]
    FutureTimestamp {
        /// Seconds the timestamp is ahead of now.
        ahead: i64,
    },
    /// `X-Signature` is not `sha256=` followed by 64 hex digits.
    #[error("X-Signature must be sha256= followed by 64 hex digits")]
    MalformedSignature,
    /// The signature does not match the body and timestamp under the shared secret.
    #[error("the signature does not match the request")]
    SignatureMismatch,
}

impl SignatureError {
    /// The error name returned to the caller.
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    fn secret() -> WebhookSecret {
        WebhookSecret::new(b"test-secret-0123456789abcdef-0123456789").unwrap()
    }

    #[test]
    fn matches_an_independently_computed_signature() {
        // printf '1700000000.kms-decommission.{}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        let s = WebhookSecret::new(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            s.sign("1700000000", b"{}"),
            "sha256=8de1e7fb1249c29d0d5fb59555d1ba38b342570e08724dde6ed38cf80d8ff7d1"
        );
        // The same request for another stack is another signature.
        assert_ne!(
            s.clone().for_audience("other").sign("1700000000", b"{}"),
            s.sign("1700000000", b"{}")
        );
    }

    #[test]
    fn a_correct_signature_is_accepted() {
        let body = br#"{"Action":"status","TicketId":"CHG-1"}"#;
        let ts = NOW.to_string();
        let sig = secret().sign(&ts, body);
        assert_eq!(secret().verify(Some(&ts), Some(&sig), body, NOW), Ok(()));
        let upper = format!("sha256={}", sig["sha256=".len()..].to_uppercase());
        assert_eq!(secret().verify(Some(&ts), Some(&upper), body, NOW), Ok(()));
    }

    #[test]
    fn a_different_secret_body_or_timestamp_is_refused() {
        let body = b"{}";
        let ts = NOW.to_string();
        let other = WebhookSecret::new(b"another-secret-0123456789abcdef-012345").unwrap();
        let sig = other.sign(&ts, body);
        assert_eq!(
            secret().verify(Some(&ts), Some(&sig), body, NOW),
            Err(SignatureError::SignatureMismatch)
        );
        let sig = secret().sign(&ts, body);
        assert_eq!(
            secret().verify(Some(&ts), Some(&sig), b"{ }", NOW),
            Err(SignatureError::SignatureMismatch)
        );
        let earlier = (NOW - 1).to_string();
        assert_eq!(
            secret().verify(Some(&earlier), Some(&sig), body, NOW),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let ts = NOW.to_string();
        let sig = secret().sign(&ts, b"{}");
        assert_eq!(
            secret().verify(Some(&ts), None, b"{}", NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            secret().verify(None, Some(&sig), b"{}", NOW),
            Err(SignatureError::MissingTimestamp)
        );
        for bad in ["", "-5", "1.5", "12345678901234", "now"] {
            assert_eq!(
                secret().verify(Some(bad), Some(&sig), b"{}", NOW),
                Err(SignatureError::MalformedTimestamp),
                "{bad:?}"
            );
        }
        for bad in [
            "",
            "sha256=",
            "sha1=abcd",
            &sig[7..],
            "sha256=zz",
            &sig[..sig.len() - 2],
        ] {
            assert_eq!(
                secret().verify(Some(&ts), Some(bad), b"{}", NOW),
                Err(SignatureError::MalformedSignature),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_even_when_correctly_signed() {
        let old = (NOW - MAX_AGE_SECONDS - 1).to_string();
        let sig = secret().sign(&old, b"{}");
        assert_eq!(
            secret().verify(Some(&old), Some(&sig), b"{}", NOW),
            Err(SignatureError::StaleTimestamp {
                age: MAX_AGE_SECONDS + 1
            })
        );
        let edge = (NOW - MAX_AGE_SECONDS).to_string();
        let sig = secret().sign(&edge, b"{}");
        assert_eq!(secret().verify(Some(&edge), Some(&sig), b"{}", NOW), Ok(()));
        let ahead = (NOW + MAX_FUTURE_SKEW_SECONDS + 1).to_string();
        let sig = secret().sign(&ahead, b"{}");
        assert!(matches!(
            secret().verify(Some(&ahead), Some(&sig), b"{}", NOW),
            Err(SignatureError::FutureTimestamp { .. })
        ));
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert_eq!(WebhookSecret::new(b"short").unwrap_err(), WeakSecret(5));
        assert_eq!(WebhookSecret::new(&[b' '; 40]).unwrap_err(), WeakSecret(0));
        let debug = format!("{:?}", secret());
        assert!(!debug.contains("test-secret"), "{debug}");
    }
}
