//! The stages of ingesting one file: read → parse → OCR → chunk → embed → index.
//!
//! Each stage is a plain function so that the batch runner (`zhiku-jobs`) can put them on
//! different threads, and OCR's pages on a worker pool. Every failure is an
//! [`IngestError`] that names its stage and carries a stable code, so a job report says
//! where and why a file failed.

#![warn(missing_docs)]

use sha2::{Digest, Sha256};
use zhiku_chunk::{ChunkerConfig, TokenCounter, chunk_document};
use zhiku_embed::{EmbedError, Embedder};
use zhiku_index::IndexError;
use zhiku_ocr::{Ocr, OcrError, Page, PdfFile, RecognizedPage};
use zhiku_parse::{
    DocFormat, OcrSource, OcrTask, OcrText, ParseError, ParseOptions, ParsedDocument,
    detect_format, parse_with,
};
use zhiku_sandbox::{ParserPool, SandboxError};
use zhiku_schemas::{ChunkRecord, DocumentId, KbName, OcrPage};

/// A stage of the pipeline, as named in error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the file.
    Read,
    /// Detecting the format and extracting text.
    Parse,
    /// Recognising text in images and scanned pages.
    Ocr,
    /// Cutting the text into chunks.
    Chunk,
    /// Computing vectors.
    Embed,
    /// Writing to the stores and the catalog.
    Index,
}

impl Stage {
    /// The stage's name in API responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Parse => "parse",
            Stage::Ocr => "ocr",
            Stage::Chunk => "chunk",
            Stage::Embed => "embed",
            Stage::Index => "index",
        }
    }
}

/// Why a file could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read.
    #[error("could not read the file: {0}")]
    Read(String),
    /// The file exceeds the configured size limit.
    #[error("the file has {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// File size.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The file could not be read as a supported document.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The parser's worker process died on the file, ran out of memory or time.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Parsing succeeded but produced no chunk.
    #[error("the document has no text to index")]
    NoChunks,
    /// OCR of the file's images or scanned pages failed (every one of them; a page that
    /// fails among others fails alone).
    #[error(transparent)]
    Ocr(#[from] OcrError),
    /// The file has more pages (or images) for OCR than the limit.
    #[error(
        "the file has {pages} scanned pages or images for OCR, more than the limit of {limit} ([ocr] max_pages)"
    )]
    TooManyPages {
        /// Pages needing OCR.
        pages: usize,
        /// The limit.
        limit: usize,
    },
    /// An image upload while OCR is disabled.
    #[error("images are read by OCR, which is disabled ([ocr] enabled = false)")]
    OcrDisabled,
    /// OCR ran and found no text anywhere in the file.
    #[error("OCR found no text on the {pages} page(s) or image(s) of the file")]
    NoTextFound {
        /// Pages and images read.
        pages: usize,
    },
    /// Embedding failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Storing failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The file took longer than the per-file time limit.
    #[error("gave up after {seconds} s in the {} stage (per-file time limit)", stage.as_str())]
    Timeout {
        /// Stage that was running.
        stage: Stage,
        /// The limit.
        seconds: u64,
    },
    /// The job was cancelled before this file finished.
    #[error("the job was cancelled")]
    Cancelled,
}

impl IngestError {
    /// Machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Read(_) => "read_failed",
            IngestError::TooLarge { .. } => "file_too_large",
            IngestError::Parse(e) => e.code(),
            IngestError::Sandbox(e) => e.code(),
            IngestError::NoChunks => "empty_document",
            IngestError::Ocr(e) => e.code(),
            IngestError::TooManyPages { .. } => "too_many_pages",
            IngestError::OcrDisabled => "ocr_disabled",
            IngestError::NoTextFound { .. } => "no_text_found",
            IngestError::Embed(_) => "embedding_failed",
            IngestError::Index(IndexError::ModelMismatch { .. }) => "model_mismatch",
            IngestError::Index(_) => "index_failed",
            IngestError::Timeout { .. } => "timeout",
            IngestError::Cancelled => "cancelled",
        }
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        match self {
            IngestError::Read(_) | IngestError::TooLarge { .. } | IngestError::Cancelled => {
                Stage::Read
            }
            IngestError::Parse(_) | IngestError::Sandbox(_) => Stage::Parse,
            IngestError::Ocr(_)
            | IngestError::TooManyPages { .. }
            | IngestError::OcrDisabled
            | IngestError::NoTextFound { .. } => Stage::Ocr,
            IngestError::NoChunks => Stage::Chunk,
            IngestError::Embed(_) => Stage::Embed,
            IngestError::Index(_) => Stage::Index,
            IngestError::Timeout { stage, .. } => *stage,
        }
    }
}

