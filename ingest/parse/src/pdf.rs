//! PDF text layer via pdf-extract, one page at a time.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::common::{BlockBuilder, join_wrapped_lines, normalize_newlines, paragraphs};
use crate::{Block, BlockKind, ParseError};

/// Extracts paragraphs page by page. PDFs carry no reliable heading structure, so every
/// block is a paragraph with an empty heading path and its 1-based page number.
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
            let reason = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_owned());
            return Err(ParseError::Pdf {
                detail: format!("the text extractor failed ({reason})"),
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
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use crate::{BlockKind, DocFormat, ParseError, detect_format, parse};

    /// Builds a minimal PDF: one Helvetica text object per page, each page given as lines of
    /// (vertical move from the previous line, text). Offsets in the xref table are computed
    /// from the bytes actually written.
    fn make_pdf(pages: &[&[(i32, &str)]], with_media_box: bool) -> Vec<u8> {
        let n = pages.len();
        // 1 catalog, 2 pages, 3 font, then a (page, content) pair per page.
        let mut objects: Vec<String> = Vec::new();
        objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_owned());
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        objects.push(format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            kids.join(" ")
        ));
        objects.push(
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_owned(),
        );
        for (i, lines) in pages.iter().enumerate() {
            let media_box = if with_media_box {
                "/MediaBox [0 0 612 792] "
            } else {
                ""
            };
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R {media_box}/Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            ));
            let mut content = String::from("BT /F1 12 Tf 72 720 Td\n");
            for (dy, text) in lines.iter() {
                content.push_str(&format!("0 {} Td ({text}) Tj\n", -dy));
            }
            content.push_str("ET");
            objects.push(format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            ));
        }
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for off in offsets {
            out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn two_pages() -> Vec<u8> {
        make_pdf(
            &[
                &[
                    (0, "Hello page one"),
                    (14, "wrapped second line"),
                    (40, "Another paragraph"),
                ],
                &[(0, "Page two text")],
            ],
            true,
        )
    }

    #[test]
    fn pages_and_paragraphs() {
        let bytes = two_pages();
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
        let bytes = two_pages();
        let err = parse(DocFormat::Pdf, &bytes[..60]).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
        assert_eq!(err.code(), "invalid_pdf");
        // Cut mid-way the reader may salvage some pages or fail; either way it must return.
        let _ = parse(DocFormat::Pdf, &bytes[..bytes.len() / 2]);
        let err = parse(DocFormat::Pdf, b"%PDF-1.7\nthis is not a pdf").unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
    }

    #[test]
    fn extractor_panic_becomes_pdf_error() {
        // pdf-extract calls `expect("MediaBox")` on pages without one.
        let bytes = make_pdf(&[&[(0, "no media box")]], false);
        let err = parse(DocFormat::Pdf, &bytes).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
    }

    #[test]
    fn page_without_text_is_empty() {
        let bytes = make_pdf(&[&[]], true);
        let err = parse(DocFormat::Pdf, &bytes).unwrap_err();
        assert!(matches!(err, ParseError::Empty), "{err:?}");
    }
}
