//! The catalog: the one durable record of what a deployment holds.
//!
//! A knowledge base keeps its chunks in stores (vectors and keywords) that cannot commit
//! together with anything else. The catalog is the referee:
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
//! Two engines implement the [`Catalog`] trait:
//!
//! - [`EmbeddedCatalog`], a [redb] file (`<data>/catalog.redb`), the default. redb locks
//!   the file, so it also guarantees one process per data directory.
//! - [`PostgresCatalog`], tables in PostgreSQL shared by every node of a scaled-out
//!   deployment; its schema is versioned and applied by [`PostgresCatalog::migrate`]
//!   (`zhiku migrate`).

#![warn(missing_docs)]

mod conversations;
mod embedded;
mod postgres;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zhiku_schemas::{DocumentId, DocumentInfo, DocumentOutcome, JobInfo, JobSource};

pub use conversations::{ConversationLog, EmbeddedConversations, TITLE_CHARS};
pub use embedded::EmbeddedCatalog;
pub use postgres::{MIGRATIONS, PostgresCatalog, PostgresSettings, latest_schema};

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
    /// The conversation does not exist (or belongs to another knowledge base).
    #[error("conversation {0:?} does not exist")]
    NotFound(String),
    /// The conversation has as many turns as it may.
    #[error("conversation {id:?} has reached {max_turns} turns")]
    Full {
        /// Conversation id.
        id: String,
        /// The limit.
        max_turns: u32,
    },
    /// A rating named a turn the conversation does not have.
    #[error(
        "turn {turn} does not exist: turns are numbered from 1 and this conversation has {turns}"
    )]
    NoSuchTurn {
        /// The turn asked for.
        turn: u32,
        /// Turns the conversation has.
        turns: u32,
    },
    /// The PostgreSQL server cannot be reached (or refuses the connection).
    #[error("{0}")]
    Unreachable(String),
    /// The PostgreSQL schema is older (or newer) than this zhiku.
    #[error("{0}")]
    Schema(String),
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

/// A worker's hold on a job, as [`Catalog::renew_lease`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still this worker's; `cancel_requested` once a client asked to cancel the job.
    Held {
        /// A client asked to cancel the job.
        cancel_requested: bool,
    },
    /// Taken over by another worker (this one's lease ran out), or the job is finished.
    Lost,
}

/// Unfinished jobs, as [`Catalog::job_counts`] finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobCounts {
    /// Waiting for a worker: no live lease holds them.
    pub queued: usize,
    /// Held by a worker's live lease, on any node.
    pub running: usize,
}

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

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CatalogError> {
    serde_json::from_slice(bytes).map_err(|e| CatalogError::Corrupt(e.to_string()))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).expect("catalog records serialise")
}

/// The current time as RFC 3339 (UTC, seconds), the format of every timestamp we store.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The time now as RFC 3339 (UTC) with microseconds, for records whose order within one
/// second matters: jobs are claimed in the order they were queued, oldest `created_at`
/// first, and two jobs queued in one second must not tie.
pub fn now_rfc3339_micros() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
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

/// The catalog: documents and their versions, write intents, and jobs with the outcome of
/// each file. Implemented by [`EmbeddedCatalog`] and [`PostgresCatalog`]; shared as
/// `Arc<dyn Catalog>`.
///
/// Every method is synchronous: callers are the stores' write paths and job threads,
/// which are synchronous themselves.
pub trait Catalog: Send + Sync {
    /// One stored document.
    fn document(&self, kb: &str, id: &str) -> Result<Option<DocumentInfo>, CatalogError>;

    /// Up to `limit` documents of `kb` with ids after `after`, in id order, and whether
    /// more follow.
    fn documents(
        &self,
        kb: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DocumentInfo>, bool), CatalogError>;

    /// Every document of `kb`.
    fn all_documents(&self, kb: &str) -> Result<Vec<DocumentInfo>, CatalogError> {
        Ok(self.documents(kb, None, usize::MAX)?.0)
    }

    /// Names of the KBs that have documents or pending intents, sorted.
    fn kbs(&self) -> Result<Vec<String>, CatalogError>;

    /// Allocates a fresh version for each document and records the intent to write it.
    /// Versions only grow, across KBs and restarts.
    fn begin_versions(&self, kb: &str, ids: &[&str]) -> Result<Vec<u64>, CatalogError>;

    /// Commits a batch of document switches, deletions and job progress atomically.
    fn commit(&self, kb: &str, commit: &Commit) -> Result<(), CatalogError>;

    /// Makes every version handed out from now on greater than `above`: documents copied
    /// in from another catalog keep their versions, and new ones must not collide.
    fn reserve_versions(&self, above: u64) -> Result<(), CatalogError>;

