//! The tag trigger: EventBridge "Tag Change on Resource" events for KMS keys and CloudHSM
//! clusters start a dry run (default) or a decommission of the store the tag names.
//!
//! Custom key stores cannot be tagged, so the trigger tag (`DecommissionCustomKeyStore` unless
//! configured otherwise) goes on a KMS key of the store, or on the CloudHSM cluster behind it,
//! and its value is the store id. Before anything starts:
//! - the event must be a tag change of a KMS key or CloudHSM cluster that set (not removed) the
//!   trigger tag;
//! - a tagged key must belong to that store (DescribeKey), a tagged cluster must back it
//!   (DescribeCustomKeyStores);
//! - for a key, its current tags (ListResourceTags) must still say the same: events are
//!   delivered best effort and out of order, a later change wins.
//!
//! A tag alone never starts an irreversible deletion. In `decommission` mode the same resource
//! must also carry `DecommissionConfirmStoreName` whose value equals the store's name as
//! DescribeCustomKeyStores shows it; without it a dry run starts (its input says how to
//! confirm), with a different value nothing starts. The plan step checks the name again, and
//! the run waits for a second person's approval (docs/approval.md).
//!
//! Who tagged ([`tagger`](crate::triggers::tagger)): in `decommission` mode only CloudTrail's
//! `TagResource` API-call events count, because they name the caller; the caller must match
//! `TAG_TRIGGER_ALLOWED_PRINCIPALS`, becomes the run's `RequestedBy`, and must set the trigger tag
//! and the confirmation in one call. A tag by anyone else starts nothing and is reported
//! (`TaggerNotAllowed`, a `TriggerRefused` status event). In `dry-run` mode the "Tag Change on
//! Resource" events start dry runs (which change nothing) without naming anyone.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_smithy_types::DateTime;
use serde_json::{json, Value};

use lambda_runtime::{Diagnostic, LambdaEvent};

use crate::arn::Arn;
use crate::aws_error::AwsCallError;
use crate::bootstrap::LambdaFunction;
use crate::cloudtrail::CloudTrail;
use crate::config::ConfigError;
use crate::error::KmsErrorCode;
use crate::kms::Kms;
use crate::request::{validate_custom_key_store_id, DecommissionRequest};
use crate::sfn::naming::tag_execution_name;
use crate::sfn::RunMode;
use crate::sfn::{ExecutionRequest, Executions, StartOutcome};
use crate::store;
use crate::triggers::status::StatusEvents;
use crate::triggers::tagger::{
    parse_tag_call, AllowedPrincipals, CalledResource, NotATagCall, Tagger, API_CALL_DETAIL_TYPE,
};

/// Default trigger tag key.
pub const DEFAULT_TAG_KEY: &str = "DecommissionCustomKeyStore";
/// Tag whose value must equal the store's name for a tag to start a real decommission.
pub const CONFIRM_TAG_KEY: &str = "DecommissionConfirmStoreName";
/// Environment variable overriding the trigger tag key.
pub const TAG_KEY_ENV: &str = "TRIGGER_TAG_KEY";
/// Environment variable choosing `dry-run` (default) or `decommission`.
pub const MODE_ENV: &str = "TRIGGER_MODE";
/// `RequestedBy` of dry runs started by a tag whose author the event does not name.
pub const REQUESTED_BY: &str = "tag-trigger";
/// How many tag-started executions of one store and mode the trigger walks through before it
/// refuses (names are unique for 90 days).
pub const MAX_TAG_RUNS: u32 = 50;
/// Environment variable: how long (seconds) the trigger looks for CloudTrail's own record of a
/// `TagResource` call before it refuses the event (`TagCallNotInCloudTrail`).
pub const LOOKUP_WINDOW_ENV: &str = "TAG_CALL_LOOKUP_SECONDS";
/// Environment variable: seconds between two lookups of that record.
pub const LOOKUP_INTERVAL_ENV: &str = "TAG_CALL_LOOKUP_INTERVAL_SECONDS";
/// Default lookup window: 10 minutes, twice the 5 minutes CloudTrail takes on average.
pub const DEFAULT_LOOKUP_WINDOW: Duration = Duration::from_secs(600);
/// Longest lookup window: the function's 15-minute limit, less a minute for the rest.
pub const MAX_LOOKUP_WINDOW: Duration = Duration::from_secs(840);
/// Default seconds between lookups (about 40 lookups in the default window, a small share of
/// the account's 2 per second).
pub const DEFAULT_LOOKUP_INTERVAL: Duration = Duration::from_secs(15);
/// The oldest `TagResource` call that still starts a run: EventBridge delivers within minutes,
/// Lambda retries an event for at most 6 hours; an older call is a replay.
pub const MAX_TAG_CALL_AGE: Duration = Duration::from_secs(24 * 3600);

const EVENT_SOURCE: &str = "aws.tag";
const EVENT_DETAIL_TYPE: &str = "Tag Change on Resource";
const MAX_REASON_CHARS: usize = 256;

/// Tag trigger settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTriggerConfig {
    /// The tag whose value names the store.
    pub tag_key: String,
    /// What a tag starts.
    pub mode: RunMode,
    /// Who may start runs by tag (decommission mode).
    pub allowed_principals: AllowedPrincipals,
    /// How long and how often CloudTrail is asked for its record of a `TagResource` call.
    pub lookup: TagCallLookup,
}

/// How the trigger waits for CloudTrail's own record of a `TagResource` call: the delivered
/// event is only a claim (anyone allowed to invoke the function can hand it one); the record
/// CloudTrail shows for the event's id is what was called, by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagCallLookup {
    /// How long to keep looking before refusing (`TagCallNotInCloudTrail`).
    pub window: Duration,
    /// Pause between two lookups.
    pub interval: Duration,
}

impl Default for TagCallLookup {
    fn default() -> Self {
        Self {
            window: DEFAULT_LOOKUP_WINDOW,
            interval: DEFAULT_LOOKUP_INTERVAL,
        }
    }
}

impl TagCallLookup {
    /// Reads [`LOOKUP_WINDOW_ENV`] (0 to 840 s) and [`LOOKUP_INTERVAL_ENV`] (1 to 60 s).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let seconds =
            |variable: &'static str, default: Duration, min: u64, max: u64| match var(variable)
                .as_deref()
                .map(str::trim)
            {
                None | Some("") => Ok(default),
                Some(text) => match text.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(Duration::from_secs(n)),
                    _ => Err(ConfigError::Invalid {
                        variable,
                        reason: format!(
                            "{text:?} is not a whole number of seconds from {min} to {max}"
                        ),
                    }),
                },
            };
        Ok(Self {
            window: seconds(
                LOOKUP_WINDOW_ENV,
                DEFAULT_LOOKUP_WINDOW,
                0,
                MAX_LOOKUP_WINDOW.as_secs(),
            )?,
            interval: seconds(LOOKUP_INTERVAL_ENV, DEFAULT_LOOKUP_INTERVAL, 1, 60)?,
        })
    }
}

impl TagTriggerConfig {
    /// Reads [`TAG_KEY_ENV`] and [`MODE_ENV`] through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tag_key = var(TAG_KEY_ENV)
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| DEFAULT_TAG_KEY.to_owned());
        if tag_key.chars().count() > 128 || tag_key == CONFIRM_TAG_KEY {
            return Err(ConfigError::Invalid {
                variable: TAG_KEY_ENV,
                reason: format!(
                    "{tag_key:?} must be 1-128 characters and differ from {CONFIRM_TAG_KEY}"
                ),
            });
        }
        let mode = match var(MODE_ENV).as_deref().map(str::trim) {
            None | Some("") | Some("dry-run") => RunMode::DryRun,
            Some("decommission") => RunMode::Decommission,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    variable: MODE_ENV,
                    reason: format!("{other:?} is neither dry-run nor decommission"),
                })
            }
        };
        let allowed_principals = AllowedPrincipals::from_env(&var)?;
        let lookup = TagCallLookup::from_env(&var)?;
        Ok(Self {
            tag_key,
            mode,
            allowed_principals,
            lookup,
        })
    }
}

/// The resource whose tags changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaggedResource {
    /// A KMS key, by ARN.
    KmsKey {
        /// Key ARN.
        arn: String,
    },
    /// A CloudHSM cluster.
    CloudHsmCluster {
        /// Cluster ARN.
        arn: String,
        /// Cluster id (`cluster-...`).
        cluster_id: String,
    },
}

impl TaggedResource {
    /// The resource ARN.
    pub fn arn(&self) -> &str {
        match self {
            Self::KmsKey { arn } | Self::CloudHsmCluster { arn, .. } => arn,
        }
    }
}

/// Which event told of the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagEventKind {
    /// "Tag Change on Resource": the resource's whole tag set, nobody named.
    TagChange,
    /// CloudTrail's `TagResource` API call: the call's tags and who called (if named).
    ApiCall(Option<Tagger>),
}

