//! The one door to KMS. [`Kms`] owns the SDK client and the per-operation pacing: every call
//! waits for its operation's slot, is sent, and comes back with its error under KMS's wire name
//! ([`DecommissionError::Kms`]). Where the caller means "the key (or store) is gone",
//! `NotFoundException` is `None`; paged operations return whole pages or every page.
//!
//! The client it is built from should carry [`ThrottleFeedback`](crate::sdk_config::ThrottleFeedback)
//! on the same pacing ([`Kms::from_sdk_config`] does), so that KMS throttling slows the
//! operation's limiter, retries included.

use std::sync::Arc;

use aws_sdk_kms::operation::get_key_last_usage::GetKeyLastUsageOutput;
use aws_sdk_kms::types::{CustomKeyStoresListEntry, KeyMetadata, Tag};
use aws_sdk_kms::Client;

use crate::error::{DecommissionError, KmsErrorCode};
use crate::pacing::Pacing;

/// One ListKeys page: key ids (or ARNs where KMS gave no id) and the next marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIdPage {
    /// The keys of the account on this page, in ListKeys order.
    pub key_ids: Vec<String>,
    /// Marker of the next page; `None` after the last page.
    pub next_marker: Option<String>,
}

/// The KMS client with its pacing: see the module documentation.
#[derive(Debug, Clone)]
pub struct Kms {
    client: Client,
    pacing: Arc<Pacing>,
}

impl Kms {
    /// Wraps `client`; every call waits for its slot in `pacing`.
    pub fn new(client: Client, pacing: Arc<Pacing>) -> Self {
        Self { client, pacing }
    }

    /// Wraps `client` with pacing at KMS's default quotas (the triggers' few calls).
    pub fn with_default_pacing(client: Client) -> Self {
        Self::new(client, Self::default_pacing())
    }

    /// Pacing at KMS's default quotas.
    pub fn default_pacing() -> Arc<Pacing> {
        Arc::new(Pacing::new(&crate::config::PacingConfig::default()))
    }

