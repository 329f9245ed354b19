//! Cuts parsed documents into chunks that fit the embedding model's token budget.
//!
//! Chunks follow document structure: a heading or a new PDF page always starts a new chunk,
//! small blocks of the same section are packed together, and only blocks that are too large
//! on their own are split, at the most natural boundary available.

#![warn(missing_docs)]

use zhiku_parse::{Block, BlockKind, ParsedDocument};

/// Counts tokens the way the embedding model will; the pipeline passes an adapter over the
/// embedder's tokenizer.
pub trait TokenCounter {
    /// The number of tokens `text` encodes to.
    fn count(&self, text: &str) -> usize;
}

/// Budget settings for [`chunk_document`].
#[derive(Debug, Clone)]
pub struct ChunkerConfig {
    /// Upper bound on a chunk's token count; 0 is treated as 1.
    pub max_tokens: usize,
    /// How many tokens of trailing whole sentences a piece of a split block repeats from the
    /// previous piece, so that a sentence's context is not lost at the cut.
    pub overlap_tokens: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            overlap_tokens: 32,
        }
    }
}

/// A piece of a document ready for embedding and indexing.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position of the chunk in the document, 0-based and consecutive.
    pub index: usize,
    /// The chunk's text; never empty or whitespace-only.
    pub text: String,
    /// Texts of the enclosing headings, outermost first.
    pub heading_path: Vec<String>,
    /// 1-based page for paginated formats (PDF, multi-page images).
    pub page: Option<u32>,
    /// For text recognised by OCR: the lowest confidence (0 to 100) of the pages or images
    /// its blocks came from. OCR text and the file's own text never share a chunk.
    pub ocr_confidence: Option<f32>,
    /// `counter.count(&text)`.
    pub token_count: usize,
}

/// Splits a parsed document into chunks of at most `config.max_tokens` tokens.
///
/// - A heading or a change of page starts a new chunk. Headings are not emitted as text; they
///   are carried in each chunk's `heading_path`. A heading with no body of its own gets a
///   chunk holding just its text, unless the next heading is nested under it (its text then
///   already lives in the sub-sections' heading paths).
/// - Consecutive blocks under the same heading path and page, and either both from OCR or
///   both not, are packed, joined by a blank line, while the packed text (counted as a whole, since subword token counts are not
///   additive) stays within budget.
/// - A block over budget on its own is split: prose at sentence ends (`. ! ?` followed by
///   whitespace, `。！？`), then at `；`/`; `, line breaks, whitespace, and finally between
///   characters; code only at line ends (a single overlong line falls back to whitespace,
///   then characters); tables by rows, every part repeating the header row.
/// - Each later piece of a split prose block starts with up to `overlap_tokens` worth of
///   the previous piece's trailing whole sentences; a sentence that would not fit is not
///   repeated, and nothing is ever repeated across headings, pages or blocks.
///
/// Every chunk is within budget except when the counter reports a single character as more
/// than `max_tokens` tokens; such a character is emitted alone since it cannot be split.
pub fn chunk_document(
    doc: &ParsedDocument,
    counter: &dyn TokenCounter,
    config: &ChunkerConfig,
) -> Vec<Chunk> {
    let budget = Budget {
        counter,
        max: config.max_tokens.max(1),
        overlap: config.overlap_tokens,
    };
    let mut chunker = Chunker {
        budget: &budget,
        drafts: Vec::new(),
        pack: None,
        pending_heading: None,
    };
    for block in &doc.blocks {
        chunker.block(block);
    }
    chunker.flush_pack();
    if let Some(heading) = chunker.pending_heading.take() {
        chunker.heading_only(heading);
    }
    chunker
        .drafts
        .into_iter()
        .enumerate()
        .map(|(index, d)| Chunk {
            index,
            token_count: counter.count(&d.text),
            text: d.text,
            heading_path: d.heading_path,
            page: d.page,
            ocr_confidence: d.ocr_confidence,
        })
        .collect()
}

struct Budget<'a> {
    counter: &'a dyn TokenCounter,
    max: usize,
    overlap: usize,
}

/// No chunk may be longer than this many bytes per token of budget, whatever the
/// tokenizer says: WordPiece turns an over-long "word" into a single `[UNK]`, which would
/// otherwise let megabytes of unspaced text pass as one token.
const MAX_BYTES_PER_TOKEN: usize = 32;

