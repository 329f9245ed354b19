//! Metadata filters over HTTP: tags, source paths and MIME types captured at upload and
//! import, and search filters on them applied inside both indexes in every mode.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use zhiku_e2e::{Server, simple_pdf};

const MODES: [&str; 3] = ["hybrid", "dense", "keyword"];
/// Every document mentions the handbook; the engineering ones match this query far better
/// than the others, so a filter that excluded them only after retrieval would come back
/// short (the server runs with `candidates = 1`, i.e. exactly `top_k` per side).
const QUERY: &str = "engineering build handbook";

fn upload(server: &Server, kb: &str, tags: &[&str], files: &[(&str, Vec<u8>)]) -> Value {
    let mut parts: Vec<(&str, Option<&str>, Vec<u8>)> = tags
        .iter()
        .map(|t| ("tags", None, t.as_bytes().to_vec()))
        .collect();
    for (name, bytes) in files {
        parts.push(("file", Some(name), bytes.clone()));
    }
    let (status, body) = server.upload_form(kb, "", &parts);
    assert_eq!(status, 201, "{body}");
    body
}

fn search(server: &Server, body: Value) -> (u16, Value) {
    server.post_json("/v1/kbs/kb/search", &body)
}

/// Document ids of the hits of a search that must succeed, and how many hits there were.
fn hit_documents(server: &Server, body: Value) -> (BTreeSet<String>, usize) {
    let (status, response) = search(server, body.clone());
    assert_eq!(status, 200, "{body}: {response}");
    let hits = response["hits"].as_array().unwrap();
    assert_eq!(
        response["no_relevant_context"],
        hits.is_empty(),
        "{response}"
    );
    let ids = hits
        .iter()
        .map(|h| h["document_id"].as_str().unwrap().to_string())
        .collect();
    (ids, hits.len())
}

