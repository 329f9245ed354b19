//! The OCR stage: images and scanned PDF pages to text, with the `tesseract` command
//! (Debian `tesseract-ocr` and its language packages) and, for PDF pages, `pdftoppm`
//! (`poppler-utils`) to rasterize them first.
//!
//! Both run as subprocesses rather than through native bindings: nothing to compile, a
//! crash or a runaway page costs one child process, and a page past its time limit is
//! killed. Every child gets `OMP_THREAD_LIMIT=1`, so the pool's worker count is the number
//! of cores OCR uses.
//!
//! Images are checked from their header before any decoder sees them: a file claiming
//! 100,000 × 100,000 pixels is refused, not decoded, and a PNG, WebP or BMP cut short is
//! named as truncated. PDF pages are rasterized at the configured DPI, lowered for pages
//! so large that the raster would exceed the same pixel limit.

#![warn(missing_docs)]

mod tsv;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

pub use tsv::parse_tsv;

/// How OCR runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrConfig {
    /// Tesseract languages joined by `+`, e.g. `chi_sim+chi_tra+eng`.
    pub languages: String,
    /// Resolution PDF pages are rasterized at.
    pub dpi: u32,
    /// Pages read at once (each by one single-threaded tesseract process).
    pub workers: usize,
    /// Time one page may take, rasterizing included; then its processes are killed.
    pub page_timeout: Duration,
    /// Most pages (and images) one file may send to OCR.
    pub max_pages: usize,
    /// Largest image or page raster, in pixels (width × height).
    pub max_image_pixels: u64,
}

impl Default for OcrConfig {
    fn default() -> Self {
        Self {
            languages: "chi_sim+chi_tra+eng".into(),
            dpi: 300,
            workers: 2,
            page_timeout: Duration::from_secs(120),
            max_pages: 200,
            // 50 megapixels: an A4 page at 600 DPI is 35, at 300 DPI 8.7.
            max_image_pixels: 50_000_000,
        }
    }
}

/// Why a page or image could not be read, or OCR cannot run at all.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum OcrError {
    /// The bytes are not a readable image (unknown header, truncated, corrupt).
    #[error("the image cannot be read: {0}")]
    InvalidImage(String),
    /// The image (or a PDF page's raster) would be larger than the pixel limit.
    #[error(
        "the image is {width} x {height} pixels, more than the limit of {limit} pixels ([ocr] max_image_pixels); refused without decoding it"
    )]
    ImageTooLarge {
        /// Width from the header.
        width: u64,
        /// Height from the header.
        height: u64,
        /// The limit.
        limit: u64,
    },
    /// A multi-page image (TIFF) has more pages than OCR may read from one file.
    #[error("the image has {pages} pages, more than the limit of {limit} ([ocr] max_pages)")]
    TooManyPages {
        /// Pages in the image.
        pages: usize,
        /// The limit.
        limit: usize,
    },
    /// The page took longer than the per-page limit and was abandoned.
    #[error("OCR of the page gave up after {seconds} s ([ocr] page_timeout_secs)")]
    Timeout {
        /// The limit.
        seconds: u64,
    },
    /// Tesseract or pdftoppm failed for another reason.
    #[error("OCR failed: {0}")]
    Failed(String),
    /// OCR cannot run on this machine (missing command or language data).
    #[error("{0}")]
    Unavailable(String),
}

impl OcrError {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            OcrError::InvalidImage(_) => "invalid_image",
            OcrError::ImageTooLarge { .. } => "image_too_large",
            OcrError::TooManyPages { .. } => "too_many_pages",
            OcrError::Timeout { .. } => "timeout",
            OcrError::Failed(_) => "ocr_failed",
            OcrError::Unavailable(_) => "ocr_unavailable",
        }
    }
}

/// What OCR read on one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecognizedPage {
    /// 1-based page: within the image (multi-page TIFF), or the PDF page number.
    pub page: u32,
    /// Mean word confidence, 0 to 100; `None` when no word was found.
    pub confidence: Option<f32>,
    /// Words found.
    pub words: usize,
    /// Paragraphs in reading order: lines separated by `\n`, words by single spaces, as
    /// Tesseract segments them (Chinese characters too; see
    /// `zhiku_parse::normalize_ocr_spacing`).
    pub paragraphs: Vec<String>,
}

/// A PDF on disk for `pdftoppm`, removed when dropped. One per document, shared by the
/// workers reading its pages.
#[derive(Debug)]
pub struct PdfFile {
    file: tempfile::NamedTempFile,
}

