//! One knowledge base on disk.
//!
//! Layout of `<data>/kbs/<name>/`: `vectors*/` (Qdrant Edge shard; the one `kb.json` names),
//! `keywords/` (Tantivy) and `kb.json` (which embedder built the vectors, and where they are).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};
use zhiku_catalog::{Catalog, Commit, Intent, now_rfc3339};
use zhiku_schemas::{
    ChunkRecord, DocumentInfo, DocumentStatus, KbInfo, SearchFilter, StoredCounts,
};

use crate::{HybridHits, IndexError, KeywordIndex, StoreBackend, VectorStore};

/// The file whose presence marks a complete KB directory.
pub(crate) const META_FILE: &str = "kb.json";

/// What a KB records about itself in `kb.json`. Documents live in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KbMeta {
    /// KB name.
    pub name: String,
    /// Embedding model that built the vectors; queries must use the same one.
    pub embedder: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Directory of the vector store inside the KB's directory. A reindex builds a new one
    /// beside it and switches by rewriting this file, which is atomic.
    #[serde(default = "default_vectors_dir")]
    pub vectors_dir: String,
}

pub(crate) fn default_vectors_dir() -> String {
    "vectors".into()
}

/// Turns a batch of chunks into one vector each, for [`KnowledgeBase::reindex`]; the
/// error text says why the model failed.
pub type ReEmbed<'a> = dyn FnMut(&[ChunkRecord]) -> Result<Vec<Vec<f32>>, String> + 'a;

/// What [`KnowledgeBase::reindex`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReindexReport {
    /// Model and dimension the vectors were built with before.
    pub from: (String, usize),
    /// Documents re-embedded.
    pub documents: usize,
    /// Chunks re-embedded.
    pub chunks: usize,
}

/// A new version of a document with its chunks and their vectors.
#[derive(Debug, Clone)]
pub struct DocumentWrite {
    /// The document; `version` and timestamps are assigned by [`KnowledgeBase::write`].
    pub document: DocumentInfo,
    /// Chunks and vectors in document order. Their version and metadata (tags, path,
    /// MIME type) are taken from `document` when written, so the stores cannot disagree
    /// with the catalog about them.
    pub points: Vec<(ChunkRecord, Vec<f32>)>,
}

/// What startup reconciliation of one KB found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Interrupted writes or deletes whose leftovers were removed.
    pub intents_replayed: usize,
    /// Whether the stores' chunk counts disagreed with the catalog, forcing a full scan.
    pub full_scan: bool,
    /// Stray `(document, version)` groups removed by the full scan.
    pub stray_versions_removed: usize,
    /// Documents whose chunks are missing from a store, now marked damaged.
    pub damaged: Vec<String>,
}

/// Current version and chunk count of each visible document.
type Visible = HashMap<String, (u64, usize)>;

/// A knowledge base: vector store, keyword index and their catalog entries, kept in step.
///
/// Both stores hold chunks tagged with their document's version; a chunk is visible only
/// if the catalog says its version is current. Replacing a document writes the new
/// version beside the old, switches the catalog in one commit, then drops the old chunks,
/// so a search sees one version or the other, never both or neither.
pub struct KnowledgeBase {
    dir: PathBuf,
    name: String,
    backend: StoreBackend,
    /// Swapped whole by a reindex; everyone else clones the `Arc` for the call at hand, so
    /// a search that began on the old store finishes on it.
    vectors: RwLock<Arc<dyn VectorStore>>,
    /// `None` when the vector store indexes keywords itself (a Qdrant collection).
    keywords: Option<KeywordIndex>,
    meta: RwLock<KbMeta>,
    catalog: Arc<dyn Catalog>,
    visible: RwLock<Visible>,
    /// Writes begun and not (successfully) finished: while non-zero, the stores may hold
    /// chunks that are not visible.
    unclean: AtomicUsize,
    /// Whether other processes change this KB too (a shared catalog): then `visible` and
    /// `meta` are a cache of the catalog, refreshed by [`KnowledgeBase::sync`].
    shared: bool,
    /// The catalog generation `visible` and `meta` were read at.
    seen: AtomicU64,
    // Writers take turns so the stores and the catalog change in the same order.
    write: Mutex<()>,
}

/// Syncs a directory's entries (files created or renamed in it) to disk.
fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> IndexError {
    IndexError::Corrupt(format!("{}: {e}", path.display()))
}

/// A consistent read view: the set of current versions cannot change while it is held,
/// so the dense and keyword sides of one search agree on every document's version.
pub struct KbView<'a> {
    kb: &'a KnowledgeBase,
    visible: RwLockReadGuard<'a, Visible>,
    vectors: Arc<dyn VectorStore>,
}

