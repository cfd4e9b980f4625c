//! CloudWatch Logs Insights over the emulator's CloudTrail records: `StartQuery`,
//! `GetQueryResults` and `StopQuery` (`X-Amz-Target: Logs_20140328.<Operation>`, awsJson1_1),
//! as if a trail delivered the records LookupEvents serves to a CloudWatch Logs log group
//! (kms-emulator/CLOUDTRAIL.md, "Logs Insights").
//!
//! - Any log group name is taken as the trail's log group (the emulator keeps no log groups).
//! - A query sees the records delivered (the CloudTrail delivery delay) and within retention, at
//!   StartQuery time, whose event time is within `startTime`..=`endTime` (epoch seconds).
//! - Queries run asynchronously: StartQuery answers a `queryId`; the first GetQueryResults
//!   answers `Running` with no results, the next `Complete` with every row.
//! - The query language is a subset: `fields`, `filter` (`=`, `!=`, `in [...]`, `not in [...]`,
//!   `ispresent(f)`, `and`, `or`, `not`, parentheses), `sort <field> asc|desc` and `limit <n>`,
//!   commands separated by `|`. Anything else is refused with `MalformedQueryException`.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use crate::cloudtrail::TrailEvent;

/// The X-Amz-Target prefix of the CloudWatch Logs API (the Smithy SDKs and botocore alike).
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// Longest query string (the `queryString` length constraint of the API reference).
pub const MAX_QUERY_LENGTH: usize = 10_000;
/// Most rows a query returns (StartQuery `limit`: 1 to 10,000).
pub const MAX_ROWS: usize = 10_000;
/// Most queries remembered; older ones answer ResourceNotFoundException.
const MAX_QUERIES: usize = 1_000;

/// The Logs operation of an X-Amz-Target, if it names one the emulator serves (StartQuery,
/// GetQueryResults, StopQuery). Other Logs operations are not the emulator's (the local stack
/// sends them elsewhere).
pub fn operation_name(target: &str) -> Option<&str> {
    target
        .strip_prefix(TARGET_PREFIX)
        .filter(|op| ["StartQuery", "GetQueryResults", "StopQuery"].contains(op))
}

