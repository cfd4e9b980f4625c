//! Typed inputs from outside: the field types that check themselves while they are read, and
//! [`read_object`], which reads a JSON object into a serde type that refuses unknown fields and
//! names the offending field and its rule. The execution input, the cancel input and the
//! webhook's actions are all read through it. Imports nothing of the crate but [`crate::arn`].

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::arn::Arn;

/// Longest free-text field (`RequestedBy`, `Reason`, `TicketId`), in characters.
pub const MAX_FREE_TEXT_CHARS: usize = 256;
/// Longest custom key store id KMS accepts.
pub const MAX_CUSTOM_KEY_STORE_ID_LEN: usize = 64;
/// Longest custom key store name KMS accepts.
pub const MAX_CUSTOM_KEY_STORE_NAME_CHARS: usize = 256;
/// Shortest accepted pending window, in days (KMS's documented range is 7-30).
pub const MIN_PENDING_WINDOW_DAYS: i32 = 7;
/// Longest accepted pending window, in days.
pub const MAX_PENDING_WINDOW_DAYS: i32 = 30;
/// Largest accepted `MinDaysSinceLastUse`.
pub const MAX_MIN_DAYS_SINCE_LAST_USE: u32 = 365;

/// A field that is missing, of the wrong type, unknown, or breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`$` for the input as a whole).
    pub field: String,
    /// What is wrong with it and what is accepted.
    pub reason: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A required field is missing (or null).
    pub fn required(field: &str) -> Self {
        Self::new(field, "required")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {}: {}", self.field, self.reason)
    }
}

/// Reads `value`, which must be a JSON object, into `T` (a struct with
/// `#[serde(deny_unknown_fields)]`, `Option` fields and the field types of this module).
/// `accepted` lists the fields for the message about an unknown one. A refusal names the
/// object's field as sent, even when the fault lies deeper in its value (`{"Trigger":
/// {"webhook": 1}}` is a fault of `Trigger`).
pub fn read_object<T: DeserializeOwned>(value: &Value, accepted: &[&str]) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let field = err
            .path()
            .iter()
            .next()
            .map_or_else(|| "$".to_string(), |segment| segment.to_string());
        let message = err.inner().to_string();
        if message.starts_with("unknown field") {
            FieldError::new(
                field,
                format!("unknown field; accepted fields are {}", accepted.join(", ")),
            )
        } else {
            FieldError::new(field, message)
        }
    })
}

/// How a JSON value is named in messages ("a string", "a number", ...).
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 80 characters of a value quoted in an error message.
pub fn truncate_for_message(text: &str) -> String {
    if text.chars().count() <= 80 {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(80).collect();
        cut.push('…');
        cut
    }
}

/// A string field, or a message naming the kind of value given instead.
fn string_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => Ok(text),
        other => Err(D::Error::custom(format!(
            "must be a string, got {}",
            json_kind(&other)
        ))),
    }
}

/// Checks a custom key store id: `cks-` then 1-60 ASCII letters or digits (KMS ids are `cks-`
/// and 17 hex digits; KMS accepts at most 64 characters). `Err` is the rule, for a message.
pub fn check_custom_key_store_id(id: &str) -> Result<(), String> {
    let valid = id.len() <= MAX_CUSTOM_KEY_STORE_ID_LEN
        && id.strip_prefix("cks-").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a custom key store id: expected cks- followed by letters and digits, at \
             most {MAX_CUSTOM_KEY_STORE_ID_LEN} characters (e.g. cks-1234567890abcdef0)",
            truncate_for_message(id)
        ))
    }
}

/// A custom key store id (see [`check_custom_key_store_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StoreId(pub String);

impl<'de> Deserialize<'de> for StoreId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = string_value(deserializer)?;
        check_custom_key_store_id(&id).map_err(D::Error::custom)?;
        Ok(Self(id))
    }
}

/// A custom key store name: 1-256 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StoreName(pub String);