/// A parsed tag change: a "Tag Change on Resource" event or a `TagResource` API-call event.
#[derive(Debug, Clone, PartialEq)]
pub struct TagChange {
    /// What was tagged.
    pub resource: TaggedResource,
    /// Keys added, changed or removed by this change.
    pub changed_tag_keys: Vec<String>,
    /// For a Tag Change event, all tags after the change (removed keys are absent); for an API
    /// call, the tags that call set.
    pub tags: BTreeMap<String, String>,
    /// Which event, and who tagged where it says.
    pub kind: TagEventKind,
    /// Tag-set version (`3` or `3.0` on the wire).
    pub version: Option<f64>,
    /// When the change happened.
    pub time: Option<DateTime>,
    /// For an API call, its CloudTrail event id (`detail.eventID`).
    pub event_id: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TagChangeDetail {
    changed_tag_keys: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    service: String,
    resource_type: String,
    #[serde(default)]
    version: Option<serde_json::Number>,
}

/// Parses `event` as a tag change of a KMS key or a CloudHSM cluster.
pub fn parse_tag_change(event: &Value) -> Result<TagChange, NotStarted> {
    let envelope: EventBridgeEvent<Value> = serde_json::from_value(event.clone())
        .map_err(|e| Refusal::MalformedEvent(format!("not an EventBridge event: {e}")))?;
    if envelope.detail_type == API_CALL_DETAIL_TYPE
        && matches!(envelope.source.as_str(), "aws.kms" | "aws.cloudhsm")
    {
        return parse_api_call(&envelope);
    }
    if envelope.source != EVENT_SOURCE || envelope.detail_type != EVENT_DETAIL_TYPE {
        return Err(Ignored::NotATagChange {
            event_source: envelope.source,
            detail_type: envelope.detail_type,
        }
        .into());
    }
    let detail: TagChangeDetail = serde_json::from_value(envelope.detail)
        .map_err(|e| Refusal::MalformedEvent(format!("detail of a tag change: {e}")))?;
    let resource_arn = match envelope.resources.as_deref() {
        Some([one]) => one.as_str(),
        _ => {
            return Err(
                Refusal::MalformedEvent("a tag change names exactly one resource".into()).into(),
            )
        }
    };
    let resource = match (detail.service.as_str(), detail.resource_type.as_str()) {
        ("kms", "key") => parse_arn(resource_arn, "kms", "key/").map(|_| TaggedResource::KmsKey {
            arn: resource_arn.to_owned(),
        }),
        ("cloudhsm" | "cloudhsmv2", "cluster") => parse_arn(resource_arn, "cloudhsm", "cluster/")
            .map(|id| TaggedResource::CloudHsmCluster {
                arn: resource_arn.to_owned(),
                cluster_id: id.to_owned(),
            }),
        (service, resource_type) => {
            return Err(Ignored::UnsupportedResource {
                service: service.to_owned(),
                resource_type: resource_type.to_owned(),
            }
            .into())
        }
    }
    .ok_or_else(|| {
        Refusal::MalformedEvent(format!(
            "resource {resource_arn:?} does not match service {:?}",
            detail.service
        ))
    })?;
    Ok(TagChange {
        resource,
        changed_tag_keys: detail.changed_tag_keys,
        tags: detail.tags,
        kind: TagEventKind::TagChange,
        version: detail.version.and_then(|v| v.as_f64()),
        time: envelope.time.map(|t| DateTime::from_secs(t.timestamp())),
        event_id: None,
    })
}

/// A `TagResource` API-call event as a tag change (the keys it changed are the keys it set).
fn parse_api_call(envelope: &EventBridgeEvent<Value>) -> Result<TagChange, NotStarted> {
    let call = parse_tag_call(&envelope.source, &envelope.detail).map_err(|e| match e {
        NotATagCall::OtherCall(name) => NotStarted::from(Ignored::NotATagCall { event_name: name }),
        NotATagCall::Failed(code) => NotStarted::from(Ignored::TagCallFailed { error_code: code }),
        NotATagCall::Malformed(why) => NotStarted::from(Refusal::MalformedEvent(why)),
    })?;
    let resource = match call.resource {
        CalledResource::KmsKey { arn } => TaggedResource::KmsKey { arn },
        CalledResource::CloudHsmCluster { arn, cluster_id } => {
            TaggedResource::CloudHsmCluster { arn, cluster_id }
        }
    };
    Ok(TagChange {
        resource,
        changed_tag_keys: call.tags.keys().cloned().collect(),
        tags: call.tags,
        kind: TagEventKind::ApiCall(call.tagger),
        version: None,
        time: call
            .time
            .or_else(|| envelope.time.map(|t| DateTime::from_secs(t.timestamp()))),
        event_id: call.event_id,
    })
}

/// The id after `<prefix>` in `arn:<partition>:<service>:<region>:<account>:<prefix><id>`.
fn parse_arn<'a>(arn: &'a str, service: &str, prefix: &str) -> Option<&'a str> {
    Arn::parse(arn)?.resource_id(service, prefix)
}

/// A tag change that is not meant for this trigger; nothing is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
pub enum Ignored {
    /// Another kind of event.
    #[error("event {event_source}/{detail_type} is not a tag change")]
    NotATagChange {
        /// Event source.
        event_source: String,
        /// Event detail-type.
        detail_type: String,
    },
    /// A resource other than a KMS key or a CloudHSM cluster.
    #[error("tags of {service}/{resource_type} resources do not trigger decommissions")]
    UnsupportedResource {
        /// `detail.service`.
        service: String,
        /// `detail.resource-type`.
        resource_type: String,
    },
    /// Neither the trigger tag nor (in decommission mode) the confirmation tag changed.
    #[error("the change does not touch the trigger tag")]
    TriggerTagNotChanged,
    /// The trigger tag was removed.
    #[error("the trigger tag was removed")]
    TriggerTagRemoved,
    /// An API-call event of another API (UntagResource, ...).
    #[error("API call {event_name} is not a TagResource call")]
    NotATagCall {
        /// `detail.eventName`.
        event_name: String,
    },
    /// A `TagResource` call that failed: nothing was tagged.
    #[error("the TagResource call failed ({error_code}): nothing was tagged")]
    TagCallFailed {
        /// `detail.errorCode`.
        error_code: String,
    },
    /// Decommission mode and a "Tag Change on Resource" event, which does not say who tagged:
    /// the `TagResource` API-call event of the same change decides.
    #[error(
        "in decommission mode only TagResource API-call events, which name who tagged, start runs"
    )]
    TaggerNotNamed,
    /// Dry-run mode and an API-call event: the "Tag Change on Resource" event of the same
    /// change starts the dry run.
    #[error("in dry-run mode the Tag Change on Resource event of this change starts the dry run")]
    ApiCallInDryRunMode,
    /// A `TagResource` call set the confirmation tag without the trigger tag.
    #[error("the call set the confirmation tag without the trigger tag: set both in one TagResource call")]
    ConfirmationWithoutTrigger,
}

impl Ignored {
    /// Outcome name for logs.
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

/// A tag change meant for this trigger that fails a check; nothing is started or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
pub enum Refusal {
    /// The event is not shaped like a tag change.
    #[error("malformed event: {0}")]
    MalformedEvent(String),
    /// The call that set the trigger tag names no caller ARN.
    #[error(
        "the TagResource call on {resource} names no caller: nobody can be held to have asked"
    )]
    TaggerUnknown {
        /// The tagged resource.
        resource: String,
    },
    /// CloudTrail shows no event with the delivered event's id (`detail.eventID`) within the
    /// lookup window: the call was never made, or CloudTrail has not recorded it yet.
    #[error("CloudTrail shows no event {event_id} (the TagResource call on {resource}) after {waited_seconds} s: the event is not trusted; if the call was made, tag again later or start from the console")]
    TagCallNotInCloudTrail {
        /// The event id the delivered event claims.
        event_id: String,
        /// The tagged resource it claims.
        resource: String,
        /// How long the trigger looked.
        waited_seconds: u64,
    },
    /// CloudTrail's record of the event id differs from the delivered event (another caller,
    /// resource, tags or API, or a failed call): the delivered event is forged or altered.
    #[error("CloudTrail's record of event {event_id} differs from the delivered event ({differs}): the event is not trusted")]
    TagCallDiffersFromCloudTrail {
        /// The event id.
        event_id: String,
        /// The tagged resource the delivered event claims.
        resource: String,
        /// What differs (`caller`, `resource`, `tags`, or what CloudTrail recorded instead).
        differs: String,
    },
    /// The `TagResource` call CloudTrail recorded is older than [`MAX_TAG_CALL_AGE`]: a replay.
    #[error("the TagResource call of event {event_id} on {resource} was made {age_hours} h ago; only calls of the last {} h start runs", MAX_TAG_CALL_AGE.as_secs() / 3600)]
    TagCallTooOld {
        /// The event id.
        event_id: String,
        /// The tagged resource.
        resource: String,
        /// The call's age in whole hours.
        age_hours: u64,
    },
    /// The caller is not among `TAG_TRIGGER_ALLOWED_PRINCIPALS`.
    #[error("{tagger} tagged {resource} but is not allowed to start runs by tag (TagTriggerAllowedPrincipals)")]
    TaggerNotAllowed {
        /// The caller's ARN.
        tagger: String,
        /// The tagged resource.
        resource: String,
    },
    /// The trigger tag's value is not a custom key store id.
    #[error("tag value {value:?} is not a custom key store id: {reason}")]
    InvalidTagValue {
        /// The tag value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// DescribeKey does not know the tagged key.
    #[error("key {key} does not exist")]
    KeyNotFound {
        /// Key ARN.
        key: String,
    },
    /// The tagged key is not in any custom key store (e.g. an AWS_KMS-origin key).
    #[error(
        "key {key} (origin {origin}) is not in a custom key store, so it cannot name store {store}"
    )]
    KeyNotInCustomKeyStore {
        /// Key ARN.
        key: String,
        /// Its origin.
        origin: String,
        /// The store the tag names.
        store: String,
    },
    /// The tagged key belongs to another store.
    #[error("key {key} belongs to store {key_store}, not to store {store} named by the tag")]
    KeyInOtherStore {
        /// Key ARN.
        key: String,
        /// The key's store.
        key_store: String,
        /// The store the tag names.
        store: String,
    },
    /// The store does not exist.
    #[error("custom key store {store} does not exist")]
    StoreNotFound {
        /// The store the tag names.
        store: String,
    },
    /// The tagged cluster does not back the store.
    #[error("cluster {cluster} does not back store {store} (its cluster: {})", backing.as_deref().unwrap_or("none, not a CloudHSM key store"))]
    ClusterDoesNotBackStore {
        /// Tagged cluster id.
        cluster: String,
        /// The store the tag names.
        store: String,
        /// The store's cluster, if it has one.
        backing: Option<String>,
    },
    /// The key's current tags no longer match the event (a newer change follows).
    #[error("the tags of {resource} changed since this event; the newer change decides")]
    TagsChangedSinceEvent {
        /// Resource ARN.
        resource: String,
    },
    /// The confirmation tag does not equal the store's name.
    #[error("tag {CONFIRM_TAG_KEY}={given:?} does not equal the name of store {store} as DescribeCustomKeyStores shows it")]
    ConfirmationMismatch {
        /// The store.
        store: String,
        /// The confirmation tag's value.
        given: String,
    },
    /// The execution input the change leads to fails validation.
    #[error("{0}")]
    InvalidInput(String),
    /// The execution name is taken by an execution with another input.
    #[error("execution {arn} has the name this change derives but another input")]
    NameTaken {
        /// That execution.
        arn: String,
    },
    /// Too many tag-started executions of this store in 90 days.
    #[error("{MAX_TAG_RUNS} tag-started executions of store {store} exist; start it from the console or the webhook")]
    TooManyRuns {
        /// The store.
        store: String,
    },
}

