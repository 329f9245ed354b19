//! Search options over HTTP: per-side scores, RRF and weighted fusion, thresholds.

use serde_json::{Value, json};
use zhiku_e2e::Server;

fn search(server: &Server, body: Value) -> (u16, Value) {
    server.post_json("/v1/kbs/kb/search", &body)
}

fn ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["chunk_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn scores_fusion_and_thresholds() {
    let server = Server::start();
    let docs: Vec<(&str, Vec<u8>)> = vec![
        ("backup.md", b"# Backups\n\nThe nightly backup copies the database to the archive server at two o'clock.".to_vec()),
        ("signals.md", b"# Signals\n\nSend SIGKILL to stop a process that ignores SIGTERM.".to_vec()),
        ("network.md", b"# Network\n\nThe office network uses DHCP; static addresses are reserved for printers.".to_vec()),
        ("restore.md", b"# Restore\n\nTo restore data, ask the operations team for the archive copy of the database.".to_vec()),
    ];
    let (status, body) = server.upload("kb", &docs);
    assert_eq!(status, 201, "{body}");

    // Hybrid (default: weighted): each hit carries the raw score of every side that found
    // it; the fused score is on the normalised 0-1 scale.
    let (status, hybrid) = search(
        &server,
        json!({"query": "database backup archive", "top_k": 4}),
    );
    assert_eq!(status, 200, "{hybrid}");
    assert_eq!(hybrid["no_relevant_context"], false);
    let top = &hybrid["hits"][0];
    assert_eq!(top["document_name"], "backup.md", "{top}");
    assert!(top["dense_score"].as_f64().unwrap() > 0.0, "{top}");
    assert!(top["keyword_score"].as_f64().unwrap() > 0.0, "{top}");
    let fused = top["score"].as_f64().unwrap();
    assert!(fused > 0.5 && fused <= 1.0 + 1e-6, "weighted scale: {top}");

    // RRF on request: scores on its 1/(k + rank) scale.
    let (status, rrf) = search(
        &server,
        json!({"query": "database backup archive", "top_k": 4, "fusion": "rrf"}),
    );
    assert_eq!(status, 200, "{rrf}");
    let top = &rrf["hits"][0];
    assert!(top["score"].as_f64().unwrap() < 0.1, "RRF scale: {top}");

    // Single modes report their own scale in `score`.
    let (_, dense) = search(
        &server,
        json!({"query": "database backup archive", "mode": "dense", "top_k": 4}),
    );
    for hit in dense["hits"].as_array().unwrap() {
        assert_eq!(hit["score"], hit["dense_score"], "{hit}");
        assert!(hit["keyword_score"].is_null());
    }
    let (_, keyword) = search(
        &server,
        json!({"query": "database backup archive", "mode": "keyword", "top_k": 4}),
    );
    for hit in keyword["hits"].as_array().unwrap() {
        assert_eq!(hit["score"], hit["keyword_score"], "{hit}");
    }

    // Weighted fusion at the extremes follows one side's order.
    let (status, all_dense) = search(
        &server,
        json!({"query": "database backup archive", "fusion": "weighted", "alpha": 1.0, "top_k": 4}),
    );
    assert_eq!(status, 200, "{all_dense}");
    assert_eq!(ids(&all_dense)[0], ids(&dense)[0]);
    let (_, all_keyword) = search(
        &server,
        json!({"query": "database backup archive", "fusion": "weighted", "alpha": 0.0, "top_k": 4}),
    );
    assert_eq!(ids(&all_keyword)[0], ids(&keyword)[0]);
    let top = all_keyword["hits"][0]["score"].as_f64().unwrap();
    assert!((top - 1.0).abs() < 1e-6, "normalised to 1: {all_keyword}");

    // An exact identifier is found by the keyword side whatever the dense side thinks.
    let (_, sig) = search(&server, json!({"query": "SIGKILL", "top_k": 1}));
    assert_eq!(sig["hits"][0]["document_name"], "signals.md", "{sig}");

    // A threshold nothing reaches: an explicit "no relevant context" signal.
    let (status, none) = search(
        &server,
        json!({"query": "database backup", "mode": "dense", "min_score": 0.999}),
    );
    assert_eq!(status, 200);
    assert_eq!(none["hits"], json!([]));
    assert_eq!(none["no_relevant_context"], true);
    let (_, some) = search(
        &server,
        json!({"query": "database backup", "mode": "dense", "min_score": 0.2}),
    );
    for hit in some["hits"].as_array().unwrap() {
        assert!(hit["score"].as_f64().unwrap() >= 0.2, "{hit}");
    }

    // Expansion: each hit comes with the chunks around it, from the same document.
    let manual: String = (0..6)
        .map(|i| {
            format!(
                "## Step {i}\n\n{}",
                format!("Calibration step {i} of the spectrometer needs patience. ").repeat(30)
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let (status, body) = server.upload("kb", &[("manual.md", manual.into_bytes())]);
    assert_eq!(status, 201, "{body}");
    let (status, expanded) = search(
        &server,
        json!({"query": "spectrometer calibration", "mode": "keyword", "top_k": 3, "expand": 1}),
    );
    assert_eq!(status, 200, "{expanded}");
    for hit in expanded["hits"].as_array().unwrap() {
        let index = hit["chunk_index"].as_u64().unwrap();
        let neighbours: Vec<u64> = hit["neighbors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["chunk_index"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = [index.checked_sub(1), Some(index + 1)]
            .into_iter()
            .flatten()
            .filter(|&i| i < body["documents"][0]["chunks"].as_u64().unwrap())
            .collect();
        assert_eq!(neighbours, expected, "{hit}");
        for n in hit["neighbors"].as_array().unwrap() {
            assert!(
                n["chunk_id"]
                    .as_str()
                    .unwrap()
                    .starts_with(hit["document_id"].as_str().unwrap())
            );
        }
    }
    let (_, plain) = search(
        &server,
        json!({"query": "spectrometer calibration", "mode": "keyword", "top_k": 3}),
    );
    assert!(
        plain["hits"][0]["neighbors"].is_null(),
        "no expansion unless asked"
    );

    // Bad options are 400s naming the problem.
    for (body, code) in [
        (json!({"query": "x", "alpha": 1.5}), "invalid_alpha"),
        (json!({"query": "x", "rrf_k": 0}), "invalid_rrf_k"),
        (json!({"query": "x", "fusion": "average"}), "invalid_json"),
        (json!({"query": "x", "expand": 6}), "invalid_expand"),
    ] {
        let (status, error) = search(&server, body.clone());
        assert_eq!(
            (status, error["error"]["code"].clone()),
            (400, json!(code)),
            "{body}: {error}"
        );
    }
}
