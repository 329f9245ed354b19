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

mod embed;
mod index;
mod ocr;
mod read;

use embed::embed;
use index::index;
use ocr::OcrStage;
use read::feed;

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
    DocumentId, DocumentInfo, DocumentOutcome, DocumentStatus, FileError, OcrPage, OcrProgress,
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

fn failed(input: &Input, size: u64, error: &IngestError) -> FileResult {
    FileResult {
        record: FileRecord {
            name: input.name.clone(),
            document_id: input.document_id.to_string(),
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

impl Context<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
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
