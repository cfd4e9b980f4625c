//! Who made a call: the access key id of the SigV4 `Authorization` header (the signature is not
//! checked), the principal it belongs to, and that principal as CloudTrail's `userIdentity`.
//!
//! Access key ids map to principals through the identity map (`EmulatorConfig::identities` and
//! the admin API `PUT /_emulator/identities/<AccessKeyId>`). An access key id that is not in the
//! map is, for convenience, the IAM user `arn:aws:iam::<account>:user/<AccessKeyId>` of the
//! emulator's account; a request without a parseable `Authorization` header is the IAM user
//! [`DEFAULT_USER_NAME`] of that account, with no access key id.

use serde_json::{json, Map, Value};

/// The IAM user name of requests that carry no parseable SigV4 `Authorization` header.
pub const DEFAULT_USER_NAME: &str = "anonymous";

/// Longest access key id accepted (IAM: 16-128 characters; shorter ones are allowed here so
/// test credentials such as `test` work).
const MAX_ACCESS_KEY_ID_LEN: usize = 128;

/// Checks an access key id: 1-128 ASCII letters, digits or underscores.
pub fn check_access_key_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_ACCESS_KEY_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "access key id '{id}' must be 1-{MAX_ACCESS_KEY_ID_LEN} letters, digits or underscores"
        ));
    }
    Ok(())
}

/// The access key id of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=<AccessKeyId>/<date>/<region>/<service>/aws4_request, ...`), or
/// `None` when the header is missing or does not have that shape.
pub fn access_key_id(authorization: Option<&str>) -> Option<String> {
    let header = authorization?.trim();
    let (algorithm, rest) = header.split_once(char::is_whitespace)?;
    if !algorithm.starts_with("AWS4-") {
        return None;
    }
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    let id = credential.split('/').next()?;
    check_access_key_id(id).ok()?;
    Some(id.to_string())
}

/// A principal as CloudTrail names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An IAM user, `arn:aws:iam::<account>:user[/path]/<name>`.
    IamUser {
        /// The ARN as given.
        arn: String,
        /// The account.
        account: String,
        /// The user name (last path segment).
        name: String,
    },
    /// A role session, `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    AssumedRole {
        /// The ARN as given.
        arn: String,
        /// The account.
        account: String,
        /// The role name.
        role: String,
        /// The session name.
        session: String,
    },
    /// The account root user, `arn:aws:iam::<account>:root`.
    Root {
        /// The ARN as given.
        arn: String,
        /// The account.
        account: String,
    },
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM names: letters, digits and `+=,.@_-` (role session names use the same set).
fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// A stable 17-character IAM unique-id suffix derived from `seed` (FNV-1a, base32 alphabet).
fn unique_suffix(seed: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in seed.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    (0..17)
        .map(|i| char::from(ALPHABET[((hash >> (i * 5)) & 31) as usize]))
        .collect()
}

