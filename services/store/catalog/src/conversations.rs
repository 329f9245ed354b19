//! Where conversations and the ratings of their answers are kept: a redb file of their own
//! in the data directory ([`EmbeddedConversations`]), or the PostgreSQL catalog's
//! database, shared by every API node (see [`PostgresCatalog`](crate::PostgresCatalog)).
//!
//! Conversations are user data with their own lifecycle: they never take part in the
//! catalog's document/index consistency, so they are a store of their own.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use zhiku_schemas::{Conversation, ConversationSummary, ConversationTurn, Feedback};

use crate::{CatalogError, decode, encode};

/// Characters of the first question kept as a conversation's title.
pub const TITLE_CHARS: usize = 80;

/// Storage of conversations, turn by turn. Implementations number turns and enforce the
/// turn limit inside one transaction, so two nodes appending to one conversation at once
/// cannot give two turns the same number.
pub trait ConversationLog: Send + Sync {
    /// The conversation's knowledge base, number of turns and last `n` turns (oldest
    /// first), or `None` if it does not exist.
    fn recent(
        &self,
        id: &str,
        n: usize,
    ) -> Result<Option<(String, u32, Vec<ConversationTurn>)>, CatalogError>;

    /// A whole conversation.
    fn get(&self, id: &str) -> Result<Option<Conversation>, CatalogError>;

    /// Conversations, of one knowledge base or all, most recently updated first.
    fn list(&self, kb: Option<&str>) -> Result<Vec<ConversationSummary>, CatalogError>;

    /// Appends a turn, numbering it, and returns its number. `existing` says whether the
    /// conversation must already exist in `kb` ([`CatalogError::NotFound`] otherwise) or
    /// must be created; a conversation at `max_turns` is [`CatalogError::Full`].
    fn append(
        &self,
        id: &str,
        kb: &str,
        existing: bool,
        max_turns: u32,
        turn: ConversationTurn,
    ) -> Result<u32, CatalogError>;

    /// Sets the feedback of turn `turn` (numbered from 1), replacing an earlier one.
    fn rate(&self, id: &str, turn: u32, feedback: Feedback) -> Result<(), CatalogError>;

    /// Deletes a conversation; false if it did not exist.
    fn delete(&self, id: &str) -> Result<bool, CatalogError>;

    /// Deletes the conversations last updated before `cutoff` (RFC 3339), ratings
    /// included; returns how many.
    fn prune(&self, cutoff: &str) -> Result<usize, CatalogError>;

    /// Deletes every conversation of a knowledge base.
    fn purge_kb(&self, kb: &str) -> Result<(), CatalogError>;

    /// Calls `visit` with each conversation of `kb` (oldest first) that has a turn in
    /// which `select` holds, with all its turns in order, until `visit` returns false.
    fn scan_kb(
        &self,
        kb: &str,
        select: &dyn Fn(&ConversationTurn) -> bool,
        visit: &mut dyn FnMut(&str, &[ConversationTurn]) -> bool,
    ) -> Result<(), CatalogError>;
}

/// A conversation without its turns, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) kb: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) turns: u32,
    /// The start of the first question ([`TITLE_CHARS`]).
    #[serde(default)]
    pub(crate) title: String,
}

impl Meta {
    pub(crate) fn summary(&self, id: &str) -> ConversationSummary {
        ConversationSummary {
            id: id.to_string(),
            kb: self.kb.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            turns: self.turns,
            title: self.title.clone(),
        }
    }

    /// The record after appending `turn` to the conversation `stored` (`None`: it does
    /// not exist yet), numbering the turn; the checks every engine makes.
    pub(crate) fn after_append(
        stored: Option<Meta>,
        id: &str,
        kb: &str,
        existing: bool,
        max_turns: u32,
        turn: &mut ConversationTurn,
    ) -> Result<Meta, CatalogError> {
        let mut meta = match (stored, existing) {
            (Some(meta), true) if meta.kb == kb => meta,
            // Deleted while the answer was being generated.
            (None, true) | (Some(_), true) => return Err(CatalogError::NotFound(id.into())),
            (None, false) => Meta {
                kb: kb.to_string(),
                created_at: turn.created_at.clone(),
                updated_at: turn.created_at.clone(),
                turns: 0,
                title: turn.question.chars().take(TITLE_CHARS).collect(),
            },
            (Some(_), false) => {
                return Err(CatalogError::Storage(format!(
                    "new conversation id {id} is already taken"
                )));
            }
        };
        if meta.turns >= max_turns {
            return Err(CatalogError::Full {
                id: id.into(),
                max_turns,
            });
        }
        meta.turns += 1;
        meta.updated_at = turn.created_at.clone();
        turn.turn = meta.turns;
        Ok(meta)
    }

