//! OCR end to end: images and scanned PDFs rendered here from text (Pillow and the
//! WenQuanYi Micro Hei font, from Debian packages), read by the real Tesseract inside the
//! real server, and found by search in English and Chinese. Then every kind of bad image
//! or scan, each of which must fail clearly and alone.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_e2e::{EventStream, PdfPage, Server, pdf, render, scan, scan_size};

const AUDIT: [&str; 3] = [
    "The quarterly audit of the Lisbon warehouse inventory",
    "takes place on the second Monday of March.",
    "Every pallet must carry a readable barcode label.",
];
const PARTY: [&str; 3] = [
    "公司年会定于十二月二十日在杭州西湖国宾馆举行。",
    "全体员工需在十二月十日前向行政部报名。",
    "年会当天下午两点开始签到。",
];
const PARKING: [&str; 2] = [
    "停车场位于办公楼地下二层，共有一百二十个车位。",
    "访客车辆须在前台登记后方可进入。",
];

/// Whether OCR's spaces between Chinese characters survived into the text.
fn has_spaced_chinese(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(3).any(|w| {
        let cjk = |c: char| ('\u{4E00}'..='\u{9FFF}').contains(&c);
        cjk(w[0]) && w[1] == ' ' && cjk(w[2])
    })
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Uploads one file that must be refused with `status` and `code`, with a message naming
/// the file; returns the error body.
fn refused(server: &Server, name: &str, bytes: Vec<u8>, status: u16, code: &str) -> Value {
    let (got, body) = server.upload("scans", &[(name, bytes)]);
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(message(&body).contains(name), "{body}");
    body
}

/// The best hit for `query`, which must come from `document` with the given OCR flag and
/// page.
fn assert_top_hit(server: &Server, query: &str, document: &str, ocr: bool, page: Option<u32>) {
    let hits = server.search("scans", query, "hybrid");
    let hit = &hits[0];
    assert_eq!(hit["document_name"], document, "{query}: {hits:#?}");
    assert_eq!(hit["ocr"], ocr, "{query}: {hit}");
    assert_eq!(hit["page"], json!(page), "{query}: {hit}");
    if ocr {
        let confidence = hit["ocr_confidence"].as_f64().unwrap_or_default();
        assert!(confidence > 60.0, "{query}: {hit}");
    } else {
        assert!(hit.get("ocr_confidence").is_none(), "{hit}");
    }
    let text = hit["text"].as_str().unwrap();
    assert!(
        !has_spaced_chinese(text),
        "spaces left between characters: {text}"
    );
}

/// A DOCX with one paragraph followed by one embedded PNG, as Word writes pictures.
fn docx_with_picture(paragraph: &str, png: &[u8]) -> Vec<u8> {
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture"><w:body>
<w:p><w:r><w:t>{paragraph}</w:t></w:r></w:p>
<w:p><w:r><w:drawing><wp:inline><wp:extent cx="5400000" cy="1080000"/><a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture"><pic:pic><pic:blipFill><a:blip r:embed="rId7"/></pic:blipFill></pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p>
<w:sectPr/></w:body></w:document>"#
    );
    let rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="media/image1.png"/></Relationships>"#;
    let content_types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="png" ContentType="image/png"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in [
        ("[Content_Types].xml", content_types.as_bytes()),
        ("word/document.xml", document.as_bytes()),
        ("word/_rels/document.xml.rels", rels.as_bytes()),
        ("word/media/image1.png", png),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn scans_and_images_are_searchable_in_english_and_chinese() {
    let server = Server::start();
    let travel = scan(
        &[
            &[
                "Expense reports are due within thirty days of travel.",
                "Attach the boarding passes to every claim.",
            ],
            &[
                "出差报销须附上发票原件和审批单。",
                "报销款项每月十五日统一发放。",
            ],
        ],
        "PDF",
    );
    let parking = scan(&[&PARKING], "JPEG");
    let (width, height) = scan_size(PARKING.len());
    // Page 1 has a text layer, page 2 is a scan.
    let office = pdf(&[
        PdfPage::Text(
            "The cafeteria on the third floor opens at half past seven.\nBreakfast is served until ten.",
        ),
        PdfPage::Image {
            width,
            height,
            bits: 8,
            filter: Some("DCTDecode"),
            data: &parking,
        },
    ]);
    let memo = docx_with_picture(
        "The attached whiteboard photo lists the launch checklist.",
        &scan(&[&["Rehearse the rollback with the night shift."]], "PNG"),
    );
    let (status, body) = server.upload(
        "scans",
        &[
            ("audit.png", scan(&[&AUDIT], "PNG")),
            ("年会.jpg", scan(&[&PARTY], "JPEG")),
            ("travel.pdf", travel),
            ("office.pdf", office),
            ("memo.docx", memo),
            (
                "minutes.tiff",
                scan(
                    &[
                        &["Minutes of the safety committee meeting held in April."],
                        &["会议决定每季度进行一次消防演练。"],
                    ],
                    "TIFF",
                ),
            ),
        ],
    );
    assert_eq!(status, 201, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let documents = body["documents"].as_array().unwrap();
    let document = |name: &str| {
        documents
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {body}"))
    };
    assert_eq!(document("audit.png")["format"], "image/png");
    assert_eq!(document("年会.jpg")["format"], "image/jpeg");
    // Confidence per page: one page per image, the scanned pages of the PDFs only.
    let pages = |name: &str| -> Vec<(Value, f64)> {
        document(name)["ocr_pages"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|p| {
                assert!(p.get("error").is_none(), "{name}: {p}");
                (p["page"].clone(), p["confidence"].as_f64().unwrap())
            })
            .collect()
    };
    for (name, expected) in [
        ("audit.png", vec![1]),
        ("年会.jpg", vec![1]),
        ("travel.pdf", vec![1, 2]),
        ("office.pdf", vec![2]),
        ("minutes.tiff", vec![1, 2]),
    ] {
        let got = pages(name);
        let numbers: Vec<Value> = got.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            numbers,
            json!(expected).as_array().unwrap().clone(),
            "{name}"
        );
        assert!(got.iter().all(|(_, c)| *c > 60.0), "{name}: {got:?}");
    }
    // DOCX pictures are only read when [ocr] docx_images is on (off by default).
    assert!(document("memo.docx").get("ocr_pages").is_none(), "{body}");

    assert_top_hit(
        &server,
        "When is the warehouse inventory audit?",
        "audit.png",
        true,
        Some(1),
    );
    assert_top_hit(&server, "年会在哪里举行", "年会.jpg", true, Some(1));
    assert_top_hit(
        &server,
        "How many days do I have to submit an expense report?",
        "travel.pdf",
        true,
        Some(1),
    );
    assert_top_hit(&server, "出差报销需要附上什么", "travel.pdf", true, Some(2));
    assert_top_hit(&server, "停车场有多少个车位", "office.pdf", true, Some(2));
    assert_top_hit(
        &server,
        "消防演练多久进行一次",
        "minutes.tiff",
        true,
        Some(2),
    );
    assert_top_hit(
        &server,
        "When does the cafeteria open?",
        "office.pdf",
        false,
        Some(1),
    );
    // The Chinese text reads as written, with no spaces between characters.
    let hits = server.search("scans", "停车场", "keyword");
    let text = hits[0]["text"].as_str().unwrap();
    assert!(text.contains("停车场位于办公楼地下二层"), "{text}");
    let hits = server.search("scans", "rollback night shift", "keyword");
    assert!(
        hits.iter().all(|h| h["document_name"] != "memo.docx"),
        "{hits:?}"
    );
}

#[test]
fn docx_pictures_are_read_when_enabled() {
    let server = Server::start_with_env(&[("ZHIKU_OCR__DOCX_IMAGES", "true")]);
    let memo = docx_with_picture(
        "The attached whiteboard photo lists the launch checklist.",
        &scan(&[&["Rehearse the rollback with the night shift."]], "PNG"),
    );
    let (status, body) = server.upload("scans", &[("memo.docx", memo)]);
    assert_eq!(status, 201, "{body}");
    let pages = &body["documents"][0]["ocr_pages"];
    assert_eq!(pages[0]["image"], "word/media/image1.png", "{body}");
    assert!(pages[0].get("page").is_none(), "{body}");
    let hits = server.search(
        "scans",
        "rehearse the rollback with the night shift",
        "hybrid",
    );
    assert_eq!(hits[0]["document_name"], "memo.docx", "{hits:?}");
    assert_eq!(hits[0]["ocr"], true, "{hits:?}");
    assert!(hits[0].get("page").is_none(), "{hits:?}");
    let hits = server.search("scans", "whiteboard photo launch checklist", "keyword");
    assert_eq!(hits[0]["ocr"], false, "{hits:?}");
}

/// Uploads one file as a background job and follows the job's events to the end: the
/// final event, and `ocr.pages_done` of every event on the way.
fn upload_and_follow(server: &Server, name: &str, bytes: Vec<u8>) -> (Value, Vec<u64>) {
    let (status, body) = server.upload_form("scans", "?wait=false", &[("file", Some(name), bytes)]);
    assert_eq!(status, 202, "{body}");
    let id = body["job_id"].as_str().unwrap();
    let response = server
        .client
        .get(format!("{}/v1/jobs/{id}/events", server.url))
        .send()
        .unwrap();
    let mut events = EventStream::new(response);
    let mut seen = Vec::new();
    loop {
        let (event, info) = events.next_event().expect("stream ended before done");
        seen.push(info["ocr"]["pages_done"].as_u64().unwrap());
        if event == "done" {
            return (info, seen);
        }
    }
}

#[test]
fn ocr_progress_is_reported_page_by_page() {
    let server = Server::start();
    let pages: Vec<Vec<String>> = (1..=4)
        .map(|n| {
            vec![format!(
                "Section {n} of the fire drill plan: assemble at gate {n}."
            )]
        })
        .collect();
    let drill = render(&json!({ "pages": pages, "format": "PDF" }));
    let (last, seen) = upload_and_follow(&server, "drill.pdf", drill);
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["ocr"]["pages_total"], 4, "{last}");
    assert_eq!(last["ocr"]["pages_done"], 4, "{last}");
    assert_eq!(last["ocr"]["pages_failed"], 0, "{last}");
    assert!(
        last["ocr"]["busy_seconds"].as_f64().unwrap() > 0.0,
        "{last}"
    );
    // Pages were reported as they finished, not only at the end.
    assert!(seen.iter().any(|&done| done > 0 && done < 4), "{seen:?}");
    let hits = server.search("scans", "Where do we assemble for section 3?", "hybrid");
    assert_eq!(hits[0]["page"], 3, "{hits:?}");
}

/// Makes page `page` (1-based) of a little-endian TIFF claim `side` x `side` pixels in its
/// own directory, leaving the other pages and the first page's header as they were.
fn claim_tiff_page_size(tiff: &mut [u8], page: usize, side: u16) {
    assert_eq!(
        &tiff[..4],
        b"II*\0",
        "Pillow writes little-endian TIFFs here"
    );
    let u16_at = |t: &[u8], at: usize| usize::from(u16::from_le_bytes([t[at], t[at + 1]]));
    let u32_at =
        |t: &[u8], at: usize| u32::from_le_bytes(t[at..at + 4].try_into().unwrap()) as usize;
    let mut directory = u32_at(tiff, 4);
    for _ in 1..page {
        directory = u32_at(tiff, directory + 2 + 12 * u16_at(tiff, directory));
    }
    let mut patched = 0;
    for entry in 0..u16_at(tiff, directory) {
        let at = directory + 2 + 12 * entry;
        // ImageWidth and ImageLength, stored in the entry as SHORT or LONG.
        if matches!(u16_at(tiff, at), 256 | 257) {
            let kind = u16_at(tiff, at + 2);
            let value = &mut tiff[at + 8..at + 12];
            match kind {
                3 => value[..2].copy_from_slice(&side.to_le_bytes()),
                4 => value.copy_from_slice(&u32::from(side).to_le_bytes()),
                kind => panic!("ImageWidth/ImageLength of type {kind}"),
            }
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "page {page} has no width and height tags");
}

#[test]
fn every_page_of_a_tiff_is_read_on_its_own_and_fails_alone() {
    // Each page is a task of its own in a sandboxed parser worker.
    tiff_pages_fail_alone(&[("ZHIKU_OCR__LANGUAGES", "eng")]);
}

#[test]
fn pages_are_read_inside_the_server_without_parser_workers() {
    tiff_pages_fail_alone(&[
        ("ZHIKU_OCR__LANGUAGES", "eng"),
        ("ZHIKU_JOBS__PARSER_PROCESSES", "0"),
    ]);
}

fn tiff_pages_fail_alone(env: &[(&str, &str)]) {
    let server = Server::start_with_env(env);
    let mut tiff = scan(
        &[
            &["The loading dock closes at six in the evening."],
            &["This page claims to be a gigapixel image."],
            &["Visitors must sign in at the front desk."],
            &["Forklift keys are kept in the security office."],
        ],
        "TIFF",
    );
    // 60,000 x 60,000 is 3.6 gigapixels: refused from its header, as a bomb on page 1 is.
    claim_tiff_page_size(&mut tiff, 2, 60_000);
    let (last, seen) = upload_and_follow(&server, "logbook.tiff", tiff);
    // One task per page: four pages counted, reported as they finish, one failed.
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["files_indexed"], 1, "{last}");
    assert_eq!(last["ocr"]["pages_total"], 4, "{last}");
    assert_eq!(last["ocr"]["pages_done"], 4, "{last}");
    assert_eq!(last["ocr"]["pages_failed"], 1, "{last}");
    assert!(seen.iter().any(|&done| done > 0 && done < 4), "{seen:?}");

    let (status, listed) = server.get("/v1/kbs/scans/documents");
    assert_eq!(status, 200, "{listed}");
    let document = listed["documents"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "logbook.tiff"))
        .unwrap_or_else(|| panic!("logbook.tiff not listed: {listed}"));
    assert_eq!(document["status"], "indexed", "{document}");
    let pages = document["ocr_pages"].as_array().unwrap();
    let numbers: Vec<u64> = pages.iter().map(|p| p["page"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4], "{document}");
    let error = pages[1]["error"].as_str().unwrap_or_default();
    assert!(error.contains("60000 x 60000"), "{document}");
    for good in [0, 2, 3] {
        assert!(pages[good].get("error").is_none(), "{document}");
        assert!(
            pages[good]["confidence"].as_f64().unwrap() > 60.0,
            "{document}"
        );
    }
    assert_top_hit(
        &server,
        "When does the loading dock close?",
        "logbook.tiff",
        true,
        Some(1),
    );
    assert_top_hit(
        &server,
        "Where are the forklift keys kept?",
        "logbook.tiff",
        true,
        Some(4),
    );
    let hits = server.search("scans", "gigapixel", "keyword");
    assert!(hits.is_empty(), "{hits:?}");
}

