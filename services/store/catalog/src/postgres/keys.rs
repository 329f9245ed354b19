//! API key records in the PostgreSQL catalog's database. The records are opaque JSON here:
//! what a key is and how it is checked belongs to the HTTP side (`zhiku_app::auth`).

use super::{PostgresCatalog, args, snapshot};
use crate::CatalogError;

impl PostgresCatalog {
    /// A number that changes whenever a key is added or removed.
    pub fn api_keys_generation(&self) -> Result<i64, CatalogError> {
        let rows = self.rows("SELECT value FROM api_keys_generation", args![])?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| CatalogError::Corrupt("api_keys_generation has no row".into()))
    }

    /// Every key record (JSON), oldest first, with the generation they are current at.
    pub fn api_keys(&self) -> Result<(i64, Vec<String>), CatalogError> {
        self.call(|pool| async move {
            let mut client = pool.get().await?;
            let txn = snapshot(&mut client).await?;
            let generation: i64 = txn
                .query_one("SELECT value FROM api_keys_generation", &[])
                .await?
                .get(0);
            let records = txn
                .query("SELECT record::text FROM api_keys ORDER BY seq", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok((generation, records))
        })
    }

    /// Stores a new key record; false (and nothing stored) if `id` is taken.
    pub fn insert_api_key(&self, id: &str, record: &str) -> Result<bool, CatalogError> {
        let (id, record) = (id.to_string(), record.to_string());
        self.call(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            let added = txn
                .execute(
                    "INSERT INTO api_keys (id, record) VALUES ($1, $2::text::jsonb) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&id, &record],
                )
                .await?;
            if added > 0 {
                txn.execute("UPDATE api_keys_generation SET value = value + 1", &[])
                    .await?;
            }
            txn.commit().await?;
            Ok(added > 0)
        })
    }

    /// Removes key `id`; false if there was none.
    pub fn delete_api_key(&self, id: &str) -> Result<bool, CatalogError> {
        let id = id.to_string();
        self.call(move |pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            let gone = txn
                .execute("DELETE FROM api_keys WHERE id = $1", &[&id])
                .await?;
            if gone > 0 {
                txn.execute("UPDATE api_keys_generation SET value = value + 1", &[])
                    .await?;
            }
            txn.commit().await?;
            Ok(gone > 0)
        })
    }
}
