//! The stages of ingesting one file: read → parse → chunk → embed → index.
//!
//! Each stage is a plain function so that the batch runner (`zhiku-jobs`) can put them on
//! different threads. Every failure is an [`IngestError`] that names its stage and carries
//! a stable code, so a job report says where and why a file failed.

#![warn(missing_docs)]

use sha2::{Digest, Sha256};
use zhiku_chunk::{ChunkerConfig, TokenCounter, chunk_document};
use zhiku_embed::{EmbedError, Embedder};
use zhiku_index::IndexError;
use zhiku_parse::{DocFormat, ParseError, detect_format, parse};
use zhiku_schemas::ChunkRecord;

/// A stage of the pipeline, as named in error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the file.
    Read,
    /// Detecting the format and extracting text.
    Parse,
    /// Cutting the text into chunks.
    Chunk,
    /// Computing vectors.
    Embed,
    /// Writing to the stores and the catalog.
    Index,
}

impl Stage {
    /// The stage's name in API responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Parse => "parse",
            Stage::Chunk => "chunk",
            Stage::Embed => "embed",
            Stage::Index => "index",
        }
    }
}

/// Why a file could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read.
    #[error("could not read the file: {0}")]
    Read(String),
    /// The file exceeds the configured size limit.
    #[error("the file has {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// File size.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The file could not be read as a supported document.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Parsing succeeded but produced no chunk.
    #[error("the document has no text to index")]
    NoChunks,
    /// Embedding failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Storing failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The file took longer than the per-file time limit.
    #[error("gave up after {seconds} s in the {} stage (per-file time limit)", stage.as_str())]
    Timeout {
        /// Stage that was running.
        stage: Stage,
        /// The limit.
        seconds: u64,
    },
    /// The job was cancelled before this file finished.
    #[error("the job was cancelled")]
    Cancelled,
}

impl IngestError {
    /// Machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Read(_) => "read_failed",
            IngestError::TooLarge { .. } => "file_too_large",
            IngestError::Parse(e) => e.code(),
            IngestError::NoChunks => "empty_document",
            IngestError::Embed(_) => "embedding_failed",
            IngestError::Index(IndexError::ModelMismatch { .. }) => "model_mismatch",
            IngestError::Index(_) => "index_failed",
            IngestError::Timeout { .. } => "timeout",
            IngestError::Cancelled => "cancelled",
        }
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        match self {
            IngestError::Read(_) | IngestError::TooLarge { .. } | IngestError::Cancelled => {
                Stage::Read
            }
            IngestError::Parse(_) => Stage::Parse,
            IngestError::NoChunks => Stage::Chunk,
            IngestError::Embed(_) => Stage::Embed,
            IngestError::Index(_) => Stage::Index,
            IngestError::Timeout { stage, .. } => *stage,
        }
    }
}

/// Stable document id derived from the KB and file name, so re-uploading a file replaces it.
pub fn document_id(kb: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{kb}\0{name}").as_bytes());
    hex(&digest[..8])
}

/// Lowercase hex of bytes, as every digest zhiku stores is written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The settings that shape a document's chunks and vectors: a change to any of them makes
/// stored documents stale even when their content is the same.
pub fn pipeline_fingerprint(embedder: &dyn Embedder, chunking: &ChunkerConfig) -> String {
    format!(
        "{}/{}/{}/{}",
        embedder.name(),
        embedder.dimension(),
        chunking.max_tokens,
        chunking.overlap_tokens
    )
}

/// `sha256:<hex>` of the content and the pipeline fingerprint: equal hashes mean
/// re-ingesting would produce the same chunks.
pub fn content_hash(bytes: &[u8], fingerprint: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update([0]);
    hasher.update(fingerprint.as_bytes());
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// The text embedded for a chunk. The heading path goes with the text: a chunk under
/// "Network > DNS" is about DNS even when its own sentences never say so.
pub fn embedding_input(record: &ChunkRecord) -> String {
    match &record.heading {
        Some(h) => format!("{h}\n{}", record.text),
        None => record.text.clone(),
    }
}

/// Counts tokens with the embedder's own tokenizer, so chunks fit the model.
struct EmbedderTokens<'a>(&'a dyn Embedder);

impl TokenCounter for EmbedderTokens<'_> {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}

/// A file cut into chunks, not yet embedded.
#[derive(Debug, Clone)]
pub struct ChunkedFile {
    /// Detected format.
    pub format: DocFormat,
    /// Chunks in document order; `version` is assigned when stored.
    pub records: Vec<ChunkRecord>,
}

/// Detects, parses and chunks one file's bytes. Touches no store.
pub fn chunk_file(
    name: &str,
    document_id: &str,
    content_type: Option<&str>,
    bytes: &[u8],
    embedder: &dyn Embedder,
    chunking: &ChunkerConfig,
) -> Result<ChunkedFile, IngestError> {
    let format = detect_format(name, content_type, bytes)?;
    let parsed = parse(format, bytes)?;
    let chunks = chunk_document(&parsed, &EmbedderTokens(embedder), chunking);
    if chunks.is_empty() {
        return Err(IngestError::NoChunks);
    }
    let records = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let index = i as u32;
            ChunkRecord {
                chunk_id: ChunkRecord::make_id(document_id, index),
                document_id: document_id.to_string(),
                document_name: name.to_string(),
                chunk_index: index,
                text: c.text,
                heading: (!c.heading_path.is_empty()).then(|| c.heading_path.join(" > ")),
                page: c.page,
                // Version and metadata are the document's, stamped on when it is stored.
                version: 0,
                tags: Vec::new(),
                path: String::new(),
                mime: String::new(),
            }
        })
        .collect();
    Ok(ChunkedFile { format, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_stable_and_distinct() {
        assert_eq!(document_id("kb", "a.md"), document_id("kb", "a.md"));
        assert_ne!(document_id("kb", "a.md"), document_id("kb", "b.md"));
        assert_ne!(document_id("kb1", "a.md"), document_id("kb2", "a.md"));
        assert_eq!(document_id("kb", "a.md").len(), 16);
    }

    #[test]
    fn hashes_cover_content_and_settings() {
        let a = content_hash(b"hello", "m/384/256/32");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_eq!(a, content_hash(b"hello", "m/384/256/32"));
        assert_ne!(a, content_hash(b"hello!", "m/384/256/32"));
        assert_ne!(a, content_hash(b"hello", "m/384/128/32"));
    }

    #[test]
    fn errors_name_stage_and_code() {
        let e = IngestError::Timeout {
            stage: Stage::Embed,
            seconds: 5,
        };
        assert_eq!(e.code(), "timeout");
        assert_eq!(e.stage().as_str(), "embed");
        assert!(e.to_string().contains("embed stage"));
        let e = IngestError::Parse(ParseError::Empty);
        assert_eq!((e.code(), e.stage()), ("empty_document", Stage::Parse));
    }
}
