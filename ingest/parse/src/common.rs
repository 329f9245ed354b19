//! Helpers shared by the format parsers.

use crate::{Block, BlockKind};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Removes a leading UTF-8 byte order mark, which editors on Windows like to add.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// The message of a caught panic, for error details.
pub(crate) fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned())
}

/// Whether `c` belongs to a script written without spaces between words (Chinese, Japanese)
/// or is full-width punctuation. Hangul is excluded on purpose: Korean separates words with
/// spaces, so joining Korean lines needs a space like Latin text.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF // radicals
        | 0x3000..=0x303F // CJK symbols and punctuation
        | 0x3040..=0x30FF // hiragana, katakana
        | 0x31F0..=0x31FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F // CJK compatibility forms
        | 0xFF00..=0xFFEF // full-width forms
        | 0x20000..=0x3FFFF)
}

/// Whether a line break between `before` and `after` was only layout (a hard wrap) that
/// should vanish rather than become a space: true between two CJK characters.
pub(crate) fn wrap_needs_no_space(before: char, after: char) -> bool {
    is_cjk(before) && is_cjk(after)
}

/// Joins hard-wrapped lines into one paragraph: a space between Latin words, nothing
/// between CJK characters, and nothing after a hyphen that ends a word ("well-\nknown").
pub(crate) fn join_wrapped_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let (Some(before), Some(after)) = (out.chars().last(), line.chars().next()) {
            let hyphenated = before == '-'
                && out
                    .chars()
                    .rev()
                    .nth(1)
                    .is_some_and(|c| c.is_alphabetic() && !is_cjk(c));
            if !hyphenated && !wrap_needs_no_space(before, after) {
                out.push(' ');
            }
        }
        out.push_str(line);
    }
    out
}

/// Splits text into paragraphs at blank (whitespace-only) lines.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Normalises CRLF and lone CR line endings to LF so `lines()` sees every break.
pub(crate) fn normalize_newlines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        text.into()
    }
}

/// Accumulates blocks while tracking the heading hierarchy.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    blocks: Vec<Block>,
    headings: Vec<(u8, String)>,
}

impl BlockBuilder {
    /// Records a heading; it closes every open heading of the same or a deeper level.
    pub(crate) fn heading(&mut self, level: u8, text: &str, page: Option<u32>) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, text.to_owned()));
        self.blocks.push(Block {
            kind: BlockKind::Heading { level },
            text: text.to_owned(),
            heading_path: self.path(),
            page,
            ocr_confidence: None,
        });
    }

    /// Records a non-heading block; blank text is dropped so no consumer sees empty blocks.
    pub(crate) fn push(&mut self, kind: BlockKind, text: String, page: Option<u32>) {
        if text.trim().is_empty() {
            return;
        }
        self.blocks.push(Block {
            kind,
            text,
            heading_path: self.path(),
            page,
            ocr_confidence: None,
        });
    }

    /// The enclosing headings' texts at this point, outermost first.
    pub(crate) fn path(&self) -> Vec<String> {
        self.headings.iter().map(|(_, t)| t.clone()).collect()
    }

    /// Blocks recorded so far: the position of whatever comes next.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn finish(self) -> Vec<Block> {
        self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_latin_with_space_and_cjk_without() {
        assert_eq!(
            join_wrapped_lines(["hard wrapped", "line of text"]),
            "hard wrapped line of text"
        );
        assert_eq!(
            join_wrapped_lines(["中文段落被", "硬换行了。"]),
            "中文段落被硬换行了。"
        );
        assert_eq!(join_wrapped_lines(["使用", "Rust 编写"]), "使用 Rust 编写");
        assert_eq!(join_wrapped_lines(["well-", "known"]), "well-known");
        assert_eq!(join_wrapped_lines(["a -", "b"]), "a - b");
    }

    #[test]
    fn heading_path_tracks_levels() {
        let mut b = BlockBuilder::default();
        b.heading(1, "Install", None);
        b.heading(2, "Network", None);
        b.push(BlockKind::Paragraph, "body".into(), None);
        b.heading(2, "Disk", None);
        b.heading(1, "Usage", None);
        b.push(BlockKind::Paragraph, "  ".into(), None);
        let blocks = b.finish();
        let paths: Vec<_> = blocks.iter().map(|b| b.heading_path.join(">")).collect();
        assert_eq!(
            paths,
            [
                "Install",
                "Install>Network",
                "Install>Network",
                "Install>Disk",
                "Usage"
            ]
        );
    }
}