#[test]
fn one_bad_page_fails_alone() {
    // A page that takes far longer to rasterize than the limit: a 100,000 x 100,000
    // pixel image (1 MB on disk, zlib-compressed zeros) that pdftoppm must decode in full,
    // half a minute on the 2-core machine; the good page takes well under a second.
    let server = Server::start_with_env(&[
        ("ZHIKU_OCR__PAGE_TIMEOUT_SECS", "5"),
        ("ZHIKU_OCR__LANGUAGES", "eng"),
    ]);
    let good = scan(&[&AUDIT], "JPEG");
    let (width, height) = scan_size(AUDIT.len());
    let huge = render(&json!({ "zeros": 100_000u64 * 100_000 / 8 }));
    let bad = pdf(&[
        PdfPage::Image {
            width,
            height,
            bits: 8,
            filter: Some("DCTDecode"),
            data: &good,
        },
        PdfPage::Image {
            width: 100_000,
            height: 100_000,
            bits: 1,
            filter: Some("FlateDecode"),
            data: &huge,
        },
    ]);
    let started = Instant::now();
    let (status, body) = server.upload("scans", &[("mixed-quality.pdf", bad)]);
    assert_eq!(status, 201, "{body}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let pages = &body["documents"][0]["ocr_pages"];
    assert_eq!(pages[0]["page"], 1, "{body}");
    assert!(pages[0]["confidence"].as_f64().unwrap() > 60.0, "{body}");
    assert_eq!(pages[1]["page"], 2, "{body}");
    let error = pages[1]["error"].as_str().unwrap_or_default();
    assert!(error.contains("gave up after 5 s"), "{body}");
    let hits = server.search("scans", "warehouse inventory audit", "hybrid");
    assert_eq!(hits[0]["document_name"], "mixed-quality.pdf", "{hits:?}");
    assert_eq!(hits[0]["page"], 1, "{hits:?}");
}

#[test]
fn truncated_images_are_refused_clearly() {
    let server = Server::start();
    let png = scan(&[&AUDIT], "PNG");
    let half = png[..png.len() / 2].to_vec();
    let body = refused(&server, "half.png", half, 422, "invalid_image");
    assert!(message(&body).contains("truncated"), "{body}");
    assert_eq!(body["error"]["files"][0]["stage"], "ocr", "{body}");
    // JPEG says nothing about its length up front; the decoder notices.
    let jpeg = scan(&[&AUDIT], "JPEG");
    let half = jpeg[..jpeg.len() / 2].to_vec();
    refused(&server, "half.jpg", half, 422, "invalid_image");
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
}

#[test]
fn zero_byte_image_is_refused_clearly() {
    let server = Server::start();
    refused(&server, "empty.png", Vec::new(), 422, "empty_document");
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
}

/// CRC-32 (IEEE), which PNG chunks carry.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    chunk
}

