//! The ticketing webhook behind a Lambda function URL: `start`, `status` and `cancel` a
//! decommission by ticket id, authenticated by an HMAC-SHA256 signature (see [`signature`]).
//!
//! Order of checks, cheapest and least revealing first: method (405), body size (413), body
//! encoding (400), signature (401); only a signed request is parsed (400 for bad JSON, a missing
//! or unknown action, invalid fields), and only a valid one reaches KMS or Step Functions.
//! Every answer is JSON: `{"Result": ...}` on success, `{"Error": <name>, "Message": ...}` else.

pub mod secret;
pub mod signature;

use aws_lambda_events::http::{HeaderMap, HeaderValue};
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent};

use self::secret::{SecretCache, SecretError, SecretSource};
use self::signature::{SignatureError, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::aws_error::AwsCallError;
use crate::bootstrap::LambdaFunction;
use crate::cancel::by_ticket::{
    cancel_by_ticket, TicketCancel, TicketCancelError, TicketCancelOutcome,
};
use crate::error::KmsErrorCode;
use crate::input::{read_object, FieldError, FreeText, TicketId};
use crate::kms::Kms;
use crate::request::DecommissionRequest;
use crate::sfn::naming::ticket_execution_name;
use crate::sfn::RunMode;
use crate::sfn::{ExecutionInfo, ExecutionRequest, Executions, StartOutcome};
use crate::store;

/// Largest accepted request body (decoded), in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The webhook: its secret, KMS for the start checks, Step Functions for everything else.
#[derive(Debug, Clone)]
pub struct Webhook {
    secrets: SecretCache,
    kms: Kms,
    executions: Executions,
    /// The run ledger's table (`LEDGER_TABLE`), named in `status` answers of real runs.
    ledger_table: Option<String>,
    /// The run ledger, where approval tokens are kept.
    ledger: Option<crate::ledger::Ledger>,
    /// What a request may ask for (`POLICY_*`); plan-decommission checks it again.
    policy: crate::request::TriggerPolicy,
}

/// The error a rejection gives the waiting run.
pub const APPROVAL_REJECTED: &str = "ApprovalRejected";

impl LambdaFunction for Webhook {
    type Event = LambdaFunctionUrlRequest;
    type Output = LambdaFunctionUrlResponse;

    async fn handle(
        &self,
        event: LambdaEvent<LambdaFunctionUrlRequest>,
    ) -> Result<LambdaFunctionUrlResponse, Diagnostic> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Webhook::handle(self, &event.payload, now).await)
    }
}

/// The webhook secret cannot be had: the function answers nothing but this error.
fn secret_error(err: SecretError) -> Diagnostic {
    Diagnostic {
        error_type: "InvalidConfiguration".to_string(),
        error_message: format!("cannot load the webhook secret: {err}"),
    }
}

/// The webhook's actions, named by the body's `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionName {
    Start,
    Status,
    Cancel,
    Approve,
    Reject,
}

/// A signed request, read by its action: each action's fields typed, unknown fields refused.
#[derive(Debug, Clone)]
pub enum WebhookRequest {
    /// `start`: the execution input plus `TicketId`, `RequestedBy` and `DryRun`, all required.
    Start(Box<StartAction>),
    /// `status` of the ticket's run.
    Status {
        /// The ticket.
        ticket: String,
    },
    /// `cancel` the ticket's run.
    Cancel(CancelAction),
    /// `approve` or `reject` the ticket's run, which waits for approval.
    Answer(ApprovalAction),
}

/// Which run an `approve` or `reject` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalTarget {
    /// The run of a ticket (`TicketId`).
    Ticket(String),
    /// The run holding the store's lock in the ledger (`CustomKeyStoreId`): how a tag-started
    /// run, which has no ticket, is answered.
    Store(String),
}

impl std::fmt::Display for ApprovalTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ticket(ticket) => write!(f, "ticket {ticket}"),
            Self::Store(store) => write!(f, "store {store}"),
        }
    }
}

/// An `approve` or `reject` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalAction {
    /// The run that waits for approval.
    pub target: ApprovalTarget,
    /// Who answers (`ApprovedBy` or `RejectedBy`): never the requester.
    pub by: String,
    /// Approve (true) or reject (false).
    pub approve: bool,
    /// Why (rejections).
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ApproveFields {
    ticket_id: Option<TicketId>,
    custom_key_store_id: Option<String>,
    approved_by: Option<FreeText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RejectFields {
    ticket_id: Option<TicketId>,
    custom_key_store_id: Option<String>,
    rejected_by: Option<FreeText>,
    reason: Option<FreeText>,
}

/// A `start` request.
#[derive(Debug, Clone)]
pub struct StartAction {
    /// The ticket.
    pub ticket: String,
    /// The execution input, as given (without `Action`).
    pub input: Value,
    /// The input, validated.
    pub request: DecommissionRequest,
}

/// A `cancel` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelAction {
    /// The ticket whose run to cancel.
    pub ticket: String,
    /// Who asks.
    pub requested_by: String,
    /// Why.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct StatusFields {
    ticket_id: Option<TicketId>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CancelFields {
    ticket_id: Option<TicketId>,
    requested_by: Option<FreeText>,
    reason: Option<FreeText>,
}

impl WebhookRequest {
    /// Reads a request body: a JSON object with an `Action` and that action's fields.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        let mut fields = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(WebhookError::MalformedJson("expected an object".into())),
            Err(e) => return Err(WebhookError::MalformedJson(e.to_string())),
        };
        let action = match fields.remove("Action") {
            None => return Err(WebhookError::MissingAction),
            Some(Value::String(action)) => serde_json::from_value(Value::String(action.clone()))
                .map_err(|_| WebhookError::UnknownAction(action))?,
            Some(other) => return Err(WebhookError::UnknownAction(other.to_string())),
        };
        if action == ActionName::Start {
            if fields.contains_key("Trigger") {
                return Err(WebhookError::InvalidInput(
                    "Trigger is set by the webhook itself".into(),
                ));
            }
            fields.insert("Trigger".into(), Value::String("webhook".into()));
        }
        let fields = Value::Object(fields);
        match action {
            ActionName::Start => {
                let request = DecommissionRequest::from_input(&fields)
                    .map_err(|e| WebhookError::InvalidInput(e.to_string()))?;
                let ticket = non_blank("TicketId", request.ticket_id.clone())?;
                non_blank("RequestedBy", request.requested_by.clone())?;
                if fields.get("DryRun").is_none_or(Value::is_null) {
                    return Err(WebhookError::InvalidInput(
                        "DryRun (true or false) is required".into(),
                    ));
                }
                Ok(Self::Start(Box::new(StartAction {
                    ticket,
                    input: fields,
                    request,
                })))
            }
            ActionName::Status => {
                let given: StatusFields =
                    read_object(&fields, &["TicketId"]).map_err(invalid_field)?;
                Ok(Self::Status {
                    ticket: non_blank("TicketId", given.ticket_id.map(|t| t.0))?,
                })
            }
            ActionName::Cancel => {
                let given: CancelFields =
                    read_object(&fields, &["TicketId", "RequestedBy", "Reason"])
                        .map_err(invalid_field)?;
                Ok(Self::Cancel(CancelAction {
                    ticket: non_blank("TicketId", given.ticket_id.map(|t| t.0))?,
                    requested_by: non_blank("RequestedBy", given.requested_by.map(|t| t.0))?,
                    reason: given.reason.map(|t| t.0),
                }))
            }
            ActionName::Approve => {
                let given: ApproveFields =
                    read_object(&fields, &["TicketId", "CustomKeyStoreId", "ApprovedBy"])
                        .map_err(invalid_field)?;
                Ok(Self::Answer(ApprovalAction {
                    target: approval_target(given.ticket_id, given.custom_key_store_id)?,
                    by: non_blank("ApprovedBy", given.approved_by.map(|t| t.0))?,
                    approve: true,
                    reason: None,
                }))
            }
            ActionName::Reject => {
                let given: RejectFields = read_object(
                    &fields,
                    &["TicketId", "CustomKeyStoreId", "RejectedBy", "Reason"],
                )
                .map_err(invalid_field)?;
                Ok(Self::Answer(ApprovalAction {
                    target: approval_target(given.ticket_id, given.custom_key_store_id)?,
                    by: non_blank("RejectedBy", given.rejected_by.map(|t| t.0))?,
                    approve: false,
                    reason: given.reason.map(|t| t.0),
                }))
            }
        }
    }
}

