//! KMS operations: names, quotas, and dispatch to the handlers.

mod aliases;
mod crypto;
mod keys;
mod stores;
mod tags;

use serde_json::Value;

use crate::error::{ErrorCode, KmsError};
use crate::state::State;
use crate::wire::Input;

macro_rules! operations {
    ($($variant:ident => $quota:literal, $rate:expr;)*) => {
        /// The KMS operations the emulator serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation { $(#[doc = stringify!($variant)] $variant,)* }

        impl Operation {
            /// Every operation.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            /// The operation name (the part of X-Amz-Target after `TrentService.`).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant),)* }
            }

            /// The operation for a name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $(stringify!($variant) => Some(Self::$variant),)* _ => None }
            }

            /// The request quota this operation counts against in `region`: its name and
            /// requests per second.
            pub fn quota(self, region: &str) -> (&'static str, f64) {
                match self { $(Self::$variant => ($quota, ($rate)(region) as f64),)* }
            }
        }
    };
}

/// The shared quota of cryptographic operations with symmetric keys, by Region.
fn symmetric_crypto_rate(region: &str) -> u32 {
    match region {
        "us-east-1" | "us-west-2" | "eu-west-1" => 100_000,
        "us-east-2" | "ap-southeast-1" | "ap-southeast-2" | "ap-northeast-1" | "eu-central-1"
        | "eu-west-2" => 20_000,
        _ => 10_000,
    }
}

const fn rate<const N: u32>(_: &str) -> u32 {
    N
}

// Rates from the KMS developer guide, "Request quotas" (kms-facts.md section 8; GetKeyLastUsage,
// ListAliases and the cryptographic operations from the current page).
operations! {
    CreateCustomKeyStore => "CreateCustomKeyStore", rate::<5>;
    DescribeCustomKeyStores => "DescribeCustomKeyStores", rate::<5>;
    ConnectCustomKeyStore => "ConnectCustomKeyStore", rate::<5>;
    DisconnectCustomKeyStore => "DisconnectCustomKeyStore", rate::<5>;
    UpdateCustomKeyStore => "UpdateCustomKeyStore", rate::<5>;
    DeleteCustomKeyStore => "DeleteCustomKeyStore", rate::<5>;
    CreateKey => "CreateKey", rate::<5>;
    DescribeKey => "DescribeKey", rate::<2000>;
    ListKeys => "ListKeys", rate::<500>;
    ScheduleKeyDeletion => "ScheduleKeyDeletion", rate::<15>;
    CancelKeyDeletion => "CancelKeyDeletion", rate::<5>;
    EnableKey => "EnableKey", rate::<5>;
    DisableKey => "DisableKey", rate::<5>;
    TagResource => "TagResource", rate::<10>;
    UntagResource => "UntagResource", rate::<5>;
    ListResourceTags => "ListResourceTags", rate::<2000>;
    CreateAlias => "CreateAlias", rate::<5>;
    ListAliases => "ListAliases", rate::<500>;
    GetKeyLastUsage => "GetKeyLastUsage", rate::<5>;
    Encrypt => "CryptographicOperationsSymmetric", symmetric_crypto_rate;
    Decrypt => "CryptographicOperationsSymmetric", symmetric_crypto_rate;
    GenerateDataKey => "CryptographicOperationsSymmetric", symmetric_crypto_rate;
}

/// A successful operation: the response body (None for operations without output) and the key it
/// created, for the call log.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Response body; `None` sends an empty body.
    pub body: Option<Value>,
    /// The key the operation created (CreateKey), for the call log.
    pub created_key_id: Option<String>,
}

impl Outcome {
    fn body(body: Value) -> Self {
        Self {
            body: Some(body),
            created_key_id: None,
        }
    }

    fn empty() -> Self {
        Self::default()
    }
}

/// Per-request context.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The x-amzn-RequestId of the call.
    pub request_id: String,
    /// The `eventID` of the call's CloudTrail record.
    pub event_id: String,
    /// Who made the call.
    pub caller: crate::cloudtrail::Caller,
}

impl RequestContext {
    /// A context with fresh request and event ids.
    pub fn new(caller: crate::cloudtrail::Caller) -> Self {
        Self {
            request_id: uuid::Uuid::new_v4().to_string(),
            event_id: uuid::Uuid::new_v4().to_string(),
            caller,
        }
    }
}

pub(crate) use crypto::ciphertext_key_id;

/// Runs one operation against the state. The state is settled before and unchanged on error.
pub fn execute(
    state: &mut State,
    operation: Operation,
    input: &Input,
    ctx: &RequestContext,
) -> Result<Outcome, KmsError> {
    use Operation::*;
    match operation {
        CreateCustomKeyStore => stores::create(state, input),
        DescribeCustomKeyStores => stores::describe(state, input),
        ConnectCustomKeyStore => stores::connect(state, input),
        DisconnectCustomKeyStore => stores::disconnect(state, input),
        UpdateCustomKeyStore => stores::update(state, input),
        DeleteCustomKeyStore => stores::delete(state, input),
        CreateKey => keys::create(state, input),
        DescribeKey => keys::describe(state, input),
        ListKeys => keys::list(state, input),
        ScheduleKeyDeletion => keys::schedule_deletion(state, input),
        CancelKeyDeletion => keys::cancel_deletion(state, input),
        EnableKey => keys::set_enabled(state, input, true),
        DisableKey => keys::set_enabled(state, input, false),
        TagResource => tags::tag(state, input),
        UntagResource => tags::untag(state, input),
        ListResourceTags => tags::list(state, input),
        CreateAlias => aliases::create(state, input),
        ListAliases => aliases::list(state, input),
        GetKeyLastUsage => crypto::get_key_last_usage(state, input),
        Encrypt => crypto::encrypt(state, input, ctx),
        Decrypt => crypto::decrypt(state, input, ctx),
        GenerateDataKey => crypto::generate_data_key(state, input, ctx),
    }
}

// ----- helpers shared by the handlers -----

const MARKER_PREFIX: &str = "kmsemu-";

/// The opaque pagination marker for the item with ordering number `seq`.
fn marker_for(seq: u64) -> String {
    format!("{MARKER_PREFIX}{seq}")
}

/// The ordering number a `Marker` member points at, or InvalidMarkerException.
fn marker_start(input: &Input) -> Result<u64, KmsError> {
    match input.string("Marker", 1, 1024)? {
        None => Ok(0),
        Some(m) => m
            .strip_prefix(MARKER_PREFIX)
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                KmsError::new(
                    ErrorCode::InvalidMarker,
                    format!(
                        "Marker '{m}' is not valid. Use the NextMarker of a previous response."
                    ),
                )
            }),
    }
}

/// Pages items ordered by sequence number: at most `limit` from the iterator, and the marker of
/// the next one when there are more.
fn paginate<T>(
    mut items: impl Iterator<Item = (u64, T)>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let page: Vec<T> = items.by_ref().take(limit).map(|(_, item)| item).collect();
    let next = items.next().map(|(seq, _)| marker_for(seq));
    (page, next)
}

/// Adds `Truncated` and (when truncated) `NextMarker` to a list response.
fn with_page_fields(mut body: Value, next: Option<String>) -> Value {
    body["Truncated"] = Value::Bool(next.is_some());
    if let Some(marker) = next {
        body["NextMarker"] = Value::String(marker);
    }
    body
}
