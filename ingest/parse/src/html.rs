//! HTML via scraper: walks the DOM, dropping page chrome and keeping the content structure.

use ego_tree::iter::Edge;
use scraper::{ElementRef, Html, Node};

use crate::common::{BlockBuilder, is_cjk};
use crate::{Block, BlockKind};

/// Elements whose content is never document text: code, styling, and navigation chrome
/// that would otherwise be repeated in every page of a site.
const DROPPED: &[&str] = &[
    "script", "style", "noscript", "nav", "header", "footer", "aside", "template", "head", "svg",
    "math", "iframe", "object", "embed", "canvas", "select", "button",
];

/// Elements that end the running paragraph before and after themselves.
const BLOCK_LEVEL: &[&str] = &[
    "address",
    "article",
    "blockquote",
    "body",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "form",
    "hr",
    "html",
    "legend",
    "main",
    "ol",
    "p",
    "section",
    "summary",
    "ul",
];

/// Parses an HTML page; the title is `<title>`, falling back to the first h1.
pub(crate) fn parse(text: &str) -> (Option<String>, Vec<Block>) {
    let html = Html::parse_document(text);
    let root = html.root_element();
    let title = root
        .descendants()
        .filter_map(ElementRef::wrap)
        .find(|e| e.value().name() == "title")
        .map(|e| {
            let mut c = Collapser::default();
            c.push_str(&e.text().collect::<String>());
            c.finish()
        })
        .filter(|t| !t.is_empty());
    let mut walker = Walker::default();
    walker.element(root);
    walker.flush();
    let blocks = walker.out.finish();
    let title = title.or_else(|| {
        blocks
            .iter()
            .find(|b| b.kind == BlockKind::Heading { level: 1 })
            .map(|b| b.text.clone())
    });
    (title, blocks)
}

/// Collapses whitespace runs to one space the way a browser renders text. A run containing
/// a newline between two CJK characters disappears, since that is source wrapping, not a
/// word gap.
#[derive(Default)]
struct Collapser {
    out: String,
    /// `Some(contains_newline)` while a whitespace run is waiting to be resolved.
    pending: Option<bool>,
}

impl Collapser {
    fn push_str(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_whitespace() {
                if !self.out.is_empty() {
                    self.pending = Some(self.pending.unwrap_or(false) || c == '\n');
                }
                continue;
            }
            if let Some(had_newline) = self.pending.take() {
                let last = self.out.chars().last();
                let vanish = had_newline && last.is_some_and(is_cjk) && is_cjk(c);
                if !vanish && last != Some('\n') {
                    self.out.push(' ');
                }
            }
            self.out.push(c);
        }
    }

    /// An explicit `<br>`: the only newline that survives collapsing.
    fn line_break(&mut self) {
        self.pending = None;
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn finish(&mut self) -> String {
        self.pending = None;
        let text = std::mem::take(&mut self.out);
        text.trim().to_owned()
    }
}

#[derive(Default)]
struct Walker {
    out: BlockBuilder,
    inline: Collapser,
    li_depth: usize,
}

impl Walker {
    /// Walks `el`'s subtree in document order.
    fn element(&mut self, el: ElementRef<'_>) {
        walk(el, |visit| match visit {
            Visit::Text(t) => {
                self.inline.push_str(t);
                true
            }
            Visit::Enter(child) => self.enter(child),
            Visit::Leave(child) => {
                self.leave(child);
                true
            }
        });
    }

