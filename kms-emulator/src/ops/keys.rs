//! Key operations: CreateKey, DescribeKey, ListKeys, ScheduleKeyDeletion, CancelKeyDeletion,
//! EnableKey, DisableKey, with the key-state rules of the KMS developer guide.

use std::collections::BTreeMap;

use serde_json::json;

use super::tags::parse_tags;
use super::{marker_start, paginate, with_page_fields, Outcome};
use crate::error::{ErrorCode, KmsError};
use crate::ids;
use crate::model::{ConnectionState, Key, KeyState, PendingDeletion, StoreType};
use crate::state::{new_material, State};
use crate::wire::Input;

/// Customer managed keys per Region (the default resource quota).
pub const MAX_CUSTOMER_KEYS: usize = 100_000;

const KEY_SPECS: [&str; 18] = [
    "SYMMETRIC_DEFAULT",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS448",
];
const KEY_USAGES: [&str; 4] = [
    "SIGN_VERIFY",
    "ENCRYPT_DECRYPT",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
];
const ORIGINS: [&str; 4] = ["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

/// The footnote [3] error: the key is pending deletion.
pub fn pending_deletion_error(arn: &str) -> KmsError {
    KmsError::new(
        ErrorCode::KmsInvalidState,
        format!("{arn} is pending deletion."),
    )
}

/// The footnote [5] error: the key is pending import.
pub fn pending_import_error(arn: &str) -> KmsError {
    KmsError::new(
        ErrorCode::KmsInvalidState,
        format!("{arn} is pending import."),
    )
}

/// AccessDeniedException for management calls on AWS managed keys, whose key policies allow none.
pub fn refuse_aws_managed(key: &Key, action: &str) -> Result<(), KmsError> {
    if key.key_manager == "AWS" {
        return Err(KmsError::new(
            ErrorCode::AccessDenied,
            format!(
                "User: arn:aws:iam::{}:user/kms-emulator is not authorized to perform: kms:{action} on resource: {} because no resource-based policy allows the kms:{action} action (the key is an AWS managed key)",
                key.arn.split(':').nth(4).unwrap_or_default(),
                key.arn
            ),
        ));
    }
    Ok(())
}

fn usage_fits_spec(usage: &str, spec: &str) -> bool {
    match spec {
        "SYMMETRIC_DEFAULT" => usage == "ENCRYPT_DECRYPT",
        s if s.starts_with("HMAC_") => usage == "GENERATE_VERIFY_MAC",
        s if s.starts_with("RSA_") => matches!(usage, "ENCRYPT_DECRYPT" | "SIGN_VERIFY"),
        s if s.starts_with("ML_DSA_") || s.contains("EDWARDS") => usage == "SIGN_VERIFY",
        "SM2" => matches!(usage, "ENCRYPT_DECRYPT" | "SIGN_VERIFY" | "KEY_AGREEMENT"),
        _ => matches!(usage, "SIGN_VERIFY" | "KEY_AGREEMENT"),
    }
}

fn validate_xks_key_id(id: &str) -> Result<(), KmsError> {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(())
    } else {
        Err(KmsError::validation(
            &format!("'{id}'"),
            "xksKeyId",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9-_.]+$",
        ))
    }
}

