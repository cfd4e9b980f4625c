//! CloudTrail: a record of every KMS call (kms-facts.md section 15) and the `LookupEvents`
//! operation of the CloudTrail API (`X-Amz-Target: CloudTrail_20131101.LookupEvents`, awsJson1_1)
//! answered from those records on the emulator's own endpoint.
//!
//! - Every KMS call with an `X-Amz-Target: TrentService.<Operation>` header is recorded,
//!   succeeded or failed (validation errors, unknown keys, injected faults and throttling
//!   included), with the emulated clock. Calls without such a target are not (no action was
//!   named). LookupEvents calls are CloudTrail's own: they are in the call log, not here.
//! - At most [`MAX_EVENTS`] records are kept (the oldest are dropped and counted); records older
//!   than [`RETENTION_DAYS`] emulated days are gone, as in CloudTrail's event history.
//! - A record becomes visible to LookupEvents `cloudtrail_delivery_delay` emulated seconds after
//!   the call (`EmulatorConfig::cloudtrail_delivery_delay`, default 0; real CloudTrail takes
//!   minutes).
//! - LookupEvents is limited to [`LOOKUP_EVENTS_RATE`] requests per second (when quotas are on);
//!   beyond it `ThrottlingException` (HTTP 400). Pages are at most [`MAX_PAGE`] events, newest
//!   first, and a `NextToken` is a cursor on the record sequence, so pages stay stable while new
//!   calls are recorded.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use crate::error::{ErrorCode, KmsError};

/// Most records kept; older ones are dropped (and counted).
pub const MAX_EVENTS: usize = 100_000;
/// Emulated days LookupEvents looks back (CloudTrail event history: 90 days).
pub const RETENTION_DAYS: f64 = 90.0;
/// The `eventSource` of KMS records.
pub const EVENT_SOURCE: &str = "kms.amazonaws.com";
/// The resource type of KMS keys.
pub const KEY_RESOURCE_TYPE: &str = "AWS::KMS::Key";
/// The X-Amz-Target prefixes of the CloudTrail API: the Smithy service name (Rust, Java, JS v3
/// SDKs) and botocore's `targetPrefix` (AWS CLI, boto3).
pub const TARGET_PREFIXES: [&str; 2] = [
    "CloudTrail_20131101.",
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.",
];
/// The one CloudTrail operation the emulator answers.
pub const LOOKUP_EVENTS: &str = "LookupEvents";
/// LookupEvents requests per second per account and Region.
pub const LOOKUP_EVENTS_RATE: f64 = 2.0;
/// Most events per LookupEvents page (and the default).
pub const MAX_PAGE: i64 = 50;
/// Most NextTokens remembered; older ones become invalid.
const MAX_TOKENS: usize = 10_000;
/// Longest `AttributeValue`, counting `_`, space, `,` and newline as two characters.
const MAX_ATTRIBUTE_VALUE: usize = 2000;
/// The message of LookupEvents throttling (UNCONFIRMED wording; the code is documented).
pub const THROTTLING_MESSAGE: &str = "Rate exceeded";

/// The CloudTrail operation name of an X-Amz-Target, if it names the CloudTrail API.
pub fn operation_name(target: &str) -> Option<&str> {
    TARGET_PREFIXES
        .iter()
        .find_map(|prefix| target.strip_prefix(prefix))
}

/// Whether CloudTrail marks an operation read-only: Describe*, List*, Get* and the cryptographic
/// operations that change nothing.
pub fn is_read_only(operation: &str) -> bool {
    ["Describe", "List", "Get"]
        .iter()
        .any(|prefix| operation.starts_with(prefix))
        || is_cryptographic(operation)
}

/// The KMS cryptographic operations.
pub fn is_cryptographic(operation: &str) -> bool {
    operation.starts_with("GenerateDataKey")
        || matches!(
            operation,
            "Encrypt"
                | "Decrypt"
                | "ReEncrypt"
                | "Sign"
                | "Verify"
                | "GenerateMac"
                | "VerifyMac"
                | "GenerateRandom"
                | "DeriveSharedSecret"
        )
}