impl Budget<'_> {
    /// Trailing whitespace is dropped from emitted chunks, so it must not count against them.
    fn count(&self, text: &str) -> usize {
        self.counter.count(text.trim_end())
    }

    /// Token count, or a cheap estimate above the budget for text that cannot fit: every
    /// whitespace-separated word is at least one token (WordPiece, SentencePiece and
    /// byte-level BPE all split at spaces), and the byte cap above applies. This keeps the
    /// tokenizer away from megabyte-long texts, which it would otherwise see again at every
    /// split level.
    fn measure(&self, text: &str) -> usize {
        let text = text.trim_end();
        let cap = self.max.saturating_mul(MAX_BYTES_PER_TOKEN);
        if text.len() > cap {
            return (text.len() / MAX_BYTES_PER_TOKEN).max(self.max + 1);
        }
        let words = text.split_whitespace().take(self.max + 1).count();
        if words > self.max {
            return text.split_whitespace().count();
        }
        self.counter.count(text)
    }

    fn fits(&self, text: &str) -> bool {
        // No token is shorter than a byte (a leading word-boundary marker aside), so short
        // texts fit without asking the tokenizer: this spares one call per word when a long
        // line is cut into words.
        text.trim_end().len() < self.max || self.measure(text) <= self.max
    }
}

struct Draft {
    text: String,
    heading_path: Vec<String>,
    page: Option<u32>,
    ocr_confidence: Option<f32>,
}

struct Chunker<'a> {
    budget: &'a Budget<'a>,
    drafts: Vec<Draft>,
    /// Blocks of the current section packed so far.
    pack: Option<Draft>,
    /// The latest heading, while no body block has followed it yet.
    pending_heading: Option<&'a Block>,
}

impl<'a> Chunker<'a> {
    fn block(&mut self, block: &'a Block) {
        if let BlockKind::Heading { .. } = block.kind {
            self.flush_pack();
            if let Some(previous) = self.pending_heading.take()
                && !is_nested_under(block, previous)
            {
                self.heading_only(previous);
            }
            self.pending_heading = Some(block);
            return;
        }
        let text = tidy(block.kind, &block.text);
        if text.is_empty() {
            return;
        }
        self.pending_heading = None;
        if let Some(pack) = &mut self.pack
            && pack.heading_path == block.heading_path
            && pack.page == block.page
            && pack.ocr_confidence.is_some() == block.ocr_confidence.is_some()
        {
            let joined = format!("{}\n\n{}", pack.text, text);
            if self.budget.fits(&joined) {
                pack.text = joined;
                pack.ocr_confidence = pack
                    .ocr_confidence
                    .zip(block.ocr_confidence)
                    .map(|(a, b)| a.min(b));
                return;
            }
        }
        self.flush_pack();
        let draft = |text: String| Draft {
            text,
            heading_path: block.heading_path.clone(),
            page: block.page,
            ocr_confidence: block.ocr_confidence,
        };
        if self.budget.fits(text) {
            self.pack = Some(draft(text.to_owned()));
        } else {
            for piece in split_block(self.budget, block.kind, text) {
                self.emit(draft(piece));
            }
        }
    }

    /// Keeps a heading that has no body from vanishing.
    fn heading_only(&mut self, heading: &Block) {
        let text = heading.text.trim();
        let pieces = if self.budget.fits(text) {
            vec![text.to_owned()]
        } else {
            split_block(self.budget, BlockKind::Paragraph, text)
        };
        for text in pieces {
            self.emit(Draft {
                text,
                heading_path: heading.heading_path.clone(),
                page: heading.page,
                ocr_confidence: heading.ocr_confidence,
            });
        }
    }

    fn flush_pack(&mut self) {
        if let Some(pack) = self.pack.take() {
            self.emit(pack);
        }
    }

    fn emit(&mut self, draft: Draft) {
        if draft.text.trim().is_empty() {
            return;
        }
        self.drafts.push(draft);
    }
}

/// Whether `heading` opens a sub-section of `parent`.
fn is_nested_under(heading: &Block, parent: &Block) -> bool {
    heading.heading_path.len() > parent.heading_path.len()
        && heading.heading_path.starts_with(&parent.heading_path)
}

/// Strips the whitespace a chunk should not start or end with. Code keeps the indentation
/// of its first line, which is meaningful.
fn tidy(kind: BlockKind, text: &str) -> &str {
    match kind {
        BlockKind::Code => {
            let text = text.trim_end();
            let first = text.len() - text.trim_start().len();
            let line_start = text[..first].rfind('\n').map_or(0, |i| i + 1);
            &text[line_start..]
        }
        _ => text.trim(),
    }
}

