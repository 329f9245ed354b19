//! The primer concepts made visible: model size, quantization and context
//! (`GET /v1/models`), and tokens versus words (`POST /v1/tokenize`).

use serde_json::json;
use zhiku_e2e::Server;

#[test]
fn models_and_tokens_are_visible() {
    let server = Server::start();
    let (status, body) = server.get("/v1/models");
    assert_eq!(status, 200, "{body}");
    // The OpenAI shape, with our fields in each entry.
    assert_eq!(body["object"], "list", "{body}");
    let models = body["data"].as_array().unwrap();
    assert_eq!(models.len(), 2, "no knowledge base yet: {body}");
    assert!(
        models
            .iter()
            .all(|m| m["object"] == "model" && m["id"] == m["name"])
    );

    let llm = &models[0];
    assert_eq!(llm["role"], "llm", "{body}");
    assert_eq!(llm["engine"], "llama.cpp");
    assert_eq!(llm["parameters_label"], "135M", "{llm}");
    assert_eq!(llm["quantization"], "Q4_1", "{llm}");
    assert_eq!(llm["context_length"], 8192, "{llm}");
    assert_eq!(llm["context_window"], 2048, "{llm}");
    assert_eq!(llm["chat_template"], "model", "{llm}");
    assert!(llm["file_size"].as_u64().unwrap() > 50_000_000, "{llm}");

    let embedder = &models[1];
    assert_eq!(embedder["role"], "embedder");
    assert_eq!(embedder["name"], "multilingual-e5-small-q4");
    assert_eq!(embedder["embedding_dimension"], 384);
    assert_eq!(embedder["quantization"], "Q4_0", "{embedder}");
    assert!(
        embedder["path"]
            .as_str()
            .unwrap()
            .ends_with("e5-small-q4_0.gguf")
    );

    // Every knowledge base is a model for chat completions.
    let (status, _) = server.upload("handbook", &[("a.md", b"# A\n\nText.".to_vec())]);
    assert_eq!(status, 201);
    let (_, body) = server.get("/v1/models");
    let kb = &body["data"][2];
    assert_eq!(kb["id"], "kb:handbook", "{body}");
    assert_eq!(kb["role"], "knowledge_base");
    assert!(
        kb["description"].as_str().unwrap().contains("1 documents"),
        "{kb}"
    );

    let (status, body) = server.post_json("/v1/tokenize", &json!({"text": "我想吃虾丸"}));
    assert_eq!(status, 200, "{body}");
    let words: Vec<&str> = body["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(words.contains(&"虾丸"), "jieba keeps 虾丸 whole: {body}");
    let tokens = body["tokens"].as_array().unwrap();
    assert_eq!(body["count"], tokens.len());
    assert!(tokens.len() >= 3, "{body}");
    assert!(tokens.iter().all(|t| t["id"].as_i64().is_some()));

    // English: the LLM's pieces spell the text back; the index stems.
    let (_, body) = server.post_json("/v1/tokenize", &json!({"text": "Running backups nightly"}));
    let spelled: String = body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["piece"].as_str().unwrap())
        .collect();
    assert_eq!(spelled.trim(), "Running backups nightly", "{body}");
    assert!(
        body["words"].as_array().unwrap().contains(&json!("backup")),
        "{body}"
    );

    let (status, body) = server.post_json("/v1/tokenize", &json!({"text": ""}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post_json("/v1/tokenize", &json!({"txt": "x"}));
    assert_eq!(status, 400, "{body}");
}