    /// Handles an element on the way in; `false` when its content is done with (dropped,
    /// or taken whole like a heading, `pre` or table).
    fn enter(&mut self, el: ElementRef<'_>) -> bool {
        let name = el.value().name();
        if DROPPED.contains(&name) {
            return false;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                let level = name.as_bytes()[1] - b'0';
                self.out.heading(level, &inline_text(el), None);
                false
            }
            "pre" => {
                self.flush();
                let code: String = el.text().collect();
                let code = code.trim_end().trim_start_matches(['\n', '\r']);
                self.out.push(BlockKind::Code, code.to_owned(), None);
                false
            }
            "table" => {
                self.flush();
                self.table(el);
                false
            }
            "br" => {
                self.inline.line_break();
                false
            }
            "li" => {
                self.flush();
                self.li_depth += 1;
                true
            }
            _ if BLOCK_LEVEL.contains(&name) => {
                self.flush();
                true
            }
            _ => true,
        }
    }

    /// Handles an element on the way out, after its content.
    fn leave(&mut self, el: ElementRef<'_>) {
        let name = el.value().name();
        if name == "li" {
            self.flush();
            self.li_depth -= 1;
        } else if BLOCK_LEVEL.contains(&name) {
            self.flush();
        }
    }

    fn table(&mut self, table: ElementRef<'_>) {
        let mut rows = Vec::new();
        collect_rows(table, &mut rows);
        let lines: Vec<String> = rows
            .into_iter()
            .filter(|cells| cells.iter().any(|c| !c.is_empty()))
            .map(|cells| cells.join(" | "))
            .collect();
        self.out.push(BlockKind::Table, lines.join("\n"), None);
    }

    /// Emits the running inline text as a list item or paragraph.
    fn flush(&mut self) {
        let text = self.inline.finish();
        let kind = if self.li_depth > 0 {
            BlockKind::ListItem
        } else {
            BlockKind::Paragraph
        };
        self.out.push(kind, text, None);
    }
}

/// Gathers `tr` rows of a table, looking through thead/tbody/tfoot but not into nested
/// tables, whose text ends up inside the enclosing cell instead.
fn collect_rows(el: ElementRef<'_>, rows: &mut Vec<Vec<String>>) {
    for child in el.children().filter_map(ElementRef::wrap) {
        match child.value().name() {
            "tr" => rows.push(
                child
                    .children()
                    .filter_map(ElementRef::wrap)
                    .filter(|c| matches!(c.value().name(), "td" | "th"))
                    .map(inline_text)
                    .collect(),
            ),
            "thead" | "tbody" | "tfoot" => collect_rows(child, rows),
            "caption" => rows.push(vec![inline_text(child)]),
            _ => {}
        }
    }
}

/// The collapsed text of an element's subtree, skipping dropped elements.
fn inline_text(el: ElementRef<'_>) -> String {
    let mut c = Collapser::default();
    // Cells and headings are single lines, so anything that would break a line is just a
    // word gap here.
    let gap = |e: ElementRef<'_>| {
        let name = e.value().name();
        BLOCK_LEVEL.contains(&name) || matches!(name, "br" | "li" | "tr" | "td" | "th" | "table")
    };
    walk(el, |visit| match visit {
        Visit::Text(t) => {
            c.push_str(t);
            true
        }
        Visit::Enter(e) if DROPPED.contains(&e.value().name()) => false,
        Visit::Enter(e) | Visit::Leave(e) => {
            if gap(e) {
                c.push_str(" ");
            }
            true
        }
    });
    c.finish()
}

