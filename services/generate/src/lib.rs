//! Answer generation: the [`Generator`] seam between the service and an LLM backend, its
//! llama.cpp implementation ([`LlamaGenerator`]), one over any OpenAI-compatible endpoint
//! ([`OpenAiGenerator`]) and grounded RAG prompting ([`prompt`]).
//!
//! Everything here is blocking and CPU-bound; async callers should run it on a blocking
//! thread.

#![warn(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

mod citations;
mod llama;
pub mod prompt;
pub mod reference;
mod remote;
mod slots;
mod stop;
mod utf8;

pub use citations::resolve_citations;
pub use llama::{LlamaConfig, LlamaGenerator};
pub use prompt::{
    GroundedPrompt, HistoryTurn, PromptProfile, Source, build_conversation_prompt,
    build_grounded_prompt, build_styled_prompt, grounded_messages, is_mostly_cjk, not_found_answer,
};
pub use remote::{ApiKey, JSON_SCHEMA_MARKER, OpenAiConfig, OpenAiGenerator, estimate_tokens};
pub use slots::{Slot, SlotError, SlotInfo, Slots};

/// The errors of this crate.
#[derive(thiserror::Error, Debug)]
pub enum GenerateError {
    /// The model file does not exist.
    #[error("model file {} not found: run deploy/setup.sh to fetch the models", path.display())]
    ModelMissing {
        /// Where the model was expected.
        path: PathBuf,
    },
    /// The model file exists but is not a model llama.cpp can load.
    #[error("model file {} is not a usable GGUF model: {detail} (run deploy/setup.sh to restore the pinned model, or fix llm.model)", path.display())]
    ModelInvalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The prompt leaves no room in the context window.
    #[error("prompt needs {tokens} tokens but the context window holds {window}")]
    PromptTooLong {
        /// Tokens needed: the prompt, plus the answer budget where one was reserved.
        tokens: usize,
        /// The context window in tokens.
        window: usize,
    },
    /// A JSON schema for structured output that llama.cpp cannot turn into a grammar.
    #[error("the JSON schema cannot be used to constrain the answer: {0}")]
    InvalidSchema(String),
    /// llama.cpp failed (context creation, decoding, templating), or a backend is
    /// misconfigured.
    #[error("LLM backend error: {0}")]
    Backend(String),
    /// The remote LLM endpoint failed: unreachable, a non-2xx answer, a broken or malformed
    /// stream. Names the endpoint's host only, never the URL's path or the API key.
    #[error("the LLM endpoint {host} {detail}")]
    Upstream {
        /// `host[:port]` of the endpoint.
        host: String,
        /// What went wrong, e.g. `answered 500 Internal Server Error: ...`.
        detail: String,
    },
    /// The remote LLM endpoint sent nothing for `llm.timeout_secs`.
    #[error("the LLM endpoint {host} sent nothing for {secs} s (llm.timeout_secs)")]
    UpstreamTimeout {
        /// `host[:port]` of the endpoint.
        host: String,
        /// The timeout that fired.
        secs: u64,
    },
    /// The backend cannot do this (e.g. show its tokens: a remote model's tokenizer is
    /// out of reach).
    #[error("{0}")]
    NotSupported(String),
}

/// Who speaks a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role name chat templates expect.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// A chat turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system turn.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Per-request sampling. `temperature <= 0` means greedy (deterministic).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `<= 0` (or NaN) selects greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling mass; values outside `(0, 1)` disable it.
    pub top_p: f32,
    /// Candidates kept before nucleus sampling; `<= 0` disables it.
    pub top_k: i32,
    /// Seed of the random sampler, so sampled answers are reproducible.
    pub seed: u32,
    /// Upper bound on generated tokens; lowered further to what fits the context window.
    pub max_tokens: u32,
    /// Generation ends where any of these strings would appear; the string itself is not
    /// part of the answer.
    pub stop: Vec<String>,
    /// A GBNF grammar every answer must match (see [`Generator::schema_grammar`]), applied before
    /// the other samplers so the answer is always a prefix of a valid sentence of it. For
    /// [`OpenAiGenerator`] it is the schema behind [`JSON_SCHEMA_MARKER`] instead, sent as
    /// `response_format`.
    pub grammar: Option<String>,
    /// Never emit a character from U+3000 to U+FFFF (CJK ideographs and punctuation, kana,
    /// hangul, full-width forms): for an answer that must stay in English although its
    /// sources are Chinese. Small models asked in English about Chinese text drift into
    /// Chinese; a logit bias makes that impossible instead of unlikely. Local models only:
    /// an OpenAI-compatible endpoint's token ids are unknown, so it ignores this.
    pub ban_cjk: bool,
    /// Reuse the start of the previous prompt a local model read, as llama.cpp's server
    /// does with `cache_prompt`: grounded prompts begin with the same rules and worked
    /// example, so only what differs (sources, question) is read again. Off for benchmarks,
    /// which measure reading a whole prompt. The answer is the same either way.
    pub cache_prompt: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.2,
            top_p: 0.95,
            top_k: 40,
            seed: 42,
            max_tokens: 256,
            stop: Vec::new(),
            grammar: None,
            ban_cjk: false,
            cache_prompt: true,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn, or the caller stopped it.
    Stop,
    /// The token budget (or the context window) ran out.
    Length,
}

