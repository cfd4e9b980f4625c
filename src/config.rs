//! Handler configuration from the environment (`docs/workflow-contract.md`, "Handler
//! configuration"). Every variable is optional; a malformed one is an `InvalidConfiguration`
//! error naming it, never a panic.

use std::time::Duration;

use crate::error::DecommissionError;

/// Request rates (per second) and concurrency for KMS calls, kept under KMS's request quotas.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingConfig {
    /// ListKeys calls per second (KMS quota 500).
    pub list_keys_rps: f64,
    /// DescribeKey calls per second (KMS quota 2000).
    pub describe_key_rps: f64,
    /// ListResourceTags calls per second (KMS quota 2000).
    pub list_resource_tags_rps: f64,
    /// TagResource calls per second (KMS quota 10).
    pub tag_resource_rps: f64,
    /// ScheduleKeyDeletion calls per second (KMS quota 15).
    pub schedule_key_deletion_rps: f64,
    /// Custom key store operations per second, each (KMS quota 5).
    pub custom_key_store_rps: f64,
    /// KMS calls in flight at once within one invocation.
    pub concurrency: usize,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            // 95% of each quota: the emulator and KMS count arrivals, and a paced stream
            // arrives with a few milliseconds of jitter.
            list_keys_rps: 475.0,
            describe_key_rps: 1900.0,
            list_resource_tags_rps: 1900.0,
            tag_resource_rps: 9.5,
            schedule_key_deletion_rps: 14.25,
            custom_key_store_rps: 4.75,
            concurrency: 48,
        }
    }
}

/// Quarantine days of a real run whose input names none: two weekly cycles (docs/quarantine.md,
/// "The default").
pub const DEFAULT_QUARANTINE_DAYS: u32 = 14;

