//! Batch ingestion: a persistent job queue ([`Jobs`]) and the pipelined runner ([`run`])
//! that also serves synchronous uploads.
//!
//! Data flows one way: [`source`] lists files, the runner reads, parses and chunks them on
//! one thread, has OCR read scanned pages and images on the OCR pool (chunking them
//! after), embeds in cross-file batches on another thread and commits groups of
//! documents on a last one, recording each file's outcome in the catalog in the same
//! transaction as its document. That is what makes a job resumable after `kill -9`:
//! whatever the catalog says is done, is done.

#![warn(missing_docs)]

mod manager;
mod runner;
pub mod source;

pub use manager::{JobStats, Jobs, JobsConfig, UploadFile};
pub use runner::{Engines, FileResult, PipelineSettings, Recorder, run};
pub use source::{Input, InputSource};

use zhiku_catalog::CatalogError;
use zhiku_index::IndexError;

/// Errors of the job system.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request is malformed (bad path, bad glob).
    #[error("{0}")]
    Invalid(String),
    /// The tags given are over the limits.
    #[error("{0}")]
    InvalidTags(String),
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

/// Most tags a document may carry: tags are copied onto every chunk in both indexes.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// The tags of an upload or import from what the client wrote, whichever way it came
/// (form fields, JSON, command line): each entry may list several tags separated by
/// commas; tags are trimmed, empty ones dropped and repeats removed, first kept.
pub fn normalize_tags<S: AsRef<str>>(raw: &[S]) -> Result<Vec<String>, JobError> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw
        .iter()
        .flat_map(|r| r.as_ref().split(','))
        .map(str::trim)
    {
        if tag.is_empty() || tags.iter().any(|t| t == tag) {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(JobError::InvalidTags(format!(
                "tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
            )));
        }
        tags.push(tag.to_string());
    }
    if tags.len() > MAX_TAGS {
        return Err(JobError::InvalidTags(format!(
            "{} tags given; a document may have at most {MAX_TAGS}",
            tags.len()
        )));
    }
    Ok(tags)
}

impl From<CatalogError> for JobError {
    fn from(e: CatalogError) -> Self {
        JobError::Catalog(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_trimmed_deduplicated_and_bounded() {
        assert_eq!(
            normalize_tags(&["hr, policy,,", " hr", "2024"]).unwrap(),
            ["hr", "policy", "2024"]
        );
        assert!(normalize_tags::<&str>(&[]).unwrap().is_empty());
        assert_eq!(normalize_tags(&["标签"]).unwrap(), ["标签"]);
        assert!(normalize_tags(&["x".repeat(64)]).is_ok());
        assert!(matches!(
            normalize_tags(&["x".repeat(65)]),
            Err(JobError::InvalidTags(_))
        ));
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert!(normalize_tags(&many[..32]).is_ok());
        assert!(matches!(
            normalize_tags(&many),
            Err(JobError::InvalidTags(_))
        ));
        assert!(normalize_tags(&[many.join(",")]).is_err());
    }
}
