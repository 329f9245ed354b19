//! The catalog: the one durable record of what a data directory holds.
//!
//! A knowledge base keeps its chunks in two stores (vectors and keywords) that cannot
//! commit together. The catalog (a [redb] file, `<data>/catalog.redb`) is the referee:
//!
//! - **Documents** with their current version. A chunk in either store is visible only if
//!   its document's current version in the catalog is the chunk's version, so switching a
//!   document to new content is one catalog commit.
//! - **Intents**: before chunks of a new version are written, `(kb, document, version)` is
//!   recorded; it is cleared once older versions have left both stores. Intents left over
//!   after a crash tell startup exactly which documents to reconcile.
//! - **Jobs** and the outcome of every file of a job, committed in the same transaction as
//!   the documents those files produced, so a resumed job knows precisely what is done.
//!
//! redb locks the file, so the catalog also guarantees one process per data directory.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use zhiku_schemas::{DocumentId, DocumentInfo, DocumentOutcome, JobInfo, JobSource};

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");
const INTENTS: TableDefinition<&str, u64> = TableDefinition::new("intents");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const JOB_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("job_files");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Separates the parts of composite keys; it cannot occur in KB names, and document ids
/// and paths are validated to exclude control characters.
const SEP: char = '\u{1f}';
/// Sorts after every character allowed in ids, closing a prefix range.
const END: char = '\u{10ffff}';

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Another process (usually a running `zhiku serve`) has the data directory open.
    #[error("the data directory is in use by another zhiku process ({0} is locked)")]
    Locked(PathBuf),
    /// The database file could not be read or written.
    #[error("catalog: {0}")]
    Storage(String),
    /// A stored record could not be decoded.
    #[error("catalog record is corrupt: {0}")]
    Corrupt(String),
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for CatalogError {
            fn from(e: $t) -> Self {
                CatalogError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::SetDurabilityError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// How a job is fed: the parts of a job that are not progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Where the files come from.
    pub source: JobSource,
    /// Uploaded files staged on disk, in upload order (empty for imports).
    #[serde(default)]
    pub uploads: Vec<StagedFile>,
    /// Tags given to every document of the job, kept here so a resumed job applies them.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One uploaded file waiting in the job's staging directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedFile {
    /// File name as uploaded.
    pub name: String,
    /// The file name exactly as the client sent it, directories included: the document's
    /// `path`.
    #[serde(default)]
    pub client_path: String,
    /// Document id it will be stored under.
    pub document_id: DocumentId,
    /// Content type declared by the client.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Where the bytes are.
    pub path: PathBuf,
}

/// A job as persisted: progress plus how to (re)run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// Progress and state, as served by the API.
    pub info: JobInfo,
    /// The input.
    pub spec: JobSpec,
}

/// What became of one file of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the job's directory, or the uploaded name.
    pub name: String,
    /// Document id the file maps to.
    pub document_id: String,
    /// File size.
    pub bytes: u64,
    /// The outcome.
    pub outcome: FileOutcome,
}

/// The outcome of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FileOutcome {
    /// Indexed as a new or updated document.
    Indexed {
        /// Chunks written.
        chunks: usize,
        /// Created or updated.
        outcome: DocumentOutcome,
    },
    /// Same content as stored.
    Unchanged,
    /// Failed and skipped.
    Failed {
        /// Error code.
        code: String,
        /// Stage that failed.
        stage: String,
        /// Explanation.
        message: String,
    },
}

/// A pending write: chunks of `document_id` at versions other than the current one may
/// exist in the stores and must be removed. `version` is the version being written, or 0
/// for a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Intent {
    /// Document id.
    pub document_id: String,
    /// Version being written (0: the document is being deleted).
    pub version: u64,
}