/// A CloudWatch Logs error answer: `{"__type": "<Name>", "message": "..."}`, HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LogsError {
    /// The error name.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl LogsError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new("MalformedQueryException", message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }

    /// The answer for an error the fault API injects (given by its KMS name):
    /// ThrottlingException for throttling, else ServiceUnavailableException.
    pub fn injected(fault: &crate::error::KmsError) -> Self {
        match fault.code {
            crate::error::ErrorCode::Throttling => {
                Self::new("ThrottlingException", "Rate exceeded")
            }
            _ => Self::new(
                "ServiceUnavailableException",
                "The service cannot complete the request. (injected by kms-emulator)",
            ),
        }
    }

    /// The HTTP status: 500 for ServiceUnavailableException, else 400.
    pub fn status(&self) -> u16 {
        if self.code == "ServiceUnavailableException" {
            500
        } else {
            400
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"__type": self.code, "message": self.message})
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Eq(String, String),
    In(String, Vec<String>),
    Present(String),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    fields: Vec<String>,
    filters: Vec<Expr>,
    sort: Option<(String, bool)>,
    limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Sym(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, LogsError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' | '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(LogsError::malformed("unterminated string")),
                        Some('\\') => match chars.next() {
                            Some(e) => value.push(e),
                            None => return Err(LogsError::malformed("unterminated string")),
                        },
                        Some(q) if q == c => break,
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Str(value));
            }
            '|' | ',' | '(' | ')' | '[' | ']' | '=' => {
                chars.next();
                tokens.push(Token::Sym(match c {
                    '|' => "|",
                    ',' => ",",
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    _ => "=",
                }));
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(LogsError::malformed("expected != "));
                }
                tokens.push(Token::Sym("!="));
            }
            c if c.is_ascii_alphanumeric() || "@._-".contains(c) => {
                let mut word = String::new();
                while let Some(&w) = chars.peek() {
                    if w.is_ascii_alphanumeric() || "@._-".contains(w) {
                        word.push(w);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            other => {
                return Err(LogsError::malformed(format!(
                    "unexpected character {other:?} (the emulator serves fields, filter, sort and limit)"
                )))
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn symbol(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(s)) if *s == sym) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, sym: &str) -> Result<(), LogsError> {
        if self.symbol(sym) {
            Ok(())
        } else {
            Err(LogsError::malformed(format!("expected {sym}")))
        }
    }

    fn field(&mut self) -> Result<String, LogsError> {
        match self.next() {
            Some(Token::Word(w)) if !w.starts_with(|c: char| c.is_ascii_digit()) => Ok(w),
            other => Err(LogsError::malformed(format!(
                "expected a field name, found {other:?}"
            ))),
        }
    }

    fn value(&mut self) -> Result<String, LogsError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(s),
            Some(Token::Word(w)) if w.parse::<f64>().is_ok() || w == "true" || w == "false" => {
                Ok(w)
            }
            other => Err(LogsError::malformed(format!(
                "expected a string or number, found {other:?}"
            ))),
        }
    }

    fn or(&mut self) -> Result<Expr, LogsError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, LogsError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, LogsError> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.symbol("(") {
            let inner = self.or()?;
            self.expect(")")?;
            return Ok(inner);
        }
        if self.keyword("ispresent") {
            self.expect("(")?;
            let field = self.field()?;
            self.expect(")")?;
            return Ok(Expr::Present(field));
        }
        let field = self.field()?;
        if self.symbol("=") {
            return Ok(Expr::Eq(field, self.value()?));
        }
        if self.symbol("!=") {
            return Ok(Expr::Not(Box::new(Expr::Eq(field, self.value()?))));
        }
        let negated = self.keyword("not");
        if self.keyword("in") {
            self.expect("[")?;
            let mut values = Vec::new();
            if !self.symbol("]") {
                loop {
                    values.push(self.value()?);
                    if self.symbol("]") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            let expr = Expr::In(field, values);
            return Ok(if negated {
                Expr::Not(Box::new(expr))
            } else {
                expr
            });
        }
        Err(LogsError::malformed(format!(
            "after {field}: the emulator serves =, !=, in and not in comparisons"
        )))
    }

    fn at_command_end(&self) -> bool {
        matches!(self.peek(), None | Some(Token::Sym("|")))
    }
}

impl Query {
    /// Parses the query language subset the emulator serves.
    pub fn parse(text: &str) -> Result<Self, LogsError> {
        let mut p = Parser {
            tokens: tokenize(text)?,
            at: 0,
        };
        let mut query = Query::default();
        loop {
            let command = match p.next() {
                Some(Token::Word(w)) => w.to_ascii_lowercase(),
                other => {
                    return Err(LogsError::malformed(format!(
                        "expected a command, found {other:?}"
                    )))
                }
            };
            match command.as_str() {
                "fields" => loop {
                    query.fields.push(p.field()?);
                    if !p.symbol(",") {
                        break;
                    }
                },
                "filter" => query.filters.push(p.or()?),
                "sort" => {
                    let field = p.field()?;
                    // Logs Insights sorts descending unless told `asc`.
                    let descending = !p.keyword("asc");
                    if descending {
                        p.keyword("desc");
                    }
                    query.sort = Some((field, descending));
                }
                "limit" => match p.next() {
                    Some(Token::Word(w)) => {
                        let n: usize = w
                            .parse()
                            .map_err(|_| LogsError::malformed("limit takes a number"))?;
                        if n == 0 || n > MAX_ROWS {
                            return Err(LogsError::malformed(format!(
                                "limit must be 1 to {MAX_ROWS}"
                            )));
                        }
                        query.limit = Some(n);
                    }
                    _ => return Err(LogsError::malformed("limit takes a number")),
                },
                other => {
                    return Err(LogsError::malformed(format!(
                        "the emulator does not serve the command {other:?} (only fields, filter, sort, limit)"
                    )))
                }
            }
            if !p.at_command_end() {
                return Err(LogsError::malformed(format!(
                    "unexpected {:?} in {command}",
                    p.peek()
                )));
            }
            if p.next().is_none() {
                return Ok(query);
            }
        }
    }
}

