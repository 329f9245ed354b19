//! Request, response and domain types shared by every zhiku crate.
//!
//! The HTTP API, the CLI and the stores all speak these types, so the wire format is
//! defined once. Optional fields are skipped when absent so that responses stay small and
//! clients written against an older shape keep working as fields are added.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    /// 1-based page the chunk starts on: of a PDF, or of an image (1 unless a multi-page
    /// TIFF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Whether the text was recognised by OCR (a scanned page, an image) rather than read
    /// from the file's own text.
    #[serde(default)]
    pub ocr: bool,
    /// For OCR text: the recognizer's mean word confidence, 0 to 100, over the page or
    /// image the chunk came from. Low values mean the text may be garbled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr_confidence: Option<f32>,
    /// Version of the document this chunk belongs to. Both indexes briefly hold two
    /// versions while a document is replaced; only the catalog's current one is visible.
    #[serde(default)]
    pub version: u64,
    /// The document's tags. Every chunk carries its document's metadata so that both
    /// indexes can filter inside their own search, and so that a chunk read back from
    /// either store is enough to rebuild the other.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The document's source path (see [`DocumentInfo::path`]).
    #[serde(default)]
    pub path: String,
    /// MIME type of the document's format (see [`DocumentInfo::format`]).
    #[serde(default)]
    pub mime: String,
}

impl ChunkRecord {
    /// Builds the chunk id from its parts; the one place that defines the id format.
    pub fn make_id(document_id: &str, chunk_index: u32) -> String {
        format!("{document_id}#{chunk_index}")
    }
}

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

impl AskRequest {
    /// A request for `question` with every option at its default.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            ..Self::default()
        }
    }
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

/// A user's judgement of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// A good answer: exported as fine-tuning data.
    Good,
    /// A bad answer.
    Bad,
}

/// Feedback on one turn, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Feedback {
    /// The rating.
    pub rating: Rating,
    /// What the user said about the answer, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it was given (RFC 3339); later feedback replaces earlier.
    pub at: String,
}

/// One question and its answer in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationTurn {
    /// Turn number, from 1 in the order asked.
    pub turn: u32,
    /// The question as asked.
    pub question: String,
    /// What was searched for (the question, or its standalone rewrite).
    pub search_query: String,
    /// How the question was rewritten, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<QueryRewrite>,
    /// The answer.
    pub answer: String,
    /// False when nothing was found to ground an answer on.
    pub grounded: bool,
    /// The sources the answer cites.
    pub citations: Vec<SourceRef>,
    /// Sources given to the model that the answer does not cite.
    #[serde(default)]
    pub context: Vec<SourceRef>,
    /// Earlier turns given to the model with this question.
    #[serde(default)]
    pub history_turns_used: usize,
    /// When it was asked (RFC 3339).
    pub created_at: String,
    /// The user's rating, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

/// `GET /v1/conversations/{id}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    /// Conversation id (`conv_` and 32 hex digits).
    pub id: String,
    /// The knowledge base it asks.
    pub kb: String,
    /// When the first question was asked (RFC 3339).
    pub created_at: String,
    /// When the last turn or feedback was recorded (RFC 3339).
    pub updated_at: String,
    /// Every turn, oldest first.
    pub turns: Vec<ConversationTurn>,
}

/// A conversation in a listing, without its turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: String,
    /// The knowledge base it asks.
    pub kb: String,
    /// When the first question was asked (RFC 3339).
    pub created_at: String,
    /// When the last turn or feedback was recorded (RFC 3339).
    pub updated_at: String,
    /// Number of turns.
    pub turns: u32,
}

/// `GET /v1/conversations?kb=` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    /// Conversations, most recently updated first.
    pub conversations: Vec<ConversationSummary>,
}

/// `POST /v1/conversations/{id}/feedback` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The turn rated: its `turn` number, from 1.
    pub turn: u32,
    /// `good` or `bad`.
    pub rating: Rating,
    /// Optional remark, up to 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A message of a chat fine-tuning record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatRecordMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// One line of `GET /v1/kbs/{kb}/export/qa.jsonl`: a turn rated good, as a chat
/// fine-tuning record (`messages`) with where its answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QaRecord {
    /// The chat as the model saw it (system prompt, the earlier turns it was given, the
    /// grounded question with its sources as their quoted sentences), then the answer.
    pub messages: Vec<ChatRecordMessage>,
    /// The sources the answer cites.
    pub citations: Vec<SourceRef>,
    /// The conversation the turn comes from.
    pub conversation_id: String,
    /// The turn's number in it.
    pub turn: u32,
}