/// `1970-01-01T00:00:00Z` for whole epoch seconds.
pub fn iso8601(epoch_seconds: i64) -> String {
    let days = epoch_seconds.div_euclid(86_400);
    let secs = epoch_seconds.rem_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Request members never written to a record (data and secrets); CloudTrail omits the plaintext
/// and ciphertext of cryptographic calls and the custom key store credentials.
const DROPPED_MEMBERS: [&str; 6] = [
    "Plaintext",
    "CiphertextBlob",
    "KeyStorePassword",
    "NewKeyStorePassword",
    "TrustAnchorCertificate",
    "RawSecretAccessKey",
];

/// Map members whose keys are the caller's data, copied as they are.
const OPAQUE_MAPS: [&str; 3] = [
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
];

/// A member name as CloudTrail writes it: first letter lowercase (`KeyId` -> `keyId`);
/// `CloudHsmClusterId` is `clusterId` in custom key store records.
fn record_member(name: &str) -> String {
    if name == "CloudHsmClusterId" {
        return "clusterId".into();
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn record_object(members: &Map<String, Value>) -> Map<String, Value> {
    members
        .iter()
        .filter(|(name, value)| !value.is_null() && !DROPPED_MEMBERS.contains(&name.as_str()))
        .map(|(name, value)| {
            let value = if OPAQUE_MAPS.contains(&name.as_str()) {
                value.clone()
            } else {
                record_value(value)
            };
            (record_member(name), value)
        })
        .collect()
}

fn record_value(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(record_object(members)),
        Value::Array(items) => Value::Array(items.iter().map(record_value).collect()),
        other => other.clone(),
    }
}

/// The `requestParameters` of a KMS call: the request members with lowercase first letters,
/// without plaintext, ciphertext and secrets; `null` when nothing is left. Encrypt and Decrypt
/// always carry `encryptionAlgorithm`, as KMS records them.
pub fn request_parameters(operation: &str, members: &Map<String, Value>) -> Value {
    let mut out = record_object(members);
    if matches!(operation, "Encrypt" | "Decrypt") && !out.contains_key("encryptionAlgorithm") {
        out.insert("encryptionAlgorithm".into(), json!("SYMMETRIC_DEFAULT"));
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

/// The caller of one request as the HTTP layer saw it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The access key id of the SigV4 `Authorization` header.
    pub access_key_id: Option<String>,
    /// The first `X-Forwarded-For` address, else the peer address.
    pub source_ip: String,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// One CloudTrail record of a KMS call.
#[derive(Debug, Clone, PartialEq)]
pub struct TrailEvent {
    /// Sequence number, from 1, never reused until reset.
    pub seq: u64,
    /// When the call was made (epoch seconds, emulated clock).
    pub time: f64,
    /// `eventID`.
    pub event_id: String,
    /// `eventName`: the operation.
    pub event_name: String,
    /// The access key id that signed the call.
    pub access_key_id: Option<String>,
    /// The LookupEvents `Username`.
    pub username: String,
    /// `userIdentity`.
    pub user_identity: Value,
    /// `sourceIPAddress`.
    pub source_ip: String,
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// `requestParameters`.
    pub request_parameters: Value,
    /// `additionalEventData` (custom key store of a cryptographic call).
    pub additional_event_data: Option<Value>,
    /// `errorCode` and `errorMessage` of a failed call.
    pub error: Option<(String, String)>,
    /// `requestID`: the x-amzn-RequestId answered.
    pub request_id: String,
    /// ARNs of the keys the request resolved to.
    pub resources: Vec<String>,
    /// `awsRegion`.
    pub region: String,
    /// `recipientAccountId`, and the account of the resources.
    pub account_id: String,
    /// The whole record when it is not one of a KMS call: a call to another AWS service, posted
    /// through the admin API (`POST /_emulator/cloudtrail`: the emulator serves KMS only, and a
    /// test stands in for the other service, a CloudHSM `TagResource`, say), or an event of KMS
    /// itself (`DeleteKey` at the end of a waiting period, [`key_deletion_event`]). `None` for
    /// the KMS calls it recorded.
    pub service_record: Option<Value>,
}

impl TrailEvent {
    /// `eventTime` in whole epoch seconds.
    pub fn event_time(&self) -> i64 {
        self.time.floor() as i64
    }

    /// `readOnly`.
    pub fn read_only(&self) -> bool {
        is_read_only(&self.event_name)
    }

    /// The whole CloudTrail record.
    pub fn record(&self) -> Value {
        if let Some(record) = &self.service_record {
            let mut record = record.clone();
            record["eventID"] = json!(self.event_id);
            record["eventTime"] = json!(iso8601(self.event_time()));
            return record;
        }
        let mut m = Map::new();
        m.insert("eventVersion".into(), json!("1.08"));
        m.insert("userIdentity".into(), self.user_identity.clone());
        m.insert("eventTime".into(), json!(iso8601(self.event_time())));
        m.insert("eventSource".into(), json!(EVENT_SOURCE));
        m.insert("eventName".into(), json!(self.event_name));
        m.insert("awsRegion".into(), json!(self.region));
        m.insert("sourceIPAddress".into(), json!(self.source_ip));
        if let Some(agent) = &self.user_agent {
            m.insert("userAgent".into(), json!(agent));
        }
        if let Some((code, message)) = &self.error {
            m.insert("errorCode".into(), json!(code));
            m.insert("errorMessage".into(), json!(message));
        }
        m.insert("requestParameters".into(), self.request_parameters.clone());
        m.insert("responseElements".into(), Value::Null);
        if let Some(data) = &self.additional_event_data {
            m.insert("additionalEventData".into(), data.clone());
        }
        m.insert("requestID".into(), json!(self.request_id));
        m.insert("eventID".into(), json!(self.event_id));
        m.insert("readOnly".into(), json!(self.read_only()));
        if !self.resources.is_empty() {
            let resources: Vec<Value> = self
                .resources
                .iter()
                .map(|arn| json!({"accountId": self.account_id, "type": KEY_RESOURCE_TYPE, "ARN": arn}))
                .collect();
            m.insert("resources".into(), Value::Array(resources));
        }
        m.insert("eventType".into(), json!("AwsApiCall"));
        m.insert("managementEvent".into(), json!(true));
        m.insert("recipientAccountId".into(), json!(self.account_id));
        m.insert("eventCategory".into(), json!("Management"));
        Value::Object(m)
    }

    /// The LookupEvents `Events` entry.
    pub fn lookup_entry(&self) -> Value {
        let mut m = Map::new();
        m.insert("EventId".into(), json!(self.event_id));
        m.insert("EventName".into(), json!(self.event_name));
        m.insert("ReadOnly".into(), json!(self.read_only().to_string()));
        if let Some(id) = &self.access_key_id {
            m.insert("AccessKeyId".into(), json!(id));
        }
        m.insert("EventTime".into(), json!(self.event_time()));
        m.insert("EventSource".into(), json!(self.event_source()));
        m.insert("Username".into(), json!(self.username));
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|arn| json!({"ResourceType": self.resource_type(), "ResourceName": arn}))
            .collect();
        m.insert("Resources".into(), Value::Array(resources));
        m.insert("CloudTrailEvent".into(), json!(self.record().to_string()));
        Value::Object(m)
    }

    /// `eventSource`: KMS's, or the posted record's.
    fn event_source(&self) -> &str {
        self.service_record
            .as_ref()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            .unwrap_or(EVENT_SOURCE)
    }

    /// The type of the resources: a KMS key, or the first of the posted record's.
    fn resource_type(&self) -> &str {
        self.service_record
            .as_ref()
            .and_then(|r| r.pointer("/resources/0/type"))
            .and_then(Value::as_str)
            .unwrap_or(KEY_RESOURCE_TYPE)
    }

    fn matches(&self, attribute: &Attribute) -> bool {
        let value = attribute.value.as_str();
        match attribute.key {
            AttributeKey::EventId => self.event_id == value,
            AttributeKey::EventName => self.event_name == value,
            AttributeKey::ReadOnly => self.read_only().to_string() == value,
            AttributeKey::Username => self.username == value,
            AttributeKey::ResourceType => {
                !self.resources.is_empty() && value == self.resource_type()
            }
            AttributeKey::ResourceName => self.resources.iter().any(|arn| arn == value),
            AttributeKey::EventSource => value == self.event_source(),
            AttributeKey::AccessKeyId => self.access_key_id.as_deref() == Some(value),
        }
    }
}

/// The record of a call to another AWS service, as a test posts it (`POST /_emulator/cloudtrail`
/// with `{"record": {...}}`), made at `time` (emulated clock) under a new event id. The record
/// must name a service other than KMS (KMS records come from KMS calls only), an `eventName`
/// and a `userIdentity` object.
pub fn service_event(
    record: Value,
    time: f64,
    region: &str,
    account_id: &str,
) -> Result<TrailEvent, String> {
    let text = |pointer: &str| {
        record
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let source = text("/eventSource").ok_or("record.eventSource is required")?;
    if source == EVENT_SOURCE || !source.ends_with(".amazonaws.com") {
        return Err(format!(
            "record.eventSource {source:?} must be another AWS service's (KMS records come from KMS calls)"
        ));
    }
    let event_name = text("/eventName").ok_or("record.eventName is required")?;
    let identity = record
        .get("userIdentity")
        .filter(|i| i.is_object())
        .cloned()
        .ok_or("record.userIdentity must be an object")?;
    let username = text("/userIdentity/userName")
        .or_else(|| text("/userIdentity/arn").and_then(|a| a.rsplit('/').next().map(str::to_owned)))
        .unwrap_or_default();
    Ok(TrailEvent {
        seq: 0,
        time,
        event_id: uuid::Uuid::new_v4().to_string(),
        event_name,
        access_key_id: text("/userIdentity/accessKeyId"),
        username,
        user_identity: identity,
        source_ip: text("/sourceIPAddress").unwrap_or_default(),
        user_agent: text("/userAgent"),
        request_parameters: record
            .get("requestParameters")
            .cloned()
            .unwrap_or(Value::Null),
        additional_event_data: None,
        error: text("/errorCode").map(|code| (code, text("/errorMessage").unwrap_or_default())),
        request_id: text("/requestID").unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        resources: record
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("ARN").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        region: text("/awsRegion").unwrap_or_else(|| region.to_owned()),
        account_id: text("/recipientAccountId").unwrap_or_else(|| account_id.to_owned()),
        service_record: Some(record),
    })
}

/// The CloudTrail record KMS writes when it deletes a key at the end of its waiting period
/// (kms-facts.md section 5, [DG:ct-delete-key]): an `AwsServiceEvent` `DeleteKey` by
/// `AWS Internal`, the key ARN in `responseElements.keyId` and `resources`; for a key of a
/// CloudHSM key store, `additionalEventData` names the store and cluster and holds
/// `backingKeys` and `backingKeysDeletionStatus` as JSON strings of arrays, with `SUCCESS` when
/// the store was connected (KMS could delete the material from the cluster) and `FAILURE` when
/// it was not (the material is orphaned). The key handle and backing key id are derived from
/// the key id (the emulator has no HSM).
pub fn key_deletion_event(
    key: &crate::state::DeletedKey,
    time: f64,
    region: &str,
    account_id: &str,
) -> TrailEvent {
    let mut record = json!({
        "eventVersion": "1.08",
        "userIdentity": {"accountId": account_id, "invokedBy": "AWS Internal"},
        "eventSource": EVENT_SOURCE,
        "eventName": "DeleteKey",
        "awsRegion": region,
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "requestParameters": null,
        "responseElements": {"keyId": key.arn},
        "readOnly": false,
        "resources": [{"accountId": account_id, "type": KEY_RESOURCE_TYPE, "ARN": key.arn}],
        "eventType": "AwsServiceEvent",
        "recipientAccountId": account_id,
        "managementEvent": true,
        "eventCategory": "Management",
    });
    if let (Some(store), Some(status)) = (&key.custom_key_store_id, &key.backing_key_deletion) {
        let digits: String = key.key_id.chars().filter(char::is_ascii_hexdigit).collect();
        let handle = u32::from_str_radix(digits.get(..5).unwrap_or("0"), 16).unwrap_or(0);
        let backing_key_id = format!("backing-{}", digits.get(..16).unwrap_or(&digits));
        let backing = json!([{"keyHandle": handle.to_string(), "backingKeyId": backing_key_id}]);
        let status = json!([{
            "keyHandle": handle.to_string(),
            "backingKeyId": backing_key_id,
            "deletionStatus": status,
        }]);
        record["additionalEventData"] = json!({
            "customKeyStoreId": store,
            "clusterId": key.cloudhsm_cluster_id,
            "backingKeys": backing.to_string(),
            "backingKeysDeletionStatus": status.to_string(),
        });
    }
    TrailEvent {
        seq: 0,
        time,
        event_id: uuid::Uuid::new_v4().to_string(),
        event_name: "DeleteKey".into(),
        access_key_id: None,
        username: String::new(),
        user_identity: record["userIdentity"].clone(),
        source_ip: "AWS Internal".into(),
        user_agent: Some("AWS Internal".into()),
        request_parameters: Value::Null,
        additional_event_data: record.get("additionalEventData").cloned(),
        error: None,
        request_id: uuid::Uuid::new_v4().to_string(),
        resources: vec![key.arn.clone()],
        region: region.to_owned(),
        account_id: account_id.to_owned(),
        service_record: Some(record),
    }
}

/// A CloudTrail error answer: `{"__type": "<Name>", "Message": "..."}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CloudTrailError {
    /// The error name (`__type`).
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The message.
    pub message: String,
}

impl CloudTrailError {
    /// A client error (HTTP 400).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            status: 400,
            message: message.into(),
        }
    }

    /// The JSON body (CloudTrail's error shapes have a `Message` member).
    pub fn body(&self) -> Value {
        json!({"__type": self.code, "Message": self.message})
    }

    /// ThrottlingException beyond the LookupEvents quota.
    pub fn throttling() -> Self {
        Self::new("ThrottlingException", THROTTLING_MESSAGE)
    }

    /// The CloudTrail answer for an error the fault API injects (given by its KMS name):
    /// ThrottlingException (400), and the AWS common errors InternalFailure (500) for
    /// KMSInternalException and ServiceUnavailable (503) for DependencyTimeoutException, since the
    /// CloudTrail API has no internal-error shape of its own.
    pub fn injected(fault: &KmsError) -> Self {
        match fault.code {
            ErrorCode::Throttling => Self::throttling(),
            ErrorCode::DependencyTimeout => Self {
                code: "ServiceUnavailable",
                status: 503,
                message: "The request has failed due to a temporary failure of the server. (injected by kms-emulator)".into(),
            },
            _ => Self {
                code: "InternalFailure",
                status: 500,
                message: "The request processing has failed because of an unknown error, exception or failure. (injected by kms-emulator)".into(),
            },
        }
    }

    /// UnknownOperationException for a CloudTrail operation the emulator does not serve.
    pub fn unknown_operation(operation: &str) -> Self {
        Self::new(
            "UnknownOperationException",
            format!("The emulator answers only CloudTrail LookupEvents, not {operation}"),
        )
    }

    fn lookup_attributes(message: impl Into<String>) -> Self {
        Self::new("InvalidLookupAttributesException", message)
    }

    fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }
}

