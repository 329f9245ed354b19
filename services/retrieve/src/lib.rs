//! Question → ranked chunks.
//!
//! Dense retrieval finds paraphrases, BM25 finds exact terms (commands, codes, names); the
//! two rankings are fused with reciprocal rank fusion, which needs no score calibration
//! between the two very different score scales, or by a weighted sum of min-max
//! normalised scores when a caller wants to lean on one side. Every hit keeps the raw
//! score of each side that found it.

use std::collections::HashMap;

mod evidence;
pub use evidence::{
    Evidence, adds_nothing, attribute, best_sentence, content_terms, evidence, extract,
    sentence_spans,
};

use zhiku_embed::{EmbedError, Embedder};
use zhiku_index::{IndexError, KnowledgeBase};
use zhiku_schemas::{ChunkRecord, Fusion, Neighbor, SearchFilter, SearchHit, SearchMode};

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

/// A query, segmented once: its limits are checked on these terms, and the keyword index
/// scores the same terms, so a long Chinese query goes through jieba one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    text: String,
    terms: Vec<String>,
}

impl Query {
    /// The query `text`, trimmed, with its distinct index terms in order of appearance
    /// (analysed as the indexed text was).
    pub fn new(text: &str) -> Self {
        let text = text.trim().to_string();
        let mut seen = std::collections::HashSet::new();
        let terms = zhiku_index::analyzer::terms(&text)
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect();
        Self { text, terms }
    }

    /// The text, for the embedder and for display.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The distinct index terms, for BM25.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }
}

/// How a search runs.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Hits to return.
    pub top_k: usize,
    /// Which retrievers to use.
    pub mode: SearchMode,
    /// Candidates each retriever contributes before fusion.
    pub candidates: usize,
    /// RRF constant: larger values flatten the advantage of top ranks.
    pub rrf_k: f32,
    /// How hybrid mode fuses the two rankings.
    pub fusion: Fusion,
    /// Weight of the dense side in weighted fusion, 0 to 1.
    pub alpha: f32,
    /// Hits with a lower score (in the mode's scale) are dropped.
    pub min_score: Option<f32>,
    /// Neighbouring chunks to return on each side of every hit.
    pub expand: u32,
    /// Only chunks of matching documents are candidates, on both sides. Given to each
    /// index rather than applied to the fused list, so filtered searches still fill
    /// `top_k`; neighbours need no check as every filter field is per document.
    pub filter: Option<SearchFilter>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            top_k: 5,
            mode: SearchMode::Hybrid,
            candidates: 50,
            rrf_k: 60.0,
            fusion: Fusion::Rrf,
            alpha: 0.5,
            min_score: None,
            expand: 0,
            filter: None,
        }
    }
}

/// A candidate with its fused score and the raw score of each side that found it.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The chunk.
    pub record: ChunkRecord,
    /// Fused (or single-side) score.
    pub score: f32,
    /// Cosine similarity from the dense side.
    pub dense: Option<f32>,
    /// BM25 from the keyword side.
    pub keyword: Option<f32>,
}

impl Scored {
    fn into_hit(self) -> SearchHit {
        let mut hit = SearchHit::from_record(self.record, self.score);
        hit.dense_score = self.dense;
        hit.keyword_score = self.keyword;
        hit
    }
}

/// Merges the dense and keyword candidates into one list keyed by chunk, first
/// appearance order, with each side's raw score and rank (from 1).
fn merge(
    dense: Vec<(ChunkRecord, f32)>,
    keyword: Vec<(ChunkRecord, f32)>,
) -> Vec<(Scored, Option<usize>, Option<usize>)> {
    let mut merged: Vec<(Scored, Option<usize>, Option<usize>)> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for (side, list) in [dense, keyword].into_iter().enumerate() {
        for (rank, (record, score)) in list.into_iter().enumerate() {
            let i = *position.entry(record.chunk_id.clone()).or_insert_with(|| {
                merged.push((
                    Scored {
                        record,
                        score: 0.0,
                        dense: None,
                        keyword: None,
                    },
                    None,
                    None,
                ));
                merged.len() - 1
            });
            let entry = &mut merged[i];
            if side == 0 {
                entry.0.dense = Some(score);
                entry.1 = Some(rank + 1);
            } else {
                entry.0.keyword = Some(score);
                entry.2 = Some(rank + 1);
            }
        }
    }
    merged
}

/// Min-max normalisation over the candidates that have a score; a lone or constant list
/// maps to 1, so a single match is not zeroed out.
#[derive(Clone, Copy)]
struct MinMax {
    lo: f32,
    hi: f32,
}

impl MinMax {
    fn over(scores: impl Iterator<Item = f32>) -> Self {
        scores.fold(
            MinMax {
                lo: f32::INFINITY,
                hi: f32::NEG_INFINITY,
            },
            |m, s| MinMax {
                lo: m.lo.min(s),
                hi: m.hi.max(s),
            },
        )
    }

    fn apply(self, s: f32) -> f32 {
        if self.hi > self.lo {
            (s - self.lo) / (self.hi - self.lo)
        } else {
            1.0
        }
    }
}

