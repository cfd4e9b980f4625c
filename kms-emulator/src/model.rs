//! The emulated resources: custom key stores and KMS keys.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Custom key store types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StoreType {
    /// A CloudHSM key store.
    #[serde(rename = "AWS_CLOUDHSM")]
    CloudHsm,
    /// An external key store (XKS).
    #[serde(rename = "EXTERNAL_KEY_STORE")]
    External,
}

impl StoreType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudHsm => "AWS_CLOUDHSM",
            Self::External => "EXTERNAL_KEY_STORE",
        }
    }

    /// The key Origin of keys in stores of this type.
    pub fn key_origin(self) -> &'static str {
        match self {
            Self::CloudHsm => "AWS_CLOUDHSM",
            Self::External => "EXTERNAL_KEY_STORE",
        }
    }
}

/// Custom key store connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    /// Connected (which does not prove the backing store works).
    Connected,
    /// A connection is in progress.
    Connecting,
    /// The last connection attempt failed; see the error code.
    Failed,
    /// Never connected or deliberately disconnected.
    Disconnected,
    /// A disconnect is in progress.
    Disconnecting,
}

impl ConnectionState {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "CONNECTED",
            Self::Connecting => "CONNECTING",
            Self::Failed => "FAILED",
            Self::Disconnected => "DISCONNECTED",
            Self::Disconnecting => "DISCONNECTING",
        }
    }

    /// The state for a wire value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CONNECTED" => Self::Connected,
            "CONNECTING" => Self::Connecting,
            "FAILED" => Self::Failed,
            "DISCONNECTED" => Self::Disconnected,
            "DISCONNECTING" => Self::Disconnecting,
            _ => return None,
        })
    }
}

/// The documented ConnectionErrorCode values.
pub const CONNECTION_ERROR_CODES: [&str; 18] = [
    "INVALID_CREDENTIALS",
    "CLUSTER_NOT_FOUND",
    "NETWORK_ERRORS",
    "INTERNAL_ERROR",
    "INSUFFICIENT_CLOUDHSM_HSMS",
    "USER_LOCKED_OUT",
    "USER_NOT_FOUND",
    "USER_LOGGED_IN",
    "SUBNET_NOT_FOUND",
    "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET",
    "XKS_PROXY_ACCESS_DENIED",
    "XKS_PROXY_NOT_REACHABLE",
    "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND",
    "XKS_PROXY_INVALID_RESPONSE",
    "XKS_PROXY_INVALID_CONFIGURATION",
    "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION",
    "XKS_PROXY_TIMED_OUT",
    "XKS_PROXY_INVALID_TLS_CONFIGURATION",
];

/// The proxy settings of an external key store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XksProxy {
    /// `PUBLIC_ENDPOINT` or `VPC_ENDPOINT_SERVICE`.
    pub connectivity: String,
    /// `https://host[:port]`.
    pub uri_endpoint: String,
    /// The base path, ending in `/kms/xks/v1`.
    pub uri_path: String,
    /// The VPC endpoint service name (VPC connectivity only).
    pub vpc_endpoint_service_name: Option<String>,
    /// The access key id of the proxy authentication credential.
    pub access_key_id: String,
    /// The secret of the proxy authentication credential (never returned by the KMS API).
    #[serde(skip)]
    pub secret_access_key: String,
}

/// One custom key store.
#[derive(Debug, Clone, Serialize)]
pub struct Store {
    /// `cks-...`.
    pub id: String,
    /// The unique friendly name.
    pub name: String,
    /// CloudHSM or external.
    #[serde(rename = "type")]
    pub store_type: StoreType,
    /// The connection state.
    pub state: ConnectionState,
    /// ConnectionErrorCode, only meaningful in FAILED.
    pub error_code: Option<String>,
    /// The emulated time at which CONNECTING/DISCONNECTING completes.
    pub transition_until: Option<f64>,
    /// CloudHSM cluster id.
    pub cloudhsm_cluster_id: Option<String>,
    /// CloudHSM trust anchor certificate.
    #[serde(skip)]
    pub trust_anchor_certificate: Option<String>,
    /// The kmsuser password (never returned).
    #[serde(skip)]
    pub key_store_password: Option<String>,
    /// External key store proxy settings.
    pub xks_proxy: Option<XksProxy>,
    /// Creation time (epoch seconds).
    pub creation_date: f64,
    /// Admin-forced connection failure: every connect attempt ends FAILED with this code.
    pub connection_failure: Option<String>,
}

