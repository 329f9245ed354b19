//! The pipelined runner: read/parse/chunk, OCR, embed and index on four threads joined by
//! bounded channels, so parsing hides behind embedding and memory stays bounded however
//! many files a job has. OCR, the slowest stage, hands pages to the process-wide OCR
//! worker pool, several documents' pages at a time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, channel, sync_channel,
};
use std::time::{Duration, Instant};

use crate::source::{Input, InputSource, open_confined};
use zhiku_catalog::{Commit, FileOutcome, FileRecord};
use zhiku_chunk::ChunkerConfig;
use zhiku_embed::Embedder;
use zhiku_index::{DocumentWrite, IndexError, KnowledgeBase};
use zhiku_ingest::{
    ChunkedFile, IngestError, Stage, apply_ocr, chunk_parsed, content_hash, embedding_input,
    may_need_ocr, ocr_fingerprint, parse_file, pipeline_fingerprint, plan_ocr, recognize,
    without_ocr,
};
use zhiku_ocr::{Ocr, OcrError, PdfFile, RecognizedPage};
use zhiku_parse::{OcrSource, ParseOptions, ParsedDocument, detect_format};
use zhiku_sandbox::ParserPool;
use zhiku_schemas::{
    DocumentInfo, DocumentOutcome, DocumentStatus, FileError, OcrPage, OcrProgress,
};

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
    /// What parsing lists for OCR (images inside DOCX files or not).
    pub parse: ParseOptions,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            chunking: ChunkerConfig::default(),
            file_timeout: Duration::from_secs(600),
            max_file_bytes: 64 << 20,
            embed_batch: 32,
            commit_chunks: 1024,
            parse: ParseOptions::default(),
        }
    }
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
    /// When the file's time limit started: at reading, or after OCR (which has its own
    /// per-page limit).
    started: Instant,
    previous: Option<DocumentInfo>,
    chunked: ChunkedFile,
    vectors: Vec<Vec<f32>>,
    /// Set for a file that holds no text: it is stored as an `empty` document, with this
    /// as its reason, and reported as failed.
    empty: Option<IngestError>,
}

/// A parsed file whose images or scanned pages OCR has yet to read.
struct Scanned {
    input: Input,
    size: u64,
    hash: String,
    previous: Option<DocumentInfo>,
    parsed: ParsedDocument,
    bytes: Arc<[u8]>,
}

/// What the feeder hands the OCR stage.
enum Prepared {
    /// Needs nothing from OCR.
    Ready(Message),
    /// Needs OCR.
    Scanned(Box<Scanned>),
}

enum Message {
    /// Chunked, waiting for vectors (feeder or OCR → embedder).
    Work(Box<Work>),
    /// Embedded, ready to store (embedder → indexer).
    Embedded(Vec<Work>),
    /// Finished without a store write (unchanged or failed).
    Done(Box<FileResult>),
}

impl Work {
    /// A file read whole that holds no text, to be recorded as an `empty` document.
    fn empty(
        input: Input,
        size: u64,
        hash: String,
        previous: Option<DocumentInfo>,
        format: zhiku_parse::DocFormat,
        ocr_pages: Vec<OcrPage>,
        reason: IngestError,
    ) -> Self {
        Work {
            input,
            size,
            hash,
            started: Instant::now(),
            previous,
            chunked: ChunkedFile {
                format,
                records: Vec::new(),
                ocr_pages,
            },
            vectors: Vec::new(),
            empty: Some(reason),
        }
    }
}

/// Size and bytes of an opened file, `limit` bytes at most even should it grow while
/// it is read; errors name `path`.
fn read_file(
    path: &std::path::Path,
    file: std::io::Result<std::fs::File>,
    limit: u64,
) -> (u64, Result<Arc<[u8]>, IngestError>) {
    let read_error = |e: std::io::Error| IngestError::Read(format!("{}: {e}", path.display()));
    let too_large = |size| IngestError::TooLarge { size, limit };
    let (file, size) = match file.and_then(|f| Ok((f.metadata()?.len(), f))) {
        Ok((size, file)) => (file, size),
        Err(e) => return (0, Err(read_error(e))),
    };
    if size > limit {
        return (size, Err(too_large(size)));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    match std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes) {
        Ok(_) if bytes.len() as u64 > limit => (size, Err(too_large(bytes.len() as u64))),
        Ok(_) => (bytes.len() as u64, Ok(bytes.into())),
        Err(e) => (size, Err(read_error(e))),
    }
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
    ocr: Option<Arc<Ocr>>,
    parsers: Option<Arc<ParserPool>>,
    settings: &'a PipelineSettings,
    fingerprint: String,
    /// Appended to the fingerprint of files that may need OCR.
    ocr_fingerprint: String,
    cancel: &'a AtomicBool,
}

