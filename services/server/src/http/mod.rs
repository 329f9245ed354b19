//! The HTTP API (axum). Handlers parse and validate, then run the blocking work from
//! [`Services`] on the blocking pool.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::Request;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use zhiku_jobs::{Input, InputSource, UploadFile};
use zhiku_schemas::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChunkChoice, ChunkDelta, CompletionUsage, EmbeddingRequest, EmbeddingResponse,
};
use zhiku_schemas::{
    AskRequest, AskResponse, AskSources, AskToken, Caller, Conversation, ConversationList,
    ConversationListParams, CreateJobRequest, DocumentId, DocumentInfo, DocumentList,
    DocumentListParams, FeedbackRequest, Health, JobAccepted, JobInfo, JobList, KbInfo, KbList,
    KbName, ModelList, QaRecord, Readiness, ReadyState, ReindexResponse, SearchRequest,
    SearchResponse, TokenizeRequest, TokenizeResponse, UploadForm, UploadParams, UploadResponse,
};

use crate::error::{ApiError, error_body};
use crate::responses::{
    BadGateway, BadRequest, Conflict, ConversationPath, DocumentPath, Forbidden, JobPath, KbPath,
    NotFound, NotImplemented, Overloaded, PayloadTooLarge, UnprocessableContent,
    UnsupportedMediaType,
};
use extract::{DocPath, Kb, NewKb};
use zhiku_app::ask::AskSink;
use zhiku_app::auth::Principal;
use zhiku_app::conversations::check_id;
use zhiku_app::error::{ServiceError, kb_not_found};
use zhiku_app::services::Services;

/// Shared state of every handler.
pub type AppState = Arc<Services>;

pub(crate) mod ask;
pub(crate) mod auth;
pub(crate) mod conversations;
pub(crate) mod documents;
pub(crate) mod extract;
pub(crate) mod jobs;
pub(crate) mod kbs;
pub(crate) mod models;
pub(crate) mod openai;
pub(crate) mod operations;
pub(crate) mod search;
pub(crate) mod stream;
pub(crate) mod ui;

/// The tracing span of a request: method, path, request id and API key id, so every log
/// line of the request can be found by the id the client saw, and traced to a key.
pub(crate) fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // `key` is filled in once the API key is known.
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id, key = tracing::field::Empty)
}

/// Counts every request by route pattern and status, with its latency.
pub(crate) async fn track(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    s.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Runs blocking work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??)
}

/// A JSON body, or a 400 that says what is wrong with it (413 when it is too large).
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ServiceError> {
    body.map(|Json(v)| v).map_err(|e| {
        body_error(
            e.status(),
            e.body_text(),
            "invalid_json",
            "server.max_body_bytes",
        )
    })
}

/// A body that could not be read: 413 naming the setting when it was over the limit
/// (`DefaultBodyLimit` cuts bodies of undeclared length while they are read), else a 400
/// with `code`.
fn body_error(status: StatusCode, text: String, code: &'static str, limit: &str) -> ServiceError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ServiceError::PayloadTooLarge(format!(
            "request body is larger than the limit ({limit}): {text}"
        ))
    } else {
        ServiceError::bad_request(code, text)
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError(ServiceError::NotFound("no such route".into()))
}

/// Every route but the operational ones, on a node started with `--role worker`.
pub(crate) async fn worker_only() -> ApiError {
    ApiError(ServiceError::NotFound(
        "this node runs jobs only (role worker) and answers /healthz, /readyz and /metrics; \
         send API requests to a node with role api or all"
            .into(),
    ))
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ServiceError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ServiceError::bad_request("invalid_query", e.body_text()))
}
