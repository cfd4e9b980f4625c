//! Who tagged: CloudTrail's `TagResource` API-call events, as EventBridge delivers them
//! (`detail-type` "AWS API Call via CloudTrail", source `aws.kms` or `aws.cloudhsm`), and the
//! principals allowed to start runs by tag.
//!
//! EventBridge's "Tag Change on Resource" events do not say who tagged; the API-call events do
//! (`detail.userIdentity`). EventBridge receives API-call events only when a CloudTrail trail
//! with logging enabled records management events in the account and Region (EventBridge User
//! Guide, "AWS service events delivered via AWS CloudTrail"). An API-call event carries the tags
//! of that one call, not the resource's whole tag set.

use std::collections::BTreeMap;

use aws_smithy_types::DateTime;
use serde_json::Value;

use crate::arn::Arn;
use crate::config::ConfigError;

/// `detail-type` of the API-call events CloudTrail sends to EventBridge.
pub const API_CALL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
/// Environment variable listing the principals (ARN patterns) allowed to start runs by tag.
pub const ALLOWED_PRINCIPALS_ENV: &str = "TAG_TRIGGER_ALLOWED_PRINCIPALS";
/// The most patterns [`AllowedPrincipals`] takes.
const MAX_PATTERNS: usize = 50;

/// The principal that made a call, from the event's `userIdentity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagger {
    /// `userIdentity.arn`: the user, or the assumed-role session (`...:assumed-role/<role>/<session>`).
    pub arn: String,
    /// `userIdentity.sessionContext.sessionIssuer.arn`: the role behind a session, if any.
    pub session_issuer_arn: Option<String>,
    /// `userIdentity.type` (`IAMUser`, `AssumedRole`, `Root`, ...).
    pub identity_type: String,
}

/// What a `TagResource` call tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalledResource {
    /// A KMS key, by ARN.
    KmsKey {
        /// Key ARN.
        arn: String,
    },
    /// A CloudHSM cluster.
    CloudHsmCluster {
        /// Cluster ARN.
        arn: String,
        /// Cluster id.
        cluster_id: String,
    },
}

/// A successful `TagResource` call.
#[derive(Debug, Clone, PartialEq)]
pub struct TagCall {
    /// What it tagged.
    pub resource: CalledResource,
    /// The tags the call set (not the resource's other tags).
    pub tags: BTreeMap<String, String>,
    /// Who called (`None` when the event names no caller ARN: an AWS service, say).
    pub tagger: Option<Tagger>,
    /// `detail.eventTime`.
    pub time: Option<DateTime>,
    /// `detail.eventID`: the CloudTrail event id, by which CloudTrail's own record of the call
    /// is looked up.
    pub event_id: Option<String>,
}

/// Why an API-call event is not a usable `TagResource` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotATagCall {
    /// Another API (UntagResource, CreateKey, ...): not for the trigger.
    OtherCall(String),
    /// The call failed (`errorCode`): nothing was tagged.
    Failed(String),
    /// The event is not shaped like a `TagResource` API-call event.
    Malformed(String),
}

/// Parses the `detail` of an API-call event from `source` (`aws.kms` or `aws.cloudhsm`) as a
/// successful `TagResource` call.
pub fn parse_tag_call(source: &str, detail: &Value) -> Result<TagCall, NotATagCall> {
    let text = |field: &str| detail.get(field).and_then(Value::as_str);
    let event_name = text("eventName")
        .ok_or_else(|| NotATagCall::Malformed("detail.eventName is missing".into()))?;
    if event_name != "TagResource" {
        return Err(NotATagCall::OtherCall(event_name.to_owned()));
    }
    if let Some(code) = text("errorCode") {
        return Err(NotATagCall::Failed(code.to_owned()));
    }
    let region = text("awsRegion")
        .ok_or_else(|| NotATagCall::Malformed("detail.awsRegion is missing".into()))?;
    let account = text("recipientAccountId")
        .ok_or_else(|| NotATagCall::Malformed("detail.recipientAccountId is missing".into()))?;
    let params = detail
        .get("requestParameters")
        .filter(|p| p.is_object())
        .ok_or_else(|| NotATagCall::Malformed("detail.requestParameters is missing".into()))?;
    let (resource, tags) = match (source, text("eventSource")) {
        ("aws.kms", Some("kms.amazonaws.com")) => (
            kms_key(detail, params, region, account)?,
            tag_list(params, "tags", "tagKey", "tagValue")?,
        ),
        ("aws.cloudhsm", Some("cloudhsm.amazonaws.com")) => (
            cloudhsm_cluster(params, region, account)?,
            tag_list(params, "tagList", "key", "value")?,
        ),
        (source, event_source) => {
            return Err(NotATagCall::Malformed(format!(
                "source {source} with eventSource {event_source:?} is not a KMS or CloudHSM call"
            )))
        }
    };
    let identity = detail
        .get("userIdentity")
        .ok_or_else(|| NotATagCall::Malformed("detail.userIdentity is missing".into()))?;
    let tagger = identity
        .get("arn")
        .and_then(Value::as_str)
        .filter(|arn| Arn::parse(arn).is_some())
        .map(|arn| Tagger {
            arn: arn.to_owned(),
            session_issuer_arn: identity
                .pointer("/sessionContext/sessionIssuer/arn")
                .and_then(Value::as_str)
                .map(str::to_owned),
            identity_type: identity
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_owned(),
        });
    let time = text("eventTime")
        .and_then(|t| DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime).ok());
    Ok(TagCall {
        resource,
        tags,
        tagger,
        time,
        event_id: text("eventID").map(str::to_owned),
    })
}

