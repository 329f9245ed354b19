//! The registry of all knowledge bases of a data directory: opened lazily, created and
//! deleted one at a time.
//!
//! Which KBs exist is known from `<data>/kbs/<name>/kb.json` on the embedded catalog. With
//! a shared catalog (PostgreSQL) it is the catalog's KB records instead, so every node
//! sees every KB: a node keeps the KBs it opened as a cache, checked against the KB's
//! generation in the catalog on every use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use zhiku_catalog::Catalog;
use zhiku_schemas::KbName;

use crate::kb::{
    KbMeta, KnowledgeBase, META_FILE, ReconcileReport, close_when_unused, default_vectors_dir,
    io_err,
};
use crate::{IndexError, StoreBackend};

const TRASH_DIR: &str = ".trash";

/// All knowledge bases under a data directory, opened lazily and shared.
pub struct KbRegistry {
    root: PathBuf,
    backend: StoreBackend,
    catalog: Arc<dyn Catalog>,
    open: RwLock<HashMap<KbName, Arc<KnowledgeBase>>>,
    // Creation and deletion take turns so two uploads cannot create the same KB twice.
    lifecycle: Mutex<()>,
}

impl KbRegistry {
    /// A registry over `<data_dir>/kbs`; leftovers of interrupted deletions are removed,
    /// from the disk and from the catalog.
    pub fn open(
        data_dir: &Path,
        backend: StoreBackend,
        catalog: Arc<dyn Catalog>,
    ) -> Result<Self, IndexError> {
        let root = data_dir.join("kbs");
        std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        let trash = root.join(TRASH_DIR);
        if trash.exists() {
            std::fs::remove_dir_all(&trash).map_err(|e| io_err(&trash, e))?;
        }
        let registry = Self {
            root,
            backend,
            catalog,
            open: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(()),
        };
        // With a shared catalog, a KB without a directory here is another node's business.
        if !registry.catalog.shared() {
            let existing = registry.names()?;
            for kb in registry.catalog.kbs()? {
                if !existing.iter().any(|name| name.as_str() == kb) {
                    registry.catalog.purge_kb(&kb)?;
                }
            }
        }
        Ok(registry)
    }

