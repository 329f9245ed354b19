//! Word documents (DOCX): `word/document.xml` read with quick-xml, headings resolved through
//! the paragraph styles of `word/styles.xml`.
//!
//! An upload is hostile input, and a ZIP archive can expand a few hundred KiB into gigabytes,
//! so every entry is read through a hard limit regardless of the sizes the archive declares.
//!
//! Embedded pictures (`a:blip`, and VML `v:imagedata`) can be listed as [`OcrTask`]s placed
//! after the paragraph that holds them; their part names come from
//! `word/_rels/document.xml.rels`.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesStart, Event};
use zip::ZipArchive;

use crate::common::{BlockBuilder, panic_reason};
use crate::image::sniff_image;
use crate::{Block, BlockKind, OcrSource, OcrTask, ParseError};

const DOCUMENT: &str = "word/document.xml";
const STYLES: &str = "word/styles.xml";
const RELATIONSHIPS: &str = "word/_rels/document.xml.rels";
const RELATIONSHIPS_LIMIT: u64 = 8 << 20;
/// All embedded images together may not inflate beyond this: far above real documents,
/// whose pictures are stored compressed already.
const IMAGES_LIMIT: u64 = 256 << 20;
/// Far beyond any real document.xml (a 1000-page report is a few MiB), small enough to hold.
const DOCUMENT_LIMIT: u64 = 64 << 20;
const STYLES_LIMIT: u64 = 8 << 20;
/// Real documents have a few dozen entries; a huge count is an attack on our time.
const MAX_ENTRIES: usize = 10_000;
/// Style inheritance chains are short; the cap only guards against cycles.
const MAX_STYLE_DEPTH: usize = 32;
/// Tables nested deeper than this are read as part of the enclosing cell. Each level copies
/// its text into the level above, so unbounded nesting would make hostile input quadratic.
const MAX_TABLE_DEPTH: usize = 16;

/// Whether `bytes` are a ZIP archive with a `word/document.xml`, i.e. a Word document
/// whatever its name says.
pub(crate) fn is_docx(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"PK\x03\x04") {
        return false;
    }
    catch_unwind(|| {
        ZipArchive::new(Cursor::new(bytes))
            .is_ok_and(|archive| find_entry(&archive, DOCUMENT).is_some())
    })
    .unwrap_or(false)
}

/// A DOCX file's title, blocks and, with `images`, its embedded pictures to OCR.
type Parsed = (Option<String>, Vec<Block>, Vec<OcrTask>);

/// Parses a DOCX file into its title and blocks; with `images`, also lists the pictures it
/// embeds (PNG, JPEG, TIFF, WebP, BMP; others such as EMF cannot be read) for OCR.
pub(crate) fn parse(bytes: &[u8], images: bool) -> Result<Parsed, ParseError> {
    // The zip and XML readers are not known to panic, but an upload must never take the
    // service down if one does.
    catch_unwind(AssertUnwindSafe(|| parse_archive(bytes, images))).unwrap_or_else(|payload| {
        Err(invalid(format!(
            "the reader failed ({})",
            panic_reason(&*payload)
        )))
    })
}

fn invalid(detail: impl Into<String>) -> ParseError {
    ParseError::Docx {
        detail: detail.into(),
    }
}

fn parse_archive(bytes: &[u8], images: bool) -> Result<Parsed, ParseError> {
    // Also catches the common mistake of an old binary .doc renamed to .docx.
    if !bytes.starts_with(b"PK") {
        return Err(invalid("not a ZIP archive"));
    }
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| invalid(format!("not a valid ZIP archive: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "the archive has {} entries, more than {MAX_ENTRIES}",
            archive.len()
        )));
    }
    let document = read_entry(&mut archive, DOCUMENT, DOCUMENT_LIMIT)?
        .ok_or_else(|| invalid(format!("the archive has no {DOCUMENT}")))?;
    // Without usable styles only headings are lost (style ids like "Heading1" still work),
    // which beats rejecting a document whose text is fine.
    let styles = read_entry(&mut archive, STYLES, STYLES_LIMIT)?
        .and_then(|xml| xml_text(xml).ok().and_then(|xml| parse_styles(&xml).ok()))
        .unwrap_or_default();
    let xml = xml_text(document).map_err(|e| invalid(format!("{DOCUMENT}: {e}")))?;
    let (title, blocks, pictures) = parse_document(&xml, &styles)
        .map_err(|e| invalid(format!("{DOCUMENT} is malformed: {e}")))?;
    let tasks = if images && !pictures.is_empty() {
        image_tasks(&mut archive, pictures)?
    } else {
        Vec::new()
    };
    Ok((title, blocks, tasks))
}

