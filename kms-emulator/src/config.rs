//! Emulator settings: time scale, delays, quotas, identity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::identity::{check_access_key_id, Principal};

/// Emulated seconds in one day.
pub const SECONDS_PER_DAY: f64 = 86_400.0;

/// Settings of one emulator instance. Every duration is in emulated units and scales with
/// `day_seconds` (emulated seconds * day_seconds / 86400 = wall seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatorConfig {
    /// Wall seconds one emulated day lasts (86400 = real time).
    pub day_seconds: f64,
    /// Emulated hours between a key's DeletionDate and its real deletion (KMS: up to 24).
    pub deletion_lag_hours: f64,
    /// Emulated CONNECTING duration of CloudHSM key stores (KMS: up to 20 minutes).
    pub cloudhsm_connect_minutes: f64,
    /// Emulated CONNECTING duration of external key stores (KMS: about 5 minutes).
    pub xks_connect_minutes: f64,
    /// Emulated DISCONNECTING duration (KMS: about 5 minutes).
    pub disconnect_minutes: f64,
    /// Whether the documented per-operation request quotas are enforced.
    pub quotas: bool,
    /// Milliseconds of latency added to every KMS call.
    pub latency_ms: u64,
    /// The AWS account id in ARNs.
    pub account_id: String,
    /// The AWS Region in ARNs.
    pub region: String,
    /// AWS managed keys (KeyManager AWS) seeded at start and after reset.
    pub aws_managed_keys: usize,
    /// Epoch seconds (emulated clock) from which key usage is tracked for GetKeyLastUsage; keys
    /// created earlier report it as their TrackingStartDate, and use before it is not recorded.
    /// `None`: tracking covers every key since its creation.
    #[serde(default)]
    pub tracking_start_date: Option<f64>,
    /// Emulated seconds between a KMS call and its CloudTrail record becoming visible to
    /// LookupEvents (real CloudTrail: about 5 minutes on average, no documented bound). Default 0.
    #[serde(default)]
    pub cloudtrail_delivery_delay: f64,
    /// Emulated days CloudTrail's event history keeps a record (CloudTrail: 90). The local stack
    /// keeps them longer: it shortens days (a 90-day history would last 90 s at 1 s a day) but not
    /// Step Functions' retry backoff, which alone can outlast such a history.
    #[serde(default = "default_retention_days")]
    pub cloudtrail_retention_days: f64,
    /// Access key id -> principal ARN (IAM user, assumed-role session or root) of the callers,
    /// for CloudTrail's `userIdentity`. Seeded at start and after reset; the admin API adds more.
    #[serde(default)]
    pub identities: BTreeMap<String, String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            day_seconds: SECONDS_PER_DAY,
            deletion_lag_hours: 6.0,
            cloudhsm_connect_minutes: 20.0,
            xks_connect_minutes: 5.0,
            disconnect_minutes: 5.0,
            quotas: true,
            latency_ms: 0,
            account_id: "123456789012".to_string(),
            region: "us-east-1".to_string(),
            aws_managed_keys: 3,
            tracking_start_date: None,
            cloudtrail_delivery_delay: 0.0,
            cloudtrail_retention_days: crate::cloudtrail::RETENTION_DAYS,
            identities: BTreeMap::new(),
        }
    }
}

impl EmulatorConfig {
    /// Settings for tests: one emulated day lasts one wall second, everything else as `Default`.
    pub fn fast() -> Self {
        Self {
            day_seconds: 1.0,
            ..Self::default()
        }
    }

    /// Wall seconds that `emulated_seconds` last under this time scale.
    pub fn wall_seconds(&self, emulated_seconds: f64) -> f64 {
        emulated_seconds * self.day_seconds / SECONDS_PER_DAY
    }

    /// Checks the settings; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.day_seconds.is_finite() && self.day_seconds > 0.0) {
            return Err("day_seconds must be a positive number".into());
        }
        for (name, value) in [
            ("deletion_lag_hours", self.deletion_lag_hours),
            ("cloudhsm_connect_minutes", self.cloudhsm_connect_minutes),
            ("xks_connect_minutes", self.xks_connect_minutes),
            ("disconnect_minutes", self.disconnect_minutes),
            ("cloudtrail_delivery_delay", self.cloudtrail_delivery_delay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a non-negative number"));
            }
        }
        if !(self.cloudtrail_retention_days.is_finite() && self.cloudtrail_retention_days > 0.0) {
            return Err("cloudtrail_retention_days must be a positive number".into());
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err("account_id must be 12 digits".into());
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(
                "region must be lowercase letters, digits and dashes, e.g. us-east-1".into(),
            );
        }
        if self
            .tracking_start_date
            .is_some_and(|t| !t.is_finite() || t < 0.0)
        {
            return Err("tracking_start_date must be epoch seconds".into());
        }
        if self.aws_managed_keys > 1000 {
            return Err("aws_managed_keys must be at most 1000".into());
        }
        for (access_key_id, arn) in &self.identities {
            check_access_key_id(access_key_id).map_err(|e| format!("identities: {e}"))?;
            Principal::parse(arn).map_err(|e| format!("identities: {e}"))?;
        }
        Ok(())
    }
}

fn default_retention_days() -> f64 {
    crate::cloudtrail::RETENTION_DAYS
}

