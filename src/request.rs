//! The execution input (the console contract) and its validation.
//!
//! The input is read into [`ExecutionInput`], a serde type that refuses unknown fields, through
//! [`crate::input::read_object`]: every problem is reported as `InvalidInput` naming the field,
//! unknown fields included (a misspelt `DryRun` must never silently mean "not a dry run").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DecommissionError;
use crate::input::{
    json_kind, read_object, FieldError, Flag, FreeText, MinDaysSinceLastUse, PendingWindowDays,
    QuarantineDays, StoreId, StoreName, TicketId,
};
use crate::usage::DEFAULT_MIN_DAYS_SINCE_LAST_USE;

/// Pending window used when the input gives none (KMS's own default).
pub const DEFAULT_PENDING_WINDOW_DAYS: i32 = 30;

/// The input fields the workflow accepts.
pub const INPUT_FIELDS: &[&str] = &[
    "CustomKeyStoreId",
    "PendingWindowInDays",
    "DryRun",
    "ConfirmCustomKeyStoreName",
    "AllowOrphanedKeyMaterial",
    "RequestedBy",
    "Reason",
    "TicketId",
    "MinDaysSinceLastUse",
    "RequireApproval",
    "Trigger",
    "QuarantineDays",
];

/// What a trigger-started run may ask for, set server-side (template parameters, function
/// environment): a trigger cannot override it. Console runs are bounded by IAM on StartExecution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerPolicy {
    /// Shortest `PendingWindowInDays` a trigger may ask for (`POLICY_MIN_PENDING_WINDOW_DAYS`).
    pub min_pending_window_days: i32,
    /// Smallest `MinDaysSinceLastUse` a trigger may ask for (`POLICY_MIN_DAYS_SINCE_LAST_USE`).
    pub min_days_since_last_use: u32,
    /// Whether a trigger may set `AllowOrphanedKeyMaterial`
    /// (`POLICY_ALLOW_ORPHANED_KEY_MATERIAL_FROM_TRIGGERS`).
    pub allow_orphaned_key_material: bool,
    /// Shortest `QuarantineDays` a trigger may ask for (`POLICY_MIN_QUARANTINE_DAYS`); a request
    /// without it gets the stack's default.
    pub min_quarantine_days: u32,
}

impl Default for TriggerPolicy {
    fn default() -> Self {
        Self {
            min_pending_window_days: 7,
            min_days_since_last_use: DEFAULT_MIN_DAYS_SINCE_LAST_USE,
            allow_orphaned_key_material: false,
            min_quarantine_days: 0,
        }
    }
}

impl TriggerPolicy {
    /// Reads the policy through `lookup` (the environment); `InvalidConfiguration` names a
    /// malformed variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, DecommissionError> {
        let d = Self::default();
        let number =
            |name: &str, default: u64, min: u64, max: u64| -> Result<u64, DecommissionError> {
                match lookup(name) {
                    None => Ok(default),
                    Some(raw) => raw
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|v| (min..=max).contains(v))
                        .ok_or_else(|| DecommissionError::InvalidConfiguration {
                            variable: name.to_owned(),
                            reason: format!("{raw:?} is not a whole number from {min} to {max}"),
                        }),
                }
            };
        let allow = match lookup("POLICY_ALLOW_ORPHANED_KEY_MATERIAL_FROM_TRIGGERS").as_deref() {
            None => d.allow_orphaned_key_material,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(DecommissionError::InvalidConfiguration {
                    variable: "POLICY_ALLOW_ORPHANED_KEY_MATERIAL_FROM_TRIGGERS".into(),
                    reason: format!("{other:?} is neither true nor false"),
                })
            }
        };
        Ok(Self {
            min_pending_window_days: number(
                "POLICY_MIN_PENDING_WINDOW_DAYS",
                d.min_pending_window_days as u64,
                7,
                30,
            )? as i32,
            min_days_since_last_use: number(
                "POLICY_MIN_DAYS_SINCE_LAST_USE",
                u64::from(d.min_days_since_last_use),
                0,
                365,
            )? as u32,
            allow_orphaned_key_material: allow,
            min_quarantine_days: number(
                "POLICY_MIN_QUARANTINE_DAYS",
                u64::from(d.min_quarantine_days),
                0,
                u64::from(crate::input::MAX_QUARANTINE_DAYS),
            )? as u32,
        })
    }

    /// The policy from the process environment.
    pub fn from_env() -> Result<Self, DecommissionError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Checks a trigger-started request against the policy (console runs pass): the first rule
    /// it breaks is `PolicyViolation`, naming the rule and the limit.
    pub fn check(&self, request: &DecommissionRequest) -> Result<(), DecommissionError> {
        if request.trigger.is_none() || request.dry_run {
            return Ok(());
        }
        let violation = |rule: &str, detail: String| DecommissionError::PolicyViolation {
            rule: rule.to_owned(),
            detail,
        };
        if request.pending_window_in_days < self.min_pending_window_days {
            return Err(violation(
                "MinPendingWindowInDays",
                format!(
                    "PendingWindowInDays {} is below the {} days this stack allows a trigger",
                    request.pending_window_in_days, self.min_pending_window_days
                ),
            ));
        }
        if request.min_days_since_last_use < self.min_days_since_last_use {
            return Err(violation(
                "MinDaysSinceLastUse",
                format!(
                    "MinDaysSinceLastUse {} is below the {} days this stack allows a trigger",
                    request.min_days_since_last_use, self.min_days_since_last_use
                ),
            ));
        }
        if let Some(days) = request
            .quarantine_days
            .filter(|d| *d < self.min_quarantine_days)
        {
            return Err(violation(
                "MinQuarantineDays",
                format!(
                    "QuarantineDays {days} is below the {} days this stack allows a trigger",
                    self.min_quarantine_days
                ),
            ));
        }
        if request.allow_orphaned_key_material && !self.allow_orphaned_key_material {
            return Err(violation(
                "AllowOrphanedKeyMaterial",
                "this stack does not let a trigger accept orphaned key material".into(),
            ));
        }
        Ok(())
    }
}

