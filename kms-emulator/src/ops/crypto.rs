//! Cryptographic operations (Encrypt, Decrypt, GenerateDataKey) with real AES-256-GCM under
//! per-key material, and GetKeyLastUsage, which reports the last successful one.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key as AesKey, Nonce};
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};

use super::keys::{pending_deletion_error, pending_import_error};
use super::{Outcome, RequestContext};
use crate::error::{ErrorCode, KmsError};
use crate::model::{Key, KeyState, KeyUsage};
use crate::state::State;
use crate::wire::Input;

const MAGIC: &[u8; 4] = b"KEMU";
const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const ENCRYPTION_ALGORITHMS: [&str; 4] = [
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The associated data binding a ciphertext to its key and encryption context.
fn associated_data(key_id: &str, context: &BTreeMap<String, String>) -> Vec<u8> {
    json!({ "key": key_id, "context": context })
        .to_string()
        .into_bytes()
}

fn seal(
    key: &Key,
    plaintext: &[u8],
    context: &BTreeMap<String, String>,
) -> Result<Vec<u8>, KmsError> {
    let cipher = Aes256Gcm::new(&AesKey::<Aes256Gcm>::from(key.material));
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let aad = associated_data(&key.id, context);
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| KmsError::new(ErrorCode::KmsInternal, "encryption failed"))?;
    let id = key.id.as_bytes();
    let id_len = u8::try_from(id.len())
        .map_err(|_| KmsError::new(ErrorCode::KmsInternal, "key id too long"))?;
    let mut blob = Vec::with_capacity(6 + id.len() + NONCE_LEN + sealed.len());
    blob.extend_from_slice(MAGIC);
    blob.push(FORMAT_VERSION);
    blob.push(id_len);
    blob.extend_from_slice(id);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok(blob)
}

/// A parsed ciphertext blob: the key id it names, the nonce and the sealed bytes.
struct Ciphertext<'a> {
    key_id: &'a str,
    nonce: [u8; NONCE_LEN],
    sealed: &'a [u8],
}

fn invalid_ciphertext() -> KmsError {
    KmsError::new(
        ErrorCode::InvalidCiphertext,
        "The ciphertext is not valid: it was not produced by this KMS, was altered, or its encryption context does not match.",
    )
}

fn parse_ciphertext(blob: &[u8]) -> Result<Ciphertext<'_>, KmsError> {
    let rest = blob
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(invalid_ciphertext)?;
    let (&version, rest) = rest.split_first().ok_or_else(invalid_ciphertext)?;
    let (&id_len, rest) = rest.split_first().ok_or_else(invalid_ciphertext)?;
    if version != FORMAT_VERSION || rest.len() < id_len as usize + NONCE_LEN + 16 {
        return Err(invalid_ciphertext());
    }
    let (id, rest) = rest.split_at(id_len as usize);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let key_id = std::str::from_utf8(id).map_err(|_| invalid_ciphertext())?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| invalid_ciphertext())?;
    Ok(Ciphertext {
        key_id,
        nonce,
        sealed,
    })
}

/// The key id a request's `CiphertextBlob` names, if it is one of ours (for the CloudTrail
/// record of a Decrypt without `KeyId`).
pub(crate) fn ciphertext_key_id(input: &Input) -> Option<String> {
    let blob = input.blob("CiphertextBlob", 1, 6144).ok().flatten()?;
    parse_ciphertext(&blob).ok().map(|c| c.key_id.to_string())
}

/// Checks that a key can be used for symmetric encryption now: key usage and key state
/// (footnotes [1], [3], [5], [11] of the key-state table).
fn check_usable(state: &State, key: &Key) -> Result<(), KmsError> {
    if key.key_usage != "ENCRYPT_DECRYPT" || key.key_spec != "SYMMETRIC_DEFAULT" {
        return Err(KmsError::new(
            ErrorCode::InvalidKeyUsage,
            format!("{} has KeyUsage {} and KeySpec {}; this operation needs a symmetric encryption key.", key.arn, key.key_usage, key.key_spec),
        ));
    }
    match state.key_state(key) {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::new(
            ErrorCode::Disabled,
            format!("{} is disabled.", key.arn),
        )),
        KeyState::PendingDeletion => Err(pending_deletion_error(&key.arn)),
        KeyState::PendingImport => Err(pending_import_error(&key.arn)),
        KeyState::Unavailable => Err(KmsError::new(
            ErrorCode::KmsInvalidState,
            format!("{} is unavailable.", key.arn),
        )),
    }
}

