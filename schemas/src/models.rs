//! Models: what is loaded, and tokenization.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One loaded model (`GET /v1/models`): what LLM primers call its size, quantization and
/// context, as this service runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// OpenAI: the name to put in `model` (the LLM's or embedder's name, or `kb:<name>`).
    pub id: String,
    /// OpenAI: always `model`.
    pub object: String,
    /// OpenAI: Unix seconds (the model file's modification time; a KB's creation).
    pub created: u64,
    /// OpenAI: always `zhiku`.
    pub owned_by: String,
    /// `llm` (answers), `embedder` (vectors) or `knowledge_base` (chat completions
    /// answered from a KB by the LLM).
    pub role: String,
    /// Name used in logs and recorded in knowledge bases.
    pub name: String,
    /// `llama.cpp`, `onnxruntime`, or `zhiku` for a knowledge base.
    pub engine: String,
    /// What a knowledge base entry is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The model file (empty for a knowledge base).
    pub path: String,
    /// Its size in bytes.
    pub file_size: u64,
    /// Parameter count, where the engine reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<u64>,
    /// The same, rounded for people: `135M`, `1.5B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_label: Option<String>,
    /// Weight format, e.g. `Q4_1`, where the file declares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Context length the model was trained with (LLM) or tokens per window (embedder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    /// Context window the service runs the LLM with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Vector dimension (embedder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<usize>,
    /// Chat template applied (LLM): `model` (the file's own) or the fallback's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Generation slots and their occupancy (LLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotInfo>,
}

/// The LLM's generation slots: how many answers run at once, how many may wait, and what
/// happened so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct SlotInfo {
    /// Answers generated at once (`llm.parallel`).
    pub parallel: usize,
    /// Requests that may wait for a slot (`llm.queue`); beyond it → 503.
    pub queue: usize,
    /// Slots in use now.
    pub busy: usize,
    /// Requests waiting now.
    pub queued: usize,
    /// Slots granted since start.
    pub admitted: u64,
    /// Requests refused with 503 since start.
    pub rejected: u64,
    /// Generations stopped because the client went away, since start.
    pub cancelled: u64,
}

impl ModelInfo {
    /// `135M`, `1.5B`: a parameter count as model cards write it.
    pub fn label(parameters: u64) -> String {
        let p = parameters as f64;
        if p >= 1e9 {
            format!("{:.1}B", p / 1e9).replace(".0B", "B")
        } else if p >= 1e6 {
            format!("{:.0}M", p / 1e6)
        } else {
            format!("{:.0}K", p / 1e3)
        }
    }
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// OpenAI: always `list`.
    pub object: String,
    /// The LLM, the embedding model, and every knowledge base as a `kb:<name>` model.
    pub data: Vec<ModelInfo>,
}

/// `POST /v1/tokenize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    /// Text to tokenize.
    pub text: String,
}

/// One LLM token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    /// Id in the LLM's vocabulary.
    pub id: i32,
    /// Its text (a replacement character where a token holds part of a character).
    pub piece: String,
}

/// How the two sides of zhiku see a text: the LLM's tokens (what counts against the
/// context window) and the keyword index's words (jieba segmentation for Chinese,
/// stemmed English, traditional folded to simplified).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenizeResponse {
    /// Number of LLM tokens.
    pub count: usize,
    /// The LLM tokens in order.
    pub tokens: Vec<Token>,
    /// The keyword analyzer's terms in order.
    pub words: Vec<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameter_counts_read_like_model_cards() {
        assert_eq!(super::ModelInfo::label(134_515_008), "135M");
        assert_eq!(super::ModelInfo::label(1_543_714_304), "1.5B");
        assert_eq!(super::ModelInfo::label(7_000_000_000), "7B");
        assert_eq!(super::ModelInfo::label(117_000), "117K");
    }
}
