//! `webhook`: everything the ticket webhook does with a request before it calls AWS: the
//! function URL event as the Lambda runtime reads it, [`request_body`] (method, size, base64),
//! [`signature_headers`] and [`WebhookSecrets::verify`] (HMAC-SHA256, the timestamp window, key
//! rotation), and [`WebhookRequest::parse`] (the actions and their fields).
//!
//! Properties: the signature check accepts a request exactly when an independent HMAC-SHA256
//! under the test secret (or the previous one, during a rotation) over
//! `<timestamp>.<audience>.<body>` equals the header and the timestamp is within the window;
//! a request signed correctly is accepted and never once its body changes (a byte flipped,
//! appended or cut), its timestamp changes, or it is sent to another stack; refusals before the
//! parse are 400, 401, 405 or 413 with a name. The parse (of every body, as if an honest sender
//! had signed it) depends only on the JSON value, not its spelling; an accepted `start` is a
//! valid execution input marked `Trigger: webhook` with a ticket and a requester; every action
//! names a ticket (or, for approve and reject, a valid store) and who asks, gives valid
//! execution names, and matches the body's `Action`.

use std::sync::OnceLock;

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use kms_decommission::request::{DecommissionRequest, RunTrigger};
use kms_decommission::sfn::naming::{
    cancel_execution_name, is_valid_execution_name, ticket_execution_name,
};
use kms_decommission::sfn::RunMode;
use kms_decommission::triggers::webhook::secret::secrets_from;
use kms_decommission::triggers::webhook::signature::{
    SignatureError, WebhookSecret, WebhookSecrets, DEFAULT_AUDIENCE, MAX_AGE_SECONDS,
    MAX_FUTURE_SKEW_SECONDS,
};
use kms_decommission::triggers::webhook::{
    request_body, signature_headers, ApprovalTarget, WebhookError, WebhookRequest, MAX_BODY_BYTES,
};
use serde_json::Value;
use sha2::Sha256;

use super::execution_input::check_request;
use super::mutate::{mutate_json, mutate_value, write_json, Rng, COMMON_WORDS};
use super::{is_free_text, Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "webhook",
    what:
        "webhook::{request_body, signature_headers, WebhookRequest::parse}, WebhookSecrets::verify",
    bounded_cases: 10_000,
    run,
    mutate,
};

/// The test secret of events/triggers/README.md, which signed the sample requests.
const TEST_SECRET: &[u8] = b"example-webhook-secret-not-for-production-0123";
/// The previous secret of a rotation in progress.
const PREVIOUS_SECRET: &[u8] = b"previous-webhook-secret-not-for-production-4567";
/// When the samples were signed: the target's "now".
const SIGNED_AT: i64 = 1_795_860_000;

const WORDS: &[&str] = &[
    "Action",
    "start",
    "status",
    "cancel",
    "approve",
    "reject",
    "Start",
    "ApprovedBy",
    "RejectedBy",
    "body",
    "isBase64Encoded",
    "headers",
    "x-signature",
    "x-signature-timestamp",
    "sha256=",
    "1795860000",
    "1795859700",
    "1795860030",
    "requestContext",
    "http",
    "method",
    "GET",
    "POST",
    "post",
];

fn secrets() -> &'static WebhookSecrets {
    static SECRETS: OnceLock<WebhookSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let mut stored = TEST_SECRET.to_vec();
        stored.push(b'\n');
        stored.extend_from_slice(PREVIOUS_SECRET);
        secrets_from(&stored).expect("the test secrets are strong enough")
    })
}

