//! The triggers on the local stack: the KMS emulator (real aws-sdk-kms over HTTP) for the store,
//! key and cluster checks, moto's server for Step Functions and SSM, and the sample events of
//! events/triggers/ as input. Run with `--nocapture` to see per-request timings.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_sdk_kms::types::{OriginType, Tag};
use base64::Engine as _;
use common::moto::Moto;
use common::{cluster_id_for, Env};
use kms_decommission::kms::Kms;
use kms_decommission::sfn::Executions;
use kms_decommission::sfn::RunMode;
use kms_decommission::triggers::tag::{
    Refusal, TagCallLookup, TagOutcome, TagTrigger, TagTriggerConfig, CONFIRM_TAG_KEY,
    DEFAULT_TAG_KEY,
};
use kms_decommission::triggers::tagger::AllowedPrincipals;
use kms_decommission::triggers::webhook::secret::{SecretCache, SecretSource};
use kms_decommission::triggers::webhook::signature::WebhookSecret;
use kms_decommission::triggers::webhook::{Webhook, MAX_BODY_BYTES};
use serde_json::{json, Value};

/// The test secret the webhook samples are signed with (events/triggers/README.md).
const TEST_SECRET: &str = "example-webhook-secret-not-for-production-0123";
const SAMPLE_STORE_ID: &str = "cks-1234567890abcdef0";
const SAMPLE_STORE_NAME: &str = "ExampleCloudHsmStore";
/// The role whose sessions may start runs by tag (the API-call sample's caller is one).
const KEY_ADMIN_ROLE: &str = "arn:aws:iam::123456789012:role/KeyAdmin";
/// A session of that role, and the access key it signs with (the emulator's identities).
const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice@example.com";
const ALICE_KEY_ID: &str = "ASIAKEYADMINALICE001";
/// A user not allowed to start runs by tag.
const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";
const MALLORY_KEY_ID: &str = "AKIAMALLORY000000001";

fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("events/triggers")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn key_arn(env: &Env, key_id: &str) -> String {
    env.describe_key(key_id).await.unwrap().arn.unwrap()
}

async fn tag(env: &Env, key_id: &str, tags: &[(&str, &str)]) {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().unwrap())
        .collect();
    env.kms
        .tag_resource()
        .key_id(key_id)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
}

/// The KMS-key sample, about `resource`, with the tags the resource has after the change.
fn key_event(sample_name: &str, resource: &str, tags: &[(&str, &str)]) -> Value {
    let mut event = sample(sample_name);
    event["resources"] = json!([resource]);
    event["detail"]["tags"] = tags
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    event
}

/// TagResource of `tags` on `key_id` in one call, signed with access key `access_key_id`; the
/// API-call event EventBridge delivers for it: the sample's envelope around the emulator's own
/// CloudTrail record of the call (who called, with what, under which event id).
async fn tag_as(env: &Env, access_key_id: &str, key_id: &str, tags: &[(&str, &str)]) -> Value {
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                access_key_id,
                "secret",
                None,
                None,
                "tagger",
            ))
            .endpoint_url(env.emulator.endpoint())
            .build(),
    );
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().unwrap())
        .collect();
    kms.tag_resource()
        .key_id(key_id)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    let trail = env.admin_get("/_emulator/cloudtrail").await;
    let record = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["record"]["eventName"] == "TagResource")
        .max_by_key(|e| e["seq"].as_u64())
        .unwrap()["record"]
        .clone();
    let mut event = sample("api-call-tag-resource-kms-key.json");
    event["detail"] = record;
    event
}

struct Stack {
    env: Env,
    moto: Moto,
    machine: String,
}

impl Stack {
    async fn start() -> Self {
        let identities = BTreeMap::from([
            (ALICE_KEY_ID.to_owned(), ALICE.to_owned()),
            (MALLORY_KEY_ID.to_owned(), MALLORY.to_owned()),
        ]);
        let emulator = kms_emulator::EmulatorConfig {
            quotas: false,
            identities,
            ..kms_emulator::EmulatorConfig::fast()
        };
        let (env, moto) = tokio::join!(Env::start_with(emulator), Moto::start());
        let machine = moto.create_state_machine("Decommission").await;
        Self { env, moto, machine }
    }