/// Fuses the two candidate lists into one ranking, best first (stable for ties).
pub fn fuse(
    dense: Vec<(ChunkRecord, f32)>,
    keyword: Vec<(ChunkRecord, f32)>,
    fusion: Fusion,
    rrf_k: f32,
    alpha: f32,
) -> Vec<Scored> {
    let mut merged = merge(dense, keyword);
    match fusion {
        Fusion::Rrf => {
            for (scored, dense_rank, keyword_rank) in &mut merged {
                scored.score = [*dense_rank, *keyword_rank]
                    .into_iter()
                    .flatten()
                    .map(|rank| 1.0 / (rrf_k + rank as f32))
                    .sum();
            }
        }
        Fusion::Weighted => {
            let dense_norm = MinMax::over(merged.iter().filter_map(|m| m.0.dense));
            let keyword_norm = MinMax::over(merged.iter().filter_map(|m| m.0.keyword));
            for (scored, _, _) in &mut merged {
                scored.score = alpha * scored.dense.map_or(0.0, |s| dense_norm.apply(s))
                    + (1.0 - alpha) * scored.keyword.map_or(0.0, |s| keyword_norm.apply(s));
            }
        }
    }
    let mut fused: Vec<Scored> = merged.into_iter().map(|m| m.0).collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused
}

/// Searches one KB.
pub fn search(
    kb: &KnowledgeBase,
    embedder: &dyn Embedder,
    query: &Query,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>, RetrieveError> {
    let terms = query.terms();
    let query = query.text();
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
    let filter = options.filter.as_ref();
    let view = kb.view();
    let fused: Vec<Scored> = match (options.mode, vector) {
        (SearchMode::Hybrid, Some(vector)) => {
            let (dense, keyword) = view.hybrid_search(&vector, terms, candidates, filter)?;
            fuse(dense, keyword, options.fusion, options.rrf_k, options.alpha)
        }
        // A single side keeps its own scale: cosine or BM25.
        (_, Some(vector)) => fuse(
            view.dense_search(&vector, candidates, filter)?,
            Vec::new(),
            Fusion::Rrf,
            0.0,
            0.0,
        )
        .into_iter()
        .map(|s| Scored {
            score: s.dense.unwrap_or_default(),
            ..s
        })
        .collect(),
        (_, None) => fuse(
            Vec::new(),
            view.keyword_search(terms, candidates, filter)?,
            Fusion::Rrf,
            0.0,
            0.0,
        )
        .into_iter()
        .map(|s| Scored {
            score: s.keyword.unwrap_or_default(),
            ..s
        })
        .collect(),
    };
    let mut hits = Vec::with_capacity(options.top_k);
    for scored in fused
        .into_iter()
        .filter(|s| options.min_score.is_none_or(|min| s.score >= min))
        .take(options.top_k)
    {
        // Still inside the view: neighbours come from the same version as the hit.
        let neighbors = view.neighbours(&scored.record, options.expand)?;
        let mut hit = scored.into_hit();
        hit.neighbors = neighbors
            .into_iter()
            .map(|c| Neighbor {
                chunk_id: c.chunk_id,
                chunk_index: c.chunk_index,
                text: c.text,
                page: c.page,
            })
            .collect();
        hits.push(hit);
    }
    Ok(hits)
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
            ocr: false,
            ocr_confidence: None,
            version: 0,
            tags: Vec::new(),
            path: String::new(),
            mime: String::new(),
        }
    }

    #[test]
    fn rrf_rewards_agreement_and_keeps_side_scores() {
        let dense = vec![(rec("a"), 0.9), (rec("b"), 0.8), (rec("c"), 0.7)];
        let keyword = vec![(rec("c"), 12.0), (rec("b"), 3.0)];
        let fused = fuse(dense, keyword, Fusion::Rrf, 60.0, 0.5);
        let ids: Vec<&str> = fused.iter().map(|s| s.record.chunk_id.as_str()).collect();
        // b and c appear in both lists; b ranks 2+2, c ranks 3+1 → c has 1/63+1/61 > b's 2/62.
        assert_eq!(ids, vec!["c", "b", "a"]);
        assert!((fused[2].score - 1.0 / 61.0).abs() < 1e-6);
        assert_eq!((fused[0].dense, fused[0].keyword), (Some(0.7), Some(12.0)));
        assert_eq!((fused[2].dense, fused[2].keyword), (Some(0.9), None));
    }

    #[test]
    fn weighted_fusion_follows_alpha() {
        let dense = || vec![(rec("a"), 0.9), (rec("b"), 0.5)];
        let keyword = || vec![(rec("b"), 10.0), (rec("c"), 2.0)];
        let ids = |alpha| {
            fuse(dense(), keyword(), Fusion::Weighted, 60.0, alpha)
                .into_iter()
                .map(|s| s.record.chunk_id)
                .collect::<Vec<_>>()
        };
        // All dense: a (1.0) > b (0.0) = c (no dense score) in first-appearance order.
        assert_eq!(ids(1.0), ["a", "b", "c"]);
        // All keyword: b (1.0) first, then a and c at 0.
        assert_eq!(ids(0.0)[0], "b");
        // Half and half: a and b tie at 0.5 (first appearance first), c trails at 0.
        let half = fuse(dense(), keyword(), Fusion::Weighted, 60.0, 0.5);
        let scores: Vec<f32> = half.iter().map(|s| s.score).collect();
        assert_eq!(scores, [0.5, 0.5, 0.0]);
        assert_eq!(half[2].record.chunk_id, "c");
    }

    #[test]
    fn fusing_nothing_is_nothing() {
        assert!(fuse(vec![], vec![], Fusion::Rrf, 60.0, 0.5).is_empty());
        assert!(fuse(vec![], vec![], Fusion::Weighted, 60.0, 0.5).is_empty());
    }
}
