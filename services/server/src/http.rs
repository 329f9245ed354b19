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
use zhiku_catalog::is_valid_document_id;
use zhiku_jobs::{Input, InputSource, UploadFile};
use zhiku_schemas::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChunkChoice, ChunkDelta, CompletionUsage, EmbeddingRequest, EmbeddingResponse,
};
use zhiku_schemas::{
    AskRequest, AskResponse, AskSources, AskToken, Conversation, ConversationList,
    ConversationListParams, CreateJobRequest, DocumentInfo, DocumentList, DocumentListParams,
    FeedbackRequest, Health, JobAccepted, JobInfo, JobList, KbInfo, KbList, ModelList, QaRecord,
    Readiness, ReadyState, ReindexResponse, SearchRequest, SearchResponse, TokenizeRequest,
    TokenizeResponse, UploadForm, UploadParams, UploadResponse,
};

use crate::error::{ApiError, error_body};
use crate::responses::{
    BadGateway, BadRequest, Conflict, ConversationPath, DocumentPath, Forbidden, JobPath, KbPath,
    NotFound, NotImplemented, Overloaded, PayloadTooLarge, UnprocessableContent,
    UnsupportedMediaType,
};
use zhiku_app::ask::AskSink;
use zhiku_app::auth::Principal;
use zhiku_app::conversations::check_id;
use zhiku_app::error::{ServiceError, kb_not_found};
use zhiku_app::services::Services;

/// Shared state of every handler.
pub type AppState = Arc<Services>;

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

/// Liveness
///
/// 200 while the process serves; it listens only once the models are loaded.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves.", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness
///
/// Ready for traffic: the models are loaded (the server only listens once they are), every
/// knowledge base's indexes open, and no shutdown under way.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready: send traffic.", body = Readiness),
    (status = 503, description = "Draining for shutdown, or a knowledge base cannot be opened.", body = Readiness),
))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let unready = |status, problems| Readiness {
        status,
        models: None,
        kbs: None,
        problems,
    };
    if s.draining.load(Ordering::Relaxed) {
        let body = unready(ReadyState::Draining, Vec::new());
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let checked = blocking(move || {
        let mut problems = Vec::new();
        let names = s.registry.names()?;
        for name in &names {
            if let Err(e) = s.registry.get(name) {
                problems.push(if s.config.server.expose_kb_names {
                    format!("{name}: {e}")
                } else {
                    // The error names the KB too; the log has it, the keyless probe not.
                    tracing::warn!(kb = %name, "not ready: {e}");
                    "a knowledge base cannot be opened (see the server log)".to_string()
                });
            }
        }
        // Knowledge bases are left out: probes need no key, and KB names are not theirs.
        Ok((s.models(&|_| false)?, names.len(), problems))
    })
    .await;
    match checked {
        Ok((models, kbs, problems)) if problems.is_empty() => Json(Readiness {
            status: ReadyState::Ready,
            models: Some(
                models
                    .data
                    .into_iter()
                    .filter(|m| m.role != "knowledge_base")
                    .map(|m| m.name)
                    .collect(),
            ),
            kbs: Some(kbs),
            problems: Vec::new(),
        })
        .into_response(),
        Ok((_, _, problems)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(unready(ReadyState::Unavailable, problems)),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(unready(ReadyState::Unavailable, vec![e.to_string()])),
        )
            .into_response(),
    }
}

/// Metrics
///
/// Prometheus text exposition (OpenMetrics): requests by route and status, latencies, time
/// to first token, tokens per second, ingestion, the job queue, generation slots and
/// per-KB counts.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The metrics.", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
))]
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let text = blocking(move || s.metrics_text()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError(ServiceError::NotFound("no such route".into()))
}

/// List knowledge bases
///
/// The knowledge bases the caller may read, with their document and chunk counts.
#[utoipa::path(get, path = "/v1/kbs", tag = "knowledge bases", responses(
    (status = 200, description = "The knowledge bases, by name.", body = KbList),
    (status = 409, response = Conflict),
))]
pub(crate) async fn list_kbs(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<KbList>, ApiError> {
    blocking(move || {
        let mut kbs = Vec::new();
        for name in s.registry.names()? {
            if !principal.can_read(&name) {
                continue;
            }
            if let Some(kb) = s.registry.get(&name)? {
                kbs.push(kb.info());
            }
        }
        Ok(Json(KbList { kbs }))
    })
    .await
}

/// Get a knowledge base
///
/// Its counts, embedding model and what each index physically stores.
#[utoipa::path(get, path = "/v1/kbs/{kb}", tag = "knowledge bases", params(KbPath), responses(
    (status = 200, description = "The knowledge base.", body = KbInfo),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn get_kb(
    State(s): State<AppState>,
    Path(kb): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        let kb = s.kb(&kb)?;
        let mut info = kb.info();
        info.stored = Some(kb.stored_counts()?);
        Ok(Json(info))
    })
    .await
}

