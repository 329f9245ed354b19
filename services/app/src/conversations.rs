//! Conversations: questions that continue earlier ones, their storage, the ratings users
//! give answers, and the good ones exported as fine-tuning data.
//!
//! A conversation belongs to one knowledge base. Each ask is one turn of a conversation
//! (a new one unless the request names one). Before retrieval a follow-up like "what
//! does it include?" is rewritten into a standalone search query (see [`rewrite`]); the
//! model then gets the most recent turns as chat history, as far as the context window
//! allows (see [`zhiku_generate::build_conversation_prompt`]).
//!
//! Conversations are kept by a [`ConversationLog`]: `<data>/conversations.redb` on the
//! embedded default, the catalog's PostgreSQL database when scaled out.

use std::sync::Arc;

use zhiku_catalog::{CatalogError, ConversationLog, now_rfc3339};
use zhiku_generate::{
    ChatMessage, Generator, HistoryTurn, Role, SamplingParams, Source, grounded_messages,
    is_mostly_cjk, resolve_citations,
};
use zhiku_schemas::{
    ChatRecordMessage, Conversation, ConversationSummary, ConversationTurn, Feedback,
    FeedbackRequest, QaRecord, QueryRewrite, Rating, SourceRef,
};

pub mod rewrite;

use crate::config::RewriteMode;
use crate::error::ServiceError;

/// Longest feedback comment, in characters.
const MAX_COMMENT_CHARS: usize = 2000;

/// A fresh conversation id: `conv_` and 128 random bits in hex, so ids cannot be guessed.
pub fn new_id() -> String {
    format!("conv_{}", uuid::Uuid::new_v4().simple())
}

/// Checks the form of a conversation id given by a client, naming it when it is wrong.
pub fn check_id(id: &str) -> Result<(), ServiceError> {
    let ok = id.strip_prefix("conv_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_request(
            "invalid_conversation_id",
            format!(
                "invalid conversation_id {:?}: ids look like conv_ followed by 32 lowercase hex digits",
                id.chars().take(80).collect::<String>()
            ),
        ))
    }
}

pub(crate) fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("conversation {id:?} does not exist"))
}

/// Conversations and their ratings, over the store the deployment uses
/// ([`ConversationLog`]: a redb file of the data directory, or PostgreSQL).
pub struct ConversationStore {
    log: Arc<dyn ConversationLog>,
}

/// The store's errors as the API reports them.
fn service_error(e: CatalogError) -> ServiceError {
    match e {
        CatalogError::NotFound(id) => not_found(&id),
        CatalogError::Full { id, max_turns } => full(&id, max_turns),
        e @ CatalogError::NoSuchTurn { .. } => {
            ServiceError::bad_request("invalid_turn", e.to_string())
        }
        e => ServiceError::Storage(e.to_string()),
    }
}

impl ConversationStore {
    /// Conversations kept in `log`.
    pub fn new(log: Arc<dyn ConversationLog>) -> Self {
        Self { log }
    }

    /// The conversation's knowledge base, number of turns and last `n` turns (oldest
    /// first), or `None` if it does not exist.
    pub(crate) fn recent(
        &self,
        id: &str,
        n: usize,
    ) -> Result<Option<(String, u32, Vec<ConversationTurn>)>, ServiceError> {
        self.log.recent(id, n).map_err(service_error)
    }

    /// A whole conversation.
    pub fn get(&self, id: &str) -> Result<Option<Conversation>, ServiceError> {
        self.log.get(id).map_err(service_error)
    }

    /// Conversations, of one knowledge base or all, most recently updated first.
    pub fn list(&self, kb: Option<&str>) -> Result<Vec<ConversationSummary>, ServiceError> {
        self.log.list(kb).map_err(service_error)
    }

    /// Appends a turn, numbering it, and returns its number. `existing` says whether the
    /// conversation must already exist (a client named it) or must be created.
    pub(crate) fn append(
        &self,
        id: &str,
        kb: &str,
        existing: bool,
        max_turns: u32,
        turn: ConversationTurn,
    ) -> Result<u32, ServiceError> {
        self.log
            .append(id, kb, existing, max_turns, turn)
            .map_err(service_error)
    }

    /// Records feedback on a turn; a later rating replaces an earlier one.
    pub fn feedback(&self, id: &str, request: &FeedbackRequest) -> Result<(), ServiceError> {
        if let Some(comment) = &request.comment
            && comment.chars().count() > MAX_COMMENT_CHARS
        {
            return Err(ServiceError::bad_request(
                "invalid_comment",
                format!("comment is longer than {MAX_COMMENT_CHARS} characters"),
            ));
        }
        let feedback = Feedback {
            rating: request.rating,
            comment: request
                .comment
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            at: now_rfc3339(),
        };
        self.log
            .rate(id, request.turn, feedback)
            .map_err(service_error)
    }