/// Everything a step needs besides its clients and the state document.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Wait between checks while keys are pending deletion and due (`KEY_DELETION_POLL_SECONDS`).
    pub key_deletion_poll_seconds: u64,
    /// Fail `KeyDeletionOverdue` this long after a pending key's DeletionDate
    /// (`KEY_DELETION_OVERDUE_SECONDS`).
    pub key_deletion_overdue_seconds: u64,
    /// During the waiting period, check keys and a CloudHSM store's connection at least this
    /// often (`CONNECTION_CHECK_SECONDS`).
    pub connection_check_seconds: u64,
    /// A CloudHSM store's connection is checked (and the store reconnected) from this long
    /// before the earliest DeletionDate, then at every poll, so that it is CONNECTED when KMS
    /// deletes the keys (`STORE_CONNECTION_LEAD_SECONDS`).
    pub store_connection_lead_seconds: u64,
    /// Once every key of a CloudHSM store is gone, how long to wait for CloudTrail's `DeleteKey`
    /// events of the run's keys before ending `KeyMaterialDeletionUnconfirmed`
    /// (`KEY_MATERIAL_CHECK_SECONDS`).
    pub key_material_check_seconds: u64,
    /// Wait between connection-state polls (`STORE_POLL_SECONDS`).
    pub store_poll_seconds: u64,
    /// Fail `ConnectTimedOut` after this long trying to connect (`CONNECT_TIMEOUT_SECONDS`).
    pub connect_timeout_seconds: u64,
    /// Fail `DisconnectTimedOut` after this long DISCONNECTING (`DISCONNECT_TIMEOUT_SECONDS`).
    pub disconnect_timeout_seconds: u64,
    /// Connect attempts per connect episode when KMS reports a transient ConnectionErrorCode
    /// (`MAX_CONNECT_ATTEMPTS`).
    pub max_connect_attempts: u32,
    /// A batch step returns its cursor this long before the invocation deadline
    /// (`DEADLINE_MARGIN_MS`).
    pub deadline_margin: Duration,
    /// Time an invocation may take when Lambda's deadline is not in the future, as under
    /// `cargo lambda watch` (`INVOCATION_BUDGET_SECONDS`; set it to the function's timeout).
    pub invocation_budget: Duration,
    /// ListKeys page size, 1-1000 (`KMS_LIST_KEYS_PAGE_SIZE`).
    pub list_keys_page_size: i32,
    /// Whether console and webhook runs wait for a second person's approval before their first
    /// change (`APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK`, `true` or `false`); tag-started runs
    /// always do.
    pub approval_required_for_console_and_webhook: bool,
    /// How long a run waits for approval before it ends `ApprovalTimedOut`
    /// (`APPROVAL_TIMEOUT_DAYS`, a number of days above 0 and at most 30; fractions allowed).
    pub approval_timeout_seconds: u64,
    /// Quarantine length for runs whose input gives no `QuarantineDays` (`DEFAULT_QUARANTINE_DAYS`,
    /// 0 to 90; 0 skips the quarantine).
    pub default_quarantine_days: u32,
    /// Seconds in a quarantine day (`QUARANTINE_DAY_SECONDS`, 86400; a local stack shortens it
    /// as its KMS emulator shortens KMS's days).
    pub quarantine_day_seconds: u64,
    /// During a quarantine, look in CloudTrail at least this often (`QUARANTINE_CHECK_SECONDS`).
    pub quarantine_check_seconds: u64,
    /// Time CloudTrail may take to show an event: a lookup reads only events older than this
    /// (`CLOUDTRAIL_DELIVERY_MARGIN_SECONDS`).
    pub cloudtrail_delivery_margin_seconds: u64,
    /// The CloudWatch Logs group a CloudTrail trail delivers this Region's KMS events to
    /// (`CLOUDTRAIL_LOG_GROUP_NAME`): when set, the quarantine reads it with Logs Insights
    /// queries instead of LookupEvents.
    pub cloudtrail_log_group_name: Option<String>,
    /// Request pacing.
    pub pacing: PacingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_deletion_poll_seconds: 3600,
            key_deletion_overdue_seconds: 172_800,
            connection_check_seconds: 86_400,
            // Six hours: a reconnect (minutes, at most CONNECT_TIMEOUT_SECONDS) and a step's
            // retries under KMS faults (about 20 minutes) fit many times over.
            store_connection_lead_seconds: 21_600,
            // CloudTrail shows most events within minutes (no documented bound).
            key_material_check_seconds: 21_600,
            store_poll_seconds: 30,
            connect_timeout_seconds: 3600,
            disconnect_timeout_seconds: 3600,
            max_connect_attempts: 3,
            deadline_margin: Duration::from_millis(10_000),
            invocation_budget: Duration::from_secs(300),
            // A page's ListKeys and its slowest DescribeKey are paid once per page: 1000 keys a
            // page keep that overhead near 5% of an inventory at the DescribeKey quota.
            list_keys_page_size: 1000,
            approval_required_for_console_and_webhook: true,
            approval_timeout_seconds: 7 * 86_400,
            default_quarantine_days: DEFAULT_QUARANTINE_DAYS,
            quarantine_day_seconds: 86_400,
            quarantine_check_seconds: 86_400,
            // CloudTrail shows most events within about 5 minutes (kms-facts.md section 15, no
            // documented bound): three times that.
            cloudtrail_delivery_margin_seconds: 900,
            cloudtrail_log_group_name: None,
            pacing: PacingConfig::default(),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, DecommissionError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, DecommissionError> {
        let d = Self::default();
        let p = d.pacing.clone();
        let seconds = |name: &str, default: u64, min: u64, max: u64| {
            integer(&lookup, name, default, min, max)
        };
        let rate = |name: &str, default: f64| rate(&lookup, name, default);
        Ok(Self {
            key_deletion_poll_seconds: seconds(
                "KEY_DELETION_POLL_SECONDS",
                d.key_deletion_poll_seconds,
                1,
                YEAR_SECONDS,
            )?,
            key_deletion_overdue_seconds: seconds(
                "KEY_DELETION_OVERDUE_SECONDS",
                d.key_deletion_overdue_seconds,
                0,
                YEAR_SECONDS,
            )?,
            connection_check_seconds: seconds(
                "CONNECTION_CHECK_SECONDS",
                d.connection_check_seconds,
                1,
                YEAR_SECONDS,
            )?,
            store_connection_lead_seconds: seconds(
                "STORE_CONNECTION_LEAD_SECONDS",
                d.store_connection_lead_seconds,
                0,
                YEAR_SECONDS,
            )?,
            key_material_check_seconds: seconds(
                "KEY_MATERIAL_CHECK_SECONDS",
                d.key_material_check_seconds,
                0,
                YEAR_SECONDS,
            )?,
            store_poll_seconds: seconds(
                "STORE_POLL_SECONDS",
                d.store_poll_seconds,
                1,
                YEAR_SECONDS,
            )?,
            connect_timeout_seconds: seconds(
                "CONNECT_TIMEOUT_SECONDS",
                d.connect_timeout_seconds,
                0,
                YEAR_SECONDS,
            )?,
            disconnect_timeout_seconds: seconds(
                "DISCONNECT_TIMEOUT_SECONDS",
                d.disconnect_timeout_seconds,
                0,
                YEAR_SECONDS,
            )?,
            max_connect_attempts: integer(
                &lookup,
                "MAX_CONNECT_ATTEMPTS",
                u64::from(d.max_connect_attempts),
                1,
                100,
            )? as u32,
            deadline_margin: Duration::from_millis(integer(
                &lookup,
                "DEADLINE_MARGIN_MS",
                d.deadline_margin.as_millis() as u64,
                0,
                900_000,
            )?),
            invocation_budget: Duration::from_secs(integer(
                &lookup,
                "INVOCATION_BUDGET_SECONDS",
                d.invocation_budget.as_secs(),
                1,
                900,
            )?),
            list_keys_page_size: integer(
                &lookup,
                "KMS_LIST_KEYS_PAGE_SIZE",
                d.list_keys_page_size as u64,
                1,
                1000,
            )? as i32,
            approval_required_for_console_and_webhook: boolean(
                &lookup,
                "APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK",
                d.approval_required_for_console_and_webhook,
            )?,
            approval_timeout_seconds: days_as_seconds(
                &lookup,
                "APPROVAL_TIMEOUT_DAYS",
                d.approval_timeout_seconds,
                30.0,
            )?,
            default_quarantine_days: integer(
                &lookup,
                "DEFAULT_QUARANTINE_DAYS",
                u64::from(d.default_quarantine_days),
                0,
                u64::from(crate::input::MAX_QUARANTINE_DAYS),
            )? as u32,
            quarantine_day_seconds: seconds(
                "QUARANTINE_DAY_SECONDS",
                d.quarantine_day_seconds,
                1,
                86_400,
            )?,
            quarantine_check_seconds: seconds(
                "QUARANTINE_CHECK_SECONDS",
                d.quarantine_check_seconds,
                1,
                YEAR_SECONDS,
            )?,
            cloudtrail_delivery_margin_seconds: seconds(
                "CLOUDTRAIL_DELIVERY_MARGIN_SECONDS",
                d.cloudtrail_delivery_margin_seconds,
                0,
                86_400,
            )?,
            cloudtrail_log_group_name: log_group_name(&lookup, "CLOUDTRAIL_LOG_GROUP_NAME")?,
            pacing: PacingConfig {
                list_keys_rps: rate("KMS_LIST_KEYS_RPS", p.list_keys_rps)?,
                describe_key_rps: rate("KMS_DESCRIBE_KEY_RPS", p.describe_key_rps)?,
                list_resource_tags_rps: rate(
                    "KMS_LIST_RESOURCE_TAGS_RPS",
                    p.list_resource_tags_rps,
                )?,
                tag_resource_rps: rate("KMS_TAG_RESOURCE_RPS", p.tag_resource_rps)?,
                schedule_key_deletion_rps: rate(
                    "KMS_SCHEDULE_KEY_DELETION_RPS",
                    p.schedule_key_deletion_rps,
                )?,
                custom_key_store_rps: rate("KMS_CUSTOM_KEY_STORE_RPS", p.custom_key_store_rps)?,
                concurrency: integer(&lookup, "KMS_CONCURRENCY", p.concurrency as u64, 1, 256)?
                    as usize,
            },
        })
    }
}

