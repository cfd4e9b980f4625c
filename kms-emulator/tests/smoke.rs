//! The shortest end-to-end path through the real SDK: store, key, schedule, deletion, store gone.

mod common;

use common::*;

#[tokio::test]
async fn decommission_path_through_the_sdk() {
    let h = harness().await;
    let store = h.cloudhsm_store("smoke", "cluster-234567abcdefg").await;
    assert_eq!(h.store_state(&store).await, "DISCONNECTED");
    h.connect(&store).await;
    let key = h.cloudhsm_key(&store).await;
    assert_eq!(h.key_state(&key).await, "Enabled");
    let out = h
        .kms
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(out.pending_window_in_days, Some(7));
    assert!(out.deletion_date.is_some());
    assert_eq!(h.key_state(&key).await, "PendingDeletion");
    h.advance(8.0 * 86400.0).await;
    let err = h.kms.describe_key().key_id(&key).send().await.unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    h.disconnect(&store).await;
    h.kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
}
