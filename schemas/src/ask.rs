//! Ask: questions, prompt fields, answers with citations, and their streamed events.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How an answer is made from the retrieved sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    /// The LLM writes the answer from the sources, citing them.
    #[default]
    Generative,
    /// The sentences of the sources that best match the question, each with its `[n]`,
    /// with no model call: returned at once, and never says more than the sources do.
    Extractive,
    /// Generative, but an answer that cites no source, or is not in the question's
    /// language, is replaced by the extractive one.
    Auto,
}

impl AskRequest {
    /// A request for `question` with every option at its default.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            ..Self::default()
        }
    }
}

/// `POST /v1/kbs/{kb}/ask` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
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
    /// Nucleus sampling: sample from the smallest set of tokens whose probabilities add up
    /// to this, in (0, 1] (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sample from this many most likely tokens, 1 to 1000 (default 40).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k_tokens: Option<i32>,
    /// Random seed: the same seed, question and settings give the same answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// Up to 4 strings (1 to 64 characters) at which the answer ends; they are not part of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// How to answer: a persona and the CO-STAR fields, merged over the configured defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptFields>,
    /// Constrains the answer's form: `{"type": "json_schema", "schema": {...}}` makes it
    /// JSON valid against the schema (returned parsed as `json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Answer as Server-Sent Events (`sources`, `token`…, `done`) instead of one JSON
    /// body; also selected by `Accept: text/event-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// The conversation this question continues (the `conversation_id` of an earlier
    /// answer from the same knowledge base). Without it a new conversation is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// How the answer is made (default `llm.answer_mode`): `generative`, `extractive` or
    /// `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_mode: Option<AnswerMode>,
    /// Also retrieve with the search query translated into the knowledge base's other
    /// language (see `translate` of a search). Default from the configuration
    /// (`search.translate`: on unless it is `off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translate: Option<bool>,
}

/// The form an answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against a JSON Schema, given either directly as `schema` or, as in the
    /// OpenAI API, as `json_schema: {"name", "schema"}`.
    JsonSchema {
        /// The schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<serde_json::Value>,
        /// The OpenAI form: the schema with a name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_schema: Option<NamedJsonSchema>,
    },
}

impl ResponseFormat {
    /// The JSON Schema the answer must follow: `None` for free text, an object schema for
    /// `json_object`. Errors say what is missing.
    pub fn schema(&self) -> Result<Option<serde_json::Value>, String> {
        match self {
            ResponseFormat::Text => Ok(None),
            ResponseFormat::JsonObject => Ok(Some(serde_json::json!({ "type": "object" }))),
            ResponseFormat::JsonSchema {
                schema,
                json_schema,
            } => match (schema, json_schema) {
                (Some(schema), None) => Ok(Some(schema.clone())),
                (None, Some(named)) => Ok(Some(named.schema.clone())),
                (None, None) => Err("response_format of type json_schema needs a `schema`".into()),
                (Some(_), Some(_)) => {
                    Err("response_format gives both `schema` and `json_schema`; give one".into())
                }
            },
        }
    }
}

/// A named JSON Schema, the OpenAI `response_format.json_schema` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamedJsonSchema {
    /// A name for the schema (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the schema is for (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The schema.
    pub schema: serde_json::Value,
    /// Accepted for compatibility; output always follows the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A persona and the CO-STAR prompt fields (Context, Objective, Style, Tone, Audience,
/// Response format). They shape the system prompt after the grounding rules, which they
/// cannot change: answers still come only from the sources, with `[n]` citations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PromptFields {
    /// Who answers, e.g. "a customer-support lead".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// Background the model should know about the situation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// What the answer should achieve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// Writing style, e.g. "plain and brief".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Attitude, e.g. "friendly".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tone: Option<String>,
    /// Who reads the answer, e.g. "new employees".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Shape of the answer, e.g. "a numbered list".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
}

