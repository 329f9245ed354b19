//! The job queue: persistent jobs, run one at a time by each worker, resumed after a
//! restart, observable while they run and cancellable.
//!
//! The queue is the catalog itself. A worker claims the oldest unfinished job that no
//! live lease holds ([`Catalog::claim_job`]) and renews its lease while it runs; a worker
//! that dies stops renewing, and once the lease runs out another worker (or the same one,
//! restarted) resumes the job from the file outcomes committed so far. With the embedded
//! catalog there is one worker, this process's; with PostgreSQL every `worker` or `all`
//! node is one, and an `api` node only queues jobs and reports on them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use zhiku_catalog::{
    Catalog, Commit, FileOutcome, FileRecord, JobSpec, Lease, StagedFile, StoredJob, now_rfc3339,
};
use zhiku_index::KbRegistry;
use zhiku_schemas::{DocumentId, FileError, JobInfo, JobSource, JobState, KbName, OcrProgress};

use crate::JobError;
use crate::runner::{Engines, FileResult, PipelineSettings, Recorder, run};
use crate::source;
use crate::source::{Input, InputSource};

/// Most per-file errors a job record lists; the rest are counted (the catalog keeps all).
const MAX_LISTED_ERRORS: usize = 1_000;

/// Settings of the job system.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Directories server-side imports may read from; empty disables `POST /v1/jobs`.
    pub import_roots: Vec<PathBuf>,
    /// Per knowledge base, the directories its imports may read from instead of
    /// `import_roots` (an empty list disables its imports).
    pub kb_import_roots: std::collections::BTreeMap<String, Vec<PathBuf>>,
    /// Where uploads of asynchronous jobs wait until processed; every worker that may run
    /// a job must be able to read it (a shared volume when workers are separate nodes).
    pub staging_dir: PathBuf,
    /// How long a worker's claim on a job lasts without renewal (renewed every third of
    /// it): how soon another worker resumes the job of one that died.
    pub lease: Duration,
    /// How often an idle worker looks for jobs queued by other nodes.
    pub poll: Duration,
    /// Runner tuning.
    pub pipeline: PipelineSettings,
}

impl JobsConfig {
    /// The import roots of knowledge base `kb`.
    pub fn roots_for(&self, kb: &str) -> &[PathBuf] {
        self.kb_import_roots.get(kb).unwrap_or(&self.import_roots)
    }
}

/// A file uploaded for an asynchronous job.
pub struct UploadFile {
    /// File name as uploaded.
    pub name: String,
    /// The file name as the client sent it, directories included (the document's `path`).
    pub path: String,
    /// Document id to store it under.
    pub document_id: DocumentId,
    /// Declared content type.
    pub content_type: Option<String>,
    /// Content.
    pub bytes: Vec<u8>,
}

struct Live {
    cancel: Arc<AtomicBool>,
    progress: watch::Sender<JobInfo>,
}

/// Set by the lease keeper of a running job.
#[derive(Default)]
struct LeaseFlags {
    /// Another worker took the job over: this one must stop without recording anything.
    lost: AtomicBool,
}

struct Inner {
    catalog: Arc<dyn Catalog>,
    registry: Arc<KbRegistry>,
    engines: Engines,
    config: JobsConfig,
    /// This process's name as a worker, in the leases it holds.
    worker: String,
    /// Set when a job was queued here, so the idle worker looks at once.
    nudged: Mutex<bool>,
    wake: Condvar,
    live: Mutex<HashMap<String, Live>>,
    /// Channels of jobs followed here before they run here (queued, or run by another
    /// node), fed from the catalog. A worker here that claims one takes its channel over
    /// ([`Inner::track`]), so followers then see live progress such as OCR pages.
    /// Lock order: `live`, then `followers`.
    followers: Mutex<HashMap<String, watch::Sender<JobInfo>>>,
    shutdown: AtomicBool,
    /// Chunks indexed by jobs since this process started, for metrics.
    chunks_indexed: AtomicU64,
}

/// A snapshot of the job system's load, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobStats {
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Jobs a worker holds, on any node.
    pub running: usize,
    /// Chunks indexed by this process's jobs since it started.
    pub chunks_indexed: u64,
}

/// The job system; cheap to clone.
///
/// Jobs are queued, listed, followed and cancelled by every node; they are run by the
/// nodes started with a worker ([`Jobs::start`]'s `work`).
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
    /// The worker thread, to wait for at shutdown.
    worker: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