    fn trigger(&self, mode: RunMode) -> TagTrigger {
        let executions = Executions::new(self.moto.sfn(), self.machine.clone(), None);
        TagTrigger::new(
            Kms::with_default_pacing(self.env.kms.clone()),
            executions,
            self.env.cloudtrail(50.0),
            TagTriggerConfig {
                tag_key: DEFAULT_TAG_KEY.into(),
                mode,
                allowed_principals: AllowedPrincipals::parse(KEY_ADMIN_ROLE).unwrap(),
                lookup: TagCallLookup {
                    window: Duration::from_secs(1),
                    interval: Duration::from_millis(200),
                },
            },
        )
    }

    async fn executions(&self) -> Vec<(String, Value)> {
        let sfn = self.moto.sfn();
        let mut found = Vec::new();
        for name in self.moto.execution_names(&self.machine).await {
            let arn = kms_decommission::sfn::execution_arn(&self.machine, &name).unwrap();
            let described = sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .unwrap();
            found.push((
                name,
                serde_json::from_str(described.input().unwrap()).unwrap(),
            ));
        }
        found
    }
}

fn refused(outcome: &TagOutcome) -> &str {
    match outcome {
        TagOutcome::Refused(r) => r.name(),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn tag_changes_start_one_dry_run_per_store_and_wrong_tags_start_nothing() {
    let stack = Stack::start().await;
    let env = &stack.env;
    let store = env.cloudhsm_store("Prod").await;
    let mut keys = Vec::new();
    for i in 0..3 {
        keys.push(env.store_key(&store, OriginType::AwsCloudhsm, i).await);
    }
    let other = env.cloudhsm_store("Other").await;
    let foreign = env.store_key(&other, OriginType::AwsCloudhsm, 9).await;
    let plain = env.plain_key().await;
    let trigger = stack.trigger(RunMode::DryRun);
    let tagged = [(DEFAULT_TAG_KEY, store.as_str())];
    env.clear_calls().await;

    // An AWS_KMS-origin key, a key of another store, a value that is no store id, a removed tag.
    tag(env, &plain, &tagged).await;
    let outcome = trigger
        .handle(&key_event(
            "tag-change-kms-key.json",
            &key_arn(env, &plain).await,
            &tagged,
        ))
        .await
        .unwrap();
    assert_eq!(refused(&outcome), "KeyNotInCustomKeyStore");
    tag(env, &foreign, &tagged).await;
    let outcome = trigger
        .handle(&key_event(
            "tag-change-kms-key.json",
            &key_arn(env, &foreign).await,
            &tagged,
        ))
        .await
        .unwrap();
    assert_eq!(refused(&outcome), "KeyInOtherStore");
    let wrong = [(DEFAULT_TAG_KEY, "Prod")];
    tag(env, &keys[0], &wrong).await;
    let outcome = trigger
        .handle(&key_event(
            "tag-change-kms-key.json",
            &key_arn(env, &keys[0]).await,
            &wrong,
        ))
        .await
        .unwrap();
    assert_eq!(refused(&outcome), "InvalidTagValue");
    let removed = key_event(
        "tag-change-kms-key-removed.json",
        &key_arn(env, &keys[0]).await,
        &[("Owner", "platform-security")],
    );
    assert!(matches!(
        trigger.handle(&removed).await.unwrap(),
        TagOutcome::Ignored(_)
    ));
    assert!(stack.executions().await.is_empty(), "nothing started");

    // Every key of the store tagged: one dry run.
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for key in &keys {
        tag(env, key, &tagged).await;
        let event = key_event("tag-change-kms-key.json", &key_arn(env, key).await, &tagged);
        outcomes.push(trigger.handle(&event).await.unwrap());
    }
    eprintln!(
        "tag trigger: {} events handled in {:?}",
        keys.len(),
        started.elapsed()
    );
    assert!(
        matches!(
            outcomes[0],
            TagOutcome::Started {
                mode: RunMode::DryRun,
                ..
            }
        ),
        "{}",
        outcomes[0]
    );
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o, TagOutcome::AlreadyRunning { .. })),
        "{outcomes:?}"
    );

    // The cluster behind the store: the same dry run; a cluster that backs another store: refused.
    let mut cluster_event = sample("tag-change-cloudhsm-cluster.json");
    cluster_event["detail"]["tags"][DEFAULT_TAG_KEY] = json!(store);
    cluster_event["resources"] = json!([format!(
        "arn:aws:cloudhsm:us-east-1:123456789012:cluster/{}",
        cluster_id_for("Prod")
    )]);
    assert!(matches!(
        trigger.handle(&cluster_event).await.unwrap(),
        TagOutcome::AlreadyRunning { .. }
    ));
    cluster_event["resources"] = json!([format!(
        "arn:aws:cloudhsm:us-east-1:123456789012:cluster/{}",
        cluster_id_for("Other")
    )]);
    assert_eq!(
        refused(&trigger.handle(&cluster_event).await.unwrap()),
        "ClusterDoesNotBackStore"
    );

    let executions = stack.executions().await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let (name, input) = &executions[0];
    assert_eq!(name, &format!("tag-dryrun-{store}-1"));
    assert_eq!(
        (
            input["CustomKeyStoreId"].as_str(),
            input["DryRun"].as_bool()
        ),
        (Some(store.as_str()), Some(true))
    );
    // The only changes KMS saw are the six TagResource calls of this test: the trigger only reads.
    let mutating: Vec<String> = env
        .mutating_calls()
        .await
        .into_iter()
        .map(|c| c.operation)
        .collect();
    assert_eq!(mutating, vec!["TagResource"; 6]);
}