/// Which trigger started a run (set by the tag trigger and the webhook; console runs have none).
/// It can only add requirements: a tag-started run always needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunTrigger {
    /// The tag trigger (`Trigger: "tag"`).
    Tag,
    /// The ticketing webhook (`Trigger: "webhook"`).
    Webhook,
}

/// The execution input as given: every field optional (null means absent), each checked by its
/// type, unknown fields refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ExecutionInput {
    /// `CustomKeyStoreId` (required).
    pub custom_key_store_id: Option<StoreId>,
    /// `PendingWindowInDays`, 7-30.
    pub pending_window_in_days: Option<PendingWindowDays>,
    /// `DryRun`.
    pub dry_run: Option<Flag>,
    /// `ConfirmCustomKeyStoreName` (required unless `DryRun`).
    pub confirm_custom_key_store_name: Option<StoreName>,
    /// `AllowOrphanedKeyMaterial`.
    pub allow_orphaned_key_material: Option<Flag>,
    /// `RequestedBy`.
    pub requested_by: Option<FreeText>,
    /// `Reason`.
    pub reason: Option<FreeText>,
    /// `TicketId`.
    pub ticket_id: Option<TicketId>,
    /// `MinDaysSinceLastUse`, 0-365.
    pub min_days_since_last_use: Option<MinDaysSinceLastUse>,
    /// `RequireApproval`: ask for a second person's approval even where the stack does not.
    pub require_approval: Option<Flag>,
    /// `Trigger`: `tag` or `webhook`, set by the triggers.
    pub trigger: Option<RunTrigger>,
    /// `QuarantineDays`, 0-90.
    pub quarantine_days: Option<QuarantineDays>,
}

/// A validated decommission request, defaults applied (the state document's `Request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecommissionRequest {
    /// The store to decommission (`cks-` followed by letters and digits).
    pub custom_key_store_id: String,
    /// KMS pending window for every key, 7-30 days.
    pub pending_window_in_days: i32,
    /// Plan only: read everything, change nothing.
    pub dry_run: bool,
    /// Must equal the store's name for anything to change; optional for a dry run.
    pub confirm_custom_key_store_name: Option<String>,
    /// Proceed even when a CloudHSM store cannot be connected (KMS then leaves the key
    /// material in the cluster).
    pub allow_orphaned_key_material: bool,
    /// Who asked (free text, carried into logs, markers and the report).
    pub requested_by: Option<String>,
    /// Why (free text).
    pub reason: Option<String>,
    /// Change ticket (also written on each key as a tag, so limited to tag-safe characters).
    pub ticket_id: Option<String>,
    /// Keys used more recently than this many days are not scheduled (`KeysRecentlyUsed`);
    /// 0 turns the last-use guard off.
    #[serde(default = "default_min_days_since_last_use")]
    pub min_days_since_last_use: u32,
    /// The requester asked for approval even where the stack does not require it.
    #[serde(default)]
    pub require_approval: bool,
    /// The trigger that started the run, if any (console runs have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<RunTrigger>,
    /// Days the store stays disconnected, watched in CloudTrail, before any key is scheduled;
    /// `None`: the stack's default (`DEFAULT_QUARANTINE_DAYS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_days: Option<u32>,
}