/// A log event of the trail's log group: a record, its time and its pointer.
struct LogEvent {
    record: Value,
    timestamp_ms: i64,
    ptr: String,
}

impl LogEvent {
    fn field(&self, name: &str) -> Option<String> {
        match name {
            "@timestamp" => return Some(timestamp(self.timestamp_ms)),
            "@message" => return Some(self.record.to_string()),
            "@ptr" => return Some(self.ptr.clone()),
            _ => {}
        }
        let mut at = &self.record;
        for part in name.split('.') {
            at = match at {
                Value::Object(m) => m.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        match at {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    fn matches(&self, expr: &Expr) -> bool {
        match expr {
            Expr::And(a, b) => self.matches(a) && self.matches(b),
            Expr::Or(a, b) => self.matches(a) || self.matches(b),
            Expr::Not(e) => !self.matches(e),
            Expr::Eq(f, v) => self.field(f).as_ref() == Some(v),
            Expr::In(f, vs) => self.field(f).is_some_and(|x| vs.contains(&x)),
            Expr::Present(f) => self.field(f).is_some(),
        }
    }
}

/// `@timestamp` as Logs Insights shows it: `2026-11-30 10:00:00.000`.
fn timestamp(ms: i64) -> String {
    let iso = crate::cloudtrail::iso8601(ms.div_euclid(1000));
    format!(
        "{}.{:03}",
        iso.trim_end_matches('Z').replace('T', " "),
        ms.rem_euclid(1000)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Scheduled,
    Running,
    Complete,
    Cancelled,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Running => "Running",
            Self::Complete => "Complete",
            Self::Cancelled => "Cancelled",
        }
    }
}

#[derive(Debug)]
struct QueryRun {
    status: Status,
    rows: Vec<Value>,
    statistics: Value,
}

/// The queries started, by id.
#[derive(Debug, Default)]
pub struct Queries {
    runs: HashMap<String, QueryRun>,
    order: VecDeque<String>,
}

fn member<'a>(members: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    members.get(name).filter(|v| !v.is_null())
}

fn epoch(members: &Map<String, Value>, name: &str) -> Result<i64, LogsError> {
    match member(members, name) {
        Some(v) => v.as_i64().ok_or_else(|| {
            LogsError::new("SerializationException", format!("{name} must be a long"))
        }),
        None => Err(LogsError::invalid(format!("{name} is required"))),
    }
}

fn query_id(members: &Map<String, Value>) -> Result<&str, LogsError> {
    member(members, "queryId")
        .and_then(Value::as_str)
        .ok_or_else(|| LogsError::invalid("queryId is required"))
}

impl Queries {
    /// Forgets every query.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// StartQuery over `events` (the records delivered and within retention).
    pub fn start<'a>(
        &mut self,
        members: &Map<String, Value>,
        events: impl Iterator<Item = &'a TrailEvent>,
    ) -> Result<Value, LogsError> {
        let groups = ["logGroupName", "logGroupNames", "logGroupIdentifiers"]
            .iter()
            .filter(|g| member(members, g).is_some())
            .count();
        if groups != 1 {
            return Err(LogsError::invalid(
                "give exactly one of logGroupName, logGroupNames, logGroupIdentifiers",
            ));
        }
        let group = member(members, "logGroupName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                ["logGroupNames", "logGroupIdentifiers"]
                    .iter()
                    .find_map(|g| member(members, g))
                    .and_then(|v| v.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| LogsError::invalid("a log group name is required"))?;
        let start = epoch(members, "startTime")?;
        let end = epoch(members, "endTime")?;
        if end < start {
            return Err(LogsError::invalid("endTime is before startTime"));
        }
        let text = member(members, "queryString")
            .and_then(Value::as_str)
            .ok_or_else(|| LogsError::invalid("queryString is required"))?;
        if text.is_empty() || text.chars().count() > MAX_QUERY_LENGTH {
            return Err(LogsError::invalid(format!(
                "queryString must be 1 to {MAX_QUERY_LENGTH} characters"
            )));
        }
        let limit = match member(members, "limit") {
            None => MAX_ROWS,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_ROWS as u64).contains(&n) => n as usize,
                _ => return Err(LogsError::invalid(format!("limit must be 1 to {MAX_ROWS}"))),
            },
        };
        let query = Query::parse(text)?;
        let mut scanned = 0u64;
        let mut bytes = 0u64;
        let mut matched: Vec<LogEvent> = Vec::new();
        for event in events {
            let secs = event.event_time();
            if secs < start || secs > end {
                continue;
            }
            let record = event.record();
            scanned += 1;
            bytes += record.to_string().len() as u64;
            let log_event = LogEvent {
                record,
                timestamp_ms: secs * 1000,
                ptr: format!("{group}/{}", event.seq),
            };
            if query.filters.iter().all(|f| log_event.matches(f)) {
                matched.push(log_event);
            }
        }
        let records_matched = matched.len();
        if let Some((field, descending)) = &query.sort {
            matched.sort_by(|a, b| {
                let key = |e: &LogEvent| {
                    if field == "@timestamp" {
                        (e.timestamp_ms, String::new())
                    } else {
                        (0, e.field(field).unwrap_or_default())
                    }
                };
                let order = key(a).cmp(&key(b));
                if *descending {
                    order.reverse()
                } else {
                    order
                }
            });
        }
        matched.truncate(query.limit.unwrap_or(MAX_ROWS).min(limit));
        let fields: Vec<String> = if query.fields.is_empty() {
            vec!["@timestamp".into(), "@message".into()]
        } else {
            query.fields.clone()
        };
        let rows: Vec<Value> = matched
            .iter()
            .map(|e| {
                let mut row: Vec<Value> = fields
                    .iter()
                    .filter_map(|f| e.field(f).map(|v| json!({"field": f, "value": v})))
                    .collect();
                let ptr = base64_ptr(&e.ptr);
                row.push(json!({"field": "@ptr", "value": ptr}));
                Value::Array(row)
            })
            .collect();
        let id = uuid::Uuid::new_v4().to_string();
        self.runs.insert(
            id.clone(),
            QueryRun {
                status: Status::Scheduled,
                rows,
                statistics: json!({
                    "recordsMatched": records_matched as f64,
                    "recordsScanned": scanned as f64,
                    "bytesScanned": bytes as f64,
                    "logGroupsScanned": 1.0,
                }),
            },
        );
        self.order.push_back(id.clone());
        if self.order.len() > MAX_QUERIES {
            if let Some(old) = self.order.pop_front() {
                self.runs.remove(&old);
            }
        }
        Ok(json!({ "queryId": id }))
    }