fn check_common(input: &Input) -> Result<BTreeMap<String, String>, KmsError> {
    input.string_list("GrantTokens")?;
    if input.boolean("DryRun")? == Some(true) {
        return Err(KmsError::new(
            ErrorCode::UnsupportedOperation,
            "DryRun is not emulated.",
        ));
    }
    if input.has("Recipient") {
        return Err(KmsError::new(
            ErrorCode::UnsupportedOperation,
            "Recipient (Nitro Enclaves) is not emulated.",
        ));
    }
    Ok(input.string_map("EncryptionContext")?.unwrap_or_default())
}

fn check_algorithm(input: &Input, key: &Key) -> Result<(), KmsError> {
    match input.enum_value("EncryptionAlgorithm", &ENCRYPTION_ALGORITHMS)? {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsError::new(
            ErrorCode::InvalidKeyUsage,
            format!(
                "{other} is not a valid encryption algorithm for {}, a symmetric encryption key.",
                key.arn
            ),
        )),
    }
}

/// The key named by `KeyId` (aliases accepted), checked usable.
fn key_for_use<'a>(state: &'a State, input: &Input) -> Result<&'a Key, KmsError> {
    let raw = input.required_string("KeyId", 1, 2048)?;
    let id = state.resolve_key(raw, true)?;
    let key = state.key(&id).ok_or_else(|| KmsError::key_not_found(raw))?;
    Ok(key)
}

/// Records a successful cryptographic operation as the key's last use (if tracking has begun).
fn record_use(state: &mut State, key_id: &str, operation: &str, ctx: &RequestContext) {
    let now = state.now();
    if state
        .config
        .tracking_start_date
        .is_some_and(|start| now < start)
    {
        return;
    }
    if let Some(key) = state.key_mut(key_id) {
        key.last_usage = Some(KeyUsage {
            operation: operation.to_string(),
            timestamp: now,
            cloudtrail_event_id: ctx.event_id.clone(),
            kms_request_id: ctx.request_id.clone(),
        });
    }
}

/// Encrypt: up to 4096 bytes under the key, bound to the encryption context.
pub fn encrypt(
    state: &mut State,
    input: &Input,
    ctx: &RequestContext,
) -> Result<Outcome, KmsError> {
    let plaintext = input
        .blob("Plaintext", 1, 4096)?
        .ok_or_else(|| KmsError::missing("plaintext"))?;
    let context = check_common(input)?;
    let key = key_for_use(state, input)?;
    check_algorithm(input, key)?;
    check_usable(state, key)?;
    let blob = seal(key, &plaintext, &context)?;
    let (id, arn) = (key.id.clone(), key.arn.clone());
    record_use(state, &id, "Encrypt", ctx);
    Ok(Outcome::body(json!({
        "CiphertextBlob": b64(&blob),
        "KeyId": arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    })))
}

/// GenerateDataKey: a random data key, in plaintext and encrypted under the key.
pub fn generate_data_key(
    state: &mut State,
    input: &Input,
    ctx: &RequestContext,
) -> Result<Outcome, KmsError> {
    let bytes = input.integer("NumberOfBytes", 1, 1024)?;
    let spec = input.enum_value("KeySpec", &["AES_256", "AES_128"])?;
    let length = match (bytes, spec) {
        (Some(_), Some(_)) => {
            return Err(KmsError::new(
                ErrorCode::Validation,
                "Specify either KeySpec or NumberOfBytes, not both.",
            ))
        }
        (None, None) => {
            return Err(KmsError::new(
                ErrorCode::Validation,
                "Specify either KeySpec or NumberOfBytes.",
            ))
        }
        (Some(n), None) => n as usize,
        (None, Some("AES_128")) => 16,
        (None, _) => 32,
    };
    let context = check_common(input)?;
    let key = key_for_use(state, input)?;
    check_usable(state, key)?;
    let mut data_key = vec![0u8; length];
    rand::rng().fill_bytes(&mut data_key);
    let blob = seal(key, &data_key, &context)?;
    let (id, arn) = (key.id.clone(), key.arn.clone());
    record_use(state, &id, "GenerateDataKey", ctx);
    Ok(Outcome::body(json!({
        "CiphertextBlob": b64(&blob),
        "Plaintext": b64(&data_key),
        "KeyId": arn,
    })))
}