/// HMAC-SHA256 of `<timestamp>.<audience>.<body>`, computed here rather than by the webhook.
fn independent_mac(secret: &[u8], timestamp: &str, audience: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{timestamp}.{audience}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The documented rule (docs/triggers.md): both headers, a timestamp of 1-12 digits within
/// five minutes back and 30 s ahead, `sha256=` and the hex HMAC of either secret.
fn documented_rule(timestamp: Option<&str>, signature: Option<&str>, body: &[u8]) -> bool {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return false;
    };
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let Ok(at) = timestamp.parse::<i64>() else {
        return false;
    };
    if !(SIGNED_AT - MAX_AGE_SECONDS..=SIGNED_AT + MAX_FUTURE_SKEW_SECONDS).contains(&at) {
        return false;
    }
    let Some(given) = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|digits| hex::decode(digits).ok())
    else {
        return false;
    };
    [TEST_SECRET, PREVIOUS_SECRET]
        .iter()
        .any(|secret| independent_mac(secret, timestamp, DEFAULT_AUDIENCE, body) == given)
}

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let words: &[&str] = if rng.one_in(3) { COMMON_WORDS } else { WORDS };
    let Ok(mut event) = serde_json::from_slice::<Value>(data) else {
        return mutate_json(rng, data, others, words);
    };
    if !event.is_object() || rng.one_in(3) {
        return mutate_json(rng, data, others, words);
    }
    // Change the body inside the event, as the sender wrote it (decoded from base64 first).
    let encoded = event["isBase64Encoded"] == Value::Bool(true);
    let raw = event["body"].as_str().unwrap_or_default().to_owned();
    let body = if encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .unwrap_or_else(|_| raw.into_bytes())
    } else {
        raw.into_bytes()
    };
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(mut value) if !rng.one_in(4) => {
            mutate_value(rng, &mut value, words);
            write_json(rng, &value)
        }
        _ => mutate_json(rng, &body, others, words),
    };
    event["body"] = Value::String(if encoded {
        base64::engine::general_purpose::STANDARD.encode(&body)
    } else {
        String::from_utf8_lossy(&body).into_owned()
    });
    if rng.one_in(8) {
        event["isBase64Encoded"] = Value::Bool(!encoded);
    }
    write_json(rng, &event)
}

/// Runs one input: JSON bytes, a Lambda function URL event.
pub fn run(data: &[u8]) -> Verdict {
    let Ok(request) = serde_json::from_slice::<LambdaFunctionUrlRequest>(data) else {
        return Verdict::Malformed;
    };
    let body = match request_body(&request) {
        Ok(body) => body,
        Err(err) => {
            assert!(matches!(err.status(), 400 | 405 | 413), "{err:?}");
            assert!(!err.name().is_empty());
            return Verdict::Refused;
        }
    };
    assert!(body.len() <= MAX_BODY_BYTES);

    let (timestamp, signature) = signature_headers(&request);
    let (timestamp, signature) = (timestamp.as_deref(), signature.as_deref());
    let checked = secrets().verify(timestamp, signature, &body, SIGNED_AT);
    assert_eq!(
        checked.is_ok(),
        documented_rule(timestamp, signature, &body),
        "verify({timestamp:?}, {signature:?}) = {checked:?}"
    );
    if let Err(err) = checked {
        let refused = WebhookError::from(err);
        assert_eq!(refused.status(), 401);
        assert!(!refused.name().is_empty());
    }
    check_signatures(&body);
    check_parse(&body)
}

/// A correctly signed body is accepted; no change of it, of its timestamp or of its audience is.
fn check_signatures(body: &[u8]) {
    let timestamp = SIGNED_AT.to_string();
    let current = WebhookSecret::new(TEST_SECRET).expect("strong");
    let previous = WebhookSecret::new(PREVIOUS_SECRET).expect("strong");
    for secret in [&current, &previous] {
        let signature = secret.sign(&timestamp, body);
        assert_eq!(
            secrets().verify(Some(&timestamp), Some(&signature), body, SIGNED_AT),
            Ok(())
        );
        let mut changed = Vec::new();
        for at in [0, body.len() / 2, body.len().saturating_sub(1)] {
            if at < body.len() {
                let mut flipped = body.to_vec();
                flipped[at] ^= 0x01;
                changed.push(flipped);
            }
        }
        let mut longer = body.to_vec();
        longer.push(b' ');
        changed.push(longer);
        if let Some((_, shorter)) = body.split_last() {
            changed.push(shorter.to_vec());
        }
        for other in &changed {
            assert_eq!(
                secrets().verify(Some(&timestamp), Some(&signature), other, SIGNED_AT),
                Err(SignatureError::SignatureMismatch),
                "a changed body was accepted"
            );
        }
        let earlier = (SIGNED_AT - 1).to_string();
        assert_eq!(
            secrets().verify(Some(&earlier), Some(&signature), body, SIGNED_AT),
            Err(SignatureError::SignatureMismatch),
            "a changed timestamp was accepted"
        );
        let elsewhere = secrets().clone().for_audience("another-stack");
        assert_eq!(
            elsewhere.verify(Some(&timestamp), Some(&signature), body, SIGNED_AT),
            Err(SignatureError::SignatureMismatch),
            "a request for another stack was accepted"
        );
    }
}

