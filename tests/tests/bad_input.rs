//! Bad input gets a clear 4xx with a JSON body naming the problem, and never touches what
//! is already stored.

use serde_json::{Value, json};
use zhiku_e2e::Server;

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// The error message names `what` (the configuration key to change, say).
fn assert_names(body: &Value, what: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(what), "{body}");
}

#[test]
fn bad_uploads_and_requests() {
    // A small upload limit so the oversize case stays cheap.
    let mut server = Server::start_with_env(&[
        ("ZHIKU_SERVER__MAX_UPLOAD_BYTES", "1048576"),
        ("ZHIKU_SERVER__MAX_UPLOAD_PARTS", "8"),
    ]);
    let (status, body) = server.upload(
        "kb",
        &[(
            "keep.md",
            b"# Keep\n\nThe canary phrase is amber falcon.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");

    // Unsupported type (images OCR reads are tested in ocr.rs).
    let gif = b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04".to_vec();
    let (status, body) = server.upload("kb", &[("diagram.gif", gif)]);
    assert_error(status, &body, 415, "unsupported_type");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("diagram.gif"),
        "{body}"
    );

    // Empty file.
    let (status, body) = server.upload("kb", &[("empty.txt", Vec::new())]);
    assert_error(status, &body, 422, "empty_document");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("empty.txt"),
        "{body}"
    );

    // Whitespace only.
    let (status, body) = server.upload("kb", &[("blank.md", b"  \n\n\t \n".to_vec())]);
    assert_error(status, &body, 422, "empty_document");

    // Not text.
    let (status, body) = server.upload(
        "kb",
        &[(
            "binary.txt",
            vec![
                0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3e, 0x00, 0x01,
                0x9c,
            ],
        )],
    );
    assert_eq!(status / 100, 4, "{body}");

    // Corrupt and truncated PDFs.
    let (status, body) = server.upload(
        "kb",
        &[(
            "broken.pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog".to_vec(),
        )],
    );
    assert_error(status, &body, 422, "invalid_pdf");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broken.pdf"),
        "{body}"
    );
    let mut truncated = zhiku_e2e::simple_pdf(&["Some text on a page."]);
    truncated.truncate(truncated.len() / 2);
    let (status, body) = server.upload("kb", &[("truncated.pdf", truncated)]);
    assert_eq!(status, 422, "{body}");

    // Oversize upload.
    let big = vec![b'a'; 2 * 1024 * 1024];
    let (status, body) = server.upload("kb", &[("big.txt", big)]);
    assert_error(status, &body, 413, "payload_too_large");

    // A failed file in a multi-file upload fails alone.
    let (status, body) = server.upload(
        "kb",
        &[
            (
                "good.txt",
                b"The quarterly offsite is in Hangzhou.".to_vec(),
            ),
            ("bad.pdf", b"%PDF-1.4 garbage".to_vec()),
        ],
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["documents"][0]["name"], json!("good.txt"));
    assert_eq!(body["errors"][0]["name"], json!("bad.pdf"));
    assert_eq!(body["errors"][0]["code"], json!("invalid_pdf"));

    // Too many parts: refused before any file is stored.
    let parts: Vec<(String, Vec<u8>)> = (0..9)
        .map(|i| {
            (
                format!("many-{i}.txt"),
                format!("Part number {i}.").into_bytes(),
            )
        })
        .collect();
    let parts: Vec<(&str, Vec<u8>)> = parts.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (status, body) = server.upload("kb", &parts);
    assert_error(status, &body, 400, "too_many_parts");
    assert_names(&body, "server.max_upload_parts");
    let (_, list) = server.get("/v1/kbs/kb/documents");
    assert!(!list.to_string().contains("many-"), "{list}");

    // A broken re-upload of an existing document leaves the stored version alone.
    let (status, _) = server.upload("kb", &[("keep.md", vec![0u8; 64])]);
    assert_eq!(status / 100, 4);

    // No file part; not multipart at all.
    let (status, body) =
        server.post_raw("/v1/kbs/kb/documents", "application/json", b"{}".to_vec());
    assert_error(status, &body, 400, "invalid_multipart");

    // Invalid KB name.
    let (status, body) = server.upload("Bad Name!", &[("x.txt", b"hello".to_vec())]);
    assert_error(status, &body, 400, "invalid_kb_name");

    // Invalid JSON, missing field, wrong type, unknown field, bad values.
    let (status, body) = server.post_raw(
        "/v1/kbs/kb/search",
        "application/json",
        b"{not json".to_vec(),
    );
    assert_error(status, &body, 400, "invalid_json");
    let (status, body) = server.post_json("/v1/kbs/kb/search", &json!({ "top_k": 3 }));
    assert_error(status, &body, 400, "invalid_json");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("query"),
        "{body}"
    );
    let (status, body) = server.post_json("/v1/kbs/kb/search", &json!({ "query": 5 }));
    assert_error(status, &body, 400, "invalid_json");
    let (status, body) = server.post_json(
        "/v1/kbs/kb/search",
        &json!({ "query": "x", "mode": "fuzzy" }),
    );
    assert_error(status, &body, 400, "invalid_json");
    let (status, body) =
        server.post_json("/v1/kbs/kb/search", &json!({ "query": "x", "top_k": 0 }));
    assert_error(status, &body, 400, "invalid_top_k");
    let (status, body) = server.post_json("/v1/kbs/kb/search", &json!({ "query": "   " }));
    assert_error(status, &body, 400, "empty_query");
    let (status, body) = server.post_json("/v1/kbs/kb/ask", &json!({ "questoin": "typo" }));
    assert_error(status, &body, 400, "invalid_json");
    let (status, body) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({ "question": "x", "max_tokens": 0 }),
    );
    assert_error(status, &body, 400, "invalid_max_tokens");

    // Unknown KB and unknown route.
    let (status, body) = server.post_json("/v1/kbs/nope/search", &json!({ "query": "x" }));
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.post_json("/v1/kbs/nope/ask", &json!({ "question": "x" }));
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.delete("/v1/kbs/nope");
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server.get("/v1/nothing-here");
    assert_error(status, &body, 404, "not_found");

    // Queries past the bounds: a 1 MB query of distinct words (which once kept a core
    // busy for minutes), and a short one of thousands of distinct terms; asks too.
    let words: String = (0..120_000).map(|i| format!("w{i} ")).collect();
    let huge = &words[..1_000_000.min(words.len())];
    let (status, body) = server.post_json("/v1/kbs/kb/search", &json!({ "query": huge }));
    assert_error(status, &body, 400, "query_too_long");
    assert_names(&body, "search.max_query_chars");
    let many: String = (0..2000u32)
        .filter_map(|i| char::from_u32(0x4e00 + i * 7))
        .flat_map(|c| [c, ' '])
        .collect();
    let (status, body) = server.post_json("/v1/kbs/kb/search", &json!({ "query": many }));
    assert_error(status, &body, 400, "query_too_long");
    assert_names(&body, "search.max_query_terms");
    let (status, body) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({ "question": many, "answer_mode": "extractive" }),
    );
    assert_error(status, &body, 400, "query_too_long");

    // After all that, the server is up and the first document is intact.
    assert!(server.is_running());
    let hits = server.search("kb", "amber falcon canary", "keyword");
    assert_eq!(hits[0]["document_name"], json!("keep.md"));
    assert!(hits[0]["text"].as_str().unwrap().contains("amber falcon"));
    let (_, body) = server.get("/v1/kbs/kb");
    assert_eq!(body["documents"], json!(2), "keep.md and good.txt: {body}");
}