impl KbView<'_> {
    /// How many hits to ask a store for: twice the limit while invisible chunks may exist
    /// (a swap in flight, or a failed write awaiting the next start's cleanup), since
    /// they are filtered out afterwards; exactly the limit otherwise.
    fn fetch(&self, limit: usize) -> usize {
        // With a shared catalog, other nodes' writes in flight are never known here.
        if self.kb.shared || self.kb.unclean.load(Ordering::SeqCst) > 0 {
            limit * 2
        } else {
            limit
        }
    }

    fn keep(&self, hits: Vec<(ChunkRecord, f32)>, limit: usize) -> Vec<(ChunkRecord, f32)> {
        hits.into_iter()
            .filter(|(r, _)| {
                self.visible
                    .get(&r.document_id)
                    .is_some_and(|(v, _)| *v == r.version)
            })
            .take(limit)
            .collect()
    }

    /// Nearest visible chunks to a query vector among those matching `filter`.
    pub fn dense_search(
        &self,
        vector: &[f32],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        let hits = self.vectors.search(vector, self.fetch(limit), filter)?;
        Ok(self.keep(hits, limit))
    }

    /// The truly nearest visible chunks by brute force, to measure the approximate
    /// index's recall against.
    pub fn dense_search_exact(
        &self,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        let hits = self.vectors.search_exact(vector, self.fetch(limit))?;
        Ok(self.keep(hits, limit))
    }

    /// Up to `radius` chunks on each side of `hit` in its document (same version), in
    /// order, without the hit itself.
    pub fn neighbours(
        &self,
        hit: &ChunkRecord,
        radius: u32,
    ) -> Result<Vec<ChunkRecord>, IndexError> {
        if radius == 0 {
            return Ok(Vec::new());
        }
        let from = hit.chunk_index.saturating_sub(radius);
        let to = hit.chunk_index.saturating_add(radius);
        let chunks = self
            .vectors
            .chunks(&hit.document_id, hit.version, from, to)?;
        Ok(chunks
            .into_iter()
            .filter(|c| c.chunk_index != hit.chunk_index)
            .collect())
    }

    /// Every visible chunk, ordered by document id and then position. Loads them all into
    /// memory: meant for offline tools (evaluation), not for request paths.
    pub fn chunks(&self) -> Result<Vec<ChunkRecord>, IndexError> {
        let mut documents: Vec<(&String, &(u64, usize))> = self.visible.iter().collect();
        documents.sort();
        let mut chunks = Vec::new();
        for (id, &(version, count)) in documents {
            if count > 0 {
                let last = u32::try_from(count - 1).unwrap_or(u32::MAX);
                chunks.extend(self.vectors.chunks(id, version, 0, last)?);
            }
        }
        Ok(chunks)
    }

    /// Every visible document as (id, current version, chunk count), in no particular
    /// order. In memory: callers that keep something per document (e.g. its language)
    /// compare it with this to see what changed.
    pub fn documents(&self) -> Vec<(&str, u64, usize)> {
        self.visible
            .iter()
            .map(|(id, &(version, chunks))| (id.as_str(), version, chunks))
            .collect()
    }

    /// The first `limit` chunks of the current version of a visible document, in order;
    /// empty for a document that is not visible.
    pub fn document_chunks(&self, id: &str, limit: u32) -> Result<Vec<ChunkRecord>, IndexError> {
        match self.visible.get(id) {
            Some(&(version, count)) if count > 0 && limit > 0 => {
                let last = u32::try_from(count - 1).unwrap_or(u32::MAX).min(limit - 1);
                self.vectors.chunks(id, version, 0, last)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The stored vectors of chunks given as (document id, chunk index) of the documents'
    /// visible versions, in order; `None` for a chunk that is not visible now. Errors
    /// from a store that cannot give its vectors back.
    pub fn vectors_of(&self, chunks: &[(&str, u32)]) -> Result<Vec<Option<Vec<f32>>>, IndexError> {
        chunks
            .iter()
            .map(|&(id, index)| {
                let Some(&(version, _)) = self.visible.get(id) else {
                    return Ok(None);
                };
                let points = self.vectors.points(id, version, index, index)?;
                Ok(points.into_iter().next().map(|(_, vector)| vector))
            })
            .collect()
    }

    /// [`dense_search`](Self::dense_search) and [`keyword_search`](Self::keyword_search)
    /// for one hybrid query: one request to a store that holds both sides.
    pub fn hybrid_search(
        &self,
        vector: &[f32],
        terms: &[String],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<HybridHits, IndexError> {
        if self.kb.keywords.is_some() {
            return Ok((
                self.dense_search(vector, limit, filter)?,
                self.keyword_search(terms, limit, filter)?,
            ));
        }
        let (dense, keyword) =
            self.vectors
                .hybrid_search(vector, terms, self.fetch(limit), filter)?;
        Ok((self.keep(dense, limit), self.keep(keyword, limit)))
    }

    /// BM25 keyword search for a query's `terms` ([`analyzer::terms`](crate::analyzer::terms))
    /// over visible chunks matching `filter`.
    pub fn keyword_search(
        &self,
        terms: &[String],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        let hits = match &self.kb.keywords {
            Some(keywords) => keywords.search(terms, self.fetch(limit), filter)?,
            None => self
                .vectors
                .keyword_search(terms, self.fetch(limit), filter)?,
        };
        Ok(self.keep(hits, limit))
    }
}

impl KnowledgeBase {
    pub(crate) fn open_dir(
        dir: &Path,
        meta: KbMeta,
        backend: StoreBackend,
        catalog: Arc<dyn Catalog>,
    ) -> Result<Self, IndexError> {
        let shared = catalog.shared();
        // Read first: a change after it makes the next sync read everything again.
        let seen = catalog.kb_generation(&meta.name)?.unwrap_or(0);
        // With a shared catalog another node may be building a store right now (a
        // reindex): only the node that retires a store removes it.
        if !shared {
            backend.remove_retired(dir, &meta.name, &meta.vectors_dir)?;
        }
        let vectors = backend.open(dir, &meta.name, &meta.vectors_dir, meta.dimension)?;
        let keywords = if vectors.indexes_keywords() {
            None
        } else {
            let keywords = KeywordIndex::open(&dir.join("keywords")).map_err(|e| match e {
                IndexError::Outdated { detail, .. } => IndexError::Outdated {
                    what: format!("knowledge base {:?}", meta.name),
                    detail,
                },
                e => e,
            })?;
            Some(keywords)
        };
        let visible = catalog
            .all_documents(&meta.name)?
            .into_iter()
            .map(|d| (d.id, (d.version, d.chunks)))
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            name: meta.name.clone(),
            backend,
            vectors: RwLock::new(vectors),
            keywords,
            meta: RwLock::new(meta),
            catalog,
            visible: RwLock::new(visible),
            unclean: AtomicUsize::new(0),
            shared,
            seen: AtomicU64::new(seen),
            write: Mutex::new(()),
        })
    }

    /// With a shared catalog, brings what this process knows of the KB (its record, the
    /// current version of each document) up to `generation`, the catalog's now, if other
    /// nodes changed it since; a reindex elsewhere switches this process to the new store.
    pub fn sync(&self, generation: u64) -> Result<(), IndexError> {
        if !self.shared || self.seen.load(Ordering::SeqCst) == generation {
            return Ok(());
        }
        let Some((record, generation)) = self.catalog.kb_record(&self.name)? else {
            return Ok(());
        };
        let meta: KbMeta = serde_json::from_str(&record)
            .map_err(|e| IndexError::Corrupt(format!("the record of KB {}: {e}", self.name)))?;
        let visible: Visible = self
            .catalog
            .all_documents(&self.name)?
            .into_iter()
            .map(|d| (d.id, (d.version, d.chunks)))
            .collect();
        let store = {
            let current = self.meta.read();
            (current.vectors_dir != meta.vectors_dir).then(|| {
                self.backend
                    .open(&self.dir, &self.name, &meta.vectors_dir, meta.dimension)
            })
        };
        let mut guard = self.visible.write();
        if let Some(store) = store {
            *self.vectors.write() = store?;
        }
        *self.meta.write() = meta;
        *guard = visible;
        self.seen.store(generation, Ordering::SeqCst);
        Ok(())
    }

    pub(crate) fn save_meta(&self) -> Result<(), IndexError> {
        if self.shared {
            let json = serde_json::to_string(&*self.meta.read())
                .map_err(|e| IndexError::Corrupt(e.to_string()))?;
            return Ok(self.catalog.put_kb_record(&self.name, &json)?);
        }
        let path = self.dir.join(META_FILE);
        let tmp = self.dir.join(format!("{META_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&*self.meta.read())
            .map_err(|e| IndexError::Corrupt(e.to_string()))?;
        // Write, sync, rename, sync the directory: after a crash (or power loss) the file is
        // the old one or the new one, never half of one, and a rename that was reported
        // done is on disk.
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()
        };
        write().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(&self.dir)
    }

    /// The KB's metadata.
    pub fn meta(&self) -> KbMeta {
        self.meta.read().clone()
    }

    /// The vector store in use right now.
    fn vectors(&self) -> Arc<dyn VectorStore> {
        self.vectors.read().clone()
    }

    /// Persists both indexes to disk. Every write already ends with this; shutdown calls
    /// it once more so nothing depends on that staying true.
    pub fn flush(&self) -> Result<(), IndexError> {
        let _turn = self.write.lock();
        self.commit_keywords()?;
        self.vectors().flush()
    }

    /// Every visible document as (id, (current version, chunk count)), by id.
    fn visible_documents(&self) -> Vec<(String, (u64, usize))> {
        let mut documents: Vec<(String, (u64, usize))> = self
            .visible
            .read()
            .iter()
            .map(|(id, v)| (id.clone(), *v))
            .collect();
        documents.sort();
        documents
    }

    /// Makes the keyword index's changes searchable and durable, if the KB has one.
    fn commit_keywords(&self) -> Result<(), IndexError> {
        self.keywords.as_ref().map_or(Ok(()), KeywordIndex::commit)
    }

    /// Chunks in the keyword index: the vector store's own when it indexes keywords.
    fn keyword_count(&self) -> Result<usize, IndexError> {
        match &self.keywords {
            Some(keywords) => Ok(keywords.count()),
            None => self.vectors().count(),
        }
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
        let visible = self.visible.read();
        let meta = self.meta.read();
        KbInfo {
            name: self.name.clone(),
            documents: visible.len(),
            chunks: visible.values().map(|(_, chunks)| chunks).sum(),
            embedder: meta.embedder.clone(),
            dimension: meta.dimension,
            stored: None,
        }
    }

    /// Entries physically in each index.
    pub fn stored_counts(&self) -> Result<StoredCounts, IndexError> {
        Ok(StoredCounts {
            vectors: self.vectors().count()?,
            keywords: self.keyword_count()?,
        })
    }

    /// One document's catalog entry.
    pub fn document(&self, id: &str) -> Result<Option<DocumentInfo>, IndexError> {
        Ok(self.catalog.document(&self.name, id)?)
    }

    /// A page of documents in id order after `after`, and whether more follow.
    pub fn documents(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DocumentInfo>, bool), IndexError> {
        Ok(self.catalog.documents(&self.name, after, limit)?)
    }

    /// A consistent read view for one search.
    pub fn view(&self) -> KbView<'_> {
        KbView {
            kb: self,
            visible: self.visible.read(),
            vectors: self.vectors(),
        }
    }

    /// Writes new versions of documents and makes them current together with `extra`
    /// (job progress) in one catalog commit; then drops the old versions.
    ///
    /// Returns the documents as stored. On error nothing visible has changed: chunks
    /// already written stay invisible and are removed by the next reconciliation.
    pub fn write(
        &self,
        docs: Vec<DocumentWrite>,
        mut extra: Commit,
    ) -> Result<Vec<DocumentInfo>, IndexError> {
        let _turn = self.write.lock();
        let vectors = self.vectors();
        self.unclean.fetch_add(1, Ordering::SeqCst);
        let name = &self.name;
        let ids: Vec<&str> = docs.iter().map(|d| d.document.id.as_str()).collect();
        let versions = self.catalog.begin_versions(name, &ids)?;
        let now = now_rfc3339();
        let mut stored = Vec::with_capacity(docs.len());
        let mut intents = Vec::with_capacity(docs.len());
        let mut chunks = 0;
        for (write, version) in docs.into_iter().zip(versions) {
            let DocumentWrite {
                mut document,
                mut points,
            } = write;
            for (record, _) in &mut points {
                record.version = version;
                record.tags.clone_from(&document.tags);
                record.path.clone_from(&document.path);
                record.mime = document.format.clone().unwrap_or_default();
            }
            vectors.upsert(&points)?;
            let records: Vec<ChunkRecord> = points.into_iter().map(|(r, _)| r).collect();
            if let Some(keywords) = &self.keywords {
                keywords.add(&records)?;
            }
            chunks += records.len();
            let previous = self.catalog.document(name, &document.id)?;
            document.version = version;
            document.chunks = records.len();
            // A document written without chunks on purpose (a blank scan) stays `empty`
            // with its reason; anything else written is searchable.
            if document.status != DocumentStatus::Empty || !records.is_empty() {
                document.status = DocumentStatus::Indexed;
                document.reason = None;
            }
            document.created_at = previous
                .map(|p| p.created_at)
                .unwrap_or_else(|| now.clone());
            document.updated_at = now.clone();
            intents.push(Intent {
                document_id: document.id.clone(),
                version,
            });
            stored.push(document);
        }
        // Both stores durable before the catalog points at the new versions.
        self.commit_keywords()?;
        vectors.flush()?;
        extra.upserts = stored.clone();
        {
            // Taking the write lock waits for searches that still use the old versions.
            let mut visible = self.visible.write();
            self.catalog.commit(name, &extra)?;
            for doc in &stored {
                visible.insert(doc.id.clone(), (doc.version, doc.chunks));
            }
        }
        for doc in &stored {
            vectors.delete_versions(&doc.id, Some(doc.version))?;
            if let Some(keywords) = &self.keywords {
                keywords.delete_versions(&doc.id, Some(doc.version))?;
            }
        }
        self.commit_keywords()?;
        if chunks > 0 {
            // No background optimizer runs in Qdrant Edge: index after every batch.
            vectors.optimize()?;
        }
        vectors.flush()?;
        self.catalog.clear_intents(name, &intents)?;
        self.unclean.fetch_sub(1, Ordering::SeqCst);
        Ok(stored)
    }

    /// Records job progress that produced no document (failed or unchanged files).
    pub fn record(&self, extra: &Commit) -> Result<(), IndexError> {
        Ok(self.catalog.commit(&self.name, extra)?)
    }

    /// Removes a document from both indexes. Returns whether it existed.
    pub fn delete_document(&self, document_id: &str) -> Result<bool, IndexError> {
        let _turn = self.write.lock();
        let name = &self.name;
        if self.catalog.document(name, document_id)?.is_none() {
            return Ok(false);
        }
        self.unclean.fetch_add(1, Ordering::SeqCst);
        {
            let mut visible = self.visible.write();
            self.catalog.commit(
                name,
                &Commit {
                    deletes: vec![document_id.to_string()],
                    ..Commit::default()
                },
            )?;
            visible.remove(document_id);
        }
        self.drop_versions(document_id, None)?;
        self.commit_keywords()?;
        self.vectors().flush()?;
        self.catalog.clear_intents(
            name,
            &[Intent {
                document_id: document_id.to_string(),
                version: 0,
            }],
        )?;
        self.unclean.fetch_sub(1, Ordering::SeqCst);
        Ok(true)
    }

    fn drop_versions(&self, document_id: &str, keep: Option<u64>) -> Result<(), IndexError> {
        self.vectors().delete_versions(document_id, keep)?;
        match &self.keywords {
            Some(keywords) => keywords.delete_versions(document_id, keep),
            None => Ok(()),
        }
    }

    /// On a shared catalog, removes what writers that died left: the chunks of every
    /// intent older than `age` (far longer than any write takes) whose version did not
    /// become current, then the intents. Versions other nodes are writing now are newer
    /// than any stale intent's and are never touched. Returns how many intents it
    /// collected. The embedded setup replays its intents at start instead
    /// ([`reconcile`](Self::reconcile)).
    pub fn collect_stale(&self, age: std::time::Duration) -> Result<usize, IndexError> {
        if !self.shared || self.keywords.is_some() {
            return Ok(0);
        }
        let _turn = self.write.lock();
        let name = &self.name;
        let stale = self.catalog.stale_intents(name, age)?;
        if stale.is_empty() {
            return Ok(0);
        }
        // Fresh intents: writes in flight, whose versions must stay.
        let fresh: Vec<Intent> = self
            .catalog
            .intents(name)?
            .into_iter()
            .filter(|i| !stale.contains(i))
            .collect();
        for intent in &stale {
            let id = &intent.document_id;
            let current = self.catalog.document(name, id)?.map(|d| d.version);
            let in_flight = fresh
                .iter()
                .filter(|i| &i.document_id == id)
                .map(|i| i.version)
                .min()
                .unwrap_or(u64::MAX);
            // A write intent names its version; a deletion (version 0) every older one.
            let below = match intent.version {
                0 => in_flight,
                v => v.saturating_add(1).min(in_flight),
            };
            self.vectors().delete_versions_below(id, current, below)?;
        }
        self.vectors().flush()?;
        self.catalog.clear_intents(name, &stale)?;
        tracing::info!(kb = %name, intents = stale.len(), "collected the leftovers of dead writers");
        Ok(stale.len())
    }

    /// Brings both stores in line with the catalog after a crash: replays pending intents
    /// and, if chunk counts still disagree, scans both stores for strays and gaps.
    pub fn reconcile(&self) -> Result<ReconcileReport, IndexError> {
        let _turn = self.write.lock();
        let name = &self.name;
        let mut report = ReconcileReport::default();
        let intents = self.catalog.intents(name)?;
        for intent in &intents {
            let current = self
                .visible
                .read()
                .get(&intent.document_id)
                .map(|(v, _)| *v);
            self.drop_versions(&intent.document_id, current)?;
        }
        report.intents_replayed = intents.len();
        if !intents.is_empty() {
            self.commit_keywords()?;
            self.vectors().flush()?;
            self.catalog.clear_intents(name, &intents)?;
        }
        let expected: usize = self.visible.read().values().map(|(_, c)| c).sum();
        if self.vectors().count()? == expected && self.keyword_count()? == expected {
            return Ok(report);
        }
        report.full_scan = true;
        let vectors = self.vectors().versions()?;
        // A store that indexes keywords itself has one set of groups for both sides.
        let keyword_index = self
            .keywords
            .as_ref()
            .map(KeywordIndex::versions)
            .transpose()?;
        let keywords = keyword_index.as_ref().unwrap_or(&vectors);
        let visible = self.visible.read().clone();
        let strays = stray_documents(vectors.keys().chain(keywords.keys()), |doc| {
            visible.get(doc).map(|(v, _)| *v)
        });
        for doc in &strays {
            self.drop_versions(doc, visible.get(*doc).map(|(v, _)| *v))?;
        }
        report.stray_versions_removed = strays.len();
        self.commit_keywords()?;
        self.vectors().flush()?;
        for (id, (version, chunks)) in &visible {
            // An `empty` document has no chunks for a store to lose.
            if *chunks == 0 {
                continue;
            }
            let key = (id.clone(), *version);
            let complete = vectors.get(&key) == Some(chunks) && keywords.get(&key) == Some(chunks);
            if !complete {
                if let Some(mut doc) = self.catalog.document(name, id)? {
                    doc.status = DocumentStatus::Damaged;
                    self.catalog.put_document(name, &doc)?;
                }
                report.damaged.push(id.clone());
            }
        }
        report.damaged.sort();
        Ok(report)
    }

    /// Re-embeds every current chunk with another model and switches the KB to it.
    ///
    /// The new vectors go into a fresh store beside the old one; `kb.json` is then
    /// rewritten to name it (one atomic rename) and the old store is removed. Searches keep
    /// using the old store until the switch; writes to this KB wait until the reindex ends,
    /// so none is lost. A crash before the switch leaves the KB on the old model, and the
    /// half-built store is removed on the next open. The keyword index and the catalog are
    /// untouched: chunk texts stay as they were cut (with the old model's token counts)
    /// until a document is ingested again.
    ///
    /// `embed` turns a batch of chunks into one vector of `dimension` each.
    pub fn reindex(
        &self,
        embedder: &str,
        dimension: usize,
        embed: &mut ReEmbed<'_>,
    ) -> Result<ReindexReport, IndexError> {
        let _turn = self.write.lock();
        let old = self.meta();
        let next_dir = format!("vectors-{}", uuid::Uuid::new_v4().simple());
        let next = self
            .backend
            .open(&self.dir, &self.name, &next_dir, dimension)?;
        let current = self.vectors();
        let documents = self.visible_documents();
        let chunks = match copy_reembedded(current.as_ref(), next.as_ref(), &documents, embed) {
            Ok(chunks) => chunks,
            Err(e) => {
                drop(next);
                self.backend
                    .remove_retired(&self.dir, &self.name, &old.vectors_dir)?;
                return Err(e);
            }
        };
        // An embedded store's files and its directory entry reach the disk before the
        // meta file names it.
        if self.dir.join(&next_dir).is_dir() {
            sync_dir(&self.dir.join(&next_dir))?;
            sync_dir(&self.dir)?;
        }
        {
            // The switch happens with no search in flight on the visibility map, so a
            // search never mixes the two stores.
            let _visible = self.visible.write();
            let mut meta = self.meta.write();
            meta.embedder = embedder.to_string();
            meta.dimension = dimension;
            meta.vectors_dir = next_dir.clone();
            drop(meta);
            if let Err(e) = self.save_meta() {
                *self.meta.write() = old.clone();
                return Err(e);
            }
            *self.vectors.write() = next;
        }
        // The shard flushes on drop into its directory, so the directory goes only once the
        // last search holding the old store has finished; if one outlasts the wait, the next
        // open removes the leftover instead.
        if close_when_unused(current, Duration::from_secs(60)).is_ok() {
            self.backend
                .remove_retired(&self.dir, &self.name, &next_dir)?;
        }
        Ok(ReindexReport {
            from: (old.embedder, old.dimension),
            documents: documents.len(),
            chunks,
        })
    }
}

impl KnowledgeBase {
    /// Records the KB in `target` (another catalog, e.g. PostgreSQL): every document's
    /// entry with its version as it is, then the KB's record, last, so the KB appears
    /// there complete. Versions handed out by `target` afterwards are above the copied
    /// ones. Run again, it replaces what an earlier run recorded. Returns the documents
    /// recorded.
    pub fn copy_catalog_to(&self, target: &dyn Catalog) -> Result<usize, IndexError> {
        let _turn = self.write.lock();
        let documents = self.catalog.all_documents(&self.name)?;
        let newest = documents.iter().map(|d| d.version).max().unwrap_or(0);
        target.reserve_versions(newest)?;
        for batch in documents.chunks(500) {
            target.commit(
                &self.name,
                &Commit {
                    upserts: batch.to_vec(),
                    ..Commit::default()
                },
            )?;
        }
        let record = serde_json::to_string(&*self.meta.read())
            .map_err(|e| IndexError::Corrupt(e.to_string()))?;
        target.put_kb_record(&self.name, &record)?;
        Ok(documents.len())
    }
}

/// What [`KnowledgeBase::copy_to`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Documents whose chunks were copied.
    pub copied: usize,
    /// Documents the target already held completely (an earlier, interrupted run).
    pub skipped: usize,
    /// Chunks copied.
    pub chunks: usize,
    /// `(document, version)` groups in the target that the KB does not show, removed.
    pub strays_removed: usize,
    /// Exact searches run on both stores that returned the same chunks.
    pub searches_compared: usize,
}

