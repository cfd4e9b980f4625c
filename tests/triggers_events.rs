//! Every sample event in events/triggers/ is real-shaped: the tag events parse into the change
//! they describe, and the webhook requests deserialize as function URL events whose signature
//! verifies with the documented test secret at the documented timestamp.

use std::path::PathBuf;

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine as _;
use kms_decommission::triggers::tag::{
    parse_tag_change, Ignored, NotStarted, TagEventKind, TaggedResource, CONFIRM_TAG_KEY,
    DEFAULT_TAG_KEY,
};
use kms_decommission::triggers::webhook::signature::{
    WebhookSecret, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use serde_json::Value;

/// The secret and timestamp events/triggers/README.md documents.
const TEST_SECRET: &[u8] = b"example-webhook-secret-not-for-production-0123";
const SIGNED_AT: i64 = 1_795_860_000;

fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("events/triggers")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_sample_in_the_folder_is_covered_here() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events/triggers");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "api-call-tag-resource-kms-key.json",
            "tag-change-cloudhsm-cluster.json",
            "tag-change-kms-key-confirmed.json",
            "tag-change-kms-key-removed.json",
            "tag-change-kms-key.json",
            "webhook-cancel.json",
            "webhook-start-dry-run-base64.json",
            "webhook-start.json",
            "webhook-status.json",
        ]
    );
}

#[test]
fn the_kms_key_tag_samples_parse() {
    let set = parse_tag_change(&sample("tag-change-kms-key.json")).unwrap();
    assert!(matches!(&set.resource, TaggedResource::KmsKey { arn } if arn.contains(":key/")));
    assert_eq!(set.changed_tag_keys, [DEFAULT_TAG_KEY]);
    assert_eq!(
        set.tags.get(DEFAULT_TAG_KEY).map(String::as_str),
        Some("cks-1234567890abcdef0")
    );
    assert_eq!(set.version, Some(3.0));

    let confirmed = parse_tag_change(&sample("tag-change-kms-key-confirmed.json")).unwrap();
    assert_eq!(confirmed.changed_tag_keys, [CONFIRM_TAG_KEY]);
    assert_eq!(
        confirmed.tags.get(CONFIRM_TAG_KEY).map(String::as_str),
        Some("ExampleCloudHsmStore")
    );
    assert_eq!(confirmed.version, Some(4.0));

    let removed = parse_tag_change(&sample("tag-change-kms-key-removed.json")).unwrap();
    assert_eq!(removed.changed_tag_keys, [DEFAULT_TAG_KEY]);
    assert!(!removed.tags.contains_key(DEFAULT_TAG_KEY));
}

#[test]
fn the_api_call_sample_names_the_key_both_tags_and_who_called() {
    let call = parse_tag_change(&sample("api-call-tag-resource-kms-key.json")).unwrap();
    assert_eq!(
        call.resource,
        TaggedResource::KmsKey {
            arn: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .into()
        }
    );
    assert_eq!(
        call.tags.get(CONFIRM_TAG_KEY).map(String::as_str),
        Some("ExampleCloudHsmStore")
    );
    assert_eq!(call.changed_tag_keys, [CONFIRM_TAG_KEY, DEFAULT_TAG_KEY]);
    let TagEventKind::ApiCall(Some(tagger)) = &call.kind else {
        panic!("{:?}", call.kind)
    };
    assert_eq!(
        tagger.arn,
        "arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice@example.com"
    );
    assert_eq!(
        tagger.session_issuer_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/KeyAdmin")
    );
}

#[test]
fn the_cluster_tag_sample_parses() {
    let change = parse_tag_change(&sample("tag-change-cloudhsm-cluster.json")).unwrap();
    assert_eq!(
        change.resource,
        TaggedResource::CloudHsmCluster {
            arn: "arn:aws:cloudhsm:us-east-1:123456789012:cluster/cluster-1a23b4cdefg".into(),
            cluster_id: "cluster-1a23b4cdefg".into()
        }
    );
}

#[test]
fn a_tag_sample_with_another_detail_type_is_ignored() {
    let mut event = sample("tag-change-kms-key.json");
    event["detail-type"] = Value::from("Invalid Effective Tag Policy");
    assert!(matches!(
        parse_tag_change(&event),
        Err(NotStarted::Ignored(Ignored::NotATagChange { .. }))
    ));
}

fn signed_body(name: &str) -> Value {
    let request: LambdaFunctionUrlRequest = serde_json::from_value(sample(name)).unwrap();
    assert_eq!(request.request_context.http.method.as_deref(), Some("POST"));
    let raw = request.body.clone().unwrap();
    let body = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap()
    } else {
        raw.into_bytes()
    };
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    let secret = WebhookSecret::new(TEST_SECRET).unwrap();
    assert_eq!(
        header(TIMESTAMP_HEADER),
        Some(SIGNED_AT.to_string().as_str())
    );
    secret
        .verify(
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &body,
            SIGNED_AT,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(secret
        .verify(
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &body,
            SIGNED_AT + 301
        )
        .is_err());
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn the_webhook_samples_are_signed_function_url_requests() {
    let start = signed_body("webhook-start.json");
    assert_eq!(
        (start["Action"].as_str(), start["DryRun"].as_bool()),
        (Some("start"), Some(false))
    );
    assert_eq!(start["ConfirmCustomKeyStoreName"], "ExampleCloudHsmStore");
    let dry = signed_body("webhook-start-dry-run-base64.json");
    assert_eq!(
        (dry["Action"].as_str(), dry["DryRun"].as_bool()),
        (Some("start"), Some(true))
    );
    assert_eq!(signed_body("webhook-status.json")["Action"], "status");
    let cancel = signed_body("webhook-cancel.json");
    assert_eq!(
        (cancel["Action"].as_str(), cancel["TicketId"].as_str()),
        (Some("cancel"), Some("CHG-1234"))
    );
}