impl PdfFile {
    /// Writes the PDF's bytes to a temporary file.
    pub fn new(bytes: &[u8]) -> Result<Self, OcrError> {
        let mut file = tempfile::Builder::new()
            .prefix("zhiku-ocr-")
            .suffix(".pdf")
            .tempfile()
            .map_err(|e| OcrError::Failed(format!("cannot create a temporary file: {e}")))?;
        std::io::Write::write_all(&mut file, bytes)
            .map_err(|e| OcrError::Failed(format!("cannot write a temporary file: {e}")))?;
        Ok(Self { file })
    }

    /// Where the file is: what a [`Page::Pdf`] names.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// One page to read, as [`PageReader::read`] takes it (with the bytes of the image, if
/// any, beside it). Serializable, so that a sandboxed worker process can be sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Page {
    /// Page `page` (1-based) of an image file: one page of a multi-page TIFF, or the image.
    Image {
        /// The page.
        page: u32,
    },
    /// Page `page` of the PDF at `path` (see [`PdfFile`]), whose MediaBox, when known, is
    /// `size_pt` points.
    Pdf {
        /// The PDF on disk.
        path: PathBuf,
        /// The page, 1-based.
        page: u32,
        /// Width and height in points.
        size_pt: Option<(f32, f32)>,
    },
}

/// Reads pages with Tesseract under a configuration, on the calling thread. It holds no
/// threads and checks nothing at creation: [`Ocr`] wraps one after checking that the
/// tools are installed, and a sandboxed worker process makes one from the configuration
/// its parent checked.
#[derive(Debug, Clone)]
pub struct PageReader {
    config: OcrConfig,
}

/// The OCR engine and its worker pool; one per process, shared by every ingestion.
pub struct Ocr {
    reader: PageReader,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for Ocr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ocr")
            .field("config", &self.reader.config)
            .finish()
    }
}

/// Reasonable bounds on the configuration; outside them something is mistyped.
const DPI_RANGE: std::ops::RangeInclusive<u32> = 50..=1200;