impl Refusal {
    /// Outcome name for logs.
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

/// What a tag change led to.
#[derive(Debug, Clone, PartialEq)]
pub enum TagOutcome {
    /// An execution was started.
    Started {
        /// The store.
        store: String,
        /// Dry run or decommission.
        mode: RunMode,
        /// The execution.
        arn: String,
    },
    /// The same request is already running.
    AlreadyRunning {
        /// The store.
        store: String,
        /// The running execution.
        arn: String,
    },
    /// Another decommission or cancel of the store is running.
    StoreBusy {
        /// The store.
        store: String,
        /// The running execution.
        arn: String,
    },
    /// An execution of the same request started after this change and has finished.
    AlreadyHandled {
        /// The store.
        store: String,
        /// That execution.
        arn: String,
    },
    /// Not meant for this trigger.
    Ignored(Ignored),
    /// Meant for this trigger but refused.
    Refused(Refusal),
}

impl TagOutcome {
    /// The outcome as logged and returned by the function.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Started { store, mode, arn } => json!({
                "Outcome": "Started", "CustomKeyStoreId": store,
                "DryRun": *mode == RunMode::DryRun, "ExecutionArn": arn,
            }),
            Self::AlreadyRunning { store, arn } => {
                json!({"Outcome": "AlreadyRunning", "CustomKeyStoreId": store, "ExecutionArn": arn})
            }
            Self::StoreBusy { store, arn } => {
                json!({"Outcome": "StoreBusy", "CustomKeyStoreId": store, "ExecutionArn": arn})
            }
            Self::AlreadyHandled { store, arn } => {
                json!({"Outcome": "AlreadyHandled", "CustomKeyStoreId": store, "ExecutionArn": arn})
            }
            Self::Ignored(why) => {
                json!({"Outcome": "Ignored", "Reason": why.name(), "Message": why.to_string()})
            }
            Self::Refused(why) => {
                json!({"Outcome": "Refused", "Reason": why.name(), "Message": why.to_string()})
            }
        }
    }
}

impl fmt::Display for TagOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

/// The tag trigger: KMS for the checks, Step Functions to start, EventBridge to report.
#[derive(Debug, Clone)]
pub struct TagTrigger {
    kms: Kms,
    executions: Executions,
    cloudtrail: CloudTrail,
    config: TagTriggerConfig,
    status: Option<StatusEvents>,
}

impl TagTrigger {
    /// A trigger checking with `kms`, checking API-call events against `cloudtrail`, and
    /// starting through `executions`.
    pub fn new(
        kms: Kms,
        executions: Executions,
        cloudtrail: CloudTrail,
        config: TagTriggerConfig,
    ) -> Self {
        Self {
            kms,
            executions,
            cloudtrail,
            config,
            status: None,
        }
    }

    /// The same trigger, publishing a `TriggerRefused` status event for every refusal.
    pub fn with_status_events(mut self, status: StatusEvents) -> Self {
        self.status = Some(status);
        self
    }

    /// Handles one EventBridge event. `Err` only for AWS failures worth a retry of the event.
    pub async fn handle(&self, event: &Value) -> Result<TagOutcome, AwsCallError> {
        let decided = match parse_tag_change(event) {
            Ok(change) => self.decide(&change).await,
            Err(not_started) => Err(not_started.into()),
        };
        let outcome = match decided {
            Ok(outcome) => outcome,
            Err(Halt::NotStarted(NotStarted::Ignored(i))) => TagOutcome::Ignored(i),
            Err(Halt::NotStarted(NotStarted::Refused(r))) => TagOutcome::Refused(r),
            Err(Halt::Failed(e)) => return Err(e),
        };
        if let (TagOutcome::Refused(refusal), Some(status)) = (&outcome, &self.status) {
            let detail = refusal_detail(refusal, event, &self.config.tag_key);
            status.trigger_refused(detail).await;
        }
        Ok(outcome)
    }

    async fn decide(&self, change: &TagChange) -> Result<TagOutcome, Halt> {
        match (&change.kind, self.config.mode) {
            (TagEventKind::TagChange, RunMode::Decommission) => {
                return Err(Halt::from(Ignored::TaggerNotNamed))
            }
            (TagEventKind::ApiCall(_), RunMode::DryRun) => {
                return Err(Halt::from(Ignored::ApiCallInDryRunMode))
            }
            _ => {}
        }
        let call_tags_only = matches!(change.kind, TagEventKind::ApiCall(_));
        let tag_key = self.config.tag_key.as_str();
        let watches_confirmation = self.config.mode == RunMode::Decommission;
        let trigger_changed = change.changed_tag_keys.iter().any(|k| k == tag_key);
        let confirm_changed =
            watches_confirmation && change.changed_tag_keys.iter().any(|k| k == CONFIRM_TAG_KEY);
        if !trigger_changed && !confirm_changed {
            return Err(Halt::from(Ignored::TriggerTagNotChanged));
        }
        // Only API-call events (decommission mode) watch the confirmation tag, and they carry
        // the call's own tags: without the trigger tag the call only confirmed.
        let Some(store) = change.tags.get(tag_key).cloned() else {
            return Err(Halt::from(if call_tags_only {
                Ignored::ConfirmationWithoutTrigger
            } else {
                Ignored::TriggerTagRemoved
            }));
        };
        let requested_by = match &change.kind {
            TagEventKind::TagChange => None,
            TagEventKind::ApiCall(None) => {
                return Err(Halt::from(Refusal::TaggerUnknown {
                    resource: change.resource.arn().to_owned(),
                }))
            }
            TagEventKind::ApiCall(Some(tagger)) => {
                if !self.config.allowed_principals.allows(tagger) {
                    return Err(Halt::from(Refusal::TaggerNotAllowed {
                        tagger: tagger.arn.clone(),
                        resource: change.resource.arn().to_owned(),
                    }));
                }
                Some(tagger.arn.clone())
            }
        };
        // From here on, an API call is what CloudTrail recorded, not what the event claims.
        let recorded;
        let change = match &change.kind {
            TagEventKind::ApiCall(_) => {
                recorded = self.recorded_call(change).await?;
                &recorded
            }
            TagEventKind::TagChange => change,
        };
        if let Err(invalid) = validate_custom_key_store_id(&store) {
            let reason = invalid.to_string();
            return Err(Halt::from(Refusal::InvalidTagValue {
                value: store,
                reason,
            }));
        }
        let confirmation = match &change.resource {
            TaggedResource::KmsKey { arn } => {
                self.check_key(arn, &store).await?;
                let Some(current) = self.current_tags(arn).await? else {
                    return Err(Halt::from(Refusal::KeyNotFound { key: arn.clone() }));
                };
                // A Tag Change event carries the whole tag set: the confirmation now must be the
                // one it showed. An API call carries its own tags: the confirmation is the one
                // this caller set (if any), and it must still be there.
                let confirmed_in_event = change.tags.get(CONFIRM_TAG_KEY);
                let confirmation_same = !watches_confirmation
                    || (call_tags_only && confirmed_in_event.is_none())
                    || current.get(CONFIRM_TAG_KEY) == confirmed_in_event;
                if current.get(tag_key) != Some(&store) || !confirmation_same {
                    return Err(Halt::from(Refusal::TagsChangedSinceEvent {
                        resource: arn.clone(),
                    }));
                }
                if call_tags_only {
                    confirmed_in_event.cloned()
                } else {
                    current.get(CONFIRM_TAG_KEY).cloned()
                }
            }
            TaggedResource::CloudHsmCluster { .. } => change.tags.get(CONFIRM_TAG_KEY).cloned(),
        };
        let summary = match store::describe(&self.kms, &store).await {
            Ok(summary) => summary,
            Err(e) if e.is_kms(KmsErrorCode::CustomKeyStoreNotFound) => {
                return Err(Halt::from(Refusal::StoreNotFound { store }))
            }
            Err(e) => return Err(e.into()),
        };
        if let TaggedResource::CloudHsmCluster { cluster_id, .. } = &change.resource {
            if summary.cloud_hsm_cluster_id.as_deref() != Some(cluster_id.as_str()) {
                return Err(Halt::from(Refusal::ClusterDoesNotBackStore {
                    cluster: cluster_id.clone(),
                    store,
                    backing: summary.cloud_hsm_cluster_id,
                }));
            }
        }
        let (mode, confirmation) = match self.config.mode {
            RunMode::DryRun => (RunMode::DryRun, None),
            RunMode::Decommission => (RunMode::from_dry_run(confirmation.is_none()), confirmation),
        };
        let input = self.execution_input(
            &store,
            mode,
            confirmation.as_deref(),
            requested_by.as_deref(),
        );
        let request = match DecommissionRequest::from_input(&input) {
            Ok(request) => request,
            Err(invalid) => return Err(Halt::from(Refusal::InvalidInput(invalid.to_string()))),
        };
        if request
            .confirm_store_name(&summary.custom_key_store_name)
            .is_err()
        {
            let given = confirmation.unwrap_or_default();
            return Err(Halt::from(Refusal::ConfirmationMismatch { store, given }));
        }
        self.start(&store, mode, input, change.time).await
    }

