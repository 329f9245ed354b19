//! Plain text: paragraphs separated by blank lines.

use crate::common::{BlockBuilder, normalize_newlines, paragraphs};
use crate::{Block, BlockKind};

/// Splits decoded text into paragraphs. Line breaks inside a paragraph are kept because plain
/// text often carries meaningful lines (addresses, poems, logs) that joining would garble.
pub(crate) fn parse(text: &str) -> Vec<Block> {
    let text = normalize_newlines(text);
    let mut builder = BlockBuilder::default();
    for lines in paragraphs(&text) {
        let para: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
        builder.push(BlockKind::Paragraph, para.join("\n"), None);
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use crate::{BlockKind, DocFormat, ParseError, parse};

    #[test]
    fn splits_on_blank_lines_and_strips_bom() {
        let doc = parse(
            DocFormat::Text,
            "\u{feff}First para\r\nstill first\r\n\r\n  \t\nSecond para\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(doc.format, DocFormat::Text);
        assert_eq!(doc.title, None);
        let texts: Vec<_> = doc.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, ["First para\nstill first", "Second para"]);
        assert!(doc.blocks.iter().all(|b| b.kind == BlockKind::Paragraph
            && b.heading_path.is_empty()
            && b.page.is_none()));
    }

    #[test]
    fn invalid_utf8_and_nul_are_not_text() {
        // "中文" in GBK.
        let err = parse(DocFormat::Text, b"\xD6\xD0\xCE\xC4 text").unwrap_err();
        assert!(matches!(err, ParseError::NotText { .. }), "{err:?}");
        assert_eq!(err.code(), "not_text");
        let err = parse(DocFormat::Text, b"abc\0def").unwrap_err();
        assert!(matches!(err, ParseError::NotText { .. }), "{err:?}");
        let err = parse(DocFormat::Markdown, b"# T\n\xff").unwrap_err();
        assert!(matches!(err, ParseError::NotText { .. }), "{err:?}");
    }
}
