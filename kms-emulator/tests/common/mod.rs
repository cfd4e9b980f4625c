//! Helpers shared by the integration tests: a spawned emulator, a real aws-sdk-kms client
//! pointed at it, raw HTTP calls, and admin API calls.
#![allow(dead_code)]

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::Client;
use kms_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{json, Value};

pub const TRUST_ANCHOR: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

pub struct Harness {
    pub emulator: RunningEmulator,
    pub kms: Client,
    pub http: reqwest::Client,
}

/// A client with the SDK's retries turned off, so each call is exactly one request.
pub fn client(endpoint: &str) -> Client {
    client_as(endpoint, "test")
}

/// A client like [`client`] signing with the access key id `access_key_id`.
pub fn client_as(endpoint: &str, access_key_id: &str) -> Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            access_key_id,
            "secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// An emulator on the real-time scale, driven by the admin clock (so wall time passing between
/// calls changes nothing), with quotas off so functional tests never throttle.
pub async fn harness() -> Harness {
    harness_with(EmulatorConfig {
        quotas: false,
        ..EmulatorConfig::default()
    })
    .await
}

pub async fn harness_with(config: EmulatorConfig) -> Harness {
    let emulator = kms_emulator::spawn(config).await.expect("spawn emulator");
    let kms = client(&emulator.endpoint());
    Harness {
        emulator,
        kms,
        http: reqwest::Client::new(),
    }
}

/// The wire error name of an SDK error.
pub fn code<E: ProvideErrorMetadata>(
    err: &aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> String {
    err.code().unwrap_or("<no code>").to_string()
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.emulator.endpoint(), path)
    }

    /// A raw KMS call: (HTTP status, headers, parsed body or Null).
    pub async fn raw(
        &self,
        operation: &str,
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .http
            .post(self.url("/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{operation}"))
            .body(body.to_string())
            .send()
            .await
            .expect("raw request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, value)
    }

    /// A raw KMS call expected to fail: (HTTP status, __type).
    pub async fn raw_error(&self, operation: &str, body: Value) -> (u16, String) {
        let (status, _, value) = self.raw(operation, &body.to_string()).await;
        (
            status,
            value["__type"].as_str().unwrap_or("<none>").to_string(),
        )
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("admin get")
            .json()
            .await
            .expect("admin json")
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("admin post");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("admin delete")
            .status()
            .as_u16()
    }

    /// Moves emulated time forward.
    pub async fn advance(&self, seconds: f64) {
        let (status, body) = self
            .admin_post("/_emulator/clock", json!({"advance_seconds": seconds}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn set_config(&self, patch: Value) {
        let (status, body) = self.admin_post("/_emulator/config", patch).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Every call in the log.
    pub async fn calls(&self) -> Vec<Value> {
        self.admin_get("/_emulator/calls").await["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Creates a DISCONNECTED CloudHSM store.
    pub async fn cloudhsm_store(&self, name: &str, cluster: &str) -> String {
        self.kms
            .create_custom_key_store()
            .custom_key_store_name(name)
            .cloud_hsm_cluster_id(cluster)
            .trust_anchor_certificate(TRUST_ANCHOR)
            .key_store_password("kmsPswd123")
            .send()
            .await
            .expect("create cloudhsm store")
            .custom_key_store_id
            .expect("store id")
    }

    /// Creates a DISCONNECTED external key store with public endpoint connectivity.
    pub async fn xks_store(&self, name: &str, host: &str) -> String {
        self.xks_store_result(name, host)
            .await
            .expect("create xks store")
    }

    /// The store's connection state.
    pub async fn store_state(&self, id: &str) -> String {
        let out = self
            .kms
            .describe_custom_key_stores()
            .custom_key_store_id(id)
            .send()
            .await
            .expect("describe store");
        out.custom_key_stores()[0]
            .connection_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }

    /// Connects a store and moves the clock until it is CONNECTED.
    pub async fn connect(&self, id: &str) {
        self.kms
            .connect_custom_key_store()
            .custom_key_store_id(id)
            .send()
            .await
            .expect("connect");
        self.advance(3600.0).await;
        assert_eq!(self.store_state(id).await, "CONNECTED");
    }

    /// Disconnects a store and moves the clock until it is DISCONNECTED.
    pub async fn disconnect(&self, id: &str) {
        self.kms
            .disconnect_custom_key_store()
            .custom_key_store_id(id)
            .send()
            .await
            .expect("disconnect");
        self.advance(3600.0).await;
        assert_eq!(self.store_state(id).await, "DISCONNECTED");
    }

    /// Creates a key in a CONNECTED CloudHSM store; returns its id.
    pub async fn cloudhsm_key(&self, store: &str) -> String {
        self.kms
            .create_key()
            .origin(aws_sdk_kms::types::OriginType::AwsCloudhsm)
            .custom_key_store_id(store)
            .send()
            .await
            .expect("create key")
            .key_metadata
            .expect("metadata")
            .key_id
    }

    /// The key's state as DescribeKey reports it.
    pub async fn key_state(&self, key: &str) -> String {
        self.kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .expect("describe key")
            .key_metadata
            .and_then(|m| m.key_state)
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }
}

impl Harness {
    /// Creates an external key store; the error name on failure.
    pub async fn xks_store_result(&self, name: &str, host: &str) -> Result<String, String> {
        use aws_sdk_kms::types::{
            CustomKeyStoreType, XksProxyAuthenticationCredentialType, XksProxyConnectivityType,
        };
        self.kms
            .create_custom_key_store()
            .custom_key_store_name(name)
            .custom_key_store_type(CustomKeyStoreType::ExternalKeyStore)
            .xks_proxy_uri_endpoint(format!("https://{host}"))
            .xks_proxy_uri_path("/example/kms/xks/v1")
            .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
            .xks_proxy_authentication_credential(
                XksProxyAuthenticationCredentialType::builder()
                    .access_key_id("ABCDE23456ABCDE23456")
                    .raw_secret_access_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH")
                    .build()
                    .expect("credential"),
            )
            .send()
            .await
            .map(|out| out.custom_key_store_id.unwrap_or_default())
            .map_err(|e| code(&e))
    }
}