impl Store {
    /// The DescribeCustomKeyStores entry.
    pub fn to_wire(&self) -> Value {
        let mut m = Map::new();
        m.insert("CustomKeyStoreId".into(), json!(self.id));
        m.insert("CustomKeyStoreName".into(), json!(self.name));
        m.insert("CustomKeyStoreType".into(), json!(self.store_type.as_str()));
        m.insert("ConnectionState".into(), json!(self.state.as_str()));
        if self.state == ConnectionState::Failed {
            if let Some(code) = &self.error_code {
                m.insert("ConnectionErrorCode".into(), json!(code));
            }
        }
        m.insert("CreationDate".into(), json!(self.creation_date));
        if let Some(cluster) = &self.cloudhsm_cluster_id {
            m.insert("CloudHsmClusterId".into(), json!(cluster));
        }
        if let Some(anchor) = &self.trust_anchor_certificate {
            m.insert("TrustAnchorCertificate".into(), json!(anchor));
        }
        if let Some(xks) = &self.xks_proxy {
            let mut x = Map::new();
            x.insert("Connectivity".into(), json!(xks.connectivity));
            x.insert("AccessKeyId".into(), json!(xks.access_key_id));
            x.insert("UriEndpoint".into(), json!(xks.uri_endpoint));
            x.insert("UriPath".into(), json!(xks.uri_path));
            if let Some(name) = &xks.vpc_endpoint_service_name {
                x.insert("VpcEndpointServiceName".into(), json!(name));
            }
            m.insert("XksProxyConfiguration".into(), Value::Object(x));
        }
        Value::Object(m)
    }
}

/// Key states a key can have in the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Disabled.
    Disabled,
    /// Scheduled for deletion.
    PendingDeletion,
    /// Origin EXTERNAL, waiting for key material.
    PendingImport,
    /// In a custom key store that is not connected.
    Unavailable,
}

impl KeyState {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
            Self::PendingImport => "PendingImport",
            Self::Unavailable => "Unavailable",
        }
    }
}

/// A scheduled deletion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PendingDeletion {
    /// DeletionDate (epoch seconds, emulated clock).
    pub deletion_date: f64,
    /// PendingDeletionWindowInDays.
    pub window_days: i64,
}

/// The last successful cryptographic use of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyUsage {
    /// The operation, e.g. `Encrypt`.
    pub operation: String,
    /// When (epoch seconds, emulated clock).
    pub timestamp: f64,
    /// The CloudTrail event id KMS would have logged.
    pub cloudtrail_event_id: String,
    /// The KMS request id of the call.
    pub kms_request_id: String,
}

/// One KMS key.
#[derive(Debug, Clone, Serialize)]
pub struct Key {
    /// The key id (UUID).
    pub id: String,
    /// The key ARN.
    pub arn: String,
    /// Creation time (epoch seconds).
    pub creation_date: f64,
    /// Description.
    pub description: String,
    /// KeyUsage, e.g. ENCRYPT_DECRYPT.
    pub key_usage: String,
    /// KeySpec, e.g. SYMMETRIC_DEFAULT.
    pub key_spec: String,
    /// Origin: AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE.
    pub origin: String,
    /// KeyManager: AWS or CUSTOMER.
    pub key_manager: String,
    /// The custom key store holding the key.
    pub custom_key_store_id: Option<String>,
    /// The CloudHSM cluster of that store.
    pub cloudhsm_cluster_id: Option<String>,
    /// The external key id (XKS keys).
    pub xks_key_id: Option<String>,
    /// The state the key has apart from deletion and store availability: Enabled, Disabled or
    /// PendingImport. Reconnecting a store or cancelling deletion brings it back.
    pub base_state: KeyState,
    /// Set while the key is pending deletion.
    pub pending_deletion: Option<PendingDeletion>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Per-key symmetric key material (never returned).
    #[serde(skip)]
    pub material: [u8; 32],
    /// The last successful cryptographic operation.
    pub last_usage: Option<KeyUsage>,
}