/// Delete a knowledge base
///
/// Removes its directory: documents, both indexes and their catalog entries.
#[utoipa::path(delete, path = "/v1/kbs/{kb}", tag = "knowledge bases", params(KbPath), responses(
    (status = 204, description = "Deleted."),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn delete_kb(
    State(s): State<AppState>,
    Path(kb): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if s.registry.delete(&kb)? {
            s.conversations.purge_kb(&kb)?;
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(kb_not_found(&kb))
        }
    })
    .await
}

fn multipart_error(e: MultipartError) -> ServiceError {
    body_error(
        e.status(),
        e.body_text(),
        "invalid_multipart",
        "server.max_upload_bytes",
    )
}

/// One uploaded file, read whole.
struct Upload {
    name: String,
    /// The file name as sent, directories included: the document's `path`.
    path: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// The parts of an upload form, read.
struct UploadParts {
    files: Vec<Upload>,
    /// `document_id` fields, one per file or none.
    ids: Vec<String>,
    /// `tags` fields as sent, for every file.
    tags: Vec<String>,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ServiceError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ServiceError::bad_request("invalid_query", e.body_text()))
}

async fn read_uploads(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    max_parts: usize,
) -> Result<UploadParts, ServiceError> {
    let mut multipart =
        multipart.map_err(|e| ServiceError::bad_request("invalid_multipart", e.body_text()))?;
    let mut files = Vec::new();
    let mut ids = Vec::new();
    let mut tags = Vec::new();
    let mut parts = 0usize;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > max_parts {
            return Err(ServiceError::over_limit(
                "too_many_parts",
                "the upload",
                parts,
                "or more parts (files and fields)",
                max_parts,
                "server.max_upload_parts",
            ));
        }
        match field.name() {
            Some("file") => {}
            Some("tags") => {
                tags.push(field.text().await.map_err(multipart_error)?);
                continue;
            }
            Some("document_id") => {
                let id = field.text().await.map_err(multipart_error)?;
                if !is_valid_document_id(&id) {
                    return Err(ServiceError::bad_request(
                        "invalid_document_id",
                        format!(
                            "invalid document_id {id:?}: use 1-512 bytes without control characters"
                        ),
                    ));
                }
                ids.push(id);
                continue;
            }
            _ => continue,
        }
        let path = field
            .file_name()
            .map(str::to_string)
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ServiceError::bad_request("missing_file_name", "every file part needs a file name")
            })?;
        // The name shown to users is the last path component; clients send paths
        // ("../x", "hr/2024/leave.md"), which are never used to build a path on the
        // server. The whole path is kept as metadata to filter on.
        let name = relative_path(&path)
            .rsplit('/')
            .next()
            .unwrap_or("unnamed")
            .to_string();
        let content_type = field.content_type().map(str::to_string);
        let bytes = field.bytes().await.map_err(multipart_error)?.to_vec();
        files.push(Upload {
            name,
            path,
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
    if !ids.is_empty() && ids.len() != files.len() {
        return Err(ServiceError::bad_request(
            "invalid_document_id",
            format!(
                "{} document_id fields for {} files: give one per file, in the same order, or none",
                ids.len(),
                files.len()
            ),
        ));
    }
    Ok(UploadParts { files, ids, tags })
}

/// A client's file path as a clean relative path, the key of its document id: folders
/// kept (`hr/2023/leave.md` and `hr/2024/leave.md` are two documents), `.`, `..`, empty
/// parts and the difference between `/` and `\\` dropped. A bare file name is itself, so
/// its id is what it always was.
fn relative_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|part| !part.trim().is_empty() && *part != ".." && *part != ".")
        .collect();
    if parts.is_empty() {
        "unnamed".to_string()
    } else {
        parts.join("/")
    }
}