/// Splits one over-budget block into pieces that each fit.
fn split_block(budget: &Budget<'_>, kind: BlockKind, text: &str) -> Vec<String> {
    let pieces = match kind {
        BlockKind::Code => pack_units(budget, &units(budget, text, Level::Line), false),
        BlockKind::Table => split_table(budget, text),
        _ => pack_units(budget, &units(budget, text, Level::Sentence), true),
    };
    pieces
        .iter()
        .map(|p| tidy(kind, p))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits a table by rows, repeating the header row in every part so each chunk stays
/// interpretable on its own.
fn split_table(budget: &Budget<'_>, text: &str) -> Vec<String> {
    let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some((&header, body)) = rows.split_first() else {
        return Vec::new();
    };
    let with_header = |rows: &[&str]| {
        let mut out = header.to_owned();
        for row in rows {
            out.push('\n');
            out.push_str(row);
        }
        out
    };
    let prose = |text: &str| pack_units(budget, &units(budget, text, Level::Sentence), false);
    let mut pieces = Vec::new();
    let mut header_used = false;
    let mut current: Vec<&str> = Vec::new();
    for &row in body {
        current.push(row);
        if budget.fits(&with_header(&current)) {
            continue;
        }
        current.pop();
        if !current.is_empty() {
            pieces.push(with_header(&current));
            header_used = true;
            current.clear();
        }
        if budget.fits(&with_header(&[row])) {
            current.push(row);
        } else {
            // Not even header plus this row fit: the row has to stand alone.
            pieces.extend(prose(row));
        }
    }
    if !current.is_empty() {
        pieces.push(with_header(&current));
        header_used = true;
    }
    if !header_used {
        let mut head = prose(header);
        head.append(&mut pieces);
        pieces = head;
    }
    pieces
}

/// Boundaries to split at, from the most to the least natural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Sentence,
    Clause,
    Line,
    Word,
}

impl Level {
    fn finer(self) -> Option<Level> {
        match self {
            Level::Sentence => Some(Level::Clause),
            Level::Clause => Some(Level::Line),
            Level::Line => Some(Level::Word),
            Level::Word => None,
        }
    }
}

/// A contiguous slice of the block's text that fits the budget on its own.
#[derive(Debug, Clone, Copy)]
struct Unit<'t> {
    text: &'t str,
    /// Only whole sentences may be repeated as overlap.
    sentence: bool,
}

/// Cuts `text` into in-budget units, using finer boundaries only where coarser ones leave
/// a part over budget. Units keep their trailing separators, so concatenating consecutive
/// units reproduces the original text exactly (including the absence of spaces in CJK).
fn units<'t>(budget: &Budget<'_>, text: &'t str, level: Level) -> Vec<Unit<'t>> {
    let mut out = Vec::new();
    for part in split_at(text, level) {
        if budget.fits(part) {
            out.push(Unit {
                text: part,
                sentence: level == Level::Sentence,
            });
        } else if let Some(finer) = level.finer() {
            out.extend(units(budget, part, finer));
        } else {
            out.extend(char_units(budget, part));
        }
    }
    out
}

/// Last resort for text without any usable boundary: the longest prefixes (on char
/// boundaries) that fit.
fn char_units<'t>(budget: &Budget<'_>, mut text: &'t str) -> Vec<Unit<'t>> {
    let mut out = Vec::new();
    let mut guess = 1;
    while !text.is_empty() {
        let end_of = |chars: usize| {
            text.char_indices()
                .nth(chars)
                .map_or(text.len(), |(i, _)| i)
        };
        // No piece can exceed the byte cap, so counting further chars is wasted work, and
        // quadratic over a long unbroken line.
        let total = text
            .chars()
            .take(budget.max.saturating_mul(MAX_BYTES_PER_TOKEN) + 1)
            .count();
        // One character always goes, even over budget, so the loop makes progress.
        let chars = aimed_fit(1, total, budget.max, guess, |n| {
            budget.measure(&text[..end_of(n)])
        });
        guess = chars;
        let (head, rest) = text.split_at(end_of(chars));
        out.push(Unit {
            text: head,
            sentence: false,
        });
        text = rest;
    }
    out
}