impl<'de> Deserialize<'de> for StoreName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = string_value(deserializer)?;
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_CUSTOM_KEY_STORE_NAME_CHARS {
            return Err(D::Error::custom(format!(
                "must be 1-{MAX_CUSTOM_KEY_STORE_NAME_CHARS} characters, got {chars}"
            )));
        }
        Ok(Self(name))
    }
}

/// Free text carried into logs, markers and reports: at most 256 characters, no control
/// characters (a newline would forge log lines and cannot be a KMS tag value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FreeText(pub String);

impl FreeText {
    fn check(text: String) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars > MAX_FREE_TEXT_CHARS {
            return Err(format!(
                "must be at most {MAX_FREE_TEXT_CHARS} characters, got {chars}"
            ));
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters (newlines, tabs, ...)".to_string());
        }
        Ok(Self(text))
    }
}

impl<'de> Deserialize<'de> for FreeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::check(string_value(deserializer)?).map_err(D::Error::custom)
    }
}

/// A change ticket id: free text that is also a valid KMS tag value (it is written on keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TicketId(pub String);

impl<'de> Deserialize<'de> for TicketId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let FreeText(text) = FreeText::deserialize(deserializer)?;
        if let Some(bad) = text.chars().find(|c| !is_tag_value_char(*c)) {
            return Err(D::Error::custom(format!(
                "character {bad:?} is not allowed: the ticket is written as a KMS tag value \
                 (letters, digits, spaces and _ . : / = + - @)"
            )));
        }
        Ok(Self(text))
    }
}

/// Characters KMS accepts in tag values.
fn is_tag_value_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// A Step Functions execution ARN (at most 256 characters: it is compared with a KMS tag value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExecutionArn(pub String);

impl<'de> Deserialize<'de> for ExecutionArn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let FreeText(arn) = FreeText::deserialize(deserializer)?;
        if Arn::parse(&arn).and_then(|a| a.execution_names()).is_none() {
            return Err(D::Error::custom(
                "must be a Step Functions execution ARN \
                 (arn:aws:states:<region>:<account>:execution:<state machine>:<name>)",
            ));
        }
        Ok(Self(arn))
    }
}

/// A JSON boolean (never the string "true").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Bool(flag) => Ok(Self(flag)),
            other => Err(D::Error::custom(format!(
                "must be true or false, got {}",
                json_kind(&other)
            ))),
        }
    }
}

/// KMS's pending window: a whole number of days from 7 to 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PendingWindowDays(pub i32);

impl<'de> Deserialize<'de> for PendingWindowDays {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        value
            .as_i64()
            .filter(|d| {
                (i64::from(MIN_PENDING_WINDOW_DAYS)..=i64::from(MAX_PENDING_WINDOW_DAYS))
                    .contains(d)
            })
            .and_then(|d| i32::try_from(d).ok())
            .map(Self)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "must be a whole number of days from {MIN_PENDING_WINDOW_DAYS} to \
                     {MAX_PENDING_WINDOW_DAYS}, got {}",
                    truncate_for_message(&value.to_string())
                ))
            })
    }
}

/// Largest accepted `QuarantineDays` (CloudTrail's event history keeps 90 days).
pub const MAX_QUARANTINE_DAYS: u32 = 90;

/// How long the store stays disconnected before its keys are scheduled: a whole number of days
/// from 0 (no quarantine) to 90.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct QuarantineDays(pub u32);

impl<'de> Deserialize<'de> for QuarantineDays {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        value
            .as_u64()
            .filter(|d| *d <= u64::from(MAX_QUARANTINE_DAYS))
            .and_then(|d| u32::try_from(d).ok())
            .map(Self)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "must be a whole number of days from 0 (no quarantine) to \
                     {MAX_QUARANTINE_DAYS}, got {}",
                    truncate_for_message(&value.to_string())
                ))
            })
    }
}

/// The last-use guard's bound: a whole number of days from 0 (guard off) to 365.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MinDaysSinceLastUse(pub u32);