/// A picture referenced from the document body, where it appeared.
struct Picture {
    /// Relationship id (`r:embed`).
    id: String,
    position: usize,
    heading_path: Vec<String>,
}

/// Reads the pictures the document shows into OCR tasks, each part once (at its first
/// place). Pictures whose relationship or part is missing, or which are not a raster
/// format OCR reads, are left out: they cannot hold readable text for us.
fn image_tasks(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    pictures: Vec<Picture>,
) -> Result<Vec<OcrTask>, ParseError> {
    let Some(rels) = read_entry(archive, RELATIONSHIPS, RELATIONSHIPS_LIMIT)? else {
        return Ok(Vec::new());
    };
    let targets = xml_text(rels)
        .ok()
        .and_then(|xml| relationships(&xml).ok())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let mut budget = IMAGES_LIMIT;
    let mut tasks = Vec::new();
    for picture in pictures {
        let Some(part) = targets.get(&picture.id) else {
            continue;
        };
        if !seen.insert(part.clone()) {
            continue;
        }
        let Some(bytes) = read_entry(archive, part, budget)? else {
            continue;
        };
        budget -= bytes.len() as u64;
        if sniff_image(&bytes).is_none() {
            continue;
        }
        tasks.push(OcrTask {
            source: OcrSource::Embedded {
                name: part.clone(),
                bytes: Arc::from(bytes),
            },
            position: picture.position,
            heading_path: picture.heading_path,
        });
    }
    Ok(tasks)
}

/// Internal relationships of the document part: id → part name in the archive. Targets
/// are relative to `word/` unless absolute.
fn relationships(xml: &str) -> Result<HashMap<String, String>, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut out = HashMap::new();
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "Relationship" => {
                if attr(&e, "TargetMode").is_some_and(|m| m.eq_ignore_ascii_case("External")) {
                    continue;
                }
                if let (Some(id), Some(target)) = (attr(&e, "Id"), attr(&e, "Target")) {
                    out.insert(id, part_name(&target));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The archive path of a relationship target of `word/document.xml`.
fn part_name(target: &str) -> String {
    let mut parts: Vec<&str> = match target.strip_prefix('/') {
        Some(_) => Vec::new(),
        None => vec!["word"],
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// The index of entry `name`; OPC part names are case-insensitive, so a scan (bounded by
/// [`MAX_ENTRIES`]) backs up the exact lookup.
fn find_entry(archive: &ZipArchive<Cursor<&[u8]>>, name: &str) -> Option<usize> {
    archive.index_for_name(name).or_else(|| {
        (0..archive.len().min(MAX_ENTRIES)).find(|&i| {
            archive
                .name_for_index(i)
                .and_then(Result::ok)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    })
}

/// Decompresses entry `name`, failing once it yields more than `limit` bytes.
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, ParseError> {
    let Some(index) = find_entry(archive, name) else {
        return Ok(None);
    };
    let entry = archive
        .by_index(index)
        .map_err(|e| invalid(format!("cannot open {name}: {e}")))?;
    let mut out = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| invalid(format!("cannot decompress {name}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(invalid(format!(
            "{name} decompresses to more than {} MiB (zip bomb?)",
            limit >> 20
        )));
    }
    Ok(Some(out))
}

/// XML parts are UTF-8 in practice; UTF-16 is allowed by the spec and signalled by a BOM.
/// Takes the bytes by value so that the common case reuses the buffer.
fn xml_text(bytes: Vec<u8>) -> Result<String, String> {
    if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(&bytes) {
        let (text, had_errors) =
            encoding.decode_without_bom_handling(bytes.get(bom_len..).unwrap_or_default());
        if had_errors {
            return Err(format!("malformed {}", encoding.name()));
        }
        return Ok(text.into_owned());
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {}", e.utf8_error()))
}

/// The value of the attribute whose local name is `name` (`w:val` and a bare `val` alike:
/// prefixes are conventional, not fixed).
fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .map_while(Result::ok)
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.into_owned())
        })
}

/// What a paragraph style says about its paragraphs. Fields left `None` are inherited.
#[derive(Debug, Default, Clone)]
struct StyleDef {
    name: Option<String>,
    based_on: Option<String>,
    /// `w:outlineLvl`: 0–8 is a heading level, 9 explicitly body text.
    outline: Option<u8>,
    /// Whether `w:numPr` makes its paragraphs list items (`numId` 0 switches numbering off).
    numbered: Option<bool>,
}

#[derive(Debug, Default)]
struct Styles {
    defs: HashMap<String, StyleDef>,
    /// The style of paragraphs that name none.
    default_paragraph: Option<String>,
}

/// What a paragraph is, as far as blocks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Title,
    Heading(u8),
    ListItem,
    Body,
}

