//! The OpenAI-compatible API, driven by the official `openai` Python client
//! (tests/fixtures/openai_client.py, installed by `ZHIKU_TEST_TOOLS=1 deploy/setup.sh`), plus the
//! raw stream shape the client hides.

use std::process::Command;

use serde_json::{Value, json};
use zhiku_e2e::{Server, test_tool, without_markers, workspace_root};

const BACKUP: &str = "# Backups\n\nThe nightly backup runs at two o'clock and copies the database to the archive server in building C.";

#[test]
fn an_openai_client_works_unchanged() {
    let server = Server::start();
    let (status, body) = server.upload("handbook", &[("backup.md", BACKUP.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    let (_, models) = server.get("/v1/models");
    let llm = models["data"][0]["id"].as_str().unwrap().to_string();
    let embedder = models["data"][1]["id"].as_str().unwrap().to_string();

    let output = Command::new(test_tool("python"))
        .arg(workspace_root().join("tests/fixtures/openai_client.py"))
        .args([server.url.as_str(), "handbook", &llm, &embedder])
        .output()
        .expect("run the OpenAI client");
    assert!(
        output.status.success(),
        "client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("client output is JSON");

    let ids: Vec<&str> = seen["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [llm.as_str(), embedder.as_str(), "kb:handbook"],
        "{seen}"
    );

    let kb = &seen["kb_completion"];
    assert!(kb["id"].as_str().unwrap().starts_with("chatcmpl-"), "{kb}");
    assert_eq!(kb["object"], "chat.completion");
    assert_eq!(kb["role"], "assistant");
    assert!(!kb["content"].as_str().unwrap().trim().is_empty(), "{kb}");
    let usage = &kb["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    let cited_or_given = kb["citations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(kb["context"].as_array().unwrap())
        .count();
    assert!(cited_or_given >= 1, "sources ride along: {kb}");

    let stream = &seen["kb_stream"];
    assert_eq!(
        stream["objects"],
        json!(["chat.completion.chunk"]),
        "{stream}"
    );
    assert_eq!(
        stream["ids"].as_array().unwrap().len(),
        1,
        "one id: {stream}"
    );
    assert_eq!(stream["first_role"], "assistant");
    // Temperature 0: the same answer, except that markers citing no source, removed from
    // the whole answer, were already sent in the stream.
    assert_eq!(
        without_markers(stream["content"].as_str().unwrap()),
        without_markers(kb["content"].as_str().unwrap()),
        "{stream}"
    );
    assert!(
        stream["first_citations"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(stream["finish_reasons"].as_array().unwrap().len(), 1);
    assert_eq!(stream["usage"], kb["usage"], "usage chunk at the end");
    assert_eq!(stream["last_choices"], 0, "the usage chunk has no choices");

    let follow_up = &seen["follow_up"];
    assert!(!follow_up["content"].as_str().unwrap().trim().is_empty());
    assert_ne!(
        follow_up["search_query"], "Where does it copy the database to?",
        "the follow-up was made standalone from the messages: {follow_up}"
    );

    assert!(!seen["bare"]["content"].as_str().unwrap().trim().is_empty());
    assert_eq!(seen["bare"]["has_citations"], false);
    assert!(seen["structured"]["time"].is_string(), "{seen}");

    let embeddings = &seen["embeddings"];
    assert_eq!(embeddings["count"], 2);
    assert_eq!(embeddings["dims"], json!([384, 384]));
    assert_eq!(embeddings["indexes"], json!([0, 1]));
    assert!(
        embeddings["same_as_float"].as_f64().unwrap() < 1e-6,
        "{embeddings}"
    );
    assert!((embeddings["norm"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    assert!(embeddings["usage"]["prompt_tokens"].as_u64().unwrap() >= 4);

    assert_eq!(
        seen["errors"],
        json!({"unknown_kb": 404, "unknown_model": 404, "n2": 400, "unknown_embedder": 404})
    );
}

#[test]
fn the_stream_has_the_openai_shape_on_the_wire() {
    let server = Server::start();
    let (status, body) = server.upload("handbook", &[("backup.md", BACKUP.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    let response = server
        .client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&json!({
            "model": "kb:handbook",
            "messages": [{"role": "user", "content": "How do I bake sourdough bread?"}],
            "stream": true
        }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // `data:` lines only, the last one `[DONE]`.
    let text = response.text().unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    assert!(
        !text.contains("event:"),
        "unnamed events, as OpenAI sends them: {text}"
    );
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // Nothing relevant in the KB: the "not found" answer is still delivered as content.
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Not found in the knowledge base.", "{text}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{last}");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );

    // Bad requests are refused before the stream starts, with an OpenAI-readable error.
    let (status, body) = server.post_json(
        "/v1/chat/completions",
        &json!({"model": "kb:handbook", "messages": [], "stream": true}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages")
    );
    let (status, body) = server.post_json(
        "/v1/chat/completions",
        &json!({"model": "kb:handbook", "messages": [{"role": "tool", "content": "x"}]}),
    );
    assert_eq!(status, 400, "{body}");
    // The question's length bound holds here as in /ask.
    let (status, body) = server.post_json(
        "/v1/chat/completions",
        &json!({"model": "kb:handbook",
                "messages": [{"role": "user", "content": "x".repeat(4001)}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "question_too_long", "{body}");
}