/// Decrypt: only under the key that encrypted, with the same encryption context.
pub fn decrypt(
    state: &mut State,
    input: &Input,
    ctx: &RequestContext,
) -> Result<Outcome, KmsError> {
    let blob = input
        .blob("CiphertextBlob", 1, 6144)?
        .ok_or_else(|| KmsError::missing("ciphertextBlob"))?;
    let context = check_common(input)?;
    let named = match input.string("KeyId", 1, 2048)? {
        Some(raw) => Some(state.resolve_key(raw, true)?),
        None => None,
    };
    let parsed = parse_ciphertext(&blob)?;
    let key = state.key(parsed.key_id).ok_or_else(|| {
        KmsError::key_not_found(&crate::ids::key_arn(
            &state.config.region,
            &state.config.account_id,
            parsed.key_id,
        ))
    })?;
    if named.as_deref().is_some_and(|id| id != key.id) {
        return Err(KmsError::new(
            ErrorCode::IncorrectKey,
            "The key ID in the request does not identify the KMS key that encrypted the ciphertext.",
        ));
    }
    check_algorithm(input, key)?;
    check_usable(state, key)?;
    let cipher = Aes256Gcm::new(&AesKey::<Aes256Gcm>::from(key.material));
    let aad = associated_data(&key.id, &context);
    let plaintext = cipher
        .decrypt(
            &Nonce::from(parsed.nonce),
            Payload {
                msg: parsed.sealed,
                aad: &aad,
            },
        )
        .map_err(|_| invalid_ciphertext())?;
    let (id, arn) = (key.id.clone(), key.arn.clone());
    record_use(state, &id, "Decrypt", ctx);
    Ok(Outcome::body(json!({
        "KeyId": arn,
        "Plaintext": b64(&plaintext),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    })))
}

/// GetKeyLastUsage: the last successful cryptographic operation, the tracking start date and the
/// key's creation date. Key id or ARN only; any key state.
pub fn get_key_last_usage(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let raw = input.required_string("KeyId", 1, 2048)?;
    let id = state.resolve_key(raw, false)?;
    let key = state.key(&id).ok_or_else(|| KmsError::key_not_found(raw))?;
    let mut last = Map::new();
    if let Some(usage) = &key.last_usage {
        last.insert("Operation".into(), json!(usage.operation));
        last.insert("Timestamp".into(), json!(usage.timestamp));
        last.insert("CloudTrailEventId".into(), json!(usage.cloudtrail_event_id));
        last.insert("KmsRequestId".into(), json!(usage.kms_request_id));
    }
    let tracking_start = state
        .config
        .tracking_start_date
        .map_or(key.creation_date, |start| start.max(key.creation_date));
    Ok(Outcome::body(json!({
        "KeyId": key.id,
        "KeyLastUsage": Value::Object(last),
        "TrackingStartDate": tracking_start,
        "KeyCreationDate": key.creation_date,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmulatorConfig;

    fn key_in(state: &State) -> Key {
        state.keys().next().map(|(_, k)| k.clone()).unwrap()
    }

    #[test]
    fn ciphertext_round_trips_and_detects_tampering() {
        let state = State::new(EmulatorConfig::fast());
        let key = key_in(&state);
        let context = BTreeMap::from([("purpose".to_string(), "test".to_string())]);
        let blob = seal(&key, b"secret", &context).unwrap();
        let parsed = parse_ciphertext(&blob).unwrap();
        assert_eq!(parsed.key_id, key.id);
        let mut flipped = blob.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let parsed = parse_ciphertext(&flipped).unwrap();
        let cipher = Aes256Gcm::new(&AesKey::<Aes256Gcm>::from(key.material));
        let aad = associated_data(&key.id, &context);
        assert!(cipher
            .decrypt(
                &Nonce::from(parsed.nonce),
                Payload {
                    msg: parsed.sealed,
                    aad: &aad
                }
            )
            .is_err());
        assert_eq!(
            parse_ciphertext(b"KEMU").err().map(|e| e.code),
            Some(ErrorCode::InvalidCiphertext)
        );
        assert_eq!(
            parse_ciphertext(b"nope").err().map(|e| e.code),
            Some(ErrorCode::InvalidCiphertext)
        );
    }
}