    fn execution_input(
        &self,
        store: &str,
        mode: RunMode,
        confirmed_name: Option<&str>,
        requested_by: Option<&str>,
    ) -> Value {
        let reason = match (mode, self.config.mode) {
            (RunMode::Decommission, _) => format!(
                "Tag {}={store} confirmed by tag {CONFIRM_TAG_KEY}",
                self.config.tag_key
            ),
            (RunMode::DryRun, RunMode::DryRun) => format!(
                "Dry run from tag {}={store}. To decommission, start from the console or webhook with ConfirmCustomKeyStoreName, or deploy with TriggerMode=decommission and tag {CONFIRM_TAG_KEY}=<store name>",
                self.config.tag_key
            ),
            (RunMode::DryRun, RunMode::Decommission) => format!(
                "Dry run from tag {}={store}: to decommission, an allowed principal tags the same resource with it and {CONFIRM_TAG_KEY}=<the store's name> in one TagResource call",
                self.config.tag_key
            ),
        };
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let mut input = json!({
            "CustomKeyStoreId": store,
            "DryRun": mode == RunMode::DryRun,
            "RequestedBy": requested_by.unwrap_or(REQUESTED_BY),
            "Reason": reason,
            // A run a tag starts always waits for approval (docs/approval.md).
            "Trigger": "tag",
        });
        if let (Some(name), Some(map)) = (confirmed_name, input.as_object_mut()) {
            map.insert(
                "ConfirmCustomKeyStoreName".into(),
                Value::String(name.to_owned()),
            );
        }
        input
    }

    /// Finds the first unused run name of this store and mode, then starts it exclusively.
    async fn start(
        &self,
        store: &str,
        mode: RunMode,
        input: Value,
        changed_at: Option<DateTime>,
    ) -> Result<TagOutcome, Halt> {
        let machine = self.executions.state_machine_arn().to_owned();
        for run in 1..=MAX_TAG_RUNS {
            let name = tag_execution_name(store, mode, run);
            match self.executions.describe_named(&machine, &name).await? {
                Some(existing) if existing.is_running() => {
                    return Ok(TagOutcome::AlreadyRunning {
                        store: store.into(),
                        arn: existing.arn,
                    })
                }
                Some(existing) => {
                    let covered =
                        changed_at.is_some_and(|t| existing.start_date.secs() >= t.secs());
                    if covered {
                        return Ok(TagOutcome::AlreadyHandled {
                            store: store.into(),
                            arn: existing.arn,
                        });
                    }
                }
                None => {
                    let request = ExecutionRequest {
                        name,
                        input,
                        store_id: store.into(),
                        mode,
                    };
                    let outcome = self.executions.start_exclusive(&request).await?;
                    return Ok(match outcome {
                        StartOutcome::Started { arn } => TagOutcome::Started {
                            store: store.into(),
                            mode,
                            arn,
                        },
                        StartOutcome::AlreadyRunning(e) => TagOutcome::AlreadyRunning {
                            store: store.into(),
                            arn: e.arn,
                        },
                        StartOutcome::StoreBusy(e) => TagOutcome::StoreBusy {
                            store: store.into(),
                            arn: e.arn,
                        },
                        StartOutcome::AlreadyFinished(e) => TagOutcome::AlreadyHandled {
                            store: store.into(),
                            arn: e.arn,
                        },
                        StartOutcome::NameTaken(e) => {
                            return Err(Halt::from(Refusal::NameTaken { arn: e.arn }))
                        }
                    });
                }
            }
        }
        Err(Halt::from(Refusal::TooManyRuns {
            store: store.into(),
        }))
    }

    /// CloudTrail's own record of the API call `delivered` claims (looked up by its event id,
    /// waiting up to the lookup window for it to appear), which must be the same successful
    /// `TagResource` call by the same caller on the same resource with the same tags, made
    /// less than [`MAX_TAG_CALL_AGE`] ago. The change returned carries the recorded time.
    async fn recorded_call(&self, delivered: &TagChange) -> Result<TagChange, Halt> {
        let resource = delivered.resource.arn().to_owned();
        let Some(event_id) = delivered.event_id.clone() else {
            return Err(Halt::from(Refusal::MalformedEvent(
                "an API-call event without detail.eventID cannot be checked against CloudTrail"
                    .into(),
            )));
        };
        let lookup = self.config.lookup;
        let started = Instant::now();
        let record = loop {
            if let Some(record) = self.cloudtrail.event_record(&event_id).await? {
                break record;
            }
            if started.elapsed() + lookup.interval > lookup.window {
                return Err(Halt::from(Refusal::TagCallNotInCloudTrail {
                    event_id,
                    resource,
                    waited_seconds: started.elapsed().as_secs(),
                }));
            }
            tokio::time::sleep(lookup.interval).await;
        };
        let differs = |differs: String| {
            Halt::from(Refusal::TagCallDiffersFromCloudTrail {
                event_id: event_id.clone(),
                resource: resource.clone(),
                differs,
            })
        };
        let source = match delivered.resource {
            TaggedResource::KmsKey { .. } => "aws.kms",
            TaggedResource::CloudHsmCluster { .. } => "aws.cloudhsm",
        };
        let call = parse_tag_call(source, &record).map_err(|not| {
            differs(match not {
                NotATagCall::OtherCall(name) => format!("CloudTrail recorded a {name} call"),
                NotATagCall::Failed(code) => {
                    format!("CloudTrail recorded a call that failed with {code}")
                }
                NotATagCall::Malformed(why) => {
                    format!("CloudTrail's record is not a TagResource call: {why}")
                }
            })
        })?;
        let recorded_resource = match &call.resource {
            CalledResource::KmsKey { arn } | CalledResource::CloudHsmCluster { arn, .. } => arn,
        };
        let TagEventKind::ApiCall(claimed_tagger) = &delivered.kind else {
            return Err(differs("not an API call".into()));
        };
        if call.tagger != *claimed_tagger {
            return Err(differs("caller".into()));
        }
        if *recorded_resource != resource {
            return Err(differs("resource".into()));
        }
        if call.tags != delivered.tags {
            return Err(differs("tags".into()));
        }
        let Some(time) = call.time else {
            return Err(differs("CloudTrail's record has no eventTime".into()));
        };
        let age = DateTime::from(std::time::SystemTime::now()).secs() - time.secs();
        if age > MAX_TAG_CALL_AGE.as_secs() as i64 {
            return Err(Halt::from(Refusal::TagCallTooOld {
                event_id,
                resource,
                age_hours: (age / 3600) as u64,
            }));
        }
        Ok(TagChange {
            time: Some(time),
            ..delivered.clone()
        })
    }

    async fn check_key(&self, key_arn: &str, store: &str) -> Result<(), Halt> {
        let Some(metadata) = self.kms.describe_key(key_arn).await? else {
            return Err(Refusal::KeyNotFound {
                key: key_arn.into(),
            }
            .into());
        };
        match metadata.custom_key_store_id() {
            Some(id) if id == store => Ok(()),
            Some(other) => Err(Refusal::KeyInOtherStore {
                key: key_arn.into(),
                key_store: other.into(),
                store: store.into(),
            }
            .into()),
            None => Err(Refusal::KeyNotInCustomKeyStore {
                key: key_arn.into(),
                origin: metadata
                    .origin()
                    .map(|o| o.as_str().to_owned())
                    .unwrap_or_default(),
                store: store.into(),
            }
            .into()),
        }
    }

