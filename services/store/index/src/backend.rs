//! Where a KB's stores live: embedded in its directory (the default), or in a Qdrant
//! cluster shared by every node.

use std::path::Path;
use std::sync::Arc;

use crate::kb::io_err;
use crate::{
    EdgeVectorStore, HnswParams, IndexError, QdrantConnection, QdrantVectorStore, VectorStore,
};

/// The kind of store every KB of a registry uses.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// A Qdrant Edge shard and a Tantivy index in each KB's directory.
    Embedded(HnswParams),
    /// One collection per KB store in a Qdrant cluster, holding dense and BM25 vectors.
    Qdrant(Arc<QdrantConnection>),
}

impl From<HnswParams> for StoreBackend {
    fn from(hnsw: HnswParams) -> Self {
        StoreBackend::Embedded(hnsw)
    }
}

impl StoreBackend {
    /// Opens (creating if absent) store `store` of KB `kb`, whose directory is `dir`.
    pub(crate) fn open(
        &self,
        dir: &Path,
        kb: &str,
        store: &str,
        dimension: usize,
    ) -> Result<Arc<dyn VectorStore>, IndexError> {
        Ok(match self {
            StoreBackend::Embedded(hnsw) => {
                Arc::new(EdgeVectorStore::open(&dir.join(store), dimension, *hnsw)?)
            }
            StoreBackend::Qdrant(connection) => Arc::new(QdrantVectorStore::open(
                connection.clone(),
                kb,
                store,
                dimension,
            )?),
        })
    }

    /// Removes the stores of KB `kb` other than `keep` (every one with `""`): ones a
    /// reindex replaced, half-built by one that crashed, or left by a deleted KB.
    pub(crate) fn remove_retired(
        &self,
        dir: &Path,
        kb: &str,
        keep: &str,
    ) -> Result<(), IndexError> {
        match self {
            StoreBackend::Embedded(_) => remove_retired_dirs(dir, keep),
            StoreBackend::Qdrant(connection) => connection.remove_retired(kb, keep),
        }
    }
}

/// Removes vector store directories in a KB directory other than `keep`.
fn remove_retired_dirs(dir: &Path, keep: &str) -> Result<(), IndexError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("vectors") && name != keep && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        }
    }
    Ok(())
}