fn new_info(kb: &KbName, source: JobSource) -> JobInfo {
    JobInfo::new(
        uuid::Uuid::new_v4().to_string(),
        kb.clone(),
        source,
        zhiku_catalog::now_rfc3339_micros(),
    )
}

/// Adds one file's outcome to a job's counters.
fn count(info: &mut JobInfo, record: &FileRecord) {
    info.files_done += 1;
    info.bytes += record.bytes;
    match &record.outcome {
        FileOutcome::Indexed { chunks, .. } => {
            info.files_indexed += 1;
            info.chunks_indexed += *chunks as u64;
        }
        FileOutcome::Unchanged => info.files_unchanged += 1,
        FileOutcome::Failed {
            code,
            stage,
            message,
        } => {
            info.files_failed += 1;
            if info.errors.len() < MAX_LISTED_ERRORS {
                info.errors.push(FileError {
                    name: record.name.clone(),
                    code: code.clone(),
                    message: message.clone(),
                    stage: Some(stage.clone()),
                });
            }
        }
    }
}

impl Jobs {
    /// Starts the job system; with `work`, also this process's worker, which takes queued
    /// jobs (those an earlier process left unfinished first: oldest first) until
    /// shutdown.
    pub fn start(
        catalog: Arc<dyn Catalog>,
        registry: Arc<KbRegistry>,
        engines: Engines,
        config: JobsConfig,
        work: bool,
    ) -> Result<Self, JobError> {
        std::fs::create_dir_all(&config.staging_dir)
            .map_err(|e| JobError::Storage(format!("{}: {e}", config.staging_dir.display())))?;
        let inner = Arc::new(Inner {
            catalog,
            registry,
            engines,
            config,
            worker: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            nudged: Mutex::new(true),
            wake: Condvar::new(),
            live: Mutex::new(HashMap::new()),
            followers: Mutex::new(HashMap::new()),
            shutdown: AtomicBool::new(false),
            chunks_indexed: AtomicU64::new(0),
        });
        let worker = if work {
            let inner = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("zhiku-jobs".into())
                    .spawn(move || inner.work())
                    .map_err(|e| {
                        JobError::Storage(format!("could not start the job worker: {e}"))
                    })?,
            )
        } else {
            None
        };
        Ok(Self {
            inner,
            worker: Arc::new(Mutex::new(worker)),
        })
    }

    /// Queues a job over uploaded files, staged on disk first so it survives a restart.
    /// `tags`, already normalised ([`normalize_tags`](crate::normalize_tags)), go to every
    /// file.
    pub fn submit_upload(
        &self,
        kb: &KbName,
        files: Vec<UploadFile>,
        tags: Vec<String>,
    ) -> Result<JobInfo, JobError> {
        let info = new_info(kb, JobSource::Upload);
        let dir = self.inner.config.staging_dir.join(&info.id);
        let stage = |e: std::io::Error| JobError::Storage(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(stage)?;
        let mut uploads = Vec::with_capacity(files.len());
        for (i, file) in files.into_iter().enumerate() {
            let path = dir.join(format!("{i:06}"));
            std::fs::write(&path, &file.bytes).map_err(stage)?;
            uploads.push(StagedFile {
                name: file.name,
                client_path: file.path,
                document_id: file.document_id,
                content_type: file.content_type,
                path,
            });
        }
        let mut info = info;
        info.files_total = uploads.len() as u64;
        self.enqueue(StoredJob {
            spec: JobSpec {
                source: JobSource::Upload,
                uploads,
                tags,
            },
            info,
        })
    }

    /// Queues the import of a server-side directory, which must lie inside an import root.
    /// `tags` are as the client wrote them and go to every file.
    pub fn submit_import(
        &self,
        kb: &KbName,
        path: &str,
        glob: Option<&str>,
        tags: &[String],
    ) -> Result<JobInfo, JobError> {
        let tags = crate::normalize_tags(tags)?;
        source::compile_glob(glob)?;
        let dir = source::confine(path, self.inner.config.roots_for(kb))?;
        let source = JobSource::Import {
            path: dir.to_string_lossy().into_owned(),
            glob: glob.map(str::to_string),
        };
        self.enqueue(StoredJob {
            info: new_info(kb, source.clone()),
            spec: JobSpec {
                source,
                uploads: Vec::new(),
                tags,
            },
        })
    }

    fn enqueue(&self, job: StoredJob) -> Result<JobInfo, JobError> {
        self.inner.catalog.put_job(&job)?;
        *self.inner.nudged.lock() = true;
        self.inner.wake.notify_all();
        Ok(job.info)
    }

    /// A job's current state.
    pub fn get(&self, id: &str) -> Result<Option<JobInfo>, JobError> {
        if let Some(live) = self.inner.live.lock().get(id) {
            return Ok(Some(live.progress.borrow().clone()));
        }
        Ok(self.inner.catalog.job(id)?.map(|j| j.info))
    }

    /// All jobs, newest first.
    pub fn list(&self) -> Result<Vec<JobInfo>, JobError> {
        let live = self.inner.live.lock();
        Ok(self
            .inner
            .catalog
            .jobs()?
            .into_iter()
            .map(|j| match live.get(&j.info.id) {
                Some(l) => l.progress.borrow().clone(),
                None => j.info,
            })
            .collect())
    }

    /// Follows a job's progress; the receiver sees every state change until it finishes.
    pub fn subscribe(&self, id: &str) -> Result<Option<watch::Receiver<JobInfo>>, JobError> {
        if let Some(live) = self.inner.live.lock().get(id) {
            return Ok(Some(live.progress.subscribe()));
        }
        let Some(job) = self.inner.catalog.job(id)? else {
            return Ok(None);
        };
        if job.info.state.is_finished() {
            // A channel holding the final state only.
            return Ok(Some(watch::channel(job.info).1));
        }
        // Queued, or run by another node. Checked again under the locks: a worker here
        // may have claimed it since the first look.
        let live = self.inner.live.lock();
        if let Some(live) = live.get(id) {
            return Ok(Some(live.progress.subscribe()));
        }
        let mut followers = self.inner.followers.lock();
        if let Some(tx) = followers.get(id) {
            return Ok(Some(tx.subscribe()));
        }
        let (tx, rx) = watch::channel(job.info);
        followers.insert(id.to_string(), tx);
        drop((followers, live));
        let (inner, id) = (self.inner.clone(), id.to_string());
        std::thread::spawn(move || inner.follow(&id));
        Ok(Some(rx))
    }

    /// Cancels a queued or running job. Documents it already committed stay.
    pub fn cancel(&self, id: &str) -> Result<JobInfo, JobError> {
        let inner = &self.inner;
        let Some(job) = inner.catalog.job(id)? else {
            return Err(JobError::NotFound(id.to_string()));
        };
        if job.info.state.is_finished() {
            return Err(JobError::Conflict(format!(
                "job {id} already finished ({:?})",
                job.info.state
            )));
        }
        if let Some(live) = inner.live.lock().get(id) {
            live.cancel.store(true, Ordering::SeqCst);
            return Ok(live.progress.borrow().clone());
        }
        // Queued: claimed here and finished as cancelled at once.
        if let Some((mut job, _)) =
            inner
                .catalog
                .claim_job(&inner.worker, inner.config.lease, Some(id))?
        {
            job.info.state = JobState::Cancelled;
            job.info.finished_at = Some(now_rfc3339());
            inner.finish(&job)?;
            return Ok(job.info);
        }
        // Running on another node (or being claimed this instant): its worker sees the
        // request when it renews its lease.
        inner.catalog.request_cancel(id)?;
        Ok(inner.catalog.job(id)?.map_or(job.info, |j| j.info))
    }

    /// Deletes the jobs that finished more than `days` days ago, with their per-file
    /// records; returns how many. Queued and running jobs are never pruned.
    pub fn prune_finished(&self, days: u64) -> Result<usize, JobError> {
        let cutoff = zhiku_catalog::rfc3339_days_ago(days);
        Ok(self.inner.catalog.prune_jobs(&cutoff)?)
    }

    /// Jobs waiting and running now (on every node sharing the catalog), and chunks
    /// indexed by this process's jobs since it started.
    pub fn stats(&self) -> JobStats {
        let counts = self.inner.catalog.job_counts().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not count jobs for metrics");
            Default::default()
        });
        JobStats {
            queued: counts.queued,
            running: counts.running,
            chunks_indexed: self.inner.chunks_indexed.load(Ordering::Relaxed),
        }
    }

    /// Stops the worker after the current commit, leaving unfinished jobs to be resumed
    /// by the next start.
    pub fn shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        for live in self.inner.live.lock().values() {
            live.cancel.store(true, Ordering::SeqCst);
        }
        self.inner.wake.notify_all();
    }

    /// [`Jobs::shutdown`], then waits up to `limit` for the worker to commit what it has
    /// and stop. Returns false if it was still busy when the time ran out (the job then
    /// resumes from its last commit at the next start, as after a crash).
    pub fn shutdown_within(&self, limit: std::time::Duration) -> bool {
        self.shutdown();
        let deadline = Instant::now() + limit;
        let Some(worker) = self.worker.lock().take() else {
            return true;
        };
        while !worker.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = worker.join();
        true
    }
}

