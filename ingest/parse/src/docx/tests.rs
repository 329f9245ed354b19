use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::*;
use crate::test_support::{make_docx, make_zip, sample_docx, xorshift_bytes};
use crate::{DocFormat, detect_format, parse};

type Row = (BlockKind, String, String);

fn rows(blocks: &[Block]) -> Vec<Row> {
    blocks
        .iter()
        .map(|b| (b.kind, b.text.clone(), b.heading_path.join(" > ")))
        .collect()
}

fn row(kind: BlockKind, text: &str, path: &str) -> Row {
    (kind, text.to_owned(), path.to_owned())
}

#[test]
fn structure_headings_lists_and_tables() {
    let bytes = sample_docx();
    assert_eq!(
        detect_format("a.docx", None, &bytes).unwrap(),
        DocFormat::Docx
    );
    let doc = parse(DocFormat::Docx, &bytes).unwrap();
    assert_eq!(doc.format, DocFormat::Docx);
    assert_eq!(doc.title.as_deref(), Some("Zhiku manual"));
    let h = |level| BlockKind::Heading { level };
    let i = "Install";
    let n = "Install > 网络配置";
    let d = "Install > 网络配置 > Deep";
    let expected = vec![
        row(h(1), "Zhiku manual", "Zhiku manual"),
        row(h(1), "Install", i),
        row(
            BlockKind::Paragraph,
            "Run the installer & reboot now\nnext line",
            i,
        ),
        row(h(2), "网络配置", n),
        row(BlockKind::ListItem, "first item", n),
        row(BlockKind::ListItem, "second item", n),
        row(BlockKind::Paragraph, "numbering removed", n),
        row(BlockKind::Table, "Name | Port\nhttp | 80 8080 alt", n),
        row(h(3), "Deep", d),
        row(BlockKind::Paragraph, "Quote 中<x>", d),
        row(BlockKind::Paragraph, "Body text", d),
        row(h(1), "使用", "使用"),
        row(BlockKind::Paragraph, "Boxed", "使用"),
        row(BlockKind::Paragraph, "Anchor", "使用"),
    ];
    assert_eq!(rows(&doc.blocks), expected);
    assert!(doc.blocks.iter().all(|b| b.page.is_none()));
}

#[test]
fn style_ids_suffice_without_styles_xml() {
    let body = r#"<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Top</w:t></w:r></w:p>
        <w:p><w:pPr><w:pStyle w:val="heading2"/></w:pPr><w:r><w:t>Sub</w:t></w:r></w:p>
        <w:p><w:pPr><w:outlineLvl w:val="3"/></w:pPr><w:r><w:t>Outlined</w:t></w:r></w:p>
        <w:p><w:pPr><w:pStyle w:val="1"/></w:pPr><w:r><w:t>Unknown id</w:t></w:r></w:p>"#;
    let doc = parse(DocFormat::Docx, &make_docx(body, None)).unwrap();
    let h = |level| BlockKind::Heading { level };
    assert_eq!(
        rows(&doc.blocks),
        vec![
            row(h(1), "Top", "Top"),
            row(h(2), "Sub", "Top > Sub"),
            row(h(4), "Outlined", "Top > Sub > Outlined"),
            row(BlockKind::Paragraph, "Unknown id", "Top > Sub > Outlined"),
        ]
    );
    // No Title style: the first level-1 heading is the title.
    assert_eq!(doc.title.as_deref(), Some("Top"));
}

