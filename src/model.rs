//! The value types that the state document, the steps and the triggers share: the store, its
//! keys, the execution. This module imports nothing of the crate, so any module may use it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kms::types::{ConnectionStateType, KeyState};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde::{Deserialize, Serialize};

/// Serde for the SDK's KMS enums (`KeyState`, `ConnectionStateType`, ...) by their KMS names;
/// a name the SDK does not know is kept as it is.
pub mod kms_name {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the KMS name.
    pub fn serialize<T: AsRef<str>, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_ref())
    }

    /// Reads a KMS name.
    pub fn deserialize<'de, T: for<'a> From<&'a str>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(T::from(name.as_str()))
    }
}

/// An instant written in a state document as RFC 3339 in UTC (`2026-12-28T10:00:00Z`). Built
/// rounded to whole seconds: up for instants to wait for (a Wait never ends before the instant it
/// stands for), down for instants already passed. Read back exactly as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(UNIX_EPOCH);

    /// `time` rounded up to a whole second.
    pub fn ceil(time: SystemTime) -> Self {
        let floor = Self::floor(time);
        if floor.0 < time {
            Self(floor.0 + Duration::from_secs(1))
        } else {
            floor
        }
    }

    /// `time` rounded down to a whole second (the epoch for an earlier time).
    pub fn floor(time: SystemTime) -> Self {
        let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    /// The instant.
    pub fn time(self) -> SystemTime {
        self.0
    }

    /// Parses RFC 3339; `Err` says why not. A timestamp is what it writes back as: a time that
    /// RFC 3339 cannot write (a year outside 1-9999) is refused, and a time finer than the
    /// microsecond is cut to it, so a document read and written again keeps every timestamp.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed = DateTime::from_str(text, Format::DateTime)
            .map_err(|e| format!("{text:?} is not an RFC 3339 timestamp: {e}"))?;
        let written = parsed
            .fmt(Format::DateTime)
            .map_err(|e| format!("{text:?} is out of range: {e}"))?;
        let parsed = DateTime::from_str(&written, Format::DateTime)
            .map_err(|e| format!("{text:?} is out of range: {e}"))?;
        SystemTime::try_from(parsed)
            .map(Self)
            .map_err(|e| format!("{text:?} is out of range: {e}"))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = DateTime::from(self.0)
            .fmt(Format::DateTime)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
        f.write_str(&text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Most keys any list in the state document (or an error message) carries.
pub const SAMPLE_CAP: usize = 25;

/// The Step Functions execution running the decommission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionInfo {
    /// Execution ARN.
    pub id: String,
    /// Execution name.
    #[serde(default)]
    pub name: Option<String>,
    /// When the execution (or its Initialize state) started.
    #[serde(default)]
    pub start_time: Option<String>,
}

/// The kind of custom key store, with KMS's wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
pub enum StoreType {
    /// A CloudHSM key store.
    #[serde(rename = "AWS_CLOUDHSM")]
    #[strum(serialize = "AWS_CLOUDHSM")]
    CloudHsm,
    /// An external key store (XKS).
    #[serde(rename = "EXTERNAL_KEY_STORE")]
    #[strum(serialize = "EXTERNAL_KEY_STORE")]
    External,
}

impl StoreType {
    /// KMS's name of the type.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The `Origin` KMS gives the keys of such a store: KMS names it like the store type.
    pub fn key_origin(self) -> &'static str {
        self.as_str()
    }
}

/// The store as last described by DescribeCustomKeyStores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreSummary {
    /// Store id.
    pub custom_key_store_id: String,
    /// Store name.
    pub custom_key_store_name: String,
    /// CloudHSM or external key store.
    pub custom_key_store_type: StoreType,
    /// The CloudHSM cluster (CloudHSM stores only).
    #[serde(default)]
    pub cloud_hsm_cluster_id: Option<String>,
    /// The XKS proxy endpoint (external key stores only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks_proxy_uri_endpoint: Option<String>,
    /// The XKS proxy's VPC endpoint service (external key stores with VPC connectivity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks_proxy_vpc_endpoint_service_name: Option<String>,
    /// Connection state when described (`CONNECTED`, `DISCONNECTED`, ...).
    #[serde(with = "kms_name")]
    pub connection_state: ConnectionStateType,
    /// KMS's ConnectionErrorCode, present only in FAILED.
    #[serde(default)]
    pub connection_error_code: Option<String>,
}

/// One key of the store, as shown in samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySample {
    /// Key id.
    pub key_id: String,
    /// Key ARN (the label of the key material in a CloudHSM cluster).
    pub arn: String,
    /// Key state when inventoried.
    #[serde(with = "kms_name")]
    pub key_state: KeyState,
    /// The external key id (external key stores only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks_key_id: Option<String>,
    /// DeletionDate (PendingDeletion keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<Timestamp>,
}

/// Appends `item` to a capped sample, returning whether it was kept.
pub fn push_capped<T>(sample: &mut Vec<T>, item: T) -> bool {
    if sample.len() < SAMPLE_CAP {
        sample.push(item);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_to_whole_seconds_and_read_back_as_written() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_605_171_565);
        assert_eq!(Timestamp::floor(at).to_string(), "2026-12-07T00:59:31Z");
        assert_eq!(Timestamp::ceil(at).to_string(), "2026-12-07T00:59:32Z");
        let whole = Timestamp::floor(at);
        assert_eq!(Timestamp::ceil(whole.time()), whole);
        for text in ["2026-12-28T10:00:00Z", "2026-11-28T10:00:00.5Z"] {
            let parsed: Timestamp = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(
                serde_json::to_value(parsed).unwrap(),
                serde_json::json!(text)
            );
        }
        assert!(Timestamp::parse("yesterday").is_err());
        assert_eq!(
            Timestamp::parse("2026-11-28T10:00:00.000Z").unwrap().time(),
            UNIX_EPOCH + Duration::from_secs(1_795_860_000)
        );
    }

    /// Found by the `cancel_input` fuzz target: year 0 parsed but could not be written, and was
    /// written as 1970-01-01T00:00:00Z; nanoseconds parsed but were written as microseconds. A
    /// document read and written again changed its timestamps.
    #[test]
    fn a_timestamp_reads_back_as_it_writes() {
        for text in ["0000-01-01T00:00:00Z", "0000-12-31T23:59:59.999Z"] {
            let err = Timestamp::parse(text).unwrap_err();
            assert!(err.contains("out of range"), "{text}: {err}");
        }
        for (text, written) in [
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            (
                "2026-11-28T10:00:00.123456789Z",
                "2026-11-28T10:00:00.123456Z",
            ),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z"),
        ] {
            let parsed = Timestamp::parse(text).unwrap();
            assert_eq!(parsed.to_string(), written, "{text}");
            assert_eq!(Timestamp::parse(written).unwrap(), parsed, "{text}");
        }
    }
}