    /// Checks that turn `turn` exists.
    pub(crate) fn check_turn(&self, turn: u32) -> Result<(), CatalogError> {
        if turn == 0 || turn > self.turns {
            return Err(CatalogError::NoSuchTurn {
                turn,
                turns: self.turns,
            });
        }
        Ok(())
    }
}

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

fn turn_key(id: &str, turn: u32) -> String {
    // Zero-padded so a conversation's turns sort in order.
    format!("{id}{SEP}{turn:010}")
}

fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}{SEP}"), format!("{prefix}{SEP}{END}"))
}

/// The conversations of one data directory, in `<data>/conversations.redb`.
pub struct EmbeddedConversations {
    db: Database,
}

impl EmbeddedConversations {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let db = Database::create(path)
            .map_err(|e| CatalogError::Storage(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(META)?;
            txn.open_table(TURNS)?;
            txn.open_table(BY_KB)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    fn meta(txn: &redb::ReadTransaction, id: &str) -> Result<Option<Meta>, CatalogError> {
        txn.open_table(META)?
            .get(id)?
            .map(|v| decode::<Meta>(v.value()))
            .transpose()
    }

    fn turns(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
    ) -> Result<Vec<ConversationTurn>, CatalogError> {
        let (start, end) = prefix_range(id);
        let mut turns = Vec::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            turns.push(decode(entry?.1.value())?);
        }
        Ok(turns)
    }

    /// Removes a conversation's records within `txn`; false if it did not exist.
    fn remove(txn: &redb::WriteTransaction, id: &str) -> Result<bool, CatalogError> {
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
}

impl ConversationLog for EmbeddedConversations {
    fn recent(
        &self,
        id: &str,
        n: usize,
    ) -> Result<Option<(String, u32, Vec<ConversationTurn>)>, CatalogError> {
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

    fn get(&self, id: &str) -> Result<Option<Conversation>, CatalogError> {
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

    fn list(&self, kb: Option<&str>) -> Result<Vec<ConversationSummary>, CatalogError> {
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

    fn append(
        &self,
        id: &str,
        kb: &str,
        existing: bool,
        max_turns: u32,
        mut turn: ConversationTurn,
    ) -> Result<u32, CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta_table = txn.open_table(META)?;
            let stored = meta_table
                .get(id)?
                .map(|v| decode::<Meta>(v.value()))
                .transpose()?;
            let meta = Meta::after_append(stored, id, kb, existing, max_turns, &mut turn)?;
            txn.open_table(TURNS)?
                .insert(turn_key(id, turn.turn).as_str(), encode(&turn).as_slice())?;
            meta_table.insert(id, encode(&meta).as_slice())?;
            txn.open_table(BY_KB)?
                .insert(format!("{kb}{SEP}{id}").as_str(), ())?;
        }
        txn.commit()?;
        Ok(turn.turn)
    }

    fn rate(&self, id: &str, turn: u32, feedback: Feedback) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta_table = txn.open_table(META)?;
            let mut meta = meta_table
                .get(id)?
                .map(|v| decode::<Meta>(v.value()))
                .transpose()?
                .ok_or_else(|| CatalogError::NotFound(id.into()))?;
            meta.check_turn(turn)?;
            let mut turns = txn.open_table(TURNS)?;
            let key = turn_key(id, turn);
            let mut record: ConversationTurn = decode(
                turns
                    .get(key.as_str())?
                    .ok_or_else(|| CatalogError::Corrupt(format!("turn {key:?} is missing")))?
                    .value(),
            )?;
            meta.updated_at = feedback.at.clone();
            record.feedback = Some(feedback);
            turns.insert(key.as_str(), encode(&record).as_slice())?;
            meta_table.insert(id, encode(&meta).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<bool, CatalogError> {
        let txn = self.db.begin_write()?;
        let existed = Self::remove(&txn, id)?;
        txn.commit()?;
        Ok(existed)
    }

    fn prune(&self, cutoff: &str) -> Result<usize, CatalogError> {
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

    fn purge_kb(&self, kb: &str) -> Result<(), CatalogError> {
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

    fn scan_kb(
        &self,
        kb: &str,
        select: &dyn Fn(&ConversationTurn) -> bool,
        visit: &mut dyn FnMut(&str, &[ConversationTurn]) -> bool,
    ) -> Result<(), CatalogError> {
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
            if turns.iter().any(select) && !visit(&id, &turns) {
                break;
            }
        }
        Ok(())
    }
}