impl Inner {
    fn track(&self, info: &JobInfo) {
        let mut live = self.live.lock();
        let progress = match self.followers.lock().remove(&info.id) {
            Some(tx) => {
                tx.send_replace(info.clone());
                tx
            }
            None => watch::channel(info.clone()).0,
        };
        live.insert(
            info.id.clone(),
            Live {
                cancel: Arc::new(AtomicBool::new(false)),
                progress,
            },
        );
    }

    /// Feeds the follower channel of job `id` from its catalog record every `poll`, until
    /// the job finishes, nobody listens any more, or a worker here takes the channel over.
    fn follow(&self, id: &str) {
        loop {
            std::thread::sleep(self.config.poll);
            let record = self.catalog.job(id);
            let mut followers = self.followers.lock();
            let Some(tx) = followers.get(id) else {
                return; // taken over by this node's worker
            };
            let Ok(Some(job)) = record else {
                followers.remove(id);
                return;
            };
            let finished = job.info.state.is_finished();
            tx.send_if_modified(|info| {
                let changed = *info != job.info;
                *info = job.info;
                changed
            });
            if finished || tx.is_closed() {
                followers.remove(id);
                return;
            }
        }
    }

    fn current(&self, info: &JobInfo) -> JobInfo {
        self.live
            .lock()
            .get(&info.id)
            .map(|l| l.progress.borrow().clone())
            .unwrap_or_else(|| info.clone())
    }

