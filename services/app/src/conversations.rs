//! Conversations: questions that continue earlier ones, their storage, the ratings users
//! give answers, and the good ones exported as fine-tuning data.
//!
//! A conversation belongs to one knowledge base. Each ask is one turn of a conversation
//! (a new one unless the request names one). Before retrieval a follow-up like "what
//! does it include?" is rewritten into a standalone search query (see [`rewrite`]); the
//! model then gets the most recent turns as chat history, as far as the context window
//! allows (see [`zhiku_generate::build_conversation_prompt`]).
//!
//! Conversations live in `<data>/conversations.redb`, apart from the catalog: they are
//! user data with their own lifecycle, and never take part in the catalog's
//! document/index consistency.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use zhiku_catalog::now_rfc3339;
use zhiku_generate::{
    ChatMessage, Generator, HistoryTurn, Role, SamplingParams, Source, grounded_messages,
    is_mostly_cjk, resolve_citations,
};
use zhiku_schemas::{
    ChatRecordMessage, Conversation, ConversationSummary, ConversationTurn, Feedback,
    FeedbackRequest, QaRecord, QueryRewrite, Rating, SourceRef,
};

pub mod rewrite;
#[cfg(test)]
mod tests;

use crate::config::RewriteMode;
use crate::error::ServiceError;

/// Conversation id → [`Meta`] (JSON).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("conversations");
/// `<id><SEP><turn, 10 digits>` → [`ConversationTurn`] (JSON): one key per turn, so a
/// turn is appended or rated without rewriting the whole conversation.
const TURNS: TableDefinition<&str, &[u8]> = TableDefinition::new("turns");
/// `<kb><SEP><id>`: the conversations of a knowledge base, for listing, export and
/// deletion with the KB.
const BY_KB: TableDefinition<&str, ()> = TableDefinition::new("conversations_by_kb");

/// Separates the parts of keys; it occurs in neither KB names nor conversation ids.
const SEP: char = '\u{1f}';
/// Sorts after every character of ids and turn numbers, closing a prefix range.
const END: char = '\u{7f}';

/// Longest feedback comment, in characters.
const MAX_COMMENT_CHARS: usize = 2000;

/// A conversation without its turns, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    kb: String,
    created_at: String,
    updated_at: String,
    turns: u32,
    /// The start of the first question ([`TITLE_CHARS`]).
    #[serde(default)]
    title: String,
}

/// Characters of the first question kept as a conversation's title.
const TITLE_CHARS: usize = 80;

impl Meta {
    fn summary(&self, id: &str) -> ConversationSummary {
        ConversationSummary {
            id: id.to_string(),
            kb: self.kb.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            turns: self.turns,
            title: self.title.clone(),
        }
    }
}

fn turn_key(id: &str, turn: u32) -> String {
    // Zero-padded so a conversation's turns sort in order.
    format!("{id}{SEP}{turn:010}")
}

fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}{SEP}"), format!("{prefix}{SEP}{END}"))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ServiceError::Storage(format!("a stored conversation is corrupt: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(value).expect("conversation records serialise")
}

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

/// The conversations of one data directory.
pub struct ConversationStore {
    db: Database,
}

