//! The one door to CloudTrail: `LookupEvents` (management events of the last 90 days, no trail
//! needed), paced under its quota of 2 requests per second per account and Region. A lookup names
//! one attribute and returns at most 50 events a page (kms-facts.md section 15).
//!
//! The pace is shared by every lookup through one [`CloudTrail`]; other clients of the account
//! share the quota too, so a throttled call slows the pace ([`RateLimiter::throttled`]) and is
//! tried again (up to [`THROTTLED_RETRIES`] times) before it is reported.

use std::sync::Arc;

use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_sdk_cloudtrail::Client;
use aws_smithy_types::DateTime;
use serde_json::Value;

use crate::aws_error::AwsCallError;
use crate::pacing::RateLimiter;

/// LookupEvents' quota: requests per second per account and Region.
pub const LOOKUP_EVENTS_QUOTA_PER_SECOND: f64 = 2.0;
/// The pace this client keeps by default: 95% of the quota, leaving room for timing jitter.
pub const DEFAULT_LOOKUPS_PER_SECOND: f64 = 1.9;
/// Events per page (LookupEvents' maximum).
pub const PAGE_SIZE: i32 = 50;
/// How often a throttled lookup is tried again (slower each time) before it is reported.
pub const THROTTLED_RETRIES: u32 = 5;

/// One CloudTrail event, reduced to what says who used which key, how and when.
#[derive(Debug, Clone, PartialEq)]
pub struct TrailEvent {
    /// `eventID`.
    pub event_id: String,
    /// `eventName`: the API called (`Decrypt`, ...).
    pub event_name: String,
    /// `eventTime`.
    pub event_time: Option<DateTime>,
    /// `errorCode`, when the call failed.
    pub error_code: Option<String>,
    /// `errorMessage`, when the call failed.
    pub error_message: Option<String>,
    /// `userIdentity.arn`, or `userIdentity.invokedBy` for an AWS service without an ARN.
    pub principal: Option<String>,
    /// `sourceIPAddress` (an IP, or the AWS service that called on the caller's behalf).
    pub source: Option<String>,
    /// The key ARNs of `resources`.
    pub key_arns: Vec<String>,
}

impl TrailEvent {
    /// Reads the `CloudTrailEvent` JSON of a LookupEvents result; `None` when it is not a JSON
    /// object with an event id and name.
    pub fn from_record(record: &str) -> Option<Self> {
        let record: Value = serde_json::from_str(record).ok()?;
        let text = |pointer: &str| {
            record
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(Self {
            event_id: text("/eventID")?,
            event_name: text("/eventName")?,
            event_time: text("/eventTime").and_then(|t| {
                DateTime::from_str(&t, aws_smithy_types::date_time::Format::DateTime).ok()
            }),
            error_code: text("/errorCode"),
            error_message: text("/errorMessage"),
            principal: text("/userIdentity/arn").or_else(|| text("/userIdentity/invokedBy")),
            source: text("/sourceIPAddress"),
            key_arns: record
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| r.get("type").and_then(Value::as_str) == Some("AWS::KMS::Key"))
                .filter_map(|r| r.get("ARN").and_then(Value::as_str).map(str::to_owned))
                .collect(),
        })
    }
}

/// One page of a lookup.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventPage {
    /// The events, newest first; results whose record could not be read are counted in
    /// [`unreadable`](Self::unreadable), not returned.
    pub events: Vec<TrailEvent>,
    /// Results whose `CloudTrailEvent` was missing or not a readable record.
    pub unreadable: usize,
    /// The token of the next page; `None` after the last.
    pub next_token: Option<String>,
    /// Lookups throttled (and tried again) to get this page.
    pub throttled: u32,
}

/// One page of whole records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordPage {
    /// The records (`CloudTrailEvent`, parsed), newest first.
    pub records: Vec<Value>,
    /// Results whose `CloudTrailEvent` was missing or not a JSON object.
    pub unreadable: usize,
    /// The token of the next page; `None` after the last.
    pub next_token: Option<String>,
    /// Lookups throttled (and tried again) to get this page.
    pub throttled: u32,
}

/// The CloudTrail client with its pace.
#[derive(Debug, Clone)]
pub struct CloudTrail {
    client: Client,
    limiter: Arc<RateLimiter>,
}

impl CloudTrail {
    /// Lookups through `client`, at most `lookups_per_second`.
    pub fn new(client: Client, lookups_per_second: f64) -> Self {
        Self {
            client,
            limiter: Arc::new(RateLimiter::per_second(lookups_per_second)),
        }
    }

