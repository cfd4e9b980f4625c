//! `emulator_request`: the KMS emulator's request handling as its HTTP endpoint runs it, on one
//! emulator state: the `X-Amz-Target` dispatch between KMS and CloudTrail, [`Input::parse`] of
//! the JSON body, every KMS operation ([`handle_call`]), CloudTrail `LookupEvents`
//! ([`handle_cloudtrail_call`]) and the caller's access key id from a SigV4 `Authorization`
//! header ([`access_key_id`]).
//!
//! An input is a sequence of calls, one a line: `<X-Amz-Target>` TAB `<JSON body>`. In bodies,
//! `$STORE<n>`, `$KEY<n>` and `$KEYARN<n>` stand for the id of the n-th store or key of the
//! state and the key's ARN (ids are random), `$BLOB` for the last ciphertext returned. Lines
//! `@advance <seconds>` move the emulated clock, `@auth <header>` sets the `Authorization`
//! header of the calls that follow.
//!
//! Properties: a body is read exactly when it is blank or a JSON object; every call is logged
//! once; an answer is a JSON object; an error has a 4xx/5xx status and a JSON body naming it;
//! a failed KMS call changes nothing in the state (stores, keys, aliases, deletions); the state
//! stays consistent (every key of a custom key store names a store that exists, every alias a
//! key that exists); an access key id read from a header is a valid one that the header holds.

use kms_emulator::cloudtrail::{self, Caller};
use kms_emulator::dispatch::{handle_call, handle_cloudtrail_call};
use kms_emulator::identity::{access_key_id, check_access_key_id};
use kms_emulator::ops::{Operation, RequestContext};
use kms_emulator::state::State;
use kms_emulator::wire::Input;
use kms_emulator::EmulatorConfig;
use serde_json::Value;

use super::mutate::{mutate_bytes, mutate_json, Rng};
use super::{Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "emulator_request",
    what: "kms-emulator: X-Amz-Target dispatch, wire::Input::parse, every operation, LookupEvents",
    bounded_cases: 5_000,
    run,
    mutate,
};

/// Most calls one input makes.
const MAX_CALLS: usize = 48;
/// Longest clock move, in emulated seconds (40 days: past any pending window).
const MAX_ADVANCE: f64 = 40.0 * 86_400.0;

const WORDS: &[&str] = &[
    "KeyId",
    "$KEY0",
    "$KEY3",
    "$KEY4",
    "$KEYARN3",
    "$STORE0",
    "$STORE1",
    "$BLOB",
    "CustomKeyStoreId",
    "CustomKeyStoreName",
    "CustomKeyStoreType",
    "AWS_CLOUDHSM",
    "EXTERNAL_KEY_STORE",
    "CloudHsmClusterId",
    "cluster-2a23b4cdefg",
    "TrustAnchorCertificate",
    "KeyStorePassword",
    "XksProxyUriEndpoint",
    "https://xks.example.com",
    "XksProxyUriPath",
    "/kms/xks/v1",
    "XksProxyConnectivity",
    "PUBLIC_ENDPOINT",
    "VPC_ENDPOINT_SERVICE",
    "XksProxyVpcEndpointServiceName",
    "XksProxyAuthenticationCredential",
    "AccessKeyId",
    "RawSecretAccessKey",
    "Origin",
    "AWS_KMS",
    "EXTERNAL",
    "XksKeyId",
    "Description",
    "KeyUsage",
    "ENCRYPT_DECRYPT",
    "KeySpec",
    "SYMMETRIC_DEFAULT",
    "Tags",
    "TagKey",
    "TagValue",
    "TagKeys",
    "AliasName",
    "alias/aws/s3",
    "alias/test",
    "TargetKeyId",
    "PendingWindowInDays",
    "Limit",
    "Marker",
    "Plaintext",
    "AA==",
    "CiphertextBlob",
    "EncryptionContext",
    "EncryptionAlgorithm",
    "NumberOfBytes",
    "KeySpec",
    "AES_256",
    "GrantTokens",
    "NewCustomKeyStoreName",
    "LookupAttributes",
    "AttributeKey",
    "AttributeValue",
    "EventName",
    "ResourceName",
    "StartTime",
    "EndTime",
    "MaxResults",
    "NextToken",
    "arn:aws:kms:us-east-1:123456789012:key/",
    "arn:aws:kms:us-east-1:123456789012:alias/aws/s3",
];

