//! Document lifecycle over HTTP: ids, content hashes, unchanged re-uploads, atomic
//! replacement, listing, fetching and deleting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use zhiku_e2e::Server;

fn text_part(name: &str, text: &str) -> (&'static str, Option<String>, Vec<u8>) {
    ("file", Some(name.to_string()), text.as_bytes().to_vec())
}

fn upload_with_id(server: &Server, id: &str, name: &str, text: &str) -> (u16, Value) {
    let (field, file_name, bytes) = text_part(name, text);
    server.upload_form(
        "kb",
        "",
        &[
            ("document_id", None, id.as_bytes().to_vec()),
            (field, file_name.as_deref(), bytes),
        ],
    )
}

#[test]
fn ids_hashes_listing_replacement_and_deletion() {
    let server = Server::start();

    // Client-given id (with a slash, as relative paths have).
    let (status, body) = upload_with_id(
        &server,
        "policies/travel",
        "travel.md",
        "# Travel\n\nEconomy class is booked for flights under six hours.",
    );
    assert_eq!(status, 201, "{body}");
    let doc = &body["documents"][0];
    assert_eq!(doc["id"], "policies/travel");
    assert_eq!(doc["outcome"], "created");
    assert_eq!(doc["status"], "indexed");
    assert_eq!(doc["format"], "text/markdown");
    assert!(
        doc["hash"].as_str().unwrap().starts_with("sha256:"),
        "{doc}"
    );
    let first_version = doc["version"].as_u64().unwrap();
    let created_at = doc["created_at"].as_str().unwrap().to_string();

    // Same content again: unchanged, nothing rewritten.
    let (status, body) = upload_with_id(
        &server,
        "policies/travel",
        "travel.md",
        "# Travel\n\nEconomy class is booked for flights under six hours.",
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["documents"][0]["outcome"], "unchanged");
    assert_eq!(body["documents"][0]["version"], first_version);

    // New content: replaced, old text gone from both retrievers.
    let (status, body) = upload_with_id(
        &server,
        "policies/travel",
        "travel.md",
        "# Travel\n\nBusiness class is allowed on flights over eight hours.",
    );
    assert_eq!(status, 201, "{body}");
    let doc = &body["documents"][0];
    assert_eq!(doc["outcome"], "updated");
    assert!(doc["version"].as_u64().unwrap() > first_version);
    assert_eq!(doc["created_at"], created_at.as_str());
    for mode in ["keyword", "hybrid"] {
        let hits = server.search("kb", "economy class flights", mode);
        assert!(
            hits.iter()
                .all(|h| !h["text"].as_str().unwrap().contains("Economy")),
            "{mode}: {hits:?}"
        );
    }
    let hits = server.search("kb", "business class", "keyword");
    assert_eq!(hits[0]["document_id"], "policies/travel");

    // Derived ids: KB + file name; five more documents for paging.
    for i in 0..5 {
        let (status, body) = server.upload(
            "kb",
            &[(
                &format!("note-{i}.txt"),
                format!("Note number {i} is about topic {i}.").into_bytes(),
            )],
        );
        assert_eq!(status, 201, "{body}");
    }
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/kbs/kb/documents?limit=2&cursor={}", urlencode(c)),
            None => "/v1/kbs/kb/documents?limit=2".to_string(),
        };
        let (status, page) = server.get(&path);
        assert_eq!(status, 200, "{page}");
        let docs = page["documents"].as_array().unwrap();
        assert!(docs.len() <= 2);
        ids.extend(docs.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 6, "{ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "pages are in id order without repeats");

    // One document, by an id containing a slash.
    let (status, doc) = server.get("/v1/kbs/kb/documents/policies/travel");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["name"], "travel.md");
    assert!(doc["size"].as_u64().unwrap() > 0);
    assert!(doc["chunks"].as_u64().unwrap() >= 1);
    assert!(doc["updated_at"].as_str().unwrap() >= created_at.as_str());
    let (status, _) = server.get("/v1/kbs/kb/documents/policies%2Ftravel");
    assert_eq!(status, 200, "an encoded slash names the same document");

    // Bad parameters.
    let (status, body) = server.get("/v1/kbs/kb/documents?limit=0");
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_limit"))
    );
    let (status, body) = server.get("/v1/kbs/kb/documents?limit=abc");
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    let (status, body) = server.upload_form(
        "kb",
        "",
        &[
            ("document_id", None, b"bad\nid".to_vec()),
            ("file", Some("x.txt"), b"text".to_vec()),
        ],
    );
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_document_id"))
    );
    let (status, body) = server.upload_form(
        "kb",
        "",
        &[
            ("document_id", None, b"same".to_vec()),
            ("file", Some("a.txt"), b"first text".to_vec()),
            ("document_id", None, b"same".to_vec()),
            ("file", Some("b.txt"), b"second text".to_vec()),
        ],
    );
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("duplicate_document"))
    );
    // Refused before the body is read (bad query, bad KB name): the answer still reaches
    // a client that sends the whole body first, since the server reads what it left.
    let large = vec![b'x'; 4 * 1024 * 1024];
    for _ in 0..3 {
        let (status, body) = server.upload_form(
            "kb",
            "?wait=perhaps",
            &[("file", Some("a.txt"), large.clone())],
        );
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("invalid_query"))
        );
        let (status, body) =
            server.upload_form("no%20such", "", &[("file", Some("a.txt"), large.clone())]);
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("invalid_kb_name")),
            "{body}"
        );
    }

    // Delete one document: gone from search, listing and both indexes.
    let (status, _) = server.delete("/v1/kbs/kb/documents/policies/travel");
    assert_eq!(status, 204);
    let (status, _) = server.delete("/v1/kbs/kb/documents/policies/travel");
    assert_eq!(status, 404);
    let (status, _) = server.get("/v1/kbs/kb/documents/policies/travel");
    assert_eq!(status, 404);
    assert!(server.search("kb", "business class", "keyword").is_empty());
    let (_, info) = server.get("/v1/kbs/kb");
    assert_eq!(info["documents"], 5, "{info}");
    let chunks = info["chunks"].as_u64().unwrap();
    assert_eq!(
        info["stored"]["vectors"].as_u64().unwrap(),
        chunks,
        "{info}"
    );
    assert_eq!(
        info["stored"]["keywords"].as_u64().unwrap(),
        chunks,
        "{info}"
    );

    // Deleting the KB removes its directory and its catalog entries.
    let (status, _) = server.delete("/v1/kbs/kb");
    assert_eq!(status, 204);
    assert!(!server.data.path().join("kbs/kb").exists());
    let (status, _) = server.get("/v1/kbs/kb/documents");
    assert_eq!(status, 404);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A document of several chunks that all contain `shared` and `marker`.