    /// A client from `sdk` whose throttled attempts slow `pacing` (the functions' client).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, pacing: Arc<Pacing>) -> Self {
        Self {
            client: crate::sdk_config::kms_client(sdk, pacing.clone()),
            pacing,
        }
    }

    /// The SDK client (to build another adapter around it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The pacing (its concurrency bound and rates size the batch steps' pages).
    pub fn pacing(&self) -> &Pacing {
        &self.pacing
    }

    /// One page of the account's keys from `marker`.
    pub async fn list_keys(
        &self,
        limit: i32,
        marker: Option<&str>,
    ) -> Result<KeyIdPage, DecommissionError> {
        const OP: &str = "ListKeys";
        self.pacing.list_keys.acquire().await;
        let output = self
            .client
            .list_keys()
            .limit(limit)
            .set_marker(marker.map(str::to_string))
            .send()
            .await
            .map_err(|e| DecommissionError::from_sdk(OP, e))?;
        Ok(KeyIdPage {
            next_marker: next_marker(OP, output.truncated(), output.next_marker())?,
            key_ids: output
                .keys()
                .iter()
                .filter_map(|entry| entry.key_id().or(entry.key_arn()).map(str::to_string))
                .collect(),
        })
    }

    /// A key's metadata by id or ARN; `None` when the key does not exist.
    pub async fn describe_key(
        &self,
        key_id: &str,
    ) -> Result<Option<KeyMetadata>, DecommissionError> {
        const OP: &str = "DescribeKey";
        self.pacing.describe_key.acquire().await;
        let result = self.client.describe_key().key_id(key_id).send().await;
        match not_found_as_none(OP, result)? {
            None => Ok(None),
            Some(output) => output.key_metadata.map(Some).ok_or_else(|| {
                DecommissionError::unexpected(OP, format!("no KeyMetadata for {key_id}"))
            }),
        }
    }

    /// Every tag of a key (all pages); `None` when the key does not exist.
    pub async fn list_resource_tags(
        &self,
        key_id: &str,
    ) -> Result<Option<Vec<Tag>>, DecommissionError> {
        const OP: &str = "ListResourceTags";
        let mut tags = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.pacing.list_resource_tags.acquire().await;
            let result = self
                .client
                .list_resource_tags()
                .key_id(key_id)
                .set_marker(marker.take())
                .send()
                .await;
            let Some(output) = not_found_as_none(OP, result)? else {
                return Ok(None);
            };
            tags.extend_from_slice(output.tags());
            match next_marker(OP, output.truncated(), output.next_marker())? {
                Some(next) => marker = Some(next),
                None => return Ok(Some(tags)),
            }
        }
    }

    /// Adds or overwrites tags on a key (one TagResource call).
    pub async fn tag_resource(
        &self,
        key_id: &str,
        tags: Vec<Tag>,
    ) -> Result<(), DecommissionError> {
        self.pacing.tag_resource.acquire().await;
        self.client
            .tag_resource()
            .key_id(key_id)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("TagResource", e))
    }

    /// Removes tags from a key (paced with TagResource, whose quota it shares).
    pub async fn untag_resource(
        &self,
        key_id: &str,
        tag_keys: &[&str],
    ) -> Result<(), DecommissionError> {
        self.pacing.tag_resource.acquire().await;
        self.client
            .untag_resource()
            .key_id(key_id)
            .set_tag_keys(Some(tag_keys.iter().map(|k| k.to_string()).collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("UntagResource", e))
    }

    /// Schedules a key's deletion; returns the DeletionDate KMS gave.
    pub async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: i32,
    ) -> Result<Option<aws_smithy_types::DateTime>, DecommissionError> {
        self.pacing.schedule_key_deletion.acquire().await;
        self.client
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(pending_window_in_days)
            .send()
            .await
            .map(|output| output.deletion_date)
            .map_err(|e| DecommissionError::from_sdk("ScheduleKeyDeletion", e))
    }

    /// Cancels a key's pending deletion (KMS leaves the key Disabled).
    pub async fn cancel_key_deletion(&self, key_id: &str) -> Result<(), DecommissionError> {
        self.pacing.cancel_key_deletion.acquire().await;
        self.client
            .cancel_key_deletion()
            .key_id(key_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("CancelKeyDeletion", e))
    }

    /// Enables a key.
    pub async fn enable_key(&self, key_id: &str) -> Result<(), DecommissionError> {
        self.pacing.enable_key.acquire().await;
        self.client
            .enable_key()
            .key_id(key_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("EnableKey", e))
    }

    /// A key's last cryptographic use; `None` when the key does not exist.
    pub async fn get_key_last_usage(
        &self,
        key_id: &str,
    ) -> Result<Option<GetKeyLastUsageOutput>, DecommissionError> {
        self.pacing.get_key_last_usage.acquire().await;
        let result = self.client.get_key_last_usage().key_id(key_id).send().await;
        not_found_as_none("GetKeyLastUsage", result)
    }

    /// One custom key store by id. A store KMS does not know is `CustomKeyStoreNotFoundException`
    /// (also when KMS answers without it).
    pub async fn describe_custom_key_store(
        &self,
        store_id: &str,
    ) -> Result<CustomKeyStoresListEntry, DecommissionError> {
        const OP: &str = "DescribeCustomKeyStores";
        self.pacing.describe_custom_key_stores.acquire().await;
        let output = self
            .client
            .describe_custom_key_stores()
            .custom_key_store_id(store_id)
            .send()
            .await
            .map_err(|e| DecommissionError::from_sdk(OP, e))?;
        output
            .custom_key_stores
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.custom_key_store_id() == Some(store_id))
            .ok_or_else(|| DecommissionError::Kms {
                operation: OP,
                code: KmsErrorCode::CustomKeyStoreNotFound.as_str().to_string(),
                message: format!("no custom key store with id {store_id} in the answer"),
            })
    }

    /// Starts connecting a store (asynchronous: poll [`Kms::describe_custom_key_store`]).
    pub async fn connect_custom_key_store(&self, store_id: &str) -> Result<(), DecommissionError> {
        self.pacing.change_custom_key_store.acquire().await;
        self.client
            .connect_custom_key_store()
            .custom_key_store_id(store_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("ConnectCustomKeyStore", e))
    }

    /// Starts disconnecting a store (asynchronous: poll until DISCONNECTED).
    pub async fn disconnect_custom_key_store(
        &self,
        store_id: &str,
    ) -> Result<(), DecommissionError> {
        self.pacing.change_custom_key_store.acquire().await;
        self.client
            .disconnect_custom_key_store()
            .custom_key_store_id(store_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("DisconnectCustomKeyStore", e))
    }

    /// Deletes a DISCONNECTED store that holds no keys.
    pub async fn delete_custom_key_store(&self, store_id: &str) -> Result<(), DecommissionError> {
        self.pacing.change_custom_key_store.acquire().await;
        self.client
            .delete_custom_key_store()
            .custom_key_store_id(store_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DecommissionError::from_sdk("DeleteCustomKeyStore", e))
    }
}

