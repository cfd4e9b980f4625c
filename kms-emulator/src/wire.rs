//! Request members of the awsJson1_1 protocol: typed access with the errors KMS sends for
//! malformed JSON (SerializationException) and constraint violations (ValidationException).

use serde_json::{Map, Value};

use crate::error::{ErrorCode, KmsError};

/// The JSON object of one request.
#[derive(Debug, Clone, Default)]
pub struct Input {
    members: Map<String, Value>,
}

/// The member name as AWS validation messages spell it (`KeyId` -> `keyId`).
fn wire_member(member: &str) -> String {
    let mut chars = member.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL_VALUE",
        Value::Bool(_) => "BOOLEAN_VALUE",
        Value::Number(_) => "NUMBER_VALUE",
        Value::String(_) => "STRING_VALUE",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

fn wrong_type(member: &str, value: &Value, expected: &str) -> KmsError {
    KmsError::new(
        ErrorCode::Serialization,
        format!(
            "{} can not be converted to {expected} (member '{member}')",
            type_name(value)
        ),
    )
}

/// Checks a string's length (in characters) against `[min, max]`.
pub fn check_length(member: &str, value: &str, min: usize, max: usize) -> Result<(), KmsError> {
    let len = value.chars().count();
    let shown = format!("'{}'", value.chars().take(64).collect::<String>());
    if len < min {
        return Err(KmsError::validation(
            &shown,
            &wire_member(member),
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if len > max {
        return Err(KmsError::validation(
            &shown,
            &wire_member(member),
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

impl Input {
    /// Parses a request body; an empty body is an empty object.
    pub fn parse(body: &[u8]) -> Result<Self, KmsError> {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(members)) => Ok(Self { members }),
            Ok(other) => Err(KmsError::new(
                ErrorCode::Serialization,
                format!(
                    "The request body must be a JSON object, not {}",
                    type_name(&other)
                ),
            )),
            Err(e) => Err(KmsError::new(
                ErrorCode::Serialization,
                format!("Malformed JSON request body: {e}"),
            )),
        }
    }

    /// An input from a JSON object (used by tests and nested structures).
    pub fn from_map(members: Map<String, Value>) -> Self {
        Self { members }
    }

    fn get(&self, member: &str) -> Option<&Value> {
        self.members.get(member).filter(|v| !v.is_null())
    }

    /// Whether the member is present and not null.
    pub fn has(&self, member: &str) -> bool {
        self.get(member).is_some()
    }

    /// An optional string member, length-checked.
    pub fn string(&self, member: &str, min: usize, max: usize) -> Result<Option<&str>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => {
                check_length(member, s, min, max)?;
                Ok(Some(s))
            }
            Some(other) => Err(wrong_type(member, other, "a String")),
        }
    }

    /// A required string member, length-checked.
    pub fn required_string(&self, member: &str, min: usize, max: usize) -> Result<&str, KmsError> {
        self.string(member, min, max)?
            .ok_or_else(|| KmsError::missing(&wire_member(member)))
    }

    /// An optional string member that must be one of `allowed`.
    pub fn enum_value(&self, member: &str, allowed: &[&str]) -> Result<Option<&str>, KmsError> {
        match self.string(member, 0, usize::MAX)? {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(v) => Err(KmsError::validation(
                &format!("'{v}'"),
                &wire_member(member),
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            )),
        }
    }

    /// An optional integer member within `[min, max]`.
    pub fn integer(&self, member: &str, min: i64, max: i64) -> Result<Option<i64>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let v = n.as_i64().ok_or_else(|| {
                    KmsError::new(
                        ErrorCode::Serialization,
                        format!("NUMBER_VALUE {n} can not be converted to an Integer (member '{member}')"),
                    )
                })?;
                if v < min {
                    return Err(KmsError::validation(
                        &format!("'{v}'"),
                        &wire_member(member),
                        &format!("Member must have value greater than or equal to {min}"),
                    ));
                }
                if v > max {
                    return Err(KmsError::validation(
                        &format!("'{v}'"),
                        &wire_member(member),
                        &format!("Member must have value less than or equal to {max}"),
                    ));
                }
                Ok(Some(v))
            }
            Some(other) => Err(wrong_type(member, other, "an Integer")),
        }
    }

    /// An optional boolean member.
    pub fn boolean(&self, member: &str) -> Result<Option<bool>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(member, other, "a Boolean")),
        }
    }

    /// An optional structure member.
    pub fn structure(&self, member: &str) -> Result<Option<Input>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Input::from_map(m.clone()))),
            Some(other) => Err(wrong_type(member, other, "a Structure")),
        }
    }

    /// An optional list member whose elements are structures.
    pub fn structure_list(&self, member: &str) -> Result<Option<Vec<Input>>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Object(m) => Ok(Input::from_map(m.clone())),
                    other => Err(wrong_type(member, other, "a Structure")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(member, other, "a List")),
        }
    }

    /// An optional list member whose elements are strings.
    pub fn string_list(&self, member: &str) -> Result<Option<Vec<String>>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong_type(member, other, "a String")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(member, other, "a List")),
        }
    }

    /// An optional blob member (base64 on the wire), its decoded length checked.
    pub fn blob(&self, member: &str, min: usize, max: usize) -> Result<Option<Vec<u8>>, KmsError> {
        use base64::Engine;
        let Some(encoded) = self.string(member, 0, usize::MAX)? else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| {
                KmsError::new(
                    ErrorCode::Serialization,
                    format!("Member '{member}' is not valid base64"),
                )
            })?;
        if bytes.len() < min || bytes.len() > max {
            return Err(KmsError::validation(
                "'java.nio.HeapByteBuffer'",
                &wire_member(member),
                &format!("Member must have length between {min} and {max} bytes"),
            ));
        }
        Ok(Some(bytes))
    }

    /// An optional map member of strings to strings.
    pub fn string_map(
        &self,
        member: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, KmsError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(wrong_type(member, other, "a String")),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(member, other, "a Map")),
        }
    }

    /// Every member as sent (for the CloudTrail record).
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }

    /// The raw string value of a member, without checks (for the call log).
    pub fn raw_string(&self, member: &str) -> Option<&str> {
        self.get(member).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_a_serialization_error() {
        assert_eq!(
            Input::parse(b"{nope").unwrap_err().code,
            ErrorCode::Serialization
        );
        assert_eq!(
            Input::parse(b"[1]").unwrap_err().code,
            ErrorCode::Serialization
        );
        assert!(Input::parse(b"").is_ok());
    }

    #[test]
    fn wrong_types_and_constraints() {
        let input = Input::parse(br#"{"Limit": "x", "KeyId": 5, "N": 0, "S": ""}"#).unwrap();
        assert_eq!(
            input.integer("Limit", 1, 10).unwrap_err().code,
            ErrorCode::Serialization
        );
        assert_eq!(
            input.required_string("KeyId", 1, 10).unwrap_err().code,
            ErrorCode::Serialization
        );
        let err = input.integer("N", 1, 10).unwrap_err();
        assert_eq!(err.code, ErrorCode::Validation);
        assert!(err.message.contains("at 'n'"));
        assert_eq!(
            input.string("S", 1, 10).unwrap_err().code,
            ErrorCode::Validation
        );
        let missing = input
            .required_string("CustomKeyStoreId", 1, 64)
            .unwrap_err();
        assert!(missing.message.contains("'customKeyStoreId'"));
    }

    #[test]
    fn blobs_are_base64_with_length_limits() {
        let input =
            Input::parse(br#"{"B": "aGVsbG8=", "Bad": "!!", "M": {"a": "b"}, "N": {"a": 1}}"#)
                .unwrap();
        assert_eq!(input.blob("B", 1, 10).unwrap().unwrap(), b"hello");
        assert_eq!(
            input.blob("B", 6, 10).unwrap_err().code,
            ErrorCode::Validation
        );
        assert_eq!(
            input.blob("Bad", 1, 10).unwrap_err().code,
            ErrorCode::Serialization
        );
        assert_eq!(input.string_map("M").unwrap().unwrap()["a"], "b");
        assert_eq!(
            input.string_map("N").unwrap_err().code,
            ErrorCode::Serialization
        );
    }

    #[test]
    fn null_is_absent() {
        let input = Input::parse(br#"{"Limit": null}"#).unwrap();
        assert_eq!(input.integer("Limit", 1, 10).unwrap(), None);
    }
}
