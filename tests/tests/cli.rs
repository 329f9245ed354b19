//! The command line: ingest a directory, then search and ask it, on the real models.

use serde_json::Value;
use zhiku_e2e::zhiku;

#[test]
fn ingest_directory_then_search_and_ask() {
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(docs.path().join("nested/deeper")).unwrap();
    std::fs::write(
        docs.path().join("a.md"),
        "# Parking\n\nVisitors park in garage B, level two.",
    )
    .unwrap();
    std::fs::write(
        docs.path().join("nested/deeper/b.txt"),
        "食堂每天中午十一点半开始供应午餐。\n\n周五提供素食套餐。",
    )
    .unwrap();
    std::fs::write(docs.path().join("nested/clip.gif"), b"GIF89a\x01\0\x01\0").unwrap();
    let data = tempfile::tempdir().unwrap();

    let docs_arg = docs.path().to_str().unwrap();
    let (code, stdout, stderr) = zhiku(data.path(), &["ingest", docs_arg, "--kb", "office"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Succeeded: 3 files (2 indexed, 0 unchanged, 1 failed)"),
        "{stdout}"
    );
    // The summary table names the failed file, its stage and its code.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("nested/clip.gif"))
        .unwrap_or_else(|| panic!("no failure row: {stdout}"));
    assert!(
        row.contains("parse") && row.contains("unsupported_type"),
        "{row}"
    );

    // A second run finds nothing changed.
    let (code, stdout, stderr) = zhiku(data.path(), &["ingest", docs_arg, "--kb", "office"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(0 indexed, 2 unchanged, 1 failed)"),
        "{stdout}"
    );

    let (code, stdout, stderr) = zhiku(
        data.path(),
        &["search", "午餐几点开始", "--kb", "office", "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let body: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        body["hits"][0]["document_name"], "nested/deeper/b.txt",
        "{stdout}"
    );
    assert_eq!(
        body["hits"][0]["document_id"], "nested/deeper/b.txt",
        "{stdout}"
    );

    let (code, stdout, stderr) = zhiku(
        data.path(),
        &[
            "ask",
            "Where do visitors park?",
            "--kb",
            "office",
            "--json",
            "--temperature",
            "0",
            "--max-tokens",
            "32",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let body: Value = serde_json::from_str(&stdout).unwrap();
    let first_source = body["citations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(body["context"].as_array().unwrap())
        .find(|c| c["index"] == 1)
        .cloned()
        .unwrap_or_default();
    assert_eq!(first_source["document_name"], "a.md", "{stdout}");
    assert!(!body["answer"].as_str().unwrap().is_empty());

    let (code, _, stderr) = zhiku(data.path(), &["search", "x", "--kb", "missing"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn ingest_against_a_running_server() {
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(docs.path().join("hr")).unwrap();
    std::fs::write(
        docs.path().join("hr/leave.md"),
        "# Leave\n\nEmployees get twenty days of paid leave a year.",
    )
    .unwrap();
    std::fs::write(docs.path().join("broken.pdf"), b"%PDF-1.4 broken").unwrap();
    let server = zhiku_e2e::Server::start();
    let docs_arg = docs.path().to_str().unwrap();

    // The server holds the data directory: a local run says so and points at --server.
    let (code, _, stderr) = zhiku(server.data.path(), &["ingest", docs_arg, "--kb", "hr"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("in use") && stderr.contains("--server"),
        "{stderr}"
    );

    // Through the server: same job machinery, same summary, partial failure exits 0.
    let (code, stdout, stderr) = zhiku(
        server.data.path(),
        &[
            "ingest",
            docs_arg,
            "--kb",
            "hr",
            "--server",
            &server.url,
            "--tag",
            "hr",
            "--tag",
            "leave, 2024",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(1 indexed, 0 unchanged, 1 failed)"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("broken.pdf") && l.contains("invalid_pdf")),
        "{stdout}"
    );
    let (status, doc) = server.get("/v1/kbs/hr/documents/hr/leave.md");
    assert_eq!(status, 200, "{doc}");
    // The same path and tags as a local import would give.
    assert_eq!(doc["path"], "hr/leave.md", "{doc}");
    assert_eq!(
        doc["tags"],
        serde_json::json!(["hr", "leave", "2024"]),
        "{doc}"
    );
    let hits = server.search("hr", "paid leave days", "keyword");
    assert_eq!(hits[0]["document_id"], "hr/leave.md");

    // Every file failing is a failed job and a non-zero exit.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("x.pdf"), b"%PDF-1.4 broken").unwrap();
    let (code, stdout, _) = zhiku(
        server.data.path(),
        &[
            "ingest",
            bad.path().to_str().unwrap(),
            "--kb",
            "hr",
            "--server",
            &server.url,
        ],
    );
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("Failed"), "{stdout}");
}

#[test]
fn eval_reports_exact_metrics_and_rejects_bad_queries() {
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(
        docs.path().join("a.md"),
        "# Parking\n\nVisitors park in garage B, level two.",
    )
    .unwrap();
    std::fs::write(
        docs.path().join("c.md"),
        "# Backups\n\nThe database is backed up every night at two o'clock.",
    )
    .unwrap();
    std::fs::write(
        docs.path().join("b.txt"),
        "食堂每天中午十一点半开始供应午餐。\n\n周五提供素食套餐。",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (code, _, stderr) = zhiku(
        data.path(),
        &["ingest", docs.path().to_str().unwrap(), "--kb", "office"],
    );
    assert_eq!(code, 0, "{stderr}");

    // Keyword search returns only the documents holding a query term, so every rank
    // below is certain.
    let queries = docs.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        [
            // a.md first: a perfect query.
            r#"{"query": "garage", "relevant": ["a.md"], "lang": "en"}"#,
            // Evidence is compared with whitespace collapsed and ASCII case folded.
            r#"{"query": "database backed up", "evidence": ["every  NIGHT at two"], "lang": "en"}"#,
            r#"{"query": "午餐", "evidence": ["十一点半开始供应午餐"], "lang": "zh"}"#,
            "",
            // Two relevant documents, only a.md found: nDCG = 1 / (1 + 1/log2(3)).
            r#"{"query": "garage", "relevant": ["a.md", "c.md"], "lang": "cross"}"#,
            // Untagged, and a miss: a.md is found, but the evidence is in c.md.
            r#"{"query": "parking", "evidence": ["database"]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let queries_arg = queries.to_str().unwrap();
    let (code, stdout, stderr) = zhiku(
        data.path(),
        &[
            "eval",
            "--kb",
            "office",
            "--queries",
            queries_arg,
            "--mode",
            "keyword",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["queries"], 5, "{stdout}");
    assert_eq!(report["documents"], 3, "{stdout}");
    assert_eq!(report["unanswerable"], serde_json::json!([]), "{stdout}");
    let modes = report["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 1, "{stdout}");
    let keyword = &modes[0];
    assert_eq!(keyword["mode"], "keyword");
    let close = |value: &Value, expected: f64| {
        let got = value
            .as_f64()
            .unwrap_or_else(|| panic!("not a number: {value}"));
        assert!(
            (got - expected).abs() < 1e-9,
            "{got} != {expected}: {stdout}"
        );
    };
    let partial_ndcg = 1.0 / (1.0 + 1.0 / 3f64.log2());
    let overall = &keyword["overall"];
    assert_eq!(overall["queries"], 5);
    close(&overall["hit_at_1"], 0.8);
    close(&overall["hit_at_5"], 0.8);
    close(&overall["mrr_at_10"], 0.8);
    close(&overall["ndcg_at_10"], (3.0 + partial_ndcg) / 5.0);
    let by_lang = &keyword["by_lang"];
    assert_eq!(
        by_lang.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["cross", "en", "zh"]
    );
    assert_eq!(by_lang["en"]["queries"], 2);
    close(&by_lang["en"]["hit_at_1"], 1.0);
    close(&by_lang["en"]["ndcg_at_10"], 1.0);
    close(&by_lang["zh"]["hit_at_1"], 1.0);
    close(&by_lang["cross"]["hit_at_1"], 1.0);
    close(&by_lang["cross"]["ndcg_at_10"], partial_ndcg);
    let per_query = keyword["per_query"].as_array().unwrap();
    let lines: Vec<&Value> = per_query.iter().map(|q| &q["line"]).collect();
    assert_eq!(lines, [1, 2, 3, 5, 6]);
    assert_eq!(per_query[2]["first_relevant_rank"], 1, "{stdout}");
    assert_eq!(per_query[4]["first_relevant_rank"], Value::Null, "{stdout}");

    // The table: every mode by default, overall and per tag.
    let (code, stdout, stderr) = zhiku(
        data.path(),
        &["eval", "--kb", "office", "--queries", queries_arg],
    );
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<(&str, &str)> = stdout
        .lines()
        .skip(2)
        .map(|l| {
            let mut cells = l.split_whitespace();
            (cells.next().unwrap(), cells.next().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 12, "{stdout}");
    assert_eq!(rows[0], ("hybrid", "all"), "{stdout}");
    assert_eq!(rows[4], ("dense", "all"), "{stdout}");
    assert_eq!(rows[11], ("keyword", "zh"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("keyword  all")
                && l.ends_with("5  0.800  0.800   0.800    0.723")),
        "{stdout}"
    );

    // A malformed line: exit 2, naming the line.
    std::fs::write(
        &queries,
        "{\"query\": \"garage\", \"relevant\": [\"a.md\"]}\n\
         {\"query\": \"garage\", \"relevant\": [\"a.md\"], \"evidence\": [\"garage\"]}\n",
    )
    .unwrap();
    let (code, _, stderr) = zhiku(
        data.path(),
        &["eval", "--kb", "office", "--queries", queries_arg],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("both"),
        "{stderr}"
    );
    std::fs::write(
        &queries,
        "{\"query\": \"garage\", \"relevant\": [\"a.md\"]}\nnot json\n",
    )
    .unwrap();
    let (code, _, stderr) = zhiku(
        data.path(),
        &["eval", "--kb", "office", "--queries", queries_arg],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");

    // An unknown knowledge base is named.
    std::fs::write(
        &queries,
        "{\"query\": \"garage\", \"relevant\": [\"a.md\"]}\n",
    )
    .unwrap();
    let (code, _, stderr) = zhiku(
        data.path(),
        &["eval", "--kb", "nope", "--queries", queries_arg],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("\"nope\" does not exist") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn ingest_tags_locally() {
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(docs.path().join("team")).unwrap();
    std::fs::write(
        docs.path().join("team/a.md"),
        "# Lunch\n\nThe canteen serves lunch from half past eleven.",
    )
    .unwrap();
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let docs_arg = docs.path().to_str().unwrap();
    let ingest = |tags: &[&str]| {
        let mut args = vec!["ingest", docs_arg, "--kb", "t"];
        for tag in tags {
            args.extend(["--tag", tag]);
        }
        zhiku(data.path(), &args)
    };

    let (code, stdout, stderr) = ingest(&["x", "y, x"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(1 indexed, 0 unchanged"), "{stdout}");
    // The same tags after normalisation: nothing to do.
    let (code, stdout, stderr) = ingest(&["x,y"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(0 indexed, 1 unchanged"), "{stdout}");
    // Other tags: the document is written again with them.
    let (code, stdout, stderr) = ingest(&["z"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("(1 indexed, 0 unchanged"), "{stdout}");
    let long = "x".repeat(65);
    let (code, _, stderr) = ingest(&[&long]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("longer than 64 characters"), "{stderr}");

    let server = zhiku_e2e::Server::start_in(data.clone(), &[]);
    let (status, doc) = server.get("/v1/kbs/t/documents/team/a.md");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["tags"], serde_json::json!(["z"]), "{doc}");
    assert_eq!(doc["path"], "team/a.md", "{doc}");
    for (tag, hits) in [("z", 1), ("x", 0)] {
        let (status, body) = server.post_json(
            "/v1/kbs/t/search",
            &serde_json::json!({"query": "lunch", "filter": {"tags": [tag]}}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["hits"].as_array().unwrap().len(),
            hits,
            "{tag}: {body}"
        );
    }
}
