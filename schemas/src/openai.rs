//! The OpenAI-compatible API: `POST /v1/chat/completions`, `POST /v1/embeddings` and the
//! OpenAI shape of `GET /v1/models`, so existing OpenAI clients work unchanged.
//!
//! Shapes follow the OpenAI API field for field. Our additions ride in extra fields
//! (`citations`, `context`, `search_query`, `input_type`, `top_k`) that OpenAI clients
//! ignore or pass through.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Citation, ResponseFormat};

/// A message's content: a string, or (as newer clients send it) a list of parts, of which
/// only text parts are understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContentPart {
    /// `text` (other kinds, such as images, are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl MessageContent {
    /// The text of the content; `Err` names a part that is not text.
    pub fn text(&self) -> Result<String, String> {
        match self {
            MessageContent::Text(text) => Ok(text.clone()),
            MessageContent::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(format!(
                                "content parts of type {kind:?} are not supported; send text"
                            ));
                        }
                    }
                }
                Ok(text)
            }
        }
    }
}

/// A message of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    pub role: String,
    /// What is said (`null` is accepted for an assistant message, as OpenAI allows).
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// A participant's name (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    /// One stop sequence.
    One(String),
    /// Up to four.
    Many(Vec<String>),
}

impl StopSequences {
    /// The sequences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions` body.
///
/// `model` is `kb:<name>` to answer from a knowledge base (retrieval, grounded prompt,
/// citations; the earlier messages are the conversation), or the LLM's name for the bare
/// model. Fields OpenAI defines that change nothing here (`user`, `metadata`, `store`,
/// penalties) are accepted and ignored; ones that would (`n` > 1, `tools`, `logprobs`) are
/// refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// `kb:<name>` or the LLM's name.
    pub model: String,
    /// The conversation, oldest first; the last message is the user's question.
    pub messages: Vec<ChatCompletionMessage>,
    /// Sampling temperature, 0 to 2; 0 is greedy and deterministic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`; wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Where the answer ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Random seed for sampled answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stream `chat.completion.chunk` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// `{"type": "json_schema", "json_schema": {"name", "schema"}}` or `json_object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Number of choices; only 1 is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Tool calling is not supported; a request with tools is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<serde_json::Value>,
    /// Log probabilities are not supported; `true` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// zhiku: chunks retrieved for `kb:` models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// zhiku: how `kb:` models answer: `generative`, `extractive` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_mode: Option<crate::AnswerMode>,
}

/// The assistant's message in a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer.
    pub content: String,
    /// Always null: the model never refuses by itself.
    pub refusal: Option<String>,
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: AssistantMessage,
    /// `stop` or `length`.
    pub finish_reason: String,
    /// Always null.
    pub logprobs: Option<serde_json::Value>,
}

/// Token counts, OpenAI style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct CompletionUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl CompletionUsage {
    /// Usage from prompt and completion token counts.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// `POST /v1/chat/completions` response (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-` and a unique id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model as requested.
    pub model: String,
    /// The one answer.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: CompletionUsage,
    /// Always null.
    pub system_fingerprint: Option<String>,
    /// zhiku, `kb:` models: the sources the answer cites, numbered as its `[n]` markers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    /// zhiku, `kb:` models: sources given to the model but not cited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<Citation>,
    /// zhiku, `kb:` models: what was searched for (a follow-up made standalone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    /// zhiku, `kb:` models: false when the knowledge base had nothing relevant and the
    /// model was not called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounded: Option<bool>,
}

/// The change a chunk brings to the answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ChunkDelta {
    /// `assistant`, in the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text to append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What is new.
    pub delta: ChunkDelta,
    /// Set in the last chunk with content: `stop` or `length`.
    pub finish_reason: Option<String>,
    /// Always null.
    pub logprobs: Option<serde_json::Value>,
}

/// A streamed piece of a completion (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same id in every chunk of a completion.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds, the same in every chunk.
    pub created: u64,
    /// The model as requested.
    pub model: String,
    /// One choice; empty in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Token counts: in the last chunk when `stream_options.include_usage`, else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
    /// Always null.
    pub system_fingerprint: Option<String>,
    /// zhiku, `kb:` models: in the first chunk every source given to the model (numbered),
    /// in the finishing chunk the ones the answer cites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Vec<Citation>>,
}

/// `input` of an embeddings request: one text or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts, embedded in order.
    Many(Vec<String>),
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Text(s) to embed (token arrays are not supported).
    pub input: EmbeddingInput,
    /// The embedding model's name, as `GET /v1/models` lists it.
    pub model: String,
    /// `float` (default) or `base64` (little-endian f32, as OpenAI clients request by
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Must equal the model's dimension if given (vectors are not truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// zhiku: `query` (default) or `passage`, for models such as e5 that embed the two
    /// differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_type: Option<String>,
    /// Accepted, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A vector as floats or as base64 of little-endian f32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// Floats.
    Float(Vec<f32>),
    /// Base64.
    Base64(String),
}

/// One embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input.
    pub index: usize,
    /// The vector (L2-normalised).
    pub embedding: EmbeddingVector,
}

/// Token counts of an embeddings request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens of the inputs, by the embedding model's tokenizer.
    pub prompt_tokens: usize,
    /// The same.
    pub total_tokens: usize,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One per input, in order.
    pub data: Vec<Embedding>,
    /// The model's name.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}