/// Upload documents
///
/// Parses, chunks, embeds and indexes the files; the knowledge base is created on first
/// upload. Each file succeeds or fails alone: failures of some files are listed in
/// `errors`, and only when every file failed is the answer an error, whose status is the
/// first failure's (`error.files` lists them all). Identical content is `unchanged`;
/// changed content replaces the stored version atomically.
#[utoipa::path(post, path = "/v1/kbs/{kb}/documents", tag = "documents",
    params(KbPath, UploadParams),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Searchable now (`wait=true`).", body = UploadResponse),
        (status = 202, description = "Queued as a job (`wait=false`); follow it at `/v1/jobs/{id}`.", body = JobAccepted),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ))]
pub(crate) async fn upload(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    params: Result<Query<UploadParams>, QueryRejection>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    Services::check_kb_name(&kb)?;
    let params = query(params)?;
    let UploadParts { files, ids, tags } =
        read_uploads(multipart, s.config.server.max_upload_parts).await?;
    let tags = zhiku_jobs::normalize_tags(&tags)?;
    let ids: Vec<String> = if ids.is_empty() {
        files
            .iter()
            .map(|f| zhiku_ingest::document_id(&kb, &relative_path(&f.path)))
            .collect()
    } else {
        ids
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(ServiceError::bad_request(
            "duplicate_document",
            format!("two files of this upload map to document {dup:?}; upload them separately"),
        )
        .into());
    }
    if !params.wait {
        let files = files
            .into_iter()
            .zip(ids)
            .map(|(f, document_id)| UploadFile {
                name: f.name,
                path: f.path,
                document_id,
                content_type: f.content_type,
                bytes: f.bytes,
            })
            .collect();
        let job = blocking(move || Ok(s.jobs()?.submit_upload(&kb, files, tags)?)).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id: job.id })).into_response());
    }
    let inputs: Vec<Input> = files
        .into_iter()
        .zip(ids)
        .map(|(f, document_id)| Input {
            name: f.name,
            path: f.path,
            tags: tags.clone(),
            document_id,
            content_type: f.content_type,
            source: InputSource::Bytes(f.bytes.into()),
        })
        .collect();
    blocking(move || {
        let (documents, errors) = s.ingest_now(&kb, inputs)?;
        match errors.first() {
            Some(first) if documents.is_empty() => Err(ServiceError::UploadFailed {
                code: first.code.clone(),
                files: errors,
            }),
            _ => Ok((
                StatusCode::CREATED,
                Json(UploadResponse { documents, errors }),
            )
                .into_response()),
        }
    })
    .await
}

/// List documents
///
/// One page of documents in id order; pass `next_cursor` as `cursor` for the next.
#[utoipa::path(get, path = "/v1/kbs/{kb}/documents", tag = "documents",
    params(KbPath, DocumentListParams), responses(
        (status = 200, description = "A page of documents.", body = DocumentList),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn list_documents(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    params: Result<Query<DocumentListParams>, QueryRejection>,
) -> Result<Json<DocumentList>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ServiceError::bad_request("invalid_limit", "limit must be between 1 and 1000").into(),
        );
    }
    blocking(move || {
        let (documents, more) = s.kb(&kb)?.documents(params.cursor.as_deref(), limit)?;
        let next_cursor = more
            .then(|| documents.last().map(|d| d.id.clone()))
            .flatten();
        Ok(Json(DocumentList {
            documents,
            next_cursor,
        }))
    })
    .await
}

/// Get a document
///
/// Name, path, format, tags, chunks, status, content hash, size, version and dates.
#[utoipa::path(get, path = "/v1/kbs/{kb}/documents/{id}", tag = "documents",
    params(DocumentPath), responses(
        (status = 200, description = "The document.", body = DocumentInfo),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn get_document(
    State(s): State<AppState>,
    Path((kb, id)): Path<(String, String)>,
) -> Result<Json<DocumentInfo>, ApiError> {
    blocking(move || {
        s.kb(&kb)?.document(&id)?.map(Json).ok_or_else(|| {
            ServiceError::NotFound(format!("document {id:?} does not exist in {kb:?}"))
        })
    })
    .await
}

/// Delete a document
///
/// Removes its chunks from both indexes and its catalog entry.
#[utoipa::path(delete, path = "/v1/kbs/{kb}/documents/{id}", tag = "documents",
    params(DocumentPath), responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn delete_document(
    State(s): State<AppState>,
    Path((kb, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if s.kb(&kb)?.delete_document(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ServiceError::NotFound(format!(
                "document {id:?} does not exist in {kb:?}"
            )))
        }
    })
    .await
}

