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
}

impl Meta {
    fn summary(&self, id: &str) -> ConversationSummary {
        ConversationSummary {
            id: id.to_string(),
            kb: self.kb.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            turns: self.turns,
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

/// Making a follow-up question stand alone for retrieval.
///
/// Only a question that needs its conversation is rewritten: one that refers back
/// ("it", "these", "它", "这个") or names at most one subject of its own ("And the
/// price?"). Anything else is searched as asked, so a change of topic is not dragged back
/// to the previous one.
///
/// The rewrite adds the key terms of the previous turn's search query (which carries
/// the terms of the turns before it, so a chain of follow-ups keeps its subject). In
/// `model` mode the LLM is asked first, at temperature 0; its rewrite is used only if
/// it is one short line in the question's language, still a question when the
/// follow-up is one, cites nothing, keeps the follow-up's own content words and at least
/// half of the previous key terms. Otherwise, and in `keywords` mode, the key terms are
/// appended to the question in parentheses.
#[cfg(test)]
mod store_tests {
    use super::*;

    fn turn(at: &str) -> ConversationTurn {
        ConversationTurn {
            turn: 0,
            question: "q".into(),
            search_query: "q".into(),
            rewrite: None,
            answer: "a".into(),
            grounded: true,
            citations: Vec::new(),
            context: Vec::new(),
            history_turns_used: 0,
            created_at: at.into(),
            feedback: None,
        }
    }

    #[test]
    fn conversations_past_their_retention_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConversationStore::open(&dir.path().join("c.redb")).unwrap();
        store
            .append("old", "kb", false, 10, turn("2020-01-01T00:00:00Z"))
            .unwrap();
        store
            .append("old", "kb", true, 10, turn("2020-01-02T00:00:00Z"))
            .unwrap();
        // Started long ago, but asked again today: kept.
        store
            .append("busy", "kb", false, 10, turn("2020-01-01T00:00:00Z"))
            .unwrap();
        store
            .append("busy", "kb", true, 10, turn(&now_rfc3339()))
            .unwrap();
        store
            .append("new", "kb2", false, 10, turn(&now_rfc3339()))
            .unwrap();
        let cutoff = zhiku_catalog::rfc3339_days_ago(30);
        assert_eq!(store.prune(&cutoff).unwrap(), 1);
        assert!(store.get("old").unwrap().is_none());
        assert_eq!(store.get("busy").unwrap().unwrap().turns.len(), 2);
        let listed: Vec<String> = store
            .list(None)
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(store.prune(&cutoff).unwrap(), 0);
    }
}

/// Follow-up questions made standalone for search: which questions lean on the previous
/// turn, the key terms carried over, and the check of a model's rewrite.
pub mod rewrite {
    use super::*;
    use zhiku_index::analyzer::{is_stopword, terms, words};

    /// Most key terms carried over from the previous search query.
    const MAX_KEY_TERMS: usize = 8;
    /// Longest model rewrite accepted, in characters.
    const MAX_REWRITE_CHARS: usize = 300;

    /// Words that point back at something said before.
    const EN_ANAPHORA: &[&str] = &[
        // Not "that" or "there": as a relative pronoun and in "is there" they refer to
        // nothing said before.
        "it", "its", "itself", "they", "them", "their", "theirs", "this", "these", "those", "he",
        "him", "his", "she", "her", "former", "latter", "above", "same",
    ];
    const ZH_ANAPHORA: &[&str] = &[
        "它", "它们", "他", "她", "他们", "她们", "其", "该", "此", "上述", "前者", "后者", "其中",
    ];

    fn is_cjk(c: char) -> bool {
        matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF)
    }

    /// Whether a word carries meaning on its own: not a stopword, and not too short to
    /// (Latin words of one or two letters, single ideographs), though `S3` or `v2` are.
    fn is_content(word: &str) -> bool {
        if is_stopword(word) {
            return false;
        }
        let cjk = word.chars().filter(|c| is_cjk(*c)).count();
        let len = word.chars().count();
        if cjk > 0 {
            len >= 2
        } else {
            len >= 3 || (len == 2 && word.chars().any(|c| c.is_ascii_digit()))
        }
    }

    fn refers_back(word: &str) -> bool {
        let lower = word.to_lowercase();
        EN_ANAPHORA.contains(&lower.as_str())
            || ZH_ANAPHORA.contains(&word)
            // 这款, 那里, 这种, 这项…: a demonstrative pointing at the previous subject.
            || (word.chars().count() > 1 && (word.starts_with('这') || word.starts_with('那')))
            || word == "这"
            || word == "那"
    }

    /// The words of a text with runs of single ideographs joined: jieba cuts words it
    /// does not know (年假) into characters, which alone mean little.
    fn joined_words(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut run = String::new();
        let single = |w: &str| {
            let mut chars = w.chars();
            chars.next().is_some_and(is_cjk) && chars.next().is_none() && !is_stopword(w)
        };
        for word in words(text) {
            if single(&word) {
                run.push_str(&word);
                continue;
            }
            if !run.is_empty() {
                out.push(std::mem::take(&mut run));
            }
            out.push(word);
        }
        if !run.is_empty() {
            out.push(run);
        }
        out
    }

    /// Whether the question needs its conversation to be understood.
    pub fn needs_context(question: &str) -> bool {
        words(question).iter().any(|w| refers_back(w))
            || joined_words(question)
                .iter()
                .filter(|w| is_content(w))
                .count()
                <= 1
    }

    /// The text's sentences, those that ask first: a long question is mostly background,
    /// and its subject is in the sentence that asks. Otherwise the last come first.
    fn sentences_asking_first(text: &str) -> Vec<&str> {
        let mut sentences: Vec<&str> = text
            .split_inclusive(['.', '!', '?', '。', '！', '？', '\n'])
            .filter(|s| !s.trim().is_empty())
            .collect();
        sentences.reverse();
        // Stable: within each group the order stays last to first.
        sentences.sort_by_key(|s| !s.trim_end().ends_with(['?', '？']));
        sentences
    }

    /// The content words of a text, as written, first occurrence of each (ignoring
    /// case), the asking sentences' first.
    fn content_words(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let words = sentences_asking_first(text)
            .into_iter()
            .flat_map(joined_words);
        for word in words {
            if is_content(&word) && !out.iter().any(|w| w.to_lowercase() == word.to_lowercase()) {
                out.push(word);
            }
        }
        out
    }

    /// The first [`MAX_KEY_TERMS`] content words of a text.
    pub fn key_terms(text: &str) -> Vec<String> {
        let mut words = content_words(text);
        words.truncate(MAX_KEY_TERMS);
        words
    }

    /// What a follow-up to a turn is about: the terms that turn's search query carried
    /// beyond its question (the subject it continued) first, then its question's own
    /// words, at most [`MAX_KEY_TERMS`]. A chain of follow-ups thus keeps its subject
    /// ahead of what each one asked about it.
    pub fn subject_terms(question: &str, search_query: &str) -> Vec<String> {
        let own = content_words(question);
        let mut out: Vec<String> = content_words(search_query)
            .into_iter()
            .filter(|w| !own.iter().any(|o| o.to_lowercase() == w.to_lowercase()))
            .collect();
        out.extend(own);
        out.truncate(MAX_KEY_TERMS);
        out
    }

    /// Whether `text` contains `word` as the index would match it (stemmed, folded).
    fn mentions(text_terms: &[String], word: &str) -> bool {
        let word_terms = terms(word);
        !word_terms.is_empty() && word_terms.iter().all(|t| text_terms.contains(t))
    }

    /// The search query for `question`, a follow-up to `previous`, and how it was made
    /// (`None`: as asked).
    pub fn standalone(
        question: &str,
        previous: &ConversationTurn,
        mode: RewriteMode,
        generator: &dyn Generator,
    ) -> (String, Option<QueryRewrite>) {
        if mode == RewriteMode::Off || !needs_context(question) {
            return (question.to_string(), None);
        }
        let asked = terms(question);
        let carried: Vec<String> = subject_terms(&previous.question, &previous.search_query)
            .into_iter()
            .filter(|t| !mentions(&asked, t))
            .collect();
        if carried.is_empty() {
            // The question already names everything the previous one was about.
            return (question.to_string(), None);
        }
        if mode == RewriteMode::Model {
            match model_rewrite(question, previous, generator) {
                Ok((rewrite, true)) => {
                    if let Some(accepted) = check_model_rewrite(&rewrite, question, &carried) {
                        return (accepted, Some(QueryRewrite::Model));
                    }
                    tracing::debug!(%rewrite, "model rewrite rejected; using key terms");
                }
                Ok((rewrite, false)) => {
                    tracing::debug!(%rewrite, "model rewrite too long; using key terms")
                }
                Err(e) => tracing::warn!(error = %e, "model rewrite failed; using key terms"),
            }
        }
        (
            keyword_query(question, &carried),
            Some(QueryRewrite::Keywords),
        )
    }

    fn one_line(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The question with the carried key terms after it in parentheses.
    pub fn keyword_query(question: &str, carried: &[String]) -> String {
        if is_mostly_cjk(question) {
            format!("{question}（{}）", carried.join(" "))
        } else {
            format!("{question} ({})", carried.join(" "))
        }
    }

    /// The model's rewrite, and whether it ended within its budget.
    fn model_rewrite(
        question: &str,
        previous: &ConversationTurn,
        generator: &dyn Generator,
    ) -> Result<(String, bool), zhiku_generate::GenerateError> {
        let (answer, _) = resolve_citations(&previous.answer, 0);
        // The start of the answer names the subject; the rest only costs time.
        let answer = one_line(&answer);
        let answer: String = answer.chars().take(300).collect();
        // A long question's subject is usually at its end.
        let previous_question: String = {
            let q = one_line(&previous.question);
            let skip = q.chars().count().saturating_sub(500);
            q.chars().skip(skip).collect()
        };
        let messages = if is_mostly_cjk(question) {
            vec![
                ChatMessage::system("你把追问改写成一个独立完整的问题。只输出改写后的问题。"),
                ChatMessage::user(format!(
                    "上一个问题：{previous_question}\n上一个回答：{answer}\n追问：{question}\n\n请把追问改写成不看对话也能理解的完整问题，写出它所指的对象。"
                )),
            ]
        } else {
            vec![
                ChatMessage::system(
                    "You rewrite a follow-up question into a standalone question. Reply with the rewritten question only.",
                ),
                ChatMessage::user(format!(
                    "Previous question: {previous_question}\nPrevious answer: {answer}\nFollow-up question: {question}\n\nRewrite the follow-up question so that it can be understood without the conversation, naming what it refers to."
                )),
            ]
        };
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: 64,
            stop: vec!["\n".into()],
            ..SamplingParams::default()
        };
        let generation = generator.generate(&messages, &params, &mut |_| true)?;
        let finished = generation.finish_reason == zhiku_generate::FinishReason::Stop;
        Ok((generation.text, finished))
    }

    /// The model's rewrite cleaned of labels and quotes, if it passes the checks (see the
    /// module documentation).
    pub fn check_model_rewrite(output: &str, question: &str, carried: &[String]) -> Option<String> {
        let mut text = output.trim();
        for label in [
            "Standalone question:",
            "Rewritten question:",
            "Question:",
            "改写后的问题：",
            "问题：",
        ] {
            if let Some(rest) = text.strip_prefix(label) {
                text = rest.trim();
            }
        }
        let text = text
            .trim_matches(|c| matches!(c, '"' | '\'' | '“' | '”' | '「' | '」'))
            .trim();
        let asks = |t: &str| t.ends_with('?') || t.ends_with('？');
        let acceptable = !text.is_empty()
            && text.chars().count() <= MAX_REWRITE_CHARS
            && !text.contains('\n')
            && is_mostly_cjk(text) == is_mostly_cjk(question)
            && (!asks(question) || asks(text))
            && resolve_citations(text, 0).0 == text
            && text.to_lowercase() != question.trim().to_lowercase();
        if !acceptable {
            return None;
        }
        let got = terms(text);
        let own = key_terms(question);
        let keeps_own = own.iter().all(|w| mentions(&got, w));
        let kept = carried.iter().filter(|w| mentions(&got, w)).count();
        (keeps_own && kept * 2 >= carried.len()).then(|| text.to_string())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn follow_ups_are_told_from_standalone_questions() {
            assert!(needs_context("What does it include?"));
            assert!(needs_context("And the price?"));
            assert!(needs_context("How much do these cost?"));
            assert!(needs_context("它包括什么？"));
            assert!(needs_context("这款产品多少钱？"));
            assert!(!needs_context("What is the vacation policy?"));
            assert!(!needs_context("How long are nightly backups kept?"));
            assert!(!needs_context("年假政策是什么？"));
        }

        #[test]
        fn key_terms_keep_content_words_as_written() {
            assert_eq!(
                key_terms("What is the Zhiku Backup Pro plan?"),
                ["Zhiku", "Backup", "Pro", "plan"]
            );
            assert_eq!(key_terms("Is S3 in the v2 API? api"), ["S3", "v2", "API"]);
            let zh = key_terms("智库备份专业版是什么？");
            assert!(
                !zh.is_empty() && zh.iter().all(|w| w.chars().count() >= 2),
                "{zh:?}"
            );
            assert!(!zh.iter().any(|w| w == "什么"), "{zh:?}");
            // jieba cuts 年假 into characters; they are joined again.
            assert_eq!(key_terms("年假政策是什么？"), ["年假", "政策"]);
        }

        #[test]
        fn a_chain_of_follow_ups_keeps_its_subject_first() {
            assert_eq!(
                subject_terms(
                    "What is the Zhiku Backup Pro plan?",
                    "What is the Zhiku Backup Pro plan?"
                ),
                ["Zhiku", "Backup", "Pro", "plan"]
            );
            assert_eq!(
                key_terms(
                    "We compare offsite storage offers for the office. Our budget is small. \
                     So, what is the Zhiku Backup Pro plan? Please be brief."
                )[..4],
                ["Zhiku", "Backup", "Pro", "plan"]
            );
            assert_eq!(
                subject_terms(
                    "What does it include?",
                    "What does it include? (Zhiku Backup Pro plan)"
                ),
                ["Zhiku", "Backup", "Pro", "plan", "include"]
            );
        }

        #[test]
        fn keyword_query_appends_the_carried_terms() {
            let carried = key_terms("What is the Zhiku Backup Pro plan?");
            assert_eq!(
                keyword_query("What does it include?", &carried),
                "What does it include? (Zhiku Backup Pro plan)"
            );
            assert_eq!(
                keyword_query("它包括什么？", &["专业版".to_string()]),
                "它包括什么？（专业版）"
            );
        }

        #[test]
        fn model_rewrites_are_checked() {
            let carried = key_terms("What is the Zhiku Backup Pro plan?");
            let q = "What does it include?";
            assert_eq!(
                check_model_rewrite(
                    " Standalone question: \"What does the Zhiku Backup Pro plan include?\"",
                    q,
                    &carried
                )
                .as_deref(),
                Some("What does the Zhiku Backup Pro plan include?")
            );
            // Half the subject is enough.
            assert!(check_model_rewrite("What does Zhiku Backup include?", q, &carried).is_some());
            for bad in [
                "",
                "What does it include?",
                "The Pro plan includes daily backups [1].",
                "What does the plan include",
                "What does the Zhiku Backup Pro plan cost?",
                "智库备份专业版包括什么？",
                "What is included?",
            ] {
                assert_eq!(check_model_rewrite(bad, q, &carried), None, "{bad:?}");
            }
        }

        #[test]
        fn ids_are_checked() {
            assert!(check_id(&new_id()).is_ok());
            assert!(check_id("conv_0123").is_err());
            assert!(check_id("CONV_0123456789abcdef0123456789abcdef").is_err());
            assert!(check_id("conv_0123456789ABCDEF0123456789abcdef").is_err());
        }
    }
}
