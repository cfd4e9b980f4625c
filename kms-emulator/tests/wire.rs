//! The wire protocol with raw HTTP: status codes per error, headers, empty bodies, and no panic
//! on any malformed request.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn success_headers_and_bodies() {
    let h = harness().await;
    let (status, headers, body) = h.raw("ListKeys", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
    assert!(!headers["x-amzn-requestid"].is_empty());
    assert_eq!(body["Keys"].as_array().map(Vec::len), Some(3));
    assert_eq!(body["Truncated"], false);
    let (_, _, created) = h.raw("CreateKey", "{}").await;
    assert!(
        created["KeyMetadata"]["CreationDate"].is_f64(),
        "timestamps are epoch seconds"
    );
    let id = created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    // operations without output send an empty body
    let response = h
        .http
        .post(h.url("/"))
        .header("x-amz-target", "TrentService.DisableKey")
        .header("content-type", "application/x-amz-json-1.1")
        .body(json!({"KeyId": id}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-amz-json-1.1"
    );
    assert_eq!(response.text().await.unwrap(), "");
}

#[tokio::test]
async fn client_errors_are_400_and_internal_errors_500() {
    let h = harness().await;
    let missing_key = json!({"KeyId": "00000000-0000-0000-0000-000000000000"});
    assert_eq!(
        h.raw_error("DescribeKey", missing_key.clone()).await,
        (400, "NotFoundException".into())
    );
    let (_, _, created) = h.raw("CreateKey", "{}").await;
    let key = created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    h.raw("ScheduleKeyDeletion", &json!({"KeyId": key}).to_string())
        .await;
    assert_eq!(
        h.raw_error("ScheduleKeyDeletion", json!({"KeyId": key}))
            .await,
        (400, "KMSInvalidStateException".into())
    );
    assert_eq!(
        h.raw_error(
            "DeleteCustomKeyStore",
            json!({"CustomKeyStoreId": "cks-00000000000000000"})
        )
        .await,
        (400, "CustomKeyStoreNotFoundException".into())
    );
    assert_eq!(
        h.raw_error("DescribeKey", json!({"KeyId": "arn:aws:kms:bad"}))
            .await,
        (400, "InvalidArnException".into())
    );
    assert_eq!(
        h.raw_error("DescribeKey", json!({})).await,
        (400, "ValidationException".into())
    );
    for (error, status) in [
        ("KMSInternalException", 500),
        ("DependencyTimeoutException", 500),
        ("ThrottlingException", 400),
    ] {
        let (s, _) = h
            .admin_post(
                "/_emulator/faults",
                json!({"operation": "ListKeys", "error": error, "count": 1}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            h.raw_error("ListKeys", json!({})).await,
            (status, error.to_string())
        );
    }
    let (_, _, body) = h.raw("ListKeys", "{}").await;
    assert!(body["Keys"].is_array(), "faults were used up");
}

#[tokio::test]
async fn error_bodies_carry_type_and_message() {
    let h = harness().await;
    let (status, headers, body) = h.raw("DescribeKey", r#"{"KeyId": "alias/missing"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
    assert!(!headers["x-amzn-requestid"].is_empty());
    assert_eq!(body["__type"], "NotFoundException");
    assert!(body["message"].as_str().unwrap().contains("alias/missing"));
}

async fn post(h: &Harness, target: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut request = h
        .http
        .post(h.url("/"))
        .header("content-type", "application/x-amz-json-1.1");
    if let Some(t) = target {
        request = request.header("x-amz-target", t);
    }
    let response = request.body(body.to_vec()).send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn malformed_requests_get_the_errors_kms_sends_and_never_crash() {
    let h = harness().await;
    let cases: Vec<(Option<&str>, &[u8], &str)> = vec![
        (Some("TrentService.ListKeys"), b"{not json", "SerializationException"),
        (Some("TrentService.ListKeys"), b"[1,2]", "SerializationException"),
        (Some("TrentService.ListKeys"), b"\"str\"", "SerializationException"),
        (Some("TrentService.ListKeys"), b"\xff\xfe", "SerializationException"),
        (Some("TrentService.ListKeys"), br#"{"Limit": "ten"}"#, "SerializationException"),
        (Some("TrentService.ListKeys"), br#"{"Limit": 1.5}"#, "SerializationException"),
        (Some("TrentService.ListKeys"), br#"{"Limit": 1e400}"#, "SerializationException"),
        (Some("TrentService.ListKeys"), br#"{"Limit": 99999999999999999999}"#, "SerializationException"),
        (Some("TrentService.DescribeKey"), br#"{"KeyId": 42}"#, "SerializationException"),
        (Some("TrentService.DescribeKey"), br#"{"KeyId": ""}"#, "ValidationException"),
        (Some("TrentService.DescribeKey"), b"", "ValidationException"),
        (Some("TrentService.TagResource"), br#"{"KeyId": "x", "Tags": {"a": 1}}"#, "SerializationException"),
        (Some("TrentService.TagResource"), br#"{"KeyId": "x", "Tags": [{"TagKey": 1}]}"#, "SerializationException"),
        (Some("TrentService.UntagResource"), br#"{"KeyId": "x", "TagKeys": [null]}"#, "SerializationException"),
        (Some("TrentService.ScheduleKeyDeletion"), br#"{"KeyId": "x", "PendingWindowInDays": -1}"#, "ValidationException"),
        (Some("TrentService.CreateKey"), br#"{"KeyUsage": "NOPE"}"#, "ValidationException"),
        (Some("TrentService.CreateKey"), br#"{"Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": ["x"]}"#, "SerializationException"),
        (Some("TrentService.CreateCustomKeyStore"), br#"{}"#, "ValidationException"),
        (Some("TrentService.CreateCustomKeyStore"), br#"{"CustomKeyStoreName": "x", "CustomKeyStoreType": "EXTERNAL_KEY_STORE", "XksProxyUriEndpoint": "http://plain", "XksProxyUriPath": "/kms/xks/v1"}"#, "ValidationException"),
        (Some("TrentService.ConnectCustomKeyStore"), br#"{"CustomKeyStoreId": true}"#, "SerializationException"),
        (Some("TrentService.NoSuchOperation"), b"{}", "UnknownOperationException"),
        (Some("OtherService.ListKeys"), b"{}", "UnknownOperationException"),
        (Some(""), b"{}", "UnknownOperationException"),
        (None, b"{}", "UnknownOperationException"),
    ];
    for (target, body, expected) in cases {
        let (status, value) = post(&h, target, body).await;
        assert_eq!(
            (status, value["__type"].as_str()),
            (400, Some(expected)),
            "target {target:?} body {}",
            String::from_utf8_lossy(body)
        );
        assert!(value["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // deep nesting and a large body do not bring the server down
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, _) = post(&h, Some("TrentService.ListKeys"), deep.as_bytes()).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &h,
        Some("TrentService.ListKeys"),
        &vec![b' '; 3 * 1024 * 1024],
    )
    .await;
    assert!(status == 413 || status == 200, "status {status}");
    // wrong paths and methods
    let response = h.http.get(h.url("/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["__type"], "UnknownOperationException");
    let status = h
        .http
        .post(h.url("/other"))
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 404);
    // and it still answers
    let (status, value) = post(&h, Some("TrentService.ListKeys"), b"{}").await;
    assert_eq!(status, 200);
    assert_eq!(value["Keys"].as_array().map(Vec::len), Some(3));
}