/// A DOCX whose `word/document.xml` inflates to 200 MiB: a zip bomb.
fn zip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    let block = vec![b' '; 1 << 20];
    for _ in 0..200 {
        zip.write_all(&block).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Random bytes from a fixed-seed xorshift.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A valid PDF whose cross-reference offsets all point at the wrong place.
fn corrupt_xref_pdf() -> Vec<u8> {
    let pdf = String::from_utf8(zhiku_e2e::simple_pdf(&["Text behind a broken xref."])).unwrap();
    pdf.lines()
        .map(|l| {
            if l.ends_with(" 00000 n ") {
                "0000000003 00000 n ".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn bad_files_in_a_job_fail_alone_and_leave_stored_documents_alone() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("inbox");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("keep.md"),
        "# Keep\n\nThe canary phrase is amber falcon.",
    )
    .unwrap();
    let roots = format!("[\"{}\"]", root.path().display());
    let server = Server::start_with_env(&[
        ("ZHIKU_JOBS__IMPORT_ROOTS", &roots),
        // Low enough that the 2 MB one-line file (~1,400 chunks) hits it while embedding.
        ("ZHIKU_JOBS__FILE_TIMEOUT_SECS", "15"),
    ]);
    let import = json!({"kb": "inbox", "path": dir.to_str().unwrap()});
    let (status, body) = server.post_json("/v1/jobs", &import);
    assert_eq!(status, 202, "{body}");
    let job = server.wait_job(body["job_id"].as_str().unwrap());
    assert_eq!(job["files_indexed"], 1, "{job}");
    let (_, kept) = server.get("/v1/kbs/inbox/documents/keep.md");

    // Now every kind of bad file, and a broken new version of keep.md.
    let mut truncated = zhiku_e2e::simple_pdf(&["Some text on a page."]);
    truncated.truncate(truncated.len() / 2);
    let (gbk, _, _) =
        encoding_rs::GBK.encode("仓库管理制度：所有货物入库前必须登记。\n\n盘点每月进行一次。");
    let one_line: String = (0..420_000)
        .map(|i| ["alpha ", "beta ", "gamma ", "delta "][i % 4])
        .collect::<String>()[..2 << 20]
        .to_string();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("keep.md", vec![0u8; 64]),
        ("truncated.pdf", truncated),
        ("xref.pdf", corrupt_xref_pdf()),
        ("scanned.pdf", zhiku_e2e::simple_pdf(&[""])),
        ("empty.txt", Vec::new()),
        ("garbage.txt", garbage(4096)),
        ("notzip.docx", b"this is not a zip archive at all".to_vec()),
        ("bomb.docx", zip_bomb()),
        ("gbk.txt", gbk.into_owned()),
        ("oneline.txt", one_line.into_bytes()),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let (status, body) = server.post_json("/v1/jobs", &import);
    assert_eq!(status, 202, "{body}");
    let job = server.wait_job(body["job_id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let errors: std::collections::BTreeMap<String, (String, String)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
            (
                e["name"].as_str().unwrap().to_string(),
                (
                    e["code"].as_str().unwrap().to_string(),
                    e["stage"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let expect = |name: &str, code: &str, stage: &str| {
        assert_eq!(
            errors.get(name),
            Some(&(code.to_string(), stage.to_string())),
            "{name}: {errors:?}"
        );
    };
    expect("keep.md", "not_text", "parse");
    expect("truncated.pdf", "invalid_pdf", "parse");
    expect("xref.pdf", "invalid_pdf", "parse");
    // A blank scan: OCR reads it and finds nothing (ocr.rs has the details).
    expect("scanned.pdf", "no_text_found", "ocr");
    expect("empty.txt", "empty_document", "parse");
    expect("garbage.txt", "not_text", "parse");
    expect("notzip.docx", "invalid_docx", "parse");
    expect("bomb.docx", "invalid_docx", "parse");
    expect("oneline.txt", "timeout", "embed");
    assert_eq!(errors.len(), 9, "{errors:?}");
    assert_eq!(job["files_indexed"], 1, "only the GBK file: {job}");

    // GBK text was decoded and is searchable in Chinese.
    let hits = server.search("inbox", "货物入库登记", "keyword");
    assert_eq!(hits[0]["document_id"], "gbk.txt", "{hits:?}");
    // The stored keep.md is untouched.
    let (_, still) = server.get("/v1/kbs/inbox/documents/keep.md");
    assert_eq!(still, kept);
    let hits = server.search("inbox", "amber falcon", "keyword");
    assert_eq!(hits[0]["document_id"], "keep.md");

    // A file name that tries to climb out is reduced to its last component.
    let (status, body) = server.upload(
        "inbox",
        &[("../../escape.txt", b"Climbing names stay inside.".to_vec())],
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["documents"][0]["name"], "escape.txt");
    assert!(!root.path().join("escape.txt").exists());
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200, "the service is still up");
}