/// Exactly one of `TicketId` and `CustomKeyStoreId` names the run an answer is for.
fn approval_target(
    ticket: Option<TicketId>,
    store: Option<String>,
) -> Result<ApprovalTarget, WebhookError> {
    match (ticket, store) {
        (Some(ticket), None) => Ok(ApprovalTarget::Ticket(non_blank(
            "TicketId",
            Some(ticket.0),
        )?)),
        (None, Some(store)) => {
            crate::request::validate_custom_key_store_id(&store)
                .map_err(|e| WebhookError::InvalidInput(format!("CustomKeyStoreId: {e}")))?;
            Ok(ApprovalTarget::Store(store))
        }
        _ => Err(WebhookError::InvalidInput(
            "exactly one of TicketId (a ticket's run) and CustomKeyStoreId (the store's running \
             decommission, e.g. one a tag started) names the run to answer"
                .into(),
        )),
    }
}

/// A required text field that must not be blank.
fn non_blank(field: &str, value: Option<String>) -> Result<String, WebhookError> {
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        WebhookError::InvalidInput(format!(
            "{field} (a non-empty string of at most 256 characters) is required"
        ))
    })
}

fn invalid_field(err: FieldError) -> WebhookError {
    WebhookError::InvalidInput(format!("invalid request: {err}"))
}

/// A successful answer: status code and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl Reply {
    fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }
}

/// Why a webhook request was refused; each maps to one status code and error name.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum WebhookError {
    /// Only POST is accepted.
    #[error("method {0} is not allowed; use POST")]
    MethodNotAllowed(String),
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    /// `isBase64Encoded` is set but the body is not base64.
    #[error("the body is marked base64-encoded but does not decode")]
    MalformedBody,
    /// The signature headers are missing or wrong.
    #[error(transparent)]
    Unauthorized(#[from] SignatureError),
    /// The body is not a JSON object.
    #[error("the body is not a JSON object: {0}")]
    MalformedJson(String),
    /// The body has no `Action`.
    #[error("the body has no Action (start, status or cancel)")]
    MissingAction,
    /// `Action` is not start, status or cancel.
    #[error("unknown Action {0:?}; use start, status or cancel")]
    UnknownAction(String),
    /// A field is missing, of the wrong type, or unknown (the workflow's own validation).
    #[error("{0}")]
    InvalidInput(String),
    /// The store does not exist.
    #[error("custom key store {0} does not exist")]
    CustomKeyStoreNotFound(String),
    /// `ConfirmCustomKeyStoreName` does not equal the store's name.
    #[error("{0}")]
    ConfirmationMismatch(String),
    /// Another decommission (or cancel) of the store is running.
    #[error("execution {0} is already running for this custom key store")]
    StoreBusy(String),
    /// The ticket's execution name is used by a request with different fields.
    #[error("ticket already started execution {0} with different fields; use a new ticket id")]
    TicketConflict(String),
    /// The ticket's cancel already ran and did not succeed.
    #[error("{0}")]
    CancelFailed(String),
    /// The request asks for more than the stack's policy allows a trigger.
    #[error("{0}")]
    PolicyViolation(String),
    /// The ticket's run is not waiting for approval.
    #[error("{0}")]
    NotWaitingForApproval(String),
    /// The requester tried to approve (or reject) their own run.
    #[error("{0}")]
    ApprovalBySameRequester(String),
    /// The run ledger could not be read (its error name).
    #[error("the run ledger could not be read ({0}); retry")]
    Ledger(String),
    /// No execution was started for this ticket.
    #[error("no decommission or dry run was started for ticket {0:?}")]
    UnknownTicket(String),
    /// The secret could not be read again (revoked, deleted, or unreachable): every request is
    /// refused until it can.
    #[error("the webhook cannot check signatures right now; retry later")]
    SecretUnavailable,
    /// KMS or Step Functions failed.
    #[error(transparent)]
    Upstream(#[from] AwsCallError),
}

impl WebhookError {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed(_) => 405,
            Self::PayloadTooLarge => 413,
            Self::Unauthorized(_) => 401,
            Self::MalformedBody
            | Self::MalformedJson(_)
            | Self::MissingAction
            | Self::UnknownAction(_)
            | Self::InvalidInput(_)
            | Self::CustomKeyStoreNotFound(_)
            | Self::ConfirmationMismatch(_) => 400,
            Self::StoreBusy(_)
            | Self::TicketConflict(_)
            | Self::CancelFailed(_)
            | Self::NotWaitingForApproval(_)
            | Self::ApprovalBySameRequester(_) => 409,
            Self::Ledger(_) | Self::SecretUnavailable => 503,
            Self::PolicyViolation(_) => 403,
            Self::UnknownTicket(_) => 404,
            Self::Upstream(_) => 503,
        }
    }

    /// Error name in the answer.
    pub fn name(&self) -> &str {
        match self {
            Self::Unauthorized(e) => e.name(),
            Self::Upstream(e) => &e.code,
            other => other.into(),
        }
    }

    /// The answer to a refused request: the error's name, what to do, and the request id to
    /// find it in the function's log. A failure of KMS, Step Functions or the ledger is named by
    /// its operation and code only: its text (ARNs, roles, SDK details) stays in the log.
    fn reply(&self, request_id: Option<&str>) -> Reply {
        let request_id = request_id.unwrap_or("unknown");
        let message = match self {
            Self::Upstream(e) => format!(
                "{} failed with {}; retry later. Details are in the webhook's log under request id {request_id}",
                e.operation, e.code
            ),
            Self::Ledger(code) => format!(
                "the run ledger could not be read ({code}); retry later. Details are in the webhook's log under request id {request_id}"
            ),
            other => other.to_string(),
        };
        let mut body = json!({"Error": self.name(), "Message": message, "RequestId": request_id});
        if let (Self::StoreBusy(arn) | Self::TicketConflict(arn), Some(map)) =
            (self, body.as_object_mut())
        {
            map.insert("ExecutionArn".into(), Value::String(arn.clone()));
        }
        if let (Self::Upstream(e), Some(map)) = (self, body.as_object_mut()) {
            map.insert("Operation".into(), Value::String(e.operation.to_owned()));
        }
        Reply::new(self.status(), body)
    }
}

