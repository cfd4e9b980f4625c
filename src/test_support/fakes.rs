//! Test helpers: SDK clients answered by `aws-smithy-mocks` rules, without retries, for the
//! services besides KMS (`crate::test_support::mock_kms` builds the KMS one), and small stateful
//! models of the Step Functions and KMS calls the triggers make.

/// A client of SDK crate `$sdk` whose calls are answered by `$rules` (matched in any order).
macro_rules! mocked {
    ($sdk:ident, $rules:expr) => {{
        let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
            .rule_mode(aws_smithy_mocks::RuleMode::MatchAny);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .credentials_provider($sdk::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "mock",
                ))
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }};
}

pub(crate) use mocked;

use std::sync::{Arc, Mutex};

use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
use aws_sdk_sfn::operation::stop_execution::StopExecutionOutput;
use aws_sdk_sfn::types::error::{ExecutionAlreadyExists, ExecutionDoesNotExist};
use aws_sdk_sfn::types::{
    ExecutionListItem, ExecutionStatus, HistoryEvent, HistoryEventType, StateEnteredEventDetails,
};
use aws_smithy_mocks::{mock, MockResponse, Rule};
use aws_smithy_types::DateTime;

/// Decommission state machine of the unit tests.
pub(crate) const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:Decommission";
/// Cancel state machine of the unit tests.
pub(crate) const CANCEL_MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:Cancel";

/// One execution held by [`FakeSfn`].
#[derive(Debug, Clone)]
pub(crate) struct FakeExecution {
    pub arn: String,
    pub machine: String,
    pub name: String,
    pub input: String,
    pub status: ExecutionStatus,
    pub start_secs: i64,
    pub stop_error: Option<String>,
    /// Name and input of the state it last entered.
    pub current_state: Option<(String, String)>,
}

/// Step Functions semantics the triggers rely on (name/input idempotency of StartExecution,
/// ExecutionAlreadyExists, RUNNING filter, StopExecution), answered through mock rules so the
/// real SDK client serializes every request. Counts every call.
#[derive(Clone, Default)]
pub(crate) struct FakeSfn {
    pub executions: Arc<Mutex<Vec<FakeExecution>>>,
    pub calls: Arc<Mutex<Vec<&'static str>>>,
    /// How many of the next ListExecutions calls answer with nothing (an eventually
    /// consistent listing that has not caught up yet).
    pub stale_listings: Arc<Mutex<u32>>,
    clock: Arc<Mutex<i64>>,
}

impl FakeSfn {
    pub fn insert(
        &self,
        machine: &str,
        name: &str,
        input: &str,
        status: ExecutionStatus,
    ) -> String {
        let arn = crate::sfn::execution_arn(machine, name).unwrap();
        let start_secs = self.tick();
        self.executions.lock().unwrap().push(FakeExecution {
            arn: arn.clone(),
            machine: machine.into(),
            name: name.into(),
            input: input.into(),
            status,
            start_secs,
            stop_error: None,
            current_state: None,
        });
        arn
    }

