//! CloudTrail: every KMS call leaves a record (caller identity, source IP, request parameters,
//! error, key), read back through the real aws-sdk-cloudtrail client's LookupEvents: filters,
//! stable pagination, the delivery delay, the 2/s quota, faults and the named errors.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::{Event, LookupAttribute, LookupAttributeKey};
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use common::*;
use kms_emulator::EmulatorConfig;
use serde_json::{json, Value};

const PAYMENTS_KEY: &str = "AKIAPAYMENTSAPP00001";
const PAYMENTS_ARN: &str = "arn:aws:iam::111122223333:user/payments-app";
const ADMIN_KEY: &str = "ASIAKEYADMINALICE001";
const ADMIN_ARN: &str = "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice";
const AUDITOR_KEY: &str = "AKIAAUDITOR000000001";

/// A CloudTrail client signing with `access_key_id`, retries off (one call, one request).
fn cloudtrail(endpoint: &str, access_key_id: &str) -> aws_sdk_cloudtrail::Client {
    let config = aws_sdk_cloudtrail::Config::builder()
        .behavior_version(aws_sdk_cloudtrail::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudtrail::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudtrail::config::Credentials::new(
            access_key_id,
            "secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_cloudtrail::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_cloudtrail::Client::from_conf(config)
}

fn attribute(key: LookupAttributeKey, value: &str) -> LookupAttribute {
    LookupAttribute::builder()
        .attribute_key(key)
        .attribute_value(value)
        .build()
        .expect("attribute")
}

fn key_arn(key: &str) -> String {
    format!("arn:aws:kms:us-east-1:123456789012:key/{key}")
}

/// Every event LookupEvents returns for one attribute (or none), all pages (at most 20, so a
/// broken cursor fails the test instead of looping).
async fn lookup(h: &Harness, filter: Option<(LookupAttributeKey, &str)>) -> Vec<Event> {
    let ct = cloudtrail(&h.emulator.endpoint(), AUDITOR_KEY);
    let mut events = Vec::new();
    let mut token = None;
    for _ in 0..20 {
        let mut request = ct.lookup_events().set_next_token(token);
        if let Some((key, value)) = &filter {
            request = request.lookup_attributes(attribute(key.clone(), value));
        }
        let page = request.send().await.expect("lookup events");
        events.extend(page.events().iter().cloned());
        match page.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return events,
        }
    }
    panic!("more than 20 pages");
}

/// The CloudTrail record of an event.
fn record(event: &Event) -> Value {
    serde_json::from_str(event.cloud_trail_event().expect("CloudTrailEvent")).expect("record JSON")
}

fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.event_name().unwrap_or_default().to_string())
        .collect()
}

async fn register(h: &Harness, access_key_id: &str, arn: &str) {
    let response = h
        .http
        .put(h.url(&format!("/_emulator/identities/{access_key_id}")))
        .json(&json!({ "Arn": arn }))
        .send()
        .await
        .expect("put identity");
    assert_eq!(response.status().as_u16(), 200);
}

