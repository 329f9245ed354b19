//! Turns the bytes of an uploaded file into structured blocks (headings, paragraphs, code,
//! list items, tables) that the chunker can cut along document structure.
//!
//! Supported formats are plain text, Markdown, HTML, CSV/TSV, Word (DOCX), PDF and images
//! (PNG, JPEG, TIFF, WebP, BMP). Text formats may be UTF-8, UTF-16 with a BOM or a legacy
//! encoding such as GBK or Big5 ([`decode_text`]). Every block carries the path of the
//! headings that enclose it and, for PDFs, the 1-based page it came from.
//!
//! Text that only OCR can read (images, PDF pages without a text layer, optionally images
//! inside DOCX files) is not recognised here: the parser lists it as [`OcrTask`]s, the OCR
//! stage recognises them, and [`ParsedDocument::merge_ocr`] puts the text in its place.

#![warn(missing_docs)]

mod common;
mod delimited;
mod detect;
mod docx;
mod encoding;
mod html;
mod image;
mod markdown;
mod ocr;
mod pdf;
mod pdf_preflight;
mod text;

#[cfg(test)]
mod robustness;
#[cfg(test)]
mod test_support;

pub use detect::detect_format;
pub use encoding::decode_text;
pub use ocr::{OcrSource, OcrTask, OcrText, normalize_ocr_spacing};

/// A document format the parser understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DocFormat {
    /// Plain text in UTF-8, UTF-16 (with a BOM) or a detected legacy encoding.
    Text,
    /// CommonMark with GitHub-style tables.
    Markdown,
    /// An HTML page.
    Html,
    /// A PDF; pages without a text layer become [`OcrTask`]s.
    Pdf,
    /// Comma-separated values (also `;` or `|`, sniffed); parsed into one table.
    Csv,
    /// Tab-separated values: CSV whose delimiter is known to be a tab, so that a single
    /// column containing commas is not split at them.
    Tsv,
    /// A Word document (Office Open XML, `.docx`).
    Docx,
    /// A raster image, read by OCR only.
    Image(ImageFormat),
}

/// A raster image format OCR can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// TIFF, possibly with several pages.
    Tiff,
    /// WebP.
    Webp,
    /// Windows bitmap.
    Bmp,
}

impl DocFormat {
    /// The canonical MIME type of the format.
    pub fn mime(&self) -> &'static str {
        match self {
            DocFormat::Text => "text/plain",
            DocFormat::Markdown => "text/markdown",
            DocFormat::Html => "text/html",
            DocFormat::Pdf => "application/pdf",
            DocFormat::Csv => "text/csv",
            DocFormat::Tsv => "text/tab-separated-values",
            DocFormat::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            DocFormat::Image(ImageFormat::Png) => "image/png",
            DocFormat::Image(ImageFormat::Jpeg) => "image/jpeg",
            DocFormat::Image(ImageFormat::Tiff) => "image/tiff",
            DocFormat::Image(ImageFormat::Webp) => "image/webp",
            DocFormat::Image(ImageFormat::Bmp) => "image/bmp",
        }
    }
}

/// One structural unit of a document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// What kind of structure the text came from.
    pub kind: BlockKind,
    /// The block's text; verbatim (with newlines) for code, rows joined by newlines for tables.
    pub text: String,
    /// Texts of the enclosing headings, outermost first; a heading's own path ends with itself.
    pub heading_path: Vec<String>,
    /// 1-based page number for paginated formats (PDF, multi-page images), `None`
    /// otherwise.
    pub page: Option<u32>,
    /// For text recognised by OCR: the mean word confidence (0 to 100) of the page or
    /// image it came from. `None` for the file's own text.
    pub ocr_confidence: Option<f32>,
}

/// The kind of a [`Block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BlockKind {
    /// A heading; `level` 1 is the outermost (h1 / `#`).
    Heading {
        /// Heading level, 1 to 6.
        level: u8,
    },
    /// Running prose.
    Paragraph,
    /// A code block, kept verbatim.
    Code,
    /// One item of a bulleted or numbered list.
    ListItem,
    /// A table; one line per row, cells separated by `" | "`, the first line is the header.
    Table,
}