impl<'de> Deserialize<'de> for MinDaysSinceLastUse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        value
            .as_u64()
            .filter(|d| *d <= u64::from(MAX_MIN_DAYS_SINCE_LAST_USE))
            .and_then(|d| u32::try_from(d).ok())
            .map(Self)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "must be a whole number of days from 0 (guard off) to \
                     {MAX_MIN_DAYS_SINCE_LAST_USE}, got {}",
                    truncate_for_message(&value.to_string())
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Sample {
        custom_key_store_id: Option<StoreId>,
        reason: Option<FreeText>,
        dry_run: Option<Flag>,
    }

    const FIELDS: &[&str] = &["CustomKeyStoreId", "Reason", "DryRun"];

    fn refused(value: Value) -> FieldError {
        read_object::<Sample>(&value, FIELDS).unwrap_err()
    }

    #[test]
    fn each_refusal_names_its_field_and_rule() {
        let unknown = refused(json!({"Dryrun": true}));
        assert_eq!(unknown.field, "Dryrun");
        assert_eq!(
            unknown.reason,
            "unknown field; accepted fields are CustomKeyStoreId, Reason, DryRun"
        );
        let kind = refused(json!({"DryRun": "true"}));
        assert_eq!(kind.field, "DryRun");
        assert_eq!(kind.reason, "must be true or false, got a string");
        let control = refused(json!({"Reason": "a\nb"}));
        assert_eq!(control.field, "Reason");
        assert!(control.reason.contains("control characters"));
        let id = refused(json!({"CustomKeyStoreId": "cks-../x"}));
        assert_eq!(id.field, "CustomKeyStoreId");
        assert!(id.reason.contains("is not a custom key store id"));
        let not_text = refused(json!({"CustomKeyStoreId": 12}));
        assert_eq!(not_text.reason, "must be a string, got a number");
    }

    /// Found by the `execution_input` fuzz target: the field was named with its quotes trimmed,
    /// so an unknown field `'DryRun'` was reported as `DryRun`, a field the sender did not send
    /// (and an accepted one).
    #[test]
    fn a_refusal_names_the_field_exactly_as_sent() {
        for key in ["'DryRun'", "'", "Reason'", " 'x' "] {
            assert_eq!(refused(json!({ key: true })).field, key);
        }
        assert_eq!(refused(json!({"'Reason'": "a\nb"})).field, "'Reason'");
    }

    /// Found by the `execution_input` fuzz target: an enum field given as an object was named
    /// by the key inside it (`{"Trigger": {"webhook": ..}}` was a refusal of field `webhook`).
    #[test]
    fn a_refusal_names_the_field_of_the_object_not_a_key_inside_its_value() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Tag,
            Webhook,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "PascalCase")]
        #[allow(dead_code)]
        struct WithEnum {
            trigger: Option<Kind>,
        }
        for value in [
            json!({"Trigger": {"webhook": "x"}}),
            json!({"Trigger": {"bogus": 1}}),
            json!({"Trigger": ["tag"]}),
        ] {
            let err = read_object::<WithEnum>(&value, &["Trigger"]).unwrap_err();
            assert_eq!(err.field, "Trigger", "{value}: {err}");
        }
    }

    #[test]
    fn nulls_and_absent_fields_are_none() {
        let sample: Sample = read_object(&json!({"Reason": null}), FIELDS).unwrap();
        assert!(sample.reason.is_none() && sample.custom_key_store_id.is_none());
        assert!(sample.dry_run.is_none());
    }

    #[test]
    fn whole_numbers_within_their_range() {
        let window = |v: Value| serde_json::from_value::<PendingWindowDays>(v);
        assert_eq!(window(json!(7)).unwrap(), PendingWindowDays(7));
        for bad in [json!(6), json!(31), json!(7.5), json!("30"), json!(true)] {
            assert!(window(bad).is_err());
        }
        let days = |v: Value| serde_json::from_value::<MinDaysSinceLastUse>(v);
        assert_eq!(days(json!(0)).unwrap(), MinDaysSinceLastUse(0));
        for bad in [json!(366), json!(-1), json!(1.5)] {
            assert!(days(bad).is_err());
        }
    }
}