#[test]
fn decompression_bomb_is_refused_before_decoding() {
    let server = Server::start();
    // A well-formed PNG whose header claims 100,000 x 100,000 gray pixels (10 GB decoded);
    // its data holds only the first rows, which is all a decoder would get to.
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let rows = render(&json!({ "zeros": 100_001 * 16 }));
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &rows));
    png.extend(png_chunk(b"IEND", &[]));
    let started = Instant::now();
    let body = refused(&server, "bomb.png", png, 413, "image_too_large");
    assert!(message(&body).contains("100000 x 100000"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "{body}");
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200);
}

#[test]
fn scanned_pdf_over_the_page_limit_is_refused() {
    let server = Server::start();
    let white = [255u8];
    let pages: Vec<PdfPage> = (0..500)
        .map(|_| PdfPage::Image {
            width: 1,
            height: 1,
            bits: 8,
            filter: None,
            data: &white,
        })
        .collect();
    let started = Instant::now();
    let body = refused(&server, "archive.pdf", pdf(&pages), 413, "too_many_pages");
    assert!(message(&body).contains("500 scanned pages"), "{body}");
    assert!(message(&body).contains("limit of 200"), "{body}");
    // Refused before any page was read.
    assert!(started.elapsed() < Duration::from_secs(30), "{body}");
}

