//! Every supported format through the real server: DOCX, CSV, legacy encodings, and
//! tables that stay whole or repeat their header when split.

use std::io::Write;

use serde_json::json;
use zhiku_e2e::Server;

fn docx(body: &str) -> Vec<u8> {
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(document.as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

fn para(style: Option<&str>, text: &str) -> String {
    let style = style
        .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
        .unwrap_or_default();
    format!("<w:p>{style}<w:r><w:t>{text}</w:t></w:r></w:p>")
}

fn row(cells: &[&str]) -> String {
    let cells: String = cells
        .iter()
        .map(|c| format!("<w:tc><w:p><w:r><w:t>{c}</w:t></w:r></w:p></w:tc>"))
        .collect();
    format!("<w:tr>{cells}</w:tr>")
}

#[test]
fn docx_csv_and_encodings() {
    let server = Server::start();

    // DOCX: headings become the chunk's heading path; a small table stays in one chunk.
    let body = [
        para(Some("Heading1"), "Expense policy"),
        para(
            None,
            "Receipts are required for every expense above fifty euros.",
        ),
        para(Some("Heading2"), "Limits"),
        format!(
            "<w:tbl>{}{}{}</w:tbl>",
            row(&["Category", "Daily limit"]),
            row(&["Hotel", "150 EUR"]),
            row(&["Meals", "60 EUR"])
        ),
    ]
    .concat();
    let (status, body) = server.upload("kb", &[("policy.docx", docx(&body))]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["documents"][0]["format"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let hits = server.search("kb", "hotel daily limit", "keyword");
    let table = hits
        .iter()
        .find(|h| h["text"].as_str().unwrap().contains("Hotel"))
        .unwrap_or_else(|| panic!("{hits:?}"));
    let text = table["text"].as_str().unwrap();
    assert!(
        text.contains("Category | Daily limit") && text.contains("Meals | 60 EUR"),
        "{text}"
    );
    assert_eq!(table["heading"], "Expense policy > Limits");

    // CSV larger than one chunk: every chunk starts with the header row.
    let mut csv = String::from("sku,name,warehouse,notes\n");
    for i in 0..300 {
        csv.push_str(&format!(
            "SKU-{i:04},\"Widget {i}, large\",Shanghai-{},restock when below {i} units\n",
            i % 5
        ));
    }
    let (status, body) = server.upload("kb", &[("stock.csv", csv.into_bytes())]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["documents"][0]["format"], "text/csv");
    assert!(
        body["documents"][0]["chunks"].as_u64().unwrap() >= 3,
        "{body}"
    );
    let (status, found) = server.post_json(
        "/v1/kbs/kb/search",
        &json!({"query": "widget restock warehouse", "top_k": 50, "mode": "keyword"}),
    );
    assert_eq!(status, 200);
    let csv_hits: Vec<&str> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["document_name"] == "stock.csv")
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(csv_hits.len() >= 3, "{found}");
    for text in csv_hits {
        assert!(
            text.starts_with("sku | name | warehouse | notes\n"),
            "{text}"
        );
        assert!(
            text.contains("Widget"),
            "quoted commas stay inside their cell: {text}"
        );
    }

    // Legacy encodings and UTF-16 are decoded, not indexed as garbage.
    let (big5, _, _) = encoding_rs::BIG5.encode("會議室預訂須提前一天在系統中登記。");
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "報銷單必須由部門經理簽字。".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    let (status, body) = server.upload(
        "kb",
        &[("rooms.txt", big5.into_owned()), ("claims.txt", utf16)],
    );
    assert_eq!(status, 201, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    // Traditional text is found with a simplified query (folded by the analyzer).
    let hits = server.search("kb", "会议室预订", "keyword");
    assert_eq!(hits[0]["document_name"], "rooms.txt", "{hits:?}");
    assert!(hits[0]["text"].as_str().unwrap().contains("會議室"));
    let hits = server.search("kb", "报销单 部门经理", "keyword");
    assert_eq!(hits[0]["document_name"], "claims.txt", "{hits:?}");
}