impl Principal {
    /// Parses an IAM user, assumed-role session or root ARN; the message says what is wrong.
    pub fn parse(arn: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "'{arn}' is not a supported principal ARN ({why}); use arn:aws:iam::<account>:user/<name>, \
                 arn:aws:sts::<account>:assumed-role/<role>/<session> or arn:aws:iam::<account>:root"
            ))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
            return bad("not an ARN");
        };
        if *prefix != "arn" || partition.is_empty() || !region.is_empty() {
            return bad("not an IAM or STS ARN");
        }
        if !is_account(account) {
            return bad("the account must be 12 digits");
        }
        let account = (*account).to_string();
        match (*service, *resource) {
            ("iam", "root") => Ok(Self::Root {
                arn: arn.to_string(),
                account,
            }),
            ("iam", user) if user.starts_with("user/") => {
                let name = user.rsplit('/').next().unwrap_or_default();
                if !is_iam_name(name) {
                    return bad("invalid user name");
                }
                Ok(Self::IamUser {
                    arn: arn.to_string(),
                    account,
                    name: name.to_string(),
                })
            }
            ("sts", session) if session.starts_with("assumed-role/") => {
                let segments: Vec<&str> = session.split('/').collect();
                let [_, role, session] = segments.as_slice() else {
                    return bad("expected assumed-role/<role>/<session>");
                };
                if !is_iam_name(role) || !is_iam_name(session) {
                    return bad("invalid role or session name");
                }
                Ok(Self::AssumedRole {
                    arn: arn.to_string(),
                    account,
                    role: (*role).to_string(),
                    session: (*session).to_string(),
                })
            }
            _ => bad("only IAM users, assumed roles and root"),
        }
    }

    /// The IAM user `name` of `account`.
    pub fn iam_user(account: &str, name: &str) -> Self {
        Self::IamUser {
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            account: account.to_string(),
            name: name.to_string(),
        }
    }

    /// The ARN.
    pub fn arn(&self) -> &str {
        match self {
            Self::IamUser { arn, .. } | Self::AssumedRole { arn, .. } | Self::Root { arn, .. } => {
                arn
            }
        }
    }

    /// The account the principal belongs to.
    pub fn account(&self) -> &str {
        match self {
            Self::IamUser { account, .. }
            | Self::AssumedRole { account, .. }
            | Self::Root { account, .. } => account,
        }
    }

    /// The LookupEvents `Username`: the user name, the role session name, or `root`.
    pub fn username(&self) -> &str {
        match self {
            Self::IamUser { name, .. } => name,
            Self::AssumedRole { session, .. } => session,
            Self::Root { .. } => "root",
        }
    }

    /// CloudTrail's `userIdentity` for a call signed with `access_key_id`. `session_created` is
    /// the role session's `creationDate` (ISO 8601), for assumed roles.
    pub fn user_identity(&self, access_key_id: Option<&str>, session_created: &str) -> Value {
        let mut m = Map::new();
        match self {
            Self::IamUser { arn, account, name } => {
                m.insert("type".into(), json!("IAMUser"));
                m.insert(
                    "principalId".into(),
                    json!(format!("AIDA{}", unique_suffix(arn))),
                );
                m.insert("arn".into(), json!(arn));
                m.insert("accountId".into(), json!(account));
                if let Some(id) = access_key_id {
                    m.insert("accessKeyId".into(), json!(id));
                }
                m.insert("userName".into(), json!(name));
            }
            Self::AssumedRole {
                arn,
                account,
                role,
                session,
            } => {
                let role_arn = format!("arn:aws:iam::{account}:role/{role}");
                let role_id = format!("AROA{}", unique_suffix(&role_arn));
                m.insert("type".into(), json!("AssumedRole"));
                m.insert("principalId".into(), json!(format!("{role_id}:{session}")));
                m.insert("arn".into(), json!(arn));
                m.insert("accountId".into(), json!(account));
                if let Some(id) = access_key_id {
                    m.insert("accessKeyId".into(), json!(id));
                }
                m.insert(
                    "sessionContext".into(),
                    json!({
                        "sessionIssuer": {
                            "type": "Role",
                            "principalId": role_id,
                            "arn": role_arn,
                            "accountId": account,
                            "userName": role,
                        },
                        "webIdFederationData": {},
                        "attributes": {
                            "creationDate": session_created,
                            "mfaAuthenticated": "false",
                        },
                    }),
                );
            }
            Self::Root { arn, account } => {
                m.insert("type".into(), json!("Root"));
                m.insert("principalId".into(), json!(account));
                m.insert("arn".into(), json!(arn));
                m.insert("accountId".into(), json!(account));
                if let Some(id) = access_key_id {
                    m.insert("accessKeyId".into(), json!(id));
                }
            }
        }
        Value::Object(m)
    }
}

/// One entry of the identity map.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The principal the access key belongs to.
    pub principal: Principal,
    /// When the entry was made (epoch seconds, emulated clock): the `creationDate` of an
    /// assumed-role session.
    pub since: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_come_from_the_sigv4_credential() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE123/20260101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(
            access_key_id(Some(header)).as_deref(),
            Some("AKIAEXAMPLE123")
        );
        assert_eq!(access_key_id(None), None);
        for bad in [
            "",
            "Basic dXNlcjpwYXNz",
            "AWS4-HMAC-SHA256 SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=/20260101/us-east-1/kms/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AK!D/20260101/us-east-1/kms/aws4_request",
        ] {
            assert_eq!(access_key_id(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn principals_parse_and_name_themselves_as_cloudtrail_does() {
        let user =
            Principal::parse("arn:aws:iam::111122223333:user/division/payments-app").unwrap();
        assert_eq!(user.username(), "payments-app");
        let identity = user.user_identity(Some("AKIA1"), "");
        assert_eq!(identity["type"], "IAMUser");
        assert_eq!(identity["userName"], "payments-app");
        assert_eq!(identity["accountId"], "111122223333");
        assert_eq!(identity["accessKeyId"], "AKIA1");
        let id = identity["principalId"].as_str().unwrap();
        assert!(id.starts_with("AIDA") && id.len() == 21, "{id}");
        assert_eq!(
            user.user_identity(Some("AKIA1"), "")["principalId"],
            identity["principalId"],
            "principal ids are stable"
        );

        let role =
            Principal::parse("arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice").unwrap();
        assert_eq!(role.username(), "alice");
        let identity = role.user_identity(Some("ASIA1"), "2026-01-01T00:00:00Z");
        assert_eq!(identity["type"], "AssumedRole");
        let issuer = &identity["sessionContext"]["sessionIssuer"];
        assert_eq!(issuer["type"], "Role");
        assert_eq!(issuer["arn"], "arn:aws:iam::111122223333:role/KeyAdmin");
        assert_eq!(issuer["userName"], "KeyAdmin");
        assert_eq!(
            identity["principalId"],
            format!("{}:alice", issuer["principalId"].as_str().unwrap())
        );

        let root = Principal::parse("arn:aws:iam::111122223333:root").unwrap();
        assert_eq!(root.username(), "root");
        assert_eq!(root.user_identity(None, "")["type"], "Root");
        assert!(root.user_identity(None, "").get("accessKeyId").is_none());

        for bad in [
            "nope",
            "arn:aws:iam::1234:user/x",
            "arn:aws:iam::111122223333:role/KeyAdmin",
            "arn:aws:sts::111122223333:assumed-role/KeyAdmin",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::111122223333:user/",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
    }
}
