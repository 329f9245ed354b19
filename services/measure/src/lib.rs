//! zhiku's measurements, run through the same use cases as the service
//! ([`zhiku_app::services::Services`]): [`bench`] for speed and memory (ingestion, search
//! at a chosen scale, generation against llama.cpp's own loop) and [`eval`] for quality
//! (retrieval nDCG and recall, answer correctness, citations, language). The binary exposes
//! them as `zhiku bench` and `zhiku eval`.

#![warn(missing_docs)]

pub mod bench;
pub mod eval;

use zhiku_schemas::{AnswerMode, SearchMode};

/// Parses an answer mode as the API spells it (`generative`, `extractive`, `auto`).
pub fn parse_answer_mode(s: &str) -> Result<AnswerMode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("mode must be generative, extractive or auto, not {s:?}"))
}

/// Parses a search mode as the API spells it (`hybrid`, `dense`, `keyword`).
pub fn parse_mode(s: &str) -> Result<SearchMode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("mode must be hybrid, dense or keyword, not {s:?}"))
}
