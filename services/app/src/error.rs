//! The use cases' one error type. It says what went wrong, not how a protocol reports it:
//! the HTTP server maps it to statuses in one place (`zhiku-server`'s `error.rs`).

use zhiku_generate::GenerateError;
use zhiku_index::IndexError;
use zhiku_jobs::JobError;
use zhiku_retrieve::RetrieveError;
use zhiku_schemas::{FileError, InvalidDocumentId, InvalidKbName, KbName};

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
    /// Every file of an upload failed; the first failure decides the code (and the
    /// status).
    #[error("no file could be ingested: {}", .files.first().map(|f| format!("{}: {}", f.name, f.message)).unwrap_or_else(|| "no files".into()))]
    UploadFailed {
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
}

/// The 404 of a knowledge base that does not exist; also what a key gets for one it may
/// not read, so the two cannot be told apart.
pub fn kb_not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("knowledge base {name:?} does not exist"))
}

/// The name of a knowledge base that must already exist: a name no knowledge base can have
/// is the 404 of one that does not exist, as a lookup by that name would be.
pub fn existing_kb_name(name: &str) -> Result<KbName, ServiceError> {
    KbName::new(name).map_err(|_| kb_not_found(name))
}

/// A name given where a knowledge base may be created: a 400 saying what a name may be.
impl From<InvalidKbName> for ServiceError {
    fn from(e: InvalidKbName) -> Self {
        Self::bad_request("invalid_kb_name", e.to_string())
    }
}

/// A document id given for a new document: a 400 saying what an id may be.
impl From<InvalidDocumentId> for ServiceError {
    fn from(e: InvalidDocumentId) -> Self {
        Self::bad_request("invalid_document_id", e.to_string())
    }
}
