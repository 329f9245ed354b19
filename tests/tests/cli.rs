//! The command line: ingest a directory, then search and ask it, on the real models.

use std::process::Command;

use serde_json::Value;
use zhiku_e2e::{binary, models_dir};

fn zhiku(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("--data")
        .arg(data)
        .arg("--models")
        .arg(models_dir())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run zhiku");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

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
    std::fs::write(docs.path().join("nested/photo.png"), b"\x89PNG\r\n\x1a\n").unwrap();
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
        .find(|l| l.starts_with("nested/photo.png"))
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
    assert_eq!(body["citations"][0]["document_name"], "a.md", "{stdout}");
    assert!(!body["answer"].as_str().unwrap().is_empty());

    let (code, _, stderr) = zhiku(data.path(), &["search", "x", "--kb", "missing"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
