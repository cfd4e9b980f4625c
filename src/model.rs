//! The value types that the state document, the steps and the triggers share: the store, its
//! keys, the execution. This module imports nothing of the crate, so any module may use it.

use serde::{Deserialize, Serialize};

/// Most keys any list in the state document (or an error message) carries.
pub const SAMPLE_CAP: usize = 25;

/// The Step Functions execution running the decommission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionInfo {
    /// Execution ARN.
    pub id: String,
    /// Execution name.
    #[serde(default)]
    pub name: Option<String>,
    /// When the execution (or its Initialize state) started.
    #[serde(default)]
    pub start_time: Option<String>,
}

/// The kind of custom key store, with KMS's wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreType {
    /// A CloudHSM key store.
    #[serde(rename = "AWS_CLOUDHSM")]
    CloudHsm,
    /// An external key store (XKS).
    #[serde(rename = "EXTERNAL_KEY_STORE")]
    External,
}

impl StoreType {
    /// KMS's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudHsm => "AWS_CLOUDHSM",
            Self::External => "EXTERNAL_KEY_STORE",
        }
    }

    /// The `Origin` KMS gives the keys of such a store.
    pub fn key_origin(self) -> &'static str {
        match self {
            Self::CloudHsm => "AWS_CLOUDHSM",
            Self::External => "EXTERNAL_KEY_STORE",
        }
    }
}

/// The store as last described by DescribeCustomKeyStores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreSummary {
    /// Store id.
    pub custom_key_store_id: String,
    /// Store name.
    pub custom_key_store_name: String,
    /// CloudHSM or external key store.
    pub custom_key_store_type: StoreType,
    /// The CloudHSM cluster (CloudHSM stores only).
    #[serde(default)]
    pub cloud_hsm_cluster_id: Option<String>,
    /// The XKS proxy endpoint (external key stores only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks_proxy_uri_endpoint: Option<String>,
    /// The XKS proxy's VPC endpoint service (external key stores with VPC connectivity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks_proxy_vpc_endpoint_service_name: Option<String>,
    /// Connection state when described (`CONNECTED`, `DISCONNECTED`, ...).
    pub connection_state: String,
    /// KMS's ConnectionErrorCode, present only in FAILED.
    #[serde(default)]
    pub connection_error_code: Option<String>,
}

/// One key of the store, as shown in samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySample {
    /// Key id.
    pub key_id: String,
    /// Key ARN (the label of the key material in a CloudHSM cluster).
    pub arn: String,
    /// Key state when inventoried.
    pub key_state: String,
    /// The external key id (external key stores only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xks_key_id: Option<String>,
    /// DeletionDate (PendingDeletion keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<String>,
}

/// Appends `item` to a capped sample, returning whether it was kept.
pub fn push_capped<T>(sample: &mut Vec<T>, item: T) -> bool {
    if sample.len() < SAMPLE_CAP {
        sample.push(item);
        true
    } else {
        false
    }
}