#[test]
fn image_without_text_is_recorded_empty_with_a_reason() {
    let server = Server::start();
    let blank = scan(&[&[]], "PNG");
    let (status, body) = server.upload_form(
        "scans",
        "",
        &[
            ("document_id", None, b"blank-photo".to_vec()),
            ("file", Some("blank.png"), blank),
        ],
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("no_text_found")),
        "{body}"
    );
    assert!(message(&body).contains("blank.png"), "{body}");
    let (status, document) = server.get("/v1/kbs/scans/documents/blank-photo");
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["status"], "empty", "{document}");
    assert_eq!(document["chunks"], 0, "{document}");
    let reason = document["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("OCR found no text"), "{document}");
    assert_eq!(document["ocr_pages"][0]["words"], 0, "{document}");
}

#[test]
fn scans_without_ocr_are_recorded_empty() {
    let server = Server::start_with_env(&[("ZHIKU_OCR__ENABLED", "false")]);
    let (width, height) = scan_size(AUDIT.len());
    let jpeg = scan(&[&AUDIT], "JPEG");
    let scanned = pdf(&[PdfPage::Image {
        width,
        height,
        bits: 8,
        filter: Some("DCTDecode"),
        data: &jpeg,
    }]);
    let (status, body) = server.upload_form(
        "scans",
        "",
        &[
            ("document_id", None, b"scan".to_vec()),
            ("file", Some("scan.pdf"), scanned),
            ("document_id", None, b"photo".to_vec()),
            ("file", Some("photo.jpg"), jpeg.clone()),
        ],
    );
    assert_eq!(status, 422, "{body}");
    let mut codes: Vec<&str> = body["error"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, ["no_text_layer", "ocr_disabled"], "{body}");
    for (id, reason) in [
        ("scan", "no text layer"),
        ("photo", "OCR, which is disabled"),
    ] {
        let (_, document) = server.get(&format!("/v1/kbs/scans/documents/{id}"));
        assert_eq!(document["status"], "empty", "{document}");
        let got = document["reason"].as_str().unwrap_or_default();
        assert!(got.contains(reason), "{document}");
    }
}
