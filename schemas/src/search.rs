//! Search: requests, filters, fusion and hits.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ChunkRecord;

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    /// How hybrid mode combines the two rankings (default from config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// RRF constant for `fusion: rrf` (default from config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrf_k: Option<f32>,
    /// Weight of the dense side for `fusion: weighted`, 0 to 1 (default from config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    /// Hits scoring below this are dropped. The scale is the mode's: cosine similarity
    /// (dense), BM25 (keyword), RRF or weighted score (hybrid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Return up to this many neighbouring chunks on each side of every hit (0 to 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expand: Option<u32>,
    /// Only chunks of documents matching this filter are searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<SearchFilter>,
    /// Also search the query translated by the LLM into the knowledge base's other
    /// language (Chinese and English), and fuse the two rankings, so that an answer
    /// written only in the other language is found. Applies when the KB holds documents
    /// in a language the query is not in. Costs a short generation, which waits for a
    /// generation slot like an answer (503 when the queue is full). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translate: Option<bool>,
}

/// Restricts a search to some documents by their metadata.
///
/// A document matches a list if it matches any entry of it; it matches the filter if it
/// matches every field given. Both indexes apply the filter inside their search, so a
/// filtered search still returns `top_k` hits when that many matching chunks exist. An
/// absent field does not restrict; an empty list is rejected rather than read as "no
/// restriction", which would silently widen a search meant to be scoped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    /// Document ids (at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_ids: Option<Vec<String>>,
    /// Tags, compared exactly (case-sensitive) after trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Whole leading components of the document's `path`: `hr` and `hr/` match
    /// `hr/policy.pdf` and `hr/2024/a.md` but not `hrx/a.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// MIME types as shown in a document's `format`, e.g. `text/markdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_types: Option<Vec<String>>,
}

/// The ancestor prefixes of a path, shortest first and ending with the whole path:
/// `hr/2024/a.md` → `hr`, `hr/2024`, `hr/2024/a.md`.
///
/// Stores index these as keywords, so a prefix filter is one exact match on a normalised
/// prefix (the last element of this function applied to it) and matches whole components
/// only. Exact matching works the same in Tantivy and in any Qdrant deployment. Both `/`
/// and `\` separate components (clients on Windows send the latter); empty and `.`
/// components are dropped, so `./hr//a.md` and `/hr/a.md` mean `hr/a.md`.
pub fn path_prefixes(path: &str) -> Vec<String> {
    let mut prefixes: Vec<String> = Vec::new();
    for part in path
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
    {
        let prefix = match prefixes.last() {
            Some(parent) => format!("{parent}/{part}"),
            None => part.to_string(),
        };
        prefixes.push(prefix);
    }
    prefixes
}

impl SearchRequest {
    /// A request for `query` with every option at its default.
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            top_k: None,
            mode: None,
            fusion: None,
            rrf_k: None,
            alpha: None,
            min_score: None,
            expand: None,
            filter: None,
            translate: None,
        }
    }
}

/// How hybrid search fuses the dense and keyword rankings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: Σ 1/(rrf_k + rank); needs no score calibration.
    Rrf,
    /// `alpha · dense + (1 − alpha) · keyword`, each min-max normalised over its candidates.
    #[default]
    Weighted,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    /// Stable chunk id.
    pub chunk_id: String,
    /// Document the chunk belongs to.
    pub document_id: String,
    /// File name of that document.
    pub document_name: String,
    /// Chunk text.
    pub text: String,
    /// Relevance score in the mode's scale (see `min_score`); higher is better.
    pub score: f32,
    /// Cosine similarity to the query, when the dense side found this chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_score: Option<f32>,
    /// BM25 score, when the keyword side found this chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_score: Option<f32>,
    /// Position of the chunk in its document, from 0.
    #[serde(default)]
    pub chunk_index: u32,
    /// With `expand`: the chunks around this one in its document, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<Neighbor>,
    /// Heading path of the chunk's section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// 1-based page (PDF, or multi-page image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Whether the chunk's text came from OCR.
    #[serde(default)]
    pub ocr: bool,
    /// Mean OCR word confidence (0 to 100) of the chunk's page or image, for OCR text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr_confidence: Option<f32>,
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
            dense_score: None,
            keyword_score: None,
            chunk_index: record.chunk_index,
            neighbors: Vec::new(),
            heading: record.heading,
            page: record.page,
            ocr: record.ocr,
            ocr_confidence: record.ocr_confidence,
        }
    }
}

/// A chunk next to a hit, returned with `expand`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Neighbor {
    /// Chunk id.
    pub chunk_id: String,
    /// Position in the document.
    pub chunk_index: u32,
    /// Chunk text.
    pub text: String,
    /// 1-based PDF page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// `POST /v1/kbs/{kb}/search` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Hits, best first.
    pub hits: Vec<SearchHit>,
    /// True when nothing qualified (no match, or everything under `min_score`): the KB has
    /// no relevant context for this query.
    #[serde(default)]
    pub no_relevant_context: bool,
    /// With `translate`: the translation of the query that was searched besides it;
    /// absent when none was (the KB is in the query's language only, or the translation
    /// failed its checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_query: Option<String>,
}

impl SearchResponse {
    /// A response for these hits.
    pub fn new(hits: Vec<SearchHit>) -> Self {
        Self {
            no_relevant_context: hits.is_empty(),
            hits,
            translated_query: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes_are_whole_components() {
        assert_eq!(
            path_prefixes("hr/2024/a.md"),
            ["hr", "hr/2024", "hr/2024/a.md"]
        );
        assert_eq!(path_prefixes("./hr//a.md"), path_prefixes("/hr/a.md"));
        assert_eq!(path_prefixes("hr\\a.md"), ["hr", "hr/a.md"]);
        assert_eq!(path_prefixes("hr/").last().unwrap(), "hr");
        assert!(path_prefixes("/./").is_empty());
    }

    #[test]
    fn filter_rejects_unknown_fields() {
        let parse = |json| serde_json::from_str::<SearchRequest>(json);
        assert!(parse(r#"{"query":"x","filter":{"tag":["a"]}}"#).is_err());
        let r = parse(r#"{"query":"x","filter":{"tags":["a"],"path_prefix":"hr"}}"#).unwrap();
        let filter = r.filter.unwrap();
        assert_eq!(filter.tags, Some(vec!["a".to_string()]));
        assert_eq!(filter.document_ids, None);
    }

    #[test]
    fn search_request_rejects_unknown_fields() {
        assert!(serde_json::from_str::<SearchRequest>(r#"{"query":"x","topk":3}"#).is_err());
        let r: SearchRequest = serde_json::from_str(r#"{"query":"x","mode":"keyword"}"#).unwrap();
        assert_eq!(r.mode, Some(SearchMode::Keyword));
    }
}