/// The largest length `n` in `min..=max` with `measure(n) <= budget`, taking `min` as
/// given. Each measurement aims the next guess in proportion to how far it was from the
/// budget, so a piece usually costs two or three tokenizer calls on text of about its own
/// size, instead of a gallop-and-bisect from zero. Measurements are assumed to grow with
/// length; where a tokenizer breaks that, the answer is merely shorter than possible,
/// never over budget.
fn aimed_fit(
    min: usize,
    max: usize,
    budget: usize,
    guess: usize,
    measure: impl Fn(usize) -> usize,
) -> usize {
    if min >= max {
        return min;
    }
    // `lo` is known to fit (by fiat for `min`); `hi` is known not to, or is past `max`.
    let (mut lo, mut hi) = (min, max + 1);
    let mut n = guess;
    while hi - lo > 1 {
        if n <= lo || n >= hi {
            // Without an upper bound, grow from what fits rather than bisect towards `max`:
            // that would measure half of everything that is left, for every piece.
            n = if hi > max {
                lo.saturating_mul(2).clamp(lo + 1, max)
            } else {
                lo + (hi - lo) / 2
            };
        }
        let m = measure(n);
        if m <= budget {
            lo = n;
            n = (n * budget).checked_div(m).unwrap_or(n * 2).max(lo + 1);
        } else {
            hi = n;
            n = n * budget / m;
        }
    }
    lo
}

fn is_latin_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?')
}

fn is_cjk_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '｡')
}

/// Closing quotes and brackets that belong to the sentence they end.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '»' | '”' | '’' | '」' | '』' | '）' | '》' | '〉' | '】'
    )
}

/// Splits `text` after each boundary of `level`; the pieces cover `text` exactly.
fn split_at(text: &str, level: Level) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |j: usize| chars.get(j).map_or(text.len(), |&(i, _)| i);
    let skip_ws = |mut j: usize| {
        while chars.get(j).is_some_and(|(_, c)| c.is_whitespace()) {
            j += 1;
        }
        j
    };
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let next = match level {
            Level::Sentence if is_latin_terminator(c) || is_cjk_terminator(c) => {
                let mut j = i + 1;
                let mut cjk = is_cjk_terminator(c);
                while let Some(&(_, d)) = chars.get(j) {
                    if is_cjk_terminator(d) {
                        cjk = true;
                    } else if !is_latin_terminator(d) && !is_closer(d) {
                        break;
                    }
                    j += 1;
                }
                // "3.14" or "example.com" is not a sentence end; "end. Next" is.
                let boundary = cjk || chars.get(j).is_none_or(|(_, d)| d.is_whitespace());
                boundary.then(|| skip_ws(j))
            }
            Level::Clause if c == '；' => Some(skip_ws(i + 1)),
            Level::Clause
                if c == ';' && chars.get(i + 1).is_some_and(|(_, d)| d.is_whitespace()) =>
            {
                Some(skip_ws(i + 1))
            }
            Level::Line if c == '\n' => {
                // Blank lines stay with the line before, so no unit is only a newline.
                let mut j = i + 1;
                while chars.get(j).is_some_and(|&(_, d)| d == '\n' || d == '\r') {
                    j += 1;
                }
                Some(j)
            }
            Level::Word if c.is_whitespace() => Some(skip_ws(i + 1)),
            _ => None,
        };
        match next {
            Some(j) => {
                if j < chars.len() {
                    cuts.push(at(j));
                }
                i = j;
            }
            None => i += 1,
        }
    }
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(&text[start..cut]);
        start = cut;
    }
    pieces.push(&text[start..]);
    pieces
}

/// Greedily packs consecutive units into pieces within budget. With `overlap`, each new
/// piece first takes back the previous piece's trailing whole sentences, as many as fit in
/// `budget.overlap` tokens while leaving room for the next new unit.
fn pack_units(budget: &Budget<'_>, units: &[Unit<'_>], overlap: bool) -> Vec<String> {
    let join =
        |range: std::ops::Range<usize>| -> String { units[range].iter().map(|u| u.text).collect() };
    let mut pieces = Vec::new();
    // The piece being built starts at `start` (overlap included); `next` is the first unit
    // not yet in any piece, which the piece must take to make progress.
    let (mut start, mut next) = (0, 0);
    let mut guess = 1;
    while next < units.len() {
        let length = aimed_fit(
            next + 1 - start,
            units.len() - start,
            budget.max,
            guess.max(next + 1 - start),
            |length| budget.measure(&join(start..start + length)),
        );
        guess = length;
        let end = start + length;
        pieces.push(join(start..end));
        next = end;
        let mut from = end;
        if overlap && budget.overlap > 0 && next < units.len() {
            while from > start
                && units[from - 1].sentence
                && budget.count(&join(from - 1..end)) <= budget.overlap
                && budget.fits(&join(from - 1..end + 1))
            {
                from -= 1;
            }
        }
        start = from;
    }
    pieces
}

#[cfg(test)]
mod tests;