impl Key {
    /// The effective key state, given whether the key's custom key store (if any) is connected.
    pub fn state(&self, store_connected: bool) -> KeyState {
        if self.pending_deletion.is_some() {
            KeyState::PendingDeletion
        } else if self.custom_key_store_id.is_some() && !store_connected {
            KeyState::Unavailable
        } else {
            self.base_state
        }
    }

    /// The DescribeKey `KeyMetadata`.
    pub fn metadata(&self, account_id: &str, state: KeyState) -> Value {
        let mut m = Map::new();
        m.insert("AWSAccountId".into(), json!(account_id));
        m.insert("KeyId".into(), json!(self.id));
        m.insert("Arn".into(), json!(self.arn));
        m.insert("CreationDate".into(), json!(self.creation_date));
        m.insert("Enabled".into(), json!(state == KeyState::Enabled));
        m.insert("Description".into(), json!(self.description));
        m.insert("KeyUsage".into(), json!(self.key_usage));
        m.insert("KeyState".into(), json!(state.as_str()));
        if let Some(p) = &self.pending_deletion {
            m.insert("DeletionDate".into(), json!(p.deletion_date));
            m.insert("PendingDeletionWindowInDays".into(), json!(p.window_days));
        }
        m.insert("Origin".into(), json!(self.origin));
        if self.origin == "EXTERNAL" {
            m.insert(
                "ExpirationModel".into(),
                json!("KEY_MATERIAL_DOES_NOT_EXPIRE"),
            );
        }
        if let Some(store) = &self.custom_key_store_id {
            m.insert("CustomKeyStoreId".into(), json!(store));
        }
        if let Some(cluster) = &self.cloudhsm_cluster_id {
            m.insert("CloudHsmClusterId".into(), json!(cluster));
        }
        m.insert("KeyManager".into(), json!(self.key_manager));
        m.insert("CustomerMasterKeySpec".into(), json!(self.key_spec));
        m.insert("KeySpec".into(), json!(self.key_spec));
        if self.key_usage == "ENCRYPT_DECRYPT" && self.key_spec == "SYMMETRIC_DEFAULT" {
            m.insert("EncryptionAlgorithms".into(), json!(["SYMMETRIC_DEFAULT"]));
        }
        m.insert("MultiRegion".into(), json!(false));
        if let Some(xks) = &self.xks_key_id {
            m.insert("XksKeyConfiguration".into(), json!({"Id": xks}));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(store: Option<&str>) -> Key {
        Key {
            id: "k".into(),
            arn: "arn".into(),
            creation_date: 1.0,
            description: String::new(),
            key_usage: "ENCRYPT_DECRYPT".into(),
            key_spec: "SYMMETRIC_DEFAULT".into(),
            origin: "AWS_CLOUDHSM".into(),
            key_manager: "CUSTOMER".into(),
            custom_key_store_id: store.map(String::from),
            cloudhsm_cluster_id: None,
            xks_key_id: None,
            base_state: KeyState::Disabled,
            pending_deletion: None,
            tags: BTreeMap::new(),
            material: [0; 32],
            last_usage: None,
        }
    }

    #[test]
    fn store_keys_are_unavailable_unless_connected_or_pending_deletion() {
        let mut k = key(Some("cks-1"));
        assert_eq!(k.state(true), KeyState::Disabled);
        assert_eq!(k.state(false), KeyState::Unavailable);
        k.pending_deletion = Some(PendingDeletion {
            deletion_date: 2.0,
            window_days: 7,
        });
        assert_eq!(k.state(false), KeyState::PendingDeletion);
        assert_eq!(key(None).state(false), KeyState::Disabled);
    }

    #[test]
    fn metadata_shows_deletion_fields_only_when_pending() {
        let mut k = key(Some("cks-1"));
        let m = k.metadata("123456789012", KeyState::Disabled);
        assert!(m.get("DeletionDate").is_none());
        assert_eq!(m["Enabled"], false);
        k.pending_deletion = Some(PendingDeletion {
            deletion_date: 2.0,
            window_days: 7,
        });
        let m = k.metadata("123456789012", KeyState::PendingDeletion);
        assert_eq!(m["DeletionDate"], 2.0);
        assert_eq!(m["PendingDeletionWindowInDays"], 7);
        assert_eq!(m["CustomKeyStoreId"], "cks-1");
    }
}
