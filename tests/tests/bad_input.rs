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

#[test]
fn bad_uploads_and_requests() {
    // A small upload limit so the oversize case stays cheap.
    let mut server = Server::start_with_env(&[("ZHIKU_SERVER__MAX_UPLOAD_BYTES", "1048576")]);
    let (status, body) = server.upload(
        "kb",
        &[(
            "keep.md",
            b"# Keep\n\nThe canary phrase is amber falcon.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");

    // Unsupported type.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    let (status, body) = server.upload("kb", &[("diagram.png", png)]);
    assert_error(status, &body, 415, "unsupported_type");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("diagram.png"),
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

    // After all that, the server is up and the first document is intact.
    assert!(server.is_running());
    let hits = server.search("kb", "amber falcon canary", "keyword");
    assert_eq!(hits[0]["document_name"], json!("keep.md"));
    assert!(hits[0]["text"].as_str().unwrap().contains("amber falcon"));
    let (_, body) = server.get("/v1/kbs/kb");
    assert_eq!(body["documents"], json!(2), "keep.md and good.txt: {body}");
}