    /// Deletes a conversation; false if it did not exist.
    pub fn delete(&self, id: &str) -> Result<bool, ServiceError> {
        self.log.delete(id).map_err(service_error)
    }

    /// Deletes the conversations last updated before `cutoff` (RFC 3339, see
    /// `zhiku_catalog::rfc3339_days_ago`), ratings included; returns how many.
    pub fn prune(&self, cutoff: &str) -> Result<usize, ServiceError> {
        self.log.prune(cutoff).map_err(service_error)
    }

    /// Deletes every conversation of a knowledge base (which is being deleted: its
    /// answers' sources are gone, and a new KB of the same name must not inherit them).
    pub fn purge_kb(&self, kb: &str) -> Result<(), ServiceError> {
        self.log.purge_kb(kb).map_err(service_error)
    }

    /// Calls `emit` with a record of every turn of `kb` rated good, conversation by
    /// conversation (oldest conversation first) and in turn order, until it returns false.
    pub fn export_good(
        &self,
        kb: &str,
        emit: &mut dyn FnMut(QaRecord) -> bool,
    ) -> Result<(), ServiceError> {
        let good = |turn: &ConversationTurn| {
            turn.feedback
                .as_ref()
                .is_some_and(|f| f.rating == Rating::Good)
        };
        self.log
            .scan_kb(kb, &good, &mut |id, turns| {
                turns
                    .iter()
                    .enumerate()
                    .filter(|(_, turn)| good(turn))
                    .all(|(i, turn)| emit(qa_record(id, &turns[..i], turn)))
            })
            .map_err(service_error)
    }
}

pub(crate) fn full(id: &str, max_turns: u32) -> ServiceError {
    ServiceError::Conflict {
        code: "conversation_full",
        message: format!(
            "conversation {id:?} has reached {max_turns} turns (conversations.max_turns); start a new conversation"
        ),
    }
}

/// The fine-tuning record of `turn`, whose earlier turns are `before`: the chat as the
/// model saw it, then the answer. Sources appear as their quoted sentences (the chunk
/// texts are not kept), numbered as they were, so the answer's `[n]` still point right.
fn qa_record(id: &str, before: &[ConversationTurn], turn: &ConversationTurn) -> QaRecord {
    let mut sources: Vec<&SourceRef> = turn.citations.iter().chain(&turn.context).collect();
    sources.sort_by_key(|s| s.index);
    let sources: Vec<Source> = sources
        .into_iter()
        .map(|s| Source {
            title: s.document_name.clone(),
            heading: None,
            page: None,
            text: s.quote.clone(),
        })
        .collect();
    let history = &before[before.len() - turn.history_turns_used.min(before.len())..];
    // As in the prompt: the question as asked when history explains it, else standalone.
    let question = if history.is_empty() {
        &turn.search_query
    } else {
        &turn.question
    };
    let mut grounded = grounded_messages(question, &sources).into_iter();
    let message = |m: ChatMessage| ChatRecordMessage {
        role: m.role.as_str().to_string(),
        content: m.content,
    };
    let mut messages: Vec<ChatRecordMessage> = grounded.by_ref().take(1).map(message).collect();
    for earlier in history {
        messages.push(message(ChatMessage::user(earlier.question.trim())));
        let (answer, _) = resolve_citations(&earlier.answer, 0);
        messages.push(message(ChatMessage::assistant(answer)));
    }
    messages.extend(grounded.map(message));
    messages.push(ChatRecordMessage {
        role: Role::Assistant.as_str().to_string(),
        content: turn.answer.clone(),
    });
    QaRecord {
        messages,
        citations: turn.citations.clone(),
        conversation_id: id.to_string(),
        turn: turn.turn,
    }
}

/// What a question brings from its conversation, worked out before retrieval.
pub struct ConversationContext {
    /// The conversation's id (new, or as the client gave it).
    pub id: String,
    /// Whether the conversation existed before this question.
    pub(crate) existing: bool,
    /// Whether the turn is stored: not for conversations a client carries itself (the
    /// OpenAI-style `messages` of a chat completion).
    pub(crate) store: bool,
    /// The most recent earlier turns, oldest first, for the prompt.
    pub history: Vec<HistoryTurn>,
    /// What to search for.
    pub search_query: String,
    /// How `search_query` was made, if it is not the question.
    pub rewrite: Option<QueryRewrite>,
}