fn default_min_days_since_last_use() -> u32 {
    DEFAULT_MIN_DAYS_SINCE_LAST_USE
}

impl From<FieldError> for DecommissionError {
    fn from(err: FieldError) -> Self {
        Self::InvalidInput {
            field: err.field,
            reason: err.reason,
        }
    }
}

impl DecommissionRequest {
    /// Validates a raw execution input and applies the defaults.
    pub fn from_input(input: &Value) -> Result<Self, DecommissionError> {
        if !input.is_object() {
            return Err(DecommissionError::invalid_input(
                "$",
                format!(
                    "the execution input must be a JSON object, got {}",
                    json_kind(input)
                ),
            ));
        }
        let given: ExecutionInput = read_object(input, INPUT_FIELDS)?;
        let custom_key_store_id = given
            .custom_key_store_id
            .ok_or_else(|| FieldError::required("CustomKeyStoreId"))?
            .0;
        let dry_run = given.dry_run.is_some_and(|f| f.0);
        let confirm_custom_key_store_name = given.confirm_custom_key_store_name.map(|n| n.0);
        if confirm_custom_key_store_name.is_none() && !dry_run {
            return Err(DecommissionError::invalid_input(
                "ConfirmCustomKeyStoreName",
                "required unless DryRun is true: give the exact name of the custom key store",
            ));
        }
        Ok(Self {
            custom_key_store_id,
            pending_window_in_days: given
                .pending_window_in_days
                .map_or(DEFAULT_PENDING_WINDOW_DAYS, |d| d.0),
            dry_run,
            confirm_custom_key_store_name,
            allow_orphaned_key_material: given.allow_orphaned_key_material.is_some_and(|f| f.0),
            requested_by: given.requested_by.map(|t| t.0),
            reason: given.reason.map(|t| t.0),
            ticket_id: given.ticket_id.map(|t| t.0),
            min_days_since_last_use: given
                .min_days_since_last_use
                .map_or(DEFAULT_MIN_DAYS_SINCE_LAST_USE, |d| d.0),
            require_approval: given.require_approval.is_some_and(|f| f.0),
            trigger: given.trigger,
            quarantine_days: given.quarantine_days.map(|d| d.0),
        })
    }

    /// Whether a second person must approve this run before its first change: always for a run
    /// a tag started, when the requester asked for it, and for console and webhook runs when the
    /// stack requires it (`APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK`). Never for a dry run.
    pub fn needs_approval(&self, required_for_console_and_webhook: bool) -> bool {
        !self.dry_run
            && (self.require_approval
                || self.trigger == Some(RunTrigger::Tag)
                || required_for_console_and_webhook)
    }

    /// Checks `ConfirmCustomKeyStoreName` against the store's actual name. A dry run without a
    /// confirmation passes; a given confirmation must always match exactly.
    pub fn confirm_store_name(&self, actual_name: &str) -> Result<(), DecommissionError> {
        match &self.confirm_custom_key_store_name {
            Some(given) if given == actual_name => Ok(()),
            None if self.dry_run => Ok(()),
            given => Err(DecommissionError::ConfirmationMismatch {
                store_id: self.custom_key_store_id.clone(),
                given: given
                    .as_ref()
                    .map_or_else(|| "missing".to_string(), |g| format!("{g:?}")),
            }),
        }
    }
}

