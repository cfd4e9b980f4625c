//! The one door to CloudWatch Logs: a Logs Insights query of the log group a CloudTrail trail
//! delivers to, as the quarantine's alternative to `LookupEvents` for large stores
//! (docs/quarantine.md, "Where it looks").
//!
//! `LookupEvents` takes one key per request at 2 requests a second; a query takes as many keys as
//! fit in its query string (at most [`MAX_QUERY_LENGTH`] characters, the `queryString` length
//! constraint of the CloudWatch Logs API reference) and reads the whole quarantine window at
//! once. The query selects the KMS events (`eventSource = "kms.amazonaws.com"`) of the
//! operations that use a key ([`KEY_USE_OPERATIONS`]) whose first or second resource (ReEncrypt
//! names two keys) is a key of the batch; see [`key_use_query`].
//!
//! It does not rely on `additionalEventData.customKeyStoreId`: kms-facts.md does not confirm that
//! CloudTrail records it for calls refused because the store is disconnected, and a store-wide
//! filter would return every event of the store in every key batch.
//!
//! A query returns at most [`MAX_ROWS`] rows. A query that returns that many may have left some
//! out, so its time range is split in two and each half queried again; a one-second range is
//! split by keys; a single key with that many events in one second keeps the rows it got (they
//! are uses: the quarantine ends on them) and is counted in [`InsightsBatch::capped`], never
//! dropped silently.
//!
//! A scan is resumable: [`InsightsCursor`] holds the key batches and time ranges still to read
//! and the id of the query running, so the next invocation polls the same query.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::{QueryStatus, ResultField};
use aws_sdk_cloudwatchlogs::Client;
use serde::{Deserialize, Serialize};

use crate::aws_error::AwsCallError;
use crate::cloudtrail::TrailEvent;
use crate::deadline::Deadline;
use crate::key_use::{KeyUse, ScanWindow, KEY_USE_OPERATIONS};
use crate::pacing::RateLimiter;

/// Longest query string StartQuery accepts (`queryString`: length 1 to 10,000, CloudWatch Logs
/// API reference, StartQuery and QueryDefinition).
pub const MAX_QUERY_LENGTH: usize = 10_000;
/// Most rows a query returns (StartQuery `limit`, 1 to 10,000).
pub const MAX_ROWS: usize = 10_000;
/// The pace of this client's Logs calls (StartQuery and GetQueryResults together). The Logs
/// quotas for these operations are not in kms-facts.md: a throttled call slows the pace.
pub const DEFAULT_CALLS_PER_SECOND: f64 = 4.0;
/// How often a throttled call is tried again (slower each time) before it is reported.
pub const THROTTLED_RETRIES: u32 = 5;
/// First wait between two GetQueryResults of a running query; it doubles up to
/// [`MAX_POLL_INTERVAL`].
pub const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait between two GetQueryResults of a running query.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The fields a query returns (and the emulator serves).
const FIELDS: &[&str] = &[
    "eventID",
    "eventName",
    "eventTime",
    "errorCode",
    "errorMessage",
    "userIdentity.arn",
    "userIdentity.invokedBy",
    "sourceIPAddress",
    "resources.0.ARN",
    "resources.1.ARN",
];

/// What can go wrong with a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsightsError {
    /// A CloudWatch Logs call failed (after the throttling retries).
    #[error(transparent)]
    Call(#[from] AwsCallError),
    /// The query ended without results: `Failed`, `Cancelled`, `Timeout` (60 minutes of runtime)
    /// or a status this client does not know.
    #[error("Logs Insights query {query_id} ended {status}")]
    QueryEnded {
        /// The query.
        query_id: String,
        /// Its status.
        status: String,
    },
    /// StartQuery answered without a query id.
    #[error("StartQuery answered without a queryId")]
    NoQueryId,
}

impl InsightsError {
    /// The error as an AWS call error (operation, code, message), for reporting.
    pub fn into_call_error(self) -> AwsCallError {
        match self {
            Self::Call(e) => e,
            Self::QueryEnded { query_id, status } => AwsCallError {
                operation: "logs:GetQueryResults".into(),
                code: format!("Query{status}"),
                message: format!("Logs Insights query {query_id} ended {status}"),
            },
            Self::NoQueryId => AwsCallError {
                operation: "logs:StartQuery".into(),
                code: "NoQueryId".into(),
                message: "StartQuery answered without a queryId".into(),
            },
        }
    }
}

