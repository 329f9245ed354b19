//! The pipelined runner: read/parse/chunk, embed and index on three threads joined by
//! bounded channels, so parsing hides behind embedding (the bottleneck) and memory stays
//! bounded however many files a job has.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use zhiku_catalog::{Commit, FileOutcome, FileRecord};
use zhiku_chunk::ChunkerConfig;
use zhiku_embed::Embedder;
use zhiku_index::{DocumentWrite, IndexError, KnowledgeBase};
use zhiku_ingest::{
    ChunkedFile, IngestError, Stage, chunk_file, content_hash, embedding_input,
    pipeline_fingerprint,
};
use zhiku_schemas::{DocumentInfo, DocumentOutcome, DocumentStatus, FileError};

/// Tuning of the runner.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// How documents are cut.
    pub chunking: ChunkerConfig,
    /// Time a file may take from read to embedded; past it the file fails with `timeout`.
    pub file_timeout: Duration,
    /// Files larger than this fail with `file_too_large` before being read.
    pub max_file_bytes: u64,
    /// Chunks per embedding call, across file boundaries (small files share a call).
    pub embed_batch: usize,
    /// At most this many chunks go into one commit of the stores.
    pub commit_chunks: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            chunking: ChunkerConfig::default(),
            file_timeout: Duration::from_secs(600),
            max_file_bytes: 64 << 20,
            embed_batch: 32,
            commit_chunks: 1024,
        }
    }
}

/// Where a file's bytes are.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// On disk (imports, staged uploads).
    Path(PathBuf),
    /// In memory (a synchronous upload).
    Bytes(Arc<[u8]>),
}

/// One file to ingest.
#[derive(Debug, Clone)]
pub struct Input {
    /// File name or path relative to the job's directory; becomes the document name.
    pub name: String,
    /// The document's `path` for filters: the file name as the client sent it (with its
    /// directories), or the path relative to the imported directory.
    pub path: String,
    /// The document's tags, already normalised ([`normalize_tags`](crate::normalize_tags)).
    pub tags: Vec<String>,
    /// Document id to store it under.
    pub document_id: String,
    /// Content type declared by the client, a hint for format detection.
    pub content_type: Option<String>,
    /// The bytes.
    pub source: InputSource,
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// The outcome as recorded in the catalog.
    pub record: FileRecord,
    /// The document as stored now (new, updated or unchanged).
    pub document: Option<DocumentInfo>,
}

impl FileResult {
    /// The API form of a failure, if this file failed.
    pub fn error(&self) -> Option<FileError> {
        match &self.record.outcome {
            FileOutcome::Failed {
                code,
                stage,
                message,
            } => Some(FileError {
                name: self.record.name.clone(),
                code: code.clone(),
                message: message.clone(),
                stage: Some(stage.clone()),
            }),
            _ => None,
        }
    }
}

/// Receives the runner's results on the index thread.
pub trait Recorder: Send {
    /// What to commit in the same catalog transaction as these finished files (e.g. the
    /// job's file records and progress).
    fn extra(&mut self, files: &[FileRecord]) -> Commit;
    /// The files are durably recorded.
    fn committed(&mut self, results: Vec<FileResult>);
}

/// A file on its way through the stages.
struct Work {
    input: Input,
    size: u64,
    hash: String,
    started: Instant,
    previous: Option<DocumentInfo>,
    chunked: ChunkedFile,
    vectors: Vec<Vec<f32>>,
}

enum Message {
    /// Chunked, waiting for vectors (feeder → embedder).
    Work(Box<Work>),
    /// Embedded, ready to store (embedder → indexer).
    Embedded(Vec<Work>),
    /// Finished without a store write (unchanged or failed).
    Done(Box<FileResult>),
}

fn failed(input: &Input, size: u64, error: &IngestError) -> FileResult {
    FileResult {
        record: FileRecord {
            name: input.name.clone(),
            document_id: input.document_id.clone(),
            bytes: size,
            outcome: FileOutcome::Failed {
                code: error.code().to_string(),
                stage: error.stage().as_str().to_string(),
                message: error.to_string(),
            },
        },
        document: None,
    }
}

/// Shared, read-only context of one run.
struct Context<'a> {
    kb: &'a KnowledgeBase,
    embedder: Arc<dyn Embedder>,
    settings: &'a PipelineSettings,
    fingerprint: String,
    cancel: &'a AtomicBool,
}