#[test]
fn filters_select_documents_in_every_mode() {
    let server = Server::start_with_env(&[("ZHIKU_SEARCH__CANDIDATES", "1")]);
    let mut uploaded = Vec::new();
    uploaded.extend(
        upload(
            &server,
            "kb",
            &["hr, policy", "policy"],
            &[
                (
                    "hr/policy.md",
                    b"# Leave policy\n\nThe handbook grants employees twenty days of paid leave each year.".to_vec(),
                ),
                (
                    "hr/2024/leave.txt",
                    b"Handbook update for 2024: parental leave is extended to sixteen weeks.".to_vec(),
                ),
            ],
        )["documents"]
            .as_array()
            .unwrap()
            .clone(),
    );
    uploaded.extend(
        upload(
            &server,
            "kb",
            &["hr"],
            &[(
                "hr/2024/travel.html",
                b"<html><head><title>Travel</title></head><body><p>Handbook travel rules: take the train for trips under four hours.</p></body></html>".to_vec(),
            )],
        )["documents"]
            .as_array()
            .unwrap()
            .clone(),
    );
    uploaded.extend(
        upload(
            &server,
            "kb",
            &["eng"],
            &[
                (
                    "eng/build.md",
                    b"# Engineering build handbook\n\nThe engineering build handbook: every build runs the engineering build checks.".to_vec(),
                ),
                (
                    "eng/deploy.md",
                    b"# Engineering deploy handbook\n\nThe engineering handbook for deploying a build: build, test, then deploy.".to_vec(),
                ),
                (
                    "hrx/notes.md",
                    b"# Engineering notes\n\nNotes on the engineering build handbook and the build servers.".to_vec(),
                ),
            ],
        )["documents"]
            .as_array()
            .unwrap()
            .clone(),
    );
    uploaded.extend(
        upload(
            &server,
            "kb",
            &[],
            &[(
                "guide.pdf",
                simple_pdf(&["Engineering handbook appendix: the build machine inventory."]),
            )],
        )["documents"]
            .as_array()
            .unwrap()
            .clone(),
    );
    // path → document id; the upload response shows the captured metadata.
    let mut id = BTreeMap::new();
    for doc in &uploaded {
        let path = doc["path"].as_str().unwrap().to_string();
        assert_eq!(doc["chunks"], 1, "{doc}");
        id.insert(path, doc["id"].as_str().unwrap().to_string());
    }
    let policy = uploaded
        .iter()
        .find(|d| d["path"] == "hr/policy.md")
        .unwrap();
    assert_eq!(
        policy["name"], "policy.md",
        "the name is the last component"
    );
    assert_eq!(policy["path"], "hr/policy.md");
    assert_eq!(policy["tags"], json!(["hr", "policy"]));
    assert_eq!(policy["format"], "text/markdown");
    let (status, guide) = server.get(&format!("/v1/kbs/kb/documents/{}", id["guide.pdf"]));
    assert_eq!(status, 200, "{guide}");
    assert_eq!(
        (&guide["tags"], &guide["path"], &guide["format"]),
        (&json!([]), &json!("guide.pdf"), &json!("application/pdf"))
    );
    let (_, listed) = server.get("/v1/kbs/kb/documents");
    let travel = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "hr/2024/travel.html")
        .unwrap();
    assert_eq!(
        (&travel["tags"], &travel["format"]),
        (&json!(["hr"]), &json!("text/html"))
    );

    let set =
        |paths: &[&str]| -> BTreeSet<String> { paths.iter().map(|p| id[*p].clone()).collect() };
    let hr_docs = set(&["hr/policy.md", "hr/2024/leave.txt", "hr/2024/travel.html"]);
    let cases = [
        (json!({"tags": ["hr"]}), hr_docs.clone()),
        (
            json!({"tags": ["policy"]}),
            set(&["hr/policy.md", "hr/2024/leave.txt"]),
        ),
        (
            json!({"tags": ["policy", "eng"]}),
            set(&[
                "hr/policy.md",
                "hr/2024/leave.txt",
                "eng/build.md",
                "eng/deploy.md",
                "hrx/notes.md",
            ]),
        ),
        // Whole path components: "hrx/notes.md" is not under "hr".
        (json!({"path_prefix": "hr"}), hr_docs.clone()),
        (json!({"path_prefix": "hr/"}), hr_docs.clone()),
        (
            json!({"path_prefix": "hr/2024/"}),
            set(&["hr/2024/leave.txt", "hr/2024/travel.html"]),
        ),
        (json!({"path_prefix": "hrx"}), set(&["hrx/notes.md"])),
        (
            json!({"mime_types": ["text/html", "application/pdf"]}),
            set(&["hr/2024/travel.html", "guide.pdf"]),
        ),
        (
            json!({"mime_types": ["TEXT/PLAIN"]}),
            set(&["hr/2024/leave.txt"]),
        ),
        (
            json!({"document_ids": [id["guide.pdf"], id["hr/2024/leave.txt"], "no-such-id"]}),
            set(&["guide.pdf", "hr/2024/leave.txt"]),
        ),
        // Fields combine with AND.
        (
            json!({"tags": ["eng"], "path_prefix": "hrx"}),
            set(&["hrx/notes.md"]),
        ),
        (
            json!({"tags": ["hr"], "mime_types": ["text/markdown"]}),
            set(&["hr/policy.md"]),
        ),
        (
            json!({"tags": ["hr", "eng"], "path_prefix": "hr", "document_ids": [id["hr/policy.md"], id["eng/build.md"]]}),
            set(&["hr/policy.md"]),
        ),
        (json!({"tags": ["nope"]}), BTreeSet::new()),
        (json!({"path_prefix": "h"}), BTreeSet::new()),
    ];
    for mode in MODES {
        // Unfiltered, the engineering documents fill the three places.
        let (unfiltered, _) =
            hit_documents(&server, json!({"query": QUERY, "mode": mode, "top_k": 3}));
        assert!(unfiltered.is_disjoint(&hr_docs), "{mode}: {unfiltered:?}");
        for (filter, expected) in &cases {
            // Every document is one chunk, so a filter matching n documents fills
            // min(n, top_k) places, each with a matching document.
            let body = json!({"query": QUERY, "mode": mode, "top_k": 3, "filter": filter});
            let (found, hits) = hit_documents(&server, body);
            assert_eq!(hits, expected.len().min(3), "{mode} {filter}: {found:?}");
            if expected.len() <= 3 {
                assert_eq!(&found, expected, "{mode} {filter}");
            } else {
                assert!(found.is_subset(expected), "{mode} {filter}: {found:?}");
            }
        }
        // With expansion and a threshold the filter still holds.
        let body = json!({
            "query": QUERY, "mode": mode, "top_k": 5, "expand": 1, "min_score": 0.0,
            "filter": {"path_prefix": "hr"},
        });
        let (status, response) = search(&server, body);
        assert_eq!(status, 200, "{response}");
        let found: BTreeSet<String> = response["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["document_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(found, hr_docs, "{mode}: {response}");
    }
    let (_, none) = search(
        &server,
        json!({"query": QUERY, "filter": {"tags": ["nope"]}}),
    );
    assert_eq!(none["hits"], json!([]));
    assert_eq!(none["no_relevant_context"], true);

    // New tags for the same content update the document, and the filters follow.
    let body = upload(
        &server,
        "kb",
        &["archive"],
        &[(
            "hr/2024/travel.html",
            b"<html><head><title>Travel</title></head><body><p>Handbook travel rules: take the train for trips under four hours.</p></body></html>".to_vec(),
        )],
    );
    assert_eq!(body["documents"][0]["outcome"], "updated", "{body}");
    assert_eq!(body["documents"][0]["tags"], json!(["archive"]));
    for mode in MODES {
        let (found, _) = hit_documents(
            &server,
            json!({"query": QUERY, "mode": mode, "filter": {"tags": ["archive"]}}),
        );
        assert_eq!(found, set(&["hr/2024/travel.html"]), "{mode}");
        let (found, _) = hit_documents(
            &server,
            json!({"query": QUERY, "mode": mode, "filter": {"tags": ["hr"]}}),
        );
        assert_eq!(found, set(&["hr/policy.md", "hr/2024/leave.txt"]), "{mode}");
    }

    // Bad filters are 400s naming the field.
    let many_ids: Vec<String> = (0..1001).map(|i| format!("d{i}")).collect();
    for (filter, code, field) in [
        (
            json!({"tags": ["hr", " "]}),
            "invalid_filter",
            "filter.tags[1]",
        ),
        (
            json!({"document_ids": [""]}),
            "invalid_filter",
            "filter.document_ids[0]",
        ),
        (
            json!({"document_ids": many_ids}),
            "invalid_filter",
            "filter.document_ids",
        ),
        (
            json!({"mime_types": []}),
            "invalid_filter",
            "filter.mime_types",
        ),
        (
            json!({"path_prefix": ""}),
            "invalid_filter",
            "filter.path_prefix",
        ),
        (
            json!({"path_prefix": "/./"}),
            "invalid_filter",
            "filter.path_prefix",
        ),
        (
            json!({"tag": ["hr"]}),
            "invalid_json",
            "unknown field `tag`",
        ),
        (json!({"tags": "hr"}), "invalid_json", "filter.tags"),
    ] {
        let (status, error) = search(&server, json!({"query": QUERY, "filter": filter}));
        assert_eq!(status, 400, "{filter}: {error}");
        assert_eq!(error["error"]["code"], code, "{filter}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{filter}: {message}");
    }
}

