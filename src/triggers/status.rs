//! Status events a trigger publishes itself (the state machines publish the others,
//! docs/status-events.md): `TriggerRefused`, when a trigger meant for a decommission refused it.
//! Advisory, as every status event: a failed publication is logged, never retried by failing the
//! trigger's event (the refusal would be published again and again).

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::Value;

use crate::config::ConfigError;

/// Environment variable naming the bus status events go to.
pub const BUS_ENV: &str = "STATUS_EVENT_BUS_NAME";
/// Environment variable naming the status events' `source`.
pub const SOURCE_ENV: &str = "STATUS_EVENT_SOURCE";
/// `detail-type` of a refused trigger.
pub const TRIGGER_REFUSED_DETAIL_TYPE: &str = "KMS Custom Key Store Decommission Trigger Refused";

/// Where status events go.
#[derive(Debug, Clone)]
pub struct StatusEvents {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    source: String,
}

impl StatusEvents {
    /// Publishing to `bus` with `source`.
    pub fn new(
        client: aws_sdk_eventbridge::Client,
        bus: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bus: bus.into(),
            source: source.into(),
        }
    }

    /// From [`BUS_ENV`] and [`SOURCE_ENV`] (both required).
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(Self::new(
            aws_sdk_eventbridge::Client::new(sdk),
            required(BUS_ENV)?,
            required(SOURCE_ENV)?,
        ))
    }

    /// Publishes a `TriggerRefused` event with `detail` (its `Milestone` is set here); logs
    /// and swallows a failure.
    pub async fn trigger_refused(&self, mut detail: Value) {
        if let Some(map) = detail.as_object_mut() {
            map.insert("Milestone".into(), Value::String("TriggerRefused".into()));
        }
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(TRIGGER_REFUSED_DETAIL_TYPE)
            .detail(detail.to_string())
            .build();
        let published = self.client.put_events().entries(entry).send().await;
        match published {
            Ok(out) if out.failed_entry_count() == 0 => {}
            Ok(out) => tracing::error!(
                error = ?out.entries().first().and_then(|e| e.error_code()),
                "EventBridge did not take the TriggerRefused status event"
            ),
            Err(e) => tracing::error!(
                error = %crate::aws_error::AwsCallError::new("events:PutEvents", e),
                "could not publish the TriggerRefused status event"
            ),
        }
    }
}
