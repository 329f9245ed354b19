//! Storage of one knowledge base: vectors and keywords.
//!
//! Dense vectors live behind the [`VectorStore`] trait, the seam between the embedded
//! Qdrant Edge shard used by default ([`EdgeVectorStore`]) and a Qdrant cluster at scale.
//! Keyword search is a Tantivy index ([`KeywordIndex`]) with a Chinese-aware analyzer
//! ([`analyzer`]). Both store the full [`ChunkRecord`](zhiku_schemas::ChunkRecord) so a hit
//! from either side is complete without a second look-up.

pub mod analyzer;
mod kb;
mod keyword;
mod vector;

pub use kb::{
    DocumentWrite, KbMeta, KbRegistry, KbView, KnowledgeBase, ReEmbed, ReconcileReport,
    ReindexReport,
};
pub use keyword::KeywordIndex;
pub use vector::{EdgeVectorStore, HnswParams, VectorStore};

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
