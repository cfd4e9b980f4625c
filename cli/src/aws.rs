//! AWS as the command line sees it: the SDK configuration (found as the AWS CLI finds it), the
//! stack's outputs, the caller, Step Functions executions and the run ledger.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::primitives::{DateTime, DateTimeFormat};
use kms_decommission::ledger::{self, KeyRecord, Ledger, RunRecord};
use serde_json::Value;

use crate::error::CliError;

/// Stack output naming the decommission state machine.
pub const DECOMMISSION_OUTPUT: &str = "DecommissionStateMachineArn";
/// Stack output naming the cancel state machine.
pub const CANCEL_OUTPUT: &str = "CancelStateMachineArn";
/// Stack output naming the run ledger table.
pub const LEDGER_OUTPUT: &str = "LedgerTableName";

/// How often a command waiting for an execution asks again.
const POLL: Duration = Duration::from_secs(1);

/// The SDK configuration: `--profile`, `--region`, `--endpoint-url`, else what the AWS CLI
/// reads (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/config, SSO, instance roles).
pub async fn sdk_config(
    profile: Option<&str>,
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = profile {
        // As the AWS CLI: a named profile's credentials win over AWS_ACCESS_KEY_ID and friends.
        loader = loader.profile_name(profile).credentials_provider(
            aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(profile)
                .build(),
        );
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An AWS SDK failure as a [`CliError`] named by the service's error code.
pub fn aws_error<E, R>(
    service: &'static str,
    operation: &'static str,
    err: SdkError<E, R>,
) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let context = format!("{}", aws_sdk_sfn::error::DisplayErrorContext(&err));
    let code = match &err {
        SdkError::ServiceError(_) => err.code().unwrap_or("ServiceError").to_owned(),
        _ if context.contains("CredentialsNotLoaded") || context.contains("credential") => {
            "NoCredentials".to_owned()
        }
        _ if context.contains("region") || context.contains("Region") => "NoRegion".to_owned(),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "Unreachable".to_owned(),
        SdkError::ConstructionFailure(_) => "RequestNotSent".to_owned(),
        _ => err.code().unwrap_or("UnexpectedResponse").to_owned(),
    };
    let message = match err.message() {
        Some(message) => message.to_owned(),
        None => context,
    };
    CliError::Aws {
        service,
        operation,
        code,
        message,
    }
}

/// What the command line uses of the stack.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The decommission state machine.
    pub decommission_arn: String,
    /// The cancel state machine.
    pub cancel_arn: String,
    /// The run ledger table.
    pub ledger_table: String,
}

/// Reads the stack's outputs (CloudFormation DescribeStacks).
pub async fn stack(sdk: &SdkConfig, name: &str) -> Result<Stack, CliError> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let answer = client
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|err| {
            let missing = err.message().is_some_and(|m| m.contains("does not exist"));
            if missing {
                CliError::StackNotFound {
                    stack: name.to_owned(),
                }
            } else {
                aws_error("cloudformation", "DescribeStacks", err)
            }
        })?;
    let outputs: HashMap<String, String> = answer
        .stacks()
        .first()
        .ok_or_else(|| CliError::StackNotFound {
            stack: name.to_owned(),
        })?
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let get = |output: &'static str| {
        outputs
            .get(output)
            .cloned()
            .ok_or_else(|| CliError::StackOutputMissing {
                stack: name.to_owned(),
                output,
            })
    };
    Ok(Stack {
        decommission_arn: get(DECOMMISSION_OUTPUT)?,
        cancel_arn: get(CANCEL_OUTPUT)?,
        ledger_table: get(LEDGER_OUTPUT)?,
    })
}

/// The caller's ARN (STS GetCallerIdentity).
pub async fn caller_arn(sdk: &SdkConfig) -> Result<String, CliError> {
    let answer = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|err| aws_error("sts", "GetCallerIdentity", err))?;
    answer
        .arn()
        .map(str::to_owned)
        .ok_or_else(|| CliError::UnexpectedResponse("GetCallerIdentity named no ARN".into()))
}

/// RFC 3339 of an SDK time.
pub fn rfc3339(time: &DateTime) -> String {
    time.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| time.secs().to_string())
}

