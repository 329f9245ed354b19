//! The crate's one error type, and the one place errors become HTTP statuses.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use zhiku_generate::GenerateError;
use zhiku_index::IndexError;
use zhiku_jobs::JobError;
use zhiku_retrieve::RetrieveError;
use zhiku_schemas::{ErrorBody, ErrorDetail, FileError};

/// Anything a request or command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; the message says how.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request's `Host` is not one this server answers to (DNS rebinding).
    #[error("{0}")]
    HostNotAllowed(String),
    /// A browser's write from another site, which `server.cors_origins` does not allow.
    #[error("{0}")]
    CrossSite(String),
    /// The request conflicts with the state of what it names.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// What the conflict is and what to do.
        message: String,
    },
    /// The service's own storage (conversations) failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The request body is over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Every file of an upload failed; the first failure decides status and code.
    #[error("no file could be ingested: {}", .files.first().map(|f| format!("{}: {}", f.name, f.message)).unwrap_or_else(|| "no files".into()))]
    UploadFailed {
        /// Status of the first failure.
        status: StatusCode,
        /// Code of the first failure.
        code: String,
        /// Every failure.
        files: Vec<FileError>,
    },
    /// Retrieval failed.
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
    /// Generation failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// Storage failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A job request failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// Every generation slot is busy and the queue is full: 503 with `Retry-After`.
    #[error("{message}")]
    Overloaded {
        /// What is full.
        message: String,
        /// Seconds after which a retry is likely to be admitted.
        retry_after_secs: u64,
    },
    /// No API key, or one that is unknown or revoked: 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// The key may read the knowledge base but not change it.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's key (or address) is over `server.rate_limit_per_minute`: 429 with
    /// `Retry-After`.
    #[error("too many requests: retry in {retry_after_secs} s (server.rate_limit_per_minute)")]
    RateLimited {
        /// Seconds until the next request is allowed.
        retry_after_secs: u64,
    },
    /// The response did not start within `server.request_timeout_secs`.
    #[error("no response within {0} s (server.request_timeout_secs)")]
    Timeout(u64),
    /// The client went away before the answer was done; nobody reads the response.
    #[error("the client closed the connection")]
    ClientGone,
    /// A background task died; never expected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 400 for a request past a configured bound, naming the bound's key so the
    /// caller knows what to shorten and the operator what to raise.
    pub fn over_limit(
        code: &'static str,
        subject: &str,
        count: usize,
        unit: &str,
        limit: usize,
        key: &str,
    ) -> Self {
        Self::bad_request(
            code,
            format!("{subject} has {count} {unit}; at most {limit} are allowed ({key})"),
        )
    }

    /// Status and code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &str) {
        match self {
            ServiceError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ServiceError::HostNotAllowed(_) => {
                (StatusCode::MISDIRECTED_REQUEST, "host_not_allowed")
            }
            ServiceError::CrossSite(_) => (StatusCode::FORBIDDEN, "cross_site_refused"),
            ServiceError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ServiceError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_failed"),
            ServiceError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ServiceError::UploadFailed { status, code, .. } => (*status, code.as_str()),
            ServiceError::Job(JobError::Invalid(_)) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ServiceError::Job(JobError::InvalidTags(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_tags")
            }
            ServiceError::Job(JobError::Forbidden(_)) => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::Job(JobError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Job(JobError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::Job(JobError::Index(e)) => index_status(e),
            ServiceError::Job(JobError::Catalog(_) | JobError::Storage(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage_failed")
            }
            ServiceError::Retrieve(RetrieveError::EmptyQuery) => {
                (StatusCode::BAD_REQUEST, "empty_query")
            }
            ServiceError::Retrieve(RetrieveError::Index(e)) | ServiceError::Index(e) => {
                index_status(e)
            }
            ServiceError::Retrieve(RetrieveError::Embed(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "embedding_failed")
            }
            ServiceError::Generate(GenerateError::PromptTooLong { .. }) => {
                (StatusCode::BAD_REQUEST, "prompt_too_long")
            }
            ServiceError::Generate(GenerateError::InvalidSchema(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_response_format")
            }
            // The remote LLM endpoint, as a gateway reports its upstream.
            ServiceError::Generate(GenerateError::Upstream { .. }) => {
                (StatusCode::BAD_GATEWAY, "upstream_failed")
            }
            ServiceError::Generate(GenerateError::UpstreamTimeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            ServiceError::Generate(GenerateError::NotSupported(_)) => {
                (StatusCode::NOT_IMPLEMENTED, "not_supported")
            }
            ServiceError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ServiceError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ServiceError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            // nginx's "client closed request": never seen by the client, but honest in logs.
            ServiceError::ClientGone => (
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "client_closed_request",
            ),
            ServiceError::Generate(_) => (StatusCode::INTERNAL_SERVER_ERROR, "generation_failed"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The 404 of a knowledge base that does not exist; also what a key gets for one it may
/// not read, so the two cannot be told apart.
pub fn kb_not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("knowledge base {name:?} does not exist"))
}
macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for ServiceError {
            fn from(e: $t) -> Self {
                ServiceError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn index_status(e: &IndexError) -> (StatusCode, &'static str) {
    match e {
        IndexError::ModelMismatch { .. } => (StatusCode::CONFLICT, "model_mismatch"),
        IndexError::Busy(_) => (StatusCode::CONFLICT, "busy"),
        IndexError::Outdated { .. } => (StatusCode::CONFLICT, "outdated_kb"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "index_failed"),
    }
}

/// Status of one failed file, by its error code: the client's fault is 4xx, ours 500.
pub fn file_status(code: &str) -> StatusCode {
    match code {
        "unsupported_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "empty_document"
        | "not_text"
        | "invalid_pdf"
        | "invalid_docx"
        | "no_text_layer"
        | "timeout"
        | "invalid_image"
        | "no_text_found"
        | "ocr_disabled"
        | "parser_crashed"
        | "parser_out_of_memory"
        | "parser_cpu_limit" => StatusCode::UNPROCESSABLE_ENTITY,
        "file_too_large" | "too_many_pages" | "image_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "model_mismatch" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ServiceError {
    /// The JSON error body (also sent as the `error` event of a stream that fails midway);
    /// logs server-side failures.
    pub fn body(&self) -> ErrorBody {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let files = match self {
            ServiceError::UploadFailed { files, .. } => files.clone(),
            _ => Vec::new(),
        };
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
                files,
            },
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ServiceError::Overloaded {
                retry_after_secs, ..
            }
            | ServiceError::RateLimited { retry_after_secs } => {
                headers.insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(*retry_after_secs),
                );
            }
            ServiceError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response
    }
}