impl ConversationStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ServiceError> {
        let db = Database::create(path)
            .map_err(|e| ServiceError::Storage(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(META)?;
            txn.open_table(TURNS)?;
            txn.open_table(BY_KB)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// A conversation's summary record, if it exists.
    fn meta(txn: &redb::ReadTransaction, id: &str) -> Result<Option<Meta>, ServiceError> {
        txn.open_table(META)?
            .get(id)?
            .map(|v| decode::<Meta>(v.value()))
            .transpose()
    }

    /// The conversation's knowledge base, number of turns and last `n` turns (oldest
    /// first), or `None` if it does not exist.
    pub(crate) fn recent(
        &self,
        id: &str,
        n: usize,
    ) -> Result<Option<(String, u32, Vec<ConversationTurn>)>, ServiceError> {
        let txn = self.db.begin_read()?;
        let Some(meta) = Self::meta(&txn, id)? else {
            return Ok(None);
        };
        let (start, end) = prefix_range(id);
        let mut turns = Vec::new();
        for entry in txn
            .open_table(TURNS)?
            .range(start.as_str()..end.as_str())?
            .rev()
            .take(n)
        {
            turns.push(decode::<ConversationTurn>(entry?.1.value())?);
        }
        turns.reverse();
        Ok(Some((meta.kb, meta.turns, turns)))
    }

    /// A whole conversation.
    pub fn get(&self, id: &str) -> Result<Option<Conversation>, ServiceError> {
        let txn = self.db.begin_read()?;
        let Some(meta) = Self::meta(&txn, id)? else {
            return Ok(None);
        };
        let turns = Self::turns(&txn.open_table(TURNS)?, id)?;
        Ok(Some(Conversation {
            id: id.to_string(),
            kb: meta.kb,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
            turns,
        }))
    }

    fn turns(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
    ) -> Result<Vec<ConversationTurn>, ServiceError> {
        let (start, end) = prefix_range(id);
        let mut turns = Vec::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            turns.push(decode(entry?.1.value())?);
        }
        Ok(turns)
    }

    /// Conversations, of one knowledge base or all, most recently updated first.
    pub fn list(&self, kb: Option<&str>) -> Result<Vec<ConversationSummary>, ServiceError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let mut out = Vec::new();
        match kb {
            Some(kb) => {
                let (start, end) = prefix_range(kb);
                for entry in txn.open_table(BY_KB)?.range(start.as_str()..end.as_str())? {
                    let key = entry?.0;
                    let id = &key.value()[start.len()..];
                    if let Some(m) = meta.get(id)? {
                        out.push(decode::<Meta>(m.value())?.summary(id));
                    }
                }
            }
            None => {
                for entry in meta.iter()? {
                    let (id, m) = entry?;
                    out.push(decode::<Meta>(m.value())?.summary(id.value()));
                }
            }
        }
        out.sort_by(|a, b| (&b.updated_at, &b.id).cmp(&(&a.updated_at, &a.id)));
        Ok(out)
    }

