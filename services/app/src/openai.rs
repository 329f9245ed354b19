//! The OpenAI-compatible operations behind `POST /v1/chat/completions` and
//! `POST /v1/embeddings`: requests in OpenAI's terms are turned into the service's own
//! (an ask over a knowledge base, or a bare generation), so both APIs share every check,
//! slot and metric.

use std::time::Instant;

use base64::Engine as _;
use zhiku_generate::{ChatMessage, HistoryTurn, Role};
use zhiku_schemas::openai::{
    ChatCompletionMessage, ChatCompletionRequest, Embedding, EmbeddingInput, EmbeddingRequest,
    EmbeddingResponse, EmbeddingUsage, EmbeddingVector,
};
use zhiku_schemas::{AskRequest, AskSources, Citation, PromptFields, Usage};

use crate::ask::AskSink;
use crate::config::RewriteMode;
use crate::error::{ServiceError, existing_kb_name};
use crate::services::Services;

/// Most inputs one embeddings request may carry (OpenAI's own limit).
const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The answer to a chat completion, in the service's terms; the HTTP layer shapes it as
/// a `chat.completion` or as chunks.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    /// The answer.
    pub content: String,
    /// `stop` or `length`.
    pub finish_reason: String,
    /// Token counts.
    pub usage: Usage,
    /// `kb:` models: the cited sources.
    pub citations: Vec<Citation>,
    /// `kb:` models: the sources given but not cited.
    pub context: Vec<Citation>,
    /// `kb:` models: what was searched for.
    pub search_query: Option<String>,
    /// `kb:` models: whether the knowledge base had relevant context.
    pub grounded: Option<bool>,
}

fn bad(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::bad_request(code, message)
}

/// A message's role in the service's terms; `developer` is OpenAI's newer `system`.
fn role(message: &ChatCompletionMessage) -> Result<Role, ServiceError> {
    match message.role.as_str() {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(bad(
            "invalid_messages",
            format!("messages with role {other:?} are not supported (tools are not available)"),
        )),
    }
}

fn text(message: &ChatCompletionMessage) -> Result<String, ServiceError> {
    match &message.content {
        None => Ok(String::new()),
        Some(content) => content
            .text()
            .map_err(|message| bad("invalid_messages", message)),
    }
}