/// LookupEvents attribute keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttributeKey {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl AttributeKey {
    const NAMES: [&'static str; 8] = [
        "EventId",
        "EventName",
        "ReadOnly",
        "Username",
        "ResourceType",
        "ResourceName",
        "EventSource",
        "AccessKeyId",
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "EventId" => Self::EventId,
            "EventName" => Self::EventName,
            "ReadOnly" => Self::ReadOnly,
            "Username" => Self::Username,
            "ResourceType" => Self::ResourceType,
            "ResourceName" => Self::ResourceName,
            "EventSource" => Self::EventSource,
            "AccessKeyId" => Self::AccessKeyId,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    key: AttributeKey,
    value: String,
}

/// Parses a LookupEvents body as JSON (SerializationException when it is not an object).
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, CloudTrailError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(CloudTrailError::serialization(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(CloudTrailError::serialization(format!(
            "Malformed JSON request body: {e}"
        ))),
    }
}

/// A validated LookupEvents request.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupRequest {
    attribute: Option<Attribute>,
    start: Option<f64>,
    end: Option<f64>,
    insight: bool,
    max_results: usize,
    next_token: Option<String>,
}

fn member<'a>(members: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    members.get(name).filter(|v| !v.is_null())
}

fn timestamp(members: &Map<String, Value>, name: &str) -> Result<Option<f64>, CloudTrailError> {
    match member(members, name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() => Ok(Some(t)),
            _ => Err(CloudTrailError::new(
                "InvalidTimeRangeException",
                format!("{name} is out of range"),
            )),
        },
        Some(_) => Err(CloudTrailError::serialization(format!(
            "{name} must be a timestamp in epoch seconds"
        ))),
    }
}

