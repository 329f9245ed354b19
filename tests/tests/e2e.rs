//! Upload → search → ask on the real binary, models and indexes.

use serde_json::{Value, json};
use zhiku_e2e::{Server, simple_pdf};

const HANDBOOK: &str = "\
# Zhiku Company Handbook

## Backups

The nightly backup job copies the PostgreSQL database to the offsite storage bucket at 02:00 UTC.
Restores are tested every quarter by the operations team.

## Vacation

Employees receive twenty-five days of paid vacation per year. Unused vacation days expire at the end of March.

## Security

Laptops must use full-disk encryption. Report a lost laptop to the security desk within one hour.
";

const CHINESE: &str = "\
数据库备份

公司的数据库每天凌晨两点自动备份到异地存储。每个季度由运维团队进行一次恢复演练。

报销制度

员工出差的交通和住宿费用可以在三十天内提交报销申请。超过期限的申请需要部门经理批准。

会议室预订

会议室通过内部日历系统预订，每次最长四小时。
";

fn top_document(hits: &[serde_json::Value]) -> (&str, &str) {
    let first = hits.first().expect("at least one hit");
    (
        first["document_name"].as_str().unwrap(),
        first["text"].as_str().unwrap(),
    )
}

#[test]
fn upload_search_and_ask() {
    let server = Server::start();
    let pdf = simple_pdf(&[
        "Quarterly report for the renewable energy group.\nThe solar panel division grew revenue by forty percent.",
        "The wind turbine division opened a new factory in Rotterdam.\nTurbine blades are now recycled.",
    ]);
    let (status, body) = server.upload(
        "handbook",
        &[
            ("handbook.md", HANDBOOK.as_bytes().to_vec()),
            ("制度.txt", CHINESE.as_bytes().to_vec()),
            ("report.pdf", pdf),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let documents = body["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 3, "{body}");
    for doc in documents {
        assert!(doc["id"].as_str().is_some_and(|id| !id.is_empty()), "{doc}");
        assert!(doc["chunks"].as_u64().unwrap() >= 1, "{doc}");
    }

    // English query: the vacation section of the handbook.
    let hits = server.search(
        "handbook",
        "How many days of paid vacation do employees get?",
        "hybrid",
    );
    let (name, text) = top_document(&hits);
    assert_eq!(name, "handbook.md");
    assert!(text.contains("twenty-five days"), "{text}");
    assert_eq!(
        hits[0]["heading"],
        json!("Zhiku Company Handbook > Vacation")
    );

    // Chinese query: the reimbursement paragraph.
    let hits = server.search("handbook", "出差费用报销的期限是多少天", "hybrid");
    let (name, text) = top_document(&hits);
    assert_eq!(name, "制度.txt");
    assert!(text.contains("三十天内提交报销申请"), "{text}");

    // Traditional characters against simplified text.
    let hits = server.search("handbook", "數據庫備份", "hybrid");
    let (name, text) = top_document(&hits);
    assert_eq!(name, "制度.txt");
    assert!(text.contains("数据库每天凌晨两点"), "{text}");

    // The PDF keeps its page numbers.
    let hits = server.search("handbook", "wind turbine factory", "hybrid");
    assert_eq!(hits[0]["document_name"], json!("report.pdf"));
    assert_eq!(hits[0]["page"], json!(2));

    // Each mode works on its own.
    let hits = server.search("handbook", "PostgreSQL offsite backup", "keyword");
    assert!(top_document(&hits).1.contains("PostgreSQL"));
    let hits = server.search("handbook", "When are database backups made?", "dense");
    assert_eq!(top_document(&hits).0, "handbook.md");

    // Ask: a non-empty answer whose citations point at the right document.
    let (status, body) = server.post_json(
        "/v1/kbs/handbook/ask",
        &json!({ "question": "At what time does the nightly backup job run?", "temperature": 0, "max_tokens": 64 }),
    );
    assert_eq!(status, 200, "{body}");
    let answer = body["answer"].as_str().unwrap();
    assert!(!answer.trim().is_empty(), "{body}");
    assert_eq!(body["grounded"], json!(true));
    // Sources are split into those the answer cites and the rest (`context`); source 1
    // is the backup section whichever list it is in.
    let cited = body["citations"].as_array().unwrap();
    let mut sources: Vec<&Value> = cited
        .iter()
        .chain(body["context"].as_array().unwrap())
        .collect();
    sources.sort_by_key(|c| c["index"].as_u64());
    assert!(!sources.is_empty(), "{body}");
    assert_eq!(body["sources_used"], json!(sources.len()), "{body}");
    assert_eq!(
        body["sources_dropped"],
        json!(0),
        "short chunks all fit: {body}"
    );
    assert_eq!(sources[0]["index"], json!(1));
    assert_eq!(sources[0]["document_name"], json!("handbook.md"));
    assert!(
        sources[0]["text"].as_str().unwrap().contains("02:00 UTC"),
        "{body}"
    );
    // The quote is the matching sentence, verbatim from the chunk.
    let quote = sources[0]["quote"].as_str().unwrap();
    assert!(quote.contains("02:00 UTC"), "{body}");
    assert!(sources[0]["text"].as_str().unwrap().contains(quote));
    // Every marker left in the answer names a cited source, and only cited ones are listed.
    for n in 1..=9 {
        let marked = answer.contains(&format!("[{n}]"));
        let listed = cited.iter().any(|c| c["index"] == json!(n));
        assert_eq!(marked, listed, "marker [{n}] vs citations: {body}");
    }
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // KB listing and deletion.
    let (status, body) = server.get("/v1/kbs");
    assert_eq!(status, 200);
    assert_eq!(body["kbs"][0]["name"], json!("handbook"));
    assert_eq!(body["kbs"][0]["documents"], json!(3));
    let (status, _) = server.delete("/v1/kbs/handbook");
    assert_eq!(status, 204);
    let (status, body) = server.post_json("/v1/kbs/handbook/search", &json!({ "query": "backup" }));
    assert_eq!(status, 404, "{body}");
    assert!(!server.data.path().join("kbs/handbook").exists());
}

#[test]
fn reupload_replaces_a_document() {
    let server = Server::start();
    let (status, _) = server.upload(
        "kb",
        &[("notes.md", b"# Notes\n\nThe door code is 4711.".to_vec())],
    );
    assert_eq!(status, 201);
    let (status, body) = server.upload(
        "kb",
        &[("notes.md", b"# Notes\n\nThe door code is 9876.".to_vec())],
    );
    assert_eq!(status, 201, "{body}");
    let hits = server.search("kb", "door code", "keyword");
    assert_eq!(hits.len(), 1, "old chunks must be gone: {hits:?}");
    assert!(hits[0]["text"].as_str().unwrap().contains("9876"));
    let (_, body) = server.get("/v1/kbs/kb");
    assert_eq!(body["documents"], json!(1));
}
