//! The HTTP API (axum). Handlers parse and validate, then run the blocking work from
//! [`Services`] on the blocking pool.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use tower_http::trace::TraceLayer;
use zhiku_schemas::{AskRequest, FileError, KbList, SearchRequest, SearchResponse, UploadResponse};

use crate::error::ServiceError;
use crate::services::Services;

/// Shared state of every handler.
pub type AppState = Arc<Services>;

/// The API's routes.
pub fn router(services: AppState) -> Router {
    let upload_limit = services.config.server.max_upload_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/kbs", get(list_kbs))
        .route("/v1/kbs/{kb}", get(get_kb).delete(delete_kb))
        .route(
            "/v1/kbs/{kb}/documents",
            post(upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(middleware::from_fn_with_state(
                    upload_limit,
                    reject_oversize,
                )),
        )
        .route("/v1/kbs/{kb}/search", post(search))
        .route("/v1/kbs/{kb}/ask", post(ask))
        .fallback(not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(services)
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
}

/// A JSON body, or a 400 that says what is wrong with it.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ServiceError> {
    body.map(|Json(v)| v)
        .map_err(|e| ServiceError::bad_request("invalid_json", e.body_text()))
}

async fn healthz() -> impl IntoResponse {
    // The server only starts listening once the models are loaded.
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ServiceError {
    ServiceError::NotFound("no such route".into())
}

async fn list_kbs(State(s): State<AppState>) -> Result<Json<KbList>, ServiceError> {
    blocking(move || {
        let mut kbs = Vec::new();
        for name in s.registry.names()? {
            if let Some(kb) = s.registry.get(&name)? {
                kbs.push(kb.info());
            }
        }
        Ok(Json(KbList { kbs }))
    })
    .await
}

async fn get_kb(
    State(s): State<AppState>,
    Path(kb): Path<String>,
) -> Result<impl IntoResponse, ServiceError> {
    blocking(move || Ok(Json(s.kb(&kb)?.info()))).await
}

async fn delete_kb(
    State(s): State<AppState>,
    Path(kb): Path<String>,
) -> Result<StatusCode, ServiceError> {
    blocking(move || {
        if s.registry.delete(&kb)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ServiceError::NotFound(format!(
                "knowledge base {kb:?} does not exist"
            )))
        }
    })
    .await
}

/// Bytes of an oversize body read and thrown away before answering 413. Clients send the
/// whole body before reading the response; a server that answers early and closes makes
/// most of them report a broken connection instead of the 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Answers 413 to a declared-oversize upload before any of it is parsed.
async fn reject_oversize(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => {
            if length <= DRAIN_LIMIT {
                let mut body = request.into_body();
                while let Some(Ok(_)) = body.frame().await {}
            }
            ServiceError::PayloadTooLarge(format!(
                "upload of {length} bytes is larger than the limit of {limit} bytes (server.max_upload_bytes)"
            ))
            .into_response()
        }
        _ => next.run(request).await,
    }
}

fn multipart_error(e: MultipartError) -> ServiceError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServiceError::PayloadTooLarge(format!(
            "upload is larger than the limit: {}",
            e.body_text()
        ))
    } else {
        ServiceError::bad_request("invalid_multipart", e.body_text())
    }
}

/// One uploaded file, read whole.
struct Upload {
    name: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

async fn upload(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>), ServiceError> {
    Services::check_kb_name(&kb)?;
    let mut multipart =
        multipart.map_err(|e| ServiceError::bad_request("invalid_multipart", e.body_text()))?;
    let mut files = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(str::to_string)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ServiceError::bad_request("missing_file_name", "every file part needs a file name")
            })?;
        // Only the last path component: clients send paths, and the name is shown to users.
        let name = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string();
        let content_type = field.content_type().map(str::to_string);
        let bytes = field.bytes().await.map_err(multipart_error)?.to_vec();
        files.push(Upload {
            name,
            content_type,
            bytes,
        });
    }
    if files.is_empty() {
        return Err(ServiceError::bad_request(
            "no_files",
            "the request has no `file` part",
        ));
    }
    blocking(move || {
        let mut documents = Vec::new();
        let mut errors = Vec::new();
        let mut first_failure = None;
        for file in files {
            match s.ingest_file(&kb, &file.name, file.content_type.as_deref(), &file.bytes) {
                Ok(info) => documents.push(info),
                Err(e) => {
                    let (status, code) = e.status_and_code();
                    if status.is_server_error() {
                        tracing::error!(file = %file.name, error = %e, "ingestion failed");
                    }
                    first_failure.get_or_insert((status, code));
                    errors.push(FileError {
                        name: file.name,
                        code: code.to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }
        match first_failure {
            Some((status, code)) if documents.is_empty() => Err(ServiceError::UploadFailed {
                status,
                code,
                files: errors,
            }),
            _ => Ok((
                StatusCode::CREATED,
                Json(UploadResponse { documents, errors }),
            )),
        }
    })
    .await
}

async fn search(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ServiceError> {
    let request = json_body(body)?;
    blocking(move || {
        Ok(Json(SearchResponse {
            hits: s.search(&kb, &request)?,
        }))
    })
    .await
}

async fn ask(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    body: Result<Json<AskRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ServiceError> {
    let request = json_body(body)?;
    blocking(move || Ok(Json(s.ask(&kb, &request, &mut |_| true)?))).await
}
