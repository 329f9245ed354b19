//! Markdown via pulldown-cmark events.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::common::{BlockBuilder, wrap_needs_no_space};
use crate::{Block, BlockKind};

/// Parses Markdown; the title is the first level-1 heading.
pub(crate) fn parse(text: &str) -> (Option<String>, Vec<Block>) {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_HEADING_ATTRIBUTES
        // Front matter is metadata, not content; without this it would become paragraphs.
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    let mut state = State::default();
    for event in Parser::new_ext(text, options) {
        state.event(event);
    }
    state.flush();
    (state.title, state.out.finish())
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    cell: Option<String>,
}

#[derive(Default)]
struct State {
    out: BlockBuilder,
    title: Option<String>,
    /// Inline text of the current paragraph, list item or heading.
    buf: String,
    /// A soft break is resolved only when the next text arrives, because whether it becomes
    /// a space depends on the characters on both sides (none between CJK characters).
    pending_soft_break: bool,
    heading: Option<u8>,
    item_depth: usize,
    code: Option<String>,
    table: Option<Table>,
    in_metadata: bool,
    in_html: bool,
}

impl State {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t),
            Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => self.inline(&t),
            Event::SoftBreak => {
                if self.code.is_some() {
                    self.text("\n");
                } else {
                    self.pending_soft_break = true;
                }
            }
            Event::HardBreak => {
                self.pending_soft_break = false;
                self.target().push('\n');
            }
            Event::Rule => self.flush(),
            // Raw HTML is markup, not prose; footnote labels and task markers are noise.
            Event::Html(_)
            | Event::InlineHtml(_)
            | Event::FootnoteReference(_)
            | Event::TaskListMarker(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                if self.item_depth == 0 {
                    self.flush();
                } else if !self.buf.is_empty() {
                    // Keep the paragraphs of a loose list item apart within the item.
                    self.buf.push('\n');
                    self.pending_soft_break = false;
                }
            }
            Tag::Heading { level, .. } => {
                self.flush();
                self.heading = Some(level as u8);
            }
            Tag::Item => {
                self.flush();
                self.item_depth += 1;
            }
            Tag::List(_) | Tag::BlockQuote(_) | Tag::FootnoteDefinition(_) => self.flush(),
            // A fenced block's info string (the language) is not content.
            Tag::CodeBlock(_) => {
                self.flush();
                self.code = Some(String::new());
            }
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Table::default());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(table) = &mut self.table {
                    table.rows.push(Vec::new());
                }
            }
            Tag::TableCell => {
                if let Some(table) = &mut self.table {
                    table.cell = Some(String::new());
                }
            }
            Tag::MetadataBlock(_) => self.in_metadata = true,
            Tag::HtmlBlock => self.in_html = true,
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            // Inside a list item the paragraph is part of the item and is emitted with it.
            TagEnd::Paragraph if self.item_depth == 0 => self.flush(),
            TagEnd::Heading(_) => {
                let text = std::mem::take(&mut self.buf);
                self.pending_soft_break = false;
                if let Some(level) = self.heading.take() {
                    let text = text.trim();
                    if level == 1 && self.title.is_none() && !text.is_empty() {
                        self.title = Some(text.to_owned());
                    }
                    self.out.heading(level, text, None);
                }
            }
            TagEnd::Item => {
                self.flush();
                self.item_depth = self.item_depth.saturating_sub(1);
            }
            TagEnd::BlockQuote(_) | TagEnd::FootnoteDefinition => self.flush(),
            TagEnd::CodeBlock => {
                if let Some(code) = self.code.take() {
                    let code = code.trim_end().trim_start_matches('\n');
                    self.out.push(BlockKind::Code, code.to_owned(), None);
                }
            }
            TagEnd::TableCell => {
                if let Some(table) = &mut self.table
                    && let Some(cell) = table.cell.take()
                {
                    let cell = cell.trim().to_owned();
                    match table.rows.last_mut() {
                        Some(row) => row.push(cell),
                        None => table.rows.push(vec![cell]),
                    }
                }
                self.pending_soft_break = false;
            }
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    let lines: Vec<String> = table
                        .rows
                        .iter()
                        .filter(|row| row.iter().any(|c| !c.is_empty()))
                        .map(|row| row.join(" | "))
                        .collect();
                    self.out.push(BlockKind::Table, lines.join("\n"), None);
                }
            }
            TagEnd::MetadataBlock(_) => self.in_metadata = false,
            TagEnd::HtmlBlock => self.in_html = false,
            _ => {}
        }
    }

    /// Where inline text currently goes.
    fn target(&mut self) -> &mut String {
        if let Some(code) = &mut self.code {
            return code;
        }
        if let Some(Table {
            cell: Some(cell), ..
        }) = &mut self.table
        {
            return cell;
        }
        &mut self.buf
    }

    fn text(&mut self, text: &str) {
        if self.in_metadata || self.in_html {
            return;
        }
        if self.code.is_some() {
            self.target().push_str(text);
        } else {
            self.inline(text);
        }
    }

    fn inline(&mut self, text: &str) {
        if self.in_metadata || self.in_html {
            return;
        }
        let soft_break = std::mem::take(&mut self.pending_soft_break);
        let target = self.target();
        if soft_break
            && let (Some(before), Some(after)) = (target.chars().last(), text.chars().next())
            && !wrap_needs_no_space(before, after)
        {
            target.push(' ');
        }
        target.push_str(text);
    }

    /// Emits the inline text collected so far as a paragraph or list item.
    fn flush(&mut self) {
        self.pending_soft_break = false;
        let text = std::mem::take(&mut self.buf);
        if self.heading.is_some() {
            // A heading is closed by its own end event; never cut it short.
            self.buf = text;
            return;
        }
        let kind = if self.item_depth > 0 {
            BlockKind::ListItem
        } else {
            BlockKind::Paragraph
        };
        self.out.push(kind, text.trim().to_owned(), None);
    }
}