/// Import a server directory
///
/// Starts a batch job that ingests the files of a directory on the server, which must lie
/// inside a configured import root (`..` and symlinks are resolved first). Each file's
/// path relative to the directory becomes its document id.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJobRequest, responses(
    (status = 202, description = "Queued; follow it at `/v1/jobs/{id}`.", body = JobAccepted),
    (status = 400, response = BadRequest),
    (status = 403, response = Forbidden),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn create_job(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<CreateJobRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let request = json_body(body)?;
    Services::check_kb_name(&request.kb)?;
    principal.write(&request.kb)?;
    let job = blocking(move || {
        Ok(s.jobs()?.submit_import(
            &request.kb,
            &request.path,
            request.glob.as_deref(),
            &request.tags,
        )?)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id: job.id })))
}

/// List jobs
///
/// The jobs of the knowledge bases the caller may read, newest first, with their progress.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses(
    (status = 200, description = "The jobs.", body = JobList),
))]
pub(crate) async fn list_jobs(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<JobList>, ApiError> {
    blocking(move || {
        let mut jobs = s.jobs()?.list()?;
        jobs.retain(|job| principal.can_read(&job.kb));
        Ok(Json(JobList { jobs }))
    })
    .await
}

fn job_not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("job {id:?} does not exist"))
}

/// The job `id` if the caller may read its knowledge base; otherwise the same 404 as for
/// a job that does not exist.
fn visible_job(s: &Services, principal: &Principal, id: &str) -> Result<JobInfo, ServiceError> {
    s.jobs()?
        .get(id)?
        .filter(|job| principal.can_read(&job.kb))
        .ok_or_else(|| job_not_found(id))
}

/// Get a job
///
/// State, file and chunk counts, rate, ETA and per-file errors.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(JobPath), responses(
    (status = 200, description = "The job.", body = JobInfo),
    (status = 404, response = NotFound),
))]
pub(crate) async fn get_job(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobInfo>, ApiError> {
    blocking(move || visible_job(&s, &principal, &id).map(Json)).await
}

/// Cancel a job
///
/// Stops a queued or running job; documents it already committed stay.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(JobPath), responses(
    (status = 200, description = "The job, cancelled.", body = JobInfo),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn cancel_job(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobInfo>, ApiError> {
    blocking(move || {
        principal.write(&visible_job(&s, &principal, &id)?.kb)?;
        Ok(Json(s.jobs()?.cancel(&id)?))
    })
    .await
}

/// Follow a job
///
/// Progress as Server-Sent Events: a `progress` event per change, then one `done` event
/// with the final state, then the stream ends. The `data` of both is a `JobInfo`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(JobPath), responses(
    (status = 200, description = "Server-Sent Events `progress` (data: `JobInfo`), then `done` (data: `JobInfo`).",
        content_type = "text/event-stream", body = String,
        example = "event: progress\ndata: {\"id\":\"…\",\"state\":\"running\",…}\n\nevent: done\ndata: {\"id\":\"…\",\"state\":\"succeeded\",…}\n\n"),
    (status = 404, response = NotFound),
))]
pub(crate) async fn job_events(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let lookup = id.clone();
    let receiver = blocking(move || {
        visible_job(&s, &principal, &lookup)?;
        Ok(s.jobs()?.subscribe(&lookup)?)
    })
    .await?
    .ok_or_else(|| job_not_found(&id))?;
    let stream = futures_util::stream::unfold(Some((receiver, true)), |state| async move {
        let (mut receiver, first) = state?;
        if !first && receiver.changed().await.is_err() {
            // The sender is gone: the job finished; report the last state as done.
            let info = receiver.borrow().clone();
            return Some((Ok(job_event("done", &info)), None));
        }
        let info = receiver.borrow_and_update().clone();
        if info.state.is_finished() {
            return Some((Ok(job_event("done", &info)), None));
        }
        Some((Ok(job_event("progress", &info)), Some((receiver, false))))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn job_event(name: &str, info: &JobInfo) -> Event {
    Event::default()
        .event(name)
        .json_data(info)
        .unwrap_or_else(|_| Event::default().event(name))
}

/// Search
///
/// Hybrid (BM25 and dense, fused), dense or keyword search, optionally filtered by document
/// metadata and expanded with neighbouring chunks. With `translate`, the query's
/// translation into the knowledge base's other language is searched too, which needs a
/// generation slot (503 when the queue is full).
#[utoipa::path(post, path = "/v1/kbs/{kb}/search", tag = "search", params(KbPath),
    request_body = SearchRequest, responses(
        (status = 200, description = "Hits, best first.", body = SearchResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Overloaded),
    ))]
pub(crate) async fn search(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let request = json_body(body)?;
    blocking(move || {
        let (hits, translated_query) = s.search_translated(&kb, &request)?;
        Ok(Json(SearchResponse {
            translated_query,
            ..SearchResponse::new(hits)
        }))
    })
    .await
}

/// Models
///
/// In OpenAI's shape, so OpenAI clients can list them: the LLM and the embedder (engine,
/// file, size, parameters, quantization, context, the LLM's generation slots), and each
/// knowledge base the caller may read as a `kb:<name>` model for chat completions.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses(
    (status = 200, description = "The models.", body = ModelList),
))]
pub(crate) async fn models(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ModelList>, ApiError> {
    blocking(move || Ok(Json(s.models(&|kb| principal.can_read(kb))?))).await
}

/// Tokenize
///
/// How the two sides of zhiku see a text: the LLM's tokens and the keyword index's words.
#[utoipa::path(post, path = "/v1/tokenize", tag = "models", request_body = TokenizeRequest, responses(
    (status = 200, description = "Tokens and words.", body = TokenizeResponse),
    (status = 400, response = BadRequest),
    (status = 501, response = NotImplemented),
))]
pub(crate) async fn tokenize(
    State(s): State<AppState>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let request = json_body(body)?;
    blocking(move || Ok(Json(s.tokenize(&request.text)?))).await
}