impl Webhook {
    /// A webhook verifying with `secrets`, checking stores with `kms`, running `executions`.
    pub fn new(secrets: SecretCache, kms: Kms, executions: Executions) -> Self {
        Self {
            secrets,
            kms,
            executions,
            ledger_table: None,
            ledger: None,
            policy: crate::request::TriggerPolicy::default(),
        }
    }

    /// Refuses requests beyond `policy`.
    pub fn with_policy(mut self, policy: crate::request::TriggerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Reads approval tokens from `ledger` (and names its table in `status` answers).
    pub fn with_ledger(mut self, ledger: crate::ledger::Ledger) -> Self {
        self.ledger_table = Some(ledger.table().to_owned());
        self.ledger = Some(ledger);
        self
    }

    /// Names `table` as the run ledger in `status` answers.
    pub fn with_ledger_table(mut self, table: Option<String>) -> Self {
        self.ledger_table = table.filter(|t| !t.trim().is_empty());
        self
    }

    /// The function: state machines from the environment ([`Executions::from_env`]), the
    /// secret from where `WEBHOOK_SECRET_PARAMETER` or `WEBHOOK_SECRET_ARN` says (read once,
    /// here), clients from `sdk`.
    pub async fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, Diagnostic> {
        let var = |name: &str| std::env::var(name).ok();
        let executions = Executions::from_env(sdk, var)?;
        let source = SecretSource::from_env(var).map_err(secret_error)?;
        let ttl = secret::cache_time_from_env(var).map_err(secret_error)?;
        let audience = var(secret::AUDIENCE_ENV)
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| signature::DEFAULT_AUDIENCE.to_owned());
        let secrets = SecretCache::load(source, sdk, ttl, audience.trim())
            .await
            .map_err(secret_error)?;
        Ok(Self::new(
            secrets,
            Kms::from_sdk_config(sdk, Kms::default_pacing()),
            executions,
        )
        .with_ledger(crate::ledger::Ledger::from_env(sdk, var)?)
        .with_policy(crate::request::TriggerPolicy::from_env().map_err(Diagnostic::from)?))
    }

    /// Answers one function URL request received at Unix time `now` (seconds).
    pub async fn handle(
        &self,
        request: &LambdaFunctionUrlRequest,
        now: i64,
    ) -> LambdaFunctionUrlResponse {
        let reply = match self.answer(request, now).await {
            Ok(reply) => reply,
            Err(error) => {
                if error.status() >= 500 {
                    tracing::error!(error = %error, name = error.name(), "webhook request failed");
                } else {
                    tracing::warn!(error = %error, name = error.name(), "webhook request refused");
                }
                error.reply(request.request_context.request_id.as_deref())
            }
        };
        tracing::info!(status = reply.status, body = %reply.body, "webhook answer");
        to_response(reply)
    }

    /// The reply to one request, or why it was refused.
    pub async fn answer(
        &self,
        request: &LambdaFunctionUrlRequest,
        now: i64,
    ) -> Result<Reply, WebhookError> {
        let body = request_body(request)?;
        let secrets = self.secrets.current().await.map_err(|err| {
            tracing::error!(error = %err, "cannot read the webhook secret");
            WebhookError::SecretUnavailable
        })?;
        let (timestamp, signature) = signature_headers(request);
        secrets.verify(timestamp.as_deref(), signature.as_deref(), &body, now)?;
        match WebhookRequest::parse(&body)? {
            WebhookRequest::Start(start) => self.start(*start).await,
            WebhookRequest::Status { ticket } => self.status(ticket).await,
            WebhookRequest::Cancel(cancel) => self.cancel(cancel).await,
            WebhookRequest::Answer(answer) => self.answer_approval(answer).await,
        }
    }