/// Everything that becomes true at once when a batch of writes commits.
#[derive(Debug, Default)]
pub struct Commit {
    /// Documents whose new version becomes current.
    pub upserts: Vec<DocumentInfo>,
    /// Documents that stop existing (an intent to clear their chunks is recorded).
    pub deletes: Vec<String>,
    /// Outcomes of job files, recorded with the documents they produced.
    pub files: Vec<(String, FileRecord)>,
    /// Job records to store with their updated progress.
    pub jobs: Vec<StoredJob>,
}

/// The catalog of one data directory.
pub struct Catalog {
    db: Database,
}

fn key2(a: &str, b: &str) -> String {
    format!("{a}{SEP}{b}")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CatalogError> {
    serde_json::from_slice(bytes).map_err(|e| CatalogError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).expect("catalog records serialise")
}

/// The current time as RFC 3339 (UTC, seconds), the format of every timestamp we store.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The time `days` days ago as RFC 3339 (UTC, seconds): a cut-off that compares with
/// stored timestamps as strings, since they all share this format.
pub fn rfc3339_days_ago(days: u64) -> String {
    let ago = std::time::Duration::from_secs(days.saturating_mul(86_400));
    let then = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_seconds(then).to_string()
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => CatalogError::Locked(path.to_path_buf()),
            e => CatalogError::Storage(format!("{}: {e}", path.display())),
        })?;
        let txn = db.begin_write()?;
        {
            txn.open_table(DOCS)?;
            txn.open_table(INTENTS)?;
            txn.open_table(JOBS)?;
            txn.open_table(JOB_FILES)?;
            txn.open_table(COUNTERS)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// One stored document.
    pub fn document(&self, kb: &str, id: &str) -> Result<Option<DocumentInfo>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOCS)?;
        let value = table.get(key2(kb, id).as_str())?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Up to `limit` documents of `kb` with ids after `after`, in id order, and whether
    /// more follow.
    pub fn documents(
        &self,
        kb: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DocumentInfo>, bool), CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOCS)?;
        let start = key2(kb, after.unwrap_or(""));
        let end = key2(kb, &END.to_string());
        let mut out = Vec::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            let (key, value) = entry?;
            if after.is_some() && key.value() == start {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(decode(value.value())?);
        }
        Ok((out, false))
    }

    /// Every document of `kb`.
    pub fn all_documents(&self, kb: &str) -> Result<Vec<DocumentInfo>, CatalogError> {
        Ok(self.documents(kb, None, usize::MAX)?.0)
    }

    /// Names of the KBs that have documents or pending intents.
    pub fn kbs(&self) -> Result<Vec<String>, CatalogError> {
        let txn = self.db.begin_read()?;
        let kb_of = |key: &str| key.split(SEP).next().unwrap_or_default().to_string();
        let mut names = Vec::new();
        for entry in txn.open_table(DOCS)?.iter()? {
            names.push(kb_of(entry?.0.value()));
        }
        for entry in txn.open_table(INTENTS)?.iter()? {
            names.push(kb_of(entry?.0.value()));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Allocates a fresh version for each document and records the intent to write it.
    ///
    /// Not synced to disk on its own: it becomes durable with the next durable commit (the
    /// one that switches versions), and if a crash loses it, the chunks it announced have
    /// no catalog entry and startup's count check finds and removes them. One fsync less
    /// per write adds up over thousands of small files.
    pub fn begin_versions(&self, kb: &str, ids: &[&str]) -> Result<Vec<u64>, CatalogError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        let mut versions = Vec::with_capacity(ids.len());
        {
            let mut counters = txn.open_table(COUNTERS)?;
            let mut next = counters.get("version")?.map(|v| v.value()).unwrap_or(0);
            let mut intents = txn.open_table(INTENTS)?;
            for id in ids {
                next += 1;
                intents.insert(intent_key(kb, id, next).as_str(), next)?;
                versions.push(next);
            }
            counters.insert("version", next)?;
        }
        txn.commit()?;
        Ok(versions)
    }

    /// Commits a batch of document switches, deletions and job progress atomically.
    pub fn commit(&self, kb: &str, commit: &Commit) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut docs = txn.open_table(DOCS)?;
            for doc in &commit.upserts {
                docs.insert(key2(kb, &doc.id).as_str(), encode(doc).as_slice())?;
            }
            let mut intents = txn.open_table(INTENTS)?;
            for id in &commit.deletes {
                if docs.remove(key2(kb, id).as_str())?.is_some() {
                    intents.insert(intent_key(kb, id, 0).as_str(), 0)?;
                }
            }
            let mut files = txn.open_table(JOB_FILES)?;
            for (job, file) in &commit.files {
                // By document id: two files of one upload may share a name, never an id.
                files.insert(
                    key2(job, &file.document_id).as_str(),
                    encode(file).as_slice(),
                )?;
            }
            let mut jobs = txn.open_table(JOBS)?;
            for job in &commit.jobs {
                jobs.insert(job.info.id.as_str(), encode(job).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Pending intents of `kb`.
    pub fn intents(&self, kb: &str) -> Result<Vec<Intent>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INTENTS)?;
        let start = key2(kb, "");
        let end = key2(kb, &END.to_string());
        let mut out = Vec::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            let (key, value) = entry?;
            let key = key.value();
            let id = key[start.len()..]
                .rsplit_once(SEP)
                .map(|(id, _)| id.to_string())
                .ok_or_else(|| CatalogError::Corrupt(format!("intent key {key:?}")))?;
            out.push(Intent {
                document_id: id,
                version: value.value(),
            });
        }
        Ok(out)
    }

    /// Clears intents whose writes are complete (older versions are gone from the stores).
    /// Not synced on its own: a lost clear only replays a finished cleanup at startup.
    pub fn clear_intents(&self, kb: &str, intents: &[Intent]) -> Result<(), CatalogError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut table = txn.open_table(INTENTS)?;
            for intent in intents {
                table.remove(intent_key(kb, &intent.document_id, intent.version).as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Replaces the status of one document (e.g. marks it damaged during reconciliation).
    pub fn put_document(&self, kb: &str, doc: &DocumentInfo) -> Result<(), CatalogError> {
        self.commit(
            kb,
            &Commit {
                upserts: vec![doc.clone()],
                ..Commit::default()
            },
        )
    }

    /// Forgets everything about `kb` (its directory is already gone).
    pub fn purge_kb(&self, kb: &str) -> Result<(), CatalogError> {
        let start = key2(kb, "");
        let end = key2(kb, &END.to_string());
        let txn = self.db.begin_write()?;
        {
            txn.open_table(DOCS)?
                .retain_in(start.as_str()..end.as_str(), |_, _| false)?;
            txn.open_table(INTENTS)?
                .retain_in(start.as_str()..end.as_str(), |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Stores a job record.
    pub fn put_job(&self, job: &StoredJob) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?
            .insert(job.info.id.as_str(), encode(job).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<Option<StoredJob>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let value = table.get(id)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// All jobs, newest first.
    pub fn jobs(&self) -> Result<Vec<StoredJob>, CatalogError> {
        let txn = self.db.begin_read()?;
        let mut jobs = Vec::new();
        for entry in txn.open_table(JOBS)?.iter()? {
            jobs.push(decode::<StoredJob>(entry?.1.value())?);
        }
        jobs.sort_by(|a, b| {
            (&b.info.created_at, &b.info.id).cmp(&(&a.info.created_at, &a.info.id))
        });
        Ok(jobs)
    }

    /// Deletes the jobs that finished before `cutoff` (an RFC 3339 time, see
    /// [`rfc3339_days_ago`]) with their per-file outcomes; returns how many. Queued and
    /// running jobs are kept whatever their age.
    pub fn prune_jobs(&self, cutoff: &str) -> Result<usize, CatalogError> {
        let txn = self.db.begin_write()?;
        let mut pruned = Vec::new();
        {
            let mut jobs = txn.open_table(JOBS)?;
            jobs.retain(|id, value| {
                let old = decode::<StoredJob>(value).is_ok_and(|job| {
                    job.info.state.is_finished()
                        && job
                            .info
                            .finished_at
                            .as_deref()
                            .is_some_and(|at| at < cutoff)
                });
                if old {
                    pruned.push(id.to_string());
                }
                !old
            })?;
            let mut files = txn.open_table(JOB_FILES)?;
            for id in &pruned {
                drop_job_files(&mut files, id)?;
            }
        }
        txn.commit()?;
        Ok(pruned.len())
    }

    /// Drops the per-file outcomes of a finished job: they only serve resumption, and the
    /// job record keeps the counts and the errors.
    pub fn forget_job_files(&self, job_id: &str) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        drop_job_files(&mut txn.open_table(JOB_FILES)?, job_id)?;
        txn.commit()?;
        Ok(())
    }

    /// Outcomes recorded so far for the files of a job, by document id.
    pub fn job_files(&self, job_id: &str) -> Result<HashMap<String, FileRecord>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_FILES)?;
        let start = key2(job_id, "");
        let end = key2(job_id, &END.to_string());
        let mut out = HashMap::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            let record: FileRecord = decode(entry?.1.value())?;
            out.insert(record.document_id.clone(), record);
        }
        Ok(out)
    }
}

/// Removes a job's per-file outcomes from the job-files table.
fn drop_job_files(files: &mut redb::Table<&str, &[u8]>, job_id: &str) -> Result<(), CatalogError> {
    let (start, end) = (key2(job_id, ""), key2(job_id, &END.to_string()));
    files.retain_in(start.as_str()..end.as_str(), |_, _| false)?;
    Ok(())
}

fn intent_key(kb: &str, id: &str, version: u64) -> String {
    // Zero-padded so a document's intents sort by version.
    format!("{kb}{SEP}{id}{SEP}{version:020}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhiku_schemas::{DocumentStatus, KbName};

    fn doc(id: &str, version: u64) -> DocumentInfo {
        DocumentInfo {
            id: id.into(),
            name: format!("{id}.txt"),
            chunks: 2,
            status: DocumentStatus::Indexed,
            reason: None,
            ocr_pages: Vec::new(),
            format: Some("text/plain".into()),
            tags: vec!["hr".into()],
            path: format!("docs/{id}.txt"),
            hash: "sha256:00".into(),
            size: 10,
            version,
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
        }
    }

    fn job(id: &str) -> StoredJob {
        StoredJob {
            info: JobInfo::new(
                id.into(),
                KbName::new("docs").unwrap(),
                JobSource::Upload,
                now_rfc3339(),
            ),
            spec: JobSpec {
                source: JobSource::Upload,
                uploads: vec![],
                tags: vec!["hr".into()],
            },
        }
    }

    #[test]
    fn documents_versions_intents_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        let catalog = Catalog::open(&path).unwrap();
        assert!(matches!(Catalog::open(&path), Err(CatalogError::Locked(_))));

        let versions = catalog.begin_versions("docs", &["a", "b", "c"]).unwrap();
        assert_eq!(versions, vec![1, 2, 3]);
        assert_eq!(catalog.intents("docs").unwrap().len(), 3);
        let mut j = job("j1");
        j.info.files_done = 3;
        let file = FileRecord {
            name: "dir/a.txt".into(),
            document_id: "a".into(),
            bytes: 10,
            outcome: FileOutcome::Unchanged,
        };
        catalog
            .commit(
                "docs",
                &Commit {
                    upserts: vec![doc("a", 1), doc("b", 2), doc("c", 3)],
                    files: vec![("j1".into(), file.clone())],
                    jobs: vec![j.clone()],
                    ..Commit::default()
                },
            )
            .unwrap();
        catalog
            .clear_intents("docs", &catalog.intents("docs").unwrap())
            .unwrap();
        assert!(catalog.intents("docs").unwrap().is_empty());
        // Another KB with a name that is a prefix must not leak into "docs".
        catalog
            .commit(
                "doc",
                &Commit {
                    upserts: vec![doc("z", 9)],
                    ..Commit::default()
                },
            )
            .unwrap();

        let (page, more) = catalog.documents("docs", None, 2).unwrap();
        assert_eq!(
            page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(more);
        let (page, more) = catalog.documents("docs", Some("b"), 2).unwrap();
        assert_eq!(
            page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(!more);
        assert_eq!(catalog.document("docs", "b").unwrap().unwrap().version, 2);
        assert_eq!(catalog.job("j1").unwrap().unwrap(), j);
        assert_eq!(catalog.job_files("j1").unwrap()["a"], file);
        assert_eq!(catalog.kbs().unwrap(), ["doc", "docs"]);

        catalog
            .commit(
                "docs",
                &Commit {
                    deletes: vec!["a".into(), "nope".into()],
                    ..Commit::default()
                },
            )
            .unwrap();
        assert!(catalog.document("docs", "a").unwrap().is_none());
        assert_eq!(
            catalog.intents("docs").unwrap(),
            vec![Intent {
                document_id: "a".into(),
                version: 0
            }]
        );
        drop(catalog);

        // Durable across reopen; versions keep increasing.
        let catalog = Catalog::open(&path).unwrap();
        assert_eq!(catalog.begin_versions("docs", &["b"]).unwrap(), vec![4]);
        catalog.purge_kb("docs").unwrap();
        assert!(catalog.all_documents("docs").unwrap().is_empty());
        assert!(catalog.intents("docs").unwrap().is_empty());
        assert_eq!(catalog.all_documents("doc").unwrap().len(), 1);
        assert_eq!(catalog.jobs().unwrap().len(), 1);
        catalog.forget_job_files("j1").unwrap();
        assert!(catalog.job_files("j1").unwrap().is_empty());
    }

    #[test]
    fn records_written_before_document_metadata_still_decode() {
        let doc: DocumentInfo = decode(br#"{"id":"a","name":"a.txt","chunks":1}"#).unwrap();
        assert!(doc.tags.is_empty() && doc.path.is_empty());
        let spec: JobSpec = decode(
            br#"{"source":{"type":"upload"},"uploads":[{"name":"a.txt","document_id":"a","path":"/s/0"}]}"#,
        )
        .unwrap();
        assert!(spec.tags.is_empty() && spec.uploads[0].client_path.is_empty());
    }

    #[test]
    fn finished_jobs_past_the_cutoff_are_pruned_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.redb")).unwrap();
        let mut old = job("old");
        old.info.state = zhiku_schemas::JobState::Succeeded;
        old.info.finished_at = Some("2020-01-01T00:00:00Z".into());
        let mut recent = job("recent");
        recent.info.state = zhiku_schemas::JobState::Failed;
        recent.info.finished_at = Some(now_rfc3339());
        let running = job("running");
        for j in [&old, &recent, &running] {
            catalog.put_job(j).unwrap();
        }
        let file = FileRecord {
            name: "a.txt".into(),
            document_id: "a".into(),
            bytes: 1,
            outcome: FileOutcome::Unchanged,
        };
        let files = vec![
            ("old".to_string(), file.clone()),
            ("recent".to_string(), file),
        ];
        catalog
            .commit(
                "docs",
                &Commit {
                    files,
                    ..Commit::default()
                },
            )
            .unwrap();
        assert_eq!(catalog.prune_jobs(&rfc3339_days_ago(30)).unwrap(), 1);
        let ids: Vec<String> = catalog
            .jobs()
            .unwrap()
            .into_iter()
            .map(|j| j.info.id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&"old".to_string()), "{ids:?}");
        assert!(catalog.job_files("old").unwrap().is_empty());
        assert_eq!(catalog.job_files("recent").unwrap().len(), 1);
        assert_eq!(catalog.prune_jobs(&rfc3339_days_ago(30)).unwrap(), 0);
        assert!(rfc3339_days_ago(1) < now_rfc3339());
    }
}
