//! Batch ingestion: a persistent job queue ([`Jobs`]) and the pipelined runner ([`run`])
//! that also serves synchronous uploads.
//!
//! Data flows one way: [`source`] lists files, the runner reads, parses and chunks them on
//! one thread, embeds them in cross-file batches on another and commits groups of
//! documents on a third, recording each file's outcome in the catalog in the same
//! transaction as its document. That is what makes a job resumable after `kill -9`:
//! whatever the catalog says is done, is done.

#![warn(missing_docs)]

mod manager;
mod runner;
pub mod source;

pub use manager::{Jobs, JobsConfig, UploadFile};
pub use runner::{FileResult, Input, InputSource, PipelineSettings, Recorder, run};

use zhiku_catalog::CatalogError;
use zhiku_index::IndexError;

/// Errors of the job system.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request is malformed (bad path, bad glob).
    #[error("{0}")]
    Invalid(String),
    /// The path lies outside the import roots.
    #[error("{0}")]
    Forbidden(String),
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// The job is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// The KB could not be opened or written.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(String),
    /// Staging files on disk failed.
    #[error("{0}")]
    Storage(String),
}

impl From<CatalogError> for JobError {
    fn from(e: CatalogError) -> Self {
        JobError::Catalog(e.to_string())
    }
}