#[test]
fn tags_from_uploads_and_imports() {
    let root = tempfile::tempdir().unwrap();
    let manuals = root.path().join("manuals");
    std::fs::create_dir_all(manuals.join("ops")).unwrap();
    std::fs::write(
        manuals.join("ops/runbook.md"),
        "# Runbook\n\nRestart the queue worker when the backlog alarm fires.",
    )
    .unwrap();
    std::fs::write(
        manuals.join("oncall.txt"),
        "The on-call engineer answers the backlog alarm within fifteen minutes.",
    )
    .unwrap();
    let roots = format!("[\"{}\"]", root.path().display());
    let server = Server::start_with_env(&[("ZHIKU_JOBS__IMPORT_ROOTS", &roots)]);

    // An import job tags every file; paths are relative to the imported directory.
    let (status, body) = server.post_json(
        "/v1/jobs",
        &json!({"kb": "ops", "path": manuals, "tags": ["ops, alarms", "ops"]}),
    );
    assert_eq!(status, 202, "{body}");
    let job = server.wait_job(body["job_id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["files_indexed"], 2, "{job}");
    let (status, doc) = server.get("/v1/kbs/ops/documents/ops/runbook.md");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["tags"], json!(["ops", "alarms"]));
    assert_eq!(doc["path"], "ops/runbook.md");

    // An asynchronous upload keeps the path as sent and the tags through its job.
    let (status, body) = server.upload_form(
        "ops",
        "?wait=false",
        &[
            ("tags", None, b"pager".to_vec()),
            ("document_id", None, b"escalation".to_vec()),
            (
                "file",
                Some("escalation/policy.md"),
                b"# Escalation\n\nPage the backlog owner when the alarm lasts an hour.".to_vec(),
            ),
        ],
    );
    assert_eq!(status, 202, "{body}");
    let job = server.wait_job(body["job_id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let (status, doc) = server.get("/v1/kbs/ops/documents/escalation");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        (&doc["name"], &doc["path"], &doc["tags"]),
        (
            &json!("policy.md"),
            &json!("escalation/policy.md"),
            &json!(["pager"])
        )
    );

    for mode in MODES {
        let search = |filter: Value| {
            let (status, body) = server.post_json(
                "/v1/kbs/ops/search",
                &json!({"query": "backlog alarm", "mode": mode, "filter": filter}),
            );
            assert_eq!(status, 200, "{body}");
            body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["document_id"].as_str().unwrap().to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            search(json!({"tags": ["alarms"]})),
            ["oncall.txt", "ops/runbook.md"],
            "{mode}"
        );
        assert_eq!(search(json!({"tags": ["pager"]})), ["escalation"], "{mode}");
        let escalation = search(json!({"path_prefix": "escalation"}));
        assert_eq!(escalation, ["escalation"], "{mode}");
        let ops = search(json!({"path_prefix": "ops"}));
        assert_eq!(ops, ["ops/runbook.md"], "{mode}");
    }

    // Bad tags are refused before anything is stored, naming the problem.
    let long = "x".repeat(65);
    let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    for (tags, problem) in [
        (vec![long], "longer than 64 characters"),
        (
            vec![many.join(",")],
            "33 tags given; a document may have at most 32",
        ),
        (many, "33 tags given; a document may have at most 32"),
    ] {
        let mut parts: Vec<(&str, Option<&str>, Vec<u8>)> = tags
            .iter()
            .map(|t| ("tags", None, t.as_bytes().to_vec()))
            .collect();
        parts.push(("file", Some("a.md"), b"# A\n\nText.".to_vec()));
        for query in ["", "?wait=false"] {
            let (status, error) = server.upload_form("ops", query, &parts);
            assert_eq!(status, 400, "{error}");
            assert_eq!(error["error"]["code"], "invalid_tags", "{error}");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains(problem), "{message}");
        }
        let (status, error) = server.post_json(
            "/v1/jobs",
            &json!({"kb": "ops", "path": manuals, "tags": tags}),
        );
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["code"], "invalid_tags", "{error}");
    }
    let (status, info) = server.get("/v1/kbs/ops");
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["documents"], 3, "nothing more was stored: {info}");
}