impl Ocr {
    /// Checks the configuration and that `tesseract` (with every configured language) and
    /// `pdftoppm` can run, then starts `config.workers` workers. Errors say which package
    /// to install.
    pub fn new(config: OcrConfig) -> Result<Self, OcrError> {
        let bad = |m: String| {
            Err(OcrError::Unavailable(format!(
                "invalid [ocr] settings: {m}"
            )))
        };
        let languages: Vec<&str> = config.languages.split('+').collect();
        if languages
            .iter()
            .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return bad(format!(
                "languages {:?} must be Tesseract language names joined by '+', e.g. chi_sim+eng",
                config.languages
            ));
        }
        if !DPI_RANGE.contains(&config.dpi) {
            return bad(format!(
                "dpi {} is outside {}..={}",
                config.dpi,
                DPI_RANGE.start(),
                DPI_RANGE.end()
            ));
        }
        if config.workers == 0 || config.max_pages == 0 || config.max_image_pixels == 0 {
            return bad("workers, max_pages and max_image_pixels must be at least 1".into());
        }
        let installed = installed_languages()?;
        if let Some(missing) = languages
            .iter()
            .find(|l| !installed.iter().any(|i| i == *l))
        {
            return Err(OcrError::Unavailable(format!(
                "tesseract has no data for language {missing:?} (installed: {}): install the Debian package tesseract-ocr-{} (deploy/setup.sh), or change [ocr] languages",
                installed.join(", "),
                missing.replace('_', "-").to_lowercase()
            )));
        }
        let pdftoppm = Command::new("pdftoppm")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if pdftoppm.is_err() {
            return Err(OcrError::Unavailable(
                "OCR is enabled but the pdftoppm command was not found: install poppler-utils (deploy/setup.sh installs it), or set [ocr] enabled = false".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("zhiku-ocr-{i}"))
            .build()
            .map_err(|e| OcrError::Failed(format!("cannot start the OCR workers: {e}")))?;
        Ok(Self {
            reader: PageReader::new(config),
            pool,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &OcrConfig {
        &self.reader.config
    }

    /// Reads pages on the calling thread (see [`Ocr::spawn`] for the pool).
    pub fn reader(&self) -> &PageReader {
        &self.reader
    }

    /// Runs `job` on the pool, after the jobs queued before it. The pool has
    /// `config.workers` threads whoever queues work, so concurrent uploads and jobs
    /// share the same bound.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.pool.spawn_fifo(job);
    }
}

impl PageReader {
    /// A reader for `config`, which is taken as checked (see [`Ocr::new`]).
    pub fn new(config: OcrConfig) -> Self {
        Self { config }
    }

    /// Reads `page`; `bytes` are the image file's for [`Page::Image`], unused for a PDF.
    pub fn read(&self, page: &Page, bytes: &[u8]) -> Result<RecognizedPage, OcrError> {
        match page {
            Page::Image { page } => self.image_page(bytes, *page),
            Page::Pdf {
                path,
                page,
                size_pt,
            } => self.pdf_page(path, *page, *size_pt),
        }
    }

    /// Checks an image file from its header ([`check_image`]) and counts its pages: the
    /// directories of a TIFF, 1 for any other format. Nothing is decoded, so this is cheap
    /// enough to run before any page is queued; each page then goes to [`PageReader::read`]
    /// on its own, with its own time limit and its own failure.
    pub fn image_pages(&self, bytes: &[u8]) -> Result<u32, OcrError> {
        check_image(bytes, self.config.max_image_pixels)?;
        let pages = tiff_directories(bytes)
            .map_or(1, |t| t.directories.len())
            .max(1);
        if pages > self.config.max_pages {
            return Err(OcrError::TooManyPages {
                pages,
                limit: self.config.max_pages,
            });
        }
        Ok(pages as u32)
    }

    /// Reads page `page` (1-based) of an image file (PNG, JPEG, TIFF, WebP, BMP): one page
    /// of a multi-page TIFF, or the image itself. The page is checked against the pixel
    /// limit from its own header first, since a later page of a TIFF may be the bomb.
    fn image_page(&self, bytes: &[u8], page: u32) -> Result<RecognizedPage, OcrError> {
        let deadline = Instant::now() + self.config.page_timeout;
        let image = select_page(bytes, page)?;
        check_image(&image, self.config.max_image_pixels)?;
        let dir = scratch_dir()?;
        let input = dir.path().join("image");
        std::fs::write(&input, &image)
            .map_err(|e| OcrError::Failed(format!("cannot write a temporary file: {e}")))?;
        // No --dpi: images rarely say theirs truthfully, and Tesseract estimates it from
        // the text height.
        self.tesseract(&input, page, None, dir.path(), deadline)
    }

    /// Rasterizes page `page` of the PDF at `pdf` and reads it. `size_pt` (from the page's
    /// MediaBox) lowers the resolution of pages too large for the pixel limit at the
    /// configured DPI; without it the raster is cropped to the limit instead.
    fn pdf_page(
        &self,
        pdf: &Path,
        page: u32,
        size_pt: Option<(f32, f32)>,
    ) -> Result<RecognizedPage, OcrError> {
        let deadline = Instant::now() + self.config.page_timeout;
        let dpi = raster_dpi(size_pt, self.config.dpi, self.config.max_image_pixels);
        let side = (self.config.max_image_pixels as f64).sqrt() as u64;
        let dir = scratch_dir()?;
        let prefix = dir.path().join("page");
        let mut command = Command::new("pdftoppm");
        command
            .args(["-r", &dpi.to_string()])
            .args(["-f", &page.to_string(), "-l", &page.to_string()])
            // A crop box as large as the pixel limit: a backstop for pages whose size
            // could not be read. Gray PGM: no compression to pay for, and OCR reads gray.
            .args(["-W", &side.to_string(), "-H", &side.to_string()])
            .args(["-singlefile", "-gray"])
            .arg(pdf)
            .arg(&prefix);
        run(
            &mut command,
            "pdftoppm",
            dir.path(),
            deadline,
            self.timeout_secs(),
        )?;
        let raster = prefix.with_extension("pgm");
        if !raster.is_file() {
            return Err(OcrError::Failed(format!(
                "pdftoppm produced no image for page {page}"
            )));
        }
        self.tesseract(&raster, page, Some(dpi), dir.path(), deadline)
    }

    fn timeout_secs(&self) -> u64 {
        self.config.page_timeout.as_secs()
    }

    /// Reads `input`, a single-page image, as page `page` (blank when Tesseract found no
    /// block at all).
    fn tesseract(
        &self,
        input: &Path,
        page: u32,
        dpi: Option<u32>,
        dir: &Path,
        deadline: Instant,
    ) -> Result<RecognizedPage, OcrError> {
        let output = dir.join("ocr");
        let mut command = Command::new("tesseract");
        command.arg(input).arg(&output);
        if let Some(dpi) = dpi {
            command.args(["--dpi", &dpi.to_string()]);
        }
        command
            .args(["-l", &self.config.languages])
            // Automatic page segmentation: scans hold columns, tables and captions.
            .args(["--psm", "3"])
            .arg("tsv");
        run(
            &mut command,
            "tesseract",
            dir,
            deadline,
            self.timeout_secs(),
        )?;
        let tsv = std::fs::read_to_string(output.with_extension("tsv"))
            .map_err(|e| OcrError::Failed(format!("tesseract wrote no readable output: {e}")))?;
        let mut read = parse_tsv(&tsv)
            .into_iter()
            .next()
            .unwrap_or(RecognizedPage {
                page,
                confidence: None,
                words: 0,
                paragraphs: Vec::new(),
            });
        read.page = page;
        Ok(read)
    }
}

/// Checks an image from its header, without decoding it: a known format (PNG, JPEG,
/// TIFF, WebP, BMP), plausible dimensions within `max_pixels`, and for PNG, WebP and
/// BMP, which say where they end, not cut short. Returns width and height.
pub fn check_image(bytes: &[u8], max_pixels: u64) -> Result<(u64, u64), OcrError> {
    if bytes.is_empty() {
        return Err(OcrError::InvalidImage("the file is empty (0 bytes)".into()));
    }
    let kind = imagesize::image_type(bytes)
        .map_err(|_| OcrError::InvalidImage("not a PNG, JPEG, TIFF, WebP or BMP image".into()))?;
    let size = imagesize::blob_size(bytes)
        .map_err(|e| OcrError::InvalidImage(format!("its header cannot be read ({e})")))?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width == 0 || height == 0 {
        return Err(OcrError::InvalidImage(format!(
            "its header gives a size of {width} x {height} pixels"
        )));
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(OcrError::ImageTooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    let truncated = match kind {
        // Every PNG ends with an empty IEND chunk.
        imagesize::ImageType::Png => !bytes.windows(8).any(|w| w == b"\0\0\0\0IEND"),
        // RIFF and BMP headers state the file's length.
        imagesize::ImageType::Webp => {
            le_u32(bytes, 4).is_none_or(|n| n as u64 + 8 > bytes.len() as u64)
        }
        imagesize::ImageType::Bmp => {
            le_u32(bytes, 2).is_some_and(|n| n as u64 > bytes.len() as u64)
                || le_u32(bytes, 10).is_none_or(|n| n as u64 >= bytes.len() as u64)
        }
        _ => false,
    };
    if truncated {
        return Err(OcrError::InvalidImage(format!(
            "the {kind:?} data is truncated ({} bytes; the file ends before the image does)",
            bytes.len()
        )));
    }
    Ok((width, height))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Directories listed beyond this are not looked for: the page limit is far lower, and a
/// directory takes only 6 bytes, so a small file could claim millions.
const MAX_TIFF_DIRECTORIES: usize = 100_000;

/// The chain of image file directories (pages) of a TIFF.
#[derive(Debug, PartialEq)]
struct TiffDirectories {
    big_endian: bool,
    /// Where each directory starts and where its pointer to the next one is, in order.
    directories: Vec<(usize, usize)>,
}

/// The directories of a TIFF; `None` for other formats (BigTIFF included). A chain that
/// loops or leaves the file ends there.
fn tiff_directories(bytes: &[u8]) -> Option<TiffDirectories> {
    let big_endian = match bytes.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let b = bytes.get(at..at + 2)?;
        Some(if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| {
        let b = bytes.get(at..at + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let mut seen = std::collections::HashSet::new();
    let mut directories = Vec::new();
    let mut offset = u32_at(4)? as usize;
    // Offset 0 ends the chain; an offset seen before is a loop.
    while offset != 0
        && offset < bytes.len()
        && directories.len() < MAX_TIFF_DIRECTORIES
        && seen.insert(offset)
    {
        let Some(entries) = u16_at(offset) else {
            break;
        };
        let next_at = offset + 2 + usize::from(entries) * 12;
        directories.push((offset, next_at));
        offset = u32_at(next_at).map_or(0, |o| o as usize);
    }
    Some(TiffDirectories {
        big_endian,
        directories,
    })
}

/// The bytes of page `page` (1-based) as an image of its own. Tesseract reads every page of
/// a TIFF, so a page of a multi-page TIFF becomes a copy whose header points at that page's
/// directory and whose directory ends the chain. Every offset in a TIFF is absolute, so the
/// rest of the file stays as it is (the other pages' data is simply not referenced).
fn select_page(bytes: &[u8], page: u32) -> Result<std::borrow::Cow<'_, [u8]>, OcrError> {
    let missing = |pages: usize| {
        OcrError::InvalidImage(format!("the image has no page {page} (it has {pages})"))
    };
    let Some(tiff) = tiff_directories(bytes) else {
        return if page == 1 {
            Ok(bytes.into())
        } else {
            Err(missing(1))
        };
    };
    let pages = tiff.directories.len();
    let index = (page as usize)
        .checked_sub(1)
        .ok_or_else(|| missing(pages))?;
    let &(offset, next_at) = tiff.directories.get(index).ok_or_else(|| missing(pages))?;
    if pages == 1 {
        return Ok(bytes.into());
    }
    let mut single = bytes.to_vec();
    let offset = u32::try_from(offset).map_err(|_| missing(pages))?;
    let offset = if tiff.big_endian {
        offset.to_be_bytes()
    } else {
        offset.to_le_bytes()
    };
    single[4..8].copy_from_slice(&offset);
    // A directory cut off before its next pointer is the last one already.
    if let Some(next) = single.get_mut(next_at..next_at + 4) {
        next.fill(0);
    }
    Ok(single.into())
}

/// The resolution to rasterize a page of `size_pt` points at: `dpi`, or less if the raster
/// would exceed `max_pixels`.
fn raster_dpi(size_pt: Option<(f32, f32)>, dpi: u32, max_pixels: u64) -> u32 {
    let Some((w, h)) = size_pt else {
        return dpi;
    };
    let square_inches = (f64::from(w) / 72.0) * (f64::from(h) / 72.0);
    if square_inches <= 0.0 || !square_inches.is_finite() {
        return dpi;
    }
    let fitting = (max_pixels as f64 / square_inches).sqrt().floor();
    (f64::from(dpi).min(fitting).max(1.0)) as u32
}

fn scratch_dir() -> Result<tempfile::TempDir, OcrError> {
    tempfile::Builder::new()
        .prefix("zhiku-ocr-")
        .tempdir()
        .map_err(|e| OcrError::Failed(format!("cannot create a temporary directory: {e}")))
}

/// Runs `command` until it exits or `deadline` passes, then kills it. Its stderr goes to a
/// file (a pipe nobody reads could fill up and stall it) whose error lines explain a
/// failure.
fn run(
    command: &mut Command,
    name: &str,
    dir: &Path,
    deadline: Instant,
    timeout_secs: u64,
) -> Result<(), OcrError> {
    let log = dir.join(format!("{name}.log"));
    let stderr = std::fs::File::create(&log)
        .map_err(|e| OcrError::Failed(format!("cannot create a temporary file: {e}")))?;
    // SAFETY: the hook only calls prctl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // A tool outlives nothing that started it: when the thread waiting for it dies
            // (a sandboxed worker killed at its deadline), so does the tool. `run` always
            // waits for the child before it returns, so a living waiter never loses it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| OcrError::Failed(format!("cannot run {name}: {e}")))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let status = match child.wait_timeout(left) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OcrError::Timeout {
                seconds: timeout_secs,
            });
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OcrError::Failed(format!("waiting for {name}: {e}")));
        }
    };
    if status.success() {
        return Ok(());
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let errors: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("rror") || l.contains("cannot"))
        .take(3)
        .collect();
    let detail = format!("{name} exited with {status}: {}", errors.join("; "));
    // Leptonica's reader complaints: the image data is damaged past its header.
    if log.contains("pixRead") || log.contains("cannot be read") {
        Err(OcrError::InvalidImage(detail))
    } else {
        Err(OcrError::Failed(detail))
    }
}

/// The languages `tesseract --list-langs` reports.
fn installed_languages() -> Result<Vec<String>, OcrError> {
    let output = Command::new("tesseract")
        .arg("--list-langs")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            OcrError::Unavailable(format!(
                "OCR is enabled but the tesseract command cannot be run ({e}): install tesseract-ocr (deploy/setup.sh installs it), or set [ocr] enabled = false"
            ))
        })?;
    // Older versions print the list on stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(text
        .lines()
        .skip_while(|l| !l.starts_with("List of available languages"))
        .skip(1)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

#[cfg(test)]
mod tests;