/// Reindex
///
/// Re-embeds every chunk with the service's embedding model and switches the knowledge
/// base to it atomically; searches use the old vectors until then. Runs to completion
/// before answering: a reindex is an operator's action, and the answer says what it did.
#[utoipa::path(post, path = "/v1/kbs/{kb}/reindex", tag = "knowledge bases", params(KbPath),
    responses(
        (status = 200, description = "Done.", body = ReindexResponse),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn reindex(
    State(s): State<AppState>,
    Path(kb): Path<String>,
) -> Result<Json<ReindexResponse>, ApiError> {
    blocking(move || Ok(Json(s.reindex(&kb)?))).await
}

/// Marks a request's client as gone when the handler's future is dropped, which hyper does
/// when the connection closes before the response is sent.
struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An answer collected whole for one JSON response.
struct JsonSink {
    gone: Arc<AtomicBool>,
}

impl AskSink for JsonSink {
    fn sources(&mut self, _: &AskSources) -> bool {
        !self.gone()
    }

    fn token(&mut self, _: &str) -> bool {
        !self.gone()
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

/// What a streamed answer sends, in order: sources, tokens, then done or error. `T` is
/// the finished answer: an [`AskResponse`] or a chat completion's
/// [`ChatOutcome`](zhiku_app::openai::ChatOutcome).
enum AskEvent<T> {
    Sources(AskSources),
    Token(String),
    Done(Box<T>),
    Failed(ServiceError),
}

/// An answer sent as events; the receiver is dropped with the response stream when the
/// client disconnects, which the sink reports as gone.
struct StreamSink<T> {
    events: mpsc::UnboundedSender<AskEvent<T>>,
}

impl<T> AskSink for StreamSink<T> {
    fn sources(&mut self, sources: &AskSources) -> bool {
        self.events.send(AskEvent::Sources(sources.clone())).is_ok()
    }

    fn token(&mut self, piece: &str) -> bool {
        self.events.send(AskEvent::Token(piece.to_string())).is_ok()
    }

    fn gone(&self) -> bool {
        self.events.is_closed()
    }
}

impl<T> AskEvent<T> {
    fn is_last(&self) -> bool {
        matches!(self, AskEvent::Done(_) | AskEvent::Failed(_))
    }
}

impl AskEvent<AskResponse> {
    fn into_sse(self) -> Event {
        let (name, data) = match self {
            AskEvent::Sources(sources) => ("sources", serde_json::to_value(sources)),
            AskEvent::Token(text) => ("token", serde_json::to_value(AskToken { text })),
            AskEvent::Done(response) => ("done", serde_json::to_value(response)),
            AskEvent::Failed(error) => ("error", serde_json::to_value(error_body(&error))),
        };
        let event = Event::default().event(name);
        match data {
            Ok(data) => event
                .json_data(data)
                .unwrap_or_else(|_| Event::default().event(name)),
            Err(_) => event,
        }
    }
}

/// Runs an answer on the blocking pool and waits for its first event. Until then the
/// response has not started, so a refusal (bad request, unknown KB or model, all slots
/// busy) is still a plain HTTP error with its status; after it, the events follow on the
/// receiver, ending with `Done` or `Failed`.
async fn start_stream<T: Send + 'static>(
    work: impl FnOnce(&mut StreamSink<T>) -> Result<T, ServiceError> + Send + 'static,
) -> Result<impl Stream<Item = AskEvent<T>>, ServiceError> {
    let (events, mut receiver) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let mut sink = StreamSink {
            events: events.clone(),
        };
        let last = match work(&mut sink) {
            Ok(done) => AskEvent::Done(Box::new(done)),
            Err(ServiceError::ClientGone) => return,
            Err(error) => AskEvent::Failed(error),
        };
        let _ = events.send(last);
    });
    let first = match receiver.recv().await {
        Some(AskEvent::Failed(error)) => return Err(error),
        Some(event) => event,
        None => return Err(ServiceError::Internal("the answer task ended early".into())),
    };
    Ok(futures_util::stream::unfold(
        (Some(first), Some(receiver)),
        |(pending, receiver)| async move {
            let mut receiver = receiver?;
            let event = match pending {
                Some(event) => event,
                None => receiver.recv().await?,
            };
            let next = (!event.is_last()).then_some(receiver);
            Some((event, (None, next)))
        },
    ))
}

