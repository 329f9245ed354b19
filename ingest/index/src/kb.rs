//! One knowledge base on disk, and the registry of all of them.
//!
//! Layout of `<data>/kbs/<name>/`: `vectors/` (Qdrant Edge shard), `keywords/` (Tantivy)
//! and `kb.json` (which embedder built it, and the documents it holds).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use zhiku_schemas::{ChunkRecord, DocumentInfo, KbInfo, is_valid_kb_name};

use crate::{EdgeVectorStore, HnswParams, IndexError, KeywordIndex, VectorStore};

const META_FILE: &str = "kb.json";
const TRASH_DIR: &str = ".trash";

/// What a KB records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KbMeta {
    /// KB name.
    pub name: String,
    /// Embedding model that built the vectors; queries must use the same one.
    pub embedder: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Documents by id.
    #[serde(default)]
    pub documents: BTreeMap<String, DocumentInfo>,
}

/// A knowledge base: vector store, keyword index and metadata, kept in step.
pub struct KnowledgeBase {
    dir: PathBuf,
    vectors: Box<dyn VectorStore>,
    keywords: KeywordIndex,
    meta: RwLock<KbMeta>,
    // Writers take turns so the two indexes and kb.json change in the same order.
    write: Mutex<()>,
}

fn io_err(path: &Path, e: std::io::Error) -> IndexError {
    IndexError::Corrupt(format!("{}: {e}", path.display()))
}

impl KnowledgeBase {
    fn open_dir(dir: &Path, meta: KbMeta, hnsw: HnswParams) -> Result<Self, IndexError> {
        let vectors = EdgeVectorStore::open(&dir.join("vectors"), meta.dimension, hnsw)?;
        let keywords = KeywordIndex::open(&dir.join("keywords"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            vectors: Box::new(vectors),
            keywords,
            meta: RwLock::new(meta),
            write: Mutex::new(()),
        })
    }

    fn save_meta(&self, meta: &KbMeta) -> Result<(), IndexError> {
        let path = self.dir.join(META_FILE);
        let tmp = self.dir.join(format!("{META_FILE}.tmp"));
        let json =
            serde_json::to_vec_pretty(meta).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        // Write-then-rename: a crash leaves the old file or the new one, never half of one.
        std::fs::write(&tmp, json).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }

    /// The KB's metadata.
    pub fn meta(&self) -> KbMeta {
        self.meta.read().clone()
    }

    /// A KB may only be written or queried with the embedding model that built it.
    pub fn ensure_model(&self, embedder: &str, dimension: usize) -> Result<(), IndexError> {
        let meta = self.meta.read();
        if meta.embedder != embedder || meta.dimension != dimension {
            return Err(IndexError::ModelMismatch {
                kb: format!("{} ({} dims)", meta.embedder, meta.dimension),
                service: format!("{embedder} ({dimension} dims)"),
            });
        }
        Ok(())
    }

    /// Summary for listings.
    pub fn info(&self) -> KbInfo {
        let meta = self.meta.read();
        KbInfo {
            name: meta.name.clone(),
            documents: meta.documents.len(),
            chunks: meta.documents.values().map(|d| d.chunks).sum(),
            embedder: meta.embedder.clone(),
            dimension: meta.dimension,
        }
    }

    /// Replaces a document (or adds it) with these chunks and their vectors, then makes it
    /// searchable: the old chunks are removed from both indexes first.
    pub fn replace_document(
        &self,
        document: DocumentInfo,
        points: Vec<(ChunkRecord, Vec<f32>)>,
    ) -> Result<(), IndexError> {
        let _turn = self.write.lock();
        self.vectors.delete_document(&document.id)?;
        self.vectors.upsert(&points)?;
        let records: Vec<ChunkRecord> = points.into_iter().map(|(r, _)| r).collect();
        self.keywords.replace_document(&document.id, &records)?;
        // No background optimizer runs in Qdrant Edge: index after every batch.
        self.vectors.optimize()?;
        let mut meta = self.meta.read().clone();
        meta.documents.insert(document.id.clone(), document);
        self.save_meta(&meta)?;
        *self.meta.write() = meta;
        Ok(())
    }

