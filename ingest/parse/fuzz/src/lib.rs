//! Fuzzing of the parsers on the stable toolchain (cargo-fuzz needs nightly).
//!
//! Each [`Target`] is one parser, reached through the file name that routes detection to
//! it (or OCR's image reading, which runs in the same workers), with a seed corpus of valid samples, the hostile files that once killed the
//! service, and a dictionary of the format's tokens. [`fuzz`] mutates the corpus for a
//! time budget and parses every input in a sandboxed worker (`zhiku-sandbox`), so a crash,
//! a hang or runaway memory ends the worker, is classified, and the input is kept. An
//! input whose outcome looks new (a new error code, or a new size class of result) joins
//! the corpus: crude feedback, without coverage instrumentation.
//!
//! The mutation sequence depends only on the seed and on the outcomes, so a run with the
//! same seed tries the same inputs in the same order; a shorter budget tries a prefix.

#![warn(missing_docs)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use zhiku_ocr::{OcrConfig, Page};
use zhiku_parse::ParseOptions;
use zhiku_sandbox::ParserPool;

/// Inputs are kept at most this long: bigger ones only slow the search down.
const MAX_INPUT: usize = 256 << 10;

/// Corpus entries kept per target.
const MAX_CORPUS: usize = 512;

/// One parser to fuzz.
pub struct Target {
    /// Short name, used for the test and the saved inputs.
    pub name: &'static str,
    /// The file name inputs are parsed under: its extension routes detection.
    pub file_name: &'static str,
    /// Valid and hostile samples to start from.
    pub seeds: Vec<Vec<u8>>,
    /// Tokens of the format, inserted and repeated by the mutator.
    pub dictionary: &'static [&'static [u8]],
    /// Makes a file of a (mutated) input: the identity, or for DOCX the zipping of
    /// `word/document.xml`, so that mutations reach the XML rather than break the archive.
    pub wrap: fn(&[u8]) -> Vec<u8>,
    /// What the worker does with the file.
    pub reads: Reads,
}

/// The worker's task for a target's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Format detection and parsing, as for every upload.
    Parse,
    /// OCR of an image file: its header and pages checked, then the first two pages cut
    /// out and read by Tesseract, as for an uploaded image.
    Ocr,
}

/// OCR as the image target runs it: English only (faster to load), and a pixel limit low
/// enough that mutated dimensions are refused from the header rather than read for
/// minutes.
fn fuzz_ocr() -> OcrConfig {
    OcrConfig {
        languages: "eng".into(),
        max_pages: 8,
        max_image_pixels: 4_000_000,
        page_timeout: Duration::from_secs(60),
        ..OcrConfig::default()
    }
}