    /// The key's tags now; `None` when the key is gone.
    async fn current_tags(
        &self,
        key_arn: &str,
    ) -> Result<Option<BTreeMap<String, String>>, AwsCallError> {
        Ok(self.kms.list_resource_tags(key_arn).await?.map(|tags| {
            tags.iter()
                .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
                .collect()
        }))
    }
}

impl TagTrigger {
    /// The function: configuration from the environment ([`TagTriggerConfig::from_env`],
    /// `STATE_MACHINE_ARN`, `CANCEL_STATE_MACHINE_ARN`, the status bus and source), clients from
    /// `sdk`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok();
        let config = TagTriggerConfig::from_env(var)?;
        let executions = Executions::from_env(sdk, var)?;
        let status = StatusEvents::from_env(sdk, var)?;
        Ok(Self::new(
            Kms::from_sdk_config(sdk, Kms::default_pacing()),
            executions,
            CloudTrail::from_sdk_config(sdk),
            config,
        )
        .with_status_events(status))
    }
}

impl LambdaFunction for TagTrigger {
    type Event = Value;
    type Output = Value;

    /// Ignored and refused events return their named outcome (no retry); AWS failures return an
    /// error named by the AWS error code (EventBridge retries).
    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let outcome = TagTrigger::handle(self, &event.payload)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "tag trigger failed; the event will be retried");
                Diagnostic::from(e)
            })?;
        match &outcome {
            TagOutcome::Refused(_) => tracing::warn!(outcome = %outcome, "tag change refused"),
            _ => tracing::info!(outcome = %outcome, "tag change handled"),
        }
        Ok(outcome.to_json())
    }
}

/// The `TriggerRefused` status event's detail: the refusal by name and what the event said of
/// the resource, the store its trigger tag names (when that is a store id) and the caller
/// (never the raw event).
fn refusal_detail(refusal: &Refusal, event: &Value, tag_key: &str) -> Value {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let change = parse_tag_change(event).ok();
    let store = change
        .as_ref()
        .and_then(|c| c.tags.get(tag_key))
        .filter(|id| validate_custom_key_store_id(id).is_ok());
    json!({
        "Trigger": "tag",
        "Error": refusal.name(),
        "Message": refusal.to_string(),
        "Resource": change.as_ref().map(|c| c.resource.arn()),
        "CustomKeyStoreId": store,
        "EventId": text("/id"),
        "EventSource": text("/source"),
        "DetailType": text("/detail-type"),
        "TaggedBy": text("/detail/userIdentity/arn"),
        "SourceIPAddress": text("/detail/sourceIPAddress"),
    })
}

/// Why [`TagTrigger`] stops before an execution is started: the event is not for it, a check
/// refused it, or an AWS call failed (the only case the event is retried for).
#[derive(Debug)]
enum Halt {
    NotStarted(NotStarted),
    Failed(AwsCallError),
}

impl<T: Into<NotStarted>> From<T> for Halt {
    fn from(not_started: T) -> Self {
        Self::NotStarted(not_started.into())
    }
}

impl From<AwsCallError> for Halt {
    fn from(err: AwsCallError) -> Self {
        Self::Failed(err)
    }
}

impl From<crate::error::DecommissionError> for Halt {
    fn from(err: crate::error::DecommissionError) -> Self {
        Self::Failed(err.into())
    }
}

/// Why a tag change started nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStarted {
    /// Not meant for this trigger.
    Ignored(Ignored),
    /// Meant for this trigger but failed a check.
    Refused(Refusal),
}

impl From<Ignored> for NotStarted {
    fn from(i: Ignored) -> Self {
        Self::Ignored(i)
    }
}

impl From<Refusal> for NotStarted {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fakes::{FakeCloudTrail, FakeKms, FakeSfn, MACHINE};
    use aws_sdk_sfn::types::ExecutionStatus;
    use aws_smithy_mocks::mock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const STORE: &str = "cks-1234567890abcdef0";
    const OTHER_STORE: &str = "cks-0fedcba0987654321";
    const STORE_NAME: &str = "ExampleCloudHsmStore";
    const CLUSTER: &str = "cluster-1a23b4cdefg";

    fn event(
        resource: &str,
        service: &str,
        resource_type: &str,
        changed: &[&str],
        tags: &[(&str, &str)],
    ) -> Value {
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        json!({
            "version": "0", "id": "bddcf1d6-0251-35a1-aab0-adc1fb47c11c",
            "detail-type": "Tag Change on Resource", "source": "aws.tag",
            "account": "123456789012", "time": "2026-11-28T10:00:00Z", "region": "us-east-1",
            "resources": [resource],
            "detail": {"changed-tag-keys": changed, "tags": tags, "service": service,
                       "resource-type": resource_type, "version": 3.0}
        })
    }

    fn key_event(arn: &str, changed: &[&str], tags: &[(&str, &str)]) -> Value {
        event(arn, "kms", "key", changed, tags)
    }

    /// A role allowed to start runs by tag, and a session of it.
    const ADMIN_ROLE: &str = "arn:aws:iam::123456789012:role/KeyAdmin";
    const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice";
    const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";

