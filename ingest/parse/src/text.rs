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
    use crate::test_support::xorshift_bytes;
    use crate::{BlockKind, DocFormat, ParseError, detect_format, parse};

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
    fn legacy_encodings_decode_and_binary_is_not_text() {
        // "中文" in GBK: short, but still recognised.
        let doc = parse(DocFormat::Text, b"\xD6\xD0\xCE\xC4 text").unwrap();
        assert_eq!(doc.blocks[0].text, "中文 text");
        let err = parse(DocFormat::Text, b"abc\0def").unwrap_err();
        assert!(matches!(err, ParseError::NotText { .. }), "{err:?}");
        assert_eq!(err.code(), "not_text");
        let err = parse(DocFormat::Markdown, b"# T\n\x01\x02\x03 body").unwrap_err();
        assert!(matches!(err, ParseError::NotText { .. }), "{err:?}");
        // Random bytes named like text: the extension decides the format, the decoder
        // refuses the content.
        for (seed, len) in [(1, 100), (2, 5000), (3, 200_000)] {
            let bytes = xorshift_bytes(len, seed);
            let format = detect_format("random.txt", None, &bytes).unwrap();
            assert_eq!(format, DocFormat::Text);
            let err = parse(format, &bytes).unwrap_err();
            assert_eq!(err.code(), "not_text", "{len}: {err}");
            assert!(
                err.to_string()
                    .starts_with("the file is not text in a recognised encoding: ")
            );
        }
    }

    #[test]
    fn huge_single_line_parses() {
        const SIZE: usize = 2 << 20;
        let latin = "word ".repeat(SIZE / 5);
        let doc = parse(DocFormat::Text, latin.as_bytes()).unwrap();
        assert_eq!(doc.blocks.len(), 1);
        assert_eq!(doc.blocks[0].text.len(), latin.len() - 1);
        let chinese = "中文字符没有标点".repeat(SIZE / 24);
        for format in [DocFormat::Text, DocFormat::Markdown, DocFormat::Html] {
            let doc = parse(format, chinese.as_bytes()).unwrap();
            let total: usize = doc.blocks.iter().map(|b| b.text.len()).sum();
            assert_eq!(total, chinese.len(), "{format:?}");
        }
        let doc = parse(DocFormat::Markdown, latin.as_bytes()).unwrap();
        assert_eq!(doc.blocks[0].text.len(), latin.len() - 1);
    }
}
