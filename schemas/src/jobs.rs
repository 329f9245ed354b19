//! Background ingestion jobs and their progress.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{FileError, KbName};

/// State of a batch job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for earlier jobs.
    Queued,
    /// Being processed.
    Running,
    /// Finished; individual files may still have failed (see `errors`).
    Succeeded,
    /// Stopped by an error that affects the whole job, or every file failed.
    Failed,
    /// Cancelled by a client; documents committed before that stay.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Where a job's files come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobSource {
    /// Files uploaded with `POST /v1/kbs/{kb}/documents?wait=false`.
    Upload,
    /// A directory on the server (`POST /v1/jobs`).
    Import {
        /// The directory, as resolved on the server.
        path: String,
        /// Glob the relative paths must match, e.g. `**/*.md`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        glob: Option<String>,
    },
}

/// A batch job and its progress: `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// Target knowledge base.
    #[schema(value_type = String)]
    pub kb: KbName,
    /// Where the files come from.
    pub source: JobSource,
    /// Current state.
    pub state: JobState,
    /// Files in the job; known once the directory has been listed.
    pub files_total: u64,
    /// Files finished, whatever the outcome (`indexed + unchanged + failed`).
    pub files_done: u64,
    /// Files whose content was indexed (created or updated).
    pub files_indexed: u64,
    /// Files skipped because the stored document has the same content.
    pub files_unchanged: u64,
    /// Files that failed; see `errors`.
    pub files_failed: u64,
    /// Chunks written.
    pub chunks_indexed: u64,
    /// Bytes of the finished files.
    pub bytes: u64,
    /// Files per second since the job started running.
    pub files_per_second: f64,
    /// Chunks per second since the job started running.
    pub chunks_per_second: f64,
    /// Pages (and images) read by OCR in this run, updated page by page.
    #[serde(default)]
    pub ocr: OcrProgress,
    /// Estimated seconds until the job finishes, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Per-file failures.
    #[serde(default)]
    pub errors: Vec<FileError>,
    /// Why the whole job failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the job was created (RFC 3339).
    pub created_at: String,
    /// When it started running (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl JobInfo {
    /// A queued job with no progress yet.
    pub fn new(id: String, kb: KbName, source: JobSource, created_at: String) -> Self {
        Self {
            id,
            kb,
            source,
            state: JobState::Queued,
            files_total: 0,
            files_done: 0,
            files_indexed: 0,
            files_unchanged: 0,
            files_failed: 0,
            chunks_indexed: 0,
            bytes: 0,
            files_per_second: 0.0,
            chunks_per_second: 0.0,
            ocr: OcrProgress::default(),
            eta_seconds: None,
            errors: Vec::new(),
            message: None,
            created_at,
            started_at: None,
            finished_at: None,
        }
    }
}

/// OCR progress of a job: the slowest stage, so it is reported page by page.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct OcrProgress {
    /// Pages and images queued for OCR so far (files are parsed as the job goes, so this
    /// grows).
    pub pages_total: u64,
    /// Of those, finished (including failed ones).
    pub pages_done: u64,
    /// Of those, failed (time limit, unreadable image); each fails alone.
    pub pages_failed: u64,
    /// Wall-clock seconds during which at least one page was being read.
    pub busy_seconds: f64,
}

impl OcrProgress {
    /// The figures of two runs or jobs together.
    pub fn plus(self, other: OcrProgress) -> OcrProgress {
        OcrProgress {
            pages_total: self.pages_total + other.pages_total,
            pages_done: self.pages_done + other.pages_done,
            pages_failed: self.pages_failed + other.pages_failed,
            busy_seconds: self.busy_seconds + other.busy_seconds,
        }
    }
}

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// Target knowledge base (created if missing).
    pub kb: String,
    /// Server-side directory to import; must lie inside a configured import root.
    pub path: String,
    /// Only files whose path relative to `path` matches this glob (default: all files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Tags for every imported document; entries may hold several tags separated by
    /// commas, as in an upload's `tags` fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `202 Accepted` body of a request that started a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    /// Id to follow with `GET /v1/jobs/{id}`.
    pub job_id: String,
}

/// `GET /v1/jobs` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Jobs, newest first.
    pub jobs: Vec<JobInfo>,
}