#[cfg(test)]
mod tests {
    use crate::{BlockKind, DocFormat, parse};

    const DOC: &str = "---
title: front matter
---

# Install guide

Intro with `inline code`, a [link](http://x.y) and *emphasis*
wrapped onto a second line.

## Network

- first item
- second **item**
  - nested item

```rust
fn main() {
    println!(\"hi\");
}
```

| Name | Port |
|------|------|
| http | 80   |
| ssh  | 22   |

    indented code

### 配置

中文段落被
软换行了。

# Usage

Last paragraph.
";

    #[test]
    fn blocks_kinds_and_heading_paths() {
        let doc = parse(DocFormat::Markdown, DOC.as_bytes()).unwrap();
        assert_eq!(doc.title.as_deref(), Some("Install guide"));
        let got: Vec<(BlockKind, &str, String)> = doc
            .blocks
            .iter()
            .map(|b| (b.kind, b.text.as_str(), b.heading_path.join(" > ")))
            .collect();
        let g = "Install guide";
        let n = "Install guide > Network";
        let c = "Install guide > Network > 配置";
        let expected: Vec<(BlockKind, &str, String)> = vec![
            (BlockKind::Heading { level: 1 }, g, g.into()),
            (
                BlockKind::Paragraph,
                "Intro with inline code, a link and emphasis wrapped onto a second line.",
                g.into(),
            ),
            (BlockKind::Heading { level: 2 }, "Network", n.into()),
            (BlockKind::ListItem, "first item", n.into()),
            (BlockKind::ListItem, "second item", n.into()),
            (BlockKind::ListItem, "nested item", n.into()),
            (
                BlockKind::Code,
                "fn main() {\n    println!(\"hi\");\n}",
                n.into(),
            ),
            (
                BlockKind::Table,
                "Name | Port\nhttp | 80\nssh | 22",
                n.into(),
            ),
            (BlockKind::Code, "indented code", n.into()),
            (BlockKind::Heading { level: 3 }, "配置", c.into()),
            (BlockKind::Paragraph, "中文段落被软换行了。", c.into()),
            (BlockKind::Heading { level: 1 }, "Usage", "Usage".into()),
            (BlockKind::Paragraph, "Last paragraph.", "Usage".into()),
        ];
        assert_eq!(got, expected);
        assert!(doc.blocks.iter().all(|b| b.page.is_none()));
    }
}
