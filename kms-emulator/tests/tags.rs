//! Tags through the real SDK: add, overwrite, remove, list with pagination, validation, and no
//! changes while a key is pending deletion.

mod common;

use aws_sdk_kms::types::Tag;
use common::*;

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().tag_key(k).tag_value(v).build().unwrap()
}

async fn tags_of(h: &Harness, key: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = h
            .kms
            .list_resource_tags()
            .key_id(key)
            .limit(2)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        out.extend(
            page.tags()
                .iter()
                .map(|t| (t.tag_key().to_string(), t.tag_value().to_string())),
        );
        if !page.truncated() {
            return out;
        }
        marker = page.next_marker().map(String::from);
    }
}

#[tokio::test]
async fn tag_untag_and_list_with_pagination() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .tags(tag("created", "yes"))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    h.kms
        .tag_resource()
        .key_id(&key)
        .tags(tag(
            "kms-decommission:execution",
            "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
        ))
        .tags(tag("kms-decommission:prior-state", "Enabled"))
        .tags(tag("created", "overwritten"))
        .send()
        .await
        .unwrap();
    let tags = tags_of(&h, &key).await;
    assert_eq!(tags.len(), 3);
    assert!(tags.contains(&("created".into(), "overwritten".into())));
    assert!(tags.contains(&("kms-decommission:prior-state".into(), "Enabled".into())));
    h.kms
        .untag_resource()
        .key_id(&key)
        .tag_keys("created")
        .tag_keys("absent")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&h, &key).await.len(), 2);
}

#[tokio::test]
async fn invalid_tags_are_refused_and_change_nothing() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    let err = h
        .kms
        .tag_resource()
        .key_id(&key)
        .tags(tag("aws:reserved", "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "TagException");
    let err = h
        .kms
        .tag_resource()
        .key_id(&key)
        .tags(tag("ok", "x"))
        .tags(tag("bad#key", "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "TagException");
    let err = h
        .kms
        .tag_resource()
        .key_id(&key)
        .tags(tag(&"k".repeat(129), "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(tags_of(&h, &key).await.is_empty());
    let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let err = h
        .kms
        .tag_resource()
        .key_id(&key)
        .set_tags(Some(many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "TagException");
    let fifty: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    h.kms
        .tag_resource()
        .key_id(&key)
        .set_tags(Some(fifty))
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .tag_resource()
        .key_id(&key)
        .tags(tag("one-more", "v"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "LimitExceededException");
    let err = h
        .kms
        .list_resource_tags()
        .key_id(&key)
        .limit(51)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn tags_cannot_change_while_pending_deletion_but_can_be_listed() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .tags(tag("a", "1"))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    h.kms
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .tag_resource()
        .key_id(&key)
        .tags(tag("b", "2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    let err = h
        .kms
        .untag_resource()
        .key_id(&key)
        .tag_keys("a")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    assert_eq!(
        tags_of(&h, &key).await,
        vec![("a".to_string(), "1".to_string())]
    );
    h.kms
        .cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    h.kms
        .tag_resource()
        .key_id(&key)
        .tags(tag("b", "2"))
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&h, &key).await.len(), 2);
}

#[tokio::test]
async fn tags_of_unavailable_keys_can_change() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    let key = h.cloudhsm_key(&store).await;
    h.disconnect(&store).await;
    assert_eq!(h.key_state(&key).await, "Unavailable");
    h.kms
        .tag_resource()
        .key_id(&key)
        .tags(tag("marker", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&h, &key).await,
        vec![("marker".to_string(), "x".to_string())]
    );
}
