//! Aliases: CreateAlias and ListAliases (aliases also resolve `KeyId` in DescribeKey).

use serde_json::json;

use super::keys::{pending_deletion_error, refuse_aws_managed};
use super::{marker_start, paginate, with_page_fields, Outcome};
use crate::error::{ErrorCode, KmsError};
use crate::ids;
use crate::state::{Alias, State};
use crate::wire::Input;

/// CreateAlias: `alias/<name>` for a customer managed key; `alias/aws/` is reserved.
pub fn create(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let name = input.required_string("AliasName", 1, 256)?;
    let target = input.required_string("TargetKeyId", 1, 2048)?;
    let valid = name.strip_prefix("alias/").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    });
    if !valid {
        return Err(KmsError::new(
            ErrorCode::InvalidAliasName,
            format!("Alias name '{name}' must begin with alias/ followed by letters, digits, /, _ or -."),
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::new(
            ErrorCode::InvalidAliasName,
            format!("Alias name '{name}' is not valid: the alias/aws/ prefix is reserved for AWS managed keys."),
        ));
    }
    let id = state.resolve_key(target, false)?;
    let key = state
        .key(&id)
        .ok_or_else(|| KmsError::key_not_found(target))?;
    refuse_aws_managed(key, "CreateAlias")?;
    if key.pending_deletion.is_some() {
        return Err(pending_deletion_error(&key.arn));
    }
    if state.aliases.contains_key(name) {
        return Err(KmsError::new(
            ErrorCode::AlreadyExists,
            format!(
                "An alias with the name {} already exists",
                ids::alias_arn(&state.config.region, &state.config.account_id, name)
            ),
        ));
    }
    let now = state.now();
    state.aliases.insert(
        name.to_string(),
        Alias {
            name: name.to_string(),
            target_key_id: id,
            creation_date: now,
        },
    );
    Ok(Outcome::empty())
}

/// ListAliases, optionally of one key (key id or ARN), `Limit` 1-100 (default 50).
pub fn list(state: &mut State, input: &Input) -> Result<Outcome, KmsError> {
    let filter = match input.string("KeyId", 1, 2048)? {
        Some(raw) => Some(state.resolve_key(raw, false)?),
        None => None,
    };
    let limit = input.integer("Limit", 1, 100)?.unwrap_or(50) as usize;
    let start = marker_start(input)?;
    let (region, account) = (&state.config.region, &state.config.account_id);
    let (page, next) = paginate(
        state
            .aliases
            .values()
            .filter(|a| filter.as_ref().is_none_or(|id| &a.target_key_id == id))
            .enumerate()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .map(|(i, a)| {
                (
                    i as u64,
                    json!({
                        "AliasName": a.name,
                        "AliasArn": ids::alias_arn(region, account, &a.name),
                        "TargetKeyId": a.target_key_id,
                        "CreationDate": a.creation_date,
                        "LastUpdatedDate": a.creation_date,
                    }),
                )
            }),
        limit,
    );
    Ok(Outcome::body(with_page_fields(
        json!({ "Aliases": page }),
        next,
    )))
}