/// The result of parsing one file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ParsedDocument {
    /// The format the bytes were parsed as.
    pub format: DocFormat,
    /// HTML `<title>` (falling back to the first h1), the first level-1 Markdown heading, or
    /// the first DOCX paragraph in the "Title" style (falling back to the first level-1 heading).
    pub title: Option<String>,
    /// Blocks in document order, never whitespace-only; empty only when `ocr` is not.
    pub blocks: Vec<Block>,
    /// Text only OCR can read, in document order: for an image the whole file, for a PDF
    /// each page without a text layer, for a DOCX (with
    /// [`ParseOptions::docx_images`]) each embedded image.
    pub ocr: Vec<OcrTask>,
}

/// Choices that change what a parse produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParseOptions {
    /// List the images embedded in DOCX files as [`OcrTask`]s.
    pub docx_images: bool,
}

/// Why a file could not be parsed.
#[derive(thiserror::Error, Debug, serde::Serialize, serde::Deserialize)]
pub enum ParseError {
    /// The file is not in a format we can read.
    #[error("unsupported file type: {detail}")]
    Unsupported {
        /// What was seen (file name, extension, content type).
        detail: String,
    },
    /// The file parsed but contains no text.
    #[error("no text could be extracted from the document")]
    Empty,
    /// A text format whose bytes are binary data or text in no encoding we recognise.
    #[error("the file is not text in a recognised encoding: {detail}")]
    NotText {
        /// What gave it away (NUL bytes, malformed sequences, control characters).
        detail: String,
    },
    /// The PDF is corrupt, encrypted or otherwise unreadable.
    #[error("the PDF could not be read: {detail}")]
    Pdf {
        /// The underlying reader's complaint.
        detail: String,
    },
    /// The PDF has pages but none of them carries text: scanned images, and OCR is
    /// disabled. (With OCR enabled, such pages are [`OcrTask`]s instead.)
    #[error(
        "the PDF has {pages} page(s) but no text layer (scanned?), and OCR is disabled ([ocr] enabled = false)"
    )]
    NoTextLayer {
        /// How many pages the PDF has.
        pages: usize,
    },
    /// The DOCX file is not a ZIP archive, lacks `word/document.xml`, is corrupt, or
    /// decompresses to implausibly much data.
    #[error("the DOCX document could not be read: {detail}")]
    Docx {
        /// What is wrong with it.
        detail: String,
    },
}

impl ParseError {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Unsupported { .. } => "unsupported_type",
            ParseError::Empty => "empty_document",
            ParseError::NotText { .. } => "not_text",
            ParseError::Pdf { .. } => "invalid_pdf",
            ParseError::NoTextLayer { .. } => "no_text_layer",
            ParseError::Docx { .. } => "invalid_docx",
        }
    }
}

/// Parses `bytes` as `format` into blocks, with the default [`ParseOptions`].
pub fn parse(format: DocFormat, bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    parse_with(format, bytes, &ParseOptions::default())
}