    /// Calls of a kind made so far (`"StartExecution"`, ...), or all calls for `None`.
    pub fn count(&self, kind: Option<&str>) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| kind.is_none_or(|k| **c == k))
            .count()
    }

    pub fn get(&self, name: &str) -> Option<FakeExecution> {
        self.executions
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .cloned()
    }

    fn tick(&self) -> i64 {
        let mut clock = self.clock.lock().unwrap();
        *clock += 1;
        1_800_000_000 + *clock
    }

    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    pub fn client(&self) -> aws_sdk_sfn::Client {
        let rules = self.rules();
        mocked!(aws_sdk_sfn, rules.iter())
    }

    fn rules(&self) -> Vec<Rule> {
        let (me1, me2, me3, me4, me5) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
        );
        let list = mock!(aws_sdk_sfn::Client::list_executions).then_compute_response(move |req| {
            me1.record("ListExecutions");
            let stale = {
                let mut stale = me1.stale_listings.lock().unwrap();
                let was = *stale > 0;
                *stale = stale.saturating_sub(1);
                was
            };
            let items = me1
                .executions
                .lock()
                .unwrap()
                .iter()
                .filter(|_| !stale)
                .filter(|e| Some(e.machine.as_str()) == req.state_machine_arn())
                .filter(|e| req.status_filter().is_none_or(|s| *s == e.status))
                .map(|e| {
                    ExecutionListItem::builder()
                        .execution_arn(&e.arn)
                        .state_machine_arn(&e.machine)
                        .name(&e.name)
                        .status(e.status.clone())
                        .start_date(DateTime::from_secs(e.start_secs))
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            MockResponse::Output(
                ListExecutionsOutput::builder()
                    .set_executions(Some(items))
                    .build()
                    .unwrap(),
            )
        });
        let describe =
            mock!(aws_sdk_sfn::Client::describe_execution).then_compute_response(move |req| {
                me2.record("DescribeExecution");
                let found = me2
                    .executions
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|e| Some(e.arn.as_str()) == req.execution_arn())
                    .cloned();
                match found {
                    Some(e) => MockResponse::Output(
                        DescribeExecutionOutput::builder()
                            .execution_arn(&e.arn)
                            .state_machine_arn(&e.machine)
                            .name(&e.name)
                            .status(e.status.clone())
                            .start_date(DateTime::from_secs(e.start_secs))
                            .input(&e.input)
                            .set_error(e.stop_error.clone())
                            .build()
                            .unwrap(),
                    ),
                    None => MockResponse::Error(DescribeExecutionError::ExecutionDoesNotExist(
                        ExecutionDoesNotExist::builder()
                            .message("Execution Does Not Exist")
                            .build(),
                    )),
                }
            });
        let start = mock!(aws_sdk_sfn::Client::start_execution).then_compute_response(move |req| {
            me3.record("StartExecution");
            let machine = req.state_machine_arn().unwrap_or_default().to_owned();
            let name = req.name().unwrap_or_default().to_owned();
            let input = req.input().unwrap_or("{}").to_owned();
            let existing = me3
                .executions
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.machine == machine && e.name == name)
                .cloned();
            match existing {
                Some(e) if e.status == ExecutionStatus::Running && e.input == input => {
                    MockResponse::Output(
                        StartExecutionOutput::builder()
                            .execution_arn(&e.arn)
                            .start_date(DateTime::from_secs(e.start_secs))
                            .build()
                            .unwrap(),
                    )
                }
                Some(e) => MockResponse::Error(StartExecutionError::ExecutionAlreadyExists(
                    ExecutionAlreadyExists::builder()
                        .message(format!("Execution Already Exists: '{}'", e.arn))
                        .build(),
                )),
                None => {
                    let arn = me3.insert(&machine, &name, &input, ExecutionStatus::Running);
                    let start_secs = me3.get(&name).unwrap().start_secs;
                    MockResponse::Output(
                        StartExecutionOutput::builder()
                            .execution_arn(arn)
                            .start_date(DateTime::from_secs(start_secs))
                            .build()
                            .unwrap(),
                    )
                }
            }
        });
        let stop = mock!(aws_sdk_sfn::Client::stop_execution).then_compute_response(move |req| {
            me4.record("StopExecution");
            let mut executions = me4.executions.lock().unwrap();
            if let Some(e) = executions
                .iter_mut()
                .find(|e| Some(e.arn.as_str()) == req.execution_arn())
            {
                e.status = ExecutionStatus::Aborted;
                e.stop_error = req.error().map(str::to_owned);
            }
            MockResponse::Output(
                StopExecutionOutput::builder()
                    .stop_date(DateTime::from_secs(1_800_000_999))
                    .build()
                    .unwrap(),
            )
        });
        let history =
            mock!(aws_sdk_sfn::Client::get_execution_history).then_compute_response(move |req| {
                me5.record("GetExecutionHistory");
                let found = me5
                    .executions
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|e| Some(e.arn.as_str()) == req.execution_arn())
                    .cloned();
                let events = found
                    .and_then(|e| e.current_state)
                    .map(|(name, input)| {
                        vec![HistoryEvent::builder()
                            .timestamp(DateTime::from_secs(1_800_000_500))
                            .r#type(HistoryEventType::WaitStateEntered)
                            .id(7)
                            .state_entered_event_details(
                                StateEnteredEventDetails::builder()
                                    .name(name)
                                    .input(input)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap()]
                    })
                    .unwrap_or_default();
                MockResponse::Output(
                    GetExecutionHistoryOutput::builder()
                        .set_events(Some(events))
                        .build()
                        .unwrap(),
                )
            });
        vec![list, describe, start, stop, history]
    }
}