    /// Approves or rejects the ticket's run, which must be waiting for approval: the token
    /// comes from the run ledger, never from the request; the requester cannot answer.
    async fn answer_approval(&self, answer: ApprovalAction) -> Result<Reply, WebhookError> {
        let ledger = self.ledger.as_ref().ok_or_else(|| {
            WebhookError::NotWaitingForApproval(
                "this webhook has no run ledger (LEDGER_TABLE) to find the approval in".into(),
            )
        })?;
        let execution = match &answer.target {
            ApprovalTarget::Ticket(ticket) => self.ticket_execution(ticket).await?,
            ApprovalTarget::Store(store) => {
                let holder = ledger
                    .lock_holder(store)
                    .await
                    .map_err(|e| WebhookError::Ledger(e.error_type().to_owned()))?
                    .ok_or_else(|| {
                        WebhookError::NotWaitingForApproval(format!(
                            "no decommission of store {store} holds its lock"
                        ))
                    })?;
                self.executions
                    .describe(&holder.execution)
                    .await?
                    .ok_or_else(|| {
                        WebhookError::NotWaitingForApproval(format!(
                            "the run {} holding store {store} is unknown to Step Functions",
                            holder.execution
                        ))
                    })?
            }
        };
        let store = execution.store_id().unwrap_or_default().to_owned();
        let not_waiting = |why: &str| {
            WebhookError::NotWaitingForApproval(format!(
                "the run {} of {} {why}",
                execution.arn, answer.target
            ))
        };
        if !execution.is_running() {
            return Err(not_waiting(&format!("is {}", execution.status.as_str())));
        }
        let run = ledger
            .run_record(&store, &execution.arn)
            .await
            .map_err(|e| WebhookError::Ledger(e.error_type().to_owned()))?
            .ok_or_else(|| not_waiting("has no ledger record yet (its plan has not run)"))?;
        let token = match (run.approval_state.as_deref(), run.approval_token) {
            (Some(crate::ledger::APPROVAL_REQUESTED), Some(token)) => token,
            (Some(state), _) => return Err(not_waiting(&format!("is {state}, not waiting"))),
            (None, _) => return Err(not_waiting("is not waiting for approval")),
        };
        if crate::steps::approval::same_person(run.requested_by.as_deref(), &answer.by) {
            return Err(WebhookError::ApprovalBySameRequester(format!(
                "{} requested the run of {} and cannot also answer its approval",
                answer.by, answer.target
            )));
        }
        let ticket = match &answer.target {
            ApprovalTarget::Ticket(ticket) => Some(ticket.clone()),
            ApprovalTarget::Store(_) => None,
        };
        if answer.approve {
            let mut output = json!({"ApprovedBy": answer.by, "Via": "webhook"});
            if let (Some(ticket), Some(map)) = (&ticket, output.as_object_mut()) {
                map.insert("TicketId".into(), json!(ticket));
            }
            self.executions.send_task_success(&token, &output).await?;
        } else {
            let cause = format!(
                "rejected by {} through the webhook{}",
                answer.by,
                answer
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            self.executions
                .send_task_failure(&token, APPROVAL_REJECTED, &cause)
                .await?;
        }
        tracing::info!(
            run = %answer.target,
            execution = execution.arn.as_str(),
            by = answer.by.as_str(),
            approved = answer.approve,
            "approval answered"
        );
        let mut reply = json!({
            "Result": if answer.approve { "Approved" } else { "Rejected" },
            "CustomKeyStoreId": store,
            "ExecutionArn": execution.arn,
            "By": answer.by,
        });
        if let (Some(ticket), Some(map)) = (ticket, reply.as_object_mut()) {
            map.insert("TicketId".into(), json!(ticket));
        }
        Ok(Reply::new(200, reply))
    }

    async fn start(&self, start: StartAction) -> Result<Reply, WebhookError> {
        let StartAction {
            ticket,
            input,
            request,
        } = start;
        let dry_run = request.dry_run;
        let store = request.custom_key_store_id.clone();
        let mode = RunMode::from_dry_run(dry_run);
        let name = ticket_execution_name(&ticket, mode);

        // A redelivery of a request already started is answered without asking KMS again.
        if let Some(existing) = self
            .executions
            .describe_named(self.executions.state_machine_arn(), &name)
            .await?
        {
            return started_reply(StartOutcome::from_existing(existing, &input), &name, mode);
        }
        // A new start (a redelivery of one already started is answered above).
        self.policy
            .check(&request)
            .map_err(|e| WebhookError::PolicyViolation(e.to_string()))?;
        let summary = match store::describe(&self.kms, &store).await {
            Ok(summary) => summary,
            Err(e) if e.is_kms(KmsErrorCode::CustomKeyStoreNotFound) => {
                return Err(WebhookError::CustomKeyStoreNotFound(store))
            }
            Err(e) => return Err(AwsCallError::from(e).into()),
        };
        if let Err(mismatch) = request.confirm_store_name(&summary.custom_key_store_name) {
            return Err(WebhookError::ConfirmationMismatch(mismatch.to_string()));
        }
        let outcome = self
            .executions
            .start_exclusive(&ExecutionRequest {
                name: name.clone(),
                input,
                store_id: store,
                mode,
            })
            .await?;
        started_reply(outcome, &name, mode)
    }

    async fn status(&self, ticket: String) -> Result<Reply, WebhookError> {
        let execution = self.ticket_execution(&ticket).await?;
        let state = self.executions.current_state(&execution.arn).await?;
        let (phase, document) = match state {
            Some((phase, document)) => (Some(phase), document),
            None => (None, None),
        };
        let document = document.or_else(|| execution.output.clone());
        let progress = Progress::from_document(document.as_ref());
        // Where auditors read what a real run did (docs/ledger.md); dry runs write no records.
        let ledger = match (&self.ledger_table, execution.mode(), execution.store_id()) {
            (Some(table), RunMode::Decommission, Some(store)) => Some(
                crate::report::LedgerLocation::of_run(table, store, &execution.arn),
            ),
            _ => None,
        };
        Ok(Reply::new(
            200,
            json!({
                "Result": "Status",
                "TicketId": ticket,
                "ExecutionArn": execution.arn,
                "DryRun": execution.mode() == RunMode::DryRun,
                "CustomKeyStoreId": execution.store_id(),
                "Status": execution.status.as_str(),
                "Phase": phase,
                "KeysPending": progress.keys_pending,
                "NextDeadline": progress.next_deadline,
                "StartDate": rfc3339(&execution.start_date),
                "StopDate": execution.stop_date.as_ref().map(rfc3339),
                "Error": execution.error,
                "Cause": execution.cause,
                "Ledger": ledger,
            }),
        ))
    }

    async fn cancel(&self, cancel: CancelAction) -> Result<Reply, WebhookError> {
        let request = TicketCancel {
            ticket: &cancel.ticket,
            requested_by: &cancel.requested_by,
            reason: cancel.reason.as_deref(),
        };
        let outcome =
            cancel_by_ticket(&self.executions, &request)
                .await
                .map_err(|err| match err {
                    TicketCancelError::UnknownTicket(ticket) => WebhookError::UnknownTicket(ticket),
                    TicketCancelError::InvalidInput(e) => WebhookError::InvalidInput(e.to_string()),
                    failed @ TicketCancelError::CancelFailed { .. } => {
                        WebhookError::CancelFailed(failed.to_string())
                    }
                    TicketCancelError::Aws(e) => WebhookError::Upstream(e),
                })?;
        Ok(match outcome {
            TicketCancelOutcome::DecommissionCompleted { arn, status } => Reply::new(
                200,
                json!({
                    "Result": "NothingToCancel",
                    "ExecutionArn": arn,
                    "Status": status.as_str(),
                    "Message": "the decommission completed: its keys and the store are deleted and cannot come back",
                }),
            ),
            TicketCancelOutcome::DryRunOnly { arn, status } => Reply::new(
                200,
                json!({
                    "Result": "NothingToCancel",
                    "ExecutionArn": arn,
                    "Status": status.as_str(),
                    "Message": "the ticket only ran a dry run, which changes nothing",
                }),
            ),
            TicketCancelOutcome::DryRunStopped { arn } => {
                Reply::new(202, json!({"Result": "DryRunStopped", "ExecutionArn": arn}))
            }
            TicketCancelOutcome::StoppedWithoutCancelWorkflow { arn, stopped_now } => Reply::new(
                if stopped_now { 202 } else { 200 },
                json!({
                    "Result": "DecommissionStopped",
                    "ExecutionArn": arn,
                    "StoppedNow": stopped_now,
                    "CancelExecutionArn": null,
                    "KeysRestored": false,
                    "Message": "no cancel workflow is configured (CANCEL_STATE_MACHINE_ARN): keys this execution scheduled stay pending deletion; restore them with CancelKeyDeletion and EnableKey (keys tagged kms-decommission:execution with this ARN)",
                }),
            ),
            TicketCancelOutcome::CancelStarted {
                arn,
                stopped_now,
                cancel_arn,
                started_now,
                cancel_status,
            } => Reply::new(
                if started_now || stopped_now { 202 } else { 200 },
                json!({
                    "Result": "CancelStarted",
                    "ExecutionArn": arn,
                    "StoppedNow": stopped_now,
                    "CancelExecutionArn": cancel_arn,
                    "CancelStatus": cancel_status.as_str(),
                }),
            ),
        })
    }

    /// The ticket's decommission execution, else its dry run.
    async fn ticket_execution(&self, ticket: &str) -> Result<ExecutionInfo, WebhookError> {
        let machine = self.executions.state_machine_arn().to_owned();
        for mode in [RunMode::Decommission, RunMode::DryRun] {
            if let Some(execution) = self
                .executions
                .describe_named(&machine, &ticket_execution_name(ticket, mode))
                .await?
            {
                return Ok(execution);
            }
        }
        Err(WebhookError::UnknownTicket(ticket.to_owned()))
    }
}

fn started_reply(outcome: StartOutcome, name: &str, mode: RunMode) -> Result<Reply, WebhookError> {
    let dry_run = mode == RunMode::DryRun;
    match outcome {
        StartOutcome::Started { arn } => Ok(Reply::new(
            202,
            json!({"Result": "Started", "ExecutionArn": arn, "ExecutionName": name, "DryRun": dry_run}),
        )),
        StartOutcome::AlreadyRunning(e) => Ok(Reply::new(
            200,
            json!({"Result": "AlreadyRunning", "ExecutionArn": e.arn, "ExecutionName": name, "DryRun": dry_run}),
        )),
        StartOutcome::AlreadyFinished(e) => Ok(Reply::new(
            200,
            json!({"Result": "AlreadyFinished", "ExecutionArn": e.arn, "ExecutionName": name,
                   "DryRun": dry_run, "Status": e.status.as_str()}),
        )),
        StartOutcome::StoreBusy(e) => Err(WebhookError::StoreBusy(e.arn)),
        StartOutcome::NameTaken(e) => Err(WebhookError::TicketConflict(e.arn)),
    }
}

/// What the status answer reports from a state document (workflow-contract.md field names).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    /// Keys still pending deletion: the last check's count, else the number scheduled.
    pub keys_pending: Option<u64>,
    /// When the last scheduled key's waiting period ends (`Scheduling.WaitUntil`), while keys
    /// are pending.
    pub next_deadline: Option<String>,
}