/// An optional CloudWatch Logs group name: 1-512 of letters, digits, `.-_/#` (the template's
/// pattern); empty or unset is none.
fn log_group_name(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>, DecommissionError> {
    let Some(value) = lookup(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let valid = value.len() <= 512
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#".contains(c));
    if !valid {
        return Err(DecommissionError::InvalidConfiguration {
            variable: name.into(),
            reason: format!("{value:?} is not a CloudWatch Logs log group name"),
        });
    }
    Ok(Some(value))
}

/// Longest Step Functions Wait (one year).
const YEAR_SECONDS: u64 = 31_536_000;

fn integer(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, DecommissionError> {
    let Some(raw) = lookup(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(DecommissionError::InvalidConfiguration {
            variable: name.to_string(),
            reason: format!("{raw:?} is not a whole number from {min} to {max}"),
        }),
    }
}

fn boolean(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, DecommissionError> {
    match lookup(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(DecommissionError::InvalidConfiguration {
            variable: name.to_string(),
            reason: format!("{other:?} is neither true nor false"),
        }),
    }
}

/// A number of days (fractions allowed, above 0, at most `max_days`) as whole seconds, at least 1.
fn days_as_seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default_seconds: u64,
    max_days: f64,
) -> Result<u64, DecommissionError> {
    let Some(raw) = lookup(name) else {
        return Ok(default_seconds);
    };
    match raw.trim().parse::<f64>() {
        Ok(days) if days.is_finite() && days > 0.0 && days <= max_days => {
            Ok(((days * 86_400.0).ceil() as u64).max(1))
        }
        _ => Err(DecommissionError::InvalidConfiguration {
            variable: name.to_string(),
            reason: format!("{raw:?} is not a number of days above 0 and at most {max_days}"),
        }),
    }
}

fn rate(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
) -> Result<f64, DecommissionError> {
    let Some(raw) = lookup(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value <= 100_000.0 => Ok(value),
        _ => Err(DecommissionError::InvalidConfiguration {
            variable: name.to_string(),
            reason: format!("{raw:?} is not a request rate above 0 and at most 100000 per second"),
        }),
    }
}

/// A trigger function's environment is incomplete or wrong; the function does not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable has an unusable value.
    #[error("environment variable {variable}: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<ConfigError> for DecommissionError {
    fn from(err: ConfigError) -> Self {
        let variable = match &err {
            ConfigError::Missing(v) | ConfigError::Invalid { variable: v, .. } => *v,
        };
        Self::InvalidConfiguration {
            variable: variable.to_owned(),
            reason: err.to_string(),
        }
    }
}

impl From<ConfigError> for lambda_runtime::Diagnostic {
    fn from(err: ConfigError) -> Self {
        Self {
            error_type: "InvalidConfiguration".to_string(),
            error_message: format!("invalid configuration: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, DecommissionError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = from(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.key_deletion_poll_seconds, 3600);
        assert_eq!(config.key_deletion_overdue_seconds, 172_800);
        assert_eq!(config.store_poll_seconds, 30);
        assert_eq!(config.connect_timeout_seconds, 3600);
        assert_eq!(config.disconnect_timeout_seconds, 3600);
        assert_eq!(config.deadline_margin, Duration::from_millis(10_000));
        assert!(config.pacing.tag_resource_rps < 10.0);
        assert!(config.pacing.schedule_key_deletion_rps < 15.0);
        assert!(config.approval_required_for_console_and_webhook);
        assert_eq!(config.approval_timeout_seconds, 7 * 86_400);
        assert_eq!(config.default_quarantine_days, 14);
    }

    #[test]
    fn values_are_read() {
        let config = from(&[
            ("STORE_POLL_SECONDS", "5"),
            ("DEADLINE_MARGIN_MS", "250"),
            ("KMS_TAG_RESOURCE_RPS", "2.5"),
            ("KMS_LIST_KEYS_PAGE_SIZE", "1000"),
            ("APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK", "false"),
            ("APPROVAL_TIMEOUT_DAYS", "0.0005"),
        ])
        .unwrap();
        assert!(!config.approval_required_for_console_and_webhook);
        assert_eq!(
            config.approval_timeout_seconds, 44,
            "0.0005 days, rounded up"
        );
        assert_eq!(config.store_poll_seconds, 5);
        assert_eq!(config.deadline_margin, Duration::from_millis(250));
        assert_eq!(config.pacing.tag_resource_rps, 2.5);
        assert_eq!(config.list_keys_page_size, 1000);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("STORE_POLL_SECONDS", "thirty"),
            ("STORE_POLL_SECONDS", "0"),
            ("KEY_DELETION_POLL_SECONDS", "-1"),
            ("KMS_LIST_KEYS_PAGE_SIZE", "1001"),
            ("KMS_TAG_RESOURCE_RPS", "0"),
            ("KMS_TAG_RESOURCE_RPS", "NaN"),
            ("KMS_CONCURRENCY", "0"),
            ("APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK", "yes"),
            ("APPROVAL_TIMEOUT_DAYS", "0"),
            ("APPROVAL_TIMEOUT_DAYS", "31"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.error_type(), "InvalidConfiguration");
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
