//! A corpus with metadata and the filters over it, shared by the tests of both stores so
//! that they are held to the same semantics.

use zhiku_schemas::{ChunkRecord, SearchFilter};

/// `(document id, path, MIME type, tags, vector direction)` of a corpus document.
type Document = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    [f32; 3],
);

const DOCUMENTS: [Document; 4] = [
    (
        "policy",
        "hr/policy.pdf",
        "application/pdf",
        &["hr", "public"],
        [1.0, 0.0, 0.0],
    ),
    (
        "leave",
        "hr/2024/leave.md",
        "text/markdown",
        &["hr"],
        [0.9, 0.1, 0.0],
    ),
    (
        "hrx",
        "hrx/a.md",
        "text/markdown",
        &["public"],
        [0.0, 1.0, 0.0],
    ),
    (
        "eng",
        "/eng/build.txt",
        "text/plain",
        &["eng"],
        [0.0, 0.0, 1.0],
    ),
];

/// Chunks per corpus document.
pub const CHUNKS: u32 = 3;

/// Every chunk of the corpus with its vector; all texts contain "alpha".
pub fn corpus() -> Vec<(ChunkRecord, Vec<f32>)> {
    let mut points = Vec::new();
    for (doc, path, mime, tags, direction) in DOCUMENTS {
        for i in 0..CHUNKS {
            let record = ChunkRecord {
                chunk_id: ChunkRecord::make_id(doc, i),
                document_id: doc.into(),
                document_name: path.rsplit('/').next().unwrap_or(path).into(),
                chunk_index: i,
                text: format!("alpha bravo {doc} part {i}"),
                heading: None,
                page: None,
                ocr: false,
                ocr_confidence: None,
                version: 1,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                path: path.into(),
                mime: mime.into(),
            };
            let mut vector = direction.to_vec();
            vector[2] += 0.01 * i as f32;
            points.push((record, vector));
        }
    }
    points
}

/// Filters over the corpus and the documents each must return, in id order.
pub fn cases() -> Vec<(SearchFilter, Vec<&'static str>)> {
    let filter = |json| serde_json::from_value::<SearchFilter>(json).unwrap();
    use serde_json::json;
    vec![
        (filter(json!({})), vec!["eng", "hrx", "leave", "policy"]),
        (
            filter(json!({"document_ids": ["leave", "eng", "nope"]})),
            vec!["eng", "leave"],
        ),
        (filter(json!({"tags": ["hr"]})), vec!["leave", "policy"]),
        (
            filter(json!({"tags": ["eng", "public"]})),
            vec!["eng", "hrx", "policy"],
        ),
        // Whole components only: "hr" is not a prefix of "hrx/a.md".
        (
            filter(json!({"path_prefix": "hr"})),
            vec!["leave", "policy"],
        ),
        (
            filter(json!({"path_prefix": "hr/"})),
            vec!["leave", "policy"],
        ),
        (filter(json!({"path_prefix": "./hr/2024"})), vec!["leave"]),
        (
            filter(json!({"path_prefix": "hr/policy.pdf"})),
            vec!["policy"],
        ),
        (filter(json!({"path_prefix": "h"})), vec![]),
        (filter(json!({"path_prefix": "eng"})), vec!["eng"]),
        (
            filter(json!({"mime_types": ["text/markdown", "text/plain"]})),
            vec!["eng", "hrx", "leave"],
        ),
        // Fields combine with AND.
        (
            filter(json!({"tags": ["public"], "mime_types": ["text/markdown"]})),
            vec!["hrx"],
        ),
        (
            filter(json!({"tags": ["hr"], "path_prefix": "hr", "document_ids": ["policy", "hrx"]})),
            vec!["policy"],
        ),
        (filter(json!({"tags": ["nope"]})), vec![]),
    ]
}

/// The distinct document ids of some hits, sorted.
pub fn documents(hits: &[(ChunkRecord, f32)]) -> Vec<String> {
    let mut ids: Vec<String> = hits.iter().map(|(r, _)| r.document_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}
