//! Asking: a question in, a grounded answer with citations out, in one direction.
//!
//! [`Services::ask`] checks the request ([`Services::check_ask`]), works out the
//! conversation's context (history and a standalone search query for a follow-up), retrieves
//! (with the query's translation when the knowledge base holds the other language),
//! decides whether the sources hold an answer, and answers: generated within a slot, or
//! extracted from the sources. Retrieval here runs the checked search directly; it never
//! goes back through the request-level [`Services::search`].

use std::sync::Arc;
use std::time::Instant;

use zhiku_catalog::now_rfc3339;
use zhiku_generate::{
    Generator, HistoryTurn, SamplingParams, Slot, SlotError, Source, build_conversation_prompt,
    is_mostly_cjk, not_found_answer, resolve_citations,
};
use zhiku_schemas::{
    AnswerMode, AskRequest, AskResponse, AskSources, Citation, ConversationTurn, SearchHit,
    SearchRequest, SourceRef, Timings, Usage,
};

use crate::config::{LlmConfig, RewriteMode, TranslateMode};
use crate::conversations::{ConversationContext, check_id, full, new_id, not_found, rewrite};
use crate::error::ServiceError;
use crate::services::{CheckedSearch, Services};
use crate::translate::{
    Lang, MAX_TRANSLATION_TOKENS, check_translation, merge, translation_messages,
};

/// The sampling settings of an ask request, checked with its prompt fields; errors name
/// the field.
fn sampling(
    request: &AskRequest,
    temperature: f32,
    max_tokens: u32,
) -> Result<SamplingParams, ServiceError> {
    let defaults = SamplingParams::default();
    let top_p = request.top_p.unwrap_or(defaults.top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ServiceError::bad_request(
            "invalid_top_p",
            "top_p must be greater than 0 and at most 1",
        ));
    }
    let top_k = request.top_k_tokens.unwrap_or(defaults.top_k);
    if !(1..=1000).contains(&top_k) {
        return Err(ServiceError::bad_request(
            "invalid_top_k_tokens",
            "top_k_tokens must be between 1 and 1000",
        ));
    }
    if request.stop.len() > 4
        || request
            .stop
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > 64)
    {
        return Err(ServiceError::bad_request(
            "invalid_stop",
            "stop takes at most 4 strings of 1 to 64 characters",
        ));
    }
    if let Some(prompt) = &request.prompt
        && let Some((field, _)) = prompt
            .entries()
            .into_iter()
            .find(|(_, v)| v.is_some_and(|v| v.chars().count() > 2000))
    {
        return Err(ServiceError::bad_request(
            "invalid_prompt",
            format!("prompt.{field} is longer than 2000 characters"),
        ));
    }
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        seed: request.seed.unwrap_or(defaults.seed),
        max_tokens,
        stop: request.stop.clone(),
        grammar: None,
    })
}

/// The JSON Schema an ask request's `response_format` asks for, checked; errors are 400s
/// naming the field.
fn response_schema(request: &AskRequest) -> Result<Option<serde_json::Value>, ServiceError> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    let schema = format
        .schema()
        .map_err(|message| ServiceError::bad_request("invalid_response_format", message))?;
    if let Some(schema) = &schema
        && !(schema.is_object() || schema.is_boolean())
    {
        return Err(ServiceError::bad_request(
            "invalid_response_format",
            "response_format.schema must be a JSON Schema object",
        ));
    }
    Ok(schema)
}

/// What sentences are matched against: the search query, the question as asked when a
/// rewrite made them differ, and the query's translation when one was searched (so a
/// source in the other language has its matching sentences found too).
fn search_queries<'a>(
    question: &'a str,
    search_query: &'a str,
    translated: Option<&'a str>,
) -> Vec<&'a str> {
    let mut queries = vec![search_query];
    if question != search_query {
        queries.push(question);
    }
    queries.extend(translated);
    queries
}