impl Progress {
    /// Reads a state document (or `None` before the first state).
    pub fn from_document(document: Option<&Value>) -> Self {
        let Some(doc) = document else {
            return Self::default();
        };
        let number = |pointer: &str| doc.pointer(pointer).and_then(Value::as_u64);
        let keys_pending = number("/Deletion/KeysPending").or_else(|| {
            let scheduled = number("/Scheduling/KeysScheduled")?;
            Some(scheduled + number("/Scheduling/KeysAlreadyPending").unwrap_or(0))
        });
        let next_deadline = match keys_pending {
            Some(0) | None => None,
            Some(_) => doc
                .pointer("/Scheduling/WaitUntil")
                .or_else(|| doc.pointer("/Scheduling/LatestDeletionDate"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        Self {
            keys_pending,
            next_deadline,
        }
    }
}

/// The checks made before the secret is needed, cheapest first: the method (405 unless POST)
/// and the body's size (413) and encoding (400). `Ok` is the raw (decoded) body, the bytes the
/// signature covers and [`WebhookRequest::parse`] reads.
pub fn request_body(request: &LambdaFunctionUrlRequest) -> Result<Vec<u8>, WebhookError> {
    let method = request
        .request_context
        .http
        .method
        .as_deref()
        .unwrap_or("POST");
    if !method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::MethodNotAllowed(method.to_owned()));
    }
    decoded_body(request)
}

/// The request's `X-Signature-Timestamp` and `X-Signature` headers, as
/// [`WebhookSecrets::verify`](signature::WebhookSecrets::verify) takes them (`None` when absent;
/// bytes that are not UTF-8 replaced, so a non-ASCII header is malformed, not missing).
pub fn signature_headers(
    request: &LambdaFunctionUrlRequest,
) -> (
    Option<std::borrow::Cow<'_, str>>,
    Option<std::borrow::Cow<'_, str>>,
) {
    (
        header(&request.headers, TIMESTAMP_HEADER),
        header(&request.headers, SIGNATURE_HEADER),
    )
}

fn decoded_body(request: &LambdaFunctionUrlRequest) -> Result<Vec<u8>, WebhookError> {
    let raw = request.body.as_deref().unwrap_or_default();
    if !request.is_base64_encoded {
        if raw.len() > MAX_BODY_BYTES {
            return Err(WebhookError::PayloadTooLarge);
        }
        return Ok(raw.as_bytes().to_vec());
    }
    if raw.len() > MAX_BODY_BYTES.div_ceil(3) * 4 {
        return Err(WebhookError::PayloadTooLarge);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| WebhookError::MalformedBody)?;
    if decoded.len() > MAX_BODY_BYTES {
        return Err(WebhookError::PayloadTooLarge);
    }
    Ok(decoded)
}

/// A header's value; one that is not visible ASCII is kept (lossily decoded), so the signature
/// check refuses it as malformed rather than missing.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

fn rfc3339(date: &aws_smithy_types::DateTime) -> Option<String> {
    date.fmt(aws_smithy_types::date_time::Format::DateTime).ok()
}

fn to_response(reply: Reply) -> LambdaFunctionUrlResponse {
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = i64::from(reply.status);
    response
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    response.body = Some(reply.body.to_string());
    response
}

#[cfg(test)]
mod tests {
    use super::signature::WebhookSecret;
    use super::*;
    use crate::cancel::by_ticket::CANCEL_STOP_ERROR;
    use crate::test_support::fakes::{FakeKms, FakeSfn, CANCEL_MACHINE, MACHINE};
    use aws_sdk_sfn::types::ExecutionStatus;
    use serde_json::Map;

    const NOW: i64 = 1_795_860_000;
    const SECRET: &[u8] = b"test-webhook-secret-0123456789abcdef";
    const STORE: &str = "cks-1234567890abcdef0";
    const STORE_NAME: &str = "ExampleCloudHsmStore";

    struct World {
        kms: FakeKms,
        sfn: FakeSfn,
        webhook: Webhook,
    }

    fn world(cancel_machine: bool) -> World {
        let kms = FakeKms::default();
        kms.store(STORE, STORE_NAME, Some("cluster-1a23b4cdefg"));
        let sfn = FakeSfn::default();
        let executions = Executions::new(
            sfn.client(),
            MACHINE,
            cancel_machine.then(|| CANCEL_MACHINE.to_owned()),
        );
        let webhook = Webhook::new(
            SecretCache::fixed(WebhookSecret::new(SECRET).unwrap().into()),
            Kms::with_default_pacing(kms.client()),
            executions,
        )
        .with_ledger_table(Some("ledger".into()));
        World { kms, sfn, webhook }
    }

    /// A function URL request as Lambda delivers it, with `headers` and a plain-text body.
    fn url_request(
        method: &str,
        headers: &[(&str, String)],
        body: &str,
        base64: bool,
    ) -> LambdaFunctionUrlRequest {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        serde_json::from_value(json!({
            "version": "2.0", "rawPath": "/", "rawQueryString": "", "headers": headers,
            "requestContext": {
                "accountId": "anonymous", "apiId": "abcdefghij", "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdefghij", "requestId": "r-1", "routeKey": "$default", "stage": "$default",
                "time": "28/Nov/2026:10:00:00 +0000", "timeEpoch": NOW * 1000,
                "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "ticketing/1.0"}
            },
            "body": body, "isBase64Encoded": base64
        }))
        .unwrap()
    }

    fn signed(body: &Value) -> LambdaFunctionUrlRequest {
        signed_text(&body.to_string(), NOW, SECRET)
    }

    fn signed_text(body: &str, at: i64, secret: &[u8]) -> LambdaFunctionUrlRequest {
        let ts = at.to_string();
        let signature = WebhookSecret::new(secret)
            .unwrap()
            .sign(&ts, body.as_bytes());
        url_request(
            "POST",
            &[
                ("x-signature-timestamp", ts),
                ("x-signature", signature),
                ("content-type", "application/json".into()),
            ],
            body,
            false,
        )
    }