/// Whether the client asked for Server-Sent Events: `"stream": true`, or an `Accept`
/// header naming `text/event-stream` (unless the body says `"stream": false`).
fn wants_events(request: &AskRequest, headers: &HeaderMap) -> bool {
    request.stream.unwrap_or_else(|| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/event-stream"))
    })
}

/// Ask
///
/// A grounded answer from the knowledge base's documents, citing them as `[n]`. As one
/// JSON body, or, with `"stream": true` or `Accept: text/event-stream`, as Server-Sent
/// Events: `sources` (data: `AskSources`), a `token` (data: `AskToken`) per piece, then
/// `done` (data: `AskResponse`) or `error` (data: `ErrorBody`). Errors found before the
/// first event are plain HTTP errors. Every answer is a turn of a conversation: send its
/// `conversation_id` with the next question to ask a follow-up.
#[utoipa::path(post, path = "/v1/kbs/{kb}/ask", tag = "ask", params(KbPath),
    request_body = AskRequest, responses(
        (status = 200, description = "The answer, or its events.", content(
            (AskResponse = "application/json"),
            (String = "text/event-stream", example = "event: sources\ndata: {\"sources\":[…],\"sources_dropped\":0,\"grounded\":true}\n\nevent: token\ndata: {\"text\":\"The backup\"}\n\nevent: done\ndata: {\"answer\":\"The backup runs at 02:00 [1].\",…}\n\n"),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Overloaded),
        (status = 502, response = BadGateway),
    ))]
pub(crate) async fn ask(
    State(s): State<AppState>,
    Path(kb): Path<String>,
    headers: HeaderMap,
    body: Result<Json<AskRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = json_body(body)?;
    if !wants_events(&request, &headers) {
        let gone = Arc::new(AtomicBool::new(false));
        let _guard = GoneOnDrop(gone.clone());
        return blocking(move || {
            let response = s.ask(&kb, &request, &mut JsonSink { gone })?;
            Ok(Json(response).into_response())
        })
        .await;
    }
    let events = start_stream(move |sink| s.ask(&kb, &request, sink)).await?;
    let stream = events.map(|event| Ok::<_, Infallible>(event.into_sse()));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// List conversations
///
/// The conversations of the knowledge bases the caller may read (of one, with `?kb=`:
/// empty for one it may not read, as for one that does not exist), without their turns,
/// most recently updated first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations",
    params(ConversationListParams), responses(
        (status = 200, description = "The conversations.", body = ConversationList),
        (status = 400, response = BadRequest),
    ))]
pub(crate) async fn list_conversations(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ConversationListParams>, QueryRejection>,
) -> Result<Json<ConversationList>, ApiError> {
    let params = query(params)?;
    blocking(move || {
        let mut conversations = s.conversations.list(params.kb.as_deref())?;
        conversations.retain(|c| principal.can_read(&c.kb));
        Ok(Json(ConversationList { conversations }))
    })
    .await
}