/// The extractive answer from numbered sources: one passage per quoted source, each ending
/// with its source's `[n]`; and the numbers cited, in order.
fn extractive_text(
    numbered: &[Citation],
    queries: &[&str],
    llm: &LlmConfig,
) -> (String, Vec<usize>) {
    let texts: Vec<&str> = numbered.iter().map(|c| c.text.as_str()).collect();
    let picked =
        zhiku_retrieve::extract(&texts, queries, llm.extractive_sources, llm.passage_window);
    let answer = picked
        .iter()
        .map(|e| format!("{} [{}]", e.text, numbered[e.source].index))
        .collect::<Vec<_>>()
        .join("\n");
    let cited = picked.iter().map(|e| numbered[e.source].index).collect();
    (answer, cited)
}

/// A response made without calling the model, as far as that decides it: no answer yet,
/// no sources, no tokens, the times so far.
fn without_model(
    conversation: &ConversationContext,
    answer_mode: AnswerMode,
    retrieval_ms: u64,
    started: Instant,
) -> AskResponse {
    AskResponse {
        answer: String::new(),
        json: None,
        citations: Vec::new(),
        context: Vec::new(),
        sources_used: 0,
        sources_dropped: 0,
        grounded: false,
        finish_reason: None,
        usage: Usage::default(),
        timings: Timings {
            retrieval_ms,
            total_ms: started.elapsed().as_millis() as u64,
            ..Timings::default()
        },
        conversation_id: conversation.id.clone(),
        search_query: conversation.search_query.clone(),
        rewrite: conversation.rewrite,
        translated_query: None,
        history_turns_used: 0,
        answer_mode,
    }
}

/// The cited sources, in the order the answer cites them, and the others.
fn split_cited(numbered: Vec<Citation>, cited: &[usize]) -> (Vec<Citation>, Vec<Citation>) {
    let (mut citations, context): (Vec<Citation>, Vec<Citation>) =
        numbered.into_iter().partition(|c| cited.contains(&c.index));
    citations.sort_by_key(|c| cited.iter().position(|n| *n == c.index));
    (citations, context)
}

/// An ask request that passed its checks, with what the checks worked out.
pub struct CheckedAsk<'r> {
    /// The LLM.
    pub generator: Arc<dyn Generator>,
    /// The question, trimmed.
    pub question: &'r str,
    /// Sampling, with the schema's grammar when one was asked for.
    pub params: SamplingParams,
    /// The JSON Schema the answer must follow, if any.
    pub schema: Option<serde_json::Value>,
    /// How the answer is made.
    pub mode: AnswerMode,
}

/// Receives an answer while it is made: the HTTP layer (one JSON body, or Server-Sent
/// Events) and the CLI implement it.
pub trait AskSink {
    /// The numbered sources, once retrieval is done and a generation slot is granted (or,
    /// with `grounded: false`, when there is nothing to generate from). Returns false when
    /// the client is gone.
    fn sources(&mut self, _sources: &AskSources) -> bool {
        true
    }

    /// A piece of the answer. Returns false when the client is gone, which stops
    /// generation.
    fn token(&mut self, piece: &str) -> bool;

    /// Whether the client is gone; polled while the request waits for a slot.
    fn gone(&self) -> bool {
        false
    }
}

/// A closure taking each piece of the answer is a sink that never reports the client gone
/// on its own (the CLI prints pieces as they come).
impl<F: FnMut(&str) -> bool> AskSink for F {
    fn token(&mut self, piece: &str) -> bool {
        self(piece)
    }
}