    fn start_body(ticket: &str, dry_run: bool) -> Value {
        let mut body = json!({
            "Action": "start", "TicketId": ticket, "CustomKeyStoreId": STORE, "PendingWindowInDays": 30,
            "DryRun": dry_run, "RequestedBy": "alice@example.com", "Reason": "retire HSM",
        });
        if !dry_run {
            body["ConfirmCustomKeyStoreName"] = json!(STORE_NAME);
        }
        body
    }

    async fn call(w: &World, request: &LambdaFunctionUrlRequest) -> (u16, Value) {
        let response = w.webhook.handle(request, NOW).await;
        assert_eq!(
            response.headers.get("content-type").unwrap(),
            "application/json"
        );
        let body = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
        (u16::try_from(response.status_code).unwrap(), body)
    }

    #[tokio::test]
    async fn a_signed_start_delivered_three_times_starts_once() {
        let w = world(false);
        let request = signed(&start_body("CHG-1234", false));
        let (status, first) = call(&w, &request).await;
        assert_eq!(status, 202, "{first}");
        assert_eq!(first["Result"], "Started");
        assert_eq!(first["ExecutionName"], "decom-CHG-1234");
        for _ in 0..2 {
            let (status, again) = call(&w, &request).await;
            assert_eq!(status, 200, "{again}");
            assert_eq!(again["Result"], "AlreadyRunning");
            assert_eq!(again["ExecutionArn"], first["ExecutionArn"]);
        }
        assert_eq!(w.sfn.count(Some("StartExecution")), 1);
        let input: Value =
            serde_json::from_str(&w.sfn.get("decom-CHG-1234").unwrap().input).unwrap();
        assert_eq!(input["ConfirmCustomKeyStoreName"], STORE_NAME);
        assert_eq!(input["TicketId"], "CHG-1234");
        assert!(
            input.get("Action").is_none(),
            "the action is not part of the execution input"
        );
    }

    async fn assert_refused_untouched(
        w: &World,
        request: &LambdaFunctionUrlRequest,
        status: u16,
        error: &str,
    ) {
        let (got, body) = call(w, request).await;
        assert_eq!(
            (got, body["Error"].as_str().unwrap()),
            (status, error),
            "{body}"
        );
        assert!(!body["Message"].as_str().unwrap().is_empty());
        assert_eq!(w.sfn.count(None), 0, "no Step Functions call for {error}");
        assert_eq!(w.kms.call_count(), 0, "no KMS call for {error}");
    }

    #[tokio::test]
    async fn bad_requests_get_their_status_and_change_nothing() {
        let w = world(true);
        let body = start_body("CHG-1", false).to_string();
        let good = signed_text(&body, NOW, SECRET);

        let wrong_secret = signed_text(&body, NOW, b"another-secret-entirely-0123456789ab");
        assert_refused_untouched(&w, &wrong_secret, 401, "SignatureMismatch").await;

        // Signed with the right secret for another stack (its audience): refused.
        let mut other_stack = good.clone();
        other_stack.headers.insert(
            "x-signature",
            WebhookSecret::new(SECRET)
                .unwrap()
                .for_audience("another-stack")
                .sign(&NOW.to_string(), body.as_bytes())
                .parse()
                .unwrap(),
        );
        assert_refused_untouched(&w, &other_stack, 401, "SignatureMismatch").await;

        let mut unsigned = good.clone();
        unsigned.headers.remove("x-signature");
        assert_refused_untouched(&w, &unsigned, 401, "MissingSignature").await;

        let mut no_timestamp = good.clone();
        no_timestamp.headers.remove("x-signature-timestamp");
        assert_refused_untouched(&w, &no_timestamp, 401, "MissingTimestamp").await;

        let stale = signed_text(&body, NOW - 301, SECRET);
        assert_refused_untouched(&w, &stale, 401, "StaleTimestamp").await;

        let future = signed_text(&body, NOW + 600, SECRET);
        assert_refused_untouched(&w, &future, 401, "FutureTimestamp").await;

        let mut tampered = good.clone();
        tampered.body = Some(body.replace("\"DryRun\":false", "\"DryRun\":true "));
        assert_refused_untouched(&w, &tampered, 401, "SignatureMismatch").await;

        assert_refused_untouched(
            &w,
            &signed_text("{\"Action\": \"start\",", NOW, SECRET),
            400,
            "MalformedJson",
        )
        .await;
        assert_refused_untouched(
            &w,
            &signed_text("[1, 2]", NOW, SECRET),
            400,
            "MalformedJson",
        )
        .await;
        assert_refused_untouched(
            &w,
            &signed(&json!({"Action": "delete", "TicketId": "CHG-1"})),
            400,
            "UnknownAction",
        )
        .await;
        assert_refused_untouched(&w, &signed(&json!({"Action": 7})), 400, "UnknownAction").await;
        assert_refused_untouched(
            &w,
            &signed(&json!({"TicketId": "CHG-1"})),
            400,
            "MissingAction",
        )
        .await;

        let oversized = format!(
            "{{\"Action\":\"status\",\"TicketId\":\"{}\"}}",
            "x".repeat(MAX_BODY_BYTES)
        );
        assert_refused_untouched(
            &w,
            &signed_text(&oversized, NOW, SECRET),
            413,
            "PayloadTooLarge",
        )
        .await;
        let oversized_b64 = base64::engine::general_purpose::STANDARD.encode(oversized.as_bytes());
        let mut oversized_b64_request = signed_text(&oversized, NOW, SECRET);
        oversized_b64_request.body = Some(oversized_b64);
        oversized_b64_request.is_base64_encoded = true;
        assert_refused_untouched(&w, &oversized_b64_request, 413, "PayloadTooLarge").await;

        let mut not_base64 = good.clone();
        not_base64.is_base64_encoded = true;
        assert_refused_untouched(&w, &not_base64, 400, "MalformedBody").await;

        let mut get = good.clone();
        get.request_context.http.method = Some("GET".into());
        assert_refused_untouched(&w, &get, 405, "MethodNotAllowed").await;
    }

    #[tokio::test]
    async fn missing_or_unknown_fields_are_named_before_any_call() {
        let w = world(false);
        let mut no_dry_run = start_body("CHG-1", false);
        no_dry_run.as_object_mut().unwrap().remove("DryRun");
        assert_refused_untouched(&w, &signed(&no_dry_run), 400, "InvalidInput").await;
        let mut no_ticket = start_body("CHG-1", true);
        no_ticket["TicketId"] = json!("  ");
        assert_refused_untouched(&w, &signed(&no_ticket), 400, "InvalidInput").await;
        let mut no_requester = start_body("CHG-1", true);
        no_requester.as_object_mut().unwrap().remove("RequestedBy");
        assert_refused_untouched(&w, &signed(&no_requester), 400, "InvalidInput").await;
        assert_refused_untouched(
            &w,
            &signed(&json!({"Action": "status", "TicketId": "CHG-1", "Verbose": true})),
            400,
            "InvalidInput",
        )
        .await;
        assert_refused_untouched(
            &w,
            &signed(&json!({"Action": "cancel", "TicketId": "CHG-1"})),
            400,
            "InvalidInput",
        )
        .await;
    }