/// Checks a custom key store id; `InvalidInput` on `CustomKeyStoreId` otherwise.
pub fn validate_custom_key_store_id(id: &str) -> Result<(), DecommissionError> {
    crate::input::check_custom_key_store_id(id)
        .map_err(|reason| DecommissionError::invalid_input("CustomKeyStoreId", reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(err: DecommissionError) -> String {
        match err {
            DecommissionError::InvalidInput { field, .. } => field,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn rejected(input: Value) -> String {
        field_of(DecommissionRequest::from_input(&input).unwrap_err())
    }

    #[test]
    fn minimal_input_gets_the_defaults() {
        let request = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0",
            "ConfirmCustomKeyStoreName": "ExampleStore"
        }))
        .unwrap();
        assert_eq!(request.pending_window_in_days, 30);
        assert!(!request.dry_run);
        assert!(!request.allow_orphaned_key_material);
        assert_eq!(
            request.confirm_custom_key_store_name.as_deref(),
            Some("ExampleStore")
        );
        assert_eq!(request.ticket_id, None);
    }

    #[test]
    fn full_input_is_kept() {
        let request = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0",
            "PendingWindowInDays": 7,
            "DryRun": false,
            "ConfirmCustomKeyStoreName": "Example Store",
            "AllowOrphanedKeyMaterial": true,
            "RequestedBy": "alice@example.com",
            "Reason": "retire the HSM cluster — approved",
            "TicketId": "CHG-1234"
        }))
        .unwrap();
        assert_eq!(request.pending_window_in_days, 7);
        assert!(request.allow_orphaned_key_material);
        assert_eq!(request.requested_by.as_deref(), Some("alice@example.com"));
        assert_eq!(request.ticket_id.as_deref(), Some("CHG-1234"));
    }

    #[test]
    fn dry_run_needs_no_confirmation_but_a_real_run_does() {
        let dry = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true
        }))
        .unwrap();
        assert!(dry.dry_run);
        assert_eq!(dry.confirm_store_name("Anything"), Ok(()));

        assert_eq!(
            rejected(json!({"CustomKeyStoreId": "cks-1234567890abcdef0"})),
            "ConfirmCustomKeyStoreName"
        );
        assert_eq!(
            rejected(json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": false})),
            "ConfirmCustomKeyStoreName"
        );
        assert_eq!(
            rejected(
                json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "ConfirmCustomKeyStoreName": ""})
            ),
            "ConfirmCustomKeyStoreName"
        );
    }

    #[test]
    fn confirmation_must_match_exactly() {
        let request = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0",
            "ConfirmCustomKeyStoreName": "ExampleStore"
        }))
        .unwrap();
        assert_eq!(request.confirm_store_name("ExampleStore"), Ok(()));
        let err = request.confirm_store_name("examplestore").unwrap_err();
        assert_eq!(err.error_type(), "ConfirmationMismatch");
        assert!(
            err.to_string().contains("\"ExampleStore\""),
            "names what was given"
        );
        assert!(
            !err.to_string().contains("examplestore"),
            "never the store's real name: {err}"
        );

        let dry_with_wrong_name = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0",
            "DryRun": true,
            "ConfirmCustomKeyStoreName": "Other"
        }))
        .unwrap();
        assert_eq!(
            dry_with_wrong_name
                .confirm_store_name("ExampleStore")
                .unwrap_err()
                .error_type(),
            "ConfirmationMismatch"
        );
    }

    #[test]
    fn store_id_must_look_like_a_store_id() {
        for bad in [
            json!(""),
            json!("cks-"),
            json!("1234567890abcdef0"),
            json!("cks-12345 67890"),
            json!("cks-../../etc"),
            json!(format!("cks-{}", "a".repeat(61))),
            json!(12),
            json!(null),
        ] {
            assert_eq!(
                rejected(json!({"CustomKeyStoreId": bad, "DryRun": true})),
                "CustomKeyStoreId",
                "{bad}"
            );
        }
        assert_eq!(rejected(json!({"DryRun": true})), "CustomKeyStoreId");
        assert!(validate_custom_key_store_id(&format!("cks-{}", "a".repeat(60))).is_ok());
    }

    #[test]
    fn pending_window_is_a_whole_number_from_7_to_30() {
        for ok in [7, 15, 30] {
            let request = DecommissionRequest::from_input(&json!({
                "CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true, "PendingWindowInDays": ok
            }))
            .unwrap();
            assert_eq!(request.pending_window_in_days, ok);
        }
        for bad in [
            json!(6),
            json!(31),
            json!(0),
            json!(-7),
            json!(7.5),
            json!("30"),
            json!(true),
        ] {
            assert_eq!(
                rejected(json!({
                    "CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true, "PendingWindowInDays": bad
                })),
                "PendingWindowInDays",
                "{bad}"
            );
        }
    }

    #[test]
    fn min_days_since_last_use_is_0_to_365_and_defaults_to_30() {
        let base = json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true});
        let request = DecommissionRequest::from_input(&base).unwrap();
        assert_eq!(request.min_days_since_last_use, 30);
        for ok in [0, 1, 30, 365] {
            let mut input = base.clone();
            input["MinDaysSinceLastUse"] = json!(ok);
            let request = DecommissionRequest::from_input(&input).unwrap();
            assert_eq!(request.min_days_since_last_use, ok);
        }
        for bad in [json!(366), json!(-1), json!(1.5), json!("30"), json!(false)] {
            let mut input = base.clone();
            input["MinDaysSinceLastUse"] = bad.clone();
            assert_eq!(rejected(input), "MinDaysSinceLastUse", "{bad}");
        }
        let mut null = base.clone();
        null["MinDaysSinceLastUse"] = Value::Null;
        assert_eq!(
            DecommissionRequest::from_input(&null)
                .unwrap()
                .min_days_since_last_use,
            30
        );
    }

    #[test]
    fn flags_must_be_booleans() {
        for field in ["DryRun", "AllowOrphanedKeyMaterial"] {
            let mut input = json!({
                "CustomKeyStoreId": "cks-1234567890abcdef0", "ConfirmCustomKeyStoreName": "S"
            });
            input[field] = json!("true");
            assert_eq!(rejected(input), field);
        }
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        assert_eq!(
            rejected(json!({
                "CustomKeyStoreId": "cks-1234567890abcdef0", "Dryrun": true
            })),
            "Dryrun"
        );
        assert_eq!(rejected(json!(["cks-1234567890abcdef0"])), "$");
        assert_eq!(rejected(json!("cks-1234567890abcdef0")), "$");
    }

    #[test]
    fn free_text_is_bounded_and_printable() {
        for field in ["RequestedBy", "Reason", "TicketId"] {
            let base = json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true});
            let mut too_long = base.clone();
            too_long[field] = json!("x".repeat(257));
            assert_eq!(rejected(too_long), field);
            let mut control = base.clone();
            control[field] = json!("line one\nline two");
            assert_eq!(rejected(control), field);
            let mut not_text = base.clone();
            not_text[field] = json!(42);
            assert_eq!(rejected(not_text), field);
            let mut longest = base.clone();
            longest[field] = json!("é".repeat(256));
            assert!(DecommissionRequest::from_input(&longest).is_ok());
        }
    }

    #[test]
    fn ticket_id_must_be_a_valid_tag_value() {
        assert_eq!(
            rejected(json!({
                "CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true, "TicketId": "CHG#12"
            })),
            "TicketId"
        );
        let request = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true,
            "TicketId": "JIRA: OPS-12/change=3 +hsm @team_a"
        }))
        .unwrap();
        assert!(request.ticket_id.is_some());
    }

    #[test]
    fn nulls_mean_absent() {
        let request = DecommissionRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0", "DryRun": true,
            "PendingWindowInDays": null, "Reason": null
        }))
        .unwrap();
        assert_eq!(request.pending_window_in_days, 30);
        assert_eq!(request.reason, None);
    }

    #[test]
    fn a_trigger_cannot_ask_beyond_the_policy_and_each_rule_is_named() {
        let policy = TriggerPolicy {
            min_pending_window_days: 14,
            min_days_since_last_use: 30,
            allow_orphaned_key_material: false,
            min_quarantine_days: 7,
        };
        let request = |extra: Value| {
            let mut input = json!({"CustomKeyStoreId": "cks-1234567890abcdef0",
                "ConfirmCustomKeyStoreName": "S", "Trigger": "webhook", "PendingWindowInDays": 30});
            for (k, v) in extra.as_object().unwrap() {
                input[k] = v.clone();
            }
            DecommissionRequest::from_input(&input).unwrap()
        };
        assert_eq!(policy.check(&request(json!({}))), Ok(()));
        for (extra, rule) in [
            (json!({"PendingWindowInDays": 7}), "MinPendingWindowInDays"),
            (json!({"MinDaysSinceLastUse": 0}), "MinDaysSinceLastUse"),
            (json!({"QuarantineDays": 0}), "MinQuarantineDays"),
            (
                json!({"AllowOrphanedKeyMaterial": true}),
                "AllowOrphanedKeyMaterial",
            ),
        ] {
            match policy.check(&request(extra.clone())) {
                Err(DecommissionError::PolicyViolation { rule: got, .. }) => {
                    assert_eq!(got, rule, "{extra}")
                }
                other => panic!("{extra}: {other:?}"),
            }
        }
        // Console runs (no Trigger) and dry runs are not bounded by the trigger policy.
        let mut console = request(json!({"MinDaysSinceLastUse": 0}));
        console.trigger = None;
        assert_eq!(policy.check(&console), Ok(()));
        let read = TriggerPolicy::from_lookup(|name| {
            (name == "POLICY_MIN_DAYS_SINCE_LAST_USE").then(|| "45".to_owned())
        })
        .unwrap();
        assert_eq!(read.min_days_since_last_use, 45);
        // A request without QuarantineDays gets the stack's default, which the operator sets.
        assert_eq!(policy.check(&request(json!({"QuarantineDays": 7}))), Ok(()));
        let bad = TriggerPolicy::from_lookup(|name| {
            (name == "POLICY_MIN_PENDING_WINDOW_DAYS").then(|| "3".to_owned())
        })
        .unwrap_err();
        assert_eq!(bad.error_type(), "InvalidConfiguration");
    }
}
