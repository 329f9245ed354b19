//! PDF text layer via pdf-extract, one page at a time; pages without one are left to OCR.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::common::{
    BlockBuilder, join_wrapped_lines, normalize_newlines, panic_reason, paragraphs,
};
use crate::{Block, BlockKind, OcrSource, OcrTask, ParseError};

/// Extracts paragraphs page by page. PDFs carry no reliable heading structure, so every
/// block is a paragraph with an empty heading path and its 1-based page number. Pages
/// without any text (scans) become [`OcrTask`]s at their place in the page order, with
/// their size so that rasterizing them can be bounded before it starts. So do pages whose
/// text layer holds no letter at all: scanners and print tools stamp page and Bates
/// numbers onto scanned pages, and such a page is still a scan; OCR reads its number too.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Vec<Block>, Vec<OcrTask>), ParseError> {
    crate::pdf_preflight::check(bytes)?;
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
    let mut blank = Vec::new();
    for (index, page_text) in pages.iter().enumerate() {
        let page = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let page_text = normalize_newlines(page_text);
        let before = builder.len();
        // A letterless text layer (a stamped number) is left out, so the page is a scan.
        if page_text.chars().any(char::is_alphabetic) {
            for lines in paragraphs(&page_text) {
                builder.push(BlockKind::Paragraph, join_wrapped_lines(lines), Some(page));
            }
        }
        if builder.len() == before {
            blank.push((page, before));
        }
    }
    let blocks = builder.finish();
    // A reader that salvaged the pages of a cut-off file found no text because the content
    // streams are missing, not because the pages are scans.
    if blocks.is_empty() && !has_eof_marker(bytes) {
        return Err(ParseError::Pdf {
            detail: "no text could be read and the %%EOF marker is missing (truncated?)".to_owned(),
        });
    }
    let sizes = if blank.is_empty() {
        HashMap::new()
    } else {
        page_sizes(bytes)
    };
    let tasks = blank
        .into_iter()
        .map(|(page, position)| OcrTask {
            source: OcrSource::PdfPage {
                page,
                size_pt: sizes.get(&page).copied(),
            },
            position,
            heading_path: Vec::new(),
        })
        .collect();
    Ok((blocks, tasks))
}

/// Width and height in points of every page whose MediaBox (possibly inherited from the
/// page tree) is readable. The file was read once already; reading it again only for
/// scanned PDFs costs little next to OCR.
fn page_sizes(bytes: &[u8]) -> HashMap<u32, (f32, f32)> {
    let read = || -> Option<HashMap<u32, (f32, f32)>> {
        let doc = pdf_extract::Document::load_mem(bytes).ok()?;
        let sizes = doc
            .get_pages()
            .into_iter()
            .filter_map(|(page, id)| Some((page, media_box(&doc, id)?)))
            .collect();
        Some(sizes)
    };
    // lopdf panics on some inputs; without sizes the OCR stage bounds pages another way.
    catch_unwind(AssertUnwindSafe(read))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Page trees are shallow; the bound only guards against cycles.
const MAX_TREE_DEPTH: usize = 32;

/// The size of a page's MediaBox, looked up through its ancestors as the spec allows.
fn media_box(doc: &pdf_extract::Document, page: pdf_extract::ObjectId) -> Option<(f32, f32)> {
    let mut node = doc.get_dictionary(page).ok()?;
    for _ in 0..MAX_TREE_DEPTH {
        if let Ok(object) = node.get(b"MediaBox") {
            let (_, object) = doc.dereference(object).ok()?;
            let numbers: Vec<f32> = object
                .as_array()
                .ok()?
                .iter()
                .map(|n| doc.dereference(n).ok()?.1.as_float().ok())
                .collect::<Option<_>>()?;
            let [x1, y1, x2, y2] = numbers[..] else {
                return None;
            };
            return Some(((x2 - x1).abs(), (y2 - y1).abs()));
        }
        let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
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
    use crate::{BlockKind, DocFormat, OcrSource, ParseError, detect_format, parse};

    #[test]
    fn pages_and_paragraphs() {
        let bytes = two_page_pdf();
        assert_eq!(
            detect_format("x.bin", None, &bytes).unwrap(),
            DocFormat::Pdf
        );
        let doc = parse(DocFormat::Pdf, &bytes).unwrap();
        assert!(doc.ocr.is_empty());
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
    fn pages_without_text_are_left_to_ocr() {
        let bytes = make_pdf(&[&[], &[], &[]], true);
        let doc = parse(DocFormat::Pdf, &bytes).unwrap();
        assert!(doc.blocks.is_empty());
        let pages: Vec<_> = doc.ocr.iter().map(|t| t.source.clone()).collect();
        let page = |page| OcrSource::PdfPage {
            page,
            size_pt: Some((612.0, 792.0)),
        };
        assert_eq!(pages, [page(1), page(2), page(3)]);
        let bytes = make_pdf(&[&[(0, "   ")]], true);
        let doc = parse(DocFormat::Pdf, &bytes).unwrap();
        assert_eq!(doc.ocr.len(), 1);
        // A scan stamped with its page number is still a scan.
        let bytes = make_pdf(&[&[(0, "one")], &[(0, "- 2 -")], &[(0, "three")]], true);
        let doc = parse(DocFormat::Pdf, &bytes).unwrap();
        let texts: Vec<&str> = doc.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, ["one", "three"]);
        assert_eq!((doc.ocr[0].position, &doc.ocr[0].source), (1, &page(2)));
        // Mixed: the scanned page's text goes between the pages around it.
        let bytes = make_pdf(&[&[(0, "one")], &[], &[(0, "three")]], true);
        let doc = parse(DocFormat::Pdf, &bytes).unwrap();
        assert_eq!(doc.blocks.len(), 2);
        assert_eq!(doc.ocr.len(), 1);
        assert_eq!((doc.ocr[0].position, &doc.ocr[0].source), (1, &page(2)));
        // The same pages in a file cut off before its end are a broken file, not a scan.
        let bytes = make_pdf(&[&[], &[]], true);
        let cut = &bytes[..bytes.len() - b"%%EOF\n".len()];
        let err = parse(DocFormat::Pdf, cut).unwrap_err();
        assert!(matches!(err, ParseError::Pdf { .. }), "{err:?}");
        // lopdf itself refuses that file; the marker check covers readers that salvage it.
        assert!(has_eof_marker(&bytes) && !has_eof_marker(cut));
    }
}
