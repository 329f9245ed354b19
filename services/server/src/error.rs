//! The one place errors become HTTP statuses: [`ApiError`] wraps the use cases'
//! [`ServiceError`] (a foreign type, so the wrapper is what implements `IntoResponse`).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use zhiku_app::error::ServiceError;
use zhiku_generate::GenerateError;
use zhiku_index::IndexError;
use zhiku_jobs::JobError;
use zhiku_retrieve::RetrieveError;
use zhiku_schemas::{ErrorBody, ErrorDetail};

/// A [`ServiceError`] on its way out as an HTTP response: what every handler returns.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Into<ServiceError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// Status and code of an error.
fn status_and_code(error: &ServiceError) -> (StatusCode, &str) {
    match error {
        ServiceError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ServiceError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ServiceError::HostNotAllowed(_) => (StatusCode::MISDIRECTED_REQUEST, "host_not_allowed"),
        ServiceError::CrossSite(_) => (StatusCode::FORBIDDEN, "cross_site_refused"),
        ServiceError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
        ServiceError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_failed"),
        ServiceError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ServiceError::UploadFailed { code, .. } => (file_status(code), code.as_str()),
        ServiceError::Job(JobError::Invalid(_)) => (StatusCode::BAD_REQUEST, "invalid_request"),
        ServiceError::Job(JobError::InvalidTags(_)) => (StatusCode::BAD_REQUEST, "invalid_tags"),
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
        ServiceError::Retrieve(RetrieveError::Index(e)) | ServiceError::Index(e) => index_status(e),
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

fn index_status(e: &IndexError) -> (StatusCode, &'static str) {
    match e {
        IndexError::ModelMismatch { .. } => (StatusCode::CONFLICT, "model_mismatch"),
        IndexError::Busy(_) => (StatusCode::CONFLICT, "busy"),
        IndexError::Outdated { .. } => (StatusCode::CONFLICT, "outdated_kb"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "index_failed"),
    }
}

/// Status of one failed file, by its error code: the client's fault is 4xx, ours 500.
fn file_status(code: &str) -> StatusCode {
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

/// The JSON error body (also sent as the `error` event of a stream that fails midway);
/// logs server-side failures.
pub fn error_body(error: &ServiceError) -> ErrorBody {
    let (status, code) = status_and_code(error);
    if status.is_server_error() {
        tracing::error!(error = %error, "request failed");
    }
    let files = match error {
        ServiceError::UploadFailed { files, .. } => files.clone(),
        _ => Vec::new(),
    };
    ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: error.to_string(),
            files,
        },
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(error) = self;
        let (status, _) = status_and_code(&error);
        let body = error_body(&error);
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &error {
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
