//! PDF text layer via pdf-extract, one page at a time.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::common::{
    BlockBuilder, join_wrapped_lines, normalize_newlines, panic_reason, paragraphs,
};
use crate::{Block, BlockKind, ParseError};

/// Extracts paragraphs page by page. PDFs carry no reliable heading structure, so every
/// block is a paragraph with an empty heading path and its 1-based page number. Pages
/// without any text are [`ParseError::NoTextLayer`]: telling the user "scanned, needs OCR"
/// helps more than "empty".
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Block>, ParseError> {
    // pdf-extract and lopdf panic on some inputs (certain CJK fonts, missing page
    // dictionaries) instead of returning errors; an upload must never take the service down.
    let pages = match catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem_by_pages(bytes)
    })) {
        Ok(Ok(pages)) => pages,
        Ok(Err(e)) => {
            return Err(ParseError::Pdf {
                detail: e.to_string(),
            });
        }
        Err(payload) => {
            return Err(ParseError::Pdf {
                detail: format!("the text extractor failed ({})", panic_reason(&*payload)),
            });
        }
    };
    if pages.is_empty() {
        // The extractor stops at the first page it cannot read, so no pages at all means
        // page 1 was unreadable, which is a broken file rather than an empty one.
        return Err(ParseError::Pdf {
            detail: "no page could be read".to_owned(),
        });
    }
    let mut builder = BlockBuilder::default();
    for (index, page_text) in pages.iter().enumerate() {
        let page = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let page_text = normalize_newlines(page_text);
        for lines in paragraphs(&page_text) {
            builder.push(BlockKind::Paragraph, join_wrapped_lines(lines), Some(page));
        }
    }
    let blocks = builder.finish();
    if blocks.is_empty() {
        // A reader that salvaged the pages of a cut-off file found no text because the
        // content streams are missing, not because the pages are scans.
        if !has_eof_marker(bytes) {
            return Err(ParseError::Pdf {
                detail: "no text could be read and the %%EOF marker is missing (truncated?)"
                    .to_owned(),
            });
        }
        return Err(ParseError::NoTextLayer { pages: pages.len() });
    }
    Ok(blocks)
}

/// Whether the file ends like a complete PDF; writers may append a little after `%%EOF`.
fn has_eof_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(5).any(|w| w == b"%%EOF")
}

#[cfg(test)]
mod tests {
    use super::has_eof_marker;
    use crate::test_support::{make_pdf, two_page_pdf};
    use crate::{BlockKind, DocFormat, ParseError, detect_format, parse};

    #[test]
    fn pages_and_paragraphs() {
        let bytes = two_page_pdf();
        assert_eq!(
            detect_format("x.bin", None, &bytes).unwrap(),
            DocFormat::Pdf
        );
        let doc = parse(DocFormat::Pdf, &bytes).unwrap();
        let got: Vec<(&str, Option<u32>)> = doc
            .blocks
            .iter()
            .map(|b| (b.text.as_str(), b.page))
            .collect();
        assert_eq!(
            got,
            [
                ("Hello page one wrapped second line", Some(1)),
                ("Another paragraph", Some(1)),
                ("Page two text", Some(2)),
            ]
        );
        assert!(
            doc.blocks
                .iter()
                .all(|b| b.kind == BlockKind::Paragraph && b.heading_path.is_empty())
        );
    }

    #[test]
    fn truncated_and_garbage_pdfs_are_errors_not_panics() {
        let bytes = two_page_pdf();
        let err = parse(DocFormat::Pdf, &bytes[..60]).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
        assert_eq!(err.code(), "invalid_pdf");
        // Cut mid-way the reader may salvage pages or fail, but must not call a broken
        // file a scan.
        match parse(DocFormat::Pdf, &bytes[..bytes.len() / 2]) {
            Ok(doc) => assert!(!doc.blocks.is_empty()),
            Err(err) => assert_eq!(err.code(), "invalid_pdf", "{err:?}"),
        }
        let err = parse(DocFormat::Pdf, b"%PDF-1.7\nthis is not a pdf").unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
    }

    #[test]
    fn corrupted_xref_is_invalid_pdf() {
        let text = String::from_utf8(two_page_pdf()).unwrap();
        let table_at = text.find("xref\n0 ").unwrap();
        let trailer_at = text.find("trailer").unwrap();
        // Every xref entry points at the same wrong offset: the reader opens the file and
        // returns zero pages, which must not pass for an empty or scanned document.
        let garbled: String = text[table_at..trailer_at]
            .lines()
            .map(|line| {
                if line.ends_with(" n ") {
                    "0000000400 00000 n \n".to_owned()
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let garbled_offsets = format!("{}{garbled}{}", &text[..table_at], &text[trailer_at..]);
        // startxref points into the middle of an object.
        let xref_at = text.rfind("startxref").unwrap();
        let wrong_start = format!("{}startxref\n17\n%%EOF\n", &text[..xref_at]);
        // And additionally the table itself is unreadable.
        let broken_table = wrong_start
            .replace("xref\n0 ", "xrfe\n0 ")
            .replace(" 00000 n ", " 0000x n ");
        let err = parse(DocFormat::Pdf, garbled_offsets.as_bytes()).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
        assert!(err.to_string().contains("no page could be read"), "{err}");
        for bytes in [wrong_start, broken_table] {
            let err = parse(DocFormat::Pdf, bytes.as_bytes()).unwrap_err();
            assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
        }
    }

    #[test]
    fn extractor_panic_becomes_pdf_error() {
        // pdf-extract calls `expect("MediaBox")` on pages without one.
        let bytes = make_pdf(&[&[(0, "no media box")]], false);
        let err = parse(DocFormat::Pdf, &bytes).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
    }

    #[test]
    fn pages_without_text_are_no_text_layer() {
        let bytes = make_pdf(&[&[], &[], &[]], true);
        let err = parse(DocFormat::Pdf, &bytes).unwrap_err();
        assert!(
            matches!(err, ParseError::NoTextLayer { pages: 3 }),
            "{err:?}"
        );
        assert_eq!(err.code(), "no_text_layer");
        let bytes = make_pdf(&[&[(0, "   ")]], true);
        let err = parse(DocFormat::Pdf, &bytes).unwrap_err();
        assert!(
            matches!(err, ParseError::NoTextLayer { pages: 1 }),
            "{err:?}"
        );
        // The same pages in a file cut off before its end are a broken file, not a scan.
        let bytes = make_pdf(&[&[], &[]], true);
        let cut = &bytes[..bytes.len() - b"%%EOF\n".len()];
        let err = parse(DocFormat::Pdf, cut).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
        // lopdf itself refuses that file; the marker check covers readers that salvage it.
        assert!(has_eof_marker(&bytes) && !has_eof_marker(cut));
    }
}
