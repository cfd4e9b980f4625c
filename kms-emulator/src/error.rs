//! KMS errors as they go on the wire: `{"__type": "<Name>", "message": "..."}` with an HTTP status.

use std::fmt;

macro_rules! error_codes {
    ($($variant:ident => $name:literal, $status:literal;)*) => {
        /// Every KMS error name the emulator can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $(#[doc = $name] $variant,)* }

        impl ErrorCode {
            /// The wire name (`__type`).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }
            /// The HTTP status real KMS sends with this error.
            pub fn http_status(self) -> u16 {
                match self { $(Self::$variant => $status,)* }
            }
            /// The code for a wire name, if the emulator knows it.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    AccessDenied => "AccessDeniedException", 400;
    AlreadyExists => "AlreadyExistsException", 400;
    CloudHsmClusterInUse => "CloudHsmClusterInUseException", 400;
    CloudHsmClusterInvalidConfiguration => "CloudHsmClusterInvalidConfigurationException", 400;
    CloudHsmClusterNotActive => "CloudHsmClusterNotActiveException", 400;
    CloudHsmClusterNotFound => "CloudHsmClusterNotFoundException", 400;
    CloudHsmClusterNotRelated => "CloudHsmClusterNotRelatedException", 400;
    CustomKeyStoreHasCmks => "CustomKeyStoreHasCMKsException", 400;
    CustomKeyStoreInvalidState => "CustomKeyStoreInvalidStateException", 400;
    CustomKeyStoreNameInUse => "CustomKeyStoreNameInUseException", 400;
    CustomKeyStoreNotFound => "CustomKeyStoreNotFoundException", 400;
    DependencyTimeout => "DependencyTimeoutException", 500;
    Disabled => "DisabledException", 400;
    IncorrectKey => "IncorrectKeyException", 400;
    InvalidAliasName => "InvalidAliasNameException", 400;
    InvalidArn => "InvalidArnException", 400;
    InvalidCiphertext => "InvalidCiphertextException", 400;
    InvalidKeyUsage => "InvalidKeyUsageException", 400;
    InvalidMarker => "InvalidMarkerException", 400;
    KmsInternal => "KMSInternalException", 500;
    KmsInvalidState => "KMSInvalidStateException", 400;
    LimitExceeded => "LimitExceededException", 400;
    NotFound => "NotFoundException", 400;
    Serialization => "SerializationException", 400;
    Tag => "TagException", 400;
    Throttling => "ThrottlingException", 400;
    UnknownOperation => "UnknownOperationException", 400;
    UnsupportedOperation => "UnsupportedOperationException", 400;
    Validation => "ValidationException", 400;
    XksKeyAlreadyInUse => "XksKeyAlreadyInUseException", 400;
    XksProxyIncorrectAuthenticationCredential => "XksProxyIncorrectAuthenticationCredentialException", 400;
    XksProxyInvalidConfiguration => "XksProxyInvalidConfigurationException", 400;
    XksProxyUriEndpointInUse => "XksProxyUriEndpointInUseException", 400;
    XksProxyUriInUse => "XksProxyUriInUseException", 400;
    XksProxyVpcEndpointServiceInUse => "XksProxyVpcEndpointServiceInUseException", 400;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One KMS error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KmsError {
    /// The error name.
    pub code: ErrorCode,
    /// The human-readable message.
    pub message: String,
}

/// The message KMS sends with ThrottlingException.
pub const THROTTLING_MESSAGE: &str =
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.";

impl KmsError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The JSON body of the error answer.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"__type": self.code.name(), "message": self.message})
    }

    /// ValidationException in the AWS wording for one failed constraint.
    pub fn validation(value: &str, member: &str, constraint: &str) -> Self {
        Self::new(
            ErrorCode::Validation,
            format!(
                "1 validation error detected: Value {value} at '{member}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    /// ValidationException for a missing required member.
    pub fn missing(member: &str) -> Self {
        Self::validation("null", member, "Member must not be null")
    }

    /// ThrottlingException with the message KMS sends.
    pub fn throttling() -> Self {
        Self::new(ErrorCode::Throttling, THROTTLING_MESSAGE)
    }

    /// CustomKeyStoreNotFoundException for a store id.
    pub fn store_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::CustomKeyStoreNotFound,
            format!("Custom key store '{id}' does not exist"),
        )
    }

    /// NotFoundException for a key ARN.
    pub fn key_not_found(arn: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("Key '{arn}' does not exist"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_500_and_client_errors_400() {
        assert_eq!(ErrorCode::KmsInternal.http_status(), 500);
        assert_eq!(ErrorCode::DependencyTimeout.http_status(), 500);
        assert_eq!(ErrorCode::NotFound.http_status(), 400);
        assert_eq!(ErrorCode::KmsInvalidState.http_status(), 400);
        assert_eq!(ErrorCode::Throttling.http_status(), 400);
        assert_eq!(
            ErrorCode::from_name("CustomKeyStoreHasCMKsException"),
            Some(ErrorCode::CustomKeyStoreHasCmks)
        );
    }

    #[test]
    fn body_has_type_and_message() {
        let body = KmsError::missing("keyId").body();
        assert_eq!(body["__type"], "ValidationException");
        assert_eq!(
            body["message"],
            "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
        );
    }
}