/// A document as stored in a knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DocumentInfo {
    /// Stable document id: given by the client, the relative path in a batch job, or
    /// derived from KB and file name.
    pub id: String,
    /// File name (or relative path) it was uploaded as.
    pub name: String,
    /// Number of chunks indexed.
    pub chunks: usize,
    /// Lifecycle status; `indexed` once searchable.
    #[serde(default)]
    pub status: DocumentStatus,
    /// Why the status is what it is, for `empty` documents: e.g. OCR found no text on the
    /// image, or the PDF has no text layer and OCR is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pages (or embedded images) read by OCR, in document order, each with its confidence
    /// or the error that made it fail alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ocr_pages: Vec<OcrPage>,
    /// Detected format (MIME type): what `filter.mime_types` of a search matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Tags given at upload (`tags` form fields) or import (`tags` of the job), for
    /// filtering searches.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where the document came from, for `filter.path_prefix`: the file name as the client
    /// sent it for an upload (it may contain `/`, unlike `name`), the path relative to the
    /// imported directory for an import. Relative, so that importing a folder on the server
    /// and uploading it with `zhiku ingest --server` give the same paths.
    #[serde(default)]
    pub path: String,
    /// `sha256:<hex>` of the file content together with the pipeline settings that shaped
    /// its chunks; an upload with the same hash is `unchanged`.
    #[serde(default)]
    pub hash: String,
    /// File size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Stored version, increasing with every change of content.
    #[serde(default)]
    pub version: u64,
    /// When the document was first indexed (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// When its current version was indexed (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

/// Where a document is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// All chunks are in both indexes and searchable.
    #[default]
    Indexed,
    /// Startup reconciliation found chunks missing from an index (e.g. after a disk
    /// failure); upload the file again to repair it.
    Damaged,
    /// The file was read but yielded no text (an image or scan where OCR found none, or a
    /// scanned PDF while OCR is disabled); it has no chunks, and `reason` says why. Kept
    /// so that such files are visible rather than silently missing.
    Empty,
}

/// One page (or embedded image) of a document read by OCR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OcrPage {
    /// 1-based page of the PDF or multi-page image; absent for images embedded in a
    /// DOCX, which have no pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// For an image embedded in a DOCX: its part name, e.g. `word/media/image1.png`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Mean word confidence, 0 to 100; absent when no word was found or the page failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Words recognised.
    #[serde(default)]
    pub words: usize,
    /// Why this page failed (time limit, unreadable image); the rest of the document is
    /// indexed without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an upload or a job did with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentOutcome {
    /// A new document.
    Created,
    /// New content replaced the previous version.
    Updated,
    /// Same content as stored: nothing was done.
    Unchanged,
}

/// One document of an upload response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadedDocument {
    /// The document as now stored.
    #[serde(flatten)]
    pub document: DocumentInfo,
    /// What the upload did to it.
    pub outcome: DocumentOutcome,
}

/// `POST /v1/kbs/{kb}/documents` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    /// Documents of this upload, searchable when the response is sent.
    pub documents: Vec<UploadedDocument>,
    /// Files of the same upload that failed; each failed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FileError>,
}

/// Why one file of an upload or job was not indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileError {
    /// File name as uploaded, or path relative to the job's directory.
    pub name: String,
    /// Machine-readable error code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Pipeline stage that failed: `read`, `parse`, `ocr`, `chunk`, `embed` or `index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// `GET /v1/kbs/{kb}/documents` response: one page of documents ordered by id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentList {
    /// Documents of this page.
    pub documents: Vec<DocumentInfo>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// State of a batch job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for earlier jobs.
    Queued,
    /// Being processed.
    Running,
    /// Finished; individual files may still have failed (see `errors`).
    Succeeded,
    /// Stopped by an error that affects the whole job, or every file failed.
    Failed,
    /// Cancelled by a client; documents committed before that stay.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Where a job's files come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobSource {
    /// Files uploaded with `POST /v1/kbs/{kb}/documents?wait=false`.
    Upload,
    /// A directory on the server (`POST /v1/jobs`).
    Import {
        /// The directory, as resolved on the server.
        path: String,
        /// Glob the relative paths must match, e.g. `**/*.md`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        glob: Option<String>,
    },
}

/// A batch job and its progress: `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// Target knowledge base.
    pub kb: String,
    /// Where the files come from.
    pub source: JobSource,
    /// Current state.
    pub state: JobState,
    /// Files in the job; known once the directory has been listed.
    pub files_total: u64,
    /// Files finished, whatever the outcome (`indexed + unchanged + failed`).
    pub files_done: u64,
    /// Files whose content was indexed (created or updated).
    pub files_indexed: u64,
    /// Files skipped because the stored document has the same content.
    pub files_unchanged: u64,
    /// Files that failed; see `errors`.
    pub files_failed: u64,
    /// Chunks written.
    pub chunks_indexed: u64,
    /// Bytes of the finished files.
    pub bytes: u64,
    /// Files per second since the job started running.
    pub files_per_second: f64,
    /// Chunks per second since the job started running.
    pub chunks_per_second: f64,
    /// Pages (and images) read by OCR in this run, updated page by page.
    #[serde(default)]
    pub ocr: OcrProgress,
    /// Estimated seconds until the job finishes, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Per-file failures.
    #[serde(default)]
    pub errors: Vec<FileError>,
    /// Why the whole job failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the job was created (RFC 3339).
    pub created_at: String,
    /// When it started running (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl JobInfo {
    /// A queued job with no progress yet.
    pub fn new(id: String, kb: String, source: JobSource, created_at: String) -> Self {
        Self {
            id,
            kb,
            source,
            state: JobState::Queued,
            files_total: 0,
            files_done: 0,
            files_indexed: 0,
            files_unchanged: 0,
            files_failed: 0,
            chunks_indexed: 0,
            bytes: 0,
            files_per_second: 0.0,
            chunks_per_second: 0.0,
            ocr: OcrProgress::default(),
            eta_seconds: None,
            errors: Vec::new(),
            message: None,
            created_at,
            started_at: None,
            finished_at: None,
        }
    }
}