impl Context<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The file's size (as far as known) and its bytes.
    fn read(&self, input: &Input) -> (u64, Result<Arc<[u8]>, IngestError>) {
        let limit = self.settings.max_file_bytes;
        let too_large = |size| IngestError::TooLarge { size, limit };
        match &input.source {
            InputSource::Bytes(bytes) => {
                let size = bytes.len() as u64;
                if size > limit {
                    return (size, Err(too_large(size)));
                }
                (size, Ok(bytes.clone()))
            }
            InputSource::Path(path) => {
                let read_error =
                    |e: std::io::Error| IngestError::Read(format!("{}: {e}", path.display()));
                let size = match std::fs::metadata(path) {
                    Ok(meta) => meta.len(),
                    Err(e) => return (0, Err(read_error(e))),
                };
                if size > limit {
                    return (size, Err(too_large(size)));
                }
                (
                    size,
                    std::fs::read(path).map(Into::into).map_err(read_error),
                )
            }
        }
    }

    /// Read, hash, compare with the stored version, parse and chunk one file.
    fn prepare(&self, input: Input) -> Message {
        let started = Instant::now();
        let (size, bytes) = self.read(&input);
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => return Message::Done(Box::new(failed(&input, size, &e))),
        };
        let hash = content_hash(&bytes, &self.fingerprint);
        let previous = match self.kb.document(&input.document_id) {
            Ok(previous) => previous,
            Err(e) => {
                return Message::Done(Box::new(failed(&input, size, &IngestError::Index(e))));
            }
        };
        // New tags or a new path alone make the document change too: its chunks carry them.
        if let Some(doc) = &previous
            && doc.hash == hash
            && doc.status == DocumentStatus::Indexed
            && doc.tags == input.tags
            && doc.path == input.path
        {
            return Message::Done(Box::new(FileResult {
                record: FileRecord {
                    name: input.name.clone(),
                    document_id: input.document_id.clone(),
                    bytes: size,
                    outcome: FileOutcome::Unchanged,
                },
                document: previous,
            }));
        }
        let chunking = Instant::now();
        let result = self.chunk_with_timeout(&input, bytes);
        tracing::debug!(
            file = %input.name,
            ms = chunking.elapsed().as_millis() as u64,
            chunks = result.as_ref().map_or(0, |c| c.records.len()),
            "parsed and chunked"
        );
        match result {
            Ok(chunked) => Message::Work(Box::new(Work {
                input,
                size,
                hash,
                started,
                previous,
                chunked,
                vectors: Vec::new(),
            })),
            Err(e) => Message::Done(Box::new(failed(&input, size, &e))),
        }
    }

    /// Parsing runs on its own thread so a pathological file cannot stall the job: after
    /// the time limit the file fails and the thread is abandoned (Rust threads cannot be
    /// killed; it ends when the parser does).
    fn chunk_with_timeout(
        &self,
        input: &Input,
        bytes: Arc<[u8]>,
    ) -> Result<ChunkedFile, IngestError> {
        let (tx, rx) = sync_channel(1);
        let name = input.name.clone();
        let id = input.document_id.clone();
        let content_type = input.content_type.clone();
        let embedder = self.embedder.clone();
        let chunking = self.settings.chunking.clone();
        std::thread::Builder::new()
            .name("zhiku-parse".into())
            .spawn(move || {
                let result = chunk_file(
                    &name,
                    &id,
                    content_type.as_deref(),
                    &bytes,
                    embedder.as_ref(),
                    &chunking,
                );
                let _ = tx.send(result);
            })
            .map_err(|e| IngestError::Read(format!("could not start a parser thread: {e}")))?;
        match rx.recv_timeout(self.settings.file_timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(IngestError::Timeout {
                stage: Stage::Parse,
                seconds: self.settings.file_timeout.as_secs(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(IngestError::Read(
                "the parser stopped unexpectedly".to_string(),
            )),
        }
    }
}

/// Runs `inputs` through the pipeline into `kb`, reporting every finished file to
/// `recorder`. Returns early, recording nothing more, once `cancel` is set.
///
/// Per-file problems become failed results; only a failure to record results at all
/// (the catalog or the stores refusing every write) is an error of the whole run.
pub fn run(
    kb: &KnowledgeBase,
    embedder: Arc<dyn Embedder>,
    settings: &PipelineSettings,
    inputs: impl Iterator<Item = Input> + Send,
    cancel: &AtomicBool,
    recorder: &mut dyn Recorder,
) -> Result<(), IndexError> {
    let ctx = Context {
        kb,
        fingerprint: pipeline_fingerprint(embedder.as_ref(), &settings.chunking),
        embedder,
        settings,
        cancel,
    };
    // Small bounds: a few files in flight per stage is enough to keep the embedder busy.
    let (to_embed, embed_rx) = sync_channel::<Message>(4);
    let (to_index, index_rx) = sync_channel::<Message>(4);
    std::thread::scope(|scope| {
        let ctx = &ctx;
        std::thread::Builder::new()
            .name("zhiku-read".into())
            .spawn_scoped(scope, move || feed(ctx, inputs, to_embed))
            .expect("spawn reader thread");
        std::thread::Builder::new()
            .name("zhiku-embed".into())
            .spawn_scoped(scope, move || embed(ctx, embed_rx, to_index))
            .expect("spawn embedder thread");
        index(ctx, index_rx, recorder)
    })
}

fn feed(ctx: &Context, inputs: impl Iterator<Item = Input>, out: SyncSender<Message>) {
    for input in inputs {
        if ctx.cancelled() {
            return;
        }
        if out.send(ctx.prepare(input)).is_err() {
            return;
        }
    }
}

/// Embeds chunks in batches of `embed_batch` that may span several files.
fn embed(ctx: &Context, rx: Receiver<Message>, out: SyncSender<Message>) {
    let batch = ctx.settings.embed_batch.max(1);
    let timeout = ctx.settings.file_timeout;
    let mut pending: VecDeque<Box<Work>> = VecDeque::new();
    let mut open = true;
    loop {
        if ctx.cancelled() {
            return;
        }
        // Gather: block only when there is nothing to embed.
        while open {
            let message = if pending.is_empty() {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                let waiting: usize = pending
                    .iter()
                    .map(|w| w.chunked.records.len() - w.vectors.len())
                    .sum();
                if waiting >= batch {
                    break;
                }
                rx.try_recv()
            };
            match message {
                Ok(Message::Work(work)) => pending.push_back(work),
                Ok(done @ (Message::Done(_) | Message::Embedded(_))) => {
                    if out.send(done).is_err() {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if pending.is_empty() {
            return;
        }
        // Files past their time limit fail here rather than hold up the rest.
        let mut kept = VecDeque::with_capacity(pending.len());
        for work in pending.drain(..) {
            if work.started.elapsed() > timeout {
                let e = IngestError::Timeout {
                    stage: Stage::Embed,
                    seconds: timeout.as_secs(),
                };
                if out
                    .send(Message::Done(Box::new(failed(&work.input, work.size, &e))))
                    .is_err()
                {
                    return;
                }
            } else {
                kept.push_back(work);
            }
        }
        pending = kept;
        // Take the next `batch` chunks, front file first.
        let mut texts = Vec::with_capacity(batch);
        let mut owners = Vec::with_capacity(batch);
        'fill: for (slot, work) in pending.iter().enumerate() {
            for record in &work.chunked.records[work.vectors.len()..] {
                if texts.len() == batch {
                    break 'fill;
                }
                texts.push(embedding_input(record));
                owners.push(slot);
            }
        }
        if texts.is_empty() {
            continue;
        }
        match ctx.embedder.embed_passages(&texts) {
            Ok(vectors) => {
                for (slot, vector) in owners.into_iter().zip(vectors) {
                    pending[slot].vectors.push(vector);
                }
            }
            Err(e) => {
                // Fail every file that had chunks in the failed call.
                let e = IngestError::Embed(e);
                let slots: HashSet<usize> = owners.into_iter().collect();
                let mut kept = VecDeque::new();
                for (slot, work) in pending.drain(..).enumerate() {
                    if slots.contains(&slot) {
                        let result = failed(&work.input, work.size, &e);
                        if out.send(Message::Done(Box::new(result))).is_err() {
                            return;
                        }
                    } else {
                        kept.push_back(work);
                    }
                }
                pending = kept;
            }
        }
        // Files finished by the same call travel together, so the indexer can commit them
        // as one group: thousands of tiny files must not mean thousands of commits.
        let mut finished = Vec::new();
        while pending
            .front()
            .is_some_and(|w| w.vectors.len() == w.chunked.records.len())
        {
            finished.extend(pending.pop_front().map(|w| *w));
        }
        if !finished.is_empty() && out.send(Message::Embedded(finished)).is_err() {
            return;
        }
    }
}

/// Commits embedded files in groups: one store commit per group instead of per file.
fn index(
    ctx: &Context,
    rx: Receiver<Message>,
    recorder: &mut dyn Recorder,
) -> Result<(), IndexError> {
    let mut works: Vec<Work> = Vec::new();
    let mut others: Vec<FileResult> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut chunks = 0;
    let mut open = true;
    while open {
        let first = rx.recv();
        let mut next = first.map_err(|_| TryRecvError::Disconnected);
        loop {
            match next {
                Ok(Message::Embedded(embedded)) => {
                    for work in embedded {
                        // One version per document per commit: a second file with the same
                        // id waits for the next group.
                        if ids.contains(&work.input.document_id) {
                            commit(ctx, &mut works, &mut others, recorder)?;
                            ids.clear();
                            chunks = 0;
                        }
                        ids.insert(work.input.document_id.clone());
                        chunks += work.chunked.records.len();
                        works.push(work);
                    }
                }
                // The embedder forwards only finished files.
                Ok(Message::Work(_)) => {}
                Ok(Message::Done(result)) => others.push(*result),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
            if chunks >= ctx.settings.commit_chunks {
                break;
            }
            next = rx.try_recv();
        }
        if ctx.cancelled() {
            return Ok(());
        }
        commit(ctx, &mut works, &mut others, recorder)?;
        ids.clear();
        chunks = 0;
    }
    Ok(())
}

fn commit(
    ctx: &Context,
    works: &mut Vec<Work>,
    others: &mut Vec<FileResult>,
    recorder: &mut dyn Recorder,
) -> Result<(), IndexError> {
    if works.is_empty() && others.is_empty() {
        return Ok(());
    }
    let mut records: Vec<FileRecord> = others.iter().map(|r| r.record.clone()).collect();
    let mut writes = Vec::with_capacity(works.len());
    for work in works.iter_mut() {
        let Work {
            input,
            size,
            hash,
            previous,
            chunked,
            vectors,
            ..
        } = work;
        let outcome = if previous.is_some() {
            DocumentOutcome::Updated
        } else {
            DocumentOutcome::Created
        };
        records.push(FileRecord {
            name: input.name.clone(),
            document_id: input.document_id.clone(),
            bytes: *size,
            outcome: FileOutcome::Indexed {
                chunks: chunked.records.len(),
                outcome,
            },
        });
        let records = std::mem::take(&mut chunked.records);
        writes.push(DocumentWrite {
            document: DocumentInfo {
                id: input.document_id.clone(),
                name: input.name.clone(),
                chunks: records.len(),
                status: DocumentStatus::Indexed,
                format: Some(chunked.format.mime().to_string()),
                tags: input.tags.clone(),
                path: input.path.clone(),
                hash: hash.clone(),
                size: *size,
                version: 0,
                created_at: String::new(),
                updated_at: String::new(),
            },
            points: records.into_iter().zip(std::mem::take(vectors)).collect(),
        });
    }
    let mut results: Vec<FileResult> = std::mem::take(others);
    if writes.is_empty() {
        let extra = recorder.extra(&records);
        ctx.kb.record(&extra)?;
    } else {
        let extra = recorder.extra(&records);
        match ctx.kb.write(writes, extra) {
            Ok(stored) => {
                let indexed = records.split_off(results.len());
                for (record, document) in indexed.into_iter().zip(stored) {
                    results.push(FileResult {
                        record,
                        document: Some(document),
                    });
                }
            }
            Err(e) => {
                // The group's documents fail; what failed or was unchanged before is still
                // recorded, with the store error named on each indexed file.
                let e = IngestError::Index(e);
                for work in works.iter() {
                    results.push(failed(&work.input, work.size, &e));
                }
                let records: Vec<FileRecord> = results.iter().map(|r| r.record.clone()).collect();
                let extra = recorder.extra(&records);
                ctx.kb.record(&extra)?;
            }
        }
    }
    works.clear();
    recorder.committed(results);
    Ok(())
}
