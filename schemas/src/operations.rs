//! Errors, health and readiness.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FileError;

/// Body of every error response: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `unsupported_type`.
    pub code: String,
    /// Human-readable explanation naming the problem.
    pub message: String,
    /// Per-file failures of an upload in which every file failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileError>,
}

/// `GET /healthz` response. The process answers only once its models are loaded, so any
/// answer at all means it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// What `GET /readyz` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyState {
    /// Every knowledge base opens: send traffic (200).
    Ready,
    /// Shutting down: stop sending traffic (503).
    Draining,
    /// A knowledge base or the data directory cannot be opened; see `problems` (503).
    Unavailable,
}

/// `GET /readyz` response, for load balancers and orchestrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// The verdict; anything but `ready` comes with status 503.
    pub status: ReadyState,
    /// Names of the loaded models, when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Number of knowledge bases, when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbs: Option<usize>,
    /// What failed, when unavailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