/// The request's messages as chat turns, checked: at least one, the last from the user.
fn chat_messages(request: &ChatCompletionRequest) -> Result<Vec<ChatMessage>, ServiceError> {
    let messages = request
        .messages
        .iter()
        .map(|m| {
            Ok(ChatMessage {
                role: role(m)?,
                content: text(m)?,
            })
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;
    match messages.last() {
        None => Err(bad("invalid_messages", "messages is empty")),
        Some(last) if last.role != Role::User || last.content.trim().is_empty() => Err(bad(
            "invalid_messages",
            "the last message must be a non-empty user message: the question",
        )),
        Some(_) => Ok(messages),
    }
}

/// Earlier user/assistant exchanges, oldest first: each user message with the assistant
/// message after it (empty if none); consecutive messages of one role are joined.
fn history(earlier: &[ChatMessage]) -> Vec<HistoryTurn> {
    let mut turns: Vec<HistoryTurn> = Vec::new();
    let mut last_role = None;
    for message in earlier.iter().filter(|m| m.role != Role::System) {
        match (message.role, last_role) {
            (Role::User, Some(Role::User)) | (Role::Assistant, Some(Role::Assistant)) => {
                if let Some(turn) = turns.last_mut() {
                    let field = if message.role == Role::User {
                        &mut turn.question
                    } else {
                        &mut turn.answer
                    };
                    field.push('\n');
                    field.push_str(&message.content);
                }
            }
            (Role::User, _) => turns.push(HistoryTurn {
                question: message.content.clone(),
                answer: String::new(),
            }),
            (Role::Assistant, _) => match turns.last_mut() {
                Some(turn) if turn.answer.is_empty() => turn.answer.clone_from(&message.content),
                // An assistant message with no question before it (a greeting).
                _ => turns.push(HistoryTurn {
                    question: String::new(),
                    answer: message.content.clone(),
                }),
            },
            (Role::System, _) => {}
        }
        last_role = Some(message.role);
    }
    turns
}

impl Services {
    /// The ask request a chat completion amounts to: the last user message is the
    /// question, the system messages become the persona (they shape the answer inside the
    /// grounding rules, never replace them), sampling fields map one to one.
    fn ask_request(
        request: &ChatCompletionRequest,
        messages: &[ChatMessage],
    ) -> Result<AskRequest, ServiceError> {
        if request.n.is_some_and(|n| n != 1) {
            return Err(bad("invalid_n", "only n = 1 is supported"));
        }
        if request
            .tools
            .as_ref()
            .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(bad("tools_not_supported", "tool calling is not supported"));
        }
        if request.logprobs == Some(true) {
            return Err(bad("logprobs_not_supported", "logprobs are not supported"));
        }
        let system: Vec<&str> = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.trim())
            .filter(|c| !c.is_empty())
            .collect();
        let question = messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        Ok(AskRequest {
            question,
            top_k: request.top_k,
            temperature: request.temperature,
            max_tokens: request.max_completion_tokens.or(request.max_tokens),
            top_p: request.top_p,
            top_k_tokens: None,
            // OpenAI seeds are 64-bit; llama.cpp's are 32.
            seed: request.seed.map(|s| s.rem_euclid(1 << 32) as u32),
            stop: request
                .stop
                .clone()
                .map(|s| s.into_vec())
                .unwrap_or_default(),
            prompt: (!system.is_empty()).then(|| PromptFields {
                persona: Some(system.join("\n")),
                ..PromptFields::default()
            }),
            response_format: request.response_format.clone(),
            stream: None,
            conversation_id: None,
            answer_mode: request.answer_mode,
            translate: None,
        })
    }

    /// Answers a chat completion: from a knowledge base for `kb:<name>` (retrieval, the
    /// grounded prompt with the earlier messages as history, citations), or from the bare
    /// LLM when `model` is its name. 404 for any other model.
    pub fn chat(
        &self,
        request: &ChatCompletionRequest,
        sink: &mut dyn AskSink,
    ) -> Result<ChatOutcome, ServiceError> {
        let started = Instant::now();
        let messages = chat_messages(request)?;
        let ask = Self::ask_request(request, &messages)?;
        if let Some(name) = request.model.strip_prefix("kb:") {
            // Unknown KBs are 404s before any model work; a name no KB can have is one.
            let kb = existing_kb_name(name)?;
            self.kb(&kb)?;
            let checked = self.check_ask(&ask)?;
            let earlier = history(&messages[..messages.len() - 1]);
            let rewrite_slot = (!earlier.is_empty()
                && self.config.conversations.rewrite == RewriteMode::Model)
                .then(|| self.acquire_slot(sink))
                .transpose()?;
            let context =
                self.inline_context(checked.question, &earlier, checked.generator.as_ref());
            drop(rewrite_slot);
            let response = self.answer(&kb, &ask, checked, context, sink, started)?;
            return Ok(ChatOutcome {
                content: response.answer,
                finish_reason: response.finish_reason.unwrap_or_else(|| "stop".into()),
                usage: response.usage,
                citations: response.citations,
                context: response.context,
                search_query: Some(response.search_query),
                grounded: Some(response.grounded),
            });
        }
        let checked = self.check_ask(&ask)?;
        if request.model != checked.generator.name() {
            return Err(ServiceError::NotFound(format!(
                "model {:?} does not exist: use the LLM's name ({:?}) or kb:<knowledge base> (GET /v1/models lists them)",
                request.model,
                checked.generator.name()
            )));
        }
        let slot = self.acquire_slot(sink)?;
        if !sink.sources(&AskSources {
            sources: Vec::new(),
            sources_dropped: 0,
            grounded: true,
        }) {
            self.slots.record_cancelled();
            return Err(ServiceError::ClientGone);
        }
        let mut first_token = None;
        let mut gone = false;
        let generation = checked
            .generator
            .generate(&messages, &checked.params, &mut |piece| {
                first_token.get_or_insert_with(Instant::now);
                gone = !sink.token(piece);
                !gone
            })?;
        drop(slot);
        if gone {
            self.slots.record_cancelled();
            return Err(ServiceError::ClientGone);
        }
        let usage = Usage {
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.completion_tokens,
            cached_prompt_tokens: generation.timings.cached_tokens,
        };
        self.metrics.answer(
            &zhiku_schemas::Timings {
                time_to_first_token_ms: first_token.map(|t| (t - started).as_millis() as u64),
                total_ms: started.elapsed().as_millis() as u64,
                ..Default::default()
            },
            &usage,
        );
        Ok(ChatOutcome {
            content: generation.text,
            finish_reason: generation.finish_reason.as_str().to_string(),
            usage,
            citations: Vec::new(),
            context: Vec::new(),
            search_query: None,
            grounded: None,
        })
    }

    /// Embeds texts with the service's embedding model, OpenAI style.
    pub fn embeddings(
        &self,
        request: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ServiceError> {
        let name = self.embedder.name();
        if request.model != name {
            return Err(ServiceError::NotFound(format!(
                "embedding model {:?} does not exist: this service embeds with {name:?}",
                request.model
            )));
        }
        let inputs: Vec<String> = match &request.input {
            EmbeddingInput::One(text) => vec![text.clone()],
            EmbeddingInput::Many(texts) => texts.clone(),
        };
        if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
            return Err(bad(
                "invalid_input",
                format!("input must hold 1 to {MAX_EMBEDDING_INPUTS} texts"),
            ));
        }
        if let Some(i) = inputs.iter().position(|t| t.trim().is_empty()) {
            return Err(bad("invalid_input", format!("input[{i}] is empty")));
        }
        let base64 = match request.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(bad(
                    "invalid_encoding_format",
                    format!("encoding_format must be float or base64, not {other:?}"),
                ));
            }
        };
        let dimension = self.embedder.dimension();
        if request.dimensions.is_some_and(|d| d != dimension) {
            return Err(bad(
                "invalid_dimensions",
                format!(
                    "{name} makes {dimension}-dimensional vectors; dimensions cannot change that"
                ),
            ));
        }
        let vectors = match request.input_type.as_deref() {
            None | Some("query") => inputs
                .iter()
                .map(|t| self.embedder.embed_query(t))
                .collect::<Result<Vec<_>, _>>(),
            Some("passage") => self.embedder.embed_passages(&inputs),
            Some(other) => {
                return Err(bad(
                    "invalid_input_type",
                    format!("input_type must be query or passage, not {other:?}"),
                ));
            }
        }
        .map_err(|e| ServiceError::Internal(format!("embedding failed: {e}")))?;
        let tokens: usize = inputs.iter().map(|t| self.embedder.count_tokens(t)).sum();
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| Embedding {
                object: "embedding".into(),
                index,
                embedding: if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    EmbeddingVector::Float(vector)
                },
            })
            .collect();
        Ok(EmbeddingResponse {
            object: "list".into(),
            data,
            model: name.to_string(),
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pairs_questions_with_answers() {
        let m = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let turns = history(&[
            m(Role::System, "be brief"),
            m(Role::Assistant, "Hello!"),
            m(Role::User, "What is the Pro plan?"),
            m(Role::Assistant, "A backup plan."),
            m(Role::User, "How much"),
            m(Role::User, "per month?"),
        ]);
        let pairs: Vec<(&str, &str)> = turns
            .iter()
            .map(|t| (t.question.as_str(), t.answer.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("", "Hello!"),
                ("What is the Pro plan?", "A backup plan."),
                ("How much\nper month?", "")
            ]
        );
    }
}
