//! The custom key store itself: describe, connect, disconnect, delete.
//!
//! Each function makes one KMS call through [`Kms`]; the steps decide what a state or an error
//! means.

use crate::error::DecommissionError;
use crate::kms::Kms;
use crate::model::{StoreSummary, StoreType};

/// Describes one store by id. A store KMS does not know is `CustomKeyStoreNotFoundException`.
pub async fn describe(kms: &Kms, store_id: &str) -> Result<StoreSummary, DecommissionError> {
    const OP: &str = "DescribeCustomKeyStores";
    let entry = kms.describe_custom_key_store(store_id).await?;
    let store_type = match (entry.custom_key_store_type(), entry.cloud_hsm_cluster_id()) {
        (Some(t), _) => match t.as_str() {
            "AWS_CLOUDHSM" => StoreType::CloudHsm,
            "EXTERNAL_KEY_STORE" => StoreType::External,
            other => {
                return Err(DecommissionError::unexpected(
                    OP,
                    format!("store {store_id} has unknown CustomKeyStoreType {other}"),
                ))
            }
        },
        // Stores created before external key stores existed may omit the type.
        (None, Some(_)) => StoreType::CloudHsm,
        (None, None) => {
            return Err(DecommissionError::unexpected(
                OP,
                format!("store {store_id} has neither CustomKeyStoreType nor CloudHsmClusterId"),
            ))
        }
    };
    let connection_state = entry.connection_state().cloned().ok_or_else(|| {
        DecommissionError::unexpected(OP, format!("store {store_id} has no ConnectionState"))
    })?;
    let xks = entry.xks_proxy_configuration();
    Ok(StoreSummary {
        custom_key_store_id: store_id.to_string(),
        custom_key_store_name: entry
            .custom_key_store_name()
            .unwrap_or_default()
            .to_string(),
        custom_key_store_type: store_type,
        cloud_hsm_cluster_id: entry.cloud_hsm_cluster_id().map(str::to_string),
        xks_proxy_uri_endpoint: xks.and_then(|x| x.uri_endpoint()).map(str::to_string),
        xks_proxy_vpc_endpoint_service_name: xks
            .and_then(|x| x.vpc_endpoint_service_name())
            .map(str::to_string),
        connection_state,
        connection_error_code: entry
            .connection_error_code()
            .map(|c| c.as_str().to_string()),
    })
}

/// Starts connecting a store (ConnectCustomKeyStore is asynchronous: poll [`describe`]).
pub async fn connect(kms: &Kms, store_id: &str) -> Result<(), DecommissionError> {
    kms.connect_custom_key_store(store_id).await
}

/// Starts disconnecting a store (poll [`describe`] until DISCONNECTED).
pub async fn disconnect(kms: &Kms, store_id: &str) -> Result<(), DecommissionError> {
    kms.disconnect_custom_key_store(store_id).await
}

/// Deletes a DISCONNECTED store that holds no keys.
pub async fn delete(kms: &Kms, store_id: &str) -> Result<(), DecommissionError> {
    kms.delete_custom_key_store(store_id).await
}

#[cfg(test)]
mod mocked_tests {
    use super::*;
    use crate::test_support::*;
    use aws_sdk_kms::operation::describe_custom_key_stores::{
        DescribeCustomKeyStoresError, DescribeCustomKeyStoresOutput,
    };
    use aws_smithy_mocks::mock;

    #[tokio::test]
    async fn an_answer_without_the_store_is_not_found() {
        let describe = mock!(aws_sdk_kms::Client::describe_custom_key_stores)
            .then_output(|| DescribeCustomKeyStoresOutput::builder().build());
        let kms = Kms::with_default_pacing(mock_kms(&[&describe]));
        let err = super::describe(&kms, STORE_ID).await.unwrap_err();
        assert_eq!(err.error_type(), "CustomKeyStoreNotFoundException");
    }

    #[tokio::test]
    async fn throttling_keeps_its_name() {
        let describe = mock!(aws_sdk_kms::Client::describe_custom_key_stores).then_error(|| {
            DescribeCustomKeyStoresError::generic(kms_error(
                "ThrottlingException",
                "You have exceeded the rate at which you may call KMS.",
            ))
        });
        let kms = Kms::with_default_pacing(mock_kms(&[&describe]));
        let err = super::describe(&kms, STORE_ID).await.unwrap_err();
        assert_eq!(err.error_type(), "ThrottlingException");
        assert!(err.is_transient());
    }
}
