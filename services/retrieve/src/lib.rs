//! Question → ranked chunks.
//!
//! Dense retrieval finds paraphrases, BM25 finds exact terms (commands, codes, names); the
//! two rankings are fused with reciprocal rank fusion, which needs no score calibration
//! between the two very different score scales.

use std::collections::HashMap;

use zhiku_embed::{EmbedError, Embedder};
use zhiku_index::{IndexError, KnowledgeBase};
use zhiku_schemas::{ChunkRecord, SearchHit, SearchMode};

/// Errors of retrieval.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The query was empty or blank.
    #[error("query is empty")]
    EmptyQuery,
    /// Embedding the query failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A store failed, or the KB was built with another model.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// How a search runs.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions {
    /// Hits to return.
    pub top_k: usize,
    /// Which retrievers to use.
    pub mode: SearchMode,
    /// Candidates each retriever contributes before fusion.
    pub candidates: usize,
    /// RRF constant: larger values flatten the advantage of top ranks.
    pub rrf_k: f32,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            top_k: 5,
            mode: SearchMode::Hybrid,
            candidates: 50,
            rrf_k: 60.0,
        }
    }
}

/// Fuses ranked lists: each item scores Σ 1 / (k + rank) over the lists it appears in
/// (rank from 1). Ties keep the order of first appearance, so results are deterministic.
pub fn reciprocal_rank_fusion(
    lists: &[Vec<(ChunkRecord, f32)>],
    k: f32,
) -> Vec<(ChunkRecord, f32)> {
    let mut fused: Vec<(ChunkRecord, f32)> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for list in lists {
        for (rank, (record, _)) in list.iter().enumerate() {
            let contribution = 1.0 / (k + rank as f32 + 1.0);
            match position.get(&record.chunk_id) {
                Some(&i) => fused[i].1 += contribution,
                None => {
                    position.insert(record.chunk_id.clone(), fused.len());
                    fused.push((record.clone(), contribution));
                }
            }
        }
    }
    // Stable sort: equal scores stay in first-appearance order.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused
}

/// Searches one KB.
pub fn search(
    kb: &KnowledgeBase,
    embedder: &dyn Embedder,
    query: &str,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>, RetrieveError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(RetrieveError::EmptyQuery);
    }
    let candidates = options.candidates.max(options.top_k);
    // The query is embedded before the view is taken: the view holds off document swaps,
    // so it is kept only for the two index look-ups.
    let vector = match options.mode {
        SearchMode::Keyword => None,
        SearchMode::Dense | SearchMode::Hybrid => {
            kb.ensure_model(embedder.name(), embedder.dimension())?;
            Some(embedder.embed_query(query)?)
        }
    };
    let view = kb.view();
    let ranked = match (options.mode, vector) {
        (SearchMode::Hybrid, Some(vector)) => {
            let lists = [
                view.dense_search(&vector, candidates)?,
                view.keyword_search(query, candidates)?,
            ];
            reciprocal_rank_fusion(&lists, options.rrf_k)
        }
        (_, Some(vector)) => view.dense_search(&vector, candidates)?,
        (_, None) => view.keyword_search(query, candidates)?,
    };
    drop(view);
    Ok(ranked
        .into_iter()
        .take(options.top_k)
        .map(|(record, score)| SearchHit::from_record(record, score))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ChunkRecord {
        ChunkRecord {
            chunk_id: id.into(),
            document_id: "d".into(),
            document_name: "d.txt".into(),
            chunk_index: 0,
            text: id.into(),
            heading: None,
            page: None,
            version: 0,
        }
    }

    #[test]
    fn rrf_rewards_agreement() {
        let dense = vec![(rec("a"), 0.9), (rec("b"), 0.8), (rec("c"), 0.7)];
        let keyword = vec![(rec("c"), 12.0), (rec("b"), 3.0)];
        let fused = reciprocal_rank_fusion(&[dense, keyword], 60.0);
        let ids: Vec<&str> = fused.iter().map(|(r, _)| r.chunk_id.as_str()).collect();
        // b and c appear in both lists; b ranks 2+2, c ranks 3+1 → c has 1/63+1/61 > b's 2/62.
        assert_eq!(ids, vec!["c", "b", "a"]);
        assert!((fused[2].1 - 1.0 / 61.0).abs() < 1e-6);
    }

    #[test]
    fn rrf_of_nothing_is_nothing() {
        assert!(reciprocal_rank_fusion(&[vec![], vec![]], 60.0).is_empty());
    }
}