    /// GetQueryResults: Scheduled -> Running (no results) -> Complete (every row).
    pub fn results(&mut self, members: &Map<String, Value>) -> Result<Value, LogsError> {
        let id = query_id(members)?;
        let run = self.runs.get_mut(id).ok_or_else(|| {
            LogsError::new(
                "ResourceNotFoundException",
                format!("query {id} does not exist"),
            )
        })?;
        run.status = match run.status {
            Status::Scheduled => Status::Running,
            Status::Running => Status::Complete,
            done => done,
        };
        let (results, statistics) = match run.status {
            Status::Complete => (Value::Array(run.rows.clone()), run.statistics.clone()),
            _ => (
                json!([]),
                json!({"recordsMatched": 0.0, "recordsScanned": 0.0, "bytesScanned": 0.0}),
            ),
        };
        Ok(json!({
            "queryLanguage": "CWLI",
            "results": results,
            "statistics": statistics,
            "status": run.status.name(),
        }))
    }

    /// StopQuery: a Scheduled or Running query becomes Cancelled.
    pub fn stop(&mut self, members: &Map<String, Value>) -> Result<Value, LogsError> {
        let id = query_id(members)?;
        let run = self.runs.get_mut(id).ok_or_else(|| {
            LogsError::new(
                "ResourceNotFoundException",
                format!("query {id} does not exist"),
            )
        })?;
        match run.status {
            Status::Scheduled | Status::Running => {
                run.status = Status::Cancelled;
                Ok(json!({"success": true}))
            }
            done => Err(LogsError::invalid(format!(
                "query {id} is not running (it is {})",
                done.name()
            ))),
        }
    }
}