fn string<'a>(
    members: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, CloudTrailError> {
    match member(members, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(CloudTrailError::serialization(format!(
            "{name} must be a string"
        ))),
    }
}

/// The length of an AttributeValue as CloudTrail counts it.
fn attribute_value_length(value: &str) -> usize {
    value
        .chars()
        .map(|c| {
            if matches!(c, '_' | ' ' | ',' | '\n') {
                2
            } else {
                1
            }
        })
        .sum()
}

fn attribute(item: &Value) -> Result<Attribute, CloudTrailError> {
    let Value::Object(members) = item else {
        return Err(CloudTrailError::serialization(
            "LookupAttributes must be a list of {AttributeKey, AttributeValue}",
        ));
    };
    let key_name = string(members, "AttributeKey")?
        .ok_or_else(|| CloudTrailError::lookup_attributes("AttributeKey is required"))?;
    let key = AttributeKey::parse(key_name).ok_or_else(|| {
        CloudTrailError::lookup_attributes(format!(
            "AttributeKey '{key_name}' is not one of {}",
            AttributeKey::NAMES.join(", ")
        ))
    })?;
    let value = string(members, "AttributeValue")?
        .ok_or_else(|| CloudTrailError::lookup_attributes("AttributeValue is required"))?;
    let length = attribute_value_length(value);
    if length == 0 || length > MAX_ATTRIBUTE_VALUE {
        return Err(CloudTrailError::lookup_attributes(format!(
            "AttributeValue must be 1 to {MAX_ATTRIBUTE_VALUE} characters ('_', ' ', ',' and newline count as two)"
        )));
    }
    if key == AttributeKey::ReadOnly && !matches!(value, "true" | "false") {
        return Err(CloudTrailError::lookup_attributes(
            "The ReadOnly attribute value must be true or false",
        ));
    }
    Ok(Attribute {
        key,
        value: value.to_string(),
    })
}