impl IngestError {
    /// Whether the file was read and simply holds no text (a blank scan, or a scan while
    /// OCR is disabled): it is then recorded as an `empty` document with this error as the
    /// reason, so that it is visible rather than silently missing.
    pub fn is_empty_document(&self) -> bool {
        matches!(
            self,
            IngestError::Parse(ParseError::NoTextLayer { .. })
                | IngestError::OcrDisabled
                | IngestError::NoTextFound { .. }
        )
    }
}

/// Stable document id derived from the KB and file name, so re-uploading a file replaces it.
pub fn document_id(kb: &KbName, name: &str) -> DocumentId {
    let digest = Sha256::digest(format!("{kb}\0{name}").as_bytes());
    DocumentId::new(hex(&digest[..8])).expect("16 hex digits are a valid document id")
}

/// Lowercase hex of bytes, as every digest zhiku stores is written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The settings that shape a document's chunks and vectors: a change to any of them makes
/// stored documents stale even when their content is the same.
pub fn pipeline_fingerprint(embedder: &dyn Embedder, chunking: &ChunkerConfig) -> String {
    format!(
        "{}/{}/{}/{}",
        embedder.name(),
        embedder.dimension(),
        chunking.max_tokens,
        chunking.overlap_tokens
    )
}

/// The OCR settings that shape the text of scanned pages and images, for the fingerprint of
/// files that may need OCR: enabling OCR or changing its languages makes them stale.
pub fn ocr_fingerprint(ocr: Option<&Ocr>, options: &ParseOptions) -> String {
    match ocr {
        Some(ocr) => format!(
            "ocr:{}/{}/{}",
            ocr.config().languages,
            ocr.config().dpi,
            options.docx_images
        ),
        None => "ocr:off".to_string(),
    }
}

/// Whether a file in this format may hold text that only OCR reads.
pub fn may_need_ocr(format: DocFormat) -> bool {
    matches!(
        format,
        DocFormat::Pdf | DocFormat::Docx | DocFormat::Image(_)
    )
}

/// `sha256:<hex>` of the content and the pipeline fingerprint: equal hashes mean
/// re-ingesting would produce the same chunks.
pub fn content_hash(bytes: &[u8], fingerprint: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update([0]);
    hasher.update(fingerprint.as_bytes());
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// The text embedded for a chunk. The heading path goes with the text: a chunk under
/// "Network > DNS" is about DNS even when its own sentences never say so.
pub fn embedding_input(record: &ChunkRecord) -> String {
    match &record.heading {
        Some(h) => format!("{h}\n{}", record.text),
        None => record.text.clone(),
    }
}

/// Counts tokens with the embedder's own tokenizer, so chunks fit the model.
struct EmbedderTokens<'a>(&'a dyn Embedder);

impl TokenCounter for EmbedderTokens<'_> {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}

/// A file cut into chunks, not yet embedded.
#[derive(Debug, Clone)]
pub struct ChunkedFile {
    /// Detected format.
    pub format: DocFormat,
    /// Chunks in document order; `version` is assigned when stored.
    pub records: Vec<ChunkRecord>,
    /// The pages (or images) OCR read, with their confidence or error.
    pub ocr_pages: Vec<OcrPage>,
}