#[test]
fn broken_archives_are_invalid_docx() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (xorshift_bytes(2000, 5), "not a ZIP archive"),
        (b"PK\x03\x04 truncated".to_vec(), "not a valid ZIP archive"),
        (
            make_zip(&[("word/other.xml", b"<x/>")]),
            "has no word/document.xml",
        ),
        (
            make_docx("<w:p><w:r><w:t>unclosed</w:r></w:p>", None),
            "word/document.xml is malformed",
        ),
        (
            make_zip(&[(
                "word/document.xml",
                b"<w:document>\xff\xfe\xfd</w:document>",
            )]),
            "not UTF-8",
        ),
    ];
    for (bytes, want) in cases {
        let err = parse(DocFormat::Docx, &bytes).unwrap_err();
        assert_eq!(err.code(), "invalid_docx", "{err}");
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
    let docx = sample_docx();
    let err = parse(DocFormat::Docx, &docx[..docx.len() / 2]).unwrap_err();
    assert_eq!(err.code(), "invalid_docx", "{err}");
    // A document with no text is empty, not broken.
    let err = parse(
        DocFormat::Docx,
        &make_docx("<w:p/><w:p><w:r><w:t> </w:t></w:r></w:p>", None),
    )
    .unwrap_err();
    assert!(matches!(err, ParseError::Empty), "{err:?}");
}

#[test]
fn malformed_styles_only_cost_headings() {
    let body = r#"<w:p><w:pPr><w:pStyle w:val="1"/></w:pPr><w:r><w:t>Heading?</w:t></w:r></w:p>"#;
    let bytes = make_docx(
        body,
        Some("<w:style w:styleId=\"1\"><w:name w:val=\"heading 1\"/>"),
    );
    let doc = parse(DocFormat::Docx, &bytes).unwrap();
    assert_eq!(
        rows(&doc.blocks),
        vec![row(BlockKind::Paragraph, "Heading?", "")]
    );
}

