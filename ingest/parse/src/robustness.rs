//! Deterministic mutation testing: damaged variants of a valid sample of every format must
//! come back as `Ok` or `Err`, never as a panic or a hang. A cheap, always-on complement to
//! the cargo-fuzz target in `fuzz/`.

use crate::test_support::{
    SAMPLE_BODY, SAMPLE_STYLES, XorShift, make_docx, make_zip, sample_docx, two_page_pdf,
};
use crate::{DocFormat, detect_format, parse};

const MUTATIONS: usize = 300;

/// One random damage: byte flips, a truncation, an insertion, a deletion or a duplicated
/// span, the kinds of corruption real uploads and fuzzers produce.
fn mutate(sample: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut bytes = sample.to_vec();
    if bytes.is_empty() {
        return vec![rng.byte()];
    }
    match rng.below(5) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        2 => {
            let at = rng.below(bytes.len() + 1);
            let insert: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.byte()).collect();
            bytes.splice(at..at, insert);
        }
        3 => {
            let at = rng.below(bytes.len());
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            bytes.drain(at..end);
        }
        _ => {
            let at = rng.below(bytes.len());
            let end = (at + 1 + rng.below(256)).min(bytes.len());
            let span = bytes[at..end].to_vec();
            let to = rng.below(bytes.len() + 1);
            bytes.splice(to..to, span);
        }
    }
    bytes
}

/// Runs detection and parsing on every mutation. Parsing as the intended format too
/// matters: a damaged magic number would otherwise route the bytes to another parser.
fn run(name: &str, format: DocFormat, sample: &[u8], seed: u64) {
    assert!(
        parse(format, sample).is_ok(),
        "{name}: the sample itself must parse"
    );
    let mut rng = XorShift::new(seed);
    for _ in 0..MUTATIONS {
        let bytes = mutate(sample, &mut rng);
        if let Ok(detected) = detect_format(name, None, &bytes) {
            let _ = parse(detected, &bytes);
        }
        if detect_format(name, None, &bytes).ok() != Some(format) {
            let _ = parse(format, &bytes);
        }
    }
}

const MARKDOWN: &str = "---\ntitle: x\n---\n# 标题\n\nText *em* `code` [l](u)\n\n- a\n  - b\n\n| h | i |\n|---|---|\n| 1 | 2 |\n\n```rs\nfn x() {}\n```\n\n> quote\n\n<div>html</div>\n";
const HTML: &str = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>T</title></head><body><h1>H</h1><p>a<br>b</p><ul><li>x<ul><li>y</li></ul></li></ul><table><tr><th>h</th></tr><tr><td>1<table><tr><td>n</td></tr></table></td></tr></table><pre>code</pre></body></html>";
const CSV: &str = "name,comment,port\nhttp,\"web, plain\",80\nssh,\"multi\nline\",22\n中文,值,1\n";

#[test]
fn text_formats_survive_mutations() {
    run(
        "a.txt",
        DocFormat::Text,
        "plain text\n\n第二段，中文。\r\nline".as_bytes(),
        1,
    );
    let (gbk, _, _) =
        encoding_rs::GBK.encode("国标码编码的中文段落，用来测试编码识别在损坏输入下的表现。");
    run("gbk.txt", DocFormat::Text, &gbk, 2);
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(
        "UTF-16 文本\n第二行"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    run("utf16.txt", DocFormat::Text, &utf16, 3);
    run("a.md", DocFormat::Markdown, MARKDOWN.as_bytes(), 4);
    run("a.html", DocFormat::Html, HTML.as_bytes(), 5);
    run("a.csv", DocFormat::Csv, CSV.as_bytes(), 6);
    run(
        "a.tsv",
        DocFormat::Tsv,
        CSV.replace(',', "\t").as_bytes(),
        7,
    );
}

#[test]
fn docx_survives_mutations() {
    // Damage to the archive mostly ends in the zip reader (CRC, headers)...
    run("a.docx", DocFormat::Docx, &sample_docx(), 8);
    // ...so the XML parts are also damaged before zipping, to reach the XML readers.
    let document = String::from_utf8(make_docx_xml()).unwrap();
    let mut rng = XorShift::new(9);
    for i in 0..MUTATIONS {
        let xml = mutate(document.as_bytes(), &mut rng);
        let styles = mutate(SAMPLE_STYLES.as_bytes(), &mut rng);
        let (doc_xml, styles_xml): (&[u8], &[u8]) = if i % 2 == 0 {
            (&xml, SAMPLE_STYLES.as_bytes())
        } else {
            (document.as_bytes(), &styles)
        };
        let bytes = make_zip(&[
            ("word/document.xml", doc_xml),
            ("word/styles.xml", styles_xml),
        ]);
        let _ = parse(DocFormat::Docx, &bytes);
    }
}

/// The sample's `word/document.xml`, as [`make_docx`] writes it.
fn make_docx_xml() -> Vec<u8> {
    let archive = make_docx(SAMPLE_BODY, None);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let mut entry = zip.by_name("word/document.xml").unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut out).unwrap();
    out
}

#[test]
fn pdf_survives_mutations() {
    run("a.pdf", DocFormat::Pdf, &two_page_pdf(), 10);
}