    fn publish(&self, info: &JobInfo) {
        if let Some(live) = self.live.lock().get(&info.id) {
            live.progress.send_replace(info.clone());
        }
    }

    /// Publishes new OCR figures for a running job; the rest of its state stays as last
    /// published.
    fn publish_ocr(&self, id: &str, ocr: OcrProgress) {
        if let Some(live) = self.live.lock().get(id) {
            live.progress.send_modify(|info| info.ocr = ocr);
        }
    }

    /// Persists a finished job, publishes it and forgets its live state and staged files.
    fn finish(&self, job: &StoredJob) -> Result<(), JobError> {
        self.catalog.put_job(job)?;
        self.catalog.forget_job_files(&job.info.id)?;
        self.catalog.release_job(&job.info.id, &self.worker)?;
        self.publish(&job.info);
        self.live.lock().remove(&job.info.id);
        if !job.spec.uploads.is_empty() {
            let dir = self.config.staging_dir.join(&job.info.id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), "could not remove staged uploads: {e}");
            }
        }
        self.wake.notify_all();
        Ok(())
    }

    fn work(self: Arc<Self>) {
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let (claimed, failed) =
                match self
                    .catalog
                    .claim_job(&self.worker, self.config.lease, None)
                {
                    Ok(claimed) => (claimed, false),
                    Err(e) => {
                        tracing::error!("could not look for jobs: {e}");
                        (None, true)
                    }
                };
            let Some((job, cancel_requested)) = claimed else {
                let mut nudged = self.nudged.lock();
                if !*nudged && !self.shutdown.load(Ordering::SeqCst) {
                    // Jobs queued through other nodes, or a look that failed, are found
                    // by looking again; on the embedded catalog only this process queues
                    // jobs, and it nudges, so an idle worker reads nothing until then.
                    if failed || self.catalog.shared() {
                        self.wake.wait_for(&mut nudged, self.config.poll);
                    } else {
                        self.wake.wait(&mut nudged);
                    }
                }
                *nudged = false;
                continue;
            };
            let id = job.info.id.clone();
            tracing::info!(job = %id, kb = %job.info.kb, done = job.info.files_done, "running job");
            self.track(&job.info);
            if cancel_requested && let Some(live) = self.live.lock().get(&id) {
                live.cancel.store(true, Ordering::SeqCst);
            }
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_job(&id)));
            let error = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => {
                    // A bug must cost one job, not the worker and every job after it.
                    let detail = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("panic");
                    format!("internal error: {detail}")
                }
            };
            tracing::error!(job = %id, "job failed: {error}");
            self.fail(&id, error);
        }
    }

    /// Records a job that could not run to its end as failed, as far as the catalog
    /// allows, and releases its followers.
    fn fail(&self, id: &str, message: String) {
        if let Ok(Some(mut job)) = self.catalog.job(id) {
            job.info = self.current(&job.info);
            job.info.state = JobState::Failed;
            job.info.message = Some(message);
            job.info.eta_seconds = None;
            job.info.finished_at = Some(now_rfc3339());
            if let Err(e) = self.finish(&job) {
                tracing::error!(job = %id, "could not record the failure: {e}");
            }
        }
        // Without a durable record the live state cannot be trusted; followers then see
        // the stored one.
        self.live.lock().remove(id);
        self.wake.notify_all();
    }

    /// Keeps this worker's lease on job `id` alive until `stop` is dropped: renewed every
    /// third of its length; a client's cancel request sets `cancel`, and a lease another
    /// worker took over sets `cancel` and `flags.lost`.
    fn keep_lease(
        &self,
        id: &str,
        cancel: Arc<AtomicBool>,
        flags: Arc<LeaseFlags>,
    ) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (catalog, worker, lease) =
            (self.catalog.clone(), self.worker.clone(), self.config.lease);
        let id = id.to_string();
        let keeper = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(lease / 3)
            {
                match catalog.renew_lease(&id, &worker, lease) {
                    Ok(Lease::Held { cancel_requested }) => {
                        if cancel_requested {
                            cancel.store(true, Ordering::SeqCst);
                        }
                    }
                    Ok(Lease::Lost) => {
                        tracing::warn!(job = %id, "another worker took the job over");
                        flags.lost.store(true, Ordering::SeqCst);
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Passing trouble: the lease has two more chances before it runs out.
                    Err(e) => tracing::warn!(job = %id, "could not renew the job's lease: {e}"),
                }
            }
        });
        (stop, keeper)
    }

    fn run_job(&self, id: &str) -> Result<(), JobError> {
        let cancel = match self.live.lock().get(id) {
            Some(live) => live.cancel.clone(),
            None => return Ok(()),
        };
        let flags = Arc::new(LeaseFlags::default());
        let (stop, keeper) = self.keep_lease(id, cancel.clone(), flags.clone());
        let outcome = self.run_held(id, &cancel, &flags);
        drop(stop);
        let _ = keeper.join();
        if flags.lost.load(Ordering::SeqCst) {
            // The job is another worker's now: nothing more is recorded from here.
            self.live.lock().remove(id);
            return Ok(());
        }
        outcome
    }

    fn run_held(&self, id: &str, cancel: &AtomicBool, flags: &LeaseFlags) -> Result<(), JobError> {
        let Some(mut job) = self.catalog.job(id)? else {
            return Ok(());
        };
        job.info.state = JobState::Running;
        job.info.started_at.get_or_insert_with(now_rfc3339);
        job.info.message = None;
        self.catalog.put_job(&job)?;
        self.publish(&job.info);

        match self.execute(&mut job, cancel) {
            Ok(()) => {}
            Err(JobError::Storage(message)) | Err(JobError::Catalog(message)) => {
                return Err(JobError::Storage(message));
            }
            Err(e) => {
                job.info.state = JobState::Failed;
                job.info.message = Some(e.to_string());
            }
        }
        if flags.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        if self.shutdown.load(Ordering::SeqCst) && !job.info.state.is_finished() {
            // Leave it running in the catalog, free for the next worker (or the next
            // start) to resume.
            self.publish(&job.info);
            self.live.lock().remove(id);
            self.catalog.release_job(id, &self.worker)?;
            return Ok(());
        }
        if !job.info.state.is_finished() {
            job.info.state = if cancel.load(Ordering::SeqCst) {
                JobState::Cancelled
            } else if job.info.files_total > 0 && job.info.files_failed == job.info.files_total {
                job.info.message = Some("every file failed; see errors".into());
                JobState::Failed
            } else {
                JobState::Succeeded
            };
        }
        job.info.eta_seconds = None;
        job.info.finished_at = Some(now_rfc3339());
        self.finish(&job)
    }

    fn execute(&self, job: &mut StoredJob, cancel: &AtomicBool) -> Result<(), JobError> {
        let embedder = self.engines.embedder.clone();
        let kb =
            self.registry
                .get_or_create(&job.info.kb, embedder.name(), embedder.dimension())?;
        kb.ensure_model(embedder.name(), embedder.dimension())?;
        let mut inputs: Vec<Input> = match &job.spec.source {
            JobSource::Upload => job
                .spec
                .uploads
                .iter()
                .map(|f| Input {
                    name: f.name.clone(),
                    path: f.client_path.clone(),
                    tags: Vec::new(),
                    document_id: f.document_id.clone(),
                    content_type: f.content_type.clone(),
                    source: InputSource::Path(f.path.clone()),
                })
                .collect(),
            JobSource::Import { path, glob } => {
                // Checked again now: the roots or the directory may have changed since
                // the job was queued (or before a restart resumed it).
                let dir = source::confine(path, self.config.roots_for(&job.info.kb))?;
                let glob = source::compile_glob(glob.as_deref())?;
                source::list(&job.info.kb, &dir, glob.as_ref())?
            }
        };
        for input in &mut inputs {
            input.tags.clone_from(&job.spec.tags);
        }
        // Resume: counters are rebuilt from the file outcomes committed so far, so they
        // are exact whatever the last persisted snapshot said.
        let done = self.catalog.job_files(&job.info.id)?;
        let mut info = job.info.clone();
        info.files_total = inputs.len() as u64;
        info.files_done = 0;
        info.files_indexed = 0;
        info.files_unchanged = 0;
        info.files_failed = 0;
        info.chunks_indexed = 0;
        info.bytes = 0;
        info.errors.clear();
        let mut ordered: Vec<&FileRecord> = done.values().collect();
        ordered.sort_by(|a, b| a.name.cmp(&b.name));
        for record in ordered {
            count(&mut info, record);
        }
        job.info = info;
        self.catalog.put_job(job)?;
        self.publish(&job.info);
        let remaining = inputs
            .into_iter()
            .filter(|i| !done.contains_key(i.document_id.as_str()));
        // OCR figures of an earlier run of this job (before a restart) carry over.
        let ocr_before = job.info.ocr;
        let ocr = Mutex::new(ocr_before);
        let id = job.info.id.clone();
        let on_ocr = |run: OcrProgress| {
            let total = ocr_before.plus(run);
            *ocr.lock() = total;
            self.publish_ocr(&id, total);
        };
        let mut recorder = JobRecorder {
            inner: self,
            job: job.clone(),
            started: Instant::now(),
            done_at_start: job.info.files_done,
            chunks_at_start: job.info.chunks_indexed,
            ocr: &ocr,
        };
        run(
            &kb,
            self.engines.clone(),
            &self.config.pipeline,
            remaining,
            cancel,
            &mut recorder,
            &on_ocr,
        )?;
        *job = recorder.job;
        Ok(())
    }
}