/// Detects the format of one file's bytes and parses them; text for OCR is listed in the
/// result's `ocr` tasks, not yet read. With a `pool`, this runs in one of its worker
/// processes, so a file that crashes or exhausts the parser fails alone with a
/// [`SandboxError`]; without one, in this process.
pub fn parse_file(
    pool: Option<&ParserPool>,
    name: &str,
    content_type: Option<&str>,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<ParsedDocument, IngestError> {
    match pool {
        Some(pool) => Ok(pool.parse(name, content_type, bytes, options)??),
        None => {
            let format = detect_format(name, content_type, bytes)?;
            Ok(parse_with(format, bytes, options)?)
        }
    }
}

/// The document without its OCR tasks, for when OCR is disabled: the text it has, or an
/// error saying why it has none ([`ParseError::NoTextLayer`] for a scanned PDF,
/// [`IngestError::OcrDisabled`] for an image).
pub fn without_ocr(mut parsed: ParsedDocument) -> Result<ParsedDocument, IngestError> {
    let tasks = std::mem::take(&mut parsed.ocr);
    if parsed.blocks.is_empty() && !tasks.is_empty() {
        return Err(match parsed.format {
            DocFormat::Pdf => IngestError::Parse(ParseError::NoTextLayer { pages: tasks.len() }),
            _ => IngestError::OcrDisabled,
        });
    }
    Ok(parsed)
}

/// Lists a parsed document's OCR work page by page and checks it against the page limit
/// before any of it runs. An image file is checked from its header and becomes one task
/// per page (several for a multi-page TIFF); a truncated, oversized or unreadable image
/// header fails the file here, before it waits for the OCR workers. With a `pool`, the
/// header is read in a worker process.
pub fn plan_ocr(
    parsed: &mut ParsedDocument,
    name: &str,
    bytes: &[u8],
    ocr: &Ocr,
    pool: Option<&ParserPool>,
) -> Result<(), IngestError> {
    if let [
        OcrTask {
            source: OcrSource::Image { .. },
            ..
        },
    ] = parsed.ocr.as_slice()
    {
        let pages = match pool {
            Some(pool) => pool.image_pages(name, bytes, ocr.config())??,
            None => ocr.reader().image_pages(bytes)?,
        };
        parsed.ocr = OcrTask::image_pages(pages);
    }
    let limit = ocr.config().max_pages;
    if parsed.ocr.len() > limit {
        return Err(IngestError::TooManyPages {
            pages: parsed.ocr.len(),
            limit,
        });
    }
    Ok(())
}

/// Runs one OCR task of file `name`: a page of the file as an image, one page of the PDF
/// (`pdf` holds the file's bytes on disk), or an embedded image. With a `pool`, the page
/// is read in a worker process, whose limits the OCR tools inherit; a worker that dies
/// fails this page only. Blocking; the runner calls it on OCR's pool.
pub fn recognize(
    ocr: &Ocr,
    pool: Option<&ParserPool>,
    name: &str,
    source: &OcrSource,
    bytes: &[u8],
    pdf: Option<&PdfFile>,
) -> Result<RecognizedPage, OcrError> {
    let (page, bytes) = match source {
        OcrSource::Image { page } => (Page::Image { page: *page }, bytes),
        // Word shows the first page of a multi-page picture, so that is what is read.
        OcrSource::Embedded { bytes, .. } => (Page::Image { page: 1 }, &bytes[..]),
        OcrSource::PdfPage { page, size_pt } => match pdf {
            Some(pdf) => {
                let page = Page::Pdf {
                    path: pdf.path().to_path_buf(),
                    page: *page,
                    size_pt: *size_pt,
                };
                (page, &[][..])
            }
            None => return Err(OcrError::Failed("the PDF is not on disk".into())),
        },
    };
    let Some(pool) = pool else {
        return ocr.reader().read(&page, bytes);
    };
    match pool.recognize(name, &page, bytes, ocr.config()) {
        Ok(read) => read,
        Err(SandboxError::Timeout { seconds }) => Err(OcrError::Timeout { seconds }),
        Err(e) => Err(OcrError::Failed(format!(
            "the page's worker process failed ({}): {e}",
            e.code()
        ))),
    }
}

/// Puts what OCR read into the document (see [`ParsedDocument::merge_ocr`]) and reports
/// every page. `results` holds each task's outcome by task index; a task that failed
/// costs its page only. A document left without any text is an error: the first
/// task's failure if any failed, else [`IngestError::NoTextFound`] (an empty document).
/// Either way the page report comes along.
pub fn apply_ocr(
    parsed: &mut ParsedDocument,
    results: Vec<(usize, Result<RecognizedPage, OcrError>)>,
) -> Result<Vec<OcrPage>, (IngestError, Vec<OcrPage>)> {
    let mut results = results;
    results.sort_by_key(|(task, _)| *task);
    let mut pages = Vec::new();
    let mut texts = Vec::new();
    let mut failure = None;
    for (task, result) in results {
        let Some(source) = parsed.ocr.get(task).map(|t| &t.source) else {
            continue;
        };
        let (page, image) = match source {
            OcrSource::Image { page } | OcrSource::PdfPage { page, .. } => (Some(*page), None),
            OcrSource::Embedded { name, .. } => (None, Some(name.clone())),
        };
        let mut report = OcrPage {
            page,
            image,
            confidence: None,
            words: 0,
            error: None,
        };
        match result {
            Ok(recognized) => {
                report.confidence = recognized.confidence;
                report.words = recognized.words;
                texts.push(OcrText {
                    task,
                    confidence: recognized.confidence.unwrap_or(0.0),
                    paragraphs: recognized.paragraphs,
                });
            }
            Err(e) => {
                report.error = Some(e.to_string());
                failure.get_or_insert(e);
            }
        }
        pages.push(report);
    }
    parsed.merge_ocr(texts);
    if parsed.blocks.is_empty() {
        let error = match failure {
            Some(e) => IngestError::Ocr(e),
            None => IngestError::NoTextFound { pages: pages.len() },
        };
        return Err((error, pages));
    }
    Ok(pages)
}

/// Cuts a parsed document (OCR done or dropped) into chunk records for `document_id`.
pub fn chunk_parsed(
    parsed: &ParsedDocument,
    name: &str,
    document_id: &str,
    embedder: &dyn Embedder,
    chunking: &ChunkerConfig,
    ocr_pages: Vec<OcrPage>,
) -> Result<ChunkedFile, IngestError> {
    let chunks = chunk_document(parsed, &EmbedderTokens(embedder), chunking);
    if chunks.is_empty() {
        return Err(IngestError::NoChunks);
    }
    let records = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let index = i as u32;
            ChunkRecord {
                chunk_id: ChunkRecord::make_id(document_id, index),
                document_id: document_id.to_string(),
                document_name: name.to_string(),
                chunk_index: index,
                text: c.text,
                heading: (!c.heading_path.is_empty()).then(|| c.heading_path.join(" > ")),
                page: c.page,
                ocr: c.ocr_confidence.is_some(),
                ocr_confidence: c.ocr_confidence,
                // Version and metadata are the document's, stamped on when it is stored.
                version: 0,
                tags: Vec::new(),
                path: String::new(),
                mime: String::new(),
            }
        })
        .collect();
    Ok(ChunkedFile {
        format: parsed.format,
        records,
        ocr_pages,
    })
}

