//! Identifiers: key ids and ARNs, custom key store ids, and how a request's `KeyId` resolves.

use rand::Rng;

use crate::error::{ErrorCode, KmsError};

/// A fresh key id (a UUID, as KMS uses).
pub fn new_key_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh custom key store id: `cks-` and 17 lowercase hex digits.
pub fn new_store_id() -> String {
    let mut rng = rand::rng();
    let hex: String = (0..17)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect();
    format!("cks-{hex}")
}

/// The ARN of a key.
pub fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

/// The ARN of an alias (`name` includes the `alias/` prefix).
pub fn alias_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{name}")
}

/// What a request's `KeyId` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key id (from an id or a key ARN of this account and Region).
    Id(String),
    /// An alias name, `alias/...` (from a name or an alias ARN).
    Alias(String),
}

fn is_key_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
        || s.strip_prefix("mrk-")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Resolves a `KeyId` member: a key id, key ARN, alias name or alias ARN.
///
/// A malformed ARN is InvalidArnException; a key of another account or Region, or a string that
/// cannot be a key id, is NotFoundException, as KMS answers.
pub fn parse_key_ref(raw: &str, region: &str, account: &str) -> Result<KeyRef, KmsError> {
    if let Some(rest) = raw.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, arn_region, arn_account, resource] = parts.as_slice() else {
            return Err(KmsError::new(
                ErrorCode::InvalidArn,
                format!("ARN {raw} is not a valid ARN"),
            ));
        };
        if partition.is_empty()
            || *service != "kms"
            || arn_region.is_empty()
            || arn_account.len() != 12
        {
            return Err(KmsError::new(
                ErrorCode::InvalidArn,
                format!("ARN {raw} is not a valid KMS ARN"),
            ));
        }
        let foreign = *arn_region != region || *arn_account != account;
        if let Some(id) = resource.strip_prefix("key/") {
            if foreign || !is_key_id(id) {
                return Err(KmsError::key_not_found(raw));
            }
            return Ok(KeyRef::Id(id.to_string()));
        }
        if resource.starts_with("alias/") {
            if foreign {
                return Err(KmsError::new(
                    ErrorCode::NotFound,
                    format!("Alias {raw} is not found."),
                ));
            }
            return Ok(KeyRef::Alias((*resource).to_string()));
        }
        return Err(KmsError::new(
            ErrorCode::InvalidArn,
            format!("ARN {raw} is not a key or alias ARN"),
        ));
    }
    if raw.starts_with("alias/") {
        return Ok(KeyRef::Alias(raw.to_string()));
    }
    if is_key_id(raw) {
        return Ok(KeyRef::Id(raw.to_string()));
    }
    Err(KmsError::new(
        ErrorCode::NotFound,
        format!("Invalid keyId '{raw}'"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "us-east-1";
    const A: &str = "123456789012";

    #[test]
    fn store_ids_have_the_kms_shape() {
        let id = new_store_id();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("cks-"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn key_refs_resolve() {
        let id = new_key_id();
        assert_eq!(parse_key_ref(&id, R, A).unwrap(), KeyRef::Id(id.clone()));
        assert_eq!(
            parse_key_ref(&key_arn(R, A, &id), R, A).unwrap(),
            KeyRef::Id(id.clone())
        );
        assert_eq!(
            parse_key_ref("alias/x", R, A).unwrap(),
            KeyRef::Alias("alias/x".into())
        );
        assert_eq!(
            parse_key_ref(&alias_arn(R, A, "alias/x"), R, A).unwrap(),
            KeyRef::Alias("alias/x".into())
        );
    }

    #[test]
    fn bad_refs_get_kms_errors() {
        let id = new_key_id();
        assert_eq!(
            parse_key_ref("arn:aws:kms", R, A).unwrap_err().code,
            ErrorCode::InvalidArn
        );
        assert_eq!(
            parse_key_ref(&format!("arn:aws:s3:{R}:{A}:key/{id}"), R, A)
                .unwrap_err()
                .code,
            ErrorCode::InvalidArn
        );
        assert_eq!(
            parse_key_ref(&key_arn("eu-west-1", A, &id), R, A)
                .unwrap_err()
                .code,
            ErrorCode::NotFound
        );
        assert_eq!(
            parse_key_ref("not-a-key", R, A).unwrap_err().code,
            ErrorCode::NotFound
        );
    }
}