/// Heading role from a style name: Word stores English names ("heading 1", "Title") even
/// in localised installations, whose style ids differ ("1", "a3"); ids like "Heading1" fall
/// out of the same rule when styles.xml is missing.
fn role_from_name(name: &str) -> Option<Role> {
    let name = name.trim().to_ascii_lowercase();
    if name == "title" || name == "标题" {
        return Some(Role::Title);
    }
    let rest = name
        .strip_prefix("heading")
        .or_else(|| name.strip_prefix("标题"))?;
    let level: u8 = rest.trim().parse().ok()?;
    (1..=9)
        .contains(&level)
        .then(|| Role::Heading(level.min(6)))
}

fn role_from_outline(outline: u8) -> Option<Role> {
    (outline < 9).then(|| Role::Heading((outline + 1).min(6)))
}

impl Styles {
    /// The heading role a style gives, following `basedOn` until a style decides.
    fn heading(&self, style: &str) -> Option<Role> {
        let mut id = style;
        for _ in 0..MAX_STYLE_DEPTH {
            let Some(def) = self.defs.get(id) else {
                return role_from_name(id);
            };
            if let Some(role) = role_from_name(def.name.as_deref().unwrap_or(id)) {
                return Some(role);
            }
            if let Some(outline) = def.outline {
                return role_from_outline(outline);
            }
            id = def.based_on.as_deref()?;
        }
        None
    }

    fn numbered(&self, style: &str) -> bool {
        let mut id = style;
        for _ in 0..MAX_STYLE_DEPTH {
            let Some(def) = self.defs.get(id) else {
                return false;
            };
            if let Some(numbered) = def.numbered {
                return numbered;
            }
            let Some(parent) = def.based_on.as_deref() else {
                return false;
            };
            id = parent;
        }
        false
    }

    fn role(&self, para: &Para) -> Role {
        let style = para.style.as_deref().or(self.default_paragraph.as_deref());
        let heading = match para.outline {
            Some(outline) => role_from_outline(outline),
            None => style.and_then(|s| self.heading(s)),
        };
        if let Some(role) = heading {
            return role;
        }
        let numbered = para
            .numbered
            .unwrap_or_else(|| style.is_some_and(|s| self.numbered(s)));
        if numbered { Role::ListItem } else { Role::Body }
    }
}