fn conversation_not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("conversation {id:?} does not exist"))
}

/// Conversation `id` if the caller may read its knowledge base; otherwise the same 404 as
/// for one that does not exist. Whoever may ask a knowledge base may also read, rate and
/// delete its conversations: they are made by asking.
fn visible_conversation(
    s: &Services,
    principal: &Principal,
    id: &str,
) -> Result<Conversation, ServiceError> {
    check_id(id)?;
    s.conversations
        .get(id)?
        .filter(|c| principal.can_read(&c.kb))
        .ok_or_else(|| conversation_not_found(id))
}

/// Get a conversation
///
/// Every turn: question, search query, answer, sources and feedback.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(ConversationPath), responses(
        (status = 200, description = "The conversation.", body = Conversation),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn get_conversation(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    blocking(move || visible_conversation(&s, &principal, &id).map(Json)).await
}

/// Delete a conversation
///
/// Its turns and feedback; later questions naming it are refused.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations",
    params(ConversationPath), responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn delete_conversation(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        visible_conversation(&s, &principal, &id)?;
        if s.conversations.delete(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(conversation_not_found(&id))
        }
    })
    .await
}

/// Rate an answer
///
/// Feedback on one turn; later feedback replaces earlier. Turns rated `good` are exported
/// by `GET /v1/kbs/{kb}/export/qa.jsonl`.
#[utoipa::path(post, path = "/v1/conversations/{id}/feedback", tag = "conversations",
    params(ConversationPath), request_body = FeedbackRequest, responses(
        (status = 204, description = "Recorded."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn conversation_feedback(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    let request = json_body(body)?;
    blocking(move || {
        visible_conversation(&s, &principal, &id)?;
        s.conversations.feedback(&id, &request)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Export fine-tuning data
///
/// The turns of a KB's conversations rated good, one chat fine-tuning record (`QaRecord`)
/// per line, streamed as they are read. A storage failure midway aborts the response, so a
/// truncated export is never mistaken for a complete one.
#[utoipa::path(get, path = "/v1/kbs/{kb}/export/qa.jsonl", tag = "conversations",
    params(KbPath), responses(
        (status = 200, description = "JSON Lines: one `QaRecord` per line.",
            content_type = "application/x-ndjson", body = QaRecord),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn export_qa(
    State(s): State<AppState>,
    Path(kb): Path<String>,
) -> Result<Response, ApiError> {
    let check = s.clone();
    let name = kb.clone();
    blocking(move || check.kb(&name).map(drop)).await?;
    let (lines, mut received) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || {
        let result = s.conversations.export_good(&kb, &mut |record| {
            let line = serde_json::to_string(&record)
                .map(|line| line + "\n")
                .map_err(std::io::Error::other);
            let failed = line.is_err();
            // A send fails once the client has gone: stop reading then too.
            lines.blocking_send(line).is_ok() && !failed
        });
        if let Err(e) = result {
            tracing::error!(error = %e, kb, "export failed midway");
            let _ = lines.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| received.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Seconds since the Unix epoch, for OpenAI's `created`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Chat completions (OpenAI)
///
/// OpenAI's chat API over a knowledge base (`model: "kb:<name>"`: retrieval, a grounded
/// answer, `citations`; earlier messages are the conversation) or the bare LLM (its name),
/// so OpenAI clients work unchanged. With `"stream": true`, Server-Sent Events without
/// names whose `data` is a `ChatCompletionChunk` (the first carries the sources as
/// `citations`), an `ErrorBody` if generation fails midway, and finally `[DONE]`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest, responses(
        (status = 200, description = "The completion, or its chunks.", content(
            (ChatCompletion = "application/json"),
            (String = "text/event-stream", example = "data: {\"id\":\"chatcmpl-…\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},…}],…}\n\ndata: {…\"delta\":{\"content\":\"The backup\"}…}\n\ndata: [DONE]\n\n"),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Overloaded),
        (status = 502, response = BadGateway),
    ))]
pub(crate) async fn chat_completions(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = json_body(body)?;
    // A `kb:` model is its knowledge base: unreadable ones are unknown models.
    if let Some(kb) = request.model.strip_prefix("kb:") {
        principal.read(kb)?;
    }
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    let model = request.model.clone();
    if !request.stream.unwrap_or(false) {
        let gone = Arc::new(AtomicBool::new(false));
        let _guard = GoneOnDrop(gone.clone());
        let outcome = blocking(move || s.chat(&request, &mut JsonSink { gone })).await?;
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: outcome.content,
                    refusal: None,
                },
                finish_reason: outcome.finish_reason,
                logprobs: None,
            }],
            usage: CompletionUsage::new(
                outcome.usage.prompt_tokens,
                outcome.usage.completion_tokens,
            ),
            system_fingerprint: None,
            citations: outcome.citations,
            context: outcome.context,
            search_query: outcome.search_query,
            grounded: outcome.grounded,
        })
        .into_response());
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let events = start_stream(move |sink| s.chat(&request, sink)).await?;
    let chunk = move |delta: ChunkDelta, finish_reason: Option<String>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.clone(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        }],
        usage: None,
        system_fingerprint: None,
        citations: None,
    };
    let data = |value: &ChatCompletionChunk| {
        Event::default()
            .json_data(value)
            .unwrap_or_else(|_| Event::default().data("{}"))
    };
    // Whether any token went out: a "not found" answer is never generated, so it is sent
    // whole before the finishing chunk.
    let mut streamed = false;
    let stream = events
        .map(move |event| {
            let mut out = Vec::new();
            match event {
                AskEvent::Sources(sources) => {
                    let mut first = chunk(
                        ChunkDelta {
                            role: Some("assistant".into()),
                            content: Some(String::new()),
                        },
                        None,
                    );
                    first.citations = Some(sources.sources).filter(|c| !c.is_empty());
                    out.push(data(&first));
                }
                AskEvent::Token(text) => {
                    streamed = true;
                    out.push(data(&chunk(
                        ChunkDelta {
                            role: None,
                            content: Some(text),
                        },
                        None,
                    )));
                }
                AskEvent::Done(outcome) => {
                    if !streamed && !outcome.content.is_empty() {
                        out.push(data(&chunk(
                            ChunkDelta {
                                role: None,
                                content: Some(outcome.content.clone()),
                            },
                            None,
                        )));
                    }
                    let mut last = chunk(ChunkDelta::default(), Some(outcome.finish_reason));
                    last.citations = Some(outcome.citations).filter(|c| !c.is_empty());
                    out.push(data(&last));
                    if include_usage {
                        let mut usage = chunk(ChunkDelta::default(), None);
                        usage.choices.clear();
                        usage.usage = Some(CompletionUsage::new(
                            outcome.usage.prompt_tokens,
                            outcome.usage.completion_tokens,
                        ));
                        out.push(data(&usage));
                    }
                }
                AskEvent::Failed(error) => out.push(
                    Event::default()
                        .json_data(error_body(&error))
                        .unwrap_or_else(|_| Event::default().data("{}")),
                ),
            }
            futures_util::stream::iter(out.into_iter().map(Ok::<_, Infallible>))
        })
        .flatten()
        .chain(futures_util::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Embeddings (OpenAI)
///
/// OpenAI's embeddings API over the service's embedding model: L2-normalised vectors as
/// floats or base64.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingRequest, responses(
        (status = 200, description = "One embedding per input, in order.", body = EmbeddingResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn embeddings(
    State(s): State<AppState>,
    body: Result<Json<EmbeddingRequest>, JsonRejection>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let request = json_body(body)?;
    blocking(move || Ok(Json(s.embeddings(&request)?))).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn client_paths_become_clean_relative_paths() {
        for (path, expected) in [
            ("leave.md", "leave.md"),
            ("hr/2024/leave.md", "hr/2024/leave.md"),
            ("./hr\\2024//leave.md", "hr/2024/leave.md"),
            ("../../etc/passwd", "etc/passwd"),
            ("/abs/x.txt", "abs/x.txt"),
            ("..", "unnamed"),
        ] {
            assert_eq!(super::relative_path(path), expected, "{path}");
        }
    }

    /// The router and the access table list the same routes, so no route is refused for
    /// want of an access decision and no decision is about a route that does not exist.
    #[test]
    fn every_route_has_an_access_entry_and_every_entry_a_route() {
        let routed: BTreeSet<(String, &str)> = crate::routes::route_table()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path))
            .collect();
        let listed: BTreeSet<(String, &str)> = zhiku_app::access::ROUTES
            .iter()
            .map(|&(method, path, _)| (method.to_string(), path))
            .collect();
        assert_eq!(routed, listed);
    }
}