/// CreateKey: AWS_KMS and EXTERNAL keys, and keys in a CONNECTED CloudHSM or external key store.
pub fn create(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    input.string("Policy", 1, 131_072)?;
    input.boolean("BypassPolicyLockoutSafetyCheck")?;
    let description = input.string("Description", 0, 8192)?.unwrap_or_default();
    let usage = input.enum_value("KeyUsage", &KEY_USAGES)?;
    let cmk_spec = input.enum_value("CustomerMasterKeySpec", &KEY_SPECS)?;
    let key_spec = input.enum_value("KeySpec", &KEY_SPECS)?;
    if cmk_spec.is_some() && key_spec.is_some() {
        return Err(KmsError::new(
            ErrorCode::Validation,
            "Specify KeySpec or CustomerMasterKeySpec, not both. (CustomerMasterKeySpec is deprecated.)",
        ));
    }
    let spec = key_spec.or(cmk_spec).unwrap_or("SYMMETRIC_DEFAULT");
    let usage = usage.unwrap_or(if spec.starts_with("HMAC_") {
        "GENERATE_VERIFY_MAC"
    } else {
        "ENCRYPT_DECRYPT"
    });
    if !usage_fits_spec(usage, spec) {
        return Err(KmsError::new(
            ErrorCode::Validation,
            format!("KeyUsage {usage} is not valid for KeySpec {spec}."),
        ));
    }
    let origin = input.enum_value("Origin", &ORIGINS)?.unwrap_or("AWS_KMS");
    let store_id = input.string("CustomKeyStoreId", 1, 64)?;
    let xks_key_id = input.string("XksKeyId", 1, 128)?;
    let multi_region = input.boolean("MultiRegion")?.unwrap_or(false);
    let tags = parse_tags(input, "Tags")?.unwrap_or_default();

    let custom_origin = matches!(origin, "AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE");
    if custom_origin && store_id.is_none() {
        return Err(KmsError::new(
            ErrorCode::Validation,
            format!("Origin {origin} requires a CustomKeyStoreId."),
        ));
    }
    if !custom_origin && store_id.is_some() {
        return Err(KmsError::new(
            ErrorCode::Validation,
            format!("CustomKeyStoreId is valid only with Origin AWS_CLOUDHSM or EXTERNAL_KEY_STORE, not {origin}."),
        ));
    }
    if origin == "EXTERNAL_KEY_STORE" && xks_key_id.is_none() {
        return Err(KmsError::missing("xksKeyId"));
    }
    if origin != "EXTERNAL_KEY_STORE" && xks_key_id.is_some() {
        return Err(KmsError::new(
            ErrorCode::Validation,
            "XksKeyId is valid only with Origin EXTERNAL_KEY_STORE.",
        ));
    }
    if let Some(xks) = xks_key_id {
        validate_xks_key_id(xks)?;
    }
    if custom_origin && (spec != "SYMMETRIC_DEFAULT" || multi_region) {
        return Err(KmsError::new(
            ErrorCode::UnsupportedOperation,
            "KMS keys in a custom key store must be single-Region symmetric encryption keys (SYMMETRIC_DEFAULT).",
        ));
    }
    if origin == "EXTERNAL" && spec != "SYMMETRIC_DEFAULT" {
        return Err(KmsError::new(
            ErrorCode::UnsupportedOperation,
            "The emulator supports Origin EXTERNAL only for SYMMETRIC_DEFAULT keys.",
        ));
    }

    let mut cluster = None;
    if let Some(store_id) = store_id {
        let store = state.existing_store(store_id)?;
        if store.store_type.key_origin() != origin {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "Origin {origin} does not match custom key store {store_id} of type {}.",
                    store.store_type.as_str()
                ),
            ));
        }
        if store.state != ConnectionState::Connected {
            return Err(KmsError::new(
                ErrorCode::CustomKeyStoreInvalidState,
                format!(
                    "Custom key store {store_id} is {}; CreateKey needs it CONNECTED.",
                    store.state.as_str()
                ),
            ));
        }
        if store.store_type == StoreType::External {
            if let Some((_, other)) = state.keys().find(|(_, k)| {
                k.custom_key_store_id.as_deref() == Some(store_id)
                    && k.xks_key_id.as_deref() == xks_key_id
            }) {
                return Err(KmsError::new(
                    ErrorCode::XksKeyAlreadyInUse,
                    format!(
                        "External key {} is already associated with KMS key {} in custom key store {store_id}.",
                        xks_key_id.unwrap_or_default(),
                        other.arn
                    ),
                ));
            }
        }
        cluster = store.cloudhsm_cluster_id.clone();
    }
    let customer_keys = state
        .keys()
        .filter(|(_, k)| k.key_manager == "CUSTOMER")
        .count();
    if customer_keys >= MAX_CUSTOMER_KEYS {
        return Err(KmsError::new(
            ErrorCode::LimitExceeded,
            format!("This account already has {MAX_CUSTOMER_KEYS} customer managed KMS keys in this Region."),
        ));
    }

    let id = ids::new_key_id();
    let key = Key {
        arn: ids::key_arn(&state.config.region, &state.config.account_id, &id),
        id: id.clone(),
        creation_date: state.now(),
        description: description.to_string(),
        key_usage: usage.to_string(),
        key_spec: spec.to_string(),
        origin: origin.to_string(),
        key_manager: "CUSTOMER".into(),
        custom_key_store_id: store_id.map(String::from),
        cloudhsm_cluster_id: cluster,
        xks_key_id: xks_key_id.map(String::from),
        base_state: if origin == "EXTERNAL" {
            KeyState::PendingImport
        } else {
            KeyState::Enabled
        },
        pending_deletion: None,
        tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
        material: new_material(),
        last_usage: None,
    };
    let metadata = key.metadata(&state.config.account_id, state.key_state(&key));
    state.insert_key(key);
    Ok(Outcome {
        body: Some(json!({ "KeyMetadata": metadata })),
        created_key_id: Some(id),
    })
}