fn parse_styles(xml: &str) -> Result<Styles, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut styles = Styles::default();
    let mut current: Option<(String, StyleDef)> = None;
    loop {
        let (e, is_start) = match reader.read_event()? {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(e) => {
                if e.local_name().as_ref() == "style"
                    && let Some((id, def)) = current.take()
                {
                    styles.defs.insert(id, def);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        match e.local_name().as_ref() {
            "style" => {
                current = None;
                // Only paragraph styles can be named by w:pStyle.
                if attr(&e, "type").is_some_and(|t| t != "paragraph") {
                    continue;
                }
                let Some(id) = attr(&e, "styleId") else {
                    continue;
                };
                if attr(&e, "default").is_some_and(|d| matches!(d.as_str(), "1" | "true" | "on")) {
                    styles.default_paragraph = Some(id.clone());
                }
                if is_start {
                    current = Some((id, StyleDef::default()));
                }
            }
            "name" => {
                if let Some((_, def)) = &mut current {
                    def.name = attr(&e, "val");
                }
            }
            "basedOn" => {
                if let Some((_, def)) = &mut current {
                    def.based_on = attr(&e, "val");
                }
            }
            "outlineLvl" => {
                if let Some((_, def)) = &mut current {
                    def.outline = attr(&e, "val").and_then(|v| v.trim().parse().ok());
                }
            }
            "numId" => {
                if let Some((_, def)) = &mut current {
                    def.numbered = attr(&e, "val").map(|v| v.trim() != "0");
                }
            }
            _ => {}
        }
    }
    Ok(styles)
}

/// A paragraph being read. Paragraphs nest when a text box is anchored inside one.
#[derive(Debug, Default)]
struct Para {
    text: String,
    style: Option<String>,
    outline: Option<u8>,
    numbered: Option<bool>,
    /// Relationship ids of the pictures in the paragraph.
    pictures: Vec<String>,
}

#[derive(Debug, Default)]
struct Table {
    rows: Vec<Vec<String>>,
    /// The cell being read, if any.
    cell: Option<String>,
}

/// Elements whose whole subtree is skipped: the VML duplicate of a DrawingML text box, text
/// that track changes deleted or moved away, and the old properties kept by track changes.
const SKIPPED: &[&str] = &["Fallback", "del", "moveFrom", "pPrChange", "rPrChange"];

struct DocParser<'s> {
    styles: &'s Styles,
    out: BlockBuilder,
    title_style: Option<String>,
    first_h1: Option<String>,
    paragraphs: Vec<Para>,
    tables: Vec<Table>,
    /// Nesting depths of runs, run text and paragraph properties. The reader rejects
    /// mismatched end tags, so the counters stay balanced; text boxes make runs nest.
    run_depth: usize,
    text_depth: usize,
    ppr_depth: usize,
    skip_depth: usize,
    /// Open tables beyond [`MAX_TABLE_DEPTH`], whose rows and cells are ignored.
    flattened_tables: usize,
    pictures: Vec<Picture>,
}

/// Title, blocks and the pictures shown, in document order.
type DocumentParts = (Option<String>, Vec<Block>, Vec<Picture>);

fn parse_document(xml: &str, styles: &Styles) -> Result<DocumentParts, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut parser = DocParser {
        styles,
        out: BlockBuilder::default(),
        title_style: None,
        first_h1: None,
        paragraphs: Vec::new(),
        tables: Vec::new(),
        run_depth: 0,
        text_depth: 0,
        ppr_depth: 0,
        skip_depth: 0,
        flattened_tables: 0,
        pictures: Vec::new(),
    };
    loop {
        match reader.read_event()? {
            Event::Start(e) => parser.start(&e),
            Event::Empty(e) if parser.skip_depth == 0 => parser.element(&e, true),
            Event::End(e) => parser.end(e.local_name().as_ref()),
            Event::Text(t) => parser.text(&t.xml10_content()),
            Event::CData(t) => parser.text(&t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    parser.text(c.encode_utf8(&mut [0; 4]));
                } else if let Some(s) = resolve_xml_entity(&r) {
                    parser.text(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // A document cut short still yields what was read.
    while let Some(para) = parser.paragraphs.pop() {
        parser.paragraph(para);
    }
    while !parser.tables.is_empty() {
        parser.end_table();
    }
    let title = parser.title_style.or(parser.first_h1);
    Ok((title, parser.out.finish(), parser.pictures))
}

impl DocParser<'_> {
    fn start(&mut self, e: &BytesStart<'_>) {
        if self.skip_depth > 0 {
            self.skip_depth += 1;
            return;
        }
        let name = e.local_name();
        let name = name.as_ref();
        if SKIPPED.contains(&name) {
            self.skip_depth = 1;
            return;
        }
        match name {
            "p" => self.paragraphs.push(Para::default()),
            "pPr" => self.ppr_depth += 1,
            "r" => self.run_depth += 1,
            "t" if self.run_depth > 0 && self.ppr_depth == 0 => self.text_depth += 1,
            "tbl" if self.tables.len() >= MAX_TABLE_DEPTH => self.flattened_tables += 1,
            "tbl" => self.tables.push(Table::default()),
            "tr" | "tc" if self.flattened_tables > 0 => {}
            "tr" => {
                if let Some(table) = self.tables.last_mut() {
                    table.rows.push(Vec::new());
                }
            }
            "tc" => {
                if let Some(table) = self.tables.last_mut() {
                    table.cell = Some(String::new());
                }
            }
            _ => self.element(e, false),
        }
    }

    /// Elements that matter by their attributes or as characters, whether written empty
    /// (as Word does) or not.
    fn element(&mut self, e: &BytesStart<'_>, empty: bool) {
        let in_ppr = self.ppr_depth > 0;
        let in_run = self.run_depth > 0 && !in_ppr;
        match e.local_name().as_ref() {
            "pStyle" if in_ppr => {
                if let Some(para) = self.paragraphs.last_mut() {
                    para.style = attr(e, "val");
                }
            }
            "outlineLvl" if in_ppr => {
                if let Some(para) = self.paragraphs.last_mut() {
                    para.outline = attr(e, "val").and_then(|v| v.trim().parse().ok());
                }
            }
            "numId" if in_ppr => {
                if let Some(para) = self.paragraphs.last_mut() {
                    para.numbered = attr(e, "val").map(|v| v.trim() != "0");
                }
            }
            // DrawingML pictures, and VML ones in older documents.
            "blip" | "imagedata" => {
                let id = attr(e, "embed").or_else(|| attr(e, "id"));
                if let (Some(para), Some(id)) = (self.paragraphs.last_mut(), id) {
                    para.pictures.push(id);
                }
            }
            "tab" | "ptab" if in_run => self.push_char(' '),
            "br" | "cr" if in_run => self.push_char('\n'),
            "noBreakHyphen" if in_run => self.push_char('-'),
            // An empty cell still holds its column.
            "tc" if empty && self.flattened_tables == 0 => {
                if let Some(table) = self.tables.last_mut() {
                    match table.rows.last_mut() {
                        Some(row) => row.push(String::new()),
                        None => table.rows.push(vec![String::new()]),
                    }
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, name: &str) {
        if self.skip_depth > 0 {
            self.skip_depth -= 1;
            return;
        }
        match name {
            "t" => self.text_depth = self.text_depth.saturating_sub(1),
            "r" => self.run_depth = self.run_depth.saturating_sub(1),
            "pPr" => self.ppr_depth = self.ppr_depth.saturating_sub(1),
            "p" => {
                if let Some(para) = self.paragraphs.pop() {
                    self.paragraph(para);
                }
            }
            "tc" if self.flattened_tables > 0 => {}
            "tbl" if self.flattened_tables > 0 => self.flattened_tables -= 1,
            "tc" => {
                if let Some(table) = self.tables.last_mut()
                    && let Some(cell) = table.cell.take()
                {
                    match table.rows.last_mut() {
                        Some(row) => row.push(cell),
                        None => table.rows.push(vec![cell]),
                    }
                }
            }
            "tbl" => self.end_table(),
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        // Only the content of w:t is text: anything else between tags is XML indentation.
        if self.skip_depth == 0
            && self.text_depth > 0
            && let Some(para) = self.paragraphs.last_mut()
        {
            para.text.push_str(text);
        }
    }

    /// A character that a run element stands for (tab, break).
    fn push_char(&mut self, c: char) {
        if let Some(para) = self.paragraphs.last_mut() {
            para.text.push(c);
        }
    }

    /// Emits a finished paragraph, then notes its pictures: their text follows it (or,
    /// in a table, precedes the table).
    fn paragraph(&mut self, mut para: Para) {
        let pictures = std::mem::take(&mut para.pictures);
        self.paragraph_text(para);
        for id in pictures {
            self.pictures.push(Picture {
                id,
                position: self.out.len(),
                heading_path: self.out.path(),
            });
        }
    }

    fn paragraph_text(&mut self, para: Para) {
        if let Some(table) = self.tables.last_mut()
            && let Some(cell) = &mut table.cell
        {
            // A cell is one line of its row: its paragraphs and breaks become spaces.
            let text = one_line(&para.text);
            if !text.is_empty() {
                if !cell.is_empty() {
                    cell.push(' ');
                }
                cell.push_str(&text);
            }
            return;
        }
        match self.styles.role(&para) {
            Role::Title => {
                let text = one_line(&para.text);
                if self.title_style.is_none() && !text.is_empty() {
                    self.title_style = Some(text.clone());
                }
                self.out.heading(1, &text, None);
            }
            Role::Heading(level) => {
                let text = one_line(&para.text);
                if level == 1 && self.first_h1.is_none() && !text.is_empty() {
                    self.first_h1 = Some(text.clone());
                }
                self.out.heading(level, &text, None);
            }
            Role::ListItem => {
                self.out
                    .push(BlockKind::ListItem, para.text.trim().to_owned(), None);
            }
            Role::Body => {
                self.out
                    .push(BlockKind::Paragraph, para.text.trim().to_owned(), None);
            }
        }
    }

    fn end_table(&mut self) {
        let Some(table) = self.tables.pop() else {
            return;
        };
        let rows = table
            .rows
            .into_iter()
            .filter(|row| row.iter().any(|c| !c.is_empty()));
        match self.tables.last_mut() {
            // A nested table's text belongs to the enclosing cell, like in the HTML parser.
            Some(outer) => {
                let text = rows
                    .flatten()
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                match &mut outer.cell {
                    Some(cell) => {
                        if !cell.is_empty() && !text.is_empty() {
                            cell.push(' ');
                        }
                        cell.push_str(&text);
                    }
                    None => outer.rows.push(vec![text]),
                }
            }
            None => {
                let lines: Vec<String> = rows.map(|row| row.join(" | ")).collect();
                self.out.push(BlockKind::Table, lines.join("\n"), None);
            }
        }
    }
}

/// Collapses line breaks (and the spaces around them) into single spaces.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