/// A part of a scan: some keys over a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Segment {
    /// Index of the first key (in the keys the scan is given).
    pub first_key: usize,
    /// How many keys.
    pub key_count: usize,
    /// From (epoch seconds, inclusive).
    pub start: i64,
    /// To (epoch seconds, inclusive).
    pub end: i64,
}

/// Where an Insights scan resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InsightsCursor {
    /// Index of the first key not in any segment yet.
    #[serde(default)]
    pub next_key: usize,
    /// Segments still to read; the first is the one being queried.
    #[serde(default)]
    pub pending: Vec<Segment>,
    /// The query running for the first pending segment.
    #[serde(default)]
    pub query_id: Option<String>,
}

/// What one batch of an Insights scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsightsBatch {
    /// Uses found in this batch.
    pub found: Vec<KeyUse>,
    /// Where the next batch starts; `None` when every key has been read over the whole window.
    pub cursor: Option<InsightsCursor>,
    /// Queries started.
    pub queries: u32,
    /// GetQueryResults calls.
    pub polls: u32,
    /// Rows read.
    pub rows: u64,
    /// Log events the queries scanned (their statistics).
    pub records_scanned: u64,
    /// Queries that hit the row cap and were split.
    pub split: u32,
    /// One-key, one-second segments that still hit the row cap: their rows were kept, more may
    /// exist.
    pub capped: u32,
    /// Calls CloudWatch Logs throttled (and that were tried again).
    pub throttled: u32,
}