impl LookupRequest {
    /// Validates the members of a LookupEvents request.
    pub fn from_members(members: &Map<String, Value>) -> Result<Self, CloudTrailError> {
        let attribute = match member(members, "LookupAttributes") {
            None => None,
            Some(Value::Array(items)) => match items.as_slice() {
                [] => None,
                [one] => Some(attribute(one)?),
                _ => {
                    return Err(CloudTrailError::lookup_attributes(
                        "You can specify at most one lookup attribute",
                    ))
                }
            },
            Some(_) => {
                return Err(CloudTrailError::serialization(
                    "LookupAttributes must be a list",
                ))
            }
        };
        let start = timestamp(members, "StartTime")?;
        let end = timestamp(members, "EndTime")?;
        if let (Some(start), Some(end)) = (start, end) {
            if start > end {
                return Err(CloudTrailError::new(
                    "InvalidTimeRangeException",
                    "The start time must be at or before the end time",
                ));
            }
        }
        let insight = match string(members, "EventCategory")? {
            None => false,
            Some("insight") => true,
            Some(other) => {
                return Err(CloudTrailError::new(
                    "InvalidEventCategoryException",
                    format!("EventCategory '{other}' is not valid; the only value is insight"),
                ))
            }
        };
        let max_results = match member(members, "MaxResults") {
            None => MAX_PAGE,
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(_) => {
                return Err(CloudTrailError::serialization(
                    "MaxResults must be an integer",
                ))
            }
        };
        if !(1..=MAX_PAGE).contains(&max_results) {
            return Err(CloudTrailError::new(
                "InvalidMaxResultsException",
                format!("MaxResults must be between 1 and {MAX_PAGE}"),
            ));
        }
        let next_token = string(members, "NextToken")?.map(String::from);
        Ok(Self {
            attribute,
            start,
            end,
            insight,
            max_results: usize::try_from(max_results).unwrap_or(1),
            next_token,
        })
    }