/// Detects, parses and chunks one file's bytes without OCR (text that only OCR could read
/// is left out, see [`without_ocr`]). Touches no store.
pub fn chunk_file(
    name: &str,
    document_id: &str,
    content_type: Option<&str>,
    bytes: &[u8],
    embedder: &dyn Embedder,
    chunking: &ChunkerConfig,
) -> Result<ChunkedFile, IngestError> {
    let parsed = without_ocr(parse_file(
        None,
        name,
        content_type,
        bytes,
        &ParseOptions::default(),
    )?)?;
    chunk_parsed(&parsed, name, document_id, embedder, chunking, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_stable_and_distinct() {
        let kb = |name: &str| KbName::new(name).unwrap();
        assert_eq!(
            document_id(&kb("kb"), "a.md"),
            document_id(&kb("kb"), "a.md")
        );
        assert_ne!(
            document_id(&kb("kb"), "a.md"),
            document_id(&kb("kb"), "b.md")
        );
        assert_ne!(
            document_id(&kb("kb1"), "a.md"),
            document_id(&kb("kb2"), "a.md")
        );
        assert_eq!(document_id(&kb("kb"), "a.md").len(), 16);
    }

    #[test]
    fn hashes_cover_content_and_settings() {
        let a = content_hash(b"hello", "m/384/256/32");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_eq!(a, content_hash(b"hello", "m/384/256/32"));
        assert_ne!(a, content_hash(b"hello!", "m/384/256/32"));
        assert_ne!(a, content_hash(b"hello", "m/384/128/32"));
    }

    #[test]
    fn errors_name_stage_and_code() {
        let e = IngestError::Timeout {
            stage: Stage::Embed,
            seconds: 5,
        };
        assert_eq!(e.code(), "timeout");
        assert_eq!(e.stage().as_str(), "embed");
        assert!(e.to_string().contains("embed stage"));
        let e = IngestError::Parse(ParseError::Empty);
        assert_eq!((e.code(), e.stage()), ("empty_document", Stage::Parse));
        let e = IngestError::NoTextFound { pages: 2 };
        assert_eq!((e.code(), e.stage().as_str()), ("no_text_found", "ocr"));
        assert!(e.is_empty_document());
        assert!(!IngestError::Ocr(OcrError::Timeout { seconds: 1 }).is_empty_document());
        assert_eq!(
            IngestError::TooManyPages {
                pages: 500,
                limit: 200
            }
            .code(),
            "too_many_pages"
        );
    }

    fn scanned(pages: u32) -> ParsedDocument {
        ParsedDocument {
            format: DocFormat::Pdf,
            title: None,
            blocks: Vec::new(),
            ocr: (1..=pages)
                .map(|page| zhiku_parse::OcrTask {
                    source: OcrSource::PdfPage {
                        page,
                        size_pt: None,
                    },
                    position: 0,
                    heading_path: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn scans_without_ocr_say_why_they_are_empty() {
        let e = without_ocr(scanned(3)).unwrap_err();
        assert_eq!(e.code(), "no_text_layer");
        assert!(e.to_string().contains("3 page(s)"), "{e}");
        assert!(e.is_empty_document());
        let mut image = scanned(1);
        image.format = DocFormat::Image(zhiku_parse::ImageFormat::Png);
        assert_eq!(without_ocr(image).unwrap_err().code(), "ocr_disabled");
    }

    #[test]
    fn a_failed_page_fails_alone() {
        let page = |n: u32, text: &str| RecognizedPage {
            page: 1,
            confidence: Some(88.0),
            words: 1,
            paragraphs: vec![format!("{text} {n}")],
        };
        let mut doc = scanned(3);
        let pages = apply_ocr(
            &mut doc,
            vec![
                (2, Ok(page(3, "three"))),
                (0, Ok(page(1, "one"))),
                (1, Err(OcrError::Timeout { seconds: 5 })),
            ],
        )
        .unwrap();
        let texts: Vec<(&str, Option<u32>)> = doc
            .blocks
            .iter()
            .map(|b| (b.text.as_str(), b.page))
            .collect();
        assert_eq!(texts, [("one 1", Some(1)), ("three 3", Some(3))]);
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[1].page, Some(2));
        assert!(pages[1].error.as_deref().unwrap().contains("gave up"));
        assert_eq!(pages[2].confidence, Some(88.0));
        // Nothing readable anywhere: the failure, or "no text" when nothing failed.
        let blank = RecognizedPage {
            page: 1,
            confidence: None,
            words: 0,
            paragraphs: vec![],
        };
        let mut doc = scanned(2);
        let (e, pages) = apply_ocr(
            &mut doc,
            vec![
                (0, Err(OcrError::Timeout { seconds: 5 })),
                (1, Ok(blank.clone())),
            ],
        )
        .unwrap_err();
        assert_eq!((e.code(), pages.len()), ("timeout", 2));
        let (e, pages) = apply_ocr(&mut scanned(1), vec![(0, Ok(blank))]).unwrap_err();
        assert_eq!(e.code(), "no_text_found");
        assert_eq!(pages[0].confidence, None);
    }
}
