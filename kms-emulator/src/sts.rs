//! STS `GetCallerIdentity`, so that a client signing with an access key id learns the principal
//! the emulator records its calls as (the identity map of [`crate::identity`]), as on AWS where
//! two people's credentials are two callers. The query protocol: a form-encoded
//! `Action=GetCallerIdentity&Version=2011-06-15` body, answered in XML. No other STS action is
//! served.

use crate::identity::Principal;

/// The STS API version the answer names.
const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The content type of the answer.
pub const CONTENT_TYPE: &str = "text/xml";

/// Whether a request body (no `X-Amz-Target`) asks for `GetCallerIdentity`.
pub fn is_get_caller_identity(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|text| {
        text.split('&')
            .any(|pair| pair.trim() == "Action=GetCallerIdentity")
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `GetCallerIdentity` answer for `principal`: its ARN, account and user id (CloudTrail's
/// `principalId`: `AIDA...` for a user, `AROA...:<session>` for a role session, the account for
/// root).
pub fn get_caller_identity(principal: &Principal, request_id: &str) -> String {
    let identity = principal.user_identity(None, "");
    let user_id = identity
        .get("principalId")
        .and_then(|v| v.as_str())
        .unwrap_or(principal.account())
        .to_string();
    format!(
        "<GetCallerIdentityResponse xmlns=\"{STS_XMLNS}\">\
         <GetCallerIdentityResult>\
         <Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account>\
         </GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
         </GetCallerIdentityResponse>",
        escape(principal.arn()),
        escape(&user_id),
        escape(principal.account()),
        escape(request_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_caller_identity_is_recognised() {
        assert!(is_get_caller_identity(
            b"Action=GetCallerIdentity&Version=2011-06-15"
        ));
        assert!(!is_get_caller_identity(
            b"Action=AssumeRole&Version=2011-06-15"
        ));
        assert!(!is_get_caller_identity(b"{\"KeyId\": \"x\"}"));
    }

    #[test]
    fn the_answer_names_the_principal() {
        let alice =
            Principal::parse("arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice@example.com")
                .unwrap();
        let xml = get_caller_identity(&alice, "r-1");
        assert!(xml.contains(
            "<Arn>arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice@example.com</Arn>"
        ));
        assert!(xml.contains("<Account>123456789012</Account>"));
        assert!(xml.contains(":alice@example.com</UserId>"));
        assert!(xml.contains("<RequestId>r-1</RequestId>"));
    }
}
