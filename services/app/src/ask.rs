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
    AnswerMode, AskRequest, AskResponse, AskSources, Citation, ConversationTurn, KbName, SearchHit,
    SearchRequest, SourceRef, Timings, Usage,
};

mod check;
mod context;
mod search;

pub use check::CheckedAsk;
use search::search_queries;

use crate::config::{LlmConfig, RewriteMode, TranslateMode};
use crate::conversations::{ConversationContext, check_id, full, new_id, not_found, rewrite};
use crate::error::ServiceError;
use crate::services::{CheckedSearch, Services};
use crate::translate::{
    Lang, MAX_TRANSLATION_TOKENS, check_translation, merge, translation_messages, twins,
};

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

/// An answer that says nothing the question did not ("Yes [1]", or the question restated)
/// followed by the passage that answers it, as an extractive answer would quote it
/// (`window` sentences either side of the best-matching one: documents often restate the
/// question, then answer it in the next sentence), from the sources in the question's
/// language (a quote in another language would answer in that language), with its `[n]`.
/// Unchanged when no such source has one. Returns the answer, the numbers it cites, and
/// the text appended (empty when unchanged).
fn complete(
    answer: String,
    mut cited: Vec<usize>,
    given: &[Citation],
    queries: &[&str],
    question: &str,
    window: usize,
) -> (String, Vec<usize>, String) {
    let chinese = is_mostly_cjk(question);
    let same_language: Vec<&Citation> = given
        .iter()
        .filter(|c| is_mostly_cjk(&c.text) == chinese)
        .collect();
    let texts: Vec<&str> = same_language.iter().map(|c| c.text.as_str()).collect();
    let Some(best) = zhiku_retrieve::extract(&texts, queries, 1, window)
        .into_iter()
        .next()
    else {
        return (answer, cited, String::new());
    };
    let index = same_language[best.source].index;
    // A bare "Yes [1][2][3]" cites nothing a reader could check; the quote carries the
    // citation instead.
    let answer = if zhiku_retrieve::adds_nothing(&answer, "") {
        cited.clear();
        let word = answer.split(['[', '［']).next().unwrap_or_default();
        let word = word.trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation());
        let word = word.trim_end_matches(['，', '。', '：', '；']);
        match word {
            "" => String::new(),
            word if chinese => format!("{word}。"),
            word => format!("{word}."),
        }
    } else {
        answer
    };
    if !cited.contains(&index) {
        cited.push(index);
    }
    let sep = if chinese || answer.is_empty() {
        ""
    } else {
        " "
    };
    let added = format!("{sep}{} [{index}]", best.text.trim());
    (format!("{answer}{added}"), cited, added)
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
        turn: None,
    }
}

/// The cited sources, in the order the answer cites them, and the others.
fn split_cited(numbered: Vec<Citation>, cited: &[usize]) -> (Vec<Citation>, Vec<Citation>) {
    let (mut citations, context): (Vec<Citation>, Vec<Citation>) =
        numbered.into_iter().partition(|c| cited.contains(&c.index));
    citations.sort_by_key(|c| cited.iter().position(|n| *n == c.index));
    (citations, context)
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
        kb: &KbName,
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
        kb: &KbName,
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
        // An English question gets an English answer even from Chinese sources (the small
        // models drift into their sources' language; README, "Answer quality").
        let params = SamplingParams {
            ban_cjk: !is_mostly_cjk(question),
            ..params
        };
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
            let mut response = AskResponse {
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
            response.turn = self.record_turn(kb, question, &conversation, &response)?;
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
            let (answer, cited) = if zhiku_retrieve::adds_nothing(&answer, question) {
                let (answer, cited, added) = complete(
                    answer,
                    cited,
                    &numbered[..prompt.sources_used],
                    &queries,
                    question,
                    llm.passage_window,
                );
                // Streamed too, so a client showing tokens shows the quote. Whether the
                // client is still there no longer matters: the answer is made.
                if !added.is_empty() {
                    sink.token(&added);
                }
                (answer, cited)
            } else {
                (answer, cited)
            };
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
            cached_prompt_tokens: generation.timings.cached_tokens,
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
        let mut response = AskResponse {
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
            turn: None,
        };
        response.turn = self.record_turn(kb, question, &conversation, &response)?;
        Ok(response)
    }

    /// The extractive answer to a question with grounding sources: their best sentences
    /// with `[n]` markers, sent as one piece, with no generation slot (no model call).
    #[allow(clippy::too_many_arguments)]
    fn extractive(
        &self,
        kb: &KbName,
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
        let mut response = AskResponse {
            answer,
            citations,
            context,
            sources_used,
            grounded: true,
            finish_reason: Some("stop".into()),
            ..without_model(conversation, AnswerMode::Extractive, retrieval_ms, started)
        };
        response.turn = self.record_turn(kb, question, conversation, &response)?;
        Ok(response)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(index: usize, text: &str) -> Citation {
        Citation {
            index,
            chunk_id: format!("c{index}"),
            document_id: format!("d{index}"),
            document_name: format!("doc{index}.html"),
            text: text.into(),
            heading: None,
            page: None,
            quote: String::new(),
        }
    }

    #[test]
    fn a_bare_yes_is_completed_by_the_passage_that_answers() {
        let given = [
            // Chinese: not quoted for an English question, though ranked first.
            source(1, "光盘很受欢迎。您不需要许可。"),
            source(
                2,
                "Selling CDs of Debian is fine. You do not need permission to distribute \
                 anything we have released. Vendors must honour the licences.",
            ),
        ];
        let question = "Am I allowed to sell Debian CDs?";
        let (answer, cited, added) = complete(
            "Yes [1][2].".into(),
            vec![1, 2],
            &given,
            &[question],
            question,
            1,
        );
        assert_eq!(
            answer,
            "Yes. Selling CDs of Debian is fine. You do not need permission to distribute \
             anything we have released. [2]"
        );
        assert_eq!(cited, vec![2]);
        assert!(
            answer.ends_with(&added) && added.starts_with(" Selling"),
            "{added}"
        );

        // A restated question keeps its own marker; the quote adds its source.
        let (answer, cited, _) = complete(
            "Yes, you can sell Debian CDs [1].".into(),
            vec![1],
            &given,
            &[question],
            question,
            1,
        );
        assert!(
            answer.starts_with("Yes, you can sell Debian CDs [1]. Selling CDs of Debian is fine."),
            "{answer}"
        );
        assert_eq!(cited, vec![1, 2]);

        // No source in the question's language: unchanged.
        let chinese = [source(1, "您不需要许可。")];
        let (answer, cited, added) = complete(
            "Yes [1].".into(),
            vec![1],
            &chinese,
            &[question],
            question,
            1,
        );
        assert_eq!((answer.as_str(), cited), ("Yes [1].", vec![1]));
        assert!(added.is_empty());
    }
}