/// A raw LookupEvents call: (status, body).
async fn raw_lookup(h: &Harness, target: &str, body: &str) -> (u16, Value) {
    let response = h
        .http
        .post(h.url("/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(body.to_string())
        .send()
        .await
        .expect("raw lookup");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every record kept, through the admin API.
async fn admin_records(h: &Harness) -> Vec<Value> {
    h.admin_get("/_emulator/cloudtrail").await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failed_decrypt_names_the_caller_the_error_and_the_key() {
    let h = harness().await;
    register(&h, PAYMENTS_KEY, PAYMENTS_ARN).await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    let key = h.cloudhsm_key(&store).await;
    let app = client_as(&h.emulator.endpoint(), PAYMENTS_KEY);
    let blob = app
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new("4111 1111 1111 1111"))
        .encryption_context("purpose", "payments")
        .send()
        .await
        .expect("encrypt while connected")
        .ciphertext_blob
        .expect("ciphertext");
    h.disconnect(&store).await;
    let err = app
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("purpose", "payments")
        .send()
        .await
        .expect_err("the key is unavailable");
    assert_eq!(code(&err), "KMSInvalidStateException");
    let message = aws_sdk_kms::error::ProvideErrorMetadata::message(&err)
        .expect("message")
        .to_string();
    let request_id = err.request_id().expect("request id").to_string();

    let events = lookup(&h, Some((LookupAttributeKey::EventName, "Decrypt"))).await;
    assert_eq!(events.len(), 1, "{:?}", names(&events));
    let event = &events[0];
    assert_eq!(event.username(), Some("payments-app"));
    assert_eq!(event.access_key_id(), Some(PAYMENTS_KEY));
    assert_eq!(event.read_only(), Some("true"));
    assert_eq!(event.event_source(), Some("kms.amazonaws.com"));
    let resources: Vec<(Option<&str>, Option<&str>)> = event
        .resources()
        .iter()
        .map(|r| (r.resource_type(), r.resource_name()))
        .collect();
    assert_eq!(
        resources,
        vec![(Some("AWS::KMS::Key"), Some(key_arn(&key).as_str()))]
    );

    let r = record(event);
    assert_eq!(r["eventVersion"], "1.08");
    assert_eq!(r["userIdentity"]["type"], "IAMUser");
    assert_eq!(r["userIdentity"]["arn"], PAYMENTS_ARN);
    assert_eq!(r["userIdentity"]["accountId"], "111122223333");
    assert_eq!(r["userIdentity"]["accessKeyId"], PAYMENTS_KEY);
    assert_eq!(r["userIdentity"]["userName"], "payments-app");
    assert!(r["userIdentity"]["principalId"]
        .as_str()
        .is_some_and(|id| id.starts_with("AIDA")));
    assert_eq!(r["eventSource"], "kms.amazonaws.com");
    assert_eq!(r["eventName"], "Decrypt");
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(r["sourceIPAddress"], "127.0.0.1");
    assert!(r["userAgent"]
        .as_str()
        .is_some_and(|ua| ua.contains("aws-sdk-rust")));
    assert_eq!(r["errorCode"], "KMSInvalidStateException");
    assert_eq!(r["errorMessage"], message.as_str());
    assert_eq!(
        r["requestParameters"],
        json!({"encryptionContext": {"purpose": "payments"}, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        "no ciphertext in the record"
    );
    assert_eq!(r["responseElements"], Value::Null);
    assert_eq!(r["additionalEventData"]["customKeyStoreId"], store.as_str());
    assert_eq!(r["requestID"], request_id.as_str());
    assert_eq!(r["eventID"], event.event_id().unwrap_or_default());
    assert_eq!(r["readOnly"], true);
    assert_eq!(
        r["resources"],
        json!([{"accountId": "123456789012", "type": "AWS::KMS::Key", "ARN": key_arn(&key)}])
    );
    assert_eq!(r["eventType"], "AwsApiCall");
    assert_eq!(r["managementEvent"], true);
    assert_eq!(r["recipientAccountId"], "123456789012");
    assert_eq!(r["eventCategory"], "Management");
    let time = event.event_time().expect("EventTime");
    assert_eq!(time.subsec_nanos(), 0, "whole seconds");
    let iso = time
        .fmt(aws_sdk_cloudtrail::primitives::DateTimeFormat::DateTime)
        .expect("format");
    assert_eq!(r["eventTime"], iso.as_str());
    assert!(iso.ends_with('Z') && iso.len() == 20, "{iso}");

    // the successful Encrypt is there too, without the plaintext
    let encrypt = lookup(&h, Some((LookupAttributeKey::EventName, "Encrypt"))).await;
    let r = record(&encrypt[0]);
    assert!(r.get("errorCode").is_none());
    assert_eq!(
        r["requestParameters"],
        json!({"keyId": key, "encryptionContext": {"purpose": "payments"}, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"})
    );
}

#[tokio::test]
async fn identities_become_cloudtrail_user_identities() {
    let mut config = EmulatorConfig {
        quotas: false,
        ..EmulatorConfig::default()
    };
    config
        .identities
        .insert(PAYMENTS_KEY.into(), PAYMENTS_ARN.into());
    let h = harness_with(config).await;
    register(&h, ADMIN_KEY, ADMIN_ARN).await;
    let endpoint = h.emulator.endpoint();
    client_as(&endpoint, ADMIN_KEY)
        .list_keys()
        .send()
        .await
        .unwrap();
    client_as(&endpoint, PAYMENTS_KEY)
        .list_aliases()
        .send()
        .await
        .unwrap();
    client_as(&endpoint, "AKIAUNKNOWN000000001")
        .list_keys()
        .send()
        .await
        .unwrap();
    let (status, _, _) = h.raw("DescribeCustomKeyStores", "{}").await; // no Authorization
    assert_eq!(status, 200);

    let alice = lookup(&h, Some((LookupAttributeKey::AccessKeyId, ADMIN_KEY))).await;
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].username(), Some("alice"), "the session name");
    let identity = &record(&alice[0])["userIdentity"];
    assert_eq!(identity["type"], "AssumedRole");
    assert_eq!(identity["arn"], ADMIN_ARN);
    assert_eq!(identity["accountId"], "111122223333");
    assert_eq!(identity["accessKeyId"], ADMIN_KEY);
    let issuer = &identity["sessionContext"]["sessionIssuer"];
    assert_eq!(issuer["type"], "Role");
    assert_eq!(issuer["arn"], "arn:aws:iam::111122223333:role/KeyAdmin");
    assert_eq!(issuer["accountId"], "111122223333");
    assert_eq!(issuer["userName"], "KeyAdmin");
    let role_id = issuer["principalId"].as_str().expect("role id");
    assert!(role_id.starts_with("AROA"));
    assert_eq!(identity["principalId"], format!("{role_id}:alice"));

    let payments = lookup(&h, Some((LookupAttributeKey::Username, "payments-app"))).await;
    assert_eq!(
        names(&payments),
        vec!["ListAliases"],
        "from the configuration"
    );

    let unknown = lookup(
        &h,
        Some((LookupAttributeKey::Username, "AKIAUNKNOWN000000001")),
    )
    .await;
    assert_eq!(
        record(&unknown[0])["userIdentity"]["arn"],
        "arn:aws:iam::123456789012:user/AKIAUNKNOWN000000001"
    );

    let anonymous = lookup(&h, Some((LookupAttributeKey::Username, "anonymous"))).await;
    assert_eq!(names(&anonymous), vec!["DescribeCustomKeyStores"]);
    assert_eq!(anonymous[0].access_key_id(), None);
    let identity = &record(&anonymous[0])["userIdentity"];
    assert_eq!(identity["arn"], "arn:aws:iam::123456789012:user/anonymous");
    assert!(identity.get("accessKeyId").is_none());

    // the admin API lists, refuses bad entries, removes, and reset restores the configured map
    let listed = h.admin_get("/_emulator/identities").await;
    let keys: Vec<&str> = listed["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["AccessKeyId"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec![PAYMENTS_KEY, ADMIN_KEY]);
    for (path, body) in [
        (
            "/_emulator/identities/AKIABAD",
            json!({"Arn": "arn:aws:iam::111122223333:role/KeyAdmin"}),
        ),
        (
            "/_emulator/identities/AKIABAD",
            json!({"Arn": "arn:aws:iam::1111:user/x"}),
        ),
        ("/_emulator/identities/AKIABAD", json!({})),
        (
            "/_emulator/identities/AKIA%21BAD",
            json!({"Arn": PAYMENTS_ARN}),
        ),
    ] {
        let response = h.http.put(h.url(path)).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path} {body}");
    }
    assert_eq!(
        h.admin_delete(&format!("/_emulator/identities/{ADMIN_KEY}"))
            .await,
        200
    );
    assert_eq!(
        h.admin_delete(&format!("/_emulator/identities/{ADMIN_KEY}"))
            .await,
        404
    );
    register(&h, "AKIAEXTRA00000000001", ADMIN_ARN).await;
    h.admin_post("/_emulator/reset", json!({})).await;
    let listed = h.admin_get("/_emulator/identities").await;
    assert_eq!(listed["identities"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["identities"][0]["Arn"], PAYMENTS_ARN);
}

#[tokio::test]
async fn tag_resource_records_its_tags_source_ip_and_user_agent() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
        .clone();
    h.kms
        .tag_resource()
        .key_id(&key)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("decommission")
                .tag_value("scheduled")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let response = h
        .http
        .post(h.url("/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "TrentService.UntagResource")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
        .header("user-agent", "rehearsal/1.0")
        .body(json!({"KeyId": key, "TagKeys": ["decommission"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let tagged = lookup(&h, Some((LookupAttributeKey::EventName, "TagResource"))).await;
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].read_only(), Some("false"));
    let r = record(&tagged[0]);
    assert_eq!(
        r["requestParameters"],
        json!({"keyId": key, "tags": [{"tagKey": "decommission", "tagValue": "scheduled"}]})
    );
    assert_eq!(r["readOnly"], false);
    assert_eq!(r["resources"][0]["ARN"], key_arn(&key));

    let untagged = lookup(&h, Some((LookupAttributeKey::EventName, "UntagResource"))).await;
    let r = record(&untagged[0]);
    assert_eq!(
        r["sourceIPAddress"], "203.0.113.7",
        "first X-Forwarded-For entry"
    );
    assert_eq!(r["userAgent"], "rehearsal/1.0");
    assert_eq!(
        r["requestParameters"],
        json!({"keyId": key, "tagKeys": ["decommission"]})
    );
}

#[tokio::test]
async fn every_lookup_attribute_filters() {
    let h = harness().await;
    register(&h, PAYMENTS_KEY, PAYMENTS_ARN).await;
    register(&h, ADMIN_KEY, ADMIN_ARN).await;
    let endpoint = h.emulator.endpoint();
    let app = client_as(&endpoint, PAYMENTS_KEY);
    let admin = client_as(&endpoint, ADMIN_KEY);
    let create = |client: &aws_sdk_kms::Client| {
        let client = client.clone();
        async move {
            client
                .create_key()
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .key_id
                .clone()
        }
    };
    let key1 = create(&app).await; // CreateKey (app)
    let key2 = create(&admin).await; // CreateKey (admin)
    app.describe_key().key_id(&key1).send().await.unwrap(); // DescribeKey (app)
    app.list_keys().send().await.unwrap(); // ListKeys (app), no resource
    h.advance(86_400.0).await;
    let later = h.admin_get("/_emulator/clock").await["now"]
        .as_f64()
        .unwrap();
    admin
        .schedule_key_deletion()
        .key_id(&key2)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap(); // ScheduleKeyDeletion (admin), a day later

    let all = lookup(&h, None).await;
    assert_eq!(
        names(&all),
        vec![
            "ScheduleKeyDeletion",
            "ListKeys",
            "DescribeKey",
            "CreateKey",
            "CreateKey"
        ],
        "newest first"
    );
    let id_of = |name: &str| {
        all.iter()
            .find(|e| e.event_name() == Some(name))
            .and_then(|e| e.event_id())
            .unwrap()
            .to_string()
    };
    let cases: Vec<(LookupAttributeKey, String, Vec<&str>)> = vec![
        (
            LookupAttributeKey::EventId,
            id_of("DescribeKey"),
            vec!["DescribeKey"],
        ),
        (
            LookupAttributeKey::EventName,
            "CreateKey".into(),
            vec!["CreateKey", "CreateKey"],
        ),
        (
            LookupAttributeKey::ReadOnly,
            "true".into(),
            vec!["ListKeys", "DescribeKey"],
        ),
        (
            LookupAttributeKey::ReadOnly,
            "false".into(),
            vec!["ScheduleKeyDeletion", "CreateKey", "CreateKey"],
        ),
        (
            LookupAttributeKey::Username,
            "payments-app".into(),
            vec!["ListKeys", "DescribeKey", "CreateKey"],
        ),
        (
            LookupAttributeKey::Username,
            "alice".into(),
            vec!["ScheduleKeyDeletion", "CreateKey"],
        ),
        (
            LookupAttributeKey::ResourceType,
            "AWS::KMS::Key".into(),
            vec![
                "ScheduleKeyDeletion",
                "DescribeKey",
                "CreateKey",
                "CreateKey",
            ],
        ),
        (
            LookupAttributeKey::ResourceType,
            "AWS::S3::Bucket".into(),
            vec![],
        ),
        (
            LookupAttributeKey::ResourceName,
            key_arn(&key2),
            vec!["ScheduleKeyDeletion", "CreateKey"],
        ),
        (
            LookupAttributeKey::EventSource,
            "kms.amazonaws.com".into(),
            vec![
                "ScheduleKeyDeletion",
                "ListKeys",
                "DescribeKey",
                "CreateKey",
                "CreateKey",
            ],
        ),
        (
            LookupAttributeKey::EventSource,
            "s3.amazonaws.com".into(),
            vec![],
        ),
        (
            LookupAttributeKey::AccessKeyId,
            ADMIN_KEY.into(),
            vec!["ScheduleKeyDeletion", "CreateKey"],
        ),
    ];
    for (key, value, expected) in cases {
        let found = lookup(&h, Some((key.clone(), &value))).await;
        assert_eq!(names(&found), expected, "{key:?} = {value}");
    }

    // the time range is inclusive and compares whole seconds
    let ct = cloudtrail(&endpoint, AUDITOR_KEY);
    let before = ct
        .lookup_events()
        .end_time(DateTime::from_secs(later as i64 - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(before.events().len(), 4);
    let after = ct
        .lookup_events()
        .start_time(DateTime::from_secs(later as i64 - 1))
        .end_time(DateTime::from_secs(later as i64 + 60))
        .send()
        .await
        .unwrap();
    let after: Vec<&str> = after
        .events()
        .iter()
        .filter_map(|e| e.event_name())
        .collect();
    assert_eq!(after, vec!["ScheduleKeyDeletion"]);
    // Insights events are not emulated: the insight category has none
    let insights = ct
        .lookup_events()
        .event_category(aws_sdk_cloudtrail::types::EventCategory::Insight)
        .send()
        .await
        .unwrap();
    assert!(insights.events().is_empty());
}

#[tokio::test]
async fn pages_have_no_duplicates_or_gaps_while_calls_continue() {
    let h = harness().await;
    for _ in 0..120 {
        h.kms.list_keys().send().await.unwrap();
    }
    let first_120: Vec<String> = admin_records(&h)
        .await
        .iter()
        .rev()
        .map(|e| e["record"]["eventID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first_120.len(), 120);

    let ct = cloudtrail(&h.emulator.endpoint(), AUDITOR_KEY);
    let mut seen: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ct
            .lookup_events()
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(
            pages <= 3,
            "120 events need 3 pages of 50; a 4th means the cursor moved"
        );
        assert!(page.events().len() <= 50);
        seen.extend(
            page.events()
                .iter()
                .filter_map(|e| e.event_id().map(String::from)),
        );
        // calls keep coming between pages
        for _ in 0..7 {
            h.kms.describe_custom_key_stores().send().await.unwrap();
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, first_120, "newest first, no duplicate, no gap");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 120);

    // a new lookup sees the new calls; a token only works with the parameters it was issued for
    let now = lookup(&h, None).await;
    assert_eq!(now.len(), 120 + 21);
    let page = ct.lookup_events().max_results(10).send().await.unwrap();
    assert_eq!(page.events().len(), 10);
    let err = ct
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "ListKeys"))
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_invalid_next_token_exception());
}

#[tokio::test]
async fn the_delivery_delay_hides_an_event_until_it_passes() {
    let h = harness().await;
    assert_eq!(
        h.admin_get("/_emulator/config").await["cloudtrail_delivery_delay"],
        0.0
    );
    h.set_config(json!({"cloudtrail_delivery_delay": 300}))
        .await;
    h.kms.list_keys().send().await.unwrap();
    assert!(lookup(&h, None).await.is_empty(), "not delivered yet");
    let records = admin_records(&h).await;
    assert_eq!(records.len(), 1, "recorded at once");
    assert_eq!(records[0]["delivered"], false);
    h.advance(295.0).await;
    assert!(lookup(&h, None).await.is_empty(), "295 s after the call");
    h.advance(10.0).await;
    let events = lookup(&h, None).await;
    assert_eq!(names(&events), vec!["ListKeys"]);
    assert_eq!(admin_records(&h).await[0]["delivered"], true);
    let (status, _) = h
        .admin_post(
            "/_emulator/config",
            json!({"cloudtrail_delivery_delay": -1}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn lookup_events_is_throttled_beyond_two_per_second() {
    let h = harness_with(EmulatorConfig::default()).await; // quotas on
    let ct = cloudtrail(&h.emulator.endpoint(), AUDITOR_KEY);
    let started = Instant::now();
    let mut throttled = 0;
    for _ in 0..20 {
        if let Err(err) = ct.lookup_events().send().await {
            assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
            let service = err.into_service_error();
            assert!(!service.is_invalid_lookup_attributes_exception());
            throttled += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(throttled >= 1, "20 calls in {elapsed:.2} s at 2/s");
    assert!(
        f64::from(20 - throttled) <= 2.0 + 2.0 * elapsed + 1e-9,
        "{} passed in {elapsed:.2} s",
        20 - throttled
    );
    let (status, body) = raw_lookup(&h, "CloudTrail_20131101.LookupEvents", "{}").await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "ThrottlingException");
    assert!(body["Message"].is_string());
    // KMS quotas are separate
    h.kms
        .list_keys()
        .send()
        .await
        .expect("ListKeys not throttled");
    // and the switch turns the LookupEvents quota off as well
    h.set_config(json!({"quotas": false})).await;
    for _ in 0..20 {
        ct.lookup_events().send().await.expect("quotas off");
    }
}

#[tokio::test]
async fn bad_requests_get_their_named_errors() {
    let h = harness().await;
    let ct = cloudtrail(&h.emulator.endpoint(), AUDITOR_KEY);
    let err = ct
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "Decrypt"))
        .lookup_attributes(attribute(LookupAttributeKey::Username, "alice"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_lookup_attributes_exception(), "{err:?}");
    let err = ct
        .lookup_events()
        .start_time(DateTime::from_secs(2_000_000_000))
        .end_time(DateTime::from_secs(1_000_000_000))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_time_range_exception(), "{err:?}");
    for max in [0, 51] {
        let err = ct
            .lookup_events()
            .max_results(max)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_invalid_max_results_exception(), "{max}: {err:?}");
    }
    let err = ct
        .lookup_events()
        .next_token("not-a-token-we-issued")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_next_token_exception(), "{err:?}");
    assert!(err.message().is_some());

    for (body, expected) in [
        (
            r#"{"EventCategory": "data"}"#,
            "InvalidEventCategoryException",
        ),
        (
            r#"{"LookupAttributes": [{"AttributeKey": "Color", "AttributeValue": "red"}]}"#,
            "InvalidLookupAttributesException",
        ),
        (
            r#"{"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "maybe"}]}"#,
            "InvalidLookupAttributesException",
        ),
        (r#"{"StartTime": "yesterday"}"#, "SerializationException"),
        ("{nope", "SerializationException"),
    ] {
        let (status, answer) = raw_lookup(&h, "CloudTrail_20131101.LookupEvents", body).await;
        assert_eq!(
            (status, answer["__type"].as_str()),
            (400, Some(expected)),
            "{body}"
        );
    }
    let (status, answer) = raw_lookup(&h, "CloudTrail_20131101.DescribeTrails", "{}").await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );
    // botocore's target prefix (AWS CLI, boto3) reaches the same operation
    let (status, answer) = raw_lookup(
        &h,
        "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
        "{}",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["Events"].is_array());
}

#[tokio::test]
async fn faults_reach_lookup_events_by_name_and_lookups_are_logged_not_trailed() {
    let h = harness().await;
    let ct = cloudtrail(&h.emulator.endpoint(), AUDITOR_KEY);
    let fault = |error: &str, count: u64| json!({"operation": "LookupEvents", "error": error, "count": count});
    let (status, body) = h
        .admin_post("/_emulator/faults", fault("ThrottlingException", 1))
        .await;
    assert_eq!(status, 200, "{body}");
    let err = ct.lookup_events().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
    ct.lookup_events()
        .send()
        .await
        .expect("one throttled call only");

    h.admin_post("/_emulator/faults", fault("KMSInternalException", 1))
        .await;
    let (status, answer) = raw_lookup(&h, "CloudTrail_20131101.LookupEvents", "{}").await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (500, Some("InternalFailure"))
    );
    h.admin_post("/_emulator/faults", fault("DependencyTimeoutException", 1))
        .await;
    let (status, answer) = raw_lookup(&h, "CloudTrail_20131101.LookupEvents", "{}").await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (503, Some("ServiceUnavailable"))
    );

    // the SDK retries the 500s on its own (standard mode, 3 attempts)
    h.admin_post("/_emulator/faults", fault("KMSInternalException", 2))
        .await;
    let retrying = aws_sdk_cloudtrail::Client::from_conf(
        ct.config()
            .to_builder()
            .retry_config(
                aws_sdk_cloudtrail::config::retry::RetryConfig::standard()
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .build(),
    );
    retrying
        .lookup_events()
        .send()
        .await
        .expect("third attempt succeeds");

    // "*" rules are for KMS operations only
    h.admin_post(
        "/_emulator/faults",
        json!({"operation": "*", "error": "KMSInternalException", "count": 1}),
    )
    .await;
    ct.lookup_events().send().await.expect("not hit by *");
    assert_eq!(
        code(&h.kms.list_keys().send().await.unwrap_err()),
        "KMSInternalException"
    );

    // latency applies to LookupEvents too
    h.admin_post("/_emulator/faults", json!({"latency_ms": 150}))
        .await;
    let started = Instant::now();
    ct.lookup_events().send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    h.admin_delete("/_emulator/faults").await;

    let lookups: Vec<String> = h
        .calls()
        .await
        .iter()
        .filter(|c| c["operation"] == "LookupEvents")
        .map(|c| c["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        lookups,
        vec![
            "ThrottlingException",
            "OK",
            "InternalFailure",
            "ServiceUnavailable",
            "InternalFailure",
            "InternalFailure",
            "OK",
            "OK",
            "OK"
        ]
    );
    let trailed = admin_records(&h).await;
    assert_eq!(trailed.len(), 1, "only the faulted ListKeys");
    assert_eq!(trailed[0]["record"]["eventName"], "ListKeys");
    assert_eq!(trailed[0]["record"]["errorCode"], "KMSInternalException");
}

#[tokio::test]
async fn refused_kms_calls_are_recorded_too_and_old_events_expire() {
    let h = harness_with(EmulatorConfig::default()).await; // quotas on
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
        .clone();
    let err = h
        .kms
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(3)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    let missing = "00000000-0000-0000-0000-000000000000";
    h.kms
        .describe_key()
        .key_id(missing)
        .send()
        .await
        .unwrap_err();
    h.admin_post(
        "/_emulator/faults",
        json!({"operation": "DisableKey", "error": "KMSInternalException", "count": 1}),
    )
    .await;
    h.kms.disable_key().key_id(&key).send().await.unwrap_err();
    for _ in 0..8 {
        let _ = h.kms.enable_key().key_id(&key).send().await;
    }
    h.raw("DescribeKey", "{nope").await;
    h.raw("NoSuchOperation", "{}").await;
    let unsigned_untargeted = h
        .http
        .post(h.url("/"))
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(unsigned_untargeted, 400);

    h.set_config(json!({"quotas": false})).await; // the lookups below come faster than 2/s
    let events = lookup(&h, None).await;
    let outcome = |e: &Event| {
        let r = record(e);
        (
            r["eventName"].as_str().unwrap().to_string(),
            r["errorCode"].as_str().map(String::from),
            r["resources"][0]["ARN"].as_str().map(String::from),
        )
    };
    let mut outcomes: Vec<_> = events.iter().map(outcome).collect();
    outcomes.reverse();
    let arn = Some(key_arn(&key));
    assert_eq!(
        outcomes[..4],
        [
            ("CreateKey".to_string(), None, arn.clone()),
            (
                "ScheduleKeyDeletion".into(),
                Some("ValidationException".into()),
                arn.clone()
            ),
            ("DescribeKey".into(), Some("NotFoundException".into()), None),
            (
                "DisableKey".into(),
                Some("KMSInternalException".into()),
                arn.clone()
            ),
        ]
    );
    let enables: Vec<_> = outcomes.iter().filter(|o| o.0 == "EnableKey").collect();
    assert_eq!(enables.len(), 8);
    assert!(enables
        .iter()
        .any(|o| o.1.as_deref() == Some("ThrottlingException") && o.2 == arn));
    let tail: Vec<_> = outcomes[12..].to_vec();
    assert_eq!(
        tail,
        vec![
            (
                "DescribeKey".into(),
                Some("SerializationException".into()),
                None
            ),
            (
                "NoSuchOperation".into(),
                Some("UnknownOperationException".into()),
                None
            ),
        ],
        "a call without X-Amz-Target names no action and is not recorded"
    );
    assert_eq!(record(&events[1])["requestParameters"], Value::Null);

    // 90 days later the events are gone from LookupEvents; later calls are there
    h.advance(90.0 * 86_400.0 + 60.0).await;
    assert!(lookup(&h, None).await.is_empty());
    h.kms.list_keys().send().await.unwrap();
    assert_eq!(names(&lookup(&h, None).await), vec!["ListKeys"]);
    // A longer history (the local stack's setting) keeps them past 90 days.
    let (status, _) = h
        .admin_post(
            "/_emulator/config",
            json!({"cloudtrail_retention_days": 365.0}),
        )
        .await;
    assert_eq!(status, 200);
    h.advance(200.0 * 86_400.0).await;
    assert_eq!(names(&lookup(&h, None).await), vec!["ListKeys"]);
    let (status, _) = h
        .admin_post("/_emulator/config", json!({"cloudtrail_retention_days": 0}))
        .await;
    assert_eq!(status, 400, "a history must last some time");
    // reset forgets every record
    h.admin_post("/_emulator/reset", json!({})).await;
    assert!(admin_records(&h).await.is_empty());
}

#[tokio::test]
async fn get_key_last_usage_points_at_the_cloudtrail_event_of_the_use() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
        .clone();
    let out = h
        .kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .unwrap();
    let request_id = out.request_id().expect("request id").to_string();
    let usage = h
        .kms
        .get_key_last_usage()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let last = usage.key_last_usage().expect("last usage");
    let events = lookup(&h, Some((LookupAttributeKey::EventName, "Encrypt"))).await;
    assert_eq!(last.cloud_trail_event_id(), events[0].event_id());
    assert_eq!(last.kms_request_id(), Some(request_id.as_str()));
    assert_eq!(record(&events[0])["requestID"], request_id.as_str());
}

#[tokio::test]
async fn a_key_deleted_at_the_end_of_its_window_leaves_a_delete_key_service_event() {
    let h = harness().await;
    let store = h.cloudhsm_store("ct-delete", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    let connected = h.cloudhsm_key(&store).await;
    let orphaned = h.cloudhsm_key(&store).await;
    let ordinary = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    for key in [&connected, &ordinary] {
        h.kms
            .schedule_key_deletion()
            .key_id(key)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
    }
    h.advance(8.0 * 86400.0).await;
    h.kms
        .schedule_key_deletion()
        .key_id(&orphaned)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.disconnect(&store).await;
    h.advance(8.0 * 86400.0).await;

    let events = lookup(&h, Some((LookupAttributeKey::EventName, "DeleteKey"))).await;
    assert_eq!(events.len(), 3, "{:?}", names(&events));
    let by_key = |key: &str| {
        let arn = key_arn(key);
        let event = events
            .iter()
            .find(|e| {
                e.resources()
                    .iter()
                    .any(|r| r.resource_name() == Some(&arn))
            })
            .unwrap_or_else(|| panic!("no DeleteKey event for {arn}"));
        (event.clone(), record(event))
    };
    let (event, deleted) = by_key(&connected);
    assert_eq!(event.event_source(), Some("kms.amazonaws.com"));
    assert_eq!(deleted["eventType"], "AwsServiceEvent");
    assert_eq!(deleted["userIdentity"]["invokedBy"], "AWS Internal");
    assert_eq!(deleted["responseElements"]["keyId"], key_arn(&connected));
    assert_eq!(deleted["resources"][0]["ARN"], key_arn(&connected));
    let data = &deleted["additionalEventData"];
    assert_eq!(data["customKeyStoreId"], store.as_str());
    assert_eq!(data["clusterId"], "cluster-234567abcdefg");
    // Both are JSON text holding an array, as KMS writes them.
    let backing: Value = serde_json::from_str(data["backingKeys"].as_str().unwrap()).unwrap();
    let status: Value =
        serde_json::from_str(data["backingKeysDeletionStatus"].as_str().unwrap()).unwrap();
    assert!(backing[0]["keyHandle"].is_string() && backing[0]["backingKeyId"].is_string());
    assert_eq!(status[0]["backingKeyId"], backing[0]["backingKeyId"]);
    assert_eq!(status[0]["deletionStatus"], "SUCCESS");

    let (_, deleted) = by_key(&orphaned);
    let data = &deleted["additionalEventData"];
    let status: Value =
        serde_json::from_str(data["backingKeysDeletionStatus"].as_str().unwrap()).unwrap();
    assert_eq!(status[0]["deletionStatus"], "FAILURE");

    // A key whose material KMS holds has no backing keys to report.
    let (_, deleted) = by_key(&ordinary);
    assert!(deleted.get("additionalEventData").is_none());
    assert_eq!(deleted["eventType"], "AwsServiceEvent");
}