/// An execution as DescribeExecution tells it, plus the state it is in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Execution {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Stop (RFC 3339).
    pub stopped_at: Option<String>,
    /// The input.
    pub input: Option<Value>,
    /// The output (the report).
    pub output: Option<Value>,
    /// Error name.
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
    /// The state entered last (from the history).
    pub state: Option<String>,
}

impl Execution {
    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.status == "RUNNING"
    }

    /// The store its input names.
    pub fn store_id(&self) -> Option<String> {
        self.input
            .as_ref()?
            .get("CustomKeyStoreId")?
            .as_str()
            .map(str::to_owned)
    }

    /// Whether its input asks for a dry run.
    pub fn dry_run(&self) -> bool {
        self.input
            .as_ref()
            .and_then(|i| i.get("DryRun"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Its failure as an error (`None` if it succeeded or still runs).
    pub fn failure(&self) -> Option<CliError> {
        if self.is_running() || self.status == "SUCCEEDED" {
            return None;
        }
        Some(CliError::RunFailed {
            execution: self.arn.clone(),
            status: self.status.clone(),
            error: self.error.clone().unwrap_or_else(|| self.status.clone()),
            cause: self
                .cause
                .as_deref()
                .map(readable_cause)
                .unwrap_or_default(),
        })
    }
}

/// A Lambda error's cause is its `{"errorType", "errorMessage"}` document: the message alone.
pub fn readable_cause(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| cause.to_owned())
}

/// Step Functions and the ledger of one stack.
#[derive(Debug, Clone)]
pub struct Aws {
    /// The SDK configuration.
    pub sdk: SdkConfig,
    /// The stack's outputs.
    pub stack: Stack,
    sfn: aws_sdk_sfn::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

fn parse_json(text: Option<&str>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

impl Aws {
    /// Clients for `stack`.
    pub fn new(sdk: SdkConfig, stack: Stack) -> Self {
        Self {
            sfn: aws_sdk_sfn::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            stack,
        }
    }

    /// The run ledger.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.dynamodb.clone(), self.stack.ledger_table.clone())
    }

    /// Starts an execution of `state_machine` named `name`; its ARN.
    pub async fn start(
        &self,
        state_machine: &str,
        name: &str,
        input: &Value,
    ) -> Result<String, CliError> {
        let answer = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|err| aws_error("stepfunctions", "StartExecution", err))?;
        Ok(answer.execution_arn().to_owned())
    }

    /// Describes an execution, with the state it entered last.
    pub async fn execution(&self, arn: &str) -> Result<Execution, CliError> {
        let answer = self
            .sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist() || e.is_invalid_arn())
                {
                    CliError::RunNotFound(format!("no execution {arn}"))
                } else {
                    aws_error("stepfunctions", "DescribeExecution", err)
                }
            })?;
        let mut execution = Execution {
            arn: answer.execution_arn().to_owned(),
            name: answer.name().unwrap_or_default().to_owned(),
            status: answer.status().as_str().to_owned(),
            started_at: rfc3339(answer.start_date()),
            stopped_at: answer.stop_date().map(rfc3339),
            input: parse_json(answer.input()),
            output: parse_json(answer.output()),
            error: answer.error().map(str::to_owned),
            cause: answer.cause().map(str::to_owned),
            state: None,
        };
        execution.state = self.last_state(arn).await?;
        Ok(execution)
    }

    /// The state an execution entered last: the `StateEntered` event with the highest id. The
    /// newest page first (`reverseOrder`); a service that lists oldest first is read to the end.
    async fn last_state(&self, arn: &str) -> Result<Option<String>, CliError> {
        let mut newest: Option<(i64, String)> = None;
        let mut token: Option<String> = None;
        loop {
            let answer = self
                .sfn
                .get_execution_history()
                .execution_arn(arn)
                .reverse_order(true)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|err| aws_error("stepfunctions", "GetExecutionHistory", err))?;
            let events = answer.events();
            for event in events {
                if let Some(details) = event.state_entered_event_details() {
                    if newest.as_ref().is_none_or(|(id, _)| event.id() > *id) {
                        newest = Some((event.id(), details.name().to_owned()));
                    }
                }
            }
            let descending = match (events.first(), events.last()) {
                (Some(first), Some(last)) => first.id() >= last.id(),
                _ => true,
            };
            match answer.next_token() {
                Some(next) if !descending || newest.is_none() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(newest.map(|(_, name)| name))
    }

    /// Waits until an execution ends (at most `timeout`); the execution as it ended.
    pub async fn wait(&self, arn: &str, timeout: Duration) -> Result<Execution, CliError> {
        let started = Instant::now();
        loop {
            let execution = self.execution(arn).await?;
            if !execution.is_running() {
                return Ok(execution);
            }
            if started.elapsed() > timeout {
                return Err(CliError::NotFinished(format!(
                    "execution {arn} still runs after {} s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The running real (not dry-run) decommission of `store_id` that Step Functions knows, if
    /// any: a run just started has not taken the store's lock yet.
    pub async fn running_decommission(&self, store_id: &str) -> Result<Option<String>, CliError> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sfn
                .list_executions()
                .state_machine_arn(&self.stack.decommission_arn)
                .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|err| aws_error("stepfunctions", "ListExecutions", err))?;
            for listed in page.executions() {
                let described = self
                    .sfn
                    .describe_execution()
                    .execution_arn(listed.execution_arn())
                    .send()
                    .await
                    .map_err(|err| aws_error("stepfunctions", "DescribeExecution", err))?;
                let input = parse_json(described.input()).unwrap_or_default();
                let same_store =
                    input.get("CustomKeyStoreId").and_then(Value::as_str) == Some(store_id);
                let dry = input
                    .get("DryRun")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if same_store && !dry {
                    return Ok(Some(listed.execution_arn().to_owned()));
                }
            }
            match page.next_token() {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(None),
            }
        }
    }

    /// Sends the approval (`SendTaskSuccess`).
    pub async fn approve(&self, token: &str, output: &Value) -> Result<(), CliError> {
        self.sfn
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map_err(|err| aws_error("stepfunctions", "SendTaskSuccess", err))?;
        Ok(())
    }

    /// Sends the rejection (`SendTaskFailure`).
    pub async fn reject(&self, token: &str, error: &str, cause: &str) -> Result<(), CliError> {
        self.sfn
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map_err(|err| aws_error("stepfunctions", "SendTaskFailure", err))?;
        Ok(())
    }

    /// The run records of `store_id`, or of every store, oldest first (a `Query` or a `Scan`:
    /// an operator's listing; the workflow's functions never scan).
    pub async fn runs(&self, store_id: Option<&str>) -> Result<Vec<RunRecord>, CliError> {
        let table = &self.stack.ledger_table;
        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let (items, next) = match store_id {
                Some(store_id) => {
                    let page = self
                        .dynamodb
                        .query()
                        .table_name(table)
                        .key_condition_expression("pk = :pk AND begins_with(sk, :run)")
                        .expression_attribute_values(
                            ":pk",
                            AttributeValue::S(ledger::store_pk(store_id)),
                        )
                        .expression_attribute_values(":run", AttributeValue::S("RUN#".into()))
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|err| aws_error("dynamodb", "Query", err))?;
                    (page.items.unwrap_or_default(), page.last_evaluated_key)
                }
                None => {
                    let page = self
                        .dynamodb
                        .scan()
                        .table_name(table)
                        .filter_expression("begins_with(pk, :store) AND begins_with(sk, :run)")
                        .expression_attribute_values(":store", AttributeValue::S("STORE#".into()))
                        .expression_attribute_values(":run", AttributeValue::S("RUN#".into()))
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|err| aws_error("dynamodb", "Scan", err))?;
                    (page.items.unwrap_or_default(), page.last_evaluated_key)
                }
            };
            for item in &items {
                records.push(ledger::run_record_from(item)?);
            }
            match next {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        records.sort_by_key(|run| run.started_at);
        Ok(records)
    }

    /// Every key record of a run.
    pub async fn key_records(&self, execution: &str) -> Result<Vec<KeyRecord>, CliError> {
        let ledger = self.ledger();
        let mut records = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = ledger.key_records(execution, after.as_deref(), 100).await?;
            records.extend(page.records);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(records)
    }
}
