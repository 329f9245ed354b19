//! Request, response and domain types shared by every zhiku crate.
//!
//! The HTTP API, the CLI and the stores all speak these types, so the wire format is
//! defined once. Optional fields are skipped when absent so that responses stay small and
//! clients written against an older shape keep working as fields are added.

use serde::{Deserialize, Serialize};

/// One chunk of a document as it is stored in both indexes and returned by search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Stable id of the chunk: `<document_id>#<index>`.
    pub chunk_id: String,
    /// Id of the document the chunk came from.
    pub document_id: String,
    /// File name the document was uploaded as.
    pub document_name: String,
    /// Position of the chunk in its document, from 0.
    pub chunk_index: u32,
    /// The chunk text exactly as stored.
    pub text: String,
    /// Heading path of the section the chunk belongs to, joined with " > ".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// 1-based PDF page the chunk starts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl ChunkRecord {
    /// Builds the chunk id from its parts; the one place that defines the id format.
    pub fn make_id(document_id: &str, chunk_index: u32) -> String {
        format!("{document_id}#{chunk_index}")
    }
}

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Dense and keyword results fused with reciprocal rank fusion.
    #[default]
    Hybrid,
    /// Vector similarity only.
    Dense,
    /// BM25 keyword match only.
    Keyword,
}

/// `POST /v1/kbs/{kb}/search` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query text, in any language.
    pub query: String,
    /// How many hits to return (default from config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Retrieval mode (default hybrid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SearchMode>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Stable chunk id.
    pub chunk_id: String,
    /// Document the chunk belongs to.
    pub document_id: String,
    /// File name of that document.
    pub document_name: String,
    /// Chunk text.
    pub text: String,
    /// Relevance score; for hybrid search the RRF score, higher is better.
    pub score: f32,
    /// Heading path of the chunk's section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// 1-based PDF page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl SearchHit {
    /// A hit for a stored chunk with the given score.
    pub fn from_record(record: ChunkRecord, score: f32) -> Self {
        Self {
            chunk_id: record.chunk_id,
            document_id: record.document_id,
            document_name: record.document_name,
            text: record.text,
            score,
            heading: record.heading,
            page: record.page,
        }
    }
}

/// `POST /v1/kbs/{kb}/search` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Hits, best first.
    pub hits: Vec<SearchHit>,
}

/// `POST /v1/kbs/{kb}/ask` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question, in any language.
    pub question: String,
    /// How many chunks to retrieve as grounding context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Sampling temperature; 0 is greedy and deterministic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// A numbered source the answer may cite as `[index]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The number used in the answer, from 1.
    pub index: usize,
    /// Chunk the source text comes from.
    pub chunk_id: String,
    /// Document of that chunk.
    pub document_id: String,
    /// File name of that document.
    pub document_name: String,
    /// The chunk text given to the model.
    pub text: String,
    /// Heading path of the chunk's section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// 1-based PDF page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the templated prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// `POST /v1/kbs/{kb}/ask` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AskResponse {
    /// The generated answer, citing sources as `[n]`.
    pub answer: String,
    /// The sources given to the model, numbered as cited.
    pub citations: Vec<Citation>,
    /// False when retrieval found nothing to ground an answer on and the model was not called.
    pub grounded: bool,
    /// Why generation stopped: `stop` or `length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Usage,
}

/// A document as stored in a knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentInfo {
    /// Stable document id.
    pub id: String,
    /// File name it was uploaded as.
    pub name: String,
    /// Number of chunks indexed.
    pub chunks: usize,
}

/// `POST /v1/kbs/{kb}/documents` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadResponse {
    /// Documents indexed by this upload, searchable when the response is sent.
    pub documents: Vec<DocumentInfo>,
    /// Files of the same upload that failed; each failed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FileError>,
}

/// Why one file of an upload was not indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileError {
    /// File name as uploaded.
    pub name: String,
    /// Machine-readable error code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Summary of one knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// `GET /v1/kbs` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KbList {
    /// All knowledge bases, by name.
    pub kbs: Vec<KbInfo>,
}

/// Body of every error response: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `unsupported_type`.
    pub code: String,
    /// Human-readable explanation naming the problem.
    pub message: String,
    /// Per-file failures of an upload in which every file failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileError>,
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

    #[test]
    fn search_request_rejects_unknown_fields() {
        assert!(serde_json::from_str::<SearchRequest>(r#"{"query":"x","topk":3}"#).is_err());
        let r: SearchRequest = serde_json::from_str(r#"{"query":"x","mode":"keyword"}"#).unwrap();
        assert_eq!(r.mode, Some(SearchMode::Keyword));
    }
}