impl KnowledgeBase {
    /// Copies the current chunks and their vectors into `target` (another store of the
    /// same dimension, e.g. a Qdrant collection), under the same point ids and without
    /// embedding anything, then checks it: the same chunk count for every document
    /// version, and the same hits for exact searches with sampled chunks' own vectors.
    ///
    /// Writes to the KB wait meanwhile. Documents the target already holds completely
    /// are skipped, so an interrupted copy resumes where it stopped; chunks of versions
    /// the KB does not show are removed from the target. `progress` hears (documents
    /// done, documents in all).
    pub fn copy_to(
        &self,
        target: &dyn VectorStore,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<CopyReport, IndexError> {
        /// Chunks read and written per request.
        const BATCH: u32 = 256;
        /// Chunks whose vectors are searched with on both stores.
        const SAMPLES: usize = 20;
        /// Hits compared per search.
        const DEPTH: usize = 10;
        let _turn = self.write.lock();
        let source = self.vectors();
        if target.dimension() != source.dimension() {
            return Err(IndexError::Dimension {
                expected: source.dimension(),
                got: target.dimension(),
            });
        }
        let documents = self.visible_documents();
        let visible: HashMap<&str, u64> = documents
            .iter()
            .map(|(id, (v, _))| (id.as_str(), *v))
            .collect();
        let mut report = CopyReport::default();
        let present = target.versions()?;
        let strays = stray_documents(present.keys(), |doc| visible.get(doc).copied());
        for doc in &strays {
            target.delete_versions(doc, visible.get(doc.as_str()).copied())?;
        }
        report.strays_removed = strays.len();
        for (done, (id, (version, count))) in documents.iter().enumerate() {
            if present.get(&(id.clone(), *version)) == Some(count) || *count == 0 {
                report.skipped += usize::from(*count > 0);
            } else {
                report.chunks += in_batches(
                    *count,
                    BATCH,
                    |from, to| source.points(id, *version, from, to),
                    |points| target.upsert(&points),
                )?;
                report.copied += 1;
            }
            progress(done + 1, documents.len());
        }
        target.flush()?;
        let copied = target.versions()?;
        for (id, (version, count)) in &documents {
            let held = copied.get(&(id.clone(), *version)).copied().unwrap_or(0);
            if held != *count {
                return Err(IndexError::Corrupt(format!(
                    "after the copy the target holds {held} chunks of {id} (version {version}), the KB {count}"
                )));
            }
        }
        let expected: usize = documents.iter().map(|(_, (_, c))| c).sum();
        let held = target.count()?;
        if held != expected {
            return Err(IndexError::Corrupt(format!(
                "after the copy the target holds {held} chunks, the KB {expected}"
            )));
        }
        let with_chunks: Vec<&(String, (u64, usize))> =
            documents.iter().filter(|(_, (_, c))| *c > 0).collect();
        let step = with_chunks.len().div_ceil(SAMPLES).max(1);
        for (id, (version, _)) in with_chunks.into_iter().step_by(step) {
            let Some((_, vector)) = source.points(id, *version, 0, 0)?.into_iter().next() else {
                continue;
            };
            let want = source.search_exact(&vector, DEPTH)?;
            let got = target.search_exact(&vector, DEPTH)?;
            if !same_hits(&want, &got) {
                return Err(IndexError::Corrupt(format!(
                    "an exact search with a chunk of {id} finds other chunks in the target than in the KB"
                )));
            }
            report.searches_compared += 1;
        }
        Ok(report)
    }
}

/// Whether two stores' exact searches agree: the same similarities, and the same chunks
/// above the last one's similarity. Equal vectors (a passage repeated) tie, and which of
/// them fills the last places is not the stores' to agree on.
fn same_hits(want: &[(ChunkRecord, f32)], got: &[(ChunkRecord, f32)]) -> bool {
    const TOLERANCE: f32 = 1e-4;
    if want.len() != got.len()
        || want
            .iter()
            .zip(got)
            .any(|((_, a), (_, b))| (a - b).abs() > TOLERANCE)
    {
        return false;
    }
    let floor = want.last().map_or(0.0, |(_, s)| *s) + TOLERANCE;
    let above = |hits: &[(ChunkRecord, f32)]| {
        let mut ids: Vec<(String, u64)> = hits
            .iter()
            .filter(|(_, s)| *s > floor)
            .map(|(c, _)| (c.chunk_id.clone(), c.version))
            .collect();
        ids.sort();
        ids
    };
    above(want) == above(got)
}

/// Re-embeds the chunks of `documents` (id, (version, chunk count)) from `from` into
/// `to`, batch by batch, and makes `to` durable. Returns the chunks copied.
fn copy_reembedded(
    from: &dyn VectorStore,
    to: &dyn VectorStore,
    documents: &[(String, (u64, usize))],
    embed: &mut ReEmbed<'_>,
) -> Result<usize, IndexError> {
    /// Chunks embedded and stored per call: bounds memory on large documents.
    const BATCH: u32 = 64;
    let mut chunks = 0;
    for (id, (version, count)) in documents {
        chunks += in_batches(
            *count,
            BATCH,
            |first, last| from.chunks(id, *version, first, last),
            |records| {
                let vectors = embed(&records).map_err(IndexError::Embedding)?;
                if vectors.len() != records.len() {
                    return Err(IndexError::Embedding(format!(
                        "{} vectors for {} chunks",
                        vectors.len(),
                        records.len()
                    )));
                }
                to.upsert(&records.into_iter().zip(vectors).collect::<Vec<_>>())
            },
        )?;
    }
    to.optimize()?;
    to.flush()?;
    Ok(chunks)
}

/// Walks the `count` chunks of one document version `batch` at a time: `read` gets the
/// positions `first..=last` of each batch, `write` what was read, until a batch comes back
/// empty. Returns the chunks read. Bounds memory on large documents.
fn in_batches<T>(
    count: usize,
    batch: u32,
    mut read: impl FnMut(u32, u32) -> Result<Vec<T>, IndexError>,
    mut write: impl FnMut(Vec<T>) -> Result<(), IndexError>,
) -> Result<usize, IndexError> {
    let mut done = 0;
    let mut start = 0u32;
    while (start as usize) < count {
        let items = read(start, start + batch - 1)?;
        if items.is_empty() {
            break;
        }
        done += items.len();
        start += batch;
        write(items)?;
    }
    Ok(done)
}

/// The documents of `groups` (document, version) whose version is not the one `current`
/// gives (none, for a document no longer there), each once, sorted.
fn stray_documents<'a>(
    groups: impl Iterator<Item = &'a (String, u64)>,
    current: impl Fn(&str) -> Option<u64>,
) -> Vec<&'a String> {
    let mut strays: Vec<&String> = groups
        .filter(|(doc, version)| current(doc) != Some(*version))
        .map(|(doc, _)| doc)
        .collect();
    strays.sort();
    strays.dedup();
    strays
}

/// Drops `shared` once no one else holds it, or gives it back after `patience`.
pub(crate) fn close_when_unused<T: ?Sized>(
    shared: Arc<T>,
    patience: Duration,
) -> Result<(), Arc<T>> {
    let deadline = Instant::now() + patience;
    loop {
        if Arc::strong_count(&shared) == 1 {
            drop(shared);
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(shared);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests;