/// The Logs Insights query of the uses of `keys` (key ARNs): the KMS events of the operations
/// that use a key, naming one of `keys` as first or second resource, oldest first, at most
/// [`MAX_ROWS`].
pub fn key_use_query(keys: &[String]) -> String {
    let list = |items: &mut dyn Iterator<Item = &str>| {
        items
            .map(|k| format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let operations = list(&mut KEY_USE_OPERATIONS.iter().copied());
    let arns = list(&mut keys.iter().map(String::as_str));
    format!(
        "fields {}\n| filter eventSource = \"kms.amazonaws.com\" and eventName in [{operations}]\n| filter resources.0.ARN in [{arns}] or resources.1.ARN in [{arns}]\n| sort @timestamp asc\n| limit {MAX_ROWS}",
        FIELDS.join(", ")
    )
}

/// How many of `keys` (from the first) fit in one query, at least one.
pub fn keys_per_query(keys: &[String]) -> usize {
    let mut fit = 0;
    for n in 1..=keys.len() {
        if key_use_query(&keys[..n]).len() > MAX_QUERY_LENGTH {
            break;
        }
        fit = n;
    }
    fit.max(1)
}

/// The state of a query, as GetQueryResults answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryState {
    /// Scheduled or Running: ask again later.
    Running,
    /// Complete, with its rows and the events it scanned.
    Complete {
        /// The rows, each a list of fields.
        rows: Vec<Vec<ResultField>>,
        /// `statistics.recordsScanned`.
        records_scanned: f64,
    },
}

/// The CloudWatch Logs client with its pace, for one log group.
#[derive(Debug, Clone)]
pub struct LogsInsights {
    client: Client,
    log_group: String,
    limiter: std::sync::Arc<RateLimiter>,
}

impl LogsInsights {
    /// Queries of `log_group` through `client`, at most `calls_per_second`.
    pub fn new(client: Client, log_group: impl Into<String>, calls_per_second: f64) -> Self {
        Self {
            client,
            log_group: log_group.into(),
            limiter: std::sync::Arc::new(RateLimiter::per_second(calls_per_second)),
        }
    }

    /// A client from `sdk` for `log_group` at [`DEFAULT_CALLS_PER_SECOND`].
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, log_group: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), log_group, DEFAULT_CALLS_PER_SECOND)
    }

    /// The log group queried.
    pub fn log_group(&self) -> &str {
        &self.log_group
    }

    /// Starts the query of `keys`' uses between `start` and `end` (epoch seconds, inclusive);
    /// its id and the throttles it took.
    pub async fn start(
        &self,
        keys: &[String],
        start: i64,
        end: i64,
    ) -> Result<(String, u32), InsightsError> {
        let query = key_use_query(keys);
        let (out, throttled) = self
            .call("logs:StartQuery", || {
                self.client
                    .start_query()
                    .log_group_name(&self.log_group)
                    .start_time(start)
                    .end_time(end)
                    .query_string(query.clone())
                    .limit(MAX_ROWS as i32)
                    .send()
            })
            .await?;
        let id = out.query_id().ok_or(InsightsError::NoQueryId)?.to_owned();
        Ok((id, throttled))
    }

    /// Where query `query_id` stands (every page of its rows once it is complete); with the
    /// GetQueryResults calls made and the throttles they took. `Ok(None)`: Logs does not know
    /// the query (expired, or another endpoint): start it again.
    pub async fn poll(
        &self,
        query_id: &str,
    ) -> Result<(Option<QueryState>, u32, u32), InsightsError> {
        let mut rows = Vec::new();
        let mut next_token: Option<String> = None;
        let (mut calls, mut throttles) = (0, 0);
        loop {
            let result = self
                .call("logs:GetQueryResults", || {
                    self.client
                        .get_query_results()
                        .query_id(query_id)
                        .set_next_token(next_token.clone())
                        .send()
                })
                .await;
            calls += 1;
            let (out, throttled) = match result {
                Ok(answer) => answer,
                Err(InsightsError::Call(e)) if e.code == "ResourceNotFoundException" => {
                    return Ok((None, calls, throttles))
                }
                Err(e) => return Err(e),
            };
            throttles += throttled;
            match out.status() {
                Some(QueryStatus::Complete) => {}
                Some(QueryStatus::Scheduled | QueryStatus::Running) | None => {
                    return Ok((Some(QueryState::Running), calls, throttles))
                }
                Some(other) => {
                    return Err(InsightsError::QueryEnded {
                        query_id: query_id.to_owned(),
                        status: other.as_str().to_owned(),
                    })
                }
            }
            rows.extend(out.results().iter().cloned());
            match out.next_token() {
                Some(token) if !token.is_empty() && !out.results().is_empty() => {
                    next_token = Some(token.to_owned());
                }
                _ => {
                    let records_scanned = out.statistics().map_or(0.0, |s| s.records_scanned());
                    return Ok((
                        Some(QueryState::Complete {
                            rows,
                            records_scanned,
                        }),
                        calls,
                        throttles,
                    ));
                }
            }
        }
    }

    /// One paced call, tried again when throttled; with the number of throttles.
    async fn call<T, E, R, F, Fut>(
        &self,
        operation: &'static str,
        send: F,
    ) -> Result<(T, u32), InsightsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
        >,
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let mut throttled = 0;
        loop {
            self.limiter.acquire().await;
            match send().await {
                Ok(out) => return Ok((out, throttled)),
                Err(e) => {
                    let err = AwsCallError::new(operation, e);
                    let throttling = matches!(
                        err.code.as_str(),
                        "ThrottlingException" | "LimitExceededException"
                    );
                    if throttling && throttled < THROTTLED_RETRIES {
                        throttled += 1;
                        self.limiter.throttled();
                        tracing::warn!(operation, throttled, code = %err.code, "CloudWatch Logs throttled a call; slowing down");
                        continue;
                    }
                    return Err(err.into());
                }
            }
        }
    }
}

