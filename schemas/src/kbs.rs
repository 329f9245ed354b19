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

/// A knowledge-base name that has been checked: `[a-z0-9_-]{1,64}`.
///
/// Names become directory names and catalog keys, so they are checked once where they
/// enter (a path, a request body, a key file, the command line) and travel as this type
/// from there on; nothing below the edge checks a name again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KbName(String);

impl KbName {
    /// Checks `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidKbName> {
        let name = name.into();
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(name))
        } else {
            Err(InvalidKbName(name))
        }
    }
}

checked_string!(KbName, InvalidKbName);

/// A string that is not a valid knowledge-base name; it says what a valid one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKbName(pub String);

impl std::fmt::Display for InvalidKbName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid knowledge base name {:?}: use 1-64 characters of a-z, 0-9, _ and -",
            self.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_names() {
        assert_eq!(KbName::new("docs_v2-zh").unwrap().as_str(), "docs_v2-zh");
        for bad in ["", "Docs", "../etc", "a b", &"a".repeat(65)] {
            assert_eq!(KbName::new(bad), Err(InvalidKbName(bad.to_string())));
        }
        assert!(serde_json::from_str::<KbName>("\"Docs\"").is_err());
        assert_eq!(
            serde_json::to_string(&KbName::new("a").unwrap()).unwrap(),
            "\"a\""
        );
    }
}