/// DescribeKey (any key state; aliases accepted).
pub fn describe(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let raw = input.required_string("KeyId", 1, 2048)?;
    input.string_list("GrantTokens")?;
    let id = state.resolve_key(raw, true)?;
    let key = state.key(&id).ok_or_else(|| KmsError::key_not_found(raw))?;
    let metadata = key.metadata(&state.config.account_id, state.key_state(key));
    Ok(Outcome::body(json!({ "KeyMetadata": metadata })))
}

/// ListKeys: every key of the account and Region (AWS managed and PendingDeletion keys included).
pub fn list(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let limit = input.integer("Limit", 1, 1000)?.unwrap_or(100) as usize;
    let start = marker_start(input)?;
    let (page, next) = paginate(
        state
            .keys_from(start)
            .map(|(seq, k)| (seq, json!({"KeyId": k.id, "KeyArn": k.arn}))),
        limit,
    );
    Ok(Outcome::body(with_page_fields(
        json!({ "Keys": page }),
        next,
    )))
}

/// A key named by the request's `KeyId` (key id or ARN), for a management operation.
fn managed_key<'a>(state: &'a State, input: &Input, action: &str) -> Result<&'a Key, KmsError> {
    let raw = input.required_string("KeyId", 1, 2048)?;
    let id = state.resolve_key(raw, false)?;
    let key = state.key(&id).ok_or_else(|| KmsError::key_not_found(raw))?;
    refuse_aws_managed(key, action)?;
    Ok(key)
}

/// ScheduleKeyDeletion: window 7-30 days (default 30); allowed on Unavailable keys; refused on
/// keys already pending deletion.
pub fn schedule_deletion(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let window = input.integer("PendingWindowInDays", 1, 365)?.unwrap_or(30);
    if !(7..=30).contains(&window) {
        return Err(KmsError::new(
            ErrorCode::Validation,
            format!("PendingWindowInDays must be between 7 and 30 (inclusive), not {window}."),
        ));
    }
    let key = managed_key(state, input, "ScheduleKeyDeletion")?;
    if key.pending_deletion.is_some() {
        return Err(pending_deletion_error(&key.arn));
    }
    let id = key.id.clone();
    let arn = key.arn.clone();
    let deletion_date = state.now() + state.scaled(window as f64 * crate::config::SECONDS_PER_DAY);
    if let Some(key) = state.key_mut(&id) {
        key.pending_deletion = Some(PendingDeletion {
            deletion_date,
            window_days: window,
        });
    }
    state.recompute_due();
    Ok(Outcome::body(json!({
        "KeyId": arn,
        "DeletionDate": deletion_date,
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": window,
    })))
}

/// CancelKeyDeletion: only on PendingDeletion keys; the key comes back Disabled (Unavailable while
/// its store is disconnected, then Disabled once reconnected).
pub fn cancel_deletion(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let key = managed_key(state, input, "CancelKeyDeletion")?;
    if key.pending_deletion.is_none() {
        return Err(KmsError::new(
            ErrorCode::KmsInvalidState,
            format!("{} is not pending deletion.", key.arn),
        ));
    }
    let id = key.id.clone();
    let arn = key.arn.clone();
    if let Some(key) = state.key_mut(&id) {
        key.pending_deletion = None;
        if key.base_state != KeyState::PendingImport {
            key.base_state = KeyState::Disabled;
        }
    }
    state.recompute_due();
    Ok(Outcome::body(json!({ "KeyId": arn })))
}

/// EnableKey / DisableKey. On an Unavailable key the call succeeds and takes effect when the
/// store is connected again.
pub fn set_enabled(state: &mut State, input: &Input, enabled: bool) -> Result<Outcome, KmsError> {
    let action = if enabled { "EnableKey" } else { "DisableKey" };
    let key = managed_key(state, input, action)?;
    if key.pending_deletion.is_some() {
        return Err(pending_deletion_error(&key.arn));
    }
    if key.base_state == KeyState::PendingImport {
        return Err(pending_import_error(&key.arn));
    }
    let id = key.id.clone();
    if let Some(key) = state.key_mut(&id) {
        key.base_state = if enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
    }
    Ok(Outcome::empty())
}