impl PromptFields {
    /// Field names and values in CO-STAR order, persona first.
    pub fn entries(&self) -> [(&'static str, Option<&str>); 7] {
        [
            ("persona", self.persona.as_deref()),
            ("context", self.context.as_deref()),
            ("objective", self.objective.as_deref()),
            ("style", self.style.as_deref()),
            ("tone", self.tone.as_deref()),
            ("audience", self.audience.as_deref()),
            ("response_format", self.response_format.as_deref()),
        ]
    }

    /// These fields, with any left unset taken from `defaults`.
    pub fn over(&self, defaults: &PromptFields) -> PromptFields {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        PromptFields {
            persona: pick(&self.persona, &defaults.persona),
            context: pick(&self.context, &defaults.context),
            objective: pick(&self.objective, &defaults.objective),
            style: pick(&self.style, &defaults.style),
            tone: pick(&self.tone, &defaults.tone),
            audience: pick(&self.audience, &defaults.audience),
            response_format: pick(&self.response_format, &defaults.response_format),
        }
    }
}

/// A numbered source the answer may cite as `[index]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The sentence of `text` that best matches the question, verbatim from the stored
    /// chunk: what to read to check the claim.
    pub quote: String,
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens in the templated prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Prompt tokens the model did not read again: the start this prompt shares with the
    /// previous one on the same model context (the rules and worked examples), kept from
    /// then. Zero for remote models.
    #[serde(default)]
    pub cached_prompt_tokens: usize,
}

/// Where the time of an answer went, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    /// Embedding the question and searching the KB.
    pub retrieval_ms: u64,
    /// Waiting for a free generation slot.
    pub queue_ms: u64,
    /// From the request to the first answer token (prompt building and processing
    /// included); absent when no token was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<u64>,
    /// Generating, from the slot being granted to the last token.
    pub generation_ms: u64,
    /// Answer tokens per second after the first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// The whole request.
    pub total_ms: u64,
}

/// The first event of a streamed answer: the numbered sources the model is given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AskSources {
    /// Every source given to the model, numbered as the answer will cite them.
    pub sources: Vec<Citation>,
    /// Retrieved chunks left out for lack of room.
    pub sources_dropped: usize,
    /// False when nothing relevant was found; no tokens follow, only `done`.
    pub grounded: bool,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AskToken {
    /// The text, to append to what came before.
    pub text: String,
}

/// `POST /v1/kbs/{kb}/ask` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AskResponse {
    /// The generated answer, citing sources as `[n]`.
    pub answer: String,
    /// The answer parsed, when `response_format` asked for JSON and the answer is complete
    /// JSON (it may be cut short by `max_tokens`, then this is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// The sources the answer cites, numbered as in its `[n]` markers. Every marker left
    /// in the answer has one; markers naming no source given to the model are removed.
    pub citations: Vec<Citation>,
    /// Sources given to the model that the answer does not cite.
    #[serde(default)]
    pub context: Vec<Citation>,
    /// False when retrieval found nothing to ground an answer on and the model was not called.
    pub grounded: bool,
    /// Why generation stopped: `stop` or `length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Usage,
    /// Retrieved chunks given to the model; the rest did not fit the context window
    /// beside the question and the answer budget (the lowest ranked are dropped first).
    #[serde(default)]
    pub sources_used: usize,
    /// Retrieved chunks left out for lack of room.
    #[serde(default)]
    pub sources_dropped: usize,
    /// Where the time went.
    #[serde(default)]
    pub timings: Timings,
    /// The conversation this answer belongs to; send it with the next question to ask a
    /// follow-up.
    #[serde(default)]
    pub conversation_id: String,
    /// What was searched for: the question itself, or a follow-up rewritten to stand
    /// alone from the conversation (see `rewrite`).
    #[serde(default)]
    pub search_query: String,
    /// How the question was rewritten into `search_query`; absent when it was searched
    /// as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<QueryRewrite>,
    /// The translation of `search_query` into the knowledge base's other language that
    /// was searched besides it; absent when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_query: Option<String>,
    /// Earlier turns of the conversation given to the model (the most recent ones; older
    /// turns are left out when the context window is full).
    #[serde(default)]
    pub history_turns_used: usize,
    /// How this answer was made: `generative`, or `extractive` (asked for, or chosen by
    /// `auto` when the generated answer failed its checks).
    #[serde(default)]
    pub answer_mode: AnswerMode,
    /// This answer's turn in its conversation (1 for the first), which feedback names
    /// (`POST /v1/conversations/{id}/feedback`); absent when the turn is not stored (chat
    /// completions carry their own history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
}

/// How a follow-up question was made into a standalone search query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueryRewrite {
    /// The LLM rewrote it, and the rewrite passed the checks.
    Model,
    /// The key terms of the previous search query were added to it.
    Keywords,
}

/// A source as a conversation keeps it: where it is and the sentence quoted from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceRef {
    /// Its `[n]` number in the answer, from 1.
    pub index: usize,
    /// Document of the chunk.
    pub document_id: String,
    /// File name of that document.
    pub document_name: String,
    /// The chunk.
    pub chunk_id: String,
    /// The chunk's sentence that best matches the search query, verbatim.
    pub quote: String,
}
