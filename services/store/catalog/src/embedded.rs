//! The embedded catalog: one redb file in the data directory.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use zhiku_schemas::DocumentInfo;

use crate::{
    Catalog, CatalogError, Commit, FileRecord, Intent, JobCounts, Lease, StoredJob, decode, encode,
};

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");
const INTENTS: TableDefinition<&str, u64> = TableDefinition::new("intents");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const JOB_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("job_files");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const KBS: TableDefinition<&str, &str> = TableDefinition::new("kbs");
/// Job id → [`LeaseRecord`] (JSON).
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("job_leases");

/// Who holds a job until when, and whether a client asked to cancel it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct LeaseRecord {
    owner: String,
    /// Milliseconds since the Unix epoch.
    expires: u64,
    cancel: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn read_lease(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<LeaseRecord, CatalogError> {
    table
        .get(id)?
        .map(|v| decode(v.value()))
        .transpose()
        .map(Option::unwrap_or_default)
}
const KB_GENERATIONS: TableDefinition<&str, u64> = TableDefinition::new("kb_generations");

/// Separates the parts of composite keys; it cannot occur in KB names, and document ids
/// and paths are validated to exclude control characters.
const SEP: char = '\u{1f}';
/// Sorts after every character allowed in ids, closing a prefix range.
const END: char = '\u{10ffff}';

/// The catalog of one data directory, in a redb file that only one process may open.
pub struct EmbeddedCatalog {
    db: Database,
}

fn key2(a: &str, b: &str) -> String {
    format!("{a}{SEP}{b}")
}

impl EmbeddedCatalog {
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
            txn.open_table(KBS)?;
            txn.open_table(KB_GENERATIONS)?;
            // The file lock says this process owns the directory: any lease is a dead
            // process's, and its jobs are free to resume at once.
            let mut leases = txn.open_table(LEASES)?;
            let mut cancels = Vec::new();
            for entry in leases.iter()? {
                let (id, value) = entry?;
                let lease: LeaseRecord = decode(value.value())?;
                if lease.cancel {
                    cancels.push(id.value().to_string());
                }
            }
            leases.retain(|_, _| false)?;
            for id in cancels {
                let lease = LeaseRecord {
                    cancel: true,
                    ..LeaseRecord::default()
                };
                leases.insert(id.as_str(), encode(&lease).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(Self { db })
    }
}

impl Catalog for EmbeddedCatalog {
    /// One stored document.
    fn document(&self, kb: &str, id: &str) -> Result<Option<DocumentInfo>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOCS)?;
        let value = table.get(key2(kb, id).as_str())?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Up to `limit` documents of `kb` with ids after `after`, in id order, and whether
    /// more follow.
    fn documents(
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

    /// Names of the KBs that have documents or pending intents.
    fn kbs(&self) -> Result<Vec<String>, CatalogError> {
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
    fn begin_versions(&self, kb: &str, ids: &[&str]) -> Result<Vec<u64>, CatalogError> {
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

    fn reserve_versions(&self, above: u64) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut counters = txn.open_table(COUNTERS)?;
            let next = counters.get("version")?.map_or(0, |v| v.value()).max(above);
            counters.insert("version", next)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Commits a batch of document switches, deletions and job progress atomically.
    fn commit(&self, kb: &str, commit: &Commit) -> Result<(), CatalogError> {
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
            if !commit.upserts.is_empty() || !commit.deletes.is_empty() {
                bump(&txn, kb)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Pending intents of `kb`.
    fn intents(&self, kb: &str) -> Result<Vec<Intent>, CatalogError> {
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
    fn clear_intents(&self, kb: &str, intents: &[Intent]) -> Result<(), CatalogError> {
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

    /// Forgets everything about `kb` (its directory is already gone).
    fn purge_kb(&self, kb: &str) -> Result<(), CatalogError> {
        let start = key2(kb, "");
        let end = key2(kb, &END.to_string());
        let txn = self.db.begin_write()?;
        {
            txn.open_table(DOCS)?
                .retain_in(start.as_str()..end.as_str(), |_, _| false)?;
            txn.open_table(INTENTS)?
                .retain_in(start.as_str()..end.as_str(), |_, _| false)?;
            bump(&txn, kb)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Stores a job record.
    fn put_job(&self, job: &StoredJob) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?
            .insert(job.info.id.as_str(), encode(job).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// One job.
    fn job(&self, id: &str) -> Result<Option<StoredJob>, CatalogError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let value = table.get(id)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// All jobs, newest first.
    fn jobs(&self) -> Result<Vec<StoredJob>, CatalogError> {
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
    fn job_counts(&self) -> Result<JobCounts, CatalogError> {
        let now = now_ms();
        let txn = self.db.begin_read()?;
        let leases = txn.open_table(LEASES)?;
        let mut counts = JobCounts::default();
        for entry in txn.open_table(JOBS)?.iter()? {
            let (id, value) = entry?;
            let job: StoredJob = decode(value.value())?;
            if job.info.state.is_finished() {
                continue;
            }
            if read_lease(&leases, id.value())?.expires > now {
                counts.running += 1;
            } else {
                counts.queued += 1;
            }
        }
        Ok(counts)
    }

    fn prune_jobs(&self, cutoff: &str) -> Result<usize, CatalogError> {
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
    fn forget_job_files(&self, job_id: &str) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        drop_job_files(&mut txn.open_table(JOB_FILES)?, job_id)?;
        txn.commit()?;
        Ok(())
    }

    /// Outcomes recorded so far for the files of a job, by document id.
    fn job_files(&self, job_id: &str) -> Result<HashMap<String, FileRecord>, CatalogError> {
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

    fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&str>,
    ) -> Result<Option<(StoredJob, bool)>, CatalogError> {
        let now = now_ms();
        let txn = self.db.begin_write()?;
        let claimed = {
            let mut leases = txn.open_table(LEASES)?;
            let mut free = Vec::new();
            for entry in txn.open_table(JOBS)?.iter()? {
                let (id, value) = entry?;
                if only.is_some_and(|only| only != id.value()) {
                    continue;
                }
                let job: StoredJob = decode(value.value())?;
                let held = read_lease(&leases, id.value())?;
                if !job.info.state.is_finished() && held.expires <= now {
                    free.push((job.info.created_at.clone(), job, held.cancel));
                }
            }
            free.sort_by(|a, b| (&a.0, &a.1.info.id).cmp(&(&b.0, &b.1.info.id)));
            match free.into_iter().next() {
                Some((_, job, cancel)) => {
                    let record = LeaseRecord {
                        owner: worker.to_string(),
                        expires: now + lease.as_millis() as u64,
                        cancel,
                    };
                    leases.insert(job.info.id.as_str(), encode(&record).as_slice())?;
                    Some((job, cancel))
                }
                None => None,
            }
        };
        txn.commit()?;
        Ok(claimed)
    }

    fn renew_lease(&self, id: &str, worker: &str, lease: Duration) -> Result<Lease, CatalogError> {
        let txn = self.db.begin_write()?;
        let state = {
            let finished = match txn.open_table(JOBS)?.get(id)? {
                Some(v) => decode::<StoredJob>(v.value())?.info.state.is_finished(),
                None => true,
            };
            let mut leases = txn.open_table(LEASES)?;
            let mut held = read_lease(&leases, id)?;
            if finished || held.owner != worker {
                Lease::Lost
            } else {
                held.expires = now_ms() + lease.as_millis() as u64;
                leases.insert(id, encode(&held).as_slice())?;
                Lease::Held {
                    cancel_requested: held.cancel,
                }
            }
        };
        txn.commit()?;
        Ok(state)
    }

    fn release_job(&self, id: &str, worker: &str) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        {
            let mut leases = txn.open_table(LEASES)?;
            let mut held = read_lease(&leases, id)?;
            if held.owner == worker {
                held.owner.clear();
                held.expires = 0;
                leases.insert(id, encode(&held).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn request_cancel(&self, id: &str) -> Result<bool, CatalogError> {
        let txn = self.db.begin_write()?;
        let unfinished = match txn.open_table(JOBS)?.get(id)? {
            Some(v) => !decode::<StoredJob>(v.value())?.info.state.is_finished(),
            None => false,
        };
        if unfinished {
            let mut leases = txn.open_table(LEASES)?;
            let mut held = read_lease(&leases, id)?;
            held.cancel = true;
            leases.insert(id, encode(&held).as_slice())?;
        }
        txn.commit()?;
        Ok(unfinished)
    }

    fn shared(&self) -> bool {
        false
    }

    fn kb_names(&self) -> Result<Vec<String>, CatalogError> {
        let txn = self.db.begin_read()?;
        let mut names = Vec::new();
        for entry in txn.open_table(KBS)?.iter()? {
            names.push(entry?.0.value().to_string());
        }
        Ok(names)
    }

    fn kb_record(&self, kb: &str) -> Result<Option<(String, u64)>, CatalogError> {
        let txn = self.db.begin_read()?;
        let Some(record) = txn.open_table(KBS)?.get(kb)? else {
            return Ok(None);
        };
        let generation = txn
            .open_table(KB_GENERATIONS)?
            .get(kb)?
            .map_or(0, |g| g.value());
        Ok(Some((record.value().to_string(), generation)))
    }

    fn kb_generation(&self, kb: &str) -> Result<Option<u64>, CatalogError> {
        Ok(self.kb_record(kb)?.map(|(_, generation)| generation))
    }

    fn create_kb(&self, kb: &str, record: &str) -> Result<String, CatalogError> {
        let txn = self.db.begin_write()?;
        let stored = {
            let mut kbs = txn.open_table(KBS)?;
            let existing = kbs.get(kb)?.map(|r| r.value().to_string());
            match existing {
                Some(existing) => existing,
                None => {
                    kbs.insert(kb, record)?;
                    bump(&txn, kb)?;
                    record.to_string()
                }
            }
        };
        txn.commit()?;
        Ok(stored)
    }

    fn put_kb_record(&self, kb: &str, record: &str) -> Result<(), CatalogError> {
        let txn = self.db.begin_write()?;
        txn.open_table(KBS)?.insert(kb, record)?;
        bump(&txn, kb)?;
        txn.commit()?;
        Ok(())
    }

    fn remove_kb_record(&self, kb: &str) -> Result<bool, CatalogError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(KBS)?.remove(kb)?.is_some();
        bump(&txn, kb)?;
        txn.commit()?;
        Ok(existed)
    }
}

/// Moves `kb`'s generation on: what a process cached of it is stale.
fn bump(txn: &redb::WriteTransaction, kb: &str) -> Result<(), CatalogError> {
    let mut generations = txn.open_table(KB_GENERATIONS)?;
    let next = generations.get(kb)?.map_or(0, |g| g.value()) + 1;
    generations.insert(kb, next)?;
    Ok(())
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