    /// A client from `sdk` at [`DEFAULT_LOOKUPS_PER_SECOND`].
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk), DEFAULT_LOOKUPS_PER_SECOND)
    }

    /// One page of the events about resource `resource_name` (a key ARN) between `start` and
    /// `end`, from `next_token`.
    pub async fn resource_events(
        &self,
        resource_name: &str,
        start: DateTime,
        end: DateTime,
        next_token: Option<&str>,
    ) -> Result<EventPage, AwsCallError> {
        let attribute = lookup_attribute(LookupAttributeKey::ResourceName, resource_name)?;
        let (out, throttled) = self
            .lookup(attribute, (Some(start), Some(end)), next_token)
            .await?;
        let mut page = EventPage {
            next_token: out.next_token().map(str::to_owned),
            throttled,
            ..EventPage::default()
        };
        for event in out.events() {
            match event.cloud_trail_event().and_then(TrailEvent::from_record) {
                Some(read) => page.events.push(read),
                None => page.unreadable += 1,
            }
        }
        Ok(page)
    }

    /// One page of the events named `event_name` (`DeleteKey`, ...) since `start` (up to
    /// CloudTrail's now, whatever this machine's clock says), from `next_token`: their whole
    /// records, parsed.
    pub async fn named_events(
        &self,
        event_name: &str,
        start: DateTime,
        next_token: Option<&str>,
    ) -> Result<RecordPage, AwsCallError> {
        let attribute = lookup_attribute(LookupAttributeKey::EventName, event_name)?;
        let (out, throttled) = self
            .lookup(attribute, (Some(start), None), next_token)
            .await?;
        let mut page = RecordPage {
            next_token: out.next_token().map(str::to_owned),
            throttled,
            ..RecordPage::default()
        };
        for event in out.events() {
            match event
                .cloud_trail_event()
                .and_then(|record| serde_json::from_str::<Value>(record).ok())
                .filter(Value::is_object)
            {
                Some(record) => page.records.push(record),
                None => page.unreadable += 1,
            }
        }
        Ok(page)
    }

    /// The whole record (`CloudTrailEvent`, parsed) of the event with id `event_id`, from the
    /// last 90 days; `None` while CloudTrail shows no such event (not delivered yet, or never
    /// made) or its record is not a JSON object with that id.
    pub async fn event_record(&self, event_id: &str) -> Result<Option<Value>, AwsCallError> {
        let attribute = lookup_attribute(LookupAttributeKey::EventId, event_id)?;
        let (out, _) = self.lookup(attribute, (None, None), None).await?;
        Ok(out
            .events()
            .iter()
            .filter_map(|e| e.cloud_trail_event())
            .filter_map(|record| serde_json::from_str::<Value>(record).ok())
            .find(|record| record.get("eventID").and_then(Value::as_str) == Some(event_id)))
    }

    /// One paced LookupEvents call, tried again when throttled; with the number of throttles.
    async fn lookup(
        &self,
        attribute: LookupAttribute,
        (start, end): (Option<DateTime>, Option<DateTime>),
        next_token: Option<&str>,
    ) -> Result<(LookupEventsOutput, u32), AwsCallError> {
        let mut throttled = 0;
        loop {
            self.limiter.acquire().await;
            let result = self
                .client
                .lookup_events()
                .lookup_attributes(attribute.clone())
                .set_start_time(start)
                .set_end_time(end)
                .max_results(PAGE_SIZE)
                .set_next_token(next_token.map(str::to_owned))
                .send()
                .await;
            match result {
                Ok(out) => return Ok((out, throttled)),
                Err(e) => {
                    let err = AwsCallError::new("cloudtrail:LookupEvents", e);
                    if err.code == "ThrottlingException" && throttled < THROTTLED_RETRIES {
                        throttled += 1;
                        self.limiter.throttled();
                        tracing::warn!(
                            throttled,
                            "CloudTrail throttled LookupEvents; slowing down"
                        );
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }
}

/// A lookup attribute; the SDK refuses only a missing key or value.
fn lookup_attribute(key: LookupAttributeKey, value: &str) -> Result<LookupAttribute, AwsCallError> {
    LookupAttribute::builder()
        .attribute_key(key)
        .attribute_value(value)
        .build()
        .map_err(|e| AwsCallError {
            operation: "cloudtrail:LookupEvents".into(),
            code: "InvalidLookupAttributes".into(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_the_key_the_caller_the_error_and_the_source() {
        let record = r#"{
            "eventID": "e-1", "eventName": "Decrypt", "eventTime": "2026-11-30T10:00:00Z",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/payments-app"},
            "sourceIPAddress": "192.0.2.7",
            "errorCode": "KMSInvalidStateException", "errorMessage": "is unavailable",
            "resources": [{"type": "AWS::KMS::Key", "ARN": "arn:aws:kms:us-east-1:111122223333:key/k1"},
                          {"type": "AWS::KMS::Alias", "ARN": "arn:aws:kms:us-east-1:111122223333:alias/a"}]
        }"#;
        let event = TrailEvent::from_record(record).unwrap();
        assert_eq!(event.event_name, "Decrypt");
        assert_eq!(
            event.principal.as_deref(),
            Some("arn:aws:iam::111122223333:user/payments-app")
        );
        assert_eq!(
            event.error_code.as_deref(),
            Some("KMSInvalidStateException")
        );
        assert_eq!(
            event.key_arns,
            ["arn:aws:kms:us-east-1:111122223333:key/k1"]
        );
        assert_eq!(event.event_time.map(|t| t.secs()), Some(1_796_032_800));

        let service = r#"{"eventID": "e-2", "eventName": "GenerateDataKey",
            "userIdentity": {"type": "AWSService", "invokedBy": "s3.amazonaws.com"},
            "sourceIPAddress": "s3.amazonaws.com"}"#;
        let event = TrailEvent::from_record(service).unwrap();
        assert_eq!(event.principal.as_deref(), Some("s3.amazonaws.com"));
        assert!(event.key_arns.is_empty());

        for unreadable in ["", "[]", r#"{"eventName": "Decrypt"}"#, "not json"] {
            assert_eq!(TrailEvent::from_record(unreadable), None, "{unreadable}");
        }
    }
}