use std::collections::BTreeMap;

use aws_sdk_kms::operation::describe_custom_key_stores::{
    DescribeCustomKeyStoresError, DescribeCustomKeyStoresOutput,
};
use aws_sdk_kms::operation::describe_key::{DescribeKeyError, DescribeKeyOutput};
use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsOutput;

/// A KMS key of [`FakeKms`].
#[derive(Debug, Clone)]
pub(crate) struct FakeKey {
    pub store: Option<String>,
    pub origin: &'static str,
    pub tags: BTreeMap<String, String>,
}

/// A custom key store of [`FakeKms`].
#[derive(Debug, Clone)]
pub(crate) struct FakeStore {
    pub name: String,
    pub cluster: Option<String>,
}

/// The KMS reads the triggers make (DescribeKey, ListResourceTags, DescribeCustomKeyStores),
/// answered from a small model through mock rules. Counts every call.
#[derive(Clone, Default)]
pub(crate) struct FakeKms {
    pub keys: Arc<Mutex<BTreeMap<String, FakeKey>>>,
    pub stores: Arc<Mutex<BTreeMap<String, FakeStore>>>,
    pub calls: Arc<Mutex<usize>>,
}

impl FakeKms {
    pub fn store(&self, id: &str, name: &str, cluster: Option<&str>) {
        self.stores.lock().unwrap().insert(
            id.into(),
            FakeStore {
                name: name.into(),
                cluster: cluster.map(Into::into),
            },
        );
    }

    /// Adds a key (ARN `arn:aws:kms:us-east-1:123456789012:key/<id>`) and returns its ARN.
    pub fn key(&self, id: &str, store: Option<&str>, tags: &[(&str, &str)]) -> String {
        let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{id}");
        let origin = if store.is_some() {
            "AWS_CLOUDHSM"
        } else {
            "AWS_KMS"
        };
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.keys.lock().unwrap().insert(
            arn.clone(),
            FakeKey {
                store: store.map(Into::into),
                origin,
                tags,
            },
        );
        arn
    }

    pub fn call_count(&self) -> usize {
        *self.calls.lock().unwrap()
    }