#[tokio::test]
async fn in_decommission_mode_only_the_confirmed_store_name_starts_a_decommission() {
    let stack = Stack::start().await;
    let env = &stack.env;
    let store = env.cloudhsm_store("Prod").await;
    let key = env.store_key(&store, OriginType::AwsCloudhsm, 0).await;
    let second = env.store_key(&store, OriginType::AwsCloudhsm, 1).await;
    let trigger = stack.trigger(RunMode::Decommission);

    let wrong = [(DEFAULT_TAG_KEY, store.as_str()), (CONFIRM_TAG_KEY, "prod")];
    let event = tag_as(env, ALICE_KEY_ID, &key, &wrong).await;
    let outcome = trigger.handle(&event).await.unwrap();
    assert_eq!(refused(&outcome), "ConfirmationMismatch");
    assert!(stack.executions().await.is_empty());

    // Mallory tags; the event handed to the function says Alice did: CloudTrail's record of
    // that event id names Mallory. An event id CloudTrail never shows is not trusted either.
    let right = [(DEFAULT_TAG_KEY, store.as_str()), (CONFIRM_TAG_KEY, "Prod")];
    let mut forged = tag_as(env, MALLORY_KEY_ID, &key, &right).await;
    assert_eq!(forged["detail"]["userIdentity"]["arn"], MALLORY);
    let alice_identity = event["detail"]["userIdentity"].clone();
    assert_eq!(alice_identity["arn"], ALICE);
    forged["detail"]["userIdentity"] = alice_identity;
    let outcome = trigger.handle(&forged).await.unwrap();
    let TagOutcome::Refused(Refusal::TagCallDiffersFromCloudTrail { differs, .. }) = &outcome
    else {
        panic!("expected TagCallDiffersFromCloudTrail, got {outcome}")
    };
    assert_eq!(differs, "caller");
    forged["detail"]["eventID"] = json!("00000000-0000-4000-8000-000000000000");
    let outcome = trigger.handle(&forged).await.unwrap();
    assert_eq!(refused(&outcome), "TagCallNotInCloudTrail");
    assert!(stack.executions().await.is_empty());

    let event = tag_as(env, ALICE_KEY_ID, &key, &right).await;
    let outcome = trigger.handle(&event).await.unwrap();
    assert!(
        matches!(
            outcome,
            TagOutcome::Started {
                mode: RunMode::Decommission,
                ..
            }
        ),
        "{outcome}"
    );
    let event = tag_as(env, ALICE_KEY_ID, &second, &right).await;
    let again = trigger.handle(&event).await.unwrap();
    assert!(
        matches!(again, TagOutcome::AlreadyRunning { .. }),
        "{again}"
    );

    let executions = stack.executions().await;
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].1["ConfirmCustomKeyStoreName"], "Prod");
    assert_eq!(executions[0].1["DryRun"], false);
    assert_eq!(
        executions[0].1["RequestedBy"],
        "arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice@example.com"
    );
    assert_eq!(
        env.key_state(&key).await,
        "Enabled",
        "a trigger never changes a key"
    );
}