/// Parses `bytes` as `format` into blocks and the [`OcrTask`]s still to be recognised.
///
/// Input that is empty or whitespace-only, or that yields neither text nor anything for
/// OCR, is [`ParseError::Empty`]. Images are not decoded here: their one task names the
/// whole file. Never panics, whatever the bytes.
pub fn parse_with(
    format: DocFormat,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<ParsedDocument, ParseError> {
    if common::strip_bom(bytes).trim_ascii().is_empty() {
        return Err(ParseError::Empty);
    }
    let ((title, blocks), ocr) = match format {
        DocFormat::Text => ((None, text::parse(&decode_text(bytes)?)), Vec::new()),
        DocFormat::Markdown => (markdown::parse(&decode_text(bytes)?), Vec::new()),
        DocFormat::Html => (html::parse(&encoding::decode_html(bytes)?), Vec::new()),
        DocFormat::Csv => (
            (None, delimited::parse(&decode_text(bytes)?, None)),
            Vec::new(),
        ),
        DocFormat::Tsv => (
            (None, delimited::parse(&decode_text(bytes)?, Some(b'\t'))),
            Vec::new(),
        ),
        DocFormat::Docx => {
            let (title, blocks, ocr) = docx::parse(bytes, options.docx_images)?;
            ((title, blocks), ocr)
        }
        DocFormat::Pdf => {
            let (blocks, ocr) = pdf::parse(bytes)?;
            ((None, blocks), ocr)
        }
        DocFormat::Image(_) => ((None, Vec::new()), OcrTask::image_pages(1)),
    };
    if ocr.is_empty() && blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(ParseError::Empty);
    }
    Ok(ParsedDocument {
        format,
        title,
        blocks,
        ocr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_input_is_empty_for_every_format() {
        for format in [
            DocFormat::Text,
            DocFormat::Markdown,
            DocFormat::Html,
            DocFormat::Pdf,
            DocFormat::Csv,
            DocFormat::Tsv,
            DocFormat::Docx,
            DocFormat::Image(ImageFormat::Png),
        ] {
            for bytes in [&b""[..], b"  \n\t\r\n ", b"\xEF\xBB\xBF\n"] {
                let err = parse(format, bytes).unwrap_err();
                assert!(matches!(err, ParseError::Empty), "{format:?}: {err:?}");
                assert_eq!(err.code(), "empty_document");
            }
        }
        let err = parse(
            DocFormat::Html,
            b"<html><body><script>x()</script> </body></html>",
        )
        .unwrap_err();
        assert!(matches!(err, ParseError::Empty));
        let err = parse(DocFormat::Markdown, b"---\n\n***\n").unwrap_err();
        assert!(matches!(err, ParseError::Empty));
    }

    #[test]
    fn error_codes_and_messages() {
        let err = ParseError::Pdf {
            detail: "bad xref".into(),
        };
        assert_eq!(err.code(), "invalid_pdf");
        assert_eq!(err.to_string(), "the PDF could not be read: bad xref");
        assert_eq!(
            ParseError::Empty.to_string(),
            "no text could be extracted from the document"
        );
        let err = ParseError::NoTextLayer { pages: 3 };
        assert_eq!(err.code(), "no_text_layer");
        assert_eq!(
            err.to_string(),
            "the PDF has 3 page(s) but no text layer (scanned?), and OCR is disabled ([ocr] enabled = false)"
        );
        let err = ParseError::Docx {
            detail: "not a ZIP archive".into(),
        };
        assert_eq!(err.code(), "invalid_docx");
        assert_eq!(
            err.to_string(),
            "the DOCX document could not be read: not a ZIP archive"
        );
        let err = ParseError::NotText {
            detail: "NUL byte".into(),
        };
        assert_eq!(err.code(), "not_text");
        assert_eq!(
            err.to_string(),
            "the file is not text in a recognised encoding: NUL byte"
        );
    }

    #[test]
    fn mime_types() {
        assert_eq!(DocFormat::Markdown.mime(), "text/markdown");
        assert_eq!(DocFormat::Pdf.mime(), "application/pdf");
        assert_eq!(DocFormat::Csv.mime(), "text/csv");
        assert_eq!(DocFormat::Tsv.mime(), "text/tab-separated-values");
        assert_eq!(
            DocFormat::Docx.mime(),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
        assert_eq!(DocFormat::Image(ImageFormat::Webp).mime(), "image/webp");
    }

    #[test]
    fn an_image_is_listed_as_its_first_page() {
        let doc = parse(DocFormat::Image(ImageFormat::Png), b"\x89PNG whatever").unwrap();
        assert!(doc.blocks.is_empty());
        assert_eq!(doc.ocr, OcrTask::image_pages(1));
    }
}