fn version_text(marker: &str) -> String {
    (0..4)
        .map(|i| {
            format!(
                "## Part {i}\n\n{}",
                format!("The shared warehouse procedure {marker} step {i}. ").repeat(40)
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn searches_see_one_version_during_replacement() {
    let server = Arc::new(Server::start());
    let (status, body) = server.upload(
        "kb",
        &[("manual.md", version_text("alphaversion").into_bytes())],
    );
    assert_eq!(status, 201, "{body}");
    let chunks = body["documents"][0]["chunks"].as_u64().unwrap();
    assert!(chunks >= 4, "the test needs a multi-chunk document: {body}");

    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let (server, done) = (server.clone(), done.clone());
        std::thread::spawn(move || {
            let mut searches = 0;
            while !done.load(Ordering::SeqCst) {
                for mode in ["keyword", "hybrid"] {
                    let (status, body) = server.post_json(
                        "/v1/kbs/kb/search",
                        &json!({"query": "shared warehouse procedure", "top_k": 20, "mode": mode}),
                    );
                    assert_eq!(status, 200, "{body}");
                    let texts: Vec<&str> = body["hits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| h["text"].as_str().unwrap())
                        .collect();
                    assert!(!texts.is_empty(), "{mode}: neither version visible");
                    let alpha = texts.iter().filter(|t| t.contains("alphaversion")).count();
                    let beta = texts.iter().filter(|t| t.contains("betaversion")).count();
                    assert!(
                        alpha == 0 || beta == 0,
                        "{mode}: both versions visible at once ({alpha} + {beta})"
                    );
                    assert_eq!(texts.len() as u64, chunks, "{mode}: a partial version");
                    searches += 1;
                }
            }
            searches
        })
    };
    for round in 0..6 {
        let marker = if round % 2 == 0 {
            "betaversion"
        } else {
            "alphaversion"
        };
        let (status, body) =
            server.upload("kb", &[("manual.md", version_text(marker).into_bytes())]);
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["documents"][0]["outcome"], "updated");
    }
    done.store(true, Ordering::SeqCst);
    let searches = checker.join().expect("no search saw a mix of versions");
    assert!(searches > 0);
    let (_, info) = server.get("/v1/kbs/kb");
    assert_eq!(info["stored"]["vectors"], info["chunks"], "{info}");
}

#[test]
fn files_of_the_same_name_in_different_folders_are_different_documents() {
    let server = Server::start();
    let (status, body) = server.upload(
        "kb",
        &[
            (
                "hr/2023/leave.md",
                b"# Leave 2023\n\nTwenty days of leave.".to_vec(),
            ),
            (
                "hr/2024/leave.md",
                b"# Leave 2024\n\nTwenty-five days of leave.".to_vec(),
            ),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let ids: Vec<&str> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{body}");
    assert_ne!(ids[0], ids[1], "{body}");
    assert_eq!(body["documents"][0]["name"], "leave.md");
    assert_eq!(body["documents"][0]["path"], "hr/2023/leave.md");

    // Re-uploading one (a different spelling of the same path) replaces that one only.
    let (status, body) = server.upload(
        "kb",
        &[(
            "./hr\\2024/leave.md",
            b"# Leave 2024\n\nThirty days of leave.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["documents"][0]["id"], ids[1], "{body}");
    assert_eq!(body["documents"][0]["outcome"], "updated", "{body}");
    let (status, list) = server.get("/v1/kbs/kb/documents");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["documents"].as_array().unwrap().len(), 2, "{list}");
    // A bare name keeps the id it always had.
    let (status, body) = server.upload(
        "kb",
        &[("leave.md", b"# Leave\n\nSee the yearly files.".to_vec())],
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["documents"][0]["outcome"], "created", "{body}");
}