/// What parsing a file in its own thread produced.
enum Parsed {
    Chunked(ChunkedFile),
    Scanned(ParsedDocument),
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
            InputSource::Path(path) => read_file(path, std::fs::File::open(path), limit),
            InputSource::Confined { path, root } => {
                read_file(path, open_confined(path, root), limit)
            }
        }
    }

    /// Read, hash, compare with the stored version, parse and chunk one file (or hand it
    /// to OCR).
    fn prepare(&self, input: Input) -> Prepared {
        let done = |result: FileResult| Prepared::Ready(Message::Done(Box::new(result)));
        let started = Instant::now();
        let (size, bytes) = self.read(&input);
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => return done(failed(&input, size, &e)),
        };
        let ocr_relevant = detect_format(&input.name, input.content_type.as_deref(), &bytes)
            .is_ok_and(may_need_ocr);
        let hash = if ocr_relevant {
            content_hash(
                &bytes,
                &format!("{}/{}", self.fingerprint, self.ocr_fingerprint),
            )
        } else {
            content_hash(&bytes, &self.fingerprint)
        };
        let previous = match self.kb.document(&input.document_id) {
            Ok(previous) => previous,
            Err(e) => return done(failed(&input, size, &IngestError::Index(e))),
        };
        // New tags or a new path alone make the document change too: its chunks carry them.
        if let Some(doc) = &previous
            && doc.hash == hash
            && doc.status == DocumentStatus::Indexed
            && doc.tags == input.tags
            && doc.path == input.path
        {
            return done(FileResult {
                record: FileRecord {
                    name: input.name.clone(),
                    document_id: input.document_id.clone(),
                    bytes: size,
                    outcome: FileOutcome::Unchanged,
                },
                document: previous,
            });
        }
        let chunking = Instant::now();
        let result = self.parse_with_timeout(&input, bytes.clone());
        tracing::debug!(
            file = %input.name,
            ms = chunking.elapsed().as_millis() as u64,
            "parsed"
        );
        match result {
            Ok(Parsed::Chunked(chunked)) => Prepared::Ready(Message::Work(Box::new(Work {
                input,
                size,
                hash,
                started,
                previous,
                chunked,
                vectors: Vec::new(),
                empty: None,
            }))),
            Ok(Parsed::Scanned(parsed)) => Prepared::Scanned(Box::new(Scanned {
                input,
                size,
                hash,
                previous,
                parsed,
                bytes,
            })),
            Err((e, format)) if e.is_empty_document() => {
                let work = Work::empty(input, size, hash, previous, format, Vec::new(), e);
                Prepared::Ready(Message::Work(Box::new(work)))
            }
            Err((e, _)) => done(failed(&input, size, &e)),
        }
    }

    /// Parsing (and chunking, unless OCR comes first) runs on its own thread so a
    /// pathological file cannot stall the job: after the time limit the file fails and the
    /// thread is abandoned (Rust threads cannot be killed; it ends when the parser does).
    /// Errors come with the detected format, which an `empty` document records.
    fn parse_with_timeout(
        &self,
        input: &Input,
        bytes: Arc<[u8]>,
    ) -> Result<Parsed, (IngestError, zhiku_parse::DocFormat)> {
        let (tx, rx) = sync_channel(1);
        let name = input.name.clone();
        let id = input.document_id.clone();
        let content_type = input.content_type.clone();
        let embedder = self.embedder.clone();
        let chunking = self.settings.chunking.clone();
        let options = self.settings.parse;
        let ocr = self.ocr.clone();
        let parsers = self.parsers.clone();
        // Any format will do for errors that record no document.
        let unknown = zhiku_parse::DocFormat::Text;
        std::thread::Builder::new()
            .name("zhiku-parse".into())
            .spawn(move || {
                let result = (|| {
                    let content_type = content_type.as_deref();
                    let pool = parsers.as_deref();
                    let mut parsed = parse_file(pool, &name, content_type, &bytes, &options)
                        .map_err(|e| (e, unknown))?;
                    let format = parsed.format;
                    let parsed = match &ocr {
                        Some(ocr) if !parsed.ocr.is_empty() => {
                            plan_ocr(&mut parsed, &name, &bytes, ocr, pool)
                                .map_err(|e| (e, format))?;
                            return Ok(Parsed::Scanned(parsed));
                        }
                        _ => without_ocr(parsed).map_err(|e| (e, format))?,
                    };
                    let chunked = chunk_parsed(
                        &parsed,
                        &name,
                        &id,
                        embedder.as_ref(),
                        &chunking,
                        Vec::new(),
                    )
                    .map_err(|e| (e, format))?;
                    Ok(Parsed::Chunked(chunked))
                })();
                let _ = tx.send(result);
            })
            .map_err(|e| {
                let e = IngestError::Read(format!("could not start a parser thread: {e}"));
                (e, unknown)
            })?;
        match rx.recv_timeout(self.settings.file_timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err((
                IngestError::Timeout {
                    stage: Stage::Parse,
                    seconds: self.settings.file_timeout.as_secs(),
                },
                unknown,
            )),
            Err(RecvTimeoutError::Disconnected) => Err((
                IngestError::Read("the parser stopped unexpectedly".to_string()),
                unknown,
            )),
        }
    }
}