fn targets() -> Vec<String> {
    let mut all: Vec<String> = Operation::ALL
        .iter()
        .map(|op| format!("TrentService.{}", op.name()))
        .collect();
    all.push("CloudTrail_20131101.LookupEvents".into());
    all.push("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents".into());
    all.push("CloudTrail_20131101.CreateTrail".into());
    all.push("TrentService.GetKeyPolicy".into());
    all.push("TrentService.".into());
    all.push("CreateKey".into());
    all.push(String::new());
    all
}

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    if rng.one_in(10) {
        return mutate_bytes(rng, data, others, WORDS);
    }
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    for _ in 0..=rng.below(3) {
        let i = rng.below(lines.len());
        match rng.below(8) {
            0..=2 => {
                let (target, body) = lines[i].split_once('\t').unwrap_or((&lines[i], ""));
                let body = mutate_json(rng, body.as_bytes(), &[], WORDS);
                let body = String::from_utf8_lossy(&body).replace('\n', " ");
                lines[i] = format!("{target}\t{body}");
            }
            3 => {
                let body = lines[i].split_once('\t').map_or("", |(_, b)| b).to_owned();
                lines[i] = format!("{}\t{body}", rng.pick(&targets()));
            }
            4 if lines.len() < MAX_CALLS => {
                let copy = lines[i].clone();
                lines.insert(rng.below(lines.len() + 1), copy);
            }
            5 if lines.len() > 1 => {
                lines.remove(i);
            }
            6 => {
                let seconds = *rng.pick(&[1.0, 300.0, 1200.0, 3600.0, 86_400.0, 7.0 * 86_400.0]);
                lines.insert(i, format!("@advance {seconds}"));
            }
            _ if !others.is_empty() => {
                let other = String::from_utf8_lossy(&others[rng.below(others.len())]).into_owned();
                let other: Vec<&str> = other.lines().collect();
                if !other.is_empty() {
                    lines.insert(i, (*rng.pick(&other)).to_owned());
                }
            }
            _ => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

/// `$STORE<n>`, `$KEYARN<n>`, `$KEY<n>` and `$BLOB` in `body`, replaced.
fn substitute(state: &State, body: &str, blob: &str) -> String {
    if !body.contains('$') {
        return body.to_owned();
    }
    let stores: Vec<String> = state.stores().map(|(_, s)| s.id.clone()).collect();
    let keys: Vec<(String, String)> = state
        .keys()
        .map(|(_, k)| (k.id.clone(), k.arn.clone()))
        .collect();
    let mut out = body.replace("$BLOB", blob);
    for n in (0..10).rev() {
        if let Some(id) = stores.get(n) {
            out = out.replace(&format!("$STORE{n}"), id);
        }
        if let Some((id, arn)) = keys.get(n) {
            out = out.replace(&format!("$KEYARN{n}"), arn);
            out = out.replace(&format!("$KEY{n}"), id);
        }
    }
    out
}

/// The state as the admin API shows it, without the clock (which moves on its own).
fn comparable(state: &State) -> Value {
    let mut snapshot = state.snapshot();
    if let Some(fields) = snapshot.as_object_mut() {
        fields.remove("now");
        fields.remove("clock_offset_seconds");
    }
    snapshot
}

/// Runs one input: lines of calls (see the module documentation).
pub fn run(data: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(data);
    let mut state = State::new(EmulatorConfig {
        quotas: false,
        ..EmulatorConfig::default()
    });
    let mut authorization: Option<String> = None;
    let mut blob = String::new();
    let (mut calls, mut answered) = (0, 0);
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    for line in text.lines().take(MAX_CALLS) {
        if let Some(seconds) = line.strip_prefix("@advance ") {
            if let Ok(seconds) = seconds.trim().parse::<f64>() {
                if (0.0..=MAX_ADVANCE).contains(&seconds) {
                    state.advance_clock(seconds);
                }
            }
            continue;
        }
        if let Some(header) = line.strip_prefix("@auth ") {
            authorization = Some(header.to_owned());
            continue;
        }
        let (target, body) = line.split_once('\t').unwrap_or((line, ""));
        let target = (!target.is_empty()).then_some(target);
        let body = substitute(&state, body, &blob);
        calls += 1;

        let blank = body.bytes().all(|b| b.is_ascii_whitespace());
        let is_object = matches!(serde_json::from_str::<Value>(&body), Ok(Value::Object(_)));
        assert_eq!(
            Input::parse(body.as_bytes()).is_ok(),
            blank || is_object,
            "Input::parse({body:?})"
        );

        let key_id = access_key_id(authorization.as_deref());
        if let Some(id) = &key_id {
            assert!(check_access_key_id(id).is_ok(), "{id:?}");
            assert!(authorization
                .as_deref()
                .is_some_and(|h| h.contains(id.as_str())));
        }
        let ctx = RequestContext::new(Caller {
            access_key_id: key_id,
            source_ip: "127.0.0.1".into(),
            user_agent: None,
        });

        state.settle();
        let before = comparable(&state);
        let logged = state.calls.list(0, None).len();
        if trace {
            eprintln!("> {target:?} {body}");
        }
        if let Some(operation) = target.and_then(cloudtrail::operation_name) {
            match handle_cloudtrail_call(&mut state, operation, body.as_bytes()) {
                Ok(answer) => {
                    assert!(answer.is_object(), "{answer}");
                    answered += 1;
                }
                Err(err) => {
                    assert!((400..600).contains(&err.status), "{err:?}");
                    assert_eq!(err.body()["__type"], err.code);
                }
            }
        } else {
            match handle_call(&mut state, target, body.as_bytes(), &ctx) {
                Ok(outcome) => {
                    if let Some(answer) = &outcome.body {
                        assert!(answer.is_object(), "{answer}");
                        if let Some(ciphertext) = answer["CiphertextBlob"].as_str() {
                            blob = ciphertext.to_owned();
                        }
                    }
                    answered += 1;
                }
                Err(err) => {
                    let status = err.code.http_status();
                    assert!((400..600).contains(&status), "{err:?}");
                    assert_eq!(err.body()["__type"], err.code.name());
                    assert_eq!(
                        comparable(&state),
                        before,
                        "{target:?} {body:?} failed with {err:?} but changed the state"
                    );
                }
            }
        }
        if trace {
            let outcome = state.calls.list(0, None).last().map(|c| c.outcome.clone());
            eprintln!("< {}", outcome.unwrap_or_default());
        }
        assert_eq!(
            state.calls.list(0, None).len(),
            logged + 1,
            "every call is logged once"
        );
        check_consistent(&state);
    }
    match (calls, answered) {
        (0, _) => Verdict::Malformed,
        (_, 0) => Verdict::Refused,
        _ => Verdict::Accepted,
    }
}

/// Keys name stores that exist; aliases name keys that exist.
fn check_consistent(state: &State) {
    for (_, key) in state.keys() {
        if let Some(store) = &key.custom_key_store_id {
            assert!(
                state.store(store).is_some(),
                "key {} names store {store}, which does not exist",
                key.id
            );
        }
    }
    for alias in state.aliases.values() {
        assert!(
            state.key(&alias.target_key_id).is_some(),
            "alias {} names key {}, which does not exist",
            alias.name,
            alias.target_key_id
        );
    }
}