/// What a signed body asks for.
fn check_parse(body: &[u8]) -> Verdict {
    let parsed = WebhookRequest::parse(body);
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let respelt = serde_json::to_vec(&value).expect("a value writes");
        assert_eq!(
            format!("{:?}", WebhookRequest::parse(&respelt)),
            format!("{parsed:?}"),
            "the parse depends on the spelling of {value}"
        );
    }
    let request = match parsed {
        Err(err) => {
            assert_eq!(err.status(), 400, "{err:?}");
            assert!(
                matches!(
                    err.name(),
                    "MalformedJson" | "MissingAction" | "UnknownAction" | "InvalidInput"
                ),
                "{err:?}"
            );
            return Verdict::Refused;
        }
        Ok(request) => request,
    };
    let fields: Value = serde_json::from_slice(body).expect("an accepted body is JSON");
    let action = fields["Action"].as_str().unwrap_or_default();
    let ticket_ok = |ticket: &str| {
        assert!(
            !ticket.trim().is_empty() && is_free_text(ticket),
            "{ticket:?}"
        );
        for mode in [RunMode::DryRun, RunMode::Decommission] {
            let name = ticket_execution_name(ticket, mode);
            assert!(is_valid_execution_name(&name), "{ticket:?} -> {name:?}");
        }
        let name = cancel_execution_name(ticket);
        assert!(is_valid_execution_name(&name), "{ticket:?} -> {name:?}");
    };
    match request {
        WebhookRequest::Start(start) => {
            assert_eq!(action, "start");
            assert!(
                fields.get("Trigger").is_none(),
                "a body may not set Trigger"
            );
            assert_eq!(start.input["Trigger"], "webhook");
            assert_eq!(start.request.trigger, Some(RunTrigger::Webhook));
            assert!(start.input["DryRun"].is_boolean(), "{}", start.input);
            assert_eq!(
                DecommissionRequest::from_input(&start.input).as_ref().ok(),
                Some(&start.request),
                "the start's input is the request"
            );
            assert_eq!(
                start.request.ticket_id.as_deref(),
                Some(start.ticket.as_str())
            );
            assert!(start
                .request
                .requested_by
                .as_deref()
                .is_some_and(|r| !r.trim().is_empty()));
            check_request(&start.request);
            ticket_ok(&start.ticket);
        }
        WebhookRequest::Status { ticket } => {
            assert_eq!(action, "status");
            ticket_ok(&ticket);
        }
        WebhookRequest::Cancel(cancel) => {
            assert_eq!(action, "cancel");
            ticket_ok(&cancel.ticket);
            assert!(!cancel.requested_by.trim().is_empty() && is_free_text(&cancel.requested_by));
            assert!(cancel.reason.as_deref().is_none_or(is_free_text));
        }
        WebhookRequest::Answer(answer) => {
            assert_eq!(action, if answer.approve { "approve" } else { "reject" });
            assert!(!answer.by.trim().is_empty() && is_free_text(&answer.by));
            assert!(answer.reason.as_deref().is_none_or(is_free_text));
            assert!(!answer.approve || answer.reason.is_none());
            match &answer.target {
                ApprovalTarget::Ticket(ticket) => ticket_ok(ticket),
                ApprovalTarget::Store(store) => {
                    kms_decommission::request::validate_custom_key_store_id(store)
                        .unwrap_or_else(|e| panic!("answer for an invalid store: {e}"));
                }
            }
        }
    }
    Verdict::Accepted
}