/// The engines a run uses: embedding always, OCR unless it is disabled.
#[derive(Clone)]
pub struct Engines {
    /// Turns chunks into vectors.
    pub embedder: Arc<dyn Embedder>,
    /// Reads images and scanned pages; `None` when OCR is disabled.
    pub ocr: Option<Arc<Ocr>>,
    /// Worker processes that parse untrusted files; `None` parses on a thread of this
    /// process, for trusted input only (a hostile file can then crash the process).
    pub parsers: Option<Arc<ParserPool>>,
}

/// Runs `inputs` through the pipeline into `kb`, reporting every finished file to
/// `recorder` and OCR's progress, page by page, to `on_ocr` (from the OCR stage's thread).
/// Returns early, recording nothing more, once `cancel` is set.
///
/// Per-file problems become failed results; only a failure to record results at all
/// (the catalog or the stores refusing every write) is an error of the whole run.
pub fn run(
    kb: &KnowledgeBase,
    engines: Engines,
    settings: &PipelineSettings,
    inputs: impl Iterator<Item = Input> + Send,
    cancel: &AtomicBool,
    recorder: &mut dyn Recorder,
    on_ocr: &(dyn Fn(OcrProgress) + Sync),
) -> Result<(), IndexError> {
    let ctx = Context {
        kb,
        fingerprint: pipeline_fingerprint(engines.embedder.as_ref(), &settings.chunking),
        ocr_fingerprint: ocr_fingerprint(engines.ocr.as_deref(), &settings.parse),
        embedder: engines.embedder,
        ocr: engines.ocr,
        parsers: engines.parsers,
        settings,
        cancel,
    };
    // Small bounds: a few files in flight per stage is enough to keep the embedder busy.
    let (to_ocr, ocr_rx) = sync_channel::<Prepared>(4);
    let (to_embed, embed_rx) = sync_channel::<Message>(4);
    let (to_index, index_rx) = sync_channel::<Message>(4);
    std::thread::scope(|scope| {
        let ctx = &ctx;
        std::thread::Builder::new()
            .name("zhiku-read".into())
            .spawn_scoped(scope, move || feed(ctx, inputs, to_ocr))
            .expect("spawn reader thread");
        std::thread::Builder::new()
            .name("zhiku-ocr-stage".into())
            .spawn_scoped(scope, move || {
                OcrStage::new(ctx, on_ocr).run(ocr_rx, to_embed);
            })
            .expect("spawn OCR thread");
        std::thread::Builder::new()
            .name("zhiku-embed".into())
            .spawn_scoped(scope, move || embed(ctx, embed_rx, to_index))
            .expect("spawn embedder thread");
        index(ctx, index_rx, recorder)
    })
}

fn feed(ctx: &Context, inputs: impl Iterator<Item = Input>, out: SyncSender<Prepared>) {
    for input in inputs {
        if ctx.cancelled() {
            return;
        }
        if out.send(ctx.prepare(input)).is_err() {
            return;
        }
    }
}

/// One task's outcome, sent back by an OCR worker: document, task, result.
type PageDone = (u64, usize, Result<RecognizedPage, OcrError>);

/// A document whose pages are with the OCR workers.
struct InOcr {
    scanned: Box<Scanned>,
    /// The PDF on disk for `pdftoppm`, written when its first page is handed out.
    pdf: Option<Arc<PdfFile>>,
    results: Vec<(usize, Result<RecognizedPage, OcrError>)>,
}

