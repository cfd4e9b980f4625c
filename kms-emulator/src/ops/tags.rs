//! Tagging: TagResource, UntagResource, ListResourceTags.

use serde_json::json;

use super::keys::{pending_deletion_error, refuse_aws_managed};
use super::{marker_start, paginate, with_page_fields, Outcome};
use crate::error::{ErrorCode, KmsError};
use crate::model::Key;
use crate::state::State;
use crate::wire::Input;

/// Tags per KMS key.
pub const MAX_TAGS_PER_KEY: usize = 50;

fn valid_tag_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// Parses and validates a list of `{TagKey, TagValue}` (CreateKey `Tags`, TagResource `Tags`).
pub fn parse_tags(input: &Input, member: &str) -> Result<Option<Vec<(String, String)>>, KmsError> {
    let Some(items) = input.structure_list(member)? else {
        return Ok(None);
    };
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        let key = item.required_string("TagKey", 1, 128)?;
        let value = item.required_string("TagValue", 0, 256)?;
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::new(
                ErrorCode::Tag,
                format!("Tag key '{key}' is not valid: the aws: prefix is reserved for AWS use."),
            ));
        }
        if !valid_tag_chars(key) || !valid_tag_chars(value) {
            return Err(KmsError::new(
                ErrorCode::Tag,
                format!(
                    "Tag '{key}' is not valid: keys and values may contain only Unicode letters, digits, white space and _ . : / = + - @"
                ),
            ));
        }
        tags.push((key.to_string(), value.to_string()));
    }
    if tags.len() > MAX_TAGS_PER_KEY {
        return Err(KmsError::new(
            ErrorCode::Tag,
            format!("Too many tags: a KMS key can have at most {MAX_TAGS_PER_KEY}."),
        ));
    }
    Ok(Some(tags))
}

fn tagged_key<'a>(state: &'a State, input: &Input, action: &str) -> Result<&'a Key, KmsError> {
    let raw = input.required_string("KeyId", 1, 2048)?;
    let id = state.resolve_key(raw, false)?;
    let key = state.key(&id).ok_or_else(|| KmsError::key_not_found(raw))?;
    refuse_aws_managed(key, action)?;
    if key.pending_deletion.is_some() {
        return Err(pending_deletion_error(&key.arn));
    }
    Ok(key)
}

/// TagResource: adds or overwrites tags; refused while the key is pending deletion.
pub fn tag(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let tags = parse_tags(input, "Tags")?.ok_or_else(|| KmsError::missing("tags"))?;
    let key = tagged_key(state, input, "TagResource")?;
    let mut next = key.tags.clone();
    next.extend(tags);
    if next.len() > MAX_TAGS_PER_KEY {
        return Err(KmsError::new(
            ErrorCode::LimitExceeded,
            format!(
                "A KMS key can have at most {MAX_TAGS_PER_KEY} tags; this request would make {}.",
                next.len()
            ),
        ));
    }
    let id = key.id.clone();
    if let Some(key) = state.key_mut(&id) {
        key.tags = next;
    }
    Ok(Outcome::empty())
}

/// UntagResource: removes tags; refused while the key is pending deletion.
pub fn untag(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let names = input
        .string_list("TagKeys")?
        .ok_or_else(|| KmsError::missing("tagKeys"))?;
    for name in &names {
        crate::wire::check_length("TagKeys", name, 1, 128)?;
    }
    let key = tagged_key(state, input, "UntagResource")?;
    let id = key.id.clone();
    if let Some(key) = state.key_mut(&id) {
        for name in &names {
            key.tags.remove(name);
        }
    }
    Ok(Outcome::empty())
}

/// ListResourceTags (any key state), paginated, `Limit` 1-50 (default 50).
pub fn list(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let raw = input.required_string("KeyId", 1, 2048)?;
    let limit = input.integer("Limit", 1, 50)?.unwrap_or(50) as usize;
    let start = marker_start(input)?;
    let id = state.resolve_key(raw, false)?;
    let key = state.key(&id).ok_or_else(|| KmsError::key_not_found(raw))?;
    let (page, next) = paginate(
        key.tags
            .iter()
            .enumerate()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .map(|(i, (k, v))| (i as u64, json!({"TagKey": k, "TagValue": v}))),
        limit,
    );
    Ok(Outcome::body(with_page_fields(
        json!({ "Tags": page }),
        next,
    )))
}
