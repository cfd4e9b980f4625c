//! `tag_event`: [`parse_tag_change`], which reads every event the tag trigger receives:
//! EventBridge "Tag Change on Resource" events and CloudTrail's "AWS API Call via CloudTrail"
//! `TagResource` events (through [`parse_tag_call`]), and [`AllowedPrincipals`], which decides
//! whose tags count.
//!
//! Properties: a parsed change names a KMS key or CloudHSM cluster by an ARN that parses, with
//! the id the ARN holds; a tag change comes from `aws.tag` and an API call from `aws.kms` or
//! `aws.cloudhsm`, with exactly the keys it set as its changed keys, as `parse_tag_call` reads
//! its detail; a named tagger has an ARN that parses, is allowed by a pattern equal to its ARN
//! and by a prefix pattern, and not by an unrelated one; the store a tag names, when valid,
//! gives valid execution names; refusals and ignores have names.

use kms_decommission::arn::Arn;
use kms_decommission::request::validate_custom_key_store_id;
use kms_decommission::sfn::naming::{is_valid_execution_name, tag_execution_name};
use kms_decommission::sfn::RunMode;
use kms_decommission::triggers::tag::{
    parse_tag_change, NotStarted, TagEventKind, TaggedResource, DEFAULT_TAG_KEY, MAX_TAG_RUNS,
};
use kms_decommission::triggers::tagger::{parse_tag_call, AllowedPrincipals, CalledResource};
use serde_json::Value;

use super::mutate::{mutate_json, Rng, COMMON_WORDS};
use super::{Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "tag_event",
    what: "triggers::tag::parse_tag_change, triggers::tagger::{parse_tag_call, AllowedPrincipals}",
    bounded_cases: 30_000,
    run,
    mutate,
};

const WORDS: &[&str] = &[
    "version",
    "id",
    "detail-type",
    "Tag Change on Resource",
    "AWS API Call via CloudTrail",
    "source",
    "aws.tag",
    "aws.kms",
    "aws.cloudhsm",
    "account",
    "time",
    "region",
    "resources",
    "detail",
    "changed-tag-keys",
    "tags",
    "service",
    "kms",
    "cloudhsm",
    "cloudhsmv2",
    "resource-type",
    "key",
    "cluster",
    "eventName",
    "TagResource",
    "UntagResource",
    "errorCode",
    "awsRegion",
    "recipientAccountId",
    "requestParameters",
    "eventSource",
    "kms.amazonaws.com",
    "cloudhsm.amazonaws.com",
    "userIdentity",
    "arn",
    "type",
    "AssumedRole",
    "IAMUser",
    "sessionContext",
    "sessionIssuer",
    "eventTime",
    "keyId",
    "tagKey",
    "tagValue",
    "tagList",
    "resourceId",
    "ARN",
    "AWS::KMS::Key",
    "DecommissionCustomKeyStore",
    "DecommissionConfirmStoreName",
];

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let words = if rng.one_in(3) { COMMON_WORDS } else { WORDS };
    mutate_json(rng, data, others, words)
}

/// Runs one input: JSON bytes, an EventBridge event as the tag trigger receives it.
pub fn run(data: &[u8]) -> Verdict {
    let Ok(event) = serde_json::from_slice::<Value>(data) else {
        return Verdict::Malformed;
    };
    let change = match parse_tag_change(&event) {
        Ok(change) => change,
        Err(NotStarted::Ignored(ignored)) => {
            assert!(!ignored.name().is_empty() && !ignored.to_string().is_empty());
            return Verdict::Refused;
        }
        Err(NotStarted::Refused(refusal)) => {
            assert!(!refusal.name().is_empty() && !refusal.to_string().is_empty());
            return Verdict::Refused;
        }
    };
    let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
    let source = text("source");

    let arn = Arn::parse(change.resource.arn())
        .unwrap_or_else(|| panic!("{event}: the resource ARN does not parse: {change:?}"));
    match &change.resource {
        TaggedResource::KmsKey { .. } => assert!(
            arn.resource_id("kms", "key/").is_some(),
            "{event}: not a key ARN: {change:?}"
        ),
        TaggedResource::CloudHsmCluster { cluster_id, .. } => assert_eq!(
            arn.resource_id("cloudhsm", "cluster/"),
            Some(cluster_id.as_str()),
            "{event}: {change:?}"
        ),
    }

    match &change.kind {
        TagEventKind::TagChange => {
            assert_eq!(source, "aws.tag", "{event}");
            assert_eq!(text("detail-type"), "Tag Change on Resource", "{event}");
        }
        TagEventKind::ApiCall(tagger) => {
            assert!(matches!(source, "aws.kms" | "aws.cloudhsm"), "{event}");
            let keys: Vec<&String> = change.tags.keys().collect();
            let changed: Vec<&String> = change.changed_tag_keys.iter().collect();
            assert_eq!(keys, changed, "an API call changed exactly the keys it set");
            let call = parse_tag_call(source, &event["detail"])
                .unwrap_or_else(|e| panic!("{event}: the change parsed, its call does not: {e:?}"));
            assert_eq!(call.tags, change.tags);
            let call_arn = match &call.resource {
                CalledResource::KmsKey { arn } | CalledResource::CloudHsmCluster { arn, .. } => arn,
            };
            assert_eq!(call_arn, change.resource.arn());
            if let Some(tagger) = tagger {
                assert!(Arn::parse(&tagger.arn).is_some(), "{event}: {tagger:?}");
                check_patterns(tagger);
            }
        }
    }

    if let Some(store) = change.tags.get(DEFAULT_TAG_KEY) {
        if validate_custom_key_store_id(store).is_ok() {
            for mode in [RunMode::DryRun, RunMode::Decommission] {
                for run in [1, MAX_TAG_RUNS] {
                    let name = tag_execution_name(store, mode, run);
                    assert!(is_valid_execution_name(&name), "{store:?} -> {name:?}");
                }
            }
        }
    }
    Verdict::Accepted
}

/// The tagger's own ARN, and a prefix of it followed by `*`, allow it; an unrelated ARN does not.
fn check_patterns(tagger: &kms_decommission::triggers::tagger::Tagger) {
    let exact = tagger.arn.as_str();
    if let Ok(allowed) = AllowedPrincipals::parse(exact) {
        if allowed.patterns() == [exact] {
            assert!(allowed.allows(tagger), "{exact:?} does not match itself");
        }
    }
    let chars: Vec<char> = exact.chars().collect();
    let prefix: String = chars[..chars.len() / 2].iter().collect();
    let pattern = format!("{prefix}*");
    if let Ok(allowed) = AllowedPrincipals::parse(&pattern) {
        if allowed.patterns() == [pattern.as_str()] {
            assert!(
                allowed.allows(tagger),
                "{pattern:?} does not match {exact:?}"
            );
        }
    }
    let other = "arn:aws:iam::999999999999:role/nobody-\u{1F600}";
    let unrelated = AllowedPrincipals::parse(other).expect("a valid pattern");
    let names_it = exact == other || tagger.session_issuer_arn.as_deref() == Some(other);
    assert_eq!(unrelated.allows(tagger), names_it, "{tagger:?}");
}