/// A sample webhook request with `replace` applied to its body, signed again with `secret` at `at`.
fn webhook_request(
    sample_name: &str,
    store: &str,
    at: i64,
    secret: &str,
) -> LambdaFunctionUrlRequest {
    let mut request: LambdaFunctionUrlRequest =
        serde_json::from_value(sample(sample_name)).unwrap();
    let raw = request.body.clone().unwrap();
    let body = if request.is_base64_encoded {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    } else {
        raw
    };
    let body = body.replace(SAMPLE_STORE_ID, store);
    let timestamp = at.to_string();
    let signature = WebhookSecret::new(secret.as_bytes())
        .unwrap()
        .sign(&timestamp, body.as_bytes());
    request
        .headers
        .insert("x-signature-timestamp", timestamp.parse().unwrap());
    request
        .headers
        .insert("x-signature", signature.parse().unwrap());
    request.body = Some(if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.encode(body.as_bytes())
    } else {
        body
    });
    request
}

async fn answer(
    webhook: &Webhook,
    request: &LambdaFunctionUrlRequest,
    label: &str,
) -> (i64, Value) {
    let started = Instant::now();
    let response = webhook.handle(request, now()).await;
    eprintln!(
        "webhook {label}: {} in {:?}",
        response.status_code,
        started.elapsed()
    );
    (
        response.status_code,
        serde_json::from_str(response.body.as_deref().unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn the_webhook_samples_start_once_report_status_and_cancel() {
    let stack = Stack::start().await;
    let env = &stack.env;
    let cancel_machine = stack.moto.create_state_machine("Cancel").await;
    let store = env.cloudhsm_store(SAMPLE_STORE_NAME).await;
    let key = env.store_key(&store, OriginType::AwsCloudhsm, 0).await;

    // The secret lives in moto's SSM as a SecureString and is read the way the function does.
    let config = stack.moto.sdk_config().await;
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name("/kms-decommission/webhook-secret")
        .value(TEST_SECRET)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    // Read again on every request (cache time 0): what SSM holds now decides.
    let secret = SecretCache::load(
        SecretSource::SsmParameter("/kms-decommission/webhook-secret".into()),
        &config,
        std::time::Duration::ZERO,
        "kms-decommission",
    )
    .await
    .unwrap();
    let executions = Executions::new(
        stack.moto.sfn(),
        stack.machine.clone(),
        Some(cancel_machine.clone()),
    );
    let webhook = Webhook::new(
        secret,
        Kms::with_default_pacing(env.kms.clone()),
        executions,
    );
    env.clear_calls().await;

    // Refused requests: no KMS call at all, no execution.
    let at = now();
    let refusals: Vec<(&str, LambdaFunctionUrlRequest, i64, &str)> = vec![
        (
            "wrong secret",
            webhook_request(
                "webhook-start.json",
                &store,
                at,
                "a-different-secret-0123456789abcdef",
            ),
            401,
            "SignatureMismatch",
        ),
        (
            "stale",
            webhook_request("webhook-start.json", &store, at - 600, TEST_SECRET),
            401,
            "StaleTimestamp",
        ),
        (
            "no signature",
            {
                let mut r = webhook_request("webhook-start.json", &store, at, TEST_SECRET);
                r.headers.remove("x-signature");
                r
            },
            401,
            "MissingSignature",
        ),
        (
            "malformed JSON",
            {
                let mut r = webhook_request("webhook-status.json", &store, at, TEST_SECRET);
                let body = "{\"Action\":\"status\",".to_string();
                let ts = at.to_string();
                r.headers.insert(
                    "x-signature",
                    WebhookSecret::new(TEST_SECRET.as_bytes())
                        .unwrap()
                        .sign(&ts, body.as_bytes())
                        .parse()
                        .unwrap(),
                );
                r.body = Some(body);
                r
            },
            400,
            "MalformedJson",
        ),
        (
            "unknown action",
            {
                let mut r = webhook_request("webhook-status.json", &store, at, TEST_SECRET);
                let body = "{\"Action\":\"purge\",\"TicketId\":\"CHG-1234\"}".to_string();
                r.headers.insert(
                    "x-signature",
                    WebhookSecret::new(TEST_SECRET.as_bytes())
                        .unwrap()
                        .sign(&at.to_string(), body.as_bytes())
                        .parse()
                        .unwrap(),
                );
                r.body = Some(body);
                r
            },
            400,
            "UnknownAction",
        ),
        (
            "oversized",
            {
                let mut r = webhook_request("webhook-status.json", &store, at, TEST_SECRET);
                r.body = Some(" ".repeat(MAX_BODY_BYTES + 1));
                r
            },
            413,
            "PayloadTooLarge",
        ),
    ];
    for (label, request, status, error) in &refusals {
        let (got, body) = answer(&webhook, request, label).await;
        assert_eq!(
            (got, body["Error"].as_str().unwrap()),
            (*status, *error),
            "{label}: {body}"
        );
    }
    assert!(
        env.calls().await.is_empty(),
        "refused requests reach no KMS operation"
    );
    assert!(
        stack.executions().await.is_empty(),
        "refused requests start nothing"
    );

    // The dry run (base64 body), then the decommission delivered three times: one execution each.
    let at = now();
    let (status, dry) = answer(
        &webhook,
        &webhook_request("webhook-start-dry-run-base64.json", &store, at, TEST_SECRET),
        "start dry run",
    )
    .await;
    assert_eq!(status, 202, "{dry}");
    let start = webhook_request("webhook-start.json", &store, at, TEST_SECRET);
    let (status, first) = answer(&webhook, &start, "start").await;
    assert_eq!(status, 202, "{first}");
    for delivery in ["start again", "start a third time"] {
        let (status, again) = answer(&webhook, &start, delivery).await;
        assert_eq!(
            (status, &again["ExecutionArn"]),
            (200, &first["ExecutionArn"]),
            "{again}"
        );
    }
    let names: Vec<String> = stack
        .executions()
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["decom-CHG-1234", "dryrun-CHG-1234"]);

    let (status, report) = answer(
        &webhook,
        &webhook_request("webhook-status.json", &store, now(), TEST_SECRET),
        "status",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["Status"].as_str(), report["ExecutionArn"].as_str()),
        (Some("RUNNING"), first["ExecutionArn"].as_str())
    );
    assert_eq!(report["CustomKeyStoreId"], store.as_str());

    for delivery in ["cancel", "cancel again"] {
        let (status, cancelled) = answer(
            &webhook,
            &webhook_request("webhook-cancel.json", &store, now(), TEST_SECRET),
            delivery,
        )
        .await;
        assert!(status == 202 || status == 200, "{cancelled}");
        assert_eq!(cancelled["Result"], "CancelStarted", "{cancelled}");
    }
    let sfn = stack.moto.sfn();
    let decommission = sfn
        .describe_execution()
        .execution_arn(first["ExecutionArn"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(decommission.status().as_str(), "ABORTED");
    assert_eq!(
        stack.moto.execution_names(&cancel_machine).await,
        ["cancel-CHG-1234"]
    );

    assert!(
        env.mutating_calls().await.is_empty(),
        "the webhook itself never changes KMS"
    );
    assert_eq!(env.key_state(&key).await, "Enabled");

    // A rotation (docs/triggers.md): the parameter holds the new secret, then the old one on a
    // second line; both sign valid requests. Once the old line is removed, only the new one does.
    const NEW_SECRET: &str = "rotated-webhook-secret-0123456789abcdef";
    let ssm = aws_sdk_ssm::Client::new(&config);
    let put = |value: String| {
        ssm.put_parameter()
            .name("/kms-decommission/webhook-secret")
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
    };
    put(format!("{NEW_SECRET}\n{TEST_SECRET}")).await.unwrap();
    for secret in [NEW_SECRET, TEST_SECRET] {
        let (status, body) = answer(
            &webhook,
            &webhook_request("webhook-status.json", &store, now(), secret),
            "status during a rotation",
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    put(NEW_SECRET.to_owned()).await.unwrap();
    let (status, body) = answer(
        &webhook,
        &webhook_request("webhook-status.json", &store, now(), TEST_SECRET),
        "status with the retired secret",
    )
    .await;
    assert_eq!(
        (status, body["Error"].as_str()),
        (401, Some("SignatureMismatch"))
    );
    assert!(
        body["RequestId"].is_string(),
        "every refusal names the request id"
    );
    // A revoked secret (the parameter deleted) refuses everything: fail closed.
    ssm.delete_parameter()
        .name("/kms-decommission/webhook-secret")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(
        &webhook,
        &webhook_request("webhook-status.json", &store, now(), NEW_SECRET),
        "status after the secret was deleted",
    )
    .await;
    assert_eq!(
        (status, body["Error"].as_str()),
        (503, Some("SecretUnavailable"))
    );
}
