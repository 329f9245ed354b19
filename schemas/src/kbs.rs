//! Knowledge bases: their listing, counts and names.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Summary of one knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KbInfo {
    /// KB name.
    pub name: String,
    /// Documents stored.
    pub documents: usize,
    /// Chunks stored.
    pub chunks: usize,
    /// Embedding model that built the vectors.
    pub embedder: String,
    /// Vector dimension.
    pub dimension: usize,
    /// What the two indexes physically hold (only on `GET /v1/kbs/{kb}`): equal to
    /// `chunks` except for moments while a document is being swapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredCounts>,
}

/// Result of re-embedding a KB with the service's embedding model
/// (`POST /v1/kbs/{kb}/reindex`, `zhiku reindex`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReindexResponse {
    /// The KB, now on the new model.
    pub kb: KbInfo,
    /// Model the vectors were built with before.
    pub previous_embedder: String,
    /// Their dimension.
    pub previous_dimension: usize,
    /// Documents re-embedded.
    pub documents: usize,
    /// Chunks re-embedded.
    pub chunks: usize,
    /// Wall time of the reindex, in milliseconds.
    pub elapsed_ms: u64,
}

/// Entries in each index of a KB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredCounts {
    /// Points in the vector store.
    pub vectors: usize,
    /// Documents in the keyword index.
    pub keywords: usize,
}

/// `GET /v1/kbs` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KbList {
    /// All knowledge bases, by name.
    pub kbs: Vec<KbInfo>,
}

/// Whether `name` is a valid knowledge-base name: `[a-z0-9_-]{1,64}`.
pub fn is_valid_kb_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_names() {
        assert!(is_valid_kb_name("docs_v2-zh"));
        assert!(!is_valid_kb_name(""));
        assert!(!is_valid_kb_name("Docs"));
        assert!(!is_valid_kb_name("../etc"));
        assert!(!is_valid_kb_name(&"a".repeat(65)));
    }
}
