//! The HTTP server: the KMS and CloudTrail LookupEvents endpoint (`POST /`), the admin API, and
//! in-process start/stop.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cloudtrail::{self, Caller};
use crate::config::EmulatorConfig;
use crate::dispatch::{handle_call, handle_cloudtrail_call, handle_logs_call};
use crate::error::{ErrorCode, KmsError};
use crate::ops::RequestContext;
use crate::state::State;

/// The content type of awsJson1_1.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The state shared by all requests.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
}

impl Shared {
    /// Locks the state (a poisoned lock is recovered: no handler panics while holding it).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn respond(status: u16, request_id: &str, body: Option<String>) -> Response {
    let mut response = Response::new(Body::from(body.unwrap_or_default()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", id);
    }
    response
}

fn error_response(error: &KmsError, request_id: &str) -> Response {
    respond(
        error.code.http_status(),
        request_id,
        Some(error.body().to_string()),
    )
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The caller of a request: its access key id, source IP (the first `X-Forwarded-For` entry if
/// it is an IP address, else the peer) and user agent.
fn caller(headers: &HeaderMap, extensions: &Extensions) -> Caller {
    let forwarded = header_str(headers, "x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse::<IpAddr>().ok());
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let source_ip = forwarded
        .or(peer)
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    Caller {
        access_key_id: crate::identity::access_key_id(header_str(headers, header::AUTHORIZATION)),
        source_ip,
        user_agent: header_str(headers, header::USER_AGENT).map(String::from),
    }
}

async fn api(
    AxumState(shared): AxumState<Arc<Shared>>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = RequestContext::new(caller(&headers, &extensions));
    let latency_ms = {
        let state = shared.lock();
        state
            .config
            .latency_ms
            .saturating_add(state.faults.latency_ms)
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let target = header_str(&headers, "x-amz-target");
    if target.is_none() && crate::sts::is_get_caller_identity(&body) {
        let principal = shared
            .lock()
            .principal_for(ctx.caller.access_key_id.as_deref())
            .0;
        let mut response = respond(
            200,
            &ctx.request_id,
            Some(crate::sts::get_caller_identity(&principal, &ctx.request_id)),
        );
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::sts::CONTENT_TYPE),
        );
        return response;
    }
    if let Some(operation) = target.and_then(crate::logs::operation_name) {
        let result = {
            let mut state = shared.lock();
            state.settle();
            handle_logs_call(&mut state, operation, &body)
        };
        return match result {
            Ok(answer) => respond(200, &ctx.request_id, Some(answer.to_string())),
            Err(error) => {
                tracing::debug!(operation, error = %error, "logs error");
                respond(
                    error.status(),
                    &ctx.request_id,
                    Some(error.body().to_string()),
                )
            }
        };
    }
    if let Some(operation) = target.and_then(cloudtrail::operation_name) {
        let result = {
            let mut state = shared.lock();
            state.settle();
            handle_cloudtrail_call(&mut state, operation, &body)
        };
        return match result {
            Ok(answer) => respond(200, &ctx.request_id, Some(answer.to_string())),
            Err(error) => {
                tracing::debug!(operation, error = %error, "cloudtrail error");
                respond(
                    error.status,
                    &ctx.request_id,
                    Some(error.body().to_string()),
                )
            }
        };
    }
    let result = {
        let mut state = shared.lock();
        state.settle();
        handle_call(&mut state, target, &body, &ctx)
    };
    match result {
        Ok(outcome) => {
            tracing::debug!(target = target.unwrap_or(""), "ok");
            respond(200, &ctx.request_id, outcome.body.map(|b| b.to_string()))
        }
        Err(error) => {
            tracing::debug!(target = target.unwrap_or(""), error = %error, "error");
            error_response(&error, &ctx.request_id)
        }
    }
}

fn misrouted(status: StatusCode) -> Response {
    let error = KmsError::new(
        ErrorCode::UnknownOperation,
        "KMS requests are POST / with X-Amz-Target: TrentService.<Operation> (CloudTrail: CloudTrail_20131101.LookupEvents); the admin API is under /_emulator/",
    );
    let mut response = error_response(&error, &uuid::Uuid::new_v4().to_string());
    *response.status_mut() = status;
    response
}

async fn not_found() -> Response {
    misrouted(StatusCode::NOT_FOUND)
}

async fn method_not_allowed() -> Response {
    misrouted(StatusCode::METHOD_NOT_ALLOWED)
}

/// The whole application: KMS and CloudTrail endpoint and admin API over one shared state. Serve
/// it with `into_make_service_with_connect_info::<SocketAddr>()` so CloudTrail records carry the
/// peer address (else `127.0.0.1`).
pub fn router(config: EmulatorConfig) -> Router {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::new(config)),
    });
    Router::new()
        .route("/", post(api).fallback(method_not_allowed))
        .merge(crate::admin::routes())
        .fallback(not_found)
        .with_state(shared)
}

fn check_config(config: &EmulatorConfig) -> std::io::Result<()> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Serves the emulator on `listener` until `shutdown` completes.
pub async fn serve_until(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    check_config(&config)?;
    axum::serve(
        listener,
        router(config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves the emulator on `listener` forever.
pub async fn serve(listener: TcpListener, config: EmulatorConfig) -> std::io::Result<()> {
    serve_until(listener, config, std::future::pending()).await
}

/// An emulator running in the current tokio runtime; dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl RunningEmulator {
    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts an emulator on 127.0.0.1 with a free port, in the current tokio runtime.
pub async fn spawn(config: EmulatorConfig) -> std::io::Result<RunningEmulator> {
    check_config(&config)?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = serve_until(listener, config, shutdown).await {
            tracing::error!(error = %e, "kms-emulator stopped");
        }
    });
    Ok(RunningEmulator {
        addr,
        shutdown: Some(tx),
    })
}