    #[tokio::test]
    async fn a_base64_encoded_body_is_verified_on_its_decoded_bytes() {
        let w = world(false);
        let body = start_body("CHG-B64", true).to_string();
        let mut request = signed_text(&body, NOW, SECRET);
        request.body = Some(base64::engine::general_purpose::STANDARD.encode(body.as_bytes()));
        request.is_base64_encoded = true;
        let (status, reply) = call(&w, &request).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["ExecutionName"], "dryrun-CHG-B64");
    }

    #[tokio::test]
    async fn a_wrong_confirmation_or_unknown_store_starts_nothing() {
        let w = world(false);
        let mut wrong = start_body("CHG-1", false);
        wrong["ConfirmCustomKeyStoreName"] = json!("examplecloudhsmstore");
        let (status, body) = call(&w, &signed(&wrong)).await;
        assert_eq!(
            (status, body["Error"].as_str().unwrap()),
            (400, "ConfirmationMismatch")
        );
        let mut unknown = start_body("CHG-2", true);
        unknown["CustomKeyStoreId"] = json!("cks-00000000000000000");
        let (status, body) = call(&w, &signed(&unknown)).await;
        assert_eq!(
            (status, body["Error"].as_str().unwrap()),
            (400, "CustomKeyStoreNotFound")
        );
        assert_eq!(w.sfn.count(Some("StartExecution")), 0);
    }

    #[tokio::test]
    async fn a_second_decommission_of_a_busy_store_is_a_conflict() {
        let w = world(false);
        let (status, first) = call(&w, &signed(&start_body("CHG-1", false))).await;
        assert_eq!(status, 202);
        let (status, other_ticket) = call(&w, &signed(&start_body("CHG-2", false))).await;
        assert_eq!(
            (status, other_ticket["Error"].as_str().unwrap()),
            (409, "StoreBusy"),
            "{other_ticket}"
        );
        assert_eq!(other_ticket["ExecutionArn"], first["ExecutionArn"]);
        let (status, dry) = call(&w, &signed(&start_body("CHG-3", true))).await;
        assert_eq!(
            (status, dry["Error"].as_str().unwrap()),
            (409, "StoreBusy"),
            "{dry}"
        );
        let mut changed = start_body("CHG-1", false);
        changed["PendingWindowInDays"] = json!(7);
        let (status, conflict) = call(&w, &signed(&changed)).await;
        assert_eq!(
            (status, conflict["Error"].as_str().unwrap()),
            (409, "TicketConflict"),
            "{conflict}"
        );
        assert_eq!(w.sfn.count(Some("StartExecution")), 1);
    }

    #[tokio::test]
    async fn a_dry_run_then_the_decommission_can_share_a_ticket() {
        let w = world(false);
        assert_eq!(call(&w, &signed(&start_body("CHG-9", true))).await.0, 202);
        let (status, real) = call(&w, &signed(&start_body("CHG-9", false))).await;
        assert_eq!(
            status, 202,
            "a running dry run does not block the real decommission: {real}"
        );
        assert_eq!(real["ExecutionName"], "decom-CHG-9");
    }

