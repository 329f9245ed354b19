//! Conversations in the PostgreSQL catalog's database (`conversations`,
//! `conversation_turns`): any API node continues any conversation.

use zhiku_schemas::{Conversation, ConversationSummary, ConversationTurn, Feedback};

use super::{PostgresCatalog, args, decode_text, encode_text, snapshot, sql_limit};
use crate::CatalogError;
use crate::conversations::{ConversationLog, Meta};

const META_COLUMNS: &str = "kb, created_at, updated_at, turns, title";

fn meta_of(row: &tokio_postgres::Row) -> Meta {
    Meta {
        kb: row.get(0),
        created_at: row.get(1),
        updated_at: row.get(2),
        turns: row.get::<_, i32>(3) as u32,
        title: row.get(4),
    }
}

/// A conversation's record and its last `n` turns, oldest first, read in one snapshot so
/// the turns are those the record counts.
async fn conversation(
    pool: deadpool_postgres::Pool,
    id: String,
    n: usize,
) -> Result<Option<(Meta, Vec<ConversationTurn>)>, CatalogError> {
    let mut client = pool.get().await?;
    let txn = snapshot(&mut client).await?;
    let Some(meta) = select_meta(&txn, &id, false).await? else {
        return Ok(None);
    };
    let rows = txn
        .query(
            "SELECT record::text FROM conversation_turns WHERE conversation_id = $1 \
             ORDER BY turn DESC LIMIT $2",
            &[&id, &sql_limit(n)],
        )
        .await?;
    let mut turns = rows
        .iter()
        .map(|r| decode_text(r.get(0)))
        .collect::<Result<Vec<ConversationTurn>, _>>()?;
    turns.reverse();
    Ok(Some((meta, turns)))
}

/// The record of conversation `id`; `lock` holds its row until the transaction ends, so
/// changes to one conversation take turns across nodes.
async fn select_meta(
    txn: &deadpool_postgres::Transaction<'_>,
    id: &str,
    lock: bool,
) -> Result<Option<Meta>, CatalogError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {META_COLUMNS} FROM conversations WHERE id = $1{lock}");
    Ok(txn.query_opt(&sql, &[&id]).await?.as_ref().map(meta_of))
}

impl ConversationLog for PostgresCatalog {
    fn recent(
        &self,
        id: &str,
        n: usize,
    ) -> Result<Option<(String, u32, Vec<ConversationTurn>)>, CatalogError> {
        let id = id.to_string();
        let found = self.call(move |pool| async move { conversation(pool, id, n).await })?;
        Ok(found.map(|(meta, turns)| (meta.kb, meta.turns, turns)))
    }

    fn get(&self, id: &str) -> Result<Option<Conversation>, CatalogError> {
        let id = id.to_string();
        let key = id.clone();
        let found =
            self.call(move |pool| async move { conversation(pool, key, usize::MAX).await })?;
        Ok(found.map(|(meta, turns)| Conversation {
            id,
            kb: meta.kb,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
            turns,
        }))
    }

    fn list(&self, kb: Option<&str>) -> Result<Vec<ConversationSummary>, CatalogError> {
        let rows = self.rows(
            &format!(
                "SELECT {META_COLUMNS}, id FROM conversations \
                 WHERE $1::text IS NULL OR kb = $1 ORDER BY updated_at DESC, id DESC"
            ),
            args![kb.map(str::to_string)],
        )?;
        Ok(rows.iter().map(|r| meta_of(r).summary(r.get(5))).collect())
    }

    fn append(
        &self,
        id: &str,
        kb: &str,
        existing: bool,
        max_turns: u32,
        mut turn: ConversationTurn,
    ) -> Result<u32, CatalogError> {
        let (id, kb) = (id.to_string(), kb.to_string());
        self.call(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            let stored = select_meta(&txn, &id, true).await?;
            let meta = Meta::after_append(stored, &id, &kb, existing, max_turns, &mut turn)?;
            txn.execute(
                "INSERT INTO conversations (id, kb, created_at, updated_at, turns, title) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE \
                 SET updated_at = EXCLUDED.updated_at, turns = EXCLUDED.turns",
                &[
                    &id,
                    &meta.kb,
                    &meta.created_at,
                    &meta.updated_at,
                    &(meta.turns as i32),
                    &meta.title,
                ],
            )
            .await?;
            txn.execute(
                "INSERT INTO conversation_turns (conversation_id, turn, record) \
                 VALUES ($1, $2, $3::text::jsonb)",
                &[&id, &(turn.turn as i32), &encode_text(&turn)],
            )
            .await?;
            txn.commit().await?;
            Ok(turn.turn)
        })
    }

    fn rate(&self, id: &str, turn: u32, feedback: Feedback) -> Result<(), CatalogError> {
        let id = id.to_string();
        self.call(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            let meta = select_meta(&txn, &id, true)
                .await?
                .ok_or_else(|| CatalogError::NotFound(id.clone()))?;
            meta.check_turn(turn)?;
            let number = turn as i32;
            let row = txn
                .query_opt(
                    "SELECT record::text FROM conversation_turns \
                     WHERE conversation_id = $1 AND turn = $2",
                    &[&id, &number],
                )
                .await?
                .ok_or_else(|| CatalogError::Corrupt(format!("turn {turn} of {id} is missing")))?;
            let mut record: ConversationTurn = decode_text(row.get(0))?;
            let at = feedback.at.clone();
            record.feedback = Some(feedback);
            txn.execute(
                "UPDATE conversation_turns SET record = $3::text::jsonb \
                 WHERE conversation_id = $1 AND turn = $2",
                &[&id, &number, &encode_text(&record)],
            )
            .await?;
            txn.execute(
                "UPDATE conversations SET updated_at = $2 WHERE id = $1",
                &[&id, &at],
            )
            .await?;
            txn.commit().await?;
            Ok(())
        })
    }

    fn delete(&self, id: &str) -> Result<bool, CatalogError> {
        let gone = self.execute(
            "DELETE FROM conversations WHERE id = $1",
            args![id.to_string()],
        )?;
        Ok(gone > 0)
    }

    fn prune(&self, cutoff: &str) -> Result<usize, CatalogError> {
        let gone = self.execute(
            "DELETE FROM conversations WHERE updated_at < $1",
            args![cutoff.to_string()],
        )?;
        Ok(gone as usize)
    }

    fn purge_kb(&self, kb: &str) -> Result<(), CatalogError> {
        self.execute(
            "DELETE FROM conversations WHERE kb = $1",
            args![kb.to_string()],
        )?;
        Ok(())
    }

    fn scan_kb(
        &self,
        kb: &str,
        select: &dyn Fn(&ConversationTurn) -> bool,
        visit: &mut dyn FnMut(&str, &[ConversationTurn]) -> bool,
    ) -> Result<(), CatalogError> {
        let rows: Vec<(String, String)> = self
            .rows(
                "SELECT c.id, t.record::text FROM conversations c \
                 JOIN conversation_turns t ON t.conversation_id = c.id \
                 WHERE c.kb = $1 ORDER BY c.created_at, c.id, t.turn",
                args![kb.to_string()],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut rows = rows.into_iter().peekable();
        while let Some((id, first)) = rows.next() {
            let mut turns: Vec<ConversationTurn> = vec![decode_text(&first)?];
            while let Some((_, record)) = rows.next_if(|(next, _)| *next == id) {
                turns.push(decode_text(&record)?);
            }
            if turns.iter().any(select) && !visit(&id, &turns) {
                break;
            }
        }
        Ok(())
    }
}