/// A partial update of [`EmulatorConfig`] (the body of `POST /_emulator/config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// See [`EmulatorConfig::day_seconds`].
    pub day_seconds: Option<f64>,
    /// See [`EmulatorConfig::deletion_lag_hours`].
    pub deletion_lag_hours: Option<f64>,
    /// See [`EmulatorConfig::cloudhsm_connect_minutes`].
    pub cloudhsm_connect_minutes: Option<f64>,
    /// See [`EmulatorConfig::xks_connect_minutes`].
    pub xks_connect_minutes: Option<f64>,
    /// See [`EmulatorConfig::disconnect_minutes`].
    pub disconnect_minutes: Option<f64>,
    /// See [`EmulatorConfig::quotas`].
    pub quotas: Option<bool>,
    /// See [`EmulatorConfig::latency_ms`].
    pub latency_ms: Option<u64>,
    /// See [`EmulatorConfig::account_id`].
    pub account_id: Option<String>,
    /// See [`EmulatorConfig::region`].
    pub region: Option<String>,
    /// See [`EmulatorConfig::aws_managed_keys`].
    pub aws_managed_keys: Option<usize>,
    /// See [`EmulatorConfig::tracking_start_date`]; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub tracking_start_date: Option<Option<f64>>,
    /// See [`EmulatorConfig::cloudtrail_delivery_delay`].
    pub cloudtrail_delivery_delay: Option<f64>,
    /// See [`EmulatorConfig::cloudtrail_retention_days`].
    pub cloudtrail_retention_days: Option<f64>,
    /// See [`EmulatorConfig::identities`]: the seeded identities, in force from the next reset
    /// (the admin API's `/_emulator/identities` changes the live ones). Accepted so that the
    /// configuration read back can be written again.
    pub identities: Option<BTreeMap<String, String>>,
}

/// Distinguishes a member given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

impl ConfigPatch {
    /// The configuration with this patch applied, validated.
    pub fn apply_to(&self, config: &EmulatorConfig) -> Result<EmulatorConfig, String> {
        let mut next = config.clone();
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { next.$field = v.clone(); } )* };
        }
        set!(
            day_seconds,
            deletion_lag_hours,
            cloudhsm_connect_minutes,
            xks_connect_minutes,
            disconnect_minutes,
            quotas,
            latency_ms,
            account_id,
            region,
            aws_managed_keys,
            tracking_start_date,
            cloudtrail_delivery_delay,
            cloudtrail_retention_days,
            identities
        );
        next.validate()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_scales_a_day_to_one_second() {
        let config = EmulatorConfig::fast();
        assert_eq!(config.wall_seconds(7.0 * SECONDS_PER_DAY), 7.0);
        assert_eq!(EmulatorConfig::default().wall_seconds(60.0), 60.0);
    }

    #[test]
    fn patch_changes_only_given_fields_and_validates() {
        let base = EmulatorConfig::fast();
        let patch: ConfigPatch = serde_json::from_str(r#"{"quotas": false}"#).unwrap();
        let next = patch.apply_to(&base).unwrap();
        assert!(!next.quotas);
        assert_eq!(next.day_seconds, 1.0);
        let bad: ConfigPatch = serde_json::from_str(r#"{"day_seconds": 0}"#).unwrap();
        assert!(bad.apply_to(&base).unwrap_err().contains("day_seconds"));
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"nope": 1}"#).is_err());
        let set: ConfigPatch = serde_json::from_str(r#"{"tracking_start_date": 5.0}"#).unwrap();
        let with_date = set.apply_to(&base).unwrap();
        assert_eq!(with_date.tracking_start_date, Some(5.0));
        let cleared: ConfigPatch =
            serde_json::from_str(r#"{"tracking_start_date": null}"#).unwrap();
        assert_eq!(
            cleared.apply_to(&with_date).unwrap().tracking_start_date,
            None
        );
        assert_eq!(
            patch.apply_to(&with_date).unwrap().tracking_start_date,
            Some(5.0)
        );
        let delay: ConfigPatch =
            serde_json::from_str(r#"{"cloudtrail_delivery_delay": 300}"#).unwrap();
        assert_eq!(
            delay.apply_to(&base).unwrap().cloudtrail_delivery_delay,
            300.0
        );
        let negative: ConfigPatch =
            serde_json::from_str(r#"{"cloudtrail_delivery_delay": -1}"#).unwrap();
        assert!(negative
            .apply_to(&base)
            .unwrap_err()
            .contains("cloudtrail_delivery_delay"));
        // The configuration read back is a valid patch (the e2e fixture restores it so).
        let read_back: ConfigPatch =
            serde_json::from_value(serde_json::to_value(&base).unwrap()).unwrap();
        assert_eq!(read_back.apply_to(&base).unwrap(), base);
    }

    #[test]
    fn identities_are_validated() {
        let mut config = EmulatorConfig::fast();
        config.identities.insert(
            "AKIAPAYMENTS".into(),
            "arn:aws:iam::111122223333:user/payments-app".into(),
        );
        assert!(config.validate().is_ok());
        config
            .identities
            .insert("AKIABAD".into(), "arn:aws:iam::111122223333:group/x".into());
        assert!(config.validate().unwrap_err().contains("identities"));
        let mut config = EmulatorConfig::fast();
        config
            .identities
            .insert("bad key!".into(), "arn:aws:iam::111122223333:root".into());
        assert!(config.validate().unwrap_err().contains("identities"));
    }
}