    /// Removes a document from both indexes. Returns whether it existed.
    pub fn delete_document(&self, document_id: &str) -> Result<bool, IndexError> {
        let _turn = self.write.lock();
        self.vectors.delete_document(document_id)?;
        self.keywords.delete_document(document_id)?;
        let mut meta = self.meta.read().clone();
        let existed = meta.documents.remove(document_id).is_some();
        self.save_meta(&meta)?;
        *self.meta.write() = meta;
        Ok(existed)
    }

    /// Nearest chunks to a query vector.
    pub fn dense_search(
        &self,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        self.vectors.search(vector, limit)
    }

    /// BM25 keyword search.
    pub fn keyword_search(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        self.keywords.search(query, limit)
    }
}

/// All knowledge bases under a data directory, opened lazily and shared.
pub struct KbRegistry {
    root: PathBuf,
    hnsw: HnswParams,
    open: RwLock<HashMap<String, Arc<KnowledgeBase>>>,
    // Creation and deletion take turns so two uploads cannot create the same KB twice.
    lifecycle: Mutex<()>,
}

impl KbRegistry {
    /// A registry over `<data_dir>/kbs`; leftovers of interrupted deletions are removed.
    pub fn open(data_dir: &Path, hnsw: HnswParams) -> Result<Self, IndexError> {
        let root = data_dir.join("kbs");
        std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        let trash = root.join(TRASH_DIR);
        if trash.exists() {
            std::fs::remove_dir_all(&trash).map_err(|e| io_err(&trash, e))?;
        }
        Ok(Self {
            root,
            hnsw,
            open: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(()),
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The KB called `name`, if it exists.
    pub fn get(&self, name: &str) -> Result<Option<Arc<KnowledgeBase>>, IndexError> {
        if !is_valid_kb_name(name) {
            return Ok(None);
        }
        if let Some(kb) = self.open.read().get(name) {
            return Ok(Some(kb.clone()));
        }
        let _turn = self.lifecycle.lock();
        self.load(name)
    }

    fn load(&self, name: &str) -> Result<Option<Arc<KnowledgeBase>>, IndexError> {
        if let Some(kb) = self.open.read().get(name) {
            return Ok(Some(kb.clone()));
        }
        let dir = self.dir(name);
        let meta_path = dir.join(META_FILE);
        if !meta_path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&meta_path).map_err(|e| io_err(&meta_path, e))?;
        let meta: KbMeta = serde_json::from_slice(&bytes)
            .map_err(|e| IndexError::Corrupt(format!("{}: {e}", meta_path.display())))?;
        let kb = Arc::new(KnowledgeBase::open_dir(&dir, meta, self.hnsw)?);
        self.open.write().insert(name.to_string(), kb.clone());
        Ok(Some(kb))
    }

    /// The KB called `name`, created for this embedder if missing.
    pub fn get_or_create(
        &self,
        name: &str,
        embedder: &str,
        dimension: usize,
    ) -> Result<Arc<KnowledgeBase>, IndexError> {
        if let Some(kb) = self.get(name)? {
            return Ok(kb);
        }
        let _turn = self.lifecycle.lock();
        if let Some(kb) = self.load(name)? {
            return Ok(kb);
        }
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let meta = KbMeta {
            name: name.to_string(),
            embedder: embedder.to_string(),
            dimension,
            documents: BTreeMap::new(),
        };
        let kb = KnowledgeBase::open_dir(&dir, meta.clone(), self.hnsw)?;
        // kb.json is written last: its presence marks a complete KB.
        kb.save_meta(&meta)?;
        let kb = Arc::new(kb);
        self.open.write().insert(name.to_string(), kb.clone());
        Ok(kb)
    }

    /// Names of all KBs, sorted.
    pub fn names(&self) -> Result<Vec<String>, IndexError> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| io_err(&self.root, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_valid_kb_name(n) && self.dir(n).join(META_FILE).is_file())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes a KB and its directory. Returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, IndexError> {
        if !is_valid_kb_name(name) {
            return Ok(false);
        }
        let _turn = self.lifecycle.lock();
        let dir = self.dir(name);
        if !dir.join(META_FILE).is_file() {
            return Ok(false);
        }
        if let Some(kb) = self.open.write().remove(name) {
            // The shard flushes on drop through paths inside the directory, so it must be
            // closed before the directory goes. Requests hold a KB only briefly; loads wait
            // on the lifecycle lock meanwhile, so nothing reopens it.
            if let Err(kb) = close_when_unused(kb, Duration::from_secs(60)) {
                self.open.write().insert(name.to_string(), kb);
                return Err(IndexError::Busy(format!(
                    "knowledge base {name:?} is in use; try again"
                )));
            }
        }
        // Move aside first so the name is free at once; a crash mid-removal leaves only
        // trash, which the next start clears.
        let trash = self.root.join(TRASH_DIR);
        std::fs::create_dir_all(&trash).map_err(|e| io_err(&trash, e))?;
        let target = trash.join(format!("{name}-{}", uuid::Uuid::new_v4()));
        std::fs::rename(&dir, &target).map_err(|e| io_err(&dir, e))?;
        std::fs::remove_dir_all(&target).map_err(|e| io_err(&target, e))?;
        Ok(true)
    }
}

/// Drops the KB once no one else holds it, or gives it back after `patience`.
fn close_when_unused(
    mut kb: Arc<KnowledgeBase>,
    patience: Duration,
) -> Result<(), Arc<KnowledgeBase>> {
    let deadline = Instant::now() + patience;
    loop {
        match Arc::try_unwrap(kb) {
            Ok(owned) => {
                drop(owned);
                return Ok(());
            }
            Err(shared) if Instant::now() >= deadline => return Err(shared),
            Err(shared) => {
                kb = shared;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_replace_delete() {
        let dir = tempfile::tempdir().unwrap();
        let registry = KbRegistry::open(dir.path(), HnswParams::default()).unwrap();
        assert!(registry.get("docs").unwrap().is_none());
        let kb = registry.get_or_create("docs", "test-model", 2).unwrap();
        let record = ChunkRecord {
            chunk_id: ChunkRecord::make_id("d1", 0),
            document_id: "d1".into(),
            document_name: "a.txt".into(),
            chunk_index: 0,
            text: "hello world".into(),
            heading: None,
            page: None,
        };
        let info = DocumentInfo {
            id: "d1".into(),
            name: "a.txt".into(),
            chunks: 1,
        };
        kb.replace_document(info.clone(), vec![(record.clone(), vec![1.0, 0.0])])
            .unwrap();
        kb.replace_document(info, vec![(record, vec![0.0, 1.0])])
            .unwrap();
        assert_eq!(kb.info().chunks, 1);
        assert_eq!(kb.keyword_search("hello", 5).unwrap().len(), 1);
        assert_eq!(kb.dense_search(&[0.0, 1.0], 5).unwrap().len(), 1);
        assert_eq!(registry.names().unwrap(), vec!["docs"]);
        drop(kb);
        // One process owns a KB at a time: the shard's WAL is locked while open.
        drop(registry);

        let reopened = KbRegistry::open(dir.path(), HnswParams::default()).unwrap();
        let kb = reopened.get("docs").unwrap().unwrap();
        assert_eq!(kb.meta().embedder, "test-model");
        assert_eq!(kb.info().documents, 1);
        assert!(kb.delete_document("d1").unwrap());
        assert!(!kb.delete_document("d1").unwrap());
        drop(kb);
        assert!(reopened.delete("docs").unwrap());
        assert!(!reopened.delete("docs").unwrap());
        assert!(reopened.names().unwrap().is_empty());
        assert!(!dir.path().join("kbs/docs").exists());
    }
}