    /// The parameters a NextToken is bound to (all but MaxResults and NextToken).
    fn fingerprint(&self) -> String {
        json!({
            "attribute": self.attribute.as_ref().map(|a| (format!("{:?}", a.key), &a.value)),
            "start": self.start,
            "end": self.end,
            "insight": self.insight,
        })
        .to_string()
    }
}

/// Which records LookupEvents can see now.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Records of calls made at or before this time (emulated clock) have been delivered.
    pub delivered_until: f64,
    /// Records of calls made before this time are past retention.
    pub oldest: f64,
}

impl Window {
    /// Whether `event` is delivered and within retention.
    pub fn contains(&self, event: &TrailEvent) -> bool {
        event.time <= self.delivered_until && event.time >= self.oldest
    }
}

#[derive(Debug, Clone)]
struct Cursor {
    before_seq: u64,
    fingerprint: String,
}

/// The CloudTrail records and the NextTokens handed out.
#[derive(Debug, Default)]
pub struct Trail {
    events: VecDeque<TrailEvent>,
    next_seq: u64,
    dropped: u64,
    tokens: HashMap<String, Cursor>,
    token_order: VecDeque<String>,
}

impl Trail {
    /// Appends a record, assigning its sequence number; drops records older than `oldest`.
    pub fn record(&mut self, mut event: TrailEvent, oldest: f64) {
        while self.events.front().is_some_and(|e| e.time < oldest) {
            self.events.pop_front();
        }
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.next_seq += 1;
        event.seq = self.next_seq;
        self.events.push_back(event);
    }

    /// Every record kept, oldest first (delivered or not).
    pub fn events(&self) -> impl Iterator<Item = &TrailEvent> {
        self.events.iter()
    }

