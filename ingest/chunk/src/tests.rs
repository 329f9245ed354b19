use zhiku_parse::{Block, BlockKind, DocFormat, ParsedDocument};

use super::*;

/// Counts each CJK character and each run of other non-space characters as one token.
struct Words;

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303F | 0x4E00..=0x9FFF | 0xFF00..=0xFFEF)
}

impl TokenCounter for Words {
    fn count(&self, text: &str) -> usize {
        let mut n = 0;
        let mut in_word = false;
        for c in text.chars() {
            if is_cjk(c) {
                n += 1;
                in_word = false;
            } else if c.is_whitespace() {
                in_word = false;
            } else if !in_word {
                n += 1;
                in_word = true;
            }
        }
        n
    }
}

/// One token per character.
struct Chars;

impl TokenCounter for Chars {
    fn count(&self, text: &str) -> usize {
        text.chars().count()
    }
}

fn heading(level: u8, path: &[&str]) -> Block {
    Block {
        kind: BlockKind::Heading { level },
        text: path.last().copied().unwrap_or_default().to_owned(),
        heading_path: path.iter().map(|s| s.to_string()).collect(),
        page: None,
        ocr_confidence: None,
    }
}

fn block(kind: BlockKind, text: &str, path: &[&str]) -> Block {
    Block {
        kind,
        text: text.to_owned(),
        heading_path: path.iter().map(|s| s.to_string()).collect(),
        page: None,
        ocr_confidence: None,
    }
}

fn para(text: &str, path: &[&str]) -> Block {
    block(BlockKind::Paragraph, text, path)
}

fn doc(blocks: Vec<Block>) -> ParsedDocument {
    ParsedDocument {
        format: DocFormat::Markdown,
        title: None,
        blocks,
        ocr: Vec::new(),
    }
}

fn config(max_tokens: usize, overlap_tokens: usize) -> ChunkerConfig {
    ChunkerConfig {
        max_tokens,
        overlap_tokens,
    }
}

fn texts(chunks: &[Chunk]) -> Vec<&str> {
    chunks.iter().map(|c| c.text.as_str()).collect()
}

/// Invariants every chunking must satisfy.
fn check(chunks: &[Chunk], counter: &dyn TokenCounter, max: usize) {
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(!c.text.trim().is_empty(), "blank chunk {i}");
        assert_eq!(c.token_count, counter.count(&c.text));
        assert!(
            c.token_count <= max,
            "chunk {i} has {} tokens: {:?}",
            c.token_count,
            c.text
        );
    }
}

#[test]
fn default_config() {
    let c = ChunkerConfig::default();
    assert_eq!((c.max_tokens, c.overlap_tokens), (256, 32));
}

#[test]
fn headings_start_chunks_and_fill_heading_path() {
    let d = doc(vec![
        heading(1, &["Guide"]),
        para("Intro text.", &["Guide"]),
        heading(2, &["Guide", "Install"]),
        para("Step one.", &["Guide", "Install"]),
        block(BlockKind::ListItem, "An item.", &["Guide", "Install"]),
        heading(2, &["Guide", "Network"]),
        para("Ports.", &["Guide", "Network"]),
    ]);
    let chunks = chunk_document(&d, &Words, &ChunkerConfig::default());
    check(&chunks, &Words, 256);
    let got: Vec<(&str, Vec<String>)> = chunks
        .iter()
        .map(|c| (c.text.as_str(), c.heading_path.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("Intro text.", vec!["Guide".to_owned()]),
            (
                "Step one.\n\nAn item.",
                vec!["Guide".into(), "Install".into()]
            ),
            ("Ports.", vec!["Guide".into(), "Network".into()]),
        ]
    );
}

#[test]
fn heading_without_body_keeps_its_text() {
    let d = doc(vec![
        heading(1, &["Guide"]),
        heading(2, &["Guide", "Empty section"]),
        heading(2, &["Guide", "Filled"]),
        para("body", &["Guide", "Filled"]),
        heading(1, &["Trailing"]),
    ]);
    let chunks = chunk_document(&d, &Words, &ChunkerConfig::default());
    check(&chunks, &Words, 256);
    assert_eq!(texts(&chunks), ["Empty section", "body", "Trailing"]);
    assert_eq!(chunks[0].heading_path, ["Guide", "Empty section"]);
    assert_eq!(chunks[2].heading_path, ["Trailing"]);
}

#[test]
fn small_blocks_are_packed_within_budget() {
    let blocks = (0..10).map(|i| para(&format!("p{i} b c"), &[])).collect();
    let chunks = chunk_document(&doc(blocks), &Words, &config(10, 0));
    check(&chunks, &Words, 10);
    assert_eq!(
        texts(&chunks),
        [
            "p0 b c\n\np1 b c\n\np2 b c",
            "p3 b c\n\np4 b c\n\np5 b c",
            "p6 b c\n\np7 b c\n\np8 b c",
            "p9 b c",
        ]
    );
}