fn identity(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

/// Every parser: plain text, Markdown, HTML, CSV, TSV, DOCX, PDF, content sniffing under
/// a name without an extension, and OCR's reading of image files.
pub fn targets() -> Vec<Target> {
    let hostile = zhiku_e2e::hostile::all();
    let hostile_named = |ext: &str| -> Vec<Vec<u8>> {
        hostile
            .iter()
            .filter(|h| h.name.ends_with(ext))
            .map(|h| h.bytes.clone())
            .collect()
    };
    let text = vec![
        b"Plain text.\n\nA second paragraph\nwrapped.".to_vec(),
        "中文段落。第二句！\n\n第二段".as_bytes().to_vec(),
        // GBK and UTF-16 with a BOM.
        vec![0xd6, 0xd0, 0xce, 0xc4, 0x0a, 0xb2, 0xe2, 0xca, 0xd4],
        vec![0xff, 0xfe, b'h', 0, b'i', 0, b'\n', 0],
    ];
    let markdown = vec![
        b"# Title\n\nText *em* **strong** `code`.\n\n## Sub\n\n- a\n  - b\n1. c\n\n> quote\n> > nested\n\n```rust\nfn x() {}\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n".to_vec(),
        "# 标题\n\n正文 [链接](http://x) ![图](y.png)\n\n---\n".as_bytes().to_vec(),
    ];
    let mut html = vec![
        b"<html><head><title>T</title><meta charset=\"utf-8\"></head><body><nav>menu</nav><h1>Head</h1><p>Text <b>bold</b><br>line</p><ul><li>a<ul><li>b</li></ul></li></ul><table><thead><tr><th>x</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table><pre>code\n  here</pre><script>x()</script></body></html>".to_vec(),
        "<meta charset=gbk><p>中文</p>".as_bytes().to_vec(),
    ];
    html.push(zhiku_e2e::hostile::deep_html(2_000));
    let docx_seeds = vec![
        document_xml(
            "<w:p><w:pPr><w:pStyle w:val=\"Heading1\"/></w:pPr><w:r><w:t>Head</w:t></w:r></w:p><w:p><w:r><w:t>Body</w:t><w:br/><w:tab/><w:t>more</w:t></w:r></w:p><w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell</w:t></w:r></w:p></w:tc></w:tr></w:tbl>",
        ),
        document_xml(&format!(
            "{}{}",
            "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>t</w:t></w:r></w:p>".repeat(20),
            "</w:tc></w:tr></w:tbl>".repeat(20)
        )),
    ];
    let mut pdf = vec![
        zhiku_e2e::simple_pdf(&["First page\nwith two lines", "Second page"]),
        zhiku_e2e::pdf(&[zhiku_e2e::PdfPage::Image {
            width: 2,
            height: 2,
            bits: 8,
            filter: None,
            data: &[0, 255, 255, 0],
        }]),
    ];
    pdf.extend(hostile_named(".pdf"));
    let mut sniff = vec![b"%PDF-1.4\n".to_vec(), b"PK\x03\x04".to_vec()];
    sniff.extend(text.iter().cloned());
    sniff.push(html[0].clone());
    vec![
        Target {
            name: "text",
            file_name: "a.txt",
            seeds: text,
            dictionary: &[b"\n", b"\n\n", b"\r\n", b"\0", b"\xef\xbb\xbf", b"\xff\xfe", b"\xe3\x80\x82"],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "markdown",
            file_name: "a.md",
            seeds: markdown,
            dictionary: &[
                b"# ", b"> ", b"- ", b"1. ", b"```", b"|", b"---", b"\n", b"  ", b"<div>", b"[x]: y",
                b"*", b"_", b"`", b"![",
            ],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "html",
            file_name: "a.html",
            seeds: html,
            dictionary: &[
                b"<div>", b"</div>", b"<table>", b"<tr>", b"<td>", b"<li>", b"<ul>", b"<pre>",
                b"<h1>", b"<br>", b"<script>", b"<!--", b"-->", b"&amp;", b"&#x4E2D;", b"<meta charset=big5>",
            ],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "csv",
            file_name: "a.csv",
            seeds: vec![
                b"name,port\nhttp,80\n\"quoted, comma\",\"multi\nline\"\n".to_vec(),
                "名称;端口\n网站;80\n".as_bytes().to_vec(),
            ],
            dictionary: &[b",", b";", b"|", b"\"", b"\n", b"\r\n", b"\t"],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "tsv",
            file_name: "a.tsv",
            seeds: vec![b"name\tport\nhttp\t80\nssh\t22\n".to_vec()],
            dictionary: &[b"\t", b"\"", b"\n", b","],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "docx",
            file_name: "a.docx",
            seeds: docx_seeds,
            dictionary: &[
                b"<w:p>", b"</w:p>", b"<w:r>", b"<w:t>", b"</w:t>", b"<w:tbl><w:tr><w:tc>",
                b"</w:tc></w:tr></w:tbl>", b"<w:br/>", b"<w:tab/>", b"<w:pStyle w:val=\"Heading1\"/>",
                b"<w:numPr><w:ilvl w:val=\"0\"/><w:numId w:val=\"1\"/></w:numPr>", b"&amp;", b"<![CDATA[",
            ],
            wrap: docx,
            reads: Reads::Parse,
        },
        Target {
            name: "pdf",
            file_name: "a.pdf",
            seeds: pdf,
            dictionary: &[
                b" obj", b"endobj", b"stream\n", b"\nendstream", b"/Filter /FlateDecode",
                b" 0 R", b"<<", b">>", b"[", b"]", b"/Type /XObject /Subtype /Form", b"/X Do",
                b"xref", b"trailer", b"%%EOF", b"BT (x) Tj ET",
            ],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "pdf-content",
            file_name: "a.pdf",
            seeds: vec![
                b"BT /F1 12 Tf 72 720 Td 14 TL (Hello) Tj T* (World) ' ET q 1 0 0 1 0 0 cm /X Do Q /Im Do".to_vec(),
                b"BT /F1 12 Tf [(Kern) -120 (ed)] TJ 0 -14 Td <48656c6c6f> Tj ET".to_vec(),
            ],
            dictionary: &[
                b"BT ", b" ET", b"/F1 12 Tf ", b"(x) Tj ", b"[(a) 10 (b)] TJ ", b"T* ", b"q ", b" Q",
                b"/X Do ", b"/Im Do ", b"1 0 0 1 0 0 cm ", b"0 -14 Td ", b"<00ff> Tj ", b"BI /W 1 /H 1 ID x EI ",
            ],
            wrap: content_pdf,
            reads: Reads::Parse,
        },
        Target {
            name: "sniff",
            file_name: "upload",
            seeds: sniff,
            dictionary: &[b"%PDF-", b"PK\x03\x04", b"<html>", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\0"],
            wrap: identity,
            reads: Reads::Parse,
        },
        Target {
            name: "image",
            file_name: "a.png",
            seeds: image_seeds(),
            dictionary: &[
                b"\x89PNG\r\n\x1a\n", b"IHDR", b"IDAT", b"IEND", b"II*\0", b"MM\0*", b"\xff\xd8\xff\xe0",
                b"\xff\xc0\0\x11\x08", b"RIFF", b"WEBPVP8 ", b"BM", b"\0\0\0\0", b"\xff\xff\xff\x7f",
                b"\x01\x01\x03\0\x01\0\0\0",
            ],
            wrap: identity,
            reads: Reads::Ocr,
        },
    ]
}

/// Small scans in every image format OCR reads (a two-page TIFF among them), rendered by
/// `tests/fixtures/render_scan.py`, and a PNG whose header claims 100,000 × 100,000 pixels.
fn image_seeds() -> Vec<Vec<u8>> {
    let pages: &[&[&str]] = &[&["Scan 1 扫描"], &["Page 2"]];
    let mut seeds: Vec<Vec<u8>> = ["PNG", "JPEG", "TIFF", "WEBP", "BMP"]
        .iter()
        .map(|format| {
            zhiku_e2e::render(&serde_json::json!({
                "pages": pages, "format": format, "size": 16, "width": 160
            }))
        })
        .collect();
    let mut bomb = seeds[0].clone();
    // IHDR's width and height follow the signature (8), the length (4) and the type (4).
    bomb[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    seeds.push(bomb);
    seeds
}

/// A one-page PDF whose page content is `content`, with a font `/F1`, a form `/X` (which
/// draws `/Y`, an empty form) and a tiny image `/Im`: mutations of the content reach the
/// extractor's interpreter, not its file reader.
fn content_pdf(content: &[u8]) -> Vec<u8> {
    let stream = zhiku_e2e::pdf_stream;
    let objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> /XObject << /X 5 0 R /Im 7 0 R >> >> /Contents 8 0 R >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
        stream(
            "/Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << /Y 6 0 R >> /Font << /F1 4 0 R >> >>",
            b"BT /F1 9 Tf (in form) Tj ET /Y Do",
        ),
        stream("/Type /XObject /Subtype /Form /BBox [0 0 1 1]", b""),
        stream(
            "/Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray /BitsPerComponent 8",
            &[128],
        ),
        stream("", content),
    ];
    zhiku_e2e::pdf_from_objects(&objects)
}

/// `word/document.xml` with `body` as its body.
fn document_xml(body: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    )
    .into_bytes()
}

/// A DOCX file whose `word/document.xml` is `document`.
fn docx(document: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in [
        ("[Content_Types].xml", &b"<Types/>"[..]),
        ("word/document.xml", document),
    ] {
        zip.start_file(name, options).expect("zip in memory");
        zip.write_all(content).expect("zip in memory");
    }
    zip.finish().expect("zip in memory").into_inner()
}

/// What one fuzzing run did.
pub struct Report {
    /// Inputs parsed.
    pub execs: u64,
    /// Corpus entries at the end (seeds included).
    pub corpus: usize,
    /// Files (wrapped inputs) that killed or stalled the worker, with the reason; the run
    /// stops at the first.
    pub failures: Vec<(Vec<u8>, String)>,
}

/// Fuzzes `target` in `pool`'s workers for `budget`, starting the mutations from `seed`.
pub fn fuzz(target: &Target, pool: &ParserPool, budget: Duration, seed: u64) -> Report {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut corpus: Vec<Vec<u8>> = target.seeds.clone();
    let mut seen = HashSet::new();
    let mut report = Report {
        execs: 0,
        corpus: 0,
        failures: Vec::new(),
    };
    let started = Instant::now();
    // The seeds first, as they are; then mutants until the time is up.
    let mut pending: Vec<Vec<u8>> = corpus.iter().rev().cloned().collect();
    loop {
        let input = match pending.pop() {
            Some(input) => input,
            None if started.elapsed() >= budget => break,
            None => {
                let parent = &corpus[rng.usize(..corpus.len())];
                let other = &corpus[rng.usize(..corpus.len())];
                let mut child = parent.clone();
                for _ in 0..rng.usize(1..=4) {
                    mutate(&mut child, other, target.dictionary, &mut rng);
                }
                child.truncate(MAX_INPUT);
                child
            }
        };
        report.execs += 1;
        match check(pool, target, &(target.wrap)(&input)) {
            Ok(signature) => {
                if seen.insert(signature) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(reason) => {
                report.failures.push(((target.wrap)(&input), reason));
                break;
            }
        }
    }
    report.corpus = corpus.len();
    report
}

/// A coarse fingerprint of what the worker made of `input` (a wrapped file), or why the
/// worker failed: a crash, a hang or runaway memory.
pub fn check(pool: &ParserPool, target: &Target, input: &[u8]) -> Result<String, String> {
    let died = |e: zhiku_sandbox::SandboxError| format!("{} ({e})", e.code());
    if target.reads == Reads::Ocr {
        let config = fuzz_ocr();
        let pages = match pool
            .image_pages(target.file_name, input, &config)
            .map_err(died)?
        {
            Ok(pages) => pages,
            Err(e) => return Ok(format!("error {}", e.code())),
        };
        let mut signature = format!("pages {}", pages.min(3));
        for page in 1..=pages.min(2) {
            let read = pool
                .recognize(target.file_name, &Page::Image { page }, input, &config)
                .map_err(died)?;
            signature += &match read {
                Ok(read) => format!(" words~2^{}", usize::BITS - read.words.leading_zeros()),
                Err(e) => format!(" {}", e.code()),
            };
        }
        return Ok(signature);
    }
    let options = ParseOptions { docx_images: true };
    match pool.parse(target.file_name, None, input, &options) {
        Ok(Ok(doc)) => {
            let kinds: HashSet<String> =
                doc.blocks.iter().map(|b| format!("{:?}", b.kind)).collect();
            let mut kinds: Vec<String> = kinds.into_iter().collect();
            kinds.sort();
            let chars: usize = doc.blocks.iter().map(|b| b.text.len()).sum();
            Ok(format!(
                "{} blocks~2^{} chars~2^{} ocr~{} title:{} {}",
                doc.format.mime(),
                usize::BITS - doc.blocks.len().leading_zeros(),
                usize::BITS - chars.leading_zeros(),
                doc.ocr.len().min(3),
                doc.title.is_some(),
                kinds.join(",")
            ))
        }
        Ok(Err(e)) => Ok(format!("error {}", e.code())),
        Err(e) => Err(died(e)),
    }
}

/// One random change: flipped bits, random bytes, a deleted, duplicated or repeated span
/// (repetition builds deep nesting), a dictionary token, a splice with another input, or
/// a truncation.
pub fn mutate(bytes: &mut Vec<u8>, other: &[u8], dictionary: &[&[u8]], rng: &mut fastrand::Rng) {
    let at = |rng: &mut fastrand::Rng, len: usize| rng.usize(..=len);
    match rng.u8(..9) {
        0 if !bytes.is_empty() => {
            let i = rng.usize(..bytes.len());
            bytes[i] ^= 1 << rng.u8(..8);
        }
        1 if !bytes.is_empty() => {
            let i = rng.usize(..bytes.len());
            bytes[i] = rng.u8(..);
        }
        2 if !bytes.is_empty() => {
            let start = rng.usize(..bytes.len());
            let end = (start + rng.usize(1..=64)).min(bytes.len());
            bytes.drain(start..end);
        }
        3 if !bytes.is_empty() => {
            let start = rng.usize(..bytes.len());
            let end = (start + rng.usize(1..=256)).min(bytes.len());
            let span = bytes[start..end].to_vec();
            let to = at(rng, bytes.len());
            bytes.splice(to..to, span);
        }
        4 if !bytes.is_empty() => {
            // A span repeated many times: nesting, long lines, big tables.
            let start = rng.usize(..bytes.len());
            let end = (start + rng.usize(1..=32)).min(bytes.len());
            let span = bytes[start..end].repeat(rng.usize(2..=2000));
            bytes.splice(end..end, span);
        }
        5 | 6 if !dictionary.is_empty() => {
            let token = dictionary[rng.usize(..dictionary.len())];
            let times = if rng.bool() { 1 } else { rng.usize(1..=500) };
            let to = at(rng, bytes.len());
            bytes.splice(to..to, token.repeat(times));
        }
        7 if !other.is_empty() => {
            let cut = at(rng, bytes.len());
            let from = rng.usize(..other.len());
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[from..]);
        }
        8 if !bytes.is_empty() => bytes.truncate(rng.usize(..bytes.len())),
        _ => {
            let to = at(rng, bytes.len());
            let random: Vec<u8> = (0..rng.usize(1..=16)).map(|_| rng.u8(..)).collect();
            bytes.splice(to..to, random);
        }
    }
}