    /// How many records were dropped because the store was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every record and token (sequence numbers restart).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn remember(&mut self, cursor: Cursor) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.tokens.insert(token.clone(), cursor);
        self.token_order.push_back(token.clone());
        if self.token_order.len() > MAX_TOKENS {
            if let Some(old) = self.token_order.pop_front() {
                self.tokens.remove(&old);
            }
        }
        token
    }

    /// Answers a LookupEvents request: `{"Events": [...], "NextToken"?}`, newest first.
    pub fn lookup(
        &mut self,
        request: &LookupRequest,
        window: Window,
    ) -> Result<Value, CloudTrailError> {
        let fingerprint = request.fingerprint();
        let before_seq = match &request.next_token {
            None => u64::MAX,
            Some(token) => match self.tokens.get(token) {
                Some(cursor) if cursor.fingerprint == fingerprint => cursor.before_seq,
                Some(_) => {
                    return Err(CloudTrailError::new(
                        "InvalidNextTokenException",
                        "The NextToken was issued for a request with other parameters",
                    ))
                }
                None => {
                    return Err(CloudTrailError::new(
                        "InvalidNextTokenException",
                        "The NextToken is not valid",
                    ))
                }
            },
        };
        if request.insight {
            // no trail with Insights is emulated: there are no Insights events
            return Ok(json!({"Events": []}));
        }
        let mut page: Vec<&TrailEvent> = Vec::new();
        let mut more = false;
        for event in self.events.iter().rev() {
            if event.seq >= before_seq || !window.contains(event) {
                continue;
            }
            let time = event.event_time() as f64;
            if request.start.is_some_and(|start| time < start)
                || request.end.is_some_and(|end| time > end)
                || request
                    .attribute
                    .as_ref()
                    .is_some_and(|a| !event.matches(a))
            {
                continue;
            }
            if page.len() == request.max_results {
                more = true;
                break;
            }
            page.push(event);
        }
        let events: Vec<Value> = page.iter().map(|e| e.lookup_entry()).collect();
        let last = page.last().map(|e| e.seq);
        let mut body = json!({ "Events": events });
        if let (true, Some(before_seq)) = (more, last) {
            body["NextToken"] = json!(self.remember(Cursor {
                before_seq,
                fingerprint
            }));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, time: f64) -> TrailEvent {
        TrailEvent {
            seq: 0,
            time,
            event_id: uuid::Uuid::new_v4().to_string(),
            event_name: name.into(),
            access_key_id: Some("AKIA1".into()),
            username: "alice".into(),
            user_identity: json!({}),
            source_ip: "127.0.0.1".into(),
            user_agent: None,
            request_parameters: Value::Null,
            additional_event_data: None,
            error: None,
            request_id: "r".into(),
            resources: vec!["arn:aws:kms:us-east-1:123456789012:key/k".into()],
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            service_record: None,
        }
    }

    #[test]
    fn another_services_record_is_served_as_posted_under_its_own_source() {
        let record = json!({
            "eventSource": "cloudhsm.amazonaws.com", "eventName": "TagResource",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/bob",
                             "userName": "bob"},
            "sourceIPAddress": "192.0.2.9", "awsRegion": "us-east-1",
            "requestParameters": {"resourceId": "cluster-1", "tagList": []},
            "eventID": "claimed-by-the-poster"
        });
        let event = service_event(record, 100.0, "us-east-1", "123456789012").unwrap();
        assert_ne!(event.event_id, "claimed-by-the-poster", "a new id");
        let mut trail = Trail::default();
        trail.record(event, 0.0);
        let by_source = LookupRequest::from_members(
            json!({"LookupAttributes": [{"AttributeKey": "EventSource",
                                         "AttributeValue": "cloudhsm.amazonaws.com"}]})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        let found = trail.lookup(&by_source, OPEN).unwrap();
        let entry = &found["Events"][0];
        assert_eq!(entry["EventSource"], "cloudhsm.amazonaws.com");
        assert_eq!(entry["Username"], "bob");
        let record: Value =
            serde_json::from_str(entry["CloudTrailEvent"].as_str().unwrap()).unwrap();
        assert_eq!(record["eventID"], entry["EventId"]);
        assert_eq!(record["requestParameters"]["resourceId"], "cluster-1");
        assert_eq!(record["eventTime"], iso8601(100));

        for (bad, why) in [
            (
                json!({"eventSource": "kms.amazonaws.com", "eventName": "TagResource",
                    "userIdentity": {}}),
                "KMS",
            ),
            (
                json!({"eventSource": "cloudhsm.amazonaws.com", "userIdentity": {}}),
                "eventName",
            ),
            (
                json!({"eventSource": "cloudhsm.amazonaws.com", "eventName": "TagResource"}),
                "userIdentity",
            ),
        ] {
            let err = service_event(bad, 1.0, "us-east-1", "1").unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    const OPEN: Window = Window {
        delivered_until: f64::INFINITY,
        oldest: f64::NEG_INFINITY,
    };

    fn request(json: Value) -> Result<LookupRequest, CloudTrailError> {
        LookupRequest::from_members(json.as_object().unwrap())
    }

    #[test]
    fn iso8601_formats_whole_seconds_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_786_000_000), "2026-08-06T07:06:40Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn request_parameters_are_camel_case_without_data_or_secrets() {
        let members = json!({
            "KeyId": "k",
            "Plaintext": "c2VjcmV0",
            "EncryptionContext": {"Department": "IT"},
            "Tags": [{"TagKey": "team", "TagValue": "a"}],
            "XksProxyAuthenticationCredential": {"AccessKeyId": "A", "RawSecretAccessKey": "s"},
            "CloudHsmClusterId": "cluster-1",
            "KeyStorePassword": "p",
        });
        let params = request_parameters("Encrypt", members.as_object().unwrap());
        assert_eq!(
            params,
            json!({
                "keyId": "k",
                "encryptionContext": {"Department": "IT"},
                "tags": [{"tagKey": "team", "tagValue": "a"}],
                "xksProxyAuthenticationCredential": {"accessKeyId": "A"},
                "clusterId": "cluster-1",
                "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
            })
        );
        assert_eq!(request_parameters("ListKeys", &Map::new()), Value::Null);
    }

    #[test]
    fn read_only_follows_cloudtrail() {
        for op in [
            "DescribeKey",
            "ListKeys",
            "GetKeyLastUsage",
            "Decrypt",
            "GenerateDataKeyWithoutPlaintext",
            "Sign",
        ] {
            assert!(is_read_only(op), "{op}");
        }
        for op in [
            "ScheduleKeyDeletion",
            "TagResource",
            "CreateKey",
            "DisconnectCustomKeyStore",
        ] {
            assert!(!is_read_only(op), "{op}");
        }
    }

    #[test]
    fn pages_are_newest_first_and_cursors_survive_new_records() {
        let mut trail = Trail::default();
        for i in 0..5 {
            trail.record(event("Decrypt", 100.0 + f64::from(i)), 0.0);
        }
        let first = trail
            .lookup(&request(json!({"MaxResults": 2})).unwrap(), OPEN)
            .unwrap();
        let times: Vec<i64> = first["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["EventTime"].as_i64().unwrap())
            .collect();
        assert_eq!(times, vec![104, 103]);
        trail.record(event("Decrypt", 200.0), 0.0);
        let token = first["NextToken"].as_str().unwrap();
        let second = trail
            .lookup(
                &request(json!({"MaxResults": 2, "NextToken": token})).unwrap(),
                OPEN,
            )
            .unwrap();
        let times: Vec<i64> = second["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["EventTime"].as_i64().unwrap())
            .collect();
        assert_eq!(times, vec![102, 101]);
        let other = request(json!({"NextToken": token, "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}]})).unwrap();
        assert_eq!(
            trail.lookup(&other, OPEN).unwrap_err().code,
            "InvalidNextTokenException"
        );
        trail.clear();
        assert_eq!(
            trail
                .lookup(&request(json!({"NextToken": token})).unwrap(), OPEN)
                .unwrap_err()
                .code,
            "InvalidNextTokenException"
        );
    }

    #[test]
    fn delivery_and_retention_bound_what_is_seen() {
        let mut trail = Trail::default();
        trail.record(event("Decrypt", 10.0), 0.0);
        trail.record(event("Decrypt", 20.0), 0.0);
        let all = request(json!({})).unwrap();
        let window = Window {
            delivered_until: 15.0,
            oldest: 5.0,
        };
        assert_eq!(
            trail.lookup(&all, window).unwrap()["Events"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        trail.record(event("Decrypt", 30.0), 15.0);
        assert_eq!(
            trail.events().count(),
            2,
            "records past retention are dropped"
        );
    }

    #[test]
    fn bad_requests_get_named_errors() {
        for (body, code) in [
            (
                json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"}, {"AttributeKey": "EventName", "AttributeValue": "b"}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": [{"AttributeKey": "Color", "AttributeValue": "a"}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": ""}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "_".repeat(1001)}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "yes"}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": "EventName"}),
                "SerializationException",
            ),
            (
                json!({"StartTime": 10, "EndTime": 5}),
                "InvalidTimeRangeException",
            ),
            (json!({"StartTime": "yesterday"}), "SerializationException"),
            (json!({"MaxResults": 0}), "InvalidMaxResultsException"),
            (json!({"MaxResults": 51}), "InvalidMaxResultsException"),
            (json!({"MaxResults": 2.5}), "InvalidMaxResultsException"),
            (
                json!({"EventCategory": "data"}),
                "InvalidEventCategoryException",
            ),
        ] {
            assert_eq!(request(body.clone()).unwrap_err().code, code, "{body}");
        }
        assert!(request(json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "_".repeat(1000)}]})).is_ok());
        assert_eq!(
            parse_body(b"{nope").unwrap_err().code,
            "SerializationException"
        );
        assert_eq!(
            parse_body(b"[]").unwrap_err().code,
            "SerializationException"
        );
    }
}