    /// The catalog shared by all KBs.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// Opens every KB and reconciles its stores with the catalog (run at startup).
    ///
    /// A KB built by an older zhiku is skipped with a warning rather than stopping the
    /// start: the others stay usable, and requests to it fail naming the problem until it
    /// is deleted and ingested again.
    pub fn reconcile_all(&self) -> Result<Vec<(KbName, ReconcileReport)>, IndexError> {
        let mut reports = Vec::new();
        if self.catalog.shared() {
            // Another node's write in flight looks just like an interrupted one: replaying
            // its intent would delete the chunks it is writing. (Chunks a crash left behind
            // stay invisible, filtered out of every search.)
            tracing::info!("shared catalog: startup reconciliation skipped");
            return Ok(reports);
        }
        for name in self.names()? {
            match self.get(&name) {
                Ok(Some(kb)) => reports.push((name, kb.reconcile()?)),
                Ok(None) => {}
                Err(e @ IndexError::Outdated { .. }) => tracing::warn!("{e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(reports)
    }

    /// Flushes every open KB (at shutdown); failures are logged, and the rest still
    /// flushed.
    pub fn flush_all(&self) {
        let open: Vec<(KbName, Arc<KnowledgeBase>)> = self
            .open
            .read()
            .iter()
            .map(|(name, kb)| (name.clone(), kb.clone()))
            .collect();
        for (name, kb) in open {
            if let Err(e) = kb.flush() {
                tracing::error!(kb = %name, error = %e, "could not flush the knowledge base");
            }
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The KB called `name`, if it exists.
    pub fn get(&self, name: &KbName) -> Result<Option<Arc<KnowledgeBase>>, IndexError> {
        // Bound first: the read guard must be gone before an eviction takes the write lock.
        let cached = self.open.read().get(name).cloned();
        if let Some(kb) = cached {
            if !self.catalog.shared() {
                return Ok(Some(kb));
            }
            match self.catalog.kb_generation(name)? {
                Some(generation) => {
                    kb.sync(generation)?;
                    return Ok(Some(kb));
                }
                // Deleted through another node.
                None => {
                    self.open.write().remove(name);
                    return Ok(None);
                }
            }
        }
        let _turn = self.lifecycle.lock();
        self.load(name)
    }

    /// The record of KB `name`: its `kb.json`, or its record in a shared catalog.
    fn read_meta(&self, name: &KbName) -> Result<Option<KbMeta>, IndexError> {
        let (text, source) = if self.catalog.shared() {
            match self.catalog.kb_record(name)? {
                Some((record, _)) => (record.into_bytes(), format!("the record of KB {name}")),
                None => return Ok(None),
            }
        } else {
            let meta_path = self.dir(name).join(META_FILE);
            if !meta_path.is_file() {
                return Ok(None);
            }
            let bytes = std::fs::read(&meta_path).map_err(|e| io_err(&meta_path, e))?;
            (bytes, meta_path.display().to_string())
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| IndexError::Corrupt(format!("{source}: {e}")))
    }

    fn load(&self, name: &KbName) -> Result<Option<Arc<KnowledgeBase>>, IndexError> {
        if let Some(kb) = self.open.read().get(name) {
            return Ok(Some(kb.clone()));
        }
        let dir = self.dir(name);
        let Some(meta) = self.read_meta(name)? else {
            return Ok(None);
        };
        self.open_kb(name, &dir, meta).map(Some)
    }

    /// Opens KB `name` from `dir` and `meta`, and keeps it open.
    fn open_kb(
        &self,
        name: &KbName,
        dir: &Path,
        meta: KbMeta,
    ) -> Result<Arc<KnowledgeBase>, IndexError> {
        let kb = Arc::new(KnowledgeBase::open_dir(
            dir,
            meta,
            self.backend.clone(),
            self.catalog.clone(),
        )?);
        self.open.write().insert(name.clone(), kb.clone());
        Ok(kb)
    }

    /// The KB called `name`, created for this embedder if missing.
    pub fn get_or_create(
        &self,
        name: &KbName,
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
        let mut meta = KbMeta {
            name: name.to_string(),
            embedder: embedder.to_string(),
            dimension,
            vectors_dir: default_vectors_dir(),
        };
        if self.catalog.shared() {
            // The first node to create the KB decides its record; the others take it.
            let json =
                serde_json::to_string(&meta).map_err(|e| IndexError::Corrupt(e.to_string()))?;
            let record = self.catalog.create_kb(name, &json)?;
            meta = serde_json::from_str(&record)
                .map_err(|e| IndexError::Corrupt(format!("the record of KB {name}: {e}")))?;
            return self.open_kb(name, &dir, meta);
        }
        // Stores a crash left behind for this name belong to no KB any more.
        self.backend.remove_retired(&dir, name, "")?;
        let kb = KnowledgeBase::open_dir(&dir, meta, self.backend.clone(), self.catalog.clone())?;
        // kb.json is written last: its presence marks a complete KB.
        kb.save_meta()?;
        let kb = Arc::new(kb);
        self.open.write().insert(name.clone(), kb.clone());
        Ok(kb)
    }

    /// Names of all KBs, sorted.
    pub fn names(&self) -> Result<Vec<KbName>, IndexError> {
        if self.catalog.shared() {
            return Ok(self
                .catalog
                .kb_names()?
                .into_iter()
                .filter_map(|n| KbName::new(n).ok())
                .collect());
        }
        let entries = std::fs::read_dir(&self.root).map_err(|e| io_err(&self.root, e))?;
        // Other entries (the trash, stray files) are not KBs.
        let mut names: Vec<KbName> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| KbName::new(e.file_name().into_string().ok()?).ok())
            .filter(|n| self.dir(n).join(META_FILE).is_file())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes a KB and its directory. Returns whether it existed.
    pub fn delete(&self, name: &KbName) -> Result<bool, IndexError> {
        let _turn = self.lifecycle.lock();
        let dir = self.dir(name);
        if self.catalog.shared() {
            // The record goes first: every node then treats the KB as gone.
            if !self.catalog.remove_kb_record(name)? {
                return Ok(false);
            }
            if let Some(kb) = self.open.write().remove(name) {
                let _ = close_when_unused(kb, Duration::from_secs(60));
            }
            self.catalog.purge_kb(name)?;
            self.backend.remove_retired(&dir, name, "")?;
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
            }
            return Ok(true);
        }
        if !dir.join(META_FILE).is_file() {
            return Ok(false);
        }
        if let Some(kb) = self.open.write().remove(name) {
            // The shard flushes on drop through paths inside the directory, so it must be
            // closed before the directory goes. Requests hold a KB only briefly; loads wait
            // on the lifecycle lock meanwhile, so nothing reopens it.
            if let Err(kb) = close_when_unused(kb, Duration::from_secs(60)) {
                self.open.write().insert(name.clone(), kb);
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
        // A crash before the purge is finished by the next start (no directory, no KB).
        self.catalog.purge_kb(name)?;
        self.backend.remove_retired(&target, name, "")?;
        std::fs::remove_dir_all(&target).map_err(|e| io_err(&target, e))?;
        Ok(true)
    }
}