    #[tokio::test]
    async fn approval_answers_and_trigger_claims_are_checked_before_anything_is_asked() {
        let w = world(false);
        for (body, error) in [
            (
                json!({"Action": "approve", "TicketId": "CHG-1"}),
                "InvalidInput",
            ),
            (
                json!({"Action": "approve", "TicketId": "CHG-1", "ApprovedBy": "bob", "Token": "t"}),
                "InvalidInput",
            ),
            (
                json!({"Action": "reject", "TicketId": "CHG-1", "ApprovedBy": "bob"}),
                "InvalidInput",
            ),
            // One run: by ticket or by store, not both, not neither, and a real store id.
            (
                json!({"Action": "approve", "TicketId": "CHG-1", "CustomKeyStoreId": "cks-1234567890abcdef0", "ApprovedBy": "bob"}),
                "InvalidInput",
            ),
            (
                json!({"Action": "reject", "RejectedBy": "bob"}),
                "InvalidInput",
            ),
            (
                json!({"Action": "approve", "CustomKeyStoreId": "cks-../../x", "ApprovedBy": "bob"}),
                "InvalidInput",
            ),
        ] {
            let (status, answer) = call(&w, &signed(&body)).await;
            assert_eq!(
                (status, answer["Error"].as_str()),
                (400, Some(error)),
                "{body}"
            );
        }
        let mut beyond_policy = start_body("CHG-8", false);
        beyond_policy["MinDaysSinceLastUse"] = json!(0);
        let (status, answer) = call(&w, &signed(&beyond_policy)).await;
        assert_eq!(
            (status, answer["Error"].as_str()),
            (403, Some("PolicyViolation"))
        );
        let mut claimed = start_body("CHG-9", false);
        claimed["Trigger"] = json!("tag");
        let (status, answer) = call(&w, &signed(&claimed)).await;
        assert_eq!(
            (status, answer["Error"].as_str()),
            (400, Some("InvalidInput"))
        );
        // Only the look-up of an earlier start of the refused ticket (a redelivery is answered
        // as before): nothing started.
        assert_eq!(w.sfn.count(Some("StartExecution")), 0, "nothing started");
        assert_eq!(w.sfn.count(None), w.sfn.count(Some("DescribeExecution")));

        // A ticket whose run is not waiting: 409, nothing sent.
        call(&w, &signed(&start_body("CHG-1", false))).await;
        let (status, answer) = call(
            &w,
            &signed(&json!({"Action": "approve", "TicketId": "CHG-1", "ApprovedBy": "bob"})),
        )
        .await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["Error"], "NotWaitingForApproval");
        assert_eq!(w.sfn.count(Some("SendTaskSuccess")), 0);
    }

    #[tokio::test]
    async fn status_reports_phase_keys_pending_and_deadline() {
        let w = world(false);
        let (status, missing) = call(
            &w,
            &signed(&json!({"Action": "status", "TicketId": "CHG-404"})),
        )
        .await;
        assert_eq!(
            (status, missing["Error"].as_str().unwrap()),
            (404, "UnknownTicket")
        );

        call(&w, &signed(&start_body("CHG-1", false))).await;
        let document = json!({
            "Request": {"CustomKeyStoreId": STORE, "DryRun": false},
            "Scheduling": {"Done": true, "KeysScheduled": 11, "KeysAlreadyPending": 1,
                           "LatestDeletionDate": "2026-12-28T10:00:00Z", "WaitUntil": "2026-12-28T10:00:00Z", "WaitRequired": true}
        });
        w.sfn.executions.lock().unwrap()[0].current_state =
            Some(("WaitForDeletionDate".into(), document.to_string()));
        let (status, body) = call(
            &w,
            &signed(&json!({"Action": "status", "TicketId": "CHG-1"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["Status"], "RUNNING");
        assert_eq!(body["Phase"], "WaitForDeletionDate");
        assert_eq!(body["KeysPending"], 12);
        assert_eq!(body["NextDeadline"], "2026-12-28T10:00:00Z");
        assert_eq!(body["CustomKeyStoreId"], STORE);
        assert_eq!(body["Ledger"]["Table"], "ledger");
        assert_eq!(body["Ledger"]["StoreKey"], format!("STORE#{STORE}"));
        assert_eq!(
            body["Ledger"]["RunRecordKey"],
            format!("RUN#{}", body["ExecutionArn"].as_str().unwrap())
        );
        assert_eq!(
            w.sfn.count(Some("StartExecution")),
            1,
            "status starts nothing"
        );
    }

    #[test]
    fn progress_prefers_the_last_deletion_check() {
        let doc = json!({"Scheduling": {"KeysScheduled": 5, "WaitUntil": "2026-12-28T10:00:00Z"},
                         "Deletion": {"KeysPending": 0, "AllDeleted": true}});
        assert_eq!(
            Progress::from_document(Some(&doc)),
            Progress {
                keys_pending: Some(0),
                next_deadline: None
            }
        );
        let planning = json!({"Plan": {"KeysInStore": 3}});
        assert_eq!(
            Progress::from_document(Some(&planning)),
            Progress::default()
        );
        assert_eq!(Progress::from_document(None), Progress::default());
    }

    fn cancel(ticket: &str) -> LambdaFunctionUrlRequest {
        signed(
            &json!({"Action": "cancel", "TicketId": ticket, "RequestedBy": "bob@example.com", "Reason": "change rejected"}),
        )
    }

    #[tokio::test]
    async fn a_cancel_the_cancel_workflow_would_refuse_stops_nothing() {
        let w = world(true);
        call(&w, &signed(&start_body("CHG-1", false))).await;
        let calls_before = w.sfn.count(None);
        for bad in [
            json!({"Action": "cancel", "TicketId": "CHG-1", "RequestedBy": "bob", "Reason": "line one\nline two"}),
            json!({"Action": "cancel", "TicketId": "CHG-1", "RequestedBy": "bob", "Reason": "x".repeat(257)}),
            json!({"Action": "cancel", "TicketId": "CHG-1", "RequestedBy": "bob\t"}),
            json!({"Action": "cancel", "TicketId": "CHG-1", "RequestedBy": "bob", "Urgent": true}),
        ] {
            let (status, body) = call(&w, &signed(&bad)).await;
            assert_eq!(
                (status, body["Error"].as_str()),
                (400, Some("InvalidInput")),
                "{body}"
            );
        }
        assert_eq!(w.sfn.count(None), calls_before, "no Step Functions call");
        assert_eq!(
            w.sfn.get("decom-CHG-1").unwrap().status,
            ExecutionStatus::Running,
            "the decommission keeps running"
        );
        assert!(w.sfn.get("cancel-CHG-1").is_none());
    }

    #[tokio::test]
    async fn a_cancel_whose_earlier_cancel_failed_says_so_and_changes_nothing() {
        let w = world(true);
        let input = json!({"CustomKeyStoreId": STORE, "DryRun": false}).to_string();
        let decommission = w
            .sfn
            .insert(MACHINE, "decom-CHG-1", &input, ExecutionStatus::Aborted);
        let failed = w.sfn.insert(
            CANCEL_MACHINE,
            "cancel-CHG-1",
            "{}",
            ExecutionStatus::Failed,
        );
        let (status, body) = call(&w, &cancel("CHG-1")).await;
        assert_eq!(
            (status, body["Error"].as_str()),
            (409, Some("CancelFailed")),
            "{body}"
        );
        let message = body["Message"].as_str().unwrap();
        assert!(
            message.contains(&failed) && message.contains(&decommission),
            "{message}"
        );
        assert!(message.contains("FAILED"), "{message}");
        assert_eq!(w.sfn.count(Some("StopExecution")), 0);
        assert_eq!(w.sfn.count(Some("StartExecution")), 0);
    }

    #[tokio::test]
    async fn cancel_stops_the_decommission_and_starts_the_cancel_workflow_once() {
        let w = world(true);
        call(&w, &signed(&start_body("CHG-1", false))).await;
        let (status, body) = call(&w, &cancel("CHG-1")).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["Result"], "CancelStarted");
        assert_eq!(body["StoppedNow"], true);
        let decommission = w.sfn.get("decom-CHG-1").unwrap();
        assert_eq!(decommission.status, ExecutionStatus::Aborted);
        assert_eq!(decommission.stop_error.as_deref(), Some(CANCEL_STOP_ERROR));
        let cancel_run = w.sfn.get("cancel-CHG-1").unwrap();
        assert_eq!(cancel_run.machine, CANCEL_MACHINE);
        let input: Value = serde_json::from_str(&cancel_run.input).unwrap();
        assert_eq!(input["CustomKeyStoreId"], STORE);
        assert_eq!(input["DecommissionExecutionArn"], decommission.arn.as_str());

        let (status, again) = call(&w, &cancel("CHG-1")).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["CancelExecutionArn"], body["CancelExecutionArn"]);
        assert_eq!(again["StoppedNow"], false);
        assert_eq!(w.sfn.count(Some("StopExecution")), 1);
        assert_eq!(
            w.sfn
                .executions
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.machine == CANCEL_MACHINE)
                .count(),
            1
        );

        // While the cancel runs, the store takes no new decommission.
        let (status, busy) = call(&w, &signed(&start_body("CHG-2", false))).await;
        assert_eq!(
            (status, busy["Error"].as_str().unwrap()),
            (409, "StoreBusy"),
            "{busy}"
        );
    }

    #[tokio::test]
    async fn cancel_without_a_cancel_workflow_says_keys_stay_pending() {
        let w = world(false);
        call(&w, &signed(&start_body("CHG-1", false))).await;
        let (status, body) = call(&w, &cancel("CHG-1")).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["Result"], "DecommissionStopped");
        assert_eq!(body["KeysRestored"], false);
        assert!(body["Message"]
            .as_str()
            .unwrap()
            .contains("pending deletion"));
    }

    #[tokio::test]
    async fn cancel_after_completion_or_of_a_dry_run_or_unknown_ticket() {
        let w = world(true);
        let input = json!({"CustomKeyStoreId": STORE, "DryRun": false}).to_string();
        w.sfn
            .insert(MACHINE, "decom-CHG-OLD", &input, ExecutionStatus::Succeeded);
        let (status, done) = call(&w, &cancel("CHG-OLD")).await;
        assert_eq!(status, 200);
        assert_eq!(done["Result"], "NothingToCancel");
        assert!(done["Message"]
            .as_str()
            .unwrap()
            .contains("cannot come back"));

        call(&w, &signed(&start_body("CHG-DRY", true))).await;
        let (status, dry) = call(&w, &cancel("CHG-DRY")).await;
        assert_eq!(
            (status, dry["Result"].as_str().unwrap()),
            (202, "DryRunStopped")
        );

        let (status, unknown) = call(&w, &cancel("CHG-NONE")).await;
        assert_eq!(
            (status, unknown["Error"].as_str().unwrap()),
            (404, "UnknownTicket")
        );
        assert_eq!(
            w.sfn
                .executions
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.machine == CANCEL_MACHINE)
                .count(),
            0
        );
    }
}