impl Services {
    /// Answers a question from a KB's documents, citing them. `sink` receives the numbered
    /// sources before generation and the answer as it is generated; when it reports the
    /// client gone, generation stops and the slot is freed.
    ///
    /// The order is: check the request, retrieve, decide whether the KB holds an answer
    /// (no model call when it does not), build the prompt to fit the window, wait for a
    /// generation slot (or refuse with [`ServiceError::Overloaded`]), generate.
    pub fn ask(
        &self,
        kb: &str,
        request: &AskRequest,
        sink: &mut dyn AskSink,
    ) -> Result<AskResponse, ServiceError> {
        let started = Instant::now();
        let checked = self.check_ask(request)?;
        let (generator, question) = (checked.generator.clone(), checked.question);
        // Conversations: history and a standalone search query for a follow-up. A model
        // rewrite is a generation like any other, so it waits for a slot of its own.
        let rewrite_slot = (request.conversation_id.is_some()
            && self.config.conversations.rewrite == RewriteMode::Model)
            .then(|| self.acquire_slot(sink))
            .transpose()?;
        let conversation = self.conversation_context(kb, request, question, generator.as_ref())?;
        drop(rewrite_slot);
        self.answer(kb, request, checked, conversation, sink, started)
    }

    /// [`Services::ask`] with the conversation's context worked out: retrieval, the "not
    /// found" check, the prompt, a generation slot, generation, citations; the turn is
    /// recorded when the context says so. `started` is when the request arrived.
    pub fn answer(
        &self,
        kb: &str,
        request: &AskRequest,
        checked: CheckedAsk<'_>,
        conversation: ConversationContext,
        sink: &mut dyn AskSink,
        started: Instant,
    ) -> Result<AskResponse, ServiceError> {
        let CheckedAsk {
            generator,
            question,
            params,
            schema,
            mode,
        } = checked;
        let llm = &self.config.llm;
        let search_query = conversation.search_query.as_str();
        let search =
            self.question_search(search_query, request.top_k.unwrap_or(llm.context_chunks))?;
        let (hits, translated_query) = self.ask_search(kb, request, &search, sink)?;
        let retrieval_ms = started.elapsed().as_millis() as u64;
        let best = hits
            .iter()
            .filter_map(|h| h.dense_score)
            .fold(f32::NEG_INFINITY, f32::max);
        if hits.is_empty() || (llm.min_relevance > 0.0 && best < llm.min_relevance) {
            tracing::debug!(best, threshold = llm.min_relevance, "no relevant context");
            sink.sources(&AskSources {
                sources: Vec::new(),
                sources_dropped: 0,
                grounded: false,
            });
            let response = AskResponse {
                answer: not_found_answer(question).to_string(),
                translated_query,
                ..without_model(
                    &conversation,
                    match mode {
                        AnswerMode::Auto => AnswerMode::Generative,
                        mode => mode,
                    },
                    retrieval_ms,
                    started,
                )
            };
            self.record_turn(kb, question, &conversation, &response)?;
            return Ok(response);
        }

        let queries = search_queries(question, search_query, translated_query.as_deref());
        let numbered: Vec<Citation> = hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| Citation {
                index: i + 1,
                quote: zhiku_retrieve::best_sentence(&h.text, search_query).to_string(),
                chunk_id: h.chunk_id,
                document_id: h.document_id,
                document_name: h.document_name,
                text: h.text,
                heading: h.heading,
                page: h.page,
            })
            .collect();
        if mode == AnswerMode::Extractive {
            let response = self.extractive(
                kb,
                question,
                &conversation,
                numbered,
                &queries,
                sink,
                started,
            )?;
            return Ok(AskResponse {
                translated_query,
                ..response
            });
        }
        let sources: Vec<Source> = numbered
            .iter()
            .map(|c| Source {
                title: c.document_name.clone(),
                heading: c.heading.clone(),
                page: c.page,
                text: if llm.source_tokens == 0 {
                    c.text.clone()
                } else {
                    zhiku_retrieve::evidence(
                        &c.text,
                        &queries,
                        llm.source_tokens,
                        llm.passage_window,
                        &|t| generator.count_tokens(t),
                    )
                },
            })
            .collect();
        let style = self.config.prompt.resolve(kb, request.prompt.as_ref());
        let json_instruction = schema
            .as_ref()
            .map(|schema| format!("JSON that follows this JSON Schema: {schema}"));
        let style: Vec<(&str, &str)> = style
            .entries()
            .into_iter()
            .filter_map(|(field, value)| {
                // A schema decides the form of the answer, whatever the prompt fields say.
                match (field, &json_instruction) {
                    ("response_format", Some(json)) => Some((field, json.as_str())),
                    _ => value.map(|v| (field, v)),
                }
            })
            .collect();
        let prompt = build_conversation_prompt(
            generator.as_ref(),
            question,
            search_query,
            &conversation.history,
            &sources,
            params.max_tokens as usize,
            &style,
        )?;
        let sources_dropped = numbered.len() - prompt.sources_used;
        let mut numbered = numbered;
        numbered.truncate(prompt.sources_used);