impl FinishReason {
    /// The OpenAI-style name: `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The result of one [`Generator::generate`] call. Two generations are equal when they
/// produced the same output: `timings` vary from run to run and do not count.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Everything generated, exactly the concatenation of the streamed pieces.
    pub text: String,
    /// Tokens of the templated prompt.
    pub prompt_tokens: usize,
    /// Tokens generated, not counting the end-of-generation token.
    pub completion_tokens: usize,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Where the time went, for benchmarks and logs.
    pub timings: Timings,
}

impl PartialEq for Generation {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.text,
            self.prompt_tokens,
            self.completion_tokens,
            self.finish_reason,
        ) == (
            &other.text,
            other.prompt_tokens,
            other.completion_tokens,
            other.finish_reason,
        )
    }
}

impl Eq for Generation {}

/// Where the time of one [`Generator::generate`] call went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Before the prompt is read: templating, tokenizing, creating the model context.
    pub setup: Duration,
    /// Reading (decoding) the prompt.
    pub prompt: Duration,
    /// After the prompt: sampling, decoding the answer tokens, detokenizing, stop-sequence
    /// scanning and the `on_token` callback.
    pub generation: Duration,
    /// Answer tokens decoded during `generation`: one per completion token, less the last
    /// when the budget or a stop sequence ended the answer (that token is sampled but never
    /// fed back).
    pub decoded_tokens: usize,
    /// Prompt tokens not read again because a previous generation on the same llama.cpp
    /// context had read the same start ([`SamplingParams::cache_prompt`]).
    pub cached_tokens: usize,
}

/// What a loaded LLM is, for `GET /v1/models`. A remote model is known by little more
/// than its name and the context window it is budgeted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmInfo {
    /// What runs it: `llama.cpp` (in-process) or `openai` (an OpenAI-compatible endpoint).
    pub engine: String,
    /// The endpoint's base URL, for a remote model.
    pub endpoint: Option<String>,
    /// The model file; empty for a remote model.
    pub path: std::path::PathBuf,
    /// Size of the file in bytes; 0 for a remote model.
    pub file_size: u64,
    /// Parameter count, when known.
    pub parameters: Option<u64>,
    /// Quantization by llama.cpp's name (e.g. `Q4_1`), if the file declares it.
    pub quantization: Option<String>,
    /// The context length the model was trained with, when known.
    pub trained_context: Option<u32>,
    /// The context window this service runs it with.
    pub context_window: u32,
    /// Which chat template is applied: `"model"` (the one in the file), the fallback's
    /// name from the config, or `"upstream"` (the remote server applies its own).
    pub chat_template: String,
}

/// One token of the LLM's vocabulary as it appears in a tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPiece {
    /// Token id.
    pub id: i32,
    /// Its text (lossy where a token is part of a multi-byte character).
    pub piece: String,
}

/// The seam between the service and any LLM backend.
pub trait Generator: Send + Sync {
    /// What the model is: size, quantization, context, template.
    fn info(&self) -> LlmInfo;

    /// The model's tokens of `text` (no special tokens added).
    ///
    /// # Errors
    /// [`GenerateError::NotSupported`] when the tokenizer is out of reach (remote models).
    fn tokenize(&self, text: &str) -> Result<Vec<TokenPiece>, GenerateError>;

    /// A short model name for logs and responses, e.g. the file stem of the GGUF.
    fn name(&self) -> &str;

    /// How grounded prompts are worded for this model.
    fn prompt_profile(&self) -> PromptProfile {
        PromptProfile::Standard
    }

    /// The context window (prompt plus answer) in tokens.
    fn context_window(&self) -> usize;

    /// Tokens of `text` as plain message content (no special tokens added or parsed).
    fn count_tokens(&self, text: &str) -> usize;

    /// The grammar that holds answers to a JSON schema, checked usable with this model
    /// (for a remote model, the schema itself behind [`JSON_SCHEMA_MARKER`]).
    ///
    /// # Errors
    /// [`GenerateError::InvalidSchema`] naming why the schema cannot be used.
    fn schema_grammar(&self, schema: &str) -> Result<String, GenerateError>;

    /// Tokens of the fully templated chat (so callers can budget the prompt exactly).
    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<usize, GenerateError>;

    /// Runs the chat; calls `on_token` with each decoded text piece (valid UTF-8 only;
    /// partial multi-byte pieces are buffered). `on_token` returning false stops generation
    /// early (client went away) with [`FinishReason::Stop`].
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, GenerateError>;
}