/// An archive whose `name` entry inflates to `size` spaces, written in 1 MiB pieces so
/// the test never holds the inflated data either.
fn bomb(name: &str, size: usize) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1));
    if name != DOCUMENT {
        zip.start_file(DOCUMENT, options).unwrap();
        zip.write_all(b"<w:document><w:body/></w:document>")
            .unwrap();
    }
    zip.start_file(name, options).unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..size >> 20 {
        zip.write_all(&chunk).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn zip_bombs_are_refused() {
    let bytes = bomb(DOCUMENT, 200 << 20);
    assert!(bytes.len() < 2 << 20, "{} bytes", bytes.len());
    assert_eq!(
        detect_format("bomb.docx", None, &bytes).unwrap(),
        DocFormat::Docx
    );
    let err = parse(DocFormat::Docx, &bytes).unwrap_err();
    assert_eq!(err.code(), "invalid_docx");
    assert!(
        err.to_string()
            .contains("word/document.xml decompresses to more than 64 MiB (zip bomb?)"),
        "{err}"
    );
    let err = parse(DocFormat::Docx, &bomb(STYLES, 9 << 20)).unwrap_err();
    assert!(
        err.to_string()
            .contains("word/styles.xml decompresses to more than 8 MiB"),
        "{err}"
    );
}

#[test]
fn too_many_entries_are_refused() {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for i in 0..=MAX_ENTRIES {
        zip.start_file(format!("f{i}"), options).unwrap();
    }
    zip.start_file(DOCUMENT, options).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let err = parse(DocFormat::Docx, &bytes).unwrap_err();
    assert!(
        err.to_string().contains("entries, more than 10000"),
        "{err}"
    );
}

#[test]
fn deeply_nested_tables_stay_linear() {
    let depth = 20_000;
    let mut body = String::new();
    for i in 0..depth {
        body.push_str(&format!(
            "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>c{i}</w:t></w:r></w:p>"
        ));
    }
    for _ in 0..depth {
        body.push_str("</w:tc></w:tr></w:tbl>");
    }
    let doc = parse(DocFormat::Docx, &make_docx(&body, None)).unwrap();
    assert_eq!(doc.blocks.len(), 1);
    let text = &doc.blocks[0].text;
    assert!(text.starts_with("c0 c1 c2"), "{}", &text[..50]);
    assert!(text.ends_with(&format!("c{}", depth - 1)));
    assert_eq!(text.split(' ').count(), depth);
}

/// A DOCX showing `pictures` (relationship id, part name, bytes) after paragraphs.
fn docx_with_pictures(body: &str, pictures: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let document = format!(
        r#"<w:document xmlns:w="w" xmlns:a="a" xmlns:r="r" xmlns:v="v"><w:body>{body}</w:body></w:document>"#
    );
    let rels: String = pictures
        .iter()
        .map(|(id, part, _)| {
            let target = part
                .strip_prefix("word/")
                .map_or(format!("/{part}"), str::to_owned);
            format!(r#"<Relationship Id="{id}" Type="image" Target="{target}"/>"#)
        })
        .collect();
    let rels = format!(
        r#"<Relationships xmlns="r">{rels}<Relationship Id="rIdX" Target="http://example.com/a.png" TargetMode="External"/></Relationships>"#
    );
    let mut entries: Vec<(&str, &[u8])> = vec![
        (DOCUMENT, document.as_bytes()),
        (RELATIONSHIPS, rels.as_bytes()),
    ];
    entries.extend(pictures.iter().map(|(_, part, bytes)| (*part, *bytes)));
    make_zip(&entries)
}

#[test]
fn embedded_pictures_become_ocr_tasks_after_their_paragraph() {
    let png: &[u8] = b"\x89PNG\r\n\x1a\nrest";
    let jpeg: &[u8] = b"\xFF\xD8\xFFrest";
    let body = r#"<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Scans</w:t></w:r></w:p>
        <w:p><w:r><w:t>Before</w:t></w:r><w:r><w:drawing><a:graphic><a:blip r:embed="rId1"/></a:graphic></w:drawing></w:r></w:p>
        <w:p><w:r><w:pict><v:imagedata r:id="rId2"/></w:pict></w:r><w:r><w:drawing><a:blip r:embed="rId3"><a:extLst/></a:blip></w:drawing></w:r></w:p>
        <w:p><w:r><w:drawing><a:blip r:embed="rId1"/><a:blip r:embed="rIdX"/><a:blip r:embed="rId9"/></w:drawing></w:r><w:r><w:t>After</w:t></w:r></w:p>"#;
    let bytes = docx_with_pictures(
        body,
        &[
            ("rId1", "word/media/image1.png", png),
            ("rId2", "media/image2.jpeg", jpeg),
            ("rId3", "word/media/image3.emf", b"\x01\0\0\0 EMF"),
        ],
    );
    let doc = parse(DocFormat::Docx, &bytes).unwrap();
    assert!(doc.ocr.is_empty(), "pictures are only read when asked for");
    let options = crate::ParseOptions { docx_images: true };
    let doc = crate::parse_with(DocFormat::Docx, &bytes, &options).unwrap();
    let tasks: Vec<(String, usize, Vec<String>)> = doc
        .ocr
        .iter()
        .map(|t| match &t.source {
            OcrSource::Embedded { name, .. } => (name.clone(), t.position, t.heading_path.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let scans = vec!["Scans".to_string()];
    assert_eq!(
        tasks,
        [
            ("word/media/image1.png".to_string(), 2, scans.clone()),
            ("media/image2.jpeg".to_string(), 2, scans.clone()),
        ]
    );
    assert_eq!(part_name("../customXml/item.png"), "customXml/item.png");
    assert_eq!(part_name("/media/x.png"), "media/x.png");
    // A document of pictures alone is not empty: OCR may find its text.
    let only = docx_with_pictures(
        r#"<w:p><w:r><w:drawing><a:blip r:embed="rId1"/></w:drawing></w:r></w:p>"#,
        &[("rId1", "word/media/a.png", png)],
    );
    let doc = crate::parse_with(DocFormat::Docx, &only, &options).unwrap();
    assert!(doc.blocks.is_empty());
    assert_eq!(doc.ocr.len(), 1);
    assert!(matches!(
        parse(DocFormat::Docx, &only).unwrap_err(),
        ParseError::Empty
    ));
}

#[test]
fn part_names_are_case_insensitive() {
    let doc = "<w:document><w:body><w:p><w:r><w:t>found</w:t></w:r></w:p></w:body></w:document>";
    let bytes = make_zip(&[("Word/Document.XML", doc.as_bytes())]);
    assert!(is_docx(&bytes));
    let parsed = parse(DocFormat::Docx, &bytes).unwrap();
    assert_eq!(parsed.blocks[0].text, "found");
}