        let queued = Instant::now();
        let slot = self.acquire_slot(sink)?;
        let slot_granted = Instant::now();
        if !sink.sources(&AskSources {
            sources: numbered.clone(),
            sources_dropped,
            grounded: true,
        }) {
            self.slots.record_cancelled();
            return Err(ServiceError::ClientGone);
        }
        let mut first_token = None;
        let mut gone = false;
        let generation = generator.generate(&prompt.messages, &params, &mut |piece| {
            first_token.get_or_insert_with(Instant::now);
            gone = !sink.token(piece);
            !gone
        })?;
        let finished = Instant::now();
        drop(slot);
        if gone {
            self.slots.record_cancelled();
            return Err(ServiceError::ClientGone);
        }

        let text = generation.text.trim();
        let (answer, cited, json) = if schema.is_some() {
            // JSON is returned as generated: removing a marker could break it (`[3]` may be
            // an array), so only the citations are resolved.
            let (_, cited) = resolve_citations(text, prompt.sources_used);
            (text.to_string(), cited, serde_json::from_str(text).ok())
        } else {
            // Only the sources the model was given may be cited.
            let given: Vec<&str> = numbered
                .iter()
                .take(prompt.sources_used)
                .map(|c| c.text.as_str())
                .collect();
            let attributed = zhiku_retrieve::attribute(text, &given);
            let (answer, cited) = resolve_citations(&attributed, prompt.sources_used);
            (answer, cited, None)
        };
        // `auto`: an answer that cites nothing, or is in another language than the
        // question, is replaced by the sources' own sentences.
        let (answer, cited, answer_mode) = if mode == AnswerMode::Auto
            && schema.is_none()
            && (cited.is_empty() || is_mostly_cjk(&answer) != is_mostly_cjk(question))
        {
            let (answer, cited) = extractive_text(&numbered, &queries, llm);
            (answer, cited, AnswerMode::Extractive)
        } else {
            (answer, cited, AnswerMode::Generative)
        };
        let (citations, context) = split_cited(numbered, &cited);
        let ms = |from: Instant, to: Instant| (to - from).as_millis() as u64;
        let usage = Usage {
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.completion_tokens,
        };
        let tokens_per_second = first_token
            .filter(|_| generation.completion_tokens > 1)
            .map(|first| {
                (generation.completion_tokens - 1) as f64
                    / (finished - first).as_secs_f64().max(1e-6)
            });
        let timings = Timings {
            retrieval_ms,
            queue_ms: ms(queued, slot_granted),
            time_to_first_token_ms: first_token.map(|t| ms(started, t)),
            generation_ms: ms(slot_granted, finished),
            tokens_per_second,
            total_ms: ms(started, Instant::now()),
        };
        self.metrics.answer(&timings, &usage);
        let response = AskResponse {
            answer,
            json,
            citations,
            context,
            sources_used: prompt.sources_used,
            sources_dropped,
            grounded: true,
            finish_reason: Some(generation.finish_reason.as_str().to_string()),
            usage,
            timings,
            conversation_id: conversation.id.clone(),
            search_query: search_query.to_string(),
            rewrite: conversation.rewrite,
            translated_query,
            history_turns_used: prompt.history_used,
            answer_mode,
        };
        self.record_turn(kb, question, &conversation, &response)?;
        Ok(response)
    }

    /// The extractive answer to a question with grounding sources: their best sentences
    /// with `[n]` markers, sent as one piece, with no generation slot (no model call).
    #[allow(clippy::too_many_arguments)]
    fn extractive(
        &self,
        kb: &str,
        question: &str,
        conversation: &ConversationContext,
        numbered: Vec<Citation>,
        queries: &[&str],
        sink: &mut dyn AskSink,
        started: Instant,
    ) -> Result<AskResponse, ServiceError> {
        let retrieval_ms = started.elapsed().as_millis() as u64;
        if !sink.sources(&AskSources {
            sources: numbered.clone(),
            sources_dropped: 0,
            grounded: true,
        }) {
            return Err(ServiceError::ClientGone);
        }
        let (answer, cited) = extractive_text(&numbered, queries, &self.config.llm);
        if !sink.token(&answer) {
            return Err(ServiceError::ClientGone);
        }
        let sources_used = numbered.len();
        let (citations, context) = split_cited(numbered, &cited);
        let response = AskResponse {
            answer,
            citations,
            context,
            sources_used,
            grounded: true,
            finish_reason: Some("stop".into()),
            ..without_model(conversation, AnswerMode::Extractive, retrieval_ms, started)
        };
        self.record_turn(kb, question, conversation, &response)?;
        Ok(response)
    }

    /// Checks an ask request: the LLM, the question, sampling and response format; the
    /// schema's grammar is made here, so a bad schema costs nothing.
    pub fn check_ask<'r>(&self, request: &'r AskRequest) -> Result<CheckedAsk<'r>, ServiceError> {
        let llm = &self.config.llm;
        let generator = self
            .generator
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("the LLM is not loaded".into()))?;
        let question = request.question.trim();
        if question.is_empty() {
            return Err(ServiceError::bad_request(
                "empty_question",
                "question is empty",
            ));
        }
        // Here rather than with the conversation: `/v1/chat/completions` builds its
        // context from the request's messages and would skip it there.
        let chars = question.chars().count();
        let max_chars = self.config.conversations.max_question_chars;
        if chars > max_chars {
            return Err(ServiceError::over_limit(
                "question_too_long",
                "question",
                chars,
                "characters",
                max_chars,
                "conversations.max_question_chars",
            ));
        }
        let max_tokens = request.max_tokens.unwrap_or(llm.max_tokens);
        if max_tokens == 0 || max_tokens > llm.max_tokens_limit {
            return Err(ServiceError::bad_request(
                "invalid_max_tokens",
                format!("max_tokens must be between 1 and {}", llm.max_tokens_limit),
            ));
        }
        let temperature = request.temperature.unwrap_or(llm.temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ServiceError::bad_request(
                "invalid_temperature",
                "temperature must be between 0 and 2",
            ));
        }
        let mut params = sampling(request, temperature, max_tokens)?;
        let schema = response_schema(request)?;
        let mode = request.answer_mode.unwrap_or(llm.answer_mode);
        if schema.is_some() && mode != AnswerMode::Generative {
            return Err(ServiceError::bad_request(
                "invalid_answer_mode",
                "response_format asks for JSON, which only answer_mode generative can write",
            ));
        }
        if let Some(schema) = &schema {
            params.grammar = Some(generator.schema_grammar(&schema.to_string())?);
        }
        Ok(CheckedAsk {
            generator: generator.clone(),
            question,
            params,
            schema,
            mode,
        })
    }

    /// A generation slot, waiting in the queue while `sink`'s client is there; 503 when the
    /// queue is full.
    pub(crate) fn acquire_slot(&self, sink: &dyn AskSink) -> Result<Slot<'_>, ServiceError> {
        self.slots.acquire(&|| sink.gone()).map_err(|e| match e {
            SlotError::Busy {
                retry_after_secs, ..
            } => ServiceError::Overloaded {
                message: e.to_string(),
                retry_after_secs,
            },
            SlotError::Cancelled => ServiceError::ClientGone,
        })
    }

    /// Looks up the request's conversation (404 if it does not exist or belongs to
    /// another knowledge base: which one exists is not revealed), loads the turns the
    /// model may see, and rewrites a follow-up into a standalone search query. Without
    /// a conversation id a new conversation is started.
    pub fn conversation_context(
        &self,
        kb: &str,
        request: &AskRequest,
        question: &str,
        generator: &dyn Generator,
    ) -> Result<ConversationContext, ServiceError> {
        let config = &self.config.conversations;
        let Some(id) = &request.conversation_id else {
            return Ok(ConversationContext {
                id: new_id(),
                existing: false,
                store: true,
                history: Vec::new(),
                search_query: question.to_string(),
                rewrite: None,
            });
        };
        check_id(id)?;
        // At least the last turn, whose search query a follow-up continues.
        let wanted = config.history_turns.max(1);
        let (_, count, turns) = self
            .conversations
            .recent(id, wanted)?
            .filter(|(owner, ..)| owner == kb)
            .ok_or_else(|| not_found(id))?;
        // Refused before any work: the answer could not be stored.
        if count >= config.max_turns {
            return Err(full(id, config.max_turns));
        }
        let (search_query, rewrite) = match turns.last() {
            Some(previous) => rewrite::standalone(question, previous, config.rewrite, generator),
            None => (question.to_string(), None),
        };
        let skip = turns.len().saturating_sub(config.history_turns);
        let history = turns[skip..]
            .iter()
            .map(|t| HistoryTurn {
                question: t.question.clone(),
                answer: t.answer.clone(),
            })
            .collect();
        Ok(ConversationContext {
            id: id.clone(),
            existing: true,
            store: true,
            history,
            search_query,
            rewrite,
        })
    }

    /// The context of a question whose conversation the client sends along (earlier
    /// question/answer pairs, oldest first), as in the OpenAI chat API: rewritten like a
    /// stored conversation's follow-up, using at most `history_turns` of it, and not
    /// stored.
    pub fn inline_context(
        &self,
        question: &str,
        turns: &[HistoryTurn],
        generator: &dyn Generator,
    ) -> ConversationContext {
        let config = &self.config.conversations;
        let (search_query, rewrite) = match turns.last() {
            Some(previous) => {
                let previous = ConversationTurn {
                    turn: 0,
                    question: previous.question.clone(),
                    search_query: previous.question.clone(),
                    rewrite: None,
                    answer: previous.answer.clone(),
                    grounded: true,
                    citations: Vec::new(),
                    context: Vec::new(),
                    history_turns_used: 0,
                    created_at: String::new(),
                    feedback: None,
                };
                rewrite::standalone(question, &previous, config.rewrite, generator)
            }
            None => (question.to_string(), None),
        };
        let skip = turns.len().saturating_sub(config.history_turns);
        ConversationContext {
            id: String::new(),
            existing: false,
            store: false,
            history: turns[skip..].to_vec(),
            search_query,
            rewrite,
        }
    }

    /// Stores the answered question as the conversation's next turn (creating the
    /// conversation for its first).
    pub fn record_turn(
        &self,
        kb: &str,
        question: &str,
        context: &ConversationContext,
        response: &AskResponse,
    ) -> Result<(), ServiceError> {
        if !context.store {
            return Ok(());
        }
        let source = |c: &Citation| SourceRef {
            index: c.index,
            document_id: c.document_id.clone(),
            document_name: c.document_name.clone(),
            chunk_id: c.chunk_id.clone(),
            quote: c.quote.clone(),
        };
        let turn = ConversationTurn {
            turn: 0,
            question: question.to_string(),
            search_query: response.search_query.clone(),
            rewrite: response.rewrite,
            answer: response.answer.clone(),
            grounded: response.grounded,
            citations: response.citations.iter().map(source).collect(),
            context: response.context.iter().map(source).collect(),
            history_turns_used: response.history_turns_used,
            created_at: now_rfc3339(),
            feedback: None,
        };
        self.conversations.append(
            &context.id,
            kb,
            context.existing,
            self.config.conversations.max_turns,
            turn,
        )?;
        Ok(())
    }

    /// `POST /v1/kbs/{kb}/search`: [`Services::search`], and with `translate: true` also
    /// the query's translation (see `crate::translate`). Returns the hits and the
    /// translation searched, if any.
    pub fn search_translated(
        &self,
        kb: &str,
        request: &SearchRequest,
    ) -> Result<(Vec<SearchHit>, Option<String>), ServiceError> {
        let search = self.check_search(request)?;
        self.search_across(kb, &search, request.translate == Some(true), &NoClient)
    }

    /// The ask path's retrieval: the checked search for the question, with its translation
    /// unless the request or `search.translate` says not to. A wait for the translation's
    /// generation slot watches `sink`'s client.
    pub fn ask_search(
        &self,
        kb: &str,
        ask: &AskRequest,
        search: &CheckedSearch,
        sink: &dyn AskSink,
    ) -> Result<(Vec<SearchHit>, Option<String>), ServiceError> {
        let translate = ask
            .translate
            .unwrap_or(self.config.search.translate == TranslateMode::Auto);
        self.search_across(kb, search, translate, sink)
    }

    /// Runs `search` and, when `translate` and the KB holds documents in the other
    /// language and the LLM gives a translation that passes the checks, the translation
    /// too, merging the rankings.
    fn search_across(
        &self,
        kb: &str,
        search: &CheckedSearch,
        translate: bool,
        sink: &dyn AskSink,
    ) -> Result<(Vec<SearchHit>, Option<String>), ServiceError> {
        let original = self.retrieve(kb, search)?;
        let Some(generator) = self.generator.as_ref().filter(|_| translate) else {
            return Ok((original, None));
        };
        let query = search.query.trim();
        let target = Lang::of(query).other();
        if !self.translator.kb_has(&self.kb(kb)?, target)? {
            return Ok((original, None));
        }
        let Some(translation) = self.translation(generator.as_ref(), query, target, sink)? else {
            return Ok((original, None));
        };
        let top_k = original.len().max(search.options.top_k);
        let translated = self.retrieve(
            kb,
            &CheckedSearch {
                query: translation.clone(),
                options: search.options.clone(),
            },
        )?;
        let margin = match target {
            Lang::English => self.config.search.translate_margin_en,
            Lang::Chinese => self.config.search.translate_margin_zh,
        };
        Ok((
            merge(original, translated, margin, top_k),
            Some(translation),
        ))
    }

    /// The checked translation of `query` into `target`, from the cache or the LLM (in a
    /// generation slot); `None` when the model's output fails the checks or the model
    /// fails, which is logged, not an error: the search goes on with the query alone.
    fn translation(
        &self,
        generator: &dyn Generator,
        query: &str,
        target: Lang,
        sink: &dyn AskSink,
    ) -> Result<Option<String>, ServiceError> {
        let key = (query.to_string(), target);
        if let Some(cached) = self.translator.cache.lock().get(&key) {
            return Ok(cached);
        }
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: MAX_TRANSLATION_TOKENS,
            stop: vec!["\n".into()],
            ..SamplingParams::default()
        };
        let slot = self.acquire_slot(sink)?;
        let generation =
            generator.generate(&translation_messages(query, target), &params, &mut |_| true);
        drop(slot);
        let checked = match generation {
            Ok(g) => {
                let checked = check_translation(&g.text, g.finish_reason, query, target);
                if checked.is_none() {
                    tracing::debug!(output = %g.text, "translation rejected");
                }
                checked
            }
            Err(e) => {
                tracing::warn!(error = %e, "translation failed; searching the query alone");
                return Ok(None);
            }
        };
        self.translator.cache.lock().put(key, checked.clone());
        Ok(checked)
    }
}

/// A sink for searches, which have no client to watch while waiting for a slot.
struct NoClient;

impl AskSink for NoClient {
    fn token(&mut self, _piece: &str) -> bool {
        true
    }
}