/// What [`walk`] meets.
enum Visit<'a> {
    Text(&'a str),
    /// An element, before its content; the visitor returns whether to go into it.
    Enter(ElementRef<'a>),
    /// An element that was gone into, after its content.
    Leave(ElementRef<'a>),
}

/// Visits the subtree below `el` in document order without recursion, so a page nested
/// 200,000 elements deep costs no stack.
fn walk<'a>(el: ElementRef<'a>, mut visit: impl FnMut(Visit<'a>) -> bool) {
    let mut skipping: Option<ego_tree::NodeId> = None;
    for edge in el.traverse() {
        match edge {
            Edge::Open(node) if skipping.is_none() && node.id() != el.id() => match node.value() {
                Node::Text(t) => {
                    visit(Visit::Text(t));
                }
                Node::Element(_) => {
                    if let Some(e) = ElementRef::wrap(node)
                        && !visit(Visit::Enter(e))
                    {
                        skipping = Some(node.id());
                    }
                }
                _ => {}
            },
            Edge::Open(_) => {}
            Edge::Close(node) if skipping == Some(node.id()) => skipping = None,
            Edge::Close(node) if skipping.is_none() && node.id() != el.id() => {
                if let Some(e) = ElementRef::wrap(node) {
                    visit(Visit::Leave(e));
                }
            }
            Edge::Close(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{BlockKind, DocFormat, parse};

    const PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>  Zhiku
  manual </title><style>body { color: red }</style><script>var x = "<p>no</p>";</script></head>
<body>
<header><h1>Site banner</h1></header>
<nav><ul><li>Home</li><li>About</li></ul></nav>
<main>
  <h1>Install</h1>
  <p>Run   the
     <b>installer</b>,<br>then reboot.</p>
  <h2>Network</h2>
  <div>Loose div text <span>inline</span></div>
  <ul><li>one</li><li>two <ul><li>nested</li></ul></li></ul>
  <pre>  fn main() {
      x();
  }</pre>
  <table>
    <thead><tr><th>Name</th><th>Port</th></tr></thead>
    <tbody><tr><td>http</td><td>80</td></tr><tr><td> ssh </td><td>22</td></tr></tbody>
  </table>
  <blockquote><p>Quoted wisdom.</p></blockquote>
  <h2>中文</h2>
  <p>这是一个
  中文段落。</p>
</main>
<aside>Related links</aside>
<footer>Copyright</footer>
<noscript>Enable JS</noscript>
</body></html>"#;

    #[test]
    fn content_structure_without_chrome() {
        let doc = parse(DocFormat::Html, PAGE.as_bytes()).unwrap();
        assert_eq!(doc.format, DocFormat::Html);
        assert_eq!(doc.title.as_deref(), Some("Zhiku manual"));
        let got: Vec<(BlockKind, &str, String)> = doc
            .blocks
            .iter()
            .map(|b| (b.kind, b.text.as_str(), b.heading_path.join(" > ")))
            .collect();
        let i = "Install";
        let n = "Install > Network";
        let z = "Install > 中文";
        let expected: Vec<(BlockKind, &str, String)> = vec![
            (BlockKind::Heading { level: 1 }, "Install", i.into()),
            (
                BlockKind::Paragraph,
                "Run the installer,\nthen reboot.",
                i.into(),
            ),
            (BlockKind::Heading { level: 2 }, "Network", n.into()),
            (BlockKind::Paragraph, "Loose div text inline", n.into()),
            (BlockKind::ListItem, "one", n.into()),
            (BlockKind::ListItem, "two", n.into()),
            (BlockKind::ListItem, "nested", n.into()),
            (BlockKind::Code, "  fn main() {\n      x();\n  }", n.into()),
            (
                BlockKind::Table,
                "Name | Port\nhttp | 80\nssh | 22",
                n.into(),
            ),
            (BlockKind::Paragraph, "Quoted wisdom.", n.into()),
            (BlockKind::Heading { level: 2 }, "中文", z.into()),
            (BlockKind::Paragraph, "这是一个中文段落。", z.into()),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn legacy_encoded_page_with_meta_charset() {
        let page = "<html><head><meta charset=\"gbk\"><title>说明</title></head><body><p>中文</p></body></html>";
        let (bytes, _, _) = encoding_rs::GBK.encode(page);
        let doc = parse(DocFormat::Html, &bytes).unwrap();
        assert_eq!(doc.title.as_deref(), Some("说明"));
        assert_eq!(doc.blocks[0].text, "中文");
    }

    #[test]
    fn title_falls_back_to_first_h1_and_fragments_parse() {
        let doc = parse(DocFormat::Html, b"<h1>Only <i>heading</i></h1>text").unwrap();
        assert_eq!(doc.title.as_deref(), Some("Only heading"));
        assert_eq!(doc.blocks[1].text, "text");
        assert_eq!(doc.blocks[1].heading_path, ["Only heading"]);
    }

    #[test]
    fn nesting_depth_costs_no_stack() {
        // Once a stack overflow that killed the service: 200,000 nested spans, parsed on a
        // thread with a small stack.
        let mut page = String::from("<html><body>");
        page.push_str(&"<span>".repeat(200_000));
        page.push_str("deep <h2>inside <b>bold</b></h2> text");
        let (_, blocks) = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || super::parse(&page))
            .unwrap()
            .join()
            .expect("no stack overflow");
        let texts: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, ["deep", "inside bold", "text"]);
    }
}