#[test]
fn english_sentences_split_at_sentence_ends() {
    let text = "One two three four. Five six seven eight! Nine ten eleven 3.14? \
                Thirteen fourteen fifteen sixteen.";
    let chunks = chunk_document(&doc(vec![para(text, &["S"])]), &Words, &config(9, 0));
    check(&chunks, &Words, 9);
    assert_eq!(
        texts(&chunks),
        [
            "One two three four. Five six seven eight!",
            "Nine ten eleven 3.14? Thirteen fourteen fifteen sixteen.",
        ]
    );
    assert!(chunks.iter().all(|c| c.heading_path == ["S"]));
}

#[test]
fn chinese_sentences_split_at_cjk_punctuation() {
    let text = "第一句话。第二句话！第三句话？第四句话。";
    let chunks = chunk_document(&doc(vec![para(text, &[])]), &Words, &config(10, 0));
    check(&chunks, &Words, 10);
    assert_eq!(
        texts(&chunks),
        ["第一句话。第二句话！", "第三句话？第四句话。"]
    );

    // Without sentence ends, the full-width semicolon is the fallback.
    let text = "甲乙丙丁；戊己庚辛；壬癸子丑";
    let chunks = chunk_document(&doc(vec![para(text, &[])]), &Words, &config(10, 0));
    check(&chunks, &Words, 10);
    assert_eq!(texts(&chunks), ["甲乙丙丁；戊己庚辛；", "壬癸子丑"]);
}

#[test]
fn overlap_repeats_whole_trailing_sentences_within_a_section() {
    let text = "A1 a a. B2 b b. C3 c c. D4 d d. E5 e e.";
    let d = doc(vec![
        heading(1, &["X"]),
        para(text, &["X"]),
        heading(1, &["Y"]),
        para("F6 f f. G7 g g. H8 h h. I9 i i.", &["Y"]),
    ]);
    let chunks = chunk_document(&d, &Words, &config(9, 3));
    check(&chunks, &Words, 9);
    assert_eq!(
        texts(&chunks),
        [
            "A1 a a. B2 b b. C3 c c.",
            "C3 c c. D4 d d. E5 e e.",
            // A new heading: no overlap from section X.
            "F6 f f. G7 g g. H8 h h.",
            "H8 h h. I9 i i.",
        ]
    );

    // Sentences longer than the overlap budget are not repeated at all.
    let chunks = chunk_document(&doc(vec![para(text, &[])]), &Words, &config(9, 2));
    check(&chunks, &Words, 9);
    assert_eq!(
        texts(&chunks),
        ["A1 a a. B2 b b. C3 c c.", "D4 d d. E5 e e."]
    );
}

#[test]
fn code_is_split_only_at_line_ends() {
    let lines: Vec<String> = (0..12).map(|i| format!("    let x{i} = {i};")).collect();
    let code = lines.join("\n");
    let d = doc(vec![block(BlockKind::Code, &code, &[])]);
    let chunks = chunk_document(&d, &Words, &config(10, 4));
    check(&chunks, &Words, 10);
    assert_eq!(chunks.len(), 6);
    // Whole lines, indentation kept, nothing repeated or lost.
    assert_eq!(texts(&chunks).join("\n"), code);
}

#[test]
fn table_parts_repeat_the_header_row() {
    let header = "Name | Port";
    let rows: Vec<String> = (0..7).map(|i| format!("svc{i} | {i}")).collect();
    let table = format!("{header}\n{}", rows.join("\n"));
    let d = doc(vec![block(BlockKind::Table, &table, &[])]);
    let chunks = chunk_document(&d, &Words, &config(10, 0));
    check(&chunks, &Words, 10);
    assert_eq!(chunks.len(), 4);
    let mut seen = Vec::new();
    for c in &chunks {
        let mut lines = c.text.lines();
        assert_eq!(lines.next(), Some(header));
        seen.extend(lines.map(str::to_owned));
    }
    assert_eq!(seen, rows);
}

#[test]
fn pages_start_new_chunks() {
    let mut blocks = vec![
        para("Page one text.", &[]),
        para("More page one.", &[]),
        para("Page two.", &[]),
    ];
    blocks[0].page = Some(1);
    blocks[1].page = Some(1);
    blocks[2].page = Some(2);
    let chunks = chunk_document(&doc(blocks), &Words, &ChunkerConfig::default());
    check(&chunks, &Words, 256);
    let got: Vec<(&str, Option<u32>)> = chunks.iter().map(|c| (c.text.as_str(), c.page)).collect();
    assert_eq!(
        got,
        [
            ("Page one text.\n\nMore page one.", Some(1)),
            ("Page two.", Some(2))
        ]
    );
}

#[test]
fn unbroken_text_falls_back_to_characters() {
    let text = format!("{}{}", "x".repeat(250), "中文".repeat(50));
    let chunks = chunk_document(&doc(vec![para(&text, &[])]), &Chars, &config(64, 8));
    check(&chunks, &Chars, 64);
    assert_eq!(texts(&chunks).concat(), text);

    // A zero budget still makes progress, one character at a time.
    let chunks = chunk_document(&doc(vec![para("abc", &[])]), &Chars, &config(0, 0));
    assert_eq!(texts(&chunks), ["a", "b", "c"]);
}