    pub fn client(&self) -> aws_sdk_kms::Client {
        let (me1, me2, me3) = (self.clone(), self.clone(), self.clone());
        let describe_key =
            mock!(aws_sdk_kms::Client::describe_key).then_compute_response(move |req| {
                *me1.calls.lock().unwrap() += 1;
                let key = me1
                    .keys
                    .lock()
                    .unwrap()
                    .get(req.key_id().unwrap_or_default())
                    .cloned();
                match key {
                    Some(k) => MockResponse::Output(
                        DescribeKeyOutput::builder()
                            .key_metadata(
                                aws_sdk_kms::types::KeyMetadata::builder()
                                    .key_id(
                                        req.key_id()
                                            .unwrap_or_default()
                                            .rsplit('/')
                                            .next()
                                            .unwrap(),
                                    )
                                    .arn(req.key_id().unwrap_or_default())
                                    .origin(aws_sdk_kms::types::OriginType::from(k.origin))
                                    .set_custom_key_store_id(k.store)
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    ),
                    None => MockResponse::Error(DescribeKeyError::NotFoundException(
                        aws_sdk_kms::types::error::NotFoundException::builder()
                            .message("Key not found")
                            .meta(
                                aws_sdk_kms::error::ErrorMetadata::builder()
                                    .code("NotFoundException")
                                    .build(),
                            )
                            .build(),
                    )),
                }
            });
        let tags =
            mock!(aws_sdk_kms::Client::list_resource_tags).then_compute_response(move |req| {
                *me2.calls.lock().unwrap() += 1;
                let key = me2
                    .keys
                    .lock()
                    .unwrap()
                    .get(req.key_id().unwrap_or_default())
                    .cloned();
                let tags = key
                    .map(|k| {
                        k.tags
                            .iter()
                            .map(|(t, v)| {
                                aws_sdk_kms::types::Tag::builder()
                                    .tag_key(t)
                                    .tag_value(v)
                                    .build()
                                    .unwrap()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                MockResponse::Output(
                    ListResourceTagsOutput::builder()
                        .set_tags(Some(tags))
                        .truncated(false)
                        .build(),
                )
            });
        let stores = mock!(aws_sdk_kms::Client::describe_custom_key_stores).then_compute_response(
            move |req| {
                *me3.calls.lock().unwrap() += 1;
                let id = req.custom_key_store_id().unwrap_or_default().to_owned();
                let store = me3.stores.lock().unwrap().get(&id).cloned();
                match store {
                    Some(s) => MockResponse::Output(
                        DescribeCustomKeyStoresOutput::builder()
                            .custom_key_stores(
                                aws_sdk_kms::types::CustomKeyStoresListEntry::builder()
                                    .custom_key_store_id(id)
                                    .custom_key_store_name(s.name)
                                    .custom_key_store_type(if s.cluster.is_some() {
                                        aws_sdk_kms::types::CustomKeyStoreType::AwsCloudhsm
                                    } else {
                                        aws_sdk_kms::types::CustomKeyStoreType::ExternalKeyStore
                                    })
                                    .connection_state(
                                        aws_sdk_kms::types::ConnectionStateType::Connected,
                                    )
                                    .set_cloud_hsm_cluster_id(s.cluster)
                                    .build(),
                            )
                            .build(),
                    ),
                    None => MockResponse::Error(
                        DescribeCustomKeyStoresError::CustomKeyStoreNotFoundException(
                            aws_sdk_kms::types::error::CustomKeyStoreNotFoundException::builder()
                                .message("not found")
                                .meta(
                                    aws_sdk_kms::error::ErrorMetadata::builder()
                                        .code("CustomKeyStoreNotFoundException")
                                        .build(),
                                )
                                .build(),
                        ),
                    ),
                }
            },
        );
        crate::test_support::mock_kms(&[&describe_key, &tags, &stores])
    }
}

use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput;

/// CloudTrail's `LookupEvents` by `EventId`, answered from the records put in with
/// [`record`](Self::record); a record becomes visible only after `hidden_lookups` lookups of
/// it, as CloudTrail shows events minutes after the call. Counts every lookup.
#[derive(Clone, Default)]
pub(crate) struct FakeCloudTrail {
    records: Arc<Mutex<BTreeMap<String, (serde_json::Value, usize)>>>,
    pub lookups: Arc<Mutex<usize>>,
}

impl FakeCloudTrail {
    /// Records `record` (a CloudTrail record with its `eventID`), shown from the
    /// `hidden_lookups + 1`-th lookup of its id on.
    pub fn record(&self, record: &serde_json::Value, hidden_lookups: usize) {
        let id = record["eventID"].as_str().unwrap_or_default().to_owned();
        self.records
            .lock()
            .unwrap()
            .insert(id, (record.clone(), hidden_lookups));
    }

    pub fn lookup_count(&self) -> usize {
        *self.lookups.lock().unwrap()
    }

    pub fn client(&self) -> aws_sdk_cloudtrail::Client {
        let me = self.clone();
        let lookup =
            mock!(aws_sdk_cloudtrail::Client::lookup_events).then_compute_response(move |req| {
                *me.lookups.lock().unwrap() += 1;
                let id = req
                    .lookup_attributes()
                    .iter()
                    .find(|a| a.attribute_key().as_str() == "EventId")
                    .map(|a| a.attribute_value().to_owned())
                    .unwrap_or_default();
                let mut records = me.records.lock().unwrap();
                let events = match records.get_mut(&id) {
                    Some((_, hidden)) if *hidden > 0 => {
                        *hidden -= 1;
                        vec![]
                    }
                    Some((record, _)) => vec![aws_sdk_cloudtrail::types::Event::builder()
                        .event_id(&id)
                        .cloud_trail_event(record.to_string())
                        .build()],
                    None => vec![],
                };
                MockResponse::Output(
                    LookupEventsOutput::builder()
                        .set_events(Some(events))
                        .build(),
                )
            });
        mocked!(aws_sdk_cloudtrail, [&lookup])
    }
}