    /// CloudTrail's TagResource API-call event for KMS key `arn`, called by `caller` (a session
    /// of KeyAdmin when it is ALICE) a minute ago, as EventBridge delivers it, with an event id
    /// of its own. CloudTrail knows of it only when it is recorded (`World::called`).
    fn key_call(arn: &str, tags: &[(&str, &str)], caller: Option<&str>) -> Value {
        static EVENT_IDS: AtomicUsize = AtomicUsize::new(1);
        let event_id = format!(
            "0000000{}-1111-2222-3333-444444444444",
            EVENT_IDS.fetch_add(1, Ordering::SeqCst)
        );
        let minute_ago =
            DateTime::from_secs(DateTime::from(std::time::SystemTime::now()).secs() - 60)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap();
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"tagKey": k, "tagValue": v}))
            .collect();
        let identity = match caller {
            Some(ALICE) => json!({"type": "AssumedRole", "arn": ALICE,
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": ADMIN_ROLE}}}),
            Some(other) => json!({"type": "IAMUser", "arn": other}),
            None => json!({"type": "AWSService", "invokedBy": "example.amazonaws.com"}),
        };
        json!({
            "version": "0", "id": "6f1b0c1e-8b0e-4c9e-9d51-1c1f5b1c2d3e",
            "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms",
            "account": "123456789012", "time": "2026-11-28T10:00:05Z", "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08", "userIdentity": identity,
                "eventTime": minute_ago, "eventSource": "kms.amazonaws.com",
                "eventName": "TagResource", "awsRegion": "us-east-1", "eventID": event_id,
                "sourceIPAddress": "192.0.2.7",
                "requestParameters": {"keyId": arn, "tags": tags},
                "responseElements": null,
                "resources": [{"accountId": "123456789012", "type": "AWS::KMS::Key", "ARN": arn}],
                "eventType": "AwsApiCall", "recipientAccountId": "123456789012"
            }
        })
    }

    fn cluster_arn(id: &str) -> String {
        format!("arn:aws:cloudhsm:us-east-1:123456789012:cluster/{id}")
    }

    struct World {
        kms: FakeKms,
        sfn: FakeSfn,
        trail: FakeCloudTrail,
    }

    impl World {
        fn new() -> Self {
            let kms = FakeKms::default();
            kms.store(STORE, STORE_NAME, Some(CLUSTER));
            kms.store(OTHER_STORE, "OtherStore", Some("cluster-999"));
            Self {
                kms,
                sfn: FakeSfn::default(),
                trail: FakeCloudTrail::default(),
            }
        }

        fn trigger(&self, mode: RunMode) -> TagTrigger {
            self.trigger_looking_for(mode, Duration::from_millis(50))
        }

        /// A trigger that looks for CloudTrail's records for `window`, every 10 ms.
        fn trigger_looking_for(&self, mode: RunMode, window: Duration) -> TagTrigger {
            let executions = Executions::new(self.sfn.client(), MACHINE, None);
            TagTrigger::new(
                Kms::with_default_pacing(self.kms.client()),
                executions,
                CloudTrail::new(self.trail.client(), 1000.0),
                TagTriggerConfig {
                    tag_key: DEFAULT_TAG_KEY.into(),
                    mode,
                    allowed_principals: AllowedPrincipals::parse(ADMIN_ROLE).unwrap(),
                    lookup: TagCallLookup {
                        window,
                        interval: Duration::from_millis(10),
                    },
                },
            )
        }

        /// A TagResource call made (CloudTrail records it) and its API-call event.
        fn called(&self, arn: &str, tags: &[(&str, &str)], caller: Option<&str>) -> Value {
            let event = key_call(arn, tags, caller);
            self.trail.record(&event["detail"], 0);
            event
        }

        fn nothing_started(&self) {
            assert_eq!(self.sfn.count(Some("StartExecution")), 0);
            assert!(self.sfn.executions.lock().unwrap().is_empty());
        }
    }

    fn refusal(outcome: TagOutcome) -> Refusal {
        match outcome {
            TagOutcome::Refused(r) => r,
            other => panic!("expected a refusal, got {other}"),
        }
    }

    fn ignored(outcome: TagOutcome) -> Ignored {
        match outcome {
            TagOutcome::Ignored(i) => i,
            other => panic!("expected to be ignored, got {other}"),
        }
    }

    #[test]
    fn configuration_defaults_to_dry_runs_on_the_documented_tag() {
        let config = TagTriggerConfig::from_env(|_| None).unwrap();
        assert_eq!(
            config,
            TagTriggerConfig {
                tag_key: DEFAULT_TAG_KEY.into(),
                mode: RunMode::DryRun,
                allowed_principals: AllowedPrincipals::default(),
                lookup: TagCallLookup {
                    window: Duration::from_secs(600),
                    interval: Duration::from_secs(15),
                },
            }
        );
        let custom = TagTriggerConfig::from_env(|v| match v {
            TAG_KEY_ENV => Some("RetireStore".into()),
            MODE_ENV => Some("decommission".into()),
            "TAG_TRIGGER_ALLOWED_PRINCIPALS" => Some(ADMIN_ROLE.into()),
            LOOKUP_WINDOW_ENV => Some("0".into()),
            LOOKUP_INTERVAL_ENV => Some("2".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            custom,
            TagTriggerConfig {
                tag_key: "RetireStore".into(),
                mode: RunMode::Decommission,
                allowed_principals: AllowedPrincipals::parse(ADMIN_ROLE).unwrap(),
                lookup: TagCallLookup {
                    window: Duration::ZERO,
                    interval: Duration::from_secs(2),
                },
            }
        );
        for (variable, bad) in [
            (LOOKUP_WINDOW_ENV, "841"),
            (LOOKUP_WINDOW_ENV, "-1"),
            (LOOKUP_INTERVAL_ENV, "0"),
            (LOOKUP_INTERVAL_ENV, "1.5"),
        ] {
            assert!(
                TagTriggerConfig::from_env(|v| (v == variable).then(|| bad.into())).is_err(),
                "{variable}={bad}"
            );
        }
        assert!(TagTriggerConfig::from_env(
            |v| (v == "TAG_TRIGGER_ALLOWED_PRINCIPALS").then(|| "alice".into())
        )
        .is_err());
        assert!(TagTriggerConfig::from_env(|v| (v == MODE_ENV).then(|| "yes".into())).is_err());
        assert!(
            TagTriggerConfig::from_env(|v| (v == TAG_KEY_ENV).then(|| CONFIRM_TAG_KEY.into()))
                .is_err()
        );
    }

    #[test]
    fn parses_key_and_cluster_events_with_integer_or_float_versions() {
        let mut e = key_event(
            "arn:aws:kms:us-east-1:123456789012:key/k1",
            &[DEFAULT_TAG_KEY],
            &[(DEFAULT_TAG_KEY, STORE)],
        );
        let change = parse_tag_change(&e).unwrap();
        assert_eq!(
            change.resource,
            TaggedResource::KmsKey {
                arn: "arn:aws:kms:us-east-1:123456789012:key/k1".into()
            }
        );
        assert_eq!(change.version, Some(3.0));
        assert_eq!(change.time, Some(DateTime::from_secs(1_795_860_000)));
        e["detail"]["version"] = json!(4);
        assert_eq!(parse_tag_change(&e).unwrap().version, Some(4.0));

        let c = event(
            &cluster_arn(CLUSTER),
            "cloudhsm",
            "cluster",
            &[DEFAULT_TAG_KEY],
            &[(DEFAULT_TAG_KEY, STORE)],
        );
        assert_eq!(
            parse_tag_change(&c).unwrap().resource,
            TaggedResource::CloudHsmCluster {
                arn: cluster_arn(CLUSTER),
                cluster_id: CLUSTER.into()
            }
        );
    }

    #[test]
    fn other_events_and_resources_are_ignored_and_malformed_ones_refused() {
        let mut other = key_event("arn:aws:kms:us-east-1:123456789012:key/k1", &[], &[]);
        other["detail-type"] = json!("Invalid Effective Tag Policy");
        assert!(matches!(
            parse_tag_change(&other),
            Err(NotStarted::Ignored(Ignored::NotATagChange { .. }))
        ));
        let ec2 = event(
            "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
            "ec2",
            "instance",
            &[DEFAULT_TAG_KEY],
            &[],
        );
        assert!(matches!(
            parse_tag_change(&ec2),
            Err(NotStarted::Ignored(Ignored::UnsupportedResource { .. }))
        ));
        let mismatched = event(
            "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
            "kms",
            "key",
            &[DEFAULT_TAG_KEY],
            &[],
        );
        assert!(matches!(
            parse_tag_change(&mismatched),
            Err(NotStarted::Refused(Refusal::MalformedEvent(_)))
        ));
        let mut two = key_event("arn:aws:kms:us-east-1:123456789012:key/k1", &[], &[]);
        two["resources"] = json!([
            "arn:aws:kms:us-east-1:123456789012:key/k1",
            "arn:aws:kms:us-east-1:123456789012:key/k2"
        ]);
        assert!(matches!(
            parse_tag_change(&two),
            Err(NotStarted::Refused(Refusal::MalformedEvent(_)))
        ));
        assert!(matches!(
            parse_tag_change(&json!({"hello": 1})),
            Err(NotStarted::Refused(Refusal::MalformedEvent(_)))
        ));
        let mut no_detail = key_event("arn:aws:kms:us-east-1:123456789012:key/k1", &[], &[]);
        no_detail["detail"] = json!({"tags": {}});
        assert!(matches!(
            parse_tag_change(&no_detail),
            Err(NotStarted::Refused(Refusal::MalformedEvent(_)))
        ));
    }

    #[tokio::test]
    async fn a_tag_on_a_key_of_the_store_starts_one_dry_run() {
        let w = World::new();
        let key = w.kms.key("k1", Some(STORE), &[(DEFAULT_TAG_KEY, STORE)]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        let TagOutcome::Started { store, mode, arn } = outcome else {
            panic!("{outcome}")
        };
        assert_eq!((store.as_str(), mode), (STORE, RunMode::DryRun));
        assert!(
            arn.ends_with(":tag-dryrun-cks-1234567890abcdef0-1"),
            "{arn}"
        );
        let started = w.sfn.get("tag-dryrun-cks-1234567890abcdef0-1").unwrap();
        let input: Value = serde_json::from_str(&started.input).unwrap();
        assert_eq!(input["CustomKeyStoreId"], STORE);
        assert_eq!(input["DryRun"], true);
        assert_eq!(input["RequestedBy"], REQUESTED_BY);
        assert!(input.get("ConfirmCustomKeyStoreName").is_none());
        assert!(
            input["Reason"]
                .as_str()
                .unwrap()
                .contains("ConfirmCustomKeyStoreName"),
            "says how to confirm"
        );
    }

    #[tokio::test]
    async fn tagging_every_key_of_a_store_starts_one_execution() {
        let w = World::new();
        let trigger = w.trigger(RunMode::DryRun);
        let mut outcomes = Vec::new();
        for i in 0..5 {
            let key = w
                .kms
                .key(&format!("k{i}"), Some(STORE), &[(DEFAULT_TAG_KEY, STORE)]);
            outcomes.push(
                trigger
                    .handle(&key_event(
                        &key,
                        &[DEFAULT_TAG_KEY],
                        &[(DEFAULT_TAG_KEY, STORE)],
                    ))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(w.sfn.count(Some("StartExecution")), 1);
        assert!(matches!(outcomes[0], TagOutcome::Started { .. }));
        let first_arn = w.sfn.get("tag-dryrun-cks-1234567890abcdef0-1").unwrap().arn;
        for later in &outcomes[1..] {
            assert_eq!(
                later,
                &TagOutcome::AlreadyRunning {
                    store: STORE.into(),
                    arn: first_arn.clone()
                }
            );
        }
    }

    #[tokio::test]
    async fn a_tag_on_an_aws_kms_origin_key_starts_nothing() {
        let w = World::new();
        let key = w.kms.key("plain", None, &[(DEFAULT_TAG_KEY, STORE)]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert_eq!(
            refusal(outcome),
            Refusal::KeyNotInCustomKeyStore {
                key,
                origin: "AWS_KMS".into(),
                store: STORE.into()
            }
        );
        w.nothing_started();
        assert_eq!(w.sfn.count(None), 0, "Step Functions is not even asked");
    }

    #[tokio::test]
    async fn a_tag_on_a_key_of_another_store_starts_nothing() {
        let w = World::new();
        let key = w
            .kms
            .key("theirs", Some(OTHER_STORE), &[(DEFAULT_TAG_KEY, STORE)]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert_eq!(refusal(outcome).name(), "KeyInOtherStore");
        w.nothing_started();
    }

    #[tokio::test]
    async fn a_wrong_tag_value_starts_nothing() {
        let w = World::new();
        let key = w
            .kms
            .key("k1", Some(STORE), &[(DEFAULT_TAG_KEY, "yes please")]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, "yes please")],
            ))
            .await
            .unwrap();
        assert_eq!(refusal(outcome).name(), "InvalidTagValue");
        assert_eq!(
            w.kms.call_count(),
            0,
            "an invalid value is refused before asking KMS"
        );
        // A well-formed id of a store that does not exist.
        let missing = "cks-00000000000000000";
        let key = w.kms.key("k2", Some(STORE), &[(DEFAULT_TAG_KEY, missing)]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, missing)],
            ))
            .await
            .unwrap();
        assert_eq!(refusal(outcome).name(), "KeyInOtherStore");
        w.nothing_started();
    }

    #[tokio::test]
    async fn a_removed_or_unrelated_tag_starts_nothing() {
        let w = World::new();
        let key = w.kms.key("k1", Some(STORE), &[]);
        let dry = w.trigger(RunMode::DryRun);
        let removed = dry
            .handle(&key_event(&key, &[DEFAULT_TAG_KEY], &[("Owner", "alice")]))
            .await
            .unwrap();
        assert_eq!(ignored(removed), Ignored::TriggerTagRemoved);
        let other = dry
            .handle(&key_event(
                &key,
                &["Owner"],
                &[("Owner", "bob"), (DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert_eq!(ignored(other), Ignored::TriggerTagNotChanged);
        // In dry-run mode the confirmation tag is not watched at all.
        let confirm_dry = dry
            .handle(&key_event(
                &key,
                &[CONFIRM_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE), (CONFIRM_TAG_KEY, STORE_NAME)],
            ))
            .await
            .unwrap();
        assert_eq!(ignored(confirm_dry), Ignored::TriggerTagNotChanged);
        // In decommission mode, a call that sets other tags, or only the confirmation.
        let decommission = w.trigger(RunMode::Decommission);
        let other = decommission
            .handle(&w.called(&key, &[("Owner", "bob")], Some(ALICE)))
            .await
            .unwrap();
        assert_eq!(ignored(other), Ignored::TriggerTagNotChanged);
        let confirm_alone = decommission
            .handle(&w.called(&key, &[(CONFIRM_TAG_KEY, STORE_NAME)], Some(ALICE)))
            .await
            .unwrap();
        assert_eq!(ignored(confirm_alone), Ignored::ConfirmationWithoutTrigger);
        assert_eq!(w.kms.call_count(), 0);
        w.nothing_started();
    }

    #[tokio::test]
    async fn decommission_mode_needs_the_confirmation_tag_set_by_an_allowed_principal() {
        let w = World::new();
        let trigger = w.trigger(RunMode::Decommission);

        // Without confirmation: a dry run that says how to confirm, requested by the caller.
        let key = w.kms.key("k1", Some(STORE), &[(DEFAULT_TAG_KEY, STORE)]);
        let outcome = trigger
            .handle(&w.called(&key, &[(DEFAULT_TAG_KEY, STORE)], Some(ALICE)))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                TagOutcome::Started {
                    mode: RunMode::DryRun,
                    ..
                }
            ),
            "{outcome}"
        );
        let dry = w.sfn.get("tag-dryrun-cks-1234567890abcdef0-1").unwrap();
        assert!(dry.input.contains(CONFIRM_TAG_KEY), "{}", dry.input);
        assert!(dry.input.contains(ALICE), "{}", dry.input);

        // A wrong name: nothing.
        let wrong = [
            (DEFAULT_TAG_KEY, STORE),
            (CONFIRM_TAG_KEY, "examplecloudhsmstore"),
        ];
        let key2 = w.kms.key("k2", Some(STORE), &wrong);
        let outcome = trigger
            .handle(&w.called(&key2, &wrong, Some(ALICE)))
            .await
            .unwrap();
        assert_eq!(
            refusal(outcome),
            Refusal::ConfirmationMismatch {
                store: STORE.into(),
                given: "examplecloudhsmstore".into()
            }
        );
        assert_eq!(w.sfn.count(Some("StartExecution")), 1);

        // The confirmation alone, in a later call: not a request (both go in one call).
        let right = [(DEFAULT_TAG_KEY, STORE), (CONFIRM_TAG_KEY, STORE_NAME)];
        let key3 = w.kms.key("k3", Some(STORE), &right);
        let alone = trigger
            .handle(&w.called(&key3, &right[1..], Some(ALICE)))
            .await
            .unwrap();
        assert_eq!(ignored(alone), Ignored::ConfirmationWithoutTrigger);

        // Both in one call with the store's exact name: the real decommission, confirmed by
        // name and requested by the caller in its input.
        let outcome = trigger
            .handle(&w.called(&key3, &right, Some(ALICE)))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                TagOutcome::Started {
                    mode: RunMode::Decommission,
                    ..
                }
            ),
            "{outcome}"
        );
        let real: Value = serde_json::from_str(
            &w.sfn
                .get("tag-decom-cks-1234567890abcdef0-1")
                .unwrap()
                .input,
        )
        .unwrap();
        assert_eq!(real["DryRun"], false);
        assert_eq!(real["ConfirmCustomKeyStoreName"], STORE_NAME);
        assert_eq!(real["RequestedBy"], ALICE);
        assert_eq!(real["Trigger"], "tag");

        // Another key confirmed the same way: the running decommission comes back.
        let key4 = w.kms.key("k4", Some(STORE), &right);
        let again = trigger
            .handle(&w.called(&key4, &right, Some(ALICE)))
            .await
            .unwrap();
        assert!(
            matches!(again, TagOutcome::AlreadyRunning { .. }),
            "{again}"
        );
        assert_eq!(w.sfn.count(Some("StartExecution")), 2);
    }

    #[tokio::test]
    async fn a_tag_by_anyone_not_allowed_or_not_named_starts_nothing_and_asks_kms_nothing() {
        let w = World::new();
        let trigger = w.trigger(RunMode::Decommission);
        let right = [(DEFAULT_TAG_KEY, STORE), (CONFIRM_TAG_KEY, STORE_NAME)];
        let key = w.kms.key("k1", Some(STORE), &right);
        let calls_before = w.kms.call_count();

        let outcome = trigger
            .handle(&w.called(&key, &right, Some(MALLORY)))
            .await
            .unwrap();
        assert_eq!(
            refusal(outcome),
            Refusal::TaggerNotAllowed {
                tagger: MALLORY.into(),
                resource: key.clone()
            }
        );
        // A session of another role whose name starts the same way is not the allowed role.
        let lookalike = "arn:aws:sts::123456789012:assumed-role/KeyAdminX/alice";
        let outcome = trigger
            .handle(&w.called(&key, &right, Some(lookalike)))
            .await
            .unwrap();
        assert_eq!(refusal(outcome).name(), "TaggerNotAllowed");
        let outcome = trigger.handle(&w.called(&key, &right, None)).await.unwrap();
        assert_eq!(
            refusal(outcome),
            Refusal::TaggerUnknown {
                resource: key.clone()
            }
        );
        // The Tag Change event of the same change names nobody: ignored in this mode.
        let outcome = trigger
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY, CONFIRM_TAG_KEY],
                &right,
            ))
            .await
            .unwrap();
        assert_eq!(ignored(outcome), Ignored::TaggerNotNamed);
        // A failed call tagged nothing; an untag is not a request.
        let mut failed = w.called(&key, &right, Some(ALICE));
        failed["detail"]["errorCode"] = json!("AccessDeniedException");
        assert_eq!(
            ignored(trigger.handle(&failed).await.unwrap()).name(),
            "TagCallFailed"
        );
        let mut untag = w.called(&key, &right, Some(ALICE));
        untag["detail"]["eventName"] = json!("UntagResource");
        assert_eq!(
            ignored(trigger.handle(&untag).await.unwrap()).name(),
            "NotATagCall"
        );
        assert_eq!(w.kms.call_count(), calls_before, "KMS was not asked");
        w.nothing_started();

        // In dry-run mode the Tag Change event starts the dry run; the API call is ignored.
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&w.called(&key, &right, Some(ALICE)))
            .await
            .unwrap();
        assert_eq!(ignored(outcome), Ignored::ApiCallInDryRunMode);
        w.nothing_started();
    }

    #[tokio::test]
    async fn an_api_call_event_counts_only_as_cloudtrail_recorded_it() {
        let w = World::new();
        let trigger = w.trigger(RunMode::Decommission);
        let right = [(DEFAULT_TAG_KEY, STORE), (CONFIRM_TAG_KEY, STORE_NAME)];
        let key = w.kms.key("k1", Some(STORE), &right);
        let alice_call = key_call(&key, &right, Some(ALICE));
        let differs = |outcome: TagOutcome| match refusal(outcome) {
            Refusal::TagCallDiffersFromCloudTrail {
                resource, differs, ..
            } => {
                assert_eq!(resource, key);
                differs
            }
            other => panic!("expected TagCallDiffersFromCloudTrail, got {other:?}"),
        };

        // Mallory tagged; the event handed to the function names Alice.
        let mut forged = w.called(&key, &right, Some(MALLORY));
        forged["detail"]["userIdentity"] = alice_call["detail"]["userIdentity"].clone();
        assert_eq!(differs(trigger.handle(&forged).await.unwrap()), "caller");
        // Alice tagged another key of the store; the event claims this one.
        let other = w.kms.key("k2", Some(STORE), &right);
        let mut moved = w.called(&other, &right, Some(ALICE));
        moved["detail"]["requestParameters"]["keyId"] = json!(key);
        moved["detail"]["resources"][0]["ARN"] = json!(key);
        assert_eq!(differs(trigger.handle(&moved).await.unwrap()), "resource");
        // Alice set an Owner tag; the event claims she set the trigger tags.
        let mut retagged = w.called(&key, &[("Owner", "alice")], Some(ALICE));
        retagged["detail"]["requestParameters"]["tags"] =
            alice_call["detail"]["requestParameters"]["tags"].clone();
        assert_eq!(differs(trigger.handle(&retagged).await.unwrap()), "tags");
        // CloudTrail recorded a failed call under that id.
        let denied = key_call(&key, &right, Some(ALICE));
        let mut record = denied["detail"].clone();
        record["errorCode"] = json!("AccessDeniedException");
        w.trail.record(&record, 0);
        let why = differs(trigger.handle(&denied).await.unwrap());
        assert!(why.contains("AccessDeniedException"), "{why}");

        // An id CloudTrail never shows: refused once the lookup window is over (with no window,
        // after one lookup).
        let unknown = key_call(&key, &right, Some(ALICE));
        let refused = refusal(trigger.handle(&unknown).await.unwrap());
        assert_eq!(refused.name(), "TagCallNotInCloudTrail");
        let lookups = w.trail.lookup_count();
        let at_once = w.trigger_looking_for(RunMode::Decommission, Duration::ZERO);
        let refused = refusal(at_once.handle(&unknown).await.unwrap());
        assert_eq!(refused.name(), "TagCallNotInCloudTrail");
        assert_eq!(w.trail.lookup_count() - lookups, 1);
        // An event without an id cannot be checked.
        let mut no_id = w.called(&key, &right, Some(ALICE));
        no_id["detail"].as_object_mut().unwrap().remove("eventID");
        assert_eq!(
            refusal(trigger.handle(&no_id).await.unwrap()).name(),
            "MalformedEvent"
        );
        // A real call of two days ago, delivered again: a replay.
        let mut old = key_call(&key, &right, Some(ALICE));
        old["detail"]["eventTime"] = json!(DateTime::from_secs(
            DateTime::from(std::time::SystemTime::now()).secs() - 2 * 86_400
        )
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap());
        w.trail.record(&old["detail"], 0);
        let refused = refusal(trigger.handle(&old).await.unwrap());
        assert!(
            matches!(refused, Refusal::TagCallTooOld { age_hours: 48, .. }),
            "{refused:?}"
        );
        assert_eq!(w.kms.call_count(), 0, "KMS was not asked");
        w.nothing_started();

        // A call CloudTrail shows only from the third lookup on starts the run (the window is
        // long enough for any machine's pace).
        let late = key_call(&key, &right, Some(ALICE));
        w.trail.record(&late["detail"], 2);
        let lookups = w.trail.lookup_count();
        let patient = w.trigger_looking_for(RunMode::Decommission, Duration::from_secs(60));
        let outcome = patient.handle(&late).await.unwrap();
        assert_eq!(w.trail.lookup_count() - lookups, 3);
        assert!(
            matches!(
                outcome,
                TagOutcome::Started {
                    mode: RunMode::Decommission,
                    ..
                }
            ),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn a_cloudtrail_failure_is_retried_not_refused() {
        let w = World::new();
        let right = [(DEFAULT_TAG_KEY, STORE), (CONFIRM_TAG_KEY, STORE_NAME)];
        let key = w.kms.key("k1", Some(STORE), &right);
        let denied = mock!(aws_sdk_cloudtrail::Client::lookup_events).then_error(|| {
            aws_sdk_cloudtrail::operation::lookup_events::LookupEventsError::generic(
                aws_sdk_cloudtrail::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform cloudtrail:LookupEvents")
                    .build(),
            )
        });
        let mut trigger = w.trigger(RunMode::Decommission);
        trigger.cloudtrail = CloudTrail::new(
            crate::test_support::fakes::mocked!(aws_sdk_cloudtrail, [&denied]),
            1000.0,
        );
        let err = trigger
            .handle(&w.called(&key, &right, Some(ALICE)))
            .await
            .unwrap_err();
        assert_eq!(err.code, "AccessDeniedException");
        w.nothing_started();
    }

    #[tokio::test]
    async fn an_empty_confirmation_tag_starts_nothing_even_for_an_unnamed_store() {
        let w = World::new();
        w.kms.store(STORE, "", None);
        let tags = [(DEFAULT_TAG_KEY, STORE), (CONFIRM_TAG_KEY, "")];
        let key = w.kms.key("k1", Some(STORE), &tags);
        let outcome = w
            .trigger(RunMode::Decommission)
            .handle(&w.called(&key, &tags, Some(ALICE)))
            .await
            .unwrap();
        let refused = refusal(outcome);
        assert_eq!(refused.name(), "InvalidInput");
        assert!(
            refused.to_string().contains("ConfirmCustomKeyStoreName"),
            "{refused}"
        );
        w.nothing_started();
    }

    #[tokio::test]
    async fn a_stale_event_is_refused_when_the_key_tags_changed_since() {
        let w = World::new();
        let key = w.kms.key("k1", Some(STORE), &[]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert_eq!(
            refusal(outcome),
            Refusal::TagsChangedSinceEvent { resource: key }
        );
        w.nothing_started();
    }

    #[tokio::test]
    async fn a_deleted_key_is_refused() {
        let w = World::new();
        let arn = "arn:aws:kms:us-east-1:123456789012:key/gone";
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                arn,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert_eq!(refusal(outcome), Refusal::KeyNotFound { key: arn.into() });
        w.nothing_started();
    }

    #[tokio::test]
    async fn a_cluster_tag_starts_only_when_the_cluster_backs_the_store() {
        let w = World::new();
        let trigger = w.trigger(RunMode::DryRun);
        let tags = [(DEFAULT_TAG_KEY, STORE)];
        let wrong = trigger
            .handle(&event(
                &cluster_arn("cluster-999"),
                "cloudhsm",
                "cluster",
                &[DEFAULT_TAG_KEY],
                &tags,
            ))
            .await
            .unwrap();
        assert_eq!(
            refusal(wrong),
            Refusal::ClusterDoesNotBackStore {
                cluster: "cluster-999".into(),
                store: STORE.into(),
                backing: Some(CLUSTER.into())
            }
        );
        w.nothing_started();
        let right = trigger
            .handle(&event(
                &cluster_arn(CLUSTER),
                "cloudhsm",
                "cluster",
                &[DEFAULT_TAG_KEY],
                &tags,
            ))
            .await
            .unwrap();
        assert!(
            matches!(
                right,
                TagOutcome::Started {
                    mode: RunMode::DryRun,
                    ..
                }
            ),
            "{right}"
        );
    }

    #[tokio::test]
    async fn a_cluster_tag_naming_an_external_key_store_is_refused() {
        let w = World::new();
        let xks = "cks-0000000000000xks1";
        w.kms.store(xks, "ExampleXks", None);
        let tags = [(DEFAULT_TAG_KEY, xks)];
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&event(
                &cluster_arn(CLUSTER),
                "cloudhsm",
                "cluster",
                &[DEFAULT_TAG_KEY],
                &tags,
            ))
            .await
            .unwrap();
        assert_eq!(refusal(outcome).name(), "ClusterDoesNotBackStore");
        w.nothing_started();
    }

    #[tokio::test]
    async fn a_finished_run_covers_earlier_changes_and_later_changes_start_the_next_run() {
        let w = World::new();
        let key = w.kms.key("k1", Some(STORE), &[(DEFAULT_TAG_KEY, STORE)]);
        let trigger = w.trigger(RunMode::DryRun);
        // Run 1 finished; it started (fake clock, 2027) after the change of 2026-11-28.
        w.sfn.insert(
            MACHINE,
            "tag-dryrun-cks-1234567890abcdef0-1",
            "{}",
            ExecutionStatus::Succeeded,
        );
        let covered = trigger
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert!(
            matches!(covered, TagOutcome::AlreadyHandled { .. }),
            "{covered}"
        );
        assert_eq!(w.sfn.count(Some("StartExecution")), 0);
        // A change after that run started: run 2.
        let mut later = key_event(&key, &[DEFAULT_TAG_KEY], &[(DEFAULT_TAG_KEY, STORE)]);
        later["time"] = json!("2030-01-01T00:00:00Z");
        let outcome = trigger.handle(&later).await.unwrap();
        let TagOutcome::Started { arn, .. } = outcome else {
            panic!("{outcome}")
        };
        assert!(arn.ends_with("-2"), "{arn}");
    }

    #[tokio::test]
    async fn a_running_decommission_of_the_store_blocks_tag_runs() {
        let w = World::new();
        let running = w.sfn.insert(
            MACHINE,
            "decom-CHG-1",
            &json!({"CustomKeyStoreId": STORE, "DryRun": false}).to_string(),
            ExecutionStatus::Running,
        );
        let key = w.kms.key("k1", Some(STORE), &[(DEFAULT_TAG_KEY, STORE)]);
        let outcome = w
            .trigger(RunMode::DryRun)
            .handle(&key_event(
                &key,
                &[DEFAULT_TAG_KEY],
                &[(DEFAULT_TAG_KEY, STORE)],
            ))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            TagOutcome::StoreBusy {
                store: STORE.into(),
                arn: running
            }
        );
        assert_eq!(w.sfn.count(Some("StartExecution")), 0);
    }

    #[test]
    fn outcomes_are_logged_with_their_names() {
        let json = TagOutcome::Refused(Refusal::StoreNotFound {
            store: STORE.into(),
        })
        .to_json();
        assert_eq!(json["Outcome"], "Refused");
        assert_eq!(json["Reason"], "StoreNotFound");
        assert!(json["Message"].as_str().unwrap().contains(STORE));
    }
}