/// The OCR stage: hands the pages of scanned documents to the OCR pool, a few documents
/// at a time, and passes every other file straight on. A document moves on once all of
/// its pages are back, whatever became of each.
struct OcrStage<'c, 'a> {
    ctx: &'c Context<'a>,
    on_ocr: &'c (dyn Fn(OcrProgress) + Sync),
    docs: HashMap<u64, InOcr>,
    next_id: u64,
    /// Pages not yet handed to the pool: (document, task).
    queue: VecDeque<(u64, usize)>,
    in_flight: usize,
    /// Set when the stage stops early; workers skip the pages still queued for it.
    abandoned: Arc<AtomicBool>,
    progress: OcrProgress,
    busy_since: Option<Instant>,
    busy: Duration,
}

impl<'c, 'a> OcrStage<'c, 'a> {
    fn new(ctx: &'c Context<'a>, on_ocr: &'c (dyn Fn(OcrProgress) + Sync)) -> Self {
        Self {
            ctx,
            on_ocr,
            docs: HashMap::new(),
            next_id: 0,
            queue: VecDeque::new(),
            in_flight: 0,
            abandoned: Arc::new(AtomicBool::new(false)),
            progress: OcrProgress::default(),
            busy_since: None,
            busy: Duration::ZERO,
        }
    }

    /// Pages queued in the pool for this run: enough to keep every worker busy while
    /// results come back, few enough that a cancelled run leaves little behind.
    fn window(&self) -> usize {
        self.ctx
            .ocr
            .as_ref()
            .map_or(1, |ocr| ocr.config().workers * 2)
    }

    fn run(mut self, rx: Receiver<Prepared>, out: SyncSender<Message>) {
        let (done_tx, done_rx) = channel::<PageDone>();
        let mut open = true;
        while self.step(&rx, &mut open, &done_tx, &done_rx, &out) {}
        // Whatever is still queued in the pool for this run is skipped.
        self.abandoned.store(true, Ordering::SeqCst);
    }

