//! The ingestion pipeline for one document: parse → chunk → embed → index.
//!
//! [`prepare`] does the expensive, side-effect-free part (everything up to vectors), so a
//! file that fails leaves the stores untouched; [`store`] then swaps the document in.

use sha2::{Digest, Sha256};
use zhiku_chunk::{ChunkerConfig, TokenCounter, chunk_document};
use zhiku_embed::{EmbedError, Embedder};
use zhiku_index::{IndexError, KnowledgeBase};
use zhiku_parse::{ParseError, detect_format, parse};
use zhiku_schemas::{ChunkRecord, DocumentInfo};

/// Why a document could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read as a supported document.
    #[error("{name}: {source}")]
    Parse {
        /// File name.
        name: String,
        /// The parser's reason.
        source: ParseError,
    },
    /// Embedding failed.
    #[error("{name}: {source}")]
    Embed {
        /// File name.
        name: String,
        /// The embedder's reason.
        source: EmbedError,
    },
    /// Storing failed.
    #[error("{name}: {source}")]
    Index {
        /// File name.
        name: String,
        /// The store's reason.
        source: IndexError,
    },
}

impl IngestError {
    /// Machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Parse { source, .. } => source.code(),
            IngestError::Embed { .. } => "embedding_failed",
            IngestError::Index {
                source: IndexError::ModelMismatch { .. },
                ..
            } => "model_mismatch",
            IngestError::Index { .. } => "index_failed",
        }
    }
}

/// A document ready to be stored: chunks with their vectors.
#[derive(Debug, Clone)]
pub struct PreparedDocument {
    /// Id, name and chunk count.
    pub info: DocumentInfo,
    /// Chunks and vectors, in document order.
    pub points: Vec<(ChunkRecord, Vec<f32>)>,
}

/// Stable document id derived from the KB and file name, so re-uploading a file replaces it.
pub fn document_id(kb: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{kb}\0{name}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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

/// Parses, chunks and embeds one file. Touches no store.
pub fn prepare(
    kb: &str,
    name: &str,
    content_type: Option<&str>,
    bytes: &[u8],
    embedder: &dyn Embedder,
    chunking: &ChunkerConfig,
) -> Result<PreparedDocument, IngestError> {
    let parse_err = |source| IngestError::Parse {
        name: name.to_string(),
        source,
    };
    let format = detect_format(name, content_type, bytes).map_err(parse_err)?;
    let parsed = parse(format, bytes).map_err(parse_err)?;
    let chunks = chunk_document(&parsed, &EmbedderTokens(embedder), chunking);
    if chunks.is_empty() {
        return Err(parse_err(ParseError::Empty));
    }
    let id = document_id(kb, name);
    let records: Vec<ChunkRecord> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let index = i as u32;
            ChunkRecord {
                chunk_id: ChunkRecord::make_id(&id, index),
                document_id: id.clone(),
                document_name: name.to_string(),
                chunk_index: index,
                text: c.text,
                heading: (!c.heading_path.is_empty()).then(|| c.heading_path.join(" > ")),
                page: c.page,
            }
        })
        .collect();
    let inputs: Vec<String> = records.iter().map(embedding_input).collect();
    let vectors = embedder
        .embed_passages(&inputs)
        .map_err(|source| IngestError::Embed {
            name: name.to_string(),
            source,
        })?;
    let info = DocumentInfo {
        id,
        name: name.to_string(),
        chunks: records.len(),
    };
    Ok(PreparedDocument {
        info,
        points: records.into_iter().zip(vectors).collect(),
    })
}

/// Stores a prepared document in the KB, replacing any earlier version of it.
pub fn store(
    kb: &KnowledgeBase,
    embedder: &dyn Embedder,
    document: PreparedDocument,
) -> Result<DocumentInfo, IngestError> {
    let info = document.info.clone();
    let index_err = |source| IngestError::Index {
        name: info.name.clone(),
        source,
    };
    kb.ensure_model(embedder.name(), embedder.dimension())
        .map_err(index_err)?;
    kb.replace_document(document.info, document.points)
        .map_err(index_err)?;
    Ok(info)
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
}