/// The answer, or `None` when KMS said `NotFoundException`.
fn not_found_as_none<T, E, R>(
    operation: &'static str,
    result: Result<T, aws_sdk_kms::error::SdkError<E, R>>,
) -> Result<Option<T>, DecommissionError>
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(e) => {
            let err = DecommissionError::from_sdk(operation, e);
            if err.is_kms(KmsErrorCode::NotFound) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// The marker of the next page; a truncated page without one is an unexpected answer.
fn next_marker(
    operation: &'static str,
    truncated: bool,
    marker: Option<&str>,
) -> Result<Option<String>, DecommissionError> {
    match (truncated, marker) {
        (true, Some(next)) => Ok(Some(next.to_string())),
        (true, None) => Err(DecommissionError::unexpected(
            operation,
            "Truncated without NextMarker",
        )),
        (false, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{kms_error, mock_kms};
    use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyOutput};
    use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;
    use aws_sdk_kms::types::error::NotFoundException;
    use aws_smithy_mocks::mock;

    #[tokio::test]
    async fn a_missing_key_is_none_and_other_errors_keep_their_kms_name() {
        let gone = mock!(Client::describe_key)
            .match_requests(|r| r.key_id() == Some("gone"))
            .then_error(|| {
                DescribeKeyError::NotFoundException(
                    NotFoundException::builder()
                        .meta(kms_error("NotFoundException", "no such key"))
                        .build(),
                )
            });
        let internal = mock!(Client::describe_key)
            .match_requests(|r| r.key_id() == Some("busy"))
            .then_http_response(|| {
                aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        r#"{"__type":"KMSInternalException","message":"try later"}"#,
                    ),
                )
            });
        let empty =
            mock!(Client::describe_key).then_output(|| DescribeKeyOutput::builder().build());
        let kms = Kms::with_default_pacing(mock_kms(&[&gone, &internal, &empty]));
        assert_eq!(kms.describe_key("gone").await.unwrap(), None);
        let err = kms.describe_key("busy").await.unwrap_err();
        assert_eq!(err.error_type(), "KMSInternalException");
        assert!(err.is_transient());
        assert_eq!(
            kms.describe_key("k").await.unwrap_err().error_type(),
            "UnexpectedKmsResponse"
        );
    }

    #[tokio::test]
    async fn tags_are_read_across_pages_and_a_truncated_page_without_marker_is_refused() {
        let tag = |k: &str| Tag::builder().tag_key(k).tag_value("v").build().unwrap();
        let broken = mock!(Client::list_resource_tags)
            .match_requests(|r| r.key_id() == Some("broken"))
            .then_output(|| ListResourceTagsOutput::builder().truncated(true).build());
        let second = mock!(Client::list_resource_tags)
            .match_requests(|r| r.marker() == Some("m"))
            .then_output(move || ListResourceTagsOutput::builder().tags(tag("b")).build());
        let first = mock!(Client::list_resource_tags).then_output(move || {
            ListResourceTagsOutput::builder()
                .tags(tag("a"))
                .truncated(true)
                .next_marker("m")
                .build()
        });
        let kms = Kms::with_default_pacing(mock_kms(&[&broken, &second, &first]));
        let tags = kms.list_resource_tags("k").await.unwrap().unwrap();
        let keys: Vec<_> = tags.iter().map(|t| t.tag_key()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(
            kms.list_resource_tags("broken")
                .await
                .unwrap_err()
                .error_type(),
            "UnexpectedKmsResponse"
        );
    }
}