/// An opaque `@ptr` (Logs' are base64-like strings).
fn base64_ptr(ptr: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(ptr)
}

/// Parses a Logs request body (SerializationException when it is not a JSON object).
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, LogsError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(LogsError::new(
            "SerializationException",
            "The request body must be a JSON object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, name: &str, key: &str, time: f64) -> TrailEvent {
        TrailEvent {
            seq,
            time,
            event_id: format!("e-{seq}"),
            event_name: name.into(),
            access_key_id: None,
            username: "app".into(),
            user_identity: json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/app"}),
            source_ip: "192.0.2.7".into(),
            user_agent: None,
            request_parameters: Value::Null,
            additional_event_data: None,
            error: Some(("KMSInvalidStateException".into(), "unavailable".into())),
            request_id: "r".into(),
            resources: vec![key.into()],
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            service_record: None,
        }
    }

    fn members(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_query_filters_sorts_limits_and_completes_after_a_poll() {
        let events = [
            event(1, "Decrypt", "k1", 100.0),
            event(2, "DescribeKey", "k1", 101.0),
            event(3, "Encrypt", "k2", 102.0),
            event(4, "Encrypt", "k3", 103.0),
            event(5, "Sign", "k1", 500.0),
        ];
        let mut q = Queries::default();
        let started = q
            .start(
                &members(json!({"logGroupName": "trail", "startTime": 100, "endTime": 400,
                    "queryString": "fields eventID, resources.0.ARN, nothing | filter eventSource = \"kms.amazonaws.com\" and eventName in [\"Decrypt\", \"Encrypt\"] | filter resources.0.ARN in [\"k1\", \"k2\"] or ispresent(missing) | sort @timestamp desc | limit 5"})),
                events.iter(),
            )
            .unwrap();
        let id = json!({"queryId": started["queryId"]});
        let first = q.results(&members(id.clone())).unwrap();
        assert_eq!(first["status"], "Running");
        assert_eq!(first["results"], json!([]));
        let done = q.results(&members(id.clone())).unwrap();
        assert_eq!(done["status"], "Complete");
        let rows = done["results"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], json!({"field": "eventID", "value": "e-3"}));
        assert_eq!(
            rows[0][1],
            json!({"field": "resources.0.ARN", "value": "k2"})
        );
        assert_eq!(rows[0][2]["field"], "@ptr");
        assert_eq!(done["statistics"]["recordsScanned"], 4.0);
        assert_eq!(
            q.stop(&members(id)).unwrap_err().code,
            "InvalidParameterException"
        );
    }

    #[test]
    fn what_the_emulator_does_not_serve_is_refused_by_name() {
        for text in [
            "stats count(*) by eventName",
            "fields a | filter a like /x/",
            "parse @message \"*\" as x",
            "filter a > 3",
            "fields a | limit 0",
        ] {
            assert_eq!(
                Query::parse(text).unwrap_err().code,
                "MalformedQueryException",
                "{text}"
            );
        }
        let mut q = Queries::default();
        let bad = |m: Value| members(m);
        let none = std::iter::empty();
        assert_eq!(
            q.start(
                &bad(json!({"startTime": 1, "endTime": 2, "queryString": "fields a"})),
                none
            )
            .unwrap_err()
            .code,
            "InvalidParameterException"
        );
        assert_eq!(
            q.results(&bad(json!({"queryId": "nope"})))
                .unwrap_err()
                .code,
            "ResourceNotFoundException"
        );
    }
}