    /// Pending intents of `kb`.
    fn intents(&self, kb: &str) -> Result<Vec<Intent>, CatalogError>;

    /// Intents of `kb` recorded more than `age` ago. On a shared catalog those are the
    /// leftovers of writers that died. The embedded catalog has one writer, which replays
    /// its intents when it starts; it has none to give.
    fn stale_intents(&self, kb: &str, age: Duration) -> Result<Vec<Intent>, CatalogError> {
        let _ = (kb, age);
        Ok(Vec::new())
    }

    /// Clears intents whose writes are complete (older versions are gone from the stores).
    fn clear_intents(&self, kb: &str, intents: &[Intent]) -> Result<(), CatalogError>;

    /// Replaces the status of one document (e.g. marks it damaged during reconciliation).
    fn put_document(&self, kb: &str, doc: &DocumentInfo) -> Result<(), CatalogError> {
        self.commit(
            kb,
            &Commit {
                upserts: vec![doc.clone()],
                ..Commit::default()
            },
        )
    }

    /// Forgets every document and intent of `kb` (its stores are already gone).
    fn purge_kb(&self, kb: &str) -> Result<(), CatalogError>;

    /// Stores a job record.
    fn put_job(&self, job: &StoredJob) -> Result<(), CatalogError>;

    /// One job.
    fn job(&self, id: &str) -> Result<Option<StoredJob>, CatalogError>;

    /// All jobs, newest first.
    fn jobs(&self) -> Result<Vec<StoredJob>, CatalogError>;

    /// How many unfinished jobs wait and how many a worker holds, for metrics: cheaper
    /// than reading every job.
    fn job_counts(&self) -> Result<JobCounts, CatalogError>;

    /// Deletes the jobs that finished before `cutoff` (an RFC 3339 time, see
    /// [`rfc3339_days_ago`]) with their per-file outcomes; returns how many. Queued and
    /// running jobs are kept whatever their age.
    fn prune_jobs(&self, cutoff: &str) -> Result<usize, CatalogError>;

    /// Drops the per-file outcomes of a finished job: they only serve resumption, and the
    /// job record keeps the counts and the errors.
    fn forget_job_files(&self, job_id: &str) -> Result<(), CatalogError>;

    /// Outcomes recorded so far for the files of a job, by document id.
    fn job_files(&self, job_id: &str) -> Result<HashMap<String, FileRecord>, CatalogError>;

    /// Hands `worker` the oldest unfinished job (or job `only`) that no live lease holds,
    /// leased for `lease`; with it, whether a client asked to cancel it. Several workers
    /// claiming at once each get a different job.
    fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&str>,
    ) -> Result<Option<(StoredJob, bool)>, CatalogError>;

    /// Extends `worker`'s lease on job `id`, if it still holds it.
    fn renew_lease(&self, id: &str, worker: &str, lease: Duration) -> Result<Lease, CatalogError>;

    /// Gives up `worker`'s lease on job `id` (finished, or the worker is stopping), so
    /// another worker may take it at once.
    fn release_job(&self, id: &str, worker: &str) -> Result<(), CatalogError>;

    /// Asks whichever worker runs job `id` to cancel it; false if it is not unfinished.
    fn request_cancel(&self, id: &str) -> Result<bool, CatalogError>;

    /// Whether other processes use this catalog at the same time (PostgreSQL): then the
    /// catalog, not this process's memory, says which KBs exist and which versions are
    /// current.
    fn shared(&self) -> bool;

    /// Names of the KBs that have a record, sorted.
    fn kb_names(&self) -> Result<Vec<String>, CatalogError>;

    /// The record of `kb` (JSON, the index's own format) and its generation: a number
    /// that grows whenever the record or the KB's documents change.
    fn kb_record(&self, kb: &str) -> Result<Option<(String, u64)>, CatalogError>;

    /// The generation of `kb` (see [`kb_record`](Self::kb_record)); `None` if it has no
    /// record.
    fn kb_generation(&self, kb: &str) -> Result<Option<u64>, CatalogError>;

    /// Stores `record` as the record of `kb` unless it has one already; returns the
    /// record it has then, so two nodes creating one KB agree on it.
    fn create_kb(&self, kb: &str, record: &str) -> Result<String, CatalogError>;

    /// Replaces the record of `kb` (a reindex switching stores).
    fn put_kb_record(&self, kb: &str, record: &str) -> Result<(), CatalogError>;

    /// Removes the record of `kb`; false if it had none.
    fn remove_kb_record(&self, kb: &str) -> Result<bool, CatalogError>;
}

#[cfg(test)]
mod tests;
