//! Storage of one knowledge base: vectors and keywords.
//!
//! Dense vectors live behind the [`VectorStore`] trait, the seam between the embedded
//! Qdrant Edge shard used by default ([`EdgeVectorStore`]) and a Qdrant cluster at scale
//! ([`QdrantVectorStore`]); [`StoreBackend`] says which. Keyword search is a Tantivy index
//! ([`KeywordIndex`]) with a Chinese-aware analyzer ([`analyzer`]) beside an embedded
//! shard; a Qdrant collection holds BM25 sparse vectors from the same analyzer instead. Both store the full [`ChunkRecord`](zhiku_schemas::ChunkRecord) so a hit
//! from either side is complete without a second look-up.

pub mod analyzer;
mod backend;
mod kb;
mod keyword;
mod qdrant;
mod registry;
mod vector;

#[cfg(test)]
mod test_support;

pub use backend::StoreBackend;
pub use kb::{
    CopyReport, DocumentWrite, KbMeta, KbView, KnowledgeBase, ReEmbed, ReconcileReport,
    ReindexReport,
};
pub use keyword::KeywordIndex;
pub use qdrant::{QdrantConnection, QdrantSettings, QdrantVectorStore};
pub use registry::KbRegistry;
pub use vector::{EdgeVectorStore, HnswParams, HybridHits, MaybeVector, VectorStore};

use zhiku_schemas::{SearchFilter, path_prefixes};

/// A search filter as `(field, values)` pairs, one per field given, in the order
/// document ids, tags, path prefixes, MIME types, each named by the store's key for it: a
/// chunk matches if every pair's field holds one of its values. Both stores build their
/// queries from this, so they cannot differ in what a filter means; the path prefix is
/// normalised as stored prefixes are, and one naming no component matches nothing.
fn filter_terms<F>(filter: &SearchFilter, keys: [F; 4]) -> Vec<(F, Vec<String>)> {
    let prefix = filter
        .path_prefix
        .as_deref()
        .map(|p| vec![path_prefixes(p).pop().unwrap_or_default()]);
    let values = [
        filter.document_ids.clone(),
        filter.tags.clone(),
        prefix,
        filter.mime_types.clone(),
    ];
    keys.into_iter()
        .zip(values)
        .filter_map(|(key, values)| Some((key, values?)))
        .collect()
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The vector store failed.
    #[error("vector store: {0}")]
    Vector(String),
    /// The keyword index failed.
    #[error("keyword index: {0}")]
    Keyword(String),
    /// A stored record could not be decoded.
    #[error("corrupt stored record: {0}")]
    Corrupt(String),
    /// The KB was built with another embedding model than the one asked to use it.
    #[error(
        "knowledge base was built with embedding model {kb}, but the service runs {service}: re-embed it with `zhiku reindex --kb NAME` (or POST /v1/kbs/NAME/reindex), or run the service with the KB's model"
    )]
    ModelMismatch {
        /// Model recorded in the KB.
        kb: String,
        /// Model the caller runs.
        service: String,
    },
    /// The embedding model failed while re-embedding chunks.
    #[error("embedding failed: {0}")]
    Embedding(String),
    /// The KB was written by an older zhiku whose stores lack what this build relies on
    /// (e.g. the metadata fields searches filter on). There are no migrations: the
    /// documents must be ingested again.
    #[error(
        "{what} was built by an older version of zhiku ({detail}); delete the knowledge base and ingest its documents again"
    )]
    Outdated {
        /// The KB, or the store within it.
        what: String,
        /// What gave it away.
        detail: String,
    },
    /// The KB is in use and cannot be changed this way right now.
    #[error("{0}")]
    Busy(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] zhiku_catalog::CatalogError),
    /// A vector has the wrong dimension for this store.
    #[error("vector has dimension {got}, the store expects {expected}")]
    Dimension {
        /// Dimension the store was created with.
        expected: usize,
        /// Dimension given.
        got: usize,
    },
}

impl From<tantivy::TantivyError> for IndexError {
    fn from(e: tantivy::TantivyError) -> Self {
        IndexError::Keyword(e.to_string())
    }
}

impl From<qdrant_edge::OperationError> for IndexError {
    fn from(e: qdrant_edge::OperationError) -> Self {
        IndexError::Vector(e.to_string())
    }
}