    /// One round: take in files, hand out pages, collect one result. False once done or
    /// when the run stops.
    fn step(
        &mut self,
        rx: &Receiver<Prepared>,
        open: &mut bool,
        done_tx: &std::sync::mpsc::Sender<PageDone>,
        done_rx: &Receiver<PageDone>,
        out: &SyncSender<Message>,
    ) -> bool {
        if self.ctx.cancelled() {
            return false;
        }
        if *open && self.queue.len() < self.window() {
            // Wait for input only when there is nothing else to wait for.
            let message = if self.docs.is_empty() {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match message {
                Ok(Prepared::Ready(message)) => {
                    if out.send(message).is_err() {
                        return false;
                    }
                }
                Ok(Prepared::Scanned(scanned)) => self.admit(scanned),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => *open = false,
            }
        }
        if !*open && self.docs.is_empty() {
            return false;
        }
        while self.in_flight < self.window() {
            let Some((doc, task)) = self.queue.pop_front() else {
                break;
            };
            self.dispatch(doc, task, done_tx);
        }
        if self.in_flight == 0 {
            return true;
        }
        // Short waits keep new files flowing in and cancellation prompt.
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok((doc, task, result)) => {
                self.in_flight -= 1;
                self.page_finished(result.is_err());
                self.record(doc, task, result, out)
            }
            Err(RecvTimeoutError::Timeout) => true,
            // The stage holds a sender itself, so this cannot happen.
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    fn admit(&mut self, scanned: Box<Scanned>) {
        let id = self.next_id;
        self.next_id += 1;
        let tasks = scanned.parsed.ocr.len();
        self.queue.extend((0..tasks).map(|task| (id, task)));
        self.progress.pages_total += tasks as u64;
        self.report();
        self.docs.insert(
            id,
            InOcr {
                scanned,
                pdf: None,
                results: Vec::with_capacity(tasks),
            },
        );
    }

    fn dispatch(&mut self, doc: u64, task: usize, done_tx: &std::sync::mpsc::Sender<PageDone>) {
        let Some(ocr) = self.ctx.ocr.clone() else {
            return;
        };
        let Some(entry) = self.docs.get_mut(&doc) else {
            return;
        };
        let source = entry.scanned.parsed.ocr[task].source.clone();
        if matches!(source, OcrSource::PdfPage { .. }) && entry.pdf.is_none() {
            match PdfFile::new(&entry.scanned.bytes) {
                Ok(pdf) => entry.pdf = Some(Arc::new(pdf)),
                Err(e) => {
                    // Counted as a page that went out and failed at once.
                    let _ = done_tx.send((doc, task, Err(e)));
                    self.started_page();
                    return;
                }
            }
        }
        let bytes = entry.scanned.bytes.clone();
        let name = entry.scanned.input.name.clone();
        let pdf = entry.pdf.clone();
        let parsers = self.ctx.parsers.clone();
        let done_tx = done_tx.clone();
        let abandoned = self.abandoned.clone();
        self.started_page();
        ocr.clone().spawn(move || {
            let result = if abandoned.load(Ordering::SeqCst) {
                Err(OcrError::Failed("the job stopped".into()))
            } else {
                let pool = parsers.as_deref();
                recognize(&ocr, pool, &name, &source, &bytes, pdf.as_deref())
            };
            let _ = done_tx.send((doc, task, result));
        });
    }

    fn started_page(&mut self) {
        self.in_flight += 1;
        self.busy_since.get_or_insert_with(Instant::now);
    }

    fn page_finished(&mut self, failed: bool) {
        self.progress.pages_done += 1;
        self.progress.pages_failed += u64::from(failed);
        if self.in_flight == 0
            && let Some(since) = self.busy_since.take()
        {
            self.busy += since.elapsed();
        }
        self.report();
    }

    fn report(&mut self) {
        let running = self.busy_since.map_or(Duration::ZERO, |s| s.elapsed());
        self.progress.busy_seconds = (self.busy + running).as_secs_f64();
        (self.on_ocr)(self.progress);
    }

    /// Files a page's result; a document whose pages are all back moves on.
    fn record(
        &mut self,
        doc: u64,
        task: usize,
        result: Result<RecognizedPage, OcrError>,
        out: &SyncSender<Message>,
    ) -> bool {
        let Some(entry) = self.docs.get_mut(&doc) else {
            return true;
        };
        if let Err(e) = &result {
            tracing::warn!(file = %entry.scanned.input.name, task, "OCR of a page failed: {e}");
        }
        entry.results.push((task, result));
        if entry.results.len() < entry.scanned.parsed.ocr.len() {
            return true;
        }
        let Some(entry) = self.docs.remove(&doc) else {
            return true;
        };
        out.send(self.finish(entry)).is_ok()
    }

    /// Merges a document's OCR text and chunks it, or records it as empty or failed.
    fn finish(&self, entry: InOcr) -> Message {
        let Scanned {
            input,
            size,
            hash,
            previous,
            mut parsed,
            ..
        } = *entry.scanned;
        let pages = match apply_ocr(&mut parsed, entry.results) {
            Ok(pages) => pages,
            Err((e, pages)) if e.is_empty_document() => {
                let format = parsed.format;
                let work = Work::empty(input, size, hash, previous, format, pages, e);
                return Message::Work(Box::new(work));
            }
            Err((e, _)) => return Message::Done(Box::new(failed(&input, size, &e))),
        };
        let chunked = chunk_parsed(
            &parsed,
            &input.name,
            &input.document_id,
            self.ctx.embedder.as_ref(),
            &self.ctx.settings.chunking,
            pages,
        );
        match chunked {
            Ok(chunked) => Message::Work(Box::new(Work {
                input,
                size,
                hash,
                // OCR had its own per-page limits; the file's limit covers the rest.
                started: Instant::now(),
                previous,
                chunked,
                vectors: Vec::new(),
                empty: None,
            })),
            Err(e) => Message::Done(Box::new(failed(&input, size, &e))),
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
                // Nothing to embed (an empty document): straight on to be recorded.
                Ok(Message::Work(work)) if work.chunked.records.is_empty() => {
                    if out.send(Message::Embedded(vec![*work])).is_err() {
                        return;
                    }
                }
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
            empty,
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
            outcome: match empty {
                // Stored, so it is visible, but reported: nothing of it can be found.
                Some(e) => FileOutcome::Failed {
                    code: e.code().to_string(),
                    stage: e.stage().as_str().to_string(),
                    message: e.to_string(),
                },
                None => FileOutcome::Indexed {
                    chunks: chunked.records.len(),
                    outcome,
                },
            },
        });
        let records = std::mem::take(&mut chunked.records);
        writes.push(DocumentWrite {
            document: DocumentInfo {
                id: input.document_id.clone(),
                name: input.name.clone(),
                chunks: records.len(),
                status: if empty.is_some() {
                    DocumentStatus::Empty
                } else {
                    DocumentStatus::Indexed
                },
                reason: empty.as_ref().map(ToString::to_string),
                ocr_pages: std::mem::take(&mut chunked.ocr_pages),
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