/// Deterministic pseudo-random numbers for the generated document.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn long_generated_document_respects_budget_and_loses_nothing() {
    let words = [
        "alpha", "beta", "gamma", "delta", "知识", "库", "检索", "x=1;",
    ];
    let ends = [". ", "! ", "? ", "。", "！", "？", "；", "\n", " ", ""];
    let mut rng = Lcg(7);
    let mut blocks = Vec::new();
    for section in 0..6 {
        let path = [format!("Section {section}")];
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        blocks.push(heading(1, &path));
        for b in 0..8 {
            let mut text = String::new();
            let len = 1 + rng.next(400);
            for _ in 0..len {
                text.push_str(words[rng.next(words.len())]);
                text.push_str(ends[rng.next(ends.len())]);
            }
            let kind = match b % 4 {
                0 => BlockKind::Code,
                1 => BlockKind::ListItem,
                _ => BlockKind::Paragraph,
            };
            blocks.push(block(kind, &text, &path));
        }
        let table: Vec<String> = (0..60).map(|r| format!("c{r} | v{r} | 值{r}")).collect();
        blocks.push(block(BlockKind::Table, &table.join("\n"), &path));
    }
    let d = doc(blocks);
    for (max, overlap) in [(40, 8), (7, 3), (256, 32)] {
        let chunks = chunk_document(&d, &Words, &config(max, overlap));
        check(&chunks, &Words, max);
        let all: String = texts(&chunks).join(" ");
        // Headings live in heading_path, everything else must appear in some chunk.
        for b in d
            .blocks
            .iter()
            .filter(|b| !matches!(b.kind, BlockKind::Heading { .. }))
        {
            for w in b.text.split(|c: char| c.is_whitespace() || is_cjk(c)) {
                assert!(all.contains(w), "lost {w:?} at max {max}");
            }
        }
        let sections: Vec<&str> = chunks.iter().map(|c| c.heading_path[0].as_str()).collect();
        assert!(sections.is_sorted(), "chunks out of document order");
    }
}

#[test]
fn chunks_a_parsed_markdown_document() {
    let md = "# Title\n\nIntro.\n\n## Part\n\nBody one.\n\nBody two.\n";
    let parsed = zhiku_parse::parse(DocFormat::Markdown, md.as_bytes()).unwrap();
    let chunks = chunk_document(&parsed, &Words, &ChunkerConfig::default());
    assert_eq!(texts(&chunks), ["Intro.", "Body one.\n\nBody two."]);
    assert_eq!(chunks[1].heading_path, ["Title", "Part"]);
}

/// Wraps a counter and records how many bytes it was asked to tokenize.
struct Metered<'a> {
    inner: &'a dyn TokenCounter,
    bytes: std::cell::Cell<usize>,
}

impl TokenCounter for Metered<'_> {
    fn count(&self, text: &str) -> usize {
        self.bytes.set(self.bytes.get() + text.len());
        self.inner.count(text)
    }
}

#[test]
fn long_unbroken_lines_cost_a_bounded_multiple_of_their_length() {
    // Latin words without sentence ends, and CJK without any punctuation or spaces: the
    // chunker must cut them with tokenizer work proportional to the text, not quadratic.
    let latin: String = (0..40_000)
        .map(|i| ["alpha ", "beta ", "gamma ", "delta "][i % 4])
        .collect();
    let cjk: String = (0..60_000u32)
        .map(|i| char::from_u32(0x4E00 + (i * 7919) % 20_000).unwrap())
        .collect();
    for text in [latin, cjk] {
        let doc = ParsedDocument {
            format: DocFormat::Text,
            title: None,
            blocks: vec![Block {
                kind: BlockKind::Paragraph,
                text: text.clone(),
                heading_path: vec![],
                page: None,
                ocr_confidence: None,
            }],
            ocr: Vec::new(),
        };
        let meter = Metered {
            inner: &Words,
            bytes: std::cell::Cell::new(0),
        };
        let chunks = chunk_document(&doc, &meter, &ChunkerConfig::default());
        assert!(chunks.len() > 100);
        assert!(chunks.iter().all(|c| c.token_count <= 256));
        let ratio = meter.bytes.get() as f64 / text.len() as f64;
        assert!(ratio < 8.0, "tokenized {ratio:.1}x the text");
    }
}

#[test]
fn ocr_text_and_own_text_never_share_a_chunk() {
    let ocr = |text: &str, confidence: f32| Block {
        ocr_confidence: Some(confidence),
        ..para(text, &["H"])
    };
    let blocks = vec![
        para("typed before", &["H"]),
        ocr("scanned one", 90.0),
        ocr("scanned two", 70.0),
        para("typed after", &["H"]),
    ];
    let chunks = chunk_document(&doc(blocks), &Chars, &config(1000, 0));
    let got: Vec<(&str, Option<f32>)> = chunks
        .iter()
        .map(|c| (c.text.as_str(), c.ocr_confidence))
        .collect();
    assert_eq!(
        got,
        [
            ("typed before", None),
            ("scanned one\n\nscanned two", Some(70.0)),
            ("typed after", None),
        ]
    );
}