    /// Appends a turn, numbering it, and returns its number. `existing` says whether the
    /// conversation must already exist (a client named it) or must be created.
    pub(crate) fn append(
        &self,
        id: &str,
        kb: &str,
        existing: bool,
        max_turns: u32,
        mut turn: ConversationTurn,
    ) -> Result<u32, ServiceError> {
        let txn = self.db.begin_write()?;
        let number = {
            let mut meta_table = txn.open_table(META)?;
            let stored = meta_table
                .get(id)?
                .map(|v| decode::<Meta>(v.value()))
                .transpose()?;
            let mut meta = match (stored, existing) {
                (Some(meta), true) if meta.kb == kb => meta,
                // Deleted while the answer was being generated.
                (None, true) | (Some(_), true) => return Err(not_found(id)),
                (None, false) => Meta {
                    kb: kb.to_string(),
                    created_at: turn.created_at.clone(),
                    updated_at: turn.created_at.clone(),
                    turns: 0,
                    title: turn.question.chars().take(TITLE_CHARS).collect(),
                },
                (Some(_), false) => {
                    return Err(ServiceError::Internal(format!(
                        "new conversation id {id} is already taken"
                    )));
                }
            };
            if meta.turns >= max_turns {
                return Err(full(id, max_turns));
            }
            meta.turns += 1;
            meta.updated_at = turn.created_at.clone();
            turn.turn = meta.turns;
            txn.open_table(TURNS)?
                .insert(turn_key(id, turn.turn).as_str(), encode(&turn).as_slice())?;
            meta_table.insert(id, encode(&meta).as_slice())?;
            txn.open_table(BY_KB)?
                .insert(format!("{kb}{SEP}{id}").as_str(), ())?;
            turn.turn
        };
        txn.commit()?;
        Ok(number)
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
        let txn = self.db.begin_write()?;
        {
            let mut meta_table = txn.open_table(META)?;
            let mut meta = meta_table
                .get(id)?
                .map(|v| decode::<Meta>(v.value()))
                .transpose()?
                .ok_or_else(|| not_found(id))?;
            if request.turn == 0 || request.turn > meta.turns {
                return Err(ServiceError::bad_request(
                    "invalid_turn",
                    format!(
                        "turn {} does not exist: turns are numbered from 1 and this conversation has {}",
                        request.turn, meta.turns
                    ),
                ));
            }
            let mut turns = txn.open_table(TURNS)?;
            let key = turn_key(id, request.turn);
            let mut turn: ConversationTurn = decode(
                turns
                    .get(key.as_str())?
                    .ok_or_else(|| ServiceError::Storage(format!("turn {key:?} is missing")))?
                    .value(),
            )?;
            let at = now_rfc3339();
            turn.feedback = Some(Feedback {
                rating: request.rating,
                comment: request
                    .comment
                    .as_deref()
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
                at: at.clone(),
            });
            turns.insert(key.as_str(), encode(&turn).as_slice())?;
            meta.updated_at = at;
            meta_table.insert(id, encode(&meta).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Deletes a conversation; false if it did not exist.
    pub fn delete(&self, id: &str) -> Result<bool, ServiceError> {
        let txn = self.db.begin_write()?;
        let existed = Self::remove(&txn, id)?;
        txn.commit()?;
        Ok(existed)
    }

    /// Deletes the conversations last updated before `cutoff` (RFC 3339, see
    /// `zhiku_catalog::rfc3339_days_ago`), ratings included; returns how many.
    pub fn prune(&self, cutoff: &str) -> Result<usize, ServiceError> {
        let txn = self.db.begin_write()?;
        let mut old = Vec::new();
        for entry in txn.open_table(META)?.iter()? {
            let (id, value) = entry?;
            if decode::<Meta>(value.value())?.updated_at.as_str() < cutoff {
                old.push(id.value().to_string());
            }
        }
        for id in &old {
            Self::remove(&txn, id)?;
        }
        txn.commit()?;
        Ok(old.len())
    }

    /// Removes a conversation's records within `txn`; false if it did not exist.
    fn remove(txn: &redb::WriteTransaction, id: &str) -> Result<bool, ServiceError> {
        let meta = txn
            .open_table(META)?
            .remove(id)?
            .map(|v| decode::<Meta>(v.value()))
            .transpose()?;
        if let Some(meta) = &meta {
            let (start, end) = prefix_range(id);
            txn.open_table(TURNS)?
                .retain_in(start.as_str()..end.as_str(), |_, _| false)?;
            txn.open_table(BY_KB)?
                .remove(format!("{}{SEP}{id}", meta.kb).as_str())?;
        }
        Ok(meta.is_some())
    }

    /// Deletes every conversation of a knowledge base (which is being deleted: its
    /// answers' sources are gone, and a new KB of the same name must not inherit them).
    pub fn purge_kb(&self, kb: &str) -> Result<(), ServiceError> {
        let (start, end) = prefix_range(kb);
        let txn = self.db.begin_write()?;
        {
            let mut by_kb = txn.open_table(BY_KB)?;
            let mut ids = Vec::new();
            for entry in by_kb.range(start.as_str()..end.as_str())? {
                ids.push(entry?.0.value()[start.len()..].to_string());
            }
            by_kb.retain_in(start.as_str()..end.as_str(), |_, _| false)?;
            let mut meta = txn.open_table(META)?;
            let mut turns = txn.open_table(TURNS)?;
            for id in ids {
                meta.remove(id.as_str())?;
                let (from, to) = prefix_range(&id);
                turns.retain_in(from.as_str()..to.as_str(), |_, _| false)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Calls `emit` with a record of every turn of `kb` rated good, conversation by
    /// conversation (oldest conversation first) and in turn order, until it returns false.
    pub fn export_good(
        &self,
        kb: &str,
        emit: &mut dyn FnMut(QaRecord) -> bool,
    ) -> Result<(), ServiceError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let turns_table = txn.open_table(TURNS)?;
        let (start, end) = prefix_range(kb);
        let mut ids = Vec::new();
        for entry in txn.open_table(BY_KB)?.range(start.as_str()..end.as_str())? {
            let id = entry?.0.value()[start.len()..].to_string();
            if let Some(m) = meta.get(id.as_str())? {
                ids.push((decode::<Meta>(m.value())?.created_at, id));
            }
        }
        ids.sort();
        for (_, id) in ids {
            let turns = Self::turns(&turns_table, &id)?;
            for (i, turn) in turns.iter().enumerate() {
                let good = turn
                    .feedback
                    .as_ref()
                    .is_some_and(|f| f.rating == Rating::Good);
                if good && !emit(qa_record(&id, &turns[..i], turn)) {
                    return Ok(());
                }
            }
        }
        Ok(())
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