/// The event a result row shows.
pub fn row_event(row: &[ResultField]) -> Option<TrailEvent> {
    let get = |name: &str| {
        row.iter()
            .find(|f| f.field() == Some(name))
            .and_then(ResultField::value)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(TrailEvent {
        event_id: get("eventID")?,
        event_name: get("eventName")?,
        event_time: get("eventTime").and_then(|t| {
            aws_smithy_types::DateTime::from_str(&t, aws_smithy_types::date_time::Format::DateTime)
                .ok()
        }),
        error_code: get("errorCode"),
        error_message: get("errorMessage"),
        principal: get("userIdentity.arn").or_else(|| get("userIdentity.invokedBy")),
        source: get("sourceIPAddress"),
        key_arns: ["resources.0.ARN", "resources.1.ARN"]
            .iter()
            .filter_map(|f| get(f))
            .collect(),
    })
}

/// Reads the uses of `keys` in `window` through Logs Insights from `cursor`, until every key is
/// read over the whole window or the deadline leaves less than `per_call` (plus `margin`) for
/// another call. A query still running when time is up stays in the cursor.
pub async fn scan_key_use_insights(
    insights: &LogsInsights,
    keys: &[String],
    window: ScanWindow,
    cursor: InsightsCursor,
    deadline: &Deadline,
    (per_call, margin): (Duration, Duration),
) -> Result<InsightsBatch, InsightsError> {
    let mut batch = InsightsBatch::default();
    let mut at = cursor;
    let (start, end) = (window.start.secs(), window.end.secs());
    let mut wait = FIRST_POLL_INTERVAL;
    loop {
        if at.pending.is_empty() {
            if at.next_key >= keys.len() {
                return Ok(batch);
            }
            let count = keys_per_query(&keys[at.next_key..]);
            at.pending.push(Segment {
                first_key: at.next_key,
                key_count: count,
                start,
                end,
            });
            at.next_key += count;
        }
        if (batch.queries > 0 || batch.polls > 0) && !deadline.allows(per_call, margin) {
            batch.cursor = Some(at);
            return Ok(batch);
        }
        let segment = at.pending[0].clone();
        let segment_keys = keys
            .get(segment.first_key..segment.first_key + segment.key_count)
            .unwrap_or_default();
        let query_id = match at.query_id.clone() {
            Some(id) => id,
            None => {
                let (id, throttled) = insights
                    .start(segment_keys, segment.start, segment.end)
                    .await?;
                batch.queries += 1;
                batch.throttled += throttled;
                wait = FIRST_POLL_INTERVAL;
                at.query_id = Some(id.clone());
                id
            }
        };
        let (state, polls, throttled) = match insights.poll(&query_id).await {
            Ok(answer) => answer,
            Err(e) => {
                if matches!(e, InsightsError::QueryEnded { .. }) {
                    // The retry starts the segment's query again.
                    at.query_id = None;
                }
                batch.cursor = Some(at);
                return Err(e);
            }
        };
        batch.polls += polls;
        batch.throttled += throttled;
        let (rows, records_scanned) = match state {
            None => {
                at.query_id = None;
                continue;
            }
            Some(QueryState::Running) => {
                if !deadline.allows(per_call + wait, margin) {
                    batch.cursor = Some(at);
                    return Ok(batch);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_POLL_INTERVAL);
                continue;
            }
            Some(QueryState::Complete {
                rows,
                records_scanned,
            }) => (rows, records_scanned),
        };
        at.query_id = None;
        batch.records_scanned += records_scanned.max(0.0) as u64;
        batch.rows += rows.len() as u64;
        at.pending.remove(0);
        if rows.len() >= MAX_ROWS {
            if let Some(halves) = split(&segment) {
                batch.split += 1;
                tracing::info!(
                    ?segment,
                    "a Logs Insights query hit the row cap: splitting it"
                );
                at.pending.splice(0..0, halves);
                continue;
            }
            batch.capped += 1;
            tracing::warn!(
                ?segment,
                "one key has {MAX_ROWS} or more uses in one second: keeping the rows read, more exist"
            );
        }
        for row in &rows {
            let Some(event) = row_event(row) else {
                continue;
            };
            batch.found.extend(
                segment_keys
                    .iter()
                    .filter_map(|key| KeyUse::from_event(key, &event)),
            );
        }
    }
}

/// A capped segment split in two: by time while it spans more than a second, else by keys.
fn split(segment: &Segment) -> Option<[Segment; 2]> {
    if segment.end > segment.start {
        let mid = segment.start + (segment.end - segment.start) / 2;
        return Some([
            Segment {
                end: mid,
                ..segment.clone()
            },
            Segment {
                start: mid + 1,
                ..segment.clone()
            },
        ]);
    }
    if segment.key_count > 1 {
        let half = segment.key_count / 2;
        return Some([
            Segment {
                key_count: half,
                ..segment.clone()
            },
            Segment {
                first_key: segment.first_key + half,
                key_count: segment.key_count - half,
                ..segment.clone()
            },
        ]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(i: usize) -> String {
        format!("arn:aws:kms:us-east-1:111122223333:key/{i:08}-1234-1234-1234-123456789012")
    }

    #[test]
    fn a_query_fits_the_length_limit_and_names_every_key_twice() {
        let keys: Vec<String> = (0..500).map(arn).collect();
        let n = keys_per_query(&keys);
        assert!(n > 10 && n < 500, "{n}");
        assert!(key_use_query(&keys[..n]).len() <= MAX_QUERY_LENGTH);
        assert!(key_use_query(&keys[..=n]).len() > MAX_QUERY_LENGTH);
        let query = key_use_query(&keys[..2]);
        assert_eq!(query.matches(&keys[1]).count(), 2);
        assert!(query.contains("eventSource = \"kms.amazonaws.com\""));
        assert!(query.ends_with("| limit 10000"));
    }

    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_cloudwatchlogs::operation::get_query_results::GetQueryResultsOutput;
    use aws_sdk_cloudwatchlogs::operation::start_query::StartQueryOutput;
    use aws_smithy_mocks::{
        create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode,
    };
    use aws_smithy_types::DateTime;

    fn mock_logs(rules: &[&Rule]) -> LogsInsights {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let client = Client::from_conf(
            aws_sdk_cloudwatchlogs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .http_client(create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        );
        LogsInsights::new(client, "trail", 1000.0)
    }

    fn http_error(status: u16, body: &'static str) -> aws_smithy_runtime_api::http::Response {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            aws_smithy_types::body::SdkBody::from(body),
        )
    }

    fn field(name: &str, value: &str) -> ResultField {
        ResultField::builder().field(name).value(value).build()
    }

    fn use_row(key: &str, id: usize) -> Vec<ResultField> {
        vec![
            field("eventID", &format!("e-{id}")),
            field("eventName", "Decrypt"),
            field("eventTime", "2026-11-30T10:00:00Z"),
            field("errorCode", "KMSInvalidStateException"),
            field(
                "userIdentity.arn",
                "arn:aws:iam::111122223333:user/payments-app",
            ),
            field("sourceIPAddress", "192.0.2.7"),
            field("resources.0.ARN", key),
            field("@ptr", "p"),
        ]
    }

    fn window(start: i64, end: i64) -> ScanWindow {
        ScanWindow {
            start: DateTime::from_secs(start),
            end: DateTime::from_secs(end),
        }
    }

    fn far() -> Deadline {
        Deadline::after(Duration::from_secs(600))
    }

    const BUDGET: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(10));

    #[tokio::test]
    async fn a_failed_query_is_a_named_error_and_the_retry_starts_it_again() {
        let start = mock!(Client::start_query)
            .then_output(|| StartQueryOutput::builder().query_id("q-1").build());
        let failed = mock!(Client::get_query_results).then_output(|| {
            GetQueryResultsOutput::builder()
                .status(QueryStatus::Failed)
                .build()
        });
        let logs = mock_logs(&[&start, &failed]);
        let keys = vec![arn(1)];
        let err = scan_key_use_insights(
            &logs,
            &keys,
            window(0, 100),
            InsightsCursor::default(),
            &far(),
            BUDGET,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            InsightsError::QueryEnded {
                query_id: "q-1".into(),
                status: "Failed".into()
            }
        );
        let call = err.into_call_error();
        assert_eq!(
            (call.operation.as_str(), call.code.as_str()),
            ("logs:GetQueryResults", "QueryFailed")
        );
        for status in [QueryStatus::Cancelled, QueryStatus::Timeout] {
            let ended = mock!(Client::get_query_results).then_output(move || {
                GetQueryResultsOutput::builder()
                    .status(status.clone())
                    .build()
            });
            let logs = mock_logs(&[&ended]);
            assert!(matches!(
                logs.poll("q").await,
                Err(InsightsError::QueryEnded { .. })
            ));
        }
    }

    #[tokio::test]
    async fn a_capped_query_is_split_until_no_part_is_capped_and_nothing_is_missed() {
        let keys: Vec<String> = (0..4).map(arn).collect();
        // The whole window (0..=99) returns the cap; each half returns one use.
        let start_all = mock!(Client::start_query)
            .match_requests(|r| r.start_time() == Some(0) && r.end_time() == Some(99))
            .then_output(|| StartQueryOutput::builder().query_id("all").build());
        let start_first = mock!(Client::start_query)
            .match_requests(|r| r.start_time() == Some(0) && r.end_time() == Some(49))
            .then_output(|| StartQueryOutput::builder().query_id("first").build());
        let start_second = mock!(Client::start_query)
            .match_requests(|r| r.start_time() == Some(50) && r.end_time() == Some(99))
            .then_output(|| StartQueryOutput::builder().query_id("second").build());
        let capped_key = arn(0);
        let all = mock!(Client::get_query_results)
            .match_requests(|r| r.query_id() == Some("all"))
            .then_output(move || {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Complete)
                    .set_results(Some(
                        (0..MAX_ROWS).map(|i| use_row(&capped_key, i)).collect(),
                    ))
                    .build()
            });
        let (k1, k3) = (arn(1), arn(3));
        let first = mock!(Client::get_query_results)
            .match_requests(|r| r.query_id() == Some("first"))
            .then_output(move || {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Complete)
                    .results(use_row(&k1, 1))
                    .build()
            });
        let second = mock!(Client::get_query_results)
            .match_requests(|r| r.query_id() == Some("second"))
            .then_output(move || {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Complete)
                    .results(use_row(&k3, 2))
                    .build()
            });
        let logs = mock_logs(&[
            &start_all,
            &start_first,
            &start_second,
            &all,
            &first,
            &second,
        ]);
        let batch = scan_key_use_insights(
            &logs,
            &keys,
            window(0, 99),
            InsightsCursor::default(),
            &far(),
            BUDGET,
        )
        .await
        .unwrap();
        assert_eq!((batch.queries, batch.split, batch.capped), (3, 1, 0));
        let found: Vec<&str> = batch.found.iter().map(|f| f.key_arn.as_str()).collect();
        assert_eq!(found, [arn(1), arn(3)]);
        assert_eq!(batch.cursor, None);
    }

    #[tokio::test]
    async fn one_key_capped_in_one_second_keeps_its_rows_and_says_so() {
        let key = arn(7);
        let start = mock!(Client::start_query)
            .then_output(|| StartQueryOutput::builder().query_id("q").build());
        let row_key = key.clone();
        let capped = mock!(Client::get_query_results).then_output(move || {
            GetQueryResultsOutput::builder()
                .status(QueryStatus::Complete)
                .set_results(Some((0..MAX_ROWS).map(|i| use_row(&row_key, i)).collect()))
                .build()
        });
        let logs = mock_logs(&[&start, &capped]);
        let batch = scan_key_use_insights(
            &logs,
            &[key],
            window(5, 5),
            InsightsCursor::default(),
            &far(),
            BUDGET,
        )
        .await
        .unwrap();
        assert_eq!((batch.capped, batch.found.len()), (1, MAX_ROWS));
    }

    #[tokio::test]
    async fn throttling_slows_down_and_retries_and_a_running_query_is_polled_again() {
        let throttled = mock!(Client::start_query)
            .sequence()
            .http_response(|| {
                http_error(400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#)
            })
            .http_response(|| {
                http_error(
                    400,
                    r#"{"__type":"LimitExceededException","message":"too many concurrent queries"}"#,
                )
            })
            .output(|| StartQueryOutput::builder().query_id("q").build())
            .build();
        let results = mock!(Client::get_query_results)
            .sequence()
            .output(|| {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Scheduled)
                    .build()
            })
            .output(|| {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Running)
                    .build()
            })
            .output(|| {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Complete)
                    .build()
            })
            .build();
        let logs = mock_logs(&[&throttled, &results]);
        let batch = scan_key_use_insights(
            &logs,
            &[arn(1)],
            window(0, 10),
            InsightsCursor::default(),
            &far(),
            BUDGET,
        )
        .await
        .unwrap();
        assert_eq!((batch.queries, batch.polls, batch.throttled), (1, 3, 2));
        assert!(batch.found.is_empty());

        // Throttled past the retries: reported by name.
        let always = mock!(Client::start_query).then_http_response(|| {
            http_error(
                400,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            )
        });
        let logs = mock_logs(&[&always]);
        let err = logs.start(&[arn(1)], 0, 1).await.unwrap_err();
        let call = err.into_call_error();
        assert_eq!(
            (call.operation.as_str(), call.code.as_str()),
            ("logs:StartQuery", "ThrottlingException")
        );
        assert_eq!(always.num_calls(), THROTTLED_RETRIES as usize + 1);
    }

    #[test]
    fn capped_segments_split_by_time_then_by_keys() {
        let s = Segment {
            first_key: 4,
            key_count: 3,
            start: 100,
            end: 103,
        };
        let [a, b] = split(&s).unwrap();
        assert_eq!((a.start, a.end, b.start, b.end), (100, 101, 102, 103));
        let one_second = Segment {
            start: 7,
            end: 7,
            ..s
        };
        let [a, b] = split(&one_second).unwrap();
        assert_eq!(
            (a.first_key, a.key_count, b.first_key, b.key_count),
            (4, 1, 5, 2)
        );
        assert_eq!(
            split(&Segment {
                key_count: 1,
                ..one_second
            }),
            None
        );
    }
}