/// OCR progress of a job: the slowest stage, so it is reported page by page.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct OcrProgress {
    /// Pages and images queued for OCR so far (files are parsed as the job goes, so this
    /// grows).
    pub pages_total: u64,
    /// Of those, finished (including failed ones).
    pub pages_done: u64,
    /// Of those, failed (time limit, unreadable image); each fails alone.
    pub pages_failed: u64,
    /// Wall-clock seconds during which at least one page was being read.
    pub busy_seconds: f64,
}

impl OcrProgress {
    /// The figures of two runs or jobs together.
    pub fn plus(self, other: OcrProgress) -> OcrProgress {
        OcrProgress {
            pages_total: self.pages_total + other.pages_total,
            pages_done: self.pages_done + other.pages_done,
            pages_failed: self.pages_failed + other.pages_failed,
            busy_seconds: self.busy_seconds + other.busy_seconds,
        }
    }
}

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// Target knowledge base (created if missing).
    pub kb: String,
    /// Server-side directory to import; must lie inside a configured import root.
    pub path: String,
    /// Only files whose path relative to `path` matches this glob (default: all files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Tags for every imported document; entries may hold several tags separated by
    /// commas, as in an upload's `tags` fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `202 Accepted` body of a request that started a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    /// Id to follow with `GET /v1/jobs/{id}`.
    pub job_id: String,
}

/// `GET /v1/jobs` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Jobs, newest first.
    pub jobs: Vec<JobInfo>,
}

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

/// Body of every error response: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `unsupported_type`.
    pub code: String,
    /// Human-readable explanation naming the problem.
    pub message: String,
    /// Per-file failures of an upload in which every file failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileError>,
}

/// `GET /healthz` response. The process answers only once its models are loaded, so any
/// answer at all means it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// What `GET /readyz` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyState {
    /// Every knowledge base opens: send traffic (200).
    Ready,
    /// Shutting down: stop sending traffic (503).
    Draining,
    /// A knowledge base or the data directory cannot be opened; see `problems` (503).
    Unavailable,
}

/// `GET /readyz` response, for load balancers and orchestrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// The verdict; anything but `ready` comes with status 503.
    pub status: ReadyState,
    /// Names of the loaded models, when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Number of knowledge bases, when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbs: Option<usize>,
    /// What failed, when unavailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Query of `POST /v1/kbs/{kb}/documents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Wait until the files are searchable and answer 201 (default), or answer 202 with a
    /// job id at once (`false`).
    #[serde(default = "yes")]
    #[param(default = true)]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// The multipart form of `POST /v1/kbs/{kb}/documents`. The server reads the parts one by
/// one as they stream in, so this type only describes the form for the API reference.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadForm {
    /// The files, one part each, with a file name (which may contain a path: it becomes
    /// the document's `path`; its last component the `name`).
    #[schema(value_type = Vec<String>, format = Binary)]
    pub file: Vec<Vec<u8>>,
    /// Document ids: none (ids are derived from KB and file name), or one per file in the
    /// same order; 1-512 bytes without control characters.
    #[serde(default)]
    pub document_id: Vec<String>,
    /// Tags for every file of the upload; a part may hold several separated by commas (at
    /// most 32 tags of 64 characters).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Query of `GET /v1/conversations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationListParams {
    /// Only the conversations of this knowledge base.
    pub kb: Option<String>,
}

/// Query of `GET /v1/kbs/{kb}/documents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocumentListParams {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Whether `name` is a valid knowledge-base name: `[a-z0-9_-]{1,64}`.
pub fn is_valid_kb_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub mod openai;

#[cfg(test)]
mod model_label_tests {
    #[test]
    fn parameter_counts_read_like_model_cards() {
        assert_eq!(super::ModelInfo::label(134_515_008), "135M");
        assert_eq!(super::ModelInfo::label(1_543_714_304), "1.5B");
        assert_eq!(super::ModelInfo::label(7_000_000_000), "7B");
        assert_eq!(super::ModelInfo::label(117_000), "117K");
    }
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
