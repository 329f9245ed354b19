//! Turns the bytes of an uploaded file into structured blocks (headings, paragraphs, code,
//! list items, tables) that the chunker can cut along document structure.
//!
//! Supported formats are plain text, Markdown, HTML and PDF. Every block carries the path of
//! the headings that enclose it and, for PDFs, the 1-based page it came from.

#![warn(missing_docs)]

mod common;
mod detect;
mod html;
mod markdown;
mod pdf;
mod text;

pub use detect::detect_format;

/// A document format the parser understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    /// Plain UTF-8 text.
    Text,
    /// CommonMark with GitHub-style tables.
    Markdown,
    /// An HTML page.
    Html,
    /// A PDF with a text layer (scanned images without text yield [`ParseError::Empty`]).
    Pdf,
}

impl DocFormat {
    /// The canonical MIME type of the format.
    pub fn mime(&self) -> &'static str {
        match self {
            DocFormat::Text => "text/plain",
            DocFormat::Markdown => "text/markdown",
            DocFormat::Html => "text/html",
            DocFormat::Pdf => "application/pdf",
        }
    }
}

/// One structural unit of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// What kind of structure the text came from.
    pub kind: BlockKind,
    /// The block's text; verbatim (with newlines) for code, rows joined by newlines for tables.
    pub text: String,
    /// Texts of the enclosing headings, outermost first; a heading's own path ends with itself.
    pub heading_path: Vec<String>,
    /// 1-based page number for paginated formats (PDF), `None` otherwise.
    pub page: Option<u32>,
}

/// The kind of a [`Block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone)]
pub struct ParsedDocument {
    /// The format the bytes were parsed as.
    pub format: DocFormat,
    /// HTML `<title>` (falling back to the first h1) or the first level-1 Markdown heading.
    pub title: Option<String>,
    /// Blocks in document order; never empty and never whitespace-only.
    pub blocks: Vec<Block>,
}

/// Why a file could not be parsed.
#[derive(thiserror::Error, Debug)]
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
    /// A text format whose bytes are not valid UTF-8 text.
    #[error("the file is not valid UTF-8 text: {detail}")]
    NotText {
        /// Where decoding failed.
        detail: String,
    },
    /// The PDF is corrupt, encrypted or otherwise unreadable.
    #[error("the PDF could not be read: {detail}")]
    Pdf {
        /// The underlying reader's complaint.
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
        }
    }
}

/// Parses `bytes` as `format` into blocks.
///
/// Input that is empty or whitespace-only, or that yields no text, is [`ParseError::Empty`].
pub fn parse(format: DocFormat, bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if common::strip_bom(bytes).trim_ascii().is_empty() {
        return Err(ParseError::Empty);
    }
    let (title, blocks) = match format {
        DocFormat::Text => (None, text::parse(common::decode_utf8(bytes)?)),
        DocFormat::Markdown => markdown::parse(common::decode_utf8(bytes)?),
        DocFormat::Html => html::parse(common::decode_utf8(bytes)?),
        DocFormat::Pdf => (None, pdf::parse(bytes)?),
    };
    if blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(ParseError::Empty);
    }
    Ok(ParsedDocument {
        format,
        title,
        blocks,
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
    }

    #[test]
    fn mime_types() {
        assert_eq!(DocFormat::Markdown.mime(), "text/markdown");
        assert_eq!(DocFormat::Pdf.mime(), "application/pdf");
    }
}