/// Commits a job's file outcomes and progress together with the documents.
struct JobRecorder<'a> {
    inner: &'a Inner,
    job: StoredJob,
    started: Instant,
    done_at_start: u64,
    chunks_at_start: u64,
    /// The job's OCR figures as last reported by the OCR stage.
    ocr: &'a Mutex<OcrProgress>,
}

impl JobRecorder<'_> {
    fn updated(&self, files: &[FileRecord]) -> StoredJob {
        let mut job = self.job.clone();
        job.info.ocr = *self.ocr.lock();
        for record in files {
            count(&mut job.info, record);
        }
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let files = (job.info.files_done - self.done_at_start) as f64;
        job.info.files_per_second = files / elapsed;
        job.info.chunks_per_second =
            (job.info.chunks_indexed - self.chunks_at_start) as f64 / elapsed;
        let left = job.info.files_total.saturating_sub(job.info.files_done) as f64;
        job.info.eta_seconds = (job.info.files_per_second > 0.0)
            .then(|| (left / job.info.files_per_second * 10.0).round() / 10.0);
        job
    }
}

impl Recorder for JobRecorder<'_> {
    fn extra(&mut self, files: &[FileRecord]) -> Commit {
        let job = self.updated(files);
        Commit {
            files: files
                .iter()
                .map(|f| (job.info.id.clone(), f.clone()))
                .collect(),
            jobs: vec![job],
            ..Commit::default()
        }
    }

    fn committed(&mut self, results: Vec<FileResult>) {
        let records: Vec<FileRecord> = results.into_iter().map(|r| r.record).collect();
        let chunks: u64 = records
            .iter()
            .map(|r| match &r.outcome {
                FileOutcome::Indexed { chunks, .. } => *chunks as u64,
                _ => 0,
            })
            .sum();
        self.inner
            .chunks_indexed
            .fetch_add(chunks, Ordering::Relaxed);
        self.job = self.updated(&records);
        self.inner.publish(&self.job.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhiku_embed::{EmbedError, Embedder};

    /// The follower hand-over never embeds; a worker that ran a job would need a model.
    struct NoModel;

    impl Embedder for NoModel {
        fn name(&self) -> &str {
            "none"
        }
        fn dimension(&self) -> usize {
            2
        }
        fn count_tokens(&self, text: &str) -> usize {
            text.len()
        }
        fn embed_passages(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            unreachable!("no job runs in these tests")
        }
        fn embed_query(&self, _: &str) -> Result<Vec<f32>, EmbedError> {
            unreachable!("no job runs in these tests")
        }
    }

    fn jobs(dir: &std::path::Path) -> Jobs {
        let catalog: Arc<dyn Catalog> =
            Arc::new(zhiku_catalog::EmbeddedCatalog::open(&dir.join("catalog.redb")).unwrap());
        let registry = KbRegistry::open(
            dir,
            zhiku_index::HnswParams::default().into(),
            catalog.clone(),
        )
        .unwrap();
        let config = JobsConfig {
            import_roots: Vec::new(),
            kb_import_roots: Default::default(),
            staging_dir: dir.join("uploads"),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(20),
            pipeline: PipelineSettings::default(),
        };
        let engines = Engines {
            embedder: Arc::new(NoModel),
            ocr: None,
            parsers: None,
        };
        Jobs::start(catalog, Arc::new(registry), engines, config, false).unwrap()
    }

    fn queue(jobs: &Jobs) -> JobInfo {
        let kb = KbName::new("kb").unwrap();
        jobs.enqueue(StoredJob {
            info: new_info(&kb, JobSource::Upload),
            spec: JobSpec {
                source: JobSource::Upload,
                uploads: Vec::new(),
                tags: Vec::new(),
            },
        })
        .unwrap()
    }

    /// A client that starts following a job before this node's worker claims it must
    /// still see what is published only live, such as OCR pages.
    #[test]
    fn followers_of_a_queued_job_see_its_live_progress_once_it_runs_here() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path());
        let info = queue(&jobs);
        let early = jobs.subscribe(&info.id).unwrap().unwrap();
        let second = jobs.subscribe(&info.id).unwrap().unwrap();
        assert_eq!(jobs.inner.followers.lock().len(), 1, "one feed per job");

        let (claimed, _) = jobs
            .inner
            .catalog
            .claim_job(&jobs.inner.worker, jobs.inner.config.lease, Some(&info.id))
            .unwrap()
            .unwrap();
        jobs.inner.track(&claimed.info);
        assert!(jobs.inner.followers.lock().is_empty(), "taken over");
        let pages = OcrProgress {
            pages_done: 2,
            ..Default::default()
        };
        jobs.inner.publish_ocr(&info.id, pages);
        assert_eq!(early.borrow().ocr, pages);
        assert_eq!(second.borrow().ocr, pages);
        let late = jobs.subscribe(&info.id).unwrap().unwrap();
        assert_eq!(late.borrow().ocr, pages);
    }

    /// Jobs queued within one second are claimed in the order they were queued.
    #[test]
    fn jobs_are_claimed_in_the_order_they_were_queued() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path());
        let queued: Vec<String> = (0..6).map(|_| queue(&jobs).id).collect();
        for id in &queued {
            let (claimed, _) = jobs
                .inner
                .catalog
                .claim_job(&jobs.inner.worker, jobs.inner.config.lease, None)
                .unwrap()
                .unwrap();
            assert_eq!(&claimed.info.id, id);
        }
    }

    /// Without a worker here, followers are fed from the catalog until the job ends.
    #[test]
    fn followers_of_a_job_run_elsewhere_see_it_finish() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = jobs(dir.path());
        let info = queue(&jobs);
        let mut rx = jobs.subscribe(&info.id).unwrap().unwrap();
        let cancelled = jobs.cancel(&info.id).unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rx.borrow_and_update().state.is_finished() {
            assert!(Instant::now() < deadline, "follower never saw the end");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(rx.borrow().state, JobState::Cancelled);
    }
}