/// The key a KMS `TagResource` call tagged: `detail.resources[]`'s key ARN, else
/// `requestParameters.keyId` (an ARN, or an id in the event's account and Region).
fn kms_key(
    detail: &Value,
    params: &Value,
    region: &str,
    account: &str,
) -> Result<CalledResource, NotATagCall> {
    let from_resources = detail
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("AWS::KMS::Key"))
        .find_map(|r| r.get("ARN").and_then(Value::as_str));
    let key_id = params.get("keyId").and_then(Value::as_str);
    let arn = match (from_resources, key_id) {
        (Some(arn), _) => arn.to_owned(),
        (None, Some(id)) if id.starts_with("arn:") => id.to_owned(),
        (None, Some(id)) => format!("arn:aws:kms:{region}:{account}:key/{id}"),
        (None, None) => {
            return Err(NotATagCall::Malformed(
                "a KMS TagResource call names no key".into(),
            ))
        }
    };
    match Arn::parse(&arn).and_then(|a| a.resource_id("kms", "key/")) {
        Some(_) => Ok(CalledResource::KmsKey { arn }),
        None => Err(NotATagCall::Malformed(format!(
            "{arn:?} is not a KMS key ARN"
        ))),
    }
}

/// The cluster a CloudHSM `TagResource` call tagged (`requestParameters.resourceId`), with the
/// ARN made from the event's Region and account; like a key's, that ARN must parse back to the
/// cluster (a Region or account holding `:` would shift its parts).
fn cloudhsm_cluster(
    params: &Value,
    region: &str,
    account: &str,
) -> Result<CalledResource, NotATagCall> {
    let id = params
        .get("resourceId")
        .and_then(Value::as_str)
        .filter(|id| {
            id.starts_with("cluster-") && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .ok_or_else(|| {
            NotATagCall::Malformed("a CloudHSM TagResource call names no cluster".into())
        })?;
    let arn = format!("arn:aws:cloudhsm:{region}:{account}:cluster/{id}");
    if Arn::parse(&arn).and_then(|a| a.resource_id("cloudhsm", "cluster/")) != Some(id) {
        return Err(NotATagCall::Malformed(format!(
            "{arn:?} is not a CloudHSM cluster ARN"
        )));
    }
    Ok(CalledResource::CloudHsmCluster {
        arn,
        cluster_id: id.to_owned(),
    })
}

/// `requestParameters.<list>`: `[{<key>: .., <value>: ..}]` as a map (the last of a repeated key
/// wins, as KMS applies them).
fn tag_list(
    params: &Value,
    list: &str,
    key: &str,
    value: &str,
) -> Result<BTreeMap<String, String>, NotATagCall> {
    let malformed =
        || NotATagCall::Malformed(format!("requestParameters.{list} is not a tag list"));
    params
        .get(list)
        .and_then(Value::as_array)
        .ok_or_else(malformed)?
        .iter()
        .map(|tag| {
            let k = tag.get(key).and_then(Value::as_str);
            let v = tag.get(value).and_then(Value::as_str);
            match (k, v) {
                (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
                _ => Err(malformed()),
            }
        })
        .collect()
}

/// The principals allowed to start runs by tag: ARN patterns where `*` matches any run of
/// characters and `?` one character, compared with the caller's ARN and, for a role session,
/// the role's ARN. Empty: nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedPrincipals(Vec<String>);

impl AllowedPrincipals {
    /// Patterns from [`ALLOWED_PRINCIPALS_ENV`] (comma-separated; blanks ignored).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(&var(ALLOWED_PRINCIPALS_ENV).unwrap_or_default())
    }

    /// Patterns from a comma-separated list; each must be an ARN pattern (`arn:...`).
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let patterns: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let invalid = |reason: String| ConfigError::Invalid {
            variable: ALLOWED_PRINCIPALS_ENV,
            reason,
        };
        if patterns.len() > MAX_PATTERNS {
            return Err(invalid(format!(
                "at most {MAX_PATTERNS} patterns, got {}",
                patterns.len()
            )));
        }
        for pattern in &patterns {
            if !pattern.starts_with("arn:") || pattern.split(':').count() < 6 {
                return Err(invalid(format!(
                    "{pattern:?} is not an ARN pattern (arn:<partition>:<service>:<region>:<account>:<resource>)"
                )));
            }
            if pattern.chars().any(char::is_control) || pattern == "arn:*" {
                return Err(invalid(format!("{pattern:?} is not a usable pattern")));
            }
        }
        Ok(Self(patterns))
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `tagger` matches a pattern (by its ARN or its session's role ARN).
    pub fn allows(&self, tagger: &Tagger) -> bool {
        let candidates =
            std::iter::once(tagger.arn.as_str()).chain(tagger.session_issuer_arn.as_deref());
        candidates
            .into_iter()
            .any(|arn| self.0.iter().any(|pattern| glob_matches(pattern, arn)))
    }
}

/// Whether `text` matches `pattern` (`*`: any run of characters, `?`: one character), case
/// sensitive as IAM's ARN matching is.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    /// The detail of a KMS TagResource API-call event, shaped as CloudTrail records it.
    fn kms_detail(tags: Value) -> Value {
        json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": "AROAEXAMPLE:alice",
                "arn": "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice",
                "accountId": "111122223333",
                "accessKeyId": "ASIAEXAMPLE",
                "sessionContext": {"sessionIssuer": {
                    "type": "Role", "arn": "arn:aws:iam::111122223333:role/KeyAdmin",
                    "accountId": "111122223333", "userName": "KeyAdmin"}}
            },
            "eventTime": "2026-11-30T10:00:00Z",
            "eventSource": "kms.amazonaws.com",
            "eventName": "TagResource",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "192.0.2.1",
            "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "tags": tags},
            "responseElements": null,
            "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": KEY}],
            "eventType": "AwsApiCall",
            "recipientAccountId": "111122223333"
        })
    }

    #[test]
    fn a_kms_tag_call_names_the_key_its_tags_and_who_called() {
        let call = parse_tag_call(
            "aws.kms",
            &kms_detail(json!([{"tagKey": "DecommissionCustomKeyStore", "tagValue": "cks-1"}])),
        )
        .unwrap();
        assert_eq!(call.resource, CalledResource::KmsKey { arn: KEY.into() });
        assert_eq!(call.tags["DecommissionCustomKeyStore"], "cks-1");
        let tagger = call.tagger.unwrap();
        assert_eq!(
            tagger.arn,
            "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice"
        );
        assert_eq!(
            tagger.session_issuer_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/KeyAdmin")
        );
        assert_eq!(call.time.map(|t| t.secs()), Some(1_796_032_800));

        // Without resources[], the key id is resolved in the event's account and Region.
        let mut detail = kms_detail(json!([]));
        detail.as_object_mut().unwrap().remove("resources");
        let call = parse_tag_call("aws.kms", &detail).unwrap();
        assert_eq!(call.resource, CalledResource::KmsKey { arn: KEY.into() });
    }

    #[test]
    fn a_cloudhsm_tag_call_names_the_cluster() {
        let detail = json!({
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob"},
            "eventSource": "cloudhsm.amazonaws.com", "eventName": "TagResource",
            "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
            "requestParameters": {"resourceId": "cluster-1a23b4cdefg",
                "tagList": [{"key": "DecommissionCustomKeyStore", "value": "cks-1"}]}
        });
        let call = parse_tag_call("aws.cloudhsm", &detail).unwrap();
        assert_eq!(
            call.resource,
            CalledResource::CloudHsmCluster {
                arn: "arn:aws:cloudhsm:us-east-1:111122223333:cluster/cluster-1a23b4cdefg".into(),
                cluster_id: "cluster-1a23b4cdefg".into()
            }
        );
        let tagger = call.tagger.unwrap();
        assert_eq!(tagger.arn, "arn:aws:iam::111122223333:user/bob");
        assert_eq!(tagger.session_issuer_arn, None);
    }

    /// Found by the `tag_event` fuzz target: a Region (or account) holding `:` made a cluster ARN
    /// whose parts were shifted, naming no cluster, where a key's ARN was refused.
    #[test]
    fn a_cloudhsm_tag_call_whose_region_or_account_breaks_the_arn_is_malformed() {
        for (region, account) in [
            ("2026-02-30T10:00:00Z", "111122223333"),
            ("us-east-1", "111122223333:cluster/cluster-other"),
        ] {
            let detail = json!({
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob"},
                "eventSource": "cloudhsm.amazonaws.com", "eventName": "TagResource",
                "awsRegion": region, "recipientAccountId": account,
                "requestParameters": {"resourceId": "cluster-1a23b4cdefg",
                    "tagList": [{"key": "DecommissionCustomKeyStore", "value": "cks-1"}]}
            });
            assert!(
                matches!(
                    parse_tag_call("aws.cloudhsm", &detail),
                    Err(NotATagCall::Malformed(why)) if why.contains("not a CloudHSM cluster ARN")
                ),
                "{region} {account}"
            );
        }
    }

    #[test]
    fn other_calls_failed_calls_and_malformed_events_are_told_apart() {
        let mut untag = kms_detail(json!([]));
        untag["eventName"] = json!("UntagResource");
        assert_eq!(
            parse_tag_call("aws.kms", &untag),
            Err(NotATagCall::OtherCall("UntagResource".into()))
        );
        let mut failed = kms_detail(json!([]));
        failed["errorCode"] = json!("AccessDenied");
        assert_eq!(
            parse_tag_call("aws.kms", &failed),
            Err(NotATagCall::Failed("AccessDenied".into()))
        );
        let mut service = kms_detail(json!([]));
        service["userIdentity"] = json!({"type": "AWSService", "invokedBy": "kms.amazonaws.com"});
        assert_eq!(parse_tag_call("aws.kms", &service).unwrap().tagger, None);
        for broken in [
            json!({"eventName": "TagResource"}),
            kms_detail(json!([{"tagKey": "k"}])),
            kms_detail(json!("k=v")),
        ] {
            assert!(
                matches!(
                    parse_tag_call("aws.kms", &broken),
                    Err(NotATagCall::Malformed(_))
                ),
                "{broken}"
            );
        }
        // A KMS call claimed by another source is not trusted.
        assert!(matches!(
            parse_tag_call("aws.cloudhsm", &kms_detail(json!([]))),
            Err(NotATagCall::Malformed(_))
        ));
    }

    #[test]
    fn principals_match_by_arn_pattern_or_by_the_role_behind_a_session() {
        let allowed = AllowedPrincipals::parse(
            " arn:aws:iam::111122223333:role/KeyAdmin , arn:aws:iam::111122223333:user/ops-*",
        )
        .unwrap();
        let session = Tagger {
            arn: "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice".into(),
            session_issuer_arn: Some("arn:aws:iam::111122223333:role/KeyAdmin".into()),
            identity_type: "AssumedRole".into(),
        };
        let user = |name: &str| Tagger {
            arn: format!("arn:aws:iam::111122223333:user/{name}"),
            session_issuer_arn: None,
            identity_type: "IAMUser".into(),
        };
        assert!(allowed.allows(&session));
        assert!(allowed.allows(&user("ops-carol")));
        assert!(!allowed.allows(&user("mallory")));
        assert!(!allowed.allows(&user("Ops-carol")), "case sensitive");
        assert!(
            !AllowedPrincipals::default().allows(&session),
            "empty: nobody"
        );
        assert!(glob_matches(
            "arn:aws:sts::1:assumed-role/R/?ob",
            "arn:aws:sts::1:assumed-role/R/bob"
        ));
        assert!(!glob_matches(
            "arn:aws:sts::1:assumed-role/R/?ob",
            "arn:aws:sts::1:assumed-role/R/blob"
        ));
        assert!(glob_matches("a*b*c", "axxbyyc") && !glob_matches("a*b*c", "axxbyy"));

        for bad in [
            "alice",
            "arn:*",
            "arn:aws:iam::1",
            "arn:aws:iam::1:user/a\u{7}b",
        ] {
            assert!(AllowedPrincipals::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AllowedPrincipals::parse(" , ").unwrap().patterns().len(), 0);
    }
}
