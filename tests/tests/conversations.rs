//! Conversations on the real binary and models: follow-ups rewritten into standalone
//! search queries, history that survives a restart, feedback, the fine-tuning export and
//! history fitted to a small context window.

use serde_json::{Value, json};
use zhiku_e2e::Server;

const BACKUP: &str = "\
# Zhiku Backup

Zhiku Backup is a cloud backup service for small offices. The Pro plan of Zhiku Backup
costs twelve euros per month and comes with hourly snapshots, two terabytes of encrypted
storage and a telephone hotline for restores.
";

/// Says \"include\" at every turn, so that a bare \"What does it include?\" finds it.
const CAFETERIA: &str = "\
# Cafeteria

The lunch menu includes a soup, a main course and a dessert. Every meal includes a drink.
What the menu includes changes every week.
";

const BACKUP_ZH: &str = "智库备份是一款面向小型办公室的云备份服务。智库备份专业版每月十二欧元，提供每小时快照、两TB加密存储和恢复热线。";

const CAFETERIA_ZH: &str =
    "食堂的午餐包括汤、主菜和甜点。每份套餐都包括一杯饮料。包括的菜品每周更换。";

fn ask(server: &Server, kb: &str, body: Value) -> Value {
    let (status, response) = server.post_json(&format!("/v1/kbs/{kb}/ask"), &body);
    assert_eq!(status, 200, "{body}: {response}");
    response
}

/// The sources given to the model, citations and context together, in rank order.
fn sources(response: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = response["citations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(response["context"].as_array().unwrap())
        .cloned()
        .collect();
    all.sort_by_key(|c| c["index"].as_u64());
    all
}

#[test]
fn follow_up_finds_its_document_only_through_the_rewrite() {
    let server = Server::start();
    for (kb, files) in [
        (
            "en",
            [
                ("backup.md", BACKUP.as_bytes().to_vec()),
                ("cafeteria.md", CAFETERIA.as_bytes().to_vec()),
            ],
        ),
        (
            "zh",
            [
                ("智库备份.txt", BACKUP_ZH.as_bytes().to_vec()),
                ("食堂.txt", CAFETERIA_ZH.as_bytes().to_vec()),
            ],
        ),
    ] {
        let (status, body) = server.upload(kb, &files);
        assert_eq!(status, 201, "{body}");
    }

    for (kb, question, follow_up, right, wrong, subject) in [
        (
            "en",
            "What is the Zhiku Backup Pro plan?",
            "What does it include?",
            "backup.md",
            "cafeteria.md",
            &["Zhiku", "Backup", "Pro", "plan"][..],
        ),
        (
            "zh",
            "智库备份的专业版是什么？",
            "它包括什么？",
            "智库备份.txt",
            "食堂.txt",
            &["智库", "备份", "专业版"][..],
        ),
    ] {
        // The premise: the follow-up on its own finds the wrong document first.
        let hits = server.search(kb, follow_up, "hybrid");
        assert_eq!(hits[0]["document_name"], wrong, "{hits:?}");

        let first = ask(
            &server,
            kb,
            json!({"question": question, "temperature": 0, "max_tokens": 48}),
        );
        let id = first["conversation_id"].as_str().unwrap().to_string();
        assert!(id.starts_with("conv_"), "{first}");
        assert_eq!(first["search_query"], question, "no history, no rewrite");
        assert!(first.get("rewrite").is_none(), "{first}");
        assert_eq!(first["history_turns_used"], 0);
        assert_eq!(sources(&first)[0]["document_name"], right, "{first}");

        let second = ask(
            &server,
            kb,
            json!({"question": follow_up, "conversation_id": id, "temperature": 0, "max_tokens": 48}),
        );
        assert_eq!(second["conversation_id"], id.as_str());
        let query = second["search_query"].as_str().unwrap();
        assert_ne!(query, follow_up, "{second}");
        assert!(
            ["model", "keywords"].contains(&second["rewrite"].as_str().unwrap()),
            "{second}"
        );
        assert!(
            subject.iter().any(|w| query.contains(w)),
            "the rewrite carries the subject: {second}"
        );
        assert_eq!(sources(&second)[0]["document_name"], right, "{second}");
        assert_eq!(second["history_turns_used"], 1, "{second}");
    }
}

#[test]
fn conversations_survive_a_restart_and_can_be_deleted() {
    let server = Server::start();
    for kb in ["a", "b"] {
        let (status, body) = server.upload(kb, &[("backup.md", BACKUP.as_bytes().to_vec())]);
        assert_eq!(status, 201, "{body}");
    }
    let small = |question: &str, id: Option<&str>| {
        let mut body = json!({"question": question, "temperature": 0, "max_tokens": 16});
        if let Some(id) = id {
            body["conversation_id"] = json!(id);
        }
        body
    };
    let first = ask(
        &server,
        "a",
        small("What is the Zhiku Backup Pro plan?", None),
    );
    let id = first["conversation_id"].as_str().unwrap().to_string();
    let second = ask(
        &server,
        "a",
        small("How much does it cost?", Some(id.as_str())),
    );
    let other = ask(&server, "b", small("What is Zhiku Backup?", None));
    let other_id = other["conversation_id"].as_str().unwrap().to_string();
    assert_ne!(id, other_id);

    let (status, conversation) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["id"], id.as_str());
    assert_eq!(conversation["kb"], "a");
    let turns = conversation["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{conversation}");
    for (i, (turn, response)) in turns.iter().zip([&first, &second]).enumerate() {
        assert_eq!(turn["turn"], i + 1);
        assert_eq!(turn["answer"], response["answer"], "{turn}");
        assert_eq!(turn["search_query"], response["search_query"], "{turn}");
        assert_eq!(
            turn["citations"].as_array().unwrap().len(),
            response["citations"].as_array().unwrap().len()
        );
        assert!(turn["created_at"].as_str().is_some_and(|t| !t.is_empty()));
    }
    assert_eq!(turns[1]["question"], "How much does it cost?");

    let (status, list) = server.get("/v1/conversations?kb=a");
    assert_eq!(status, 200, "{list}");
    let listed = list["conversations"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["turns"], 2);

    // A conversation of another knowledge base is not found there, nor is an unknown one.
    let (status, body) =
        server.post_json("/v1/kbs/b/ask", &small("And the price?", Some(id.as_str())));
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let unknown = "conv_0123456789abcdef0123456789abcdef";
    let (status, body) = server.post_json("/v1/kbs/a/ask", &small("Hi?", Some(unknown)));
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.post_json("/v1/kbs/a/ask", &small("Hi?", Some("42")));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_conversation_id");
    let (status, body) = server.post_json("/v1/kbs/a/ask", &json!({"question": "x".repeat(4001)}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "question_too_long");
    // Nothing was recorded by the refused requests.
    let (_, after) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(after, conversation);

    // A restart keeps everything.
    let data = server.kill();
    let server = Server::start_in(data, &[]);
    let (status, reloaded) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded, conversation);
    // And the conversation goes on where it was.
    let third = ask(&server, "a", small("Who sells it?", Some(id.as_str())));
    assert_eq!(third["conversation_id"], id.as_str());
    let (_, reloaded) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(reloaded["turns"][2]["turn"], 3, "{reloaded}");

    let (status, body) = server.delete(&format!("/v1/conversations/{id}"));
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = server.delete(&format!("/v1/conversations/{id}"));
    assert_eq!(status, 404);
    let (status, _) = server.get(&format!("/v1/conversations/{unknown}"));
    assert_eq!(status, 404);
    let (status, body) = server.get("/v1/conversations/nope");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_conversation_id");

    // Deleting a knowledge base deletes its conversations.
    let (status, _) = server.get(&format!("/v1/conversations/{other_id}"));
    assert_eq!(status, 200);
    let (status, _) = server.delete("/v1/kbs/b");
    assert_eq!(status, 204);
    let (status, _) = server.get(&format!("/v1/conversations/{other_id}"));
    assert_eq!(status, 404);
    let (_, list) = server.get("/v1/conversations");
    assert_eq!(list["conversations"], json!([]), "{list}");
}

/// The export as text, with its content type.
fn export(server: &Server, kb: &str) -> (u16, String, String) {
    let response = server
        .client
        .get(format!("{}/v1/kbs/{kb}/export/qa.jsonl", server.url))
        .send()
        .expect("export");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().unwrap())
}

fn roles(record: &Value) -> Vec<&str> {
    record["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect()
}

#[test]
fn good_answers_are_exported_as_fine_tuning_data() {
    let server = Server::start();
    let (status, body) = server.upload(
        "kb",
        &[
            ("backup.md", BACKUP.as_bytes().to_vec()),
            ("cafeteria.md", CAFETERIA.as_bytes().to_vec()),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let question = "What is the Zhiku Backup Pro plan?";
    let first = ask(
        &server,
        "kb",
        json!({"question": question, "temperature": 0, "max_tokens": 48}),
    );
    let id = first["conversation_id"].as_str().unwrap().to_string();
    let second = ask(
        &server,
        "kb",
        json!({"question": "What does it include?", "conversation_id": id, "temperature": 0, "max_tokens": 48}),
    );
    let feedback =
        |body: Value| server.post_json(&format!("/v1/conversations/{id}/feedback"), &body);

    // Nothing rated yet: an empty export.
    let (status, content_type, text) = export(&server, "kb");
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-ndjson");
    assert_eq!(text, "");

    let (status, body) = feedback(json!({"turn": 1, "rating": "good", "comment": "exact"}));
    assert_eq!(status, 204, "{body}");
    let (status, body) = feedback(json!({"turn": 2, "rating": "bad"}));
    assert_eq!(status, 204, "{body}");
    let (_, conversation) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(conversation["turns"][0]["feedback"]["rating"], "good");
    assert_eq!(conversation["turns"][0]["feedback"]["comment"], "exact");
    assert_eq!(conversation["turns"][1]["feedback"]["rating"], "bad");

    let (status, _, text) = export(&server, "kb");
    assert_eq!(status, 200);
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(records.len(), 1, "only the good turn: {text}");
    let record = &records[0];
    assert_eq!(roles(record), ["system", "user", "assistant"], "{record}");
    let user = record["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains(question), "{user}");
    // The sources the answer was grounded on, by their quoted sentence and number.
    let top = &sources(&first)[0];
    assert!(
        user.contains(&format!("[1] {}", top["document_name"].as_str().unwrap())),
        "{user}"
    );
    assert!(user.contains(top["quote"].as_str().unwrap()), "{user}");
    assert_eq!(record["messages"][2]["content"], first["answer"]);
    assert_eq!(record["conversation_id"], id.as_str());
    assert_eq!(record["turn"], 1);
    assert_eq!(
        record["citations"].as_array().unwrap().len(),
        first["citations"].as_array().unwrap().len()
    );

    // Re-rated good, the follow-up is exported with the history the model saw.
    let (status, _) = feedback(json!({"turn": 2, "rating": "good"}));
    assert_eq!(status, 204);
    let (_, _, text) = export(&server, "kb");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    assert_eq!(records[1]["turn"], 2);
    assert_eq!(second["history_turns_used"], 1, "{second}");
    assert_eq!(
        roles(&records[1]),
        ["system", "user", "assistant", "user", "assistant"],
        "{}",
        records[1]
    );
    assert_eq!(records[1]["messages"][1]["content"], question);
    assert_eq!(records[1]["messages"][4]["content"], second["answer"]);

    // Bad feedback is a 400 naming the field; nothing changes.
    for (body, code, field) in [
        (
            json!({"turn": 1, "rating": "great"}),
            "invalid_json",
            "rating",
        ),
        (json!({"turn": 1}), "invalid_json", "rating"),
        (json!({"rating": "good"}), "invalid_json", "turn"),
        (
            json!({"turn": -1, "rating": "good"}),
            "invalid_json",
            "turn",
        ),
        (json!({"turn": 0, "rating": "good"}), "invalid_turn", "turn"),
        (json!({"turn": 3, "rating": "good"}), "invalid_turn", "turn"),
        (
            json!({"turn": 1, "rating": "good", "comment": "x".repeat(2001)}),
            "invalid_comment",
            "comment",
        ),
        (
            json!({"turn": 1, "rating": "good", "stars": 5}),
            "invalid_json",
            "stars",
        ),
    ] {
        let (status, response) = feedback(body.clone());
        assert_eq!(status, 400, "{body}: {response}");
        assert_eq!(response["error"]["code"], code, "{body}: {response}");
        assert!(
            response["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{body}: {response}"
        );
    }
    let (_, after) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(after["turns"][0]["feedback"]["comment"], "exact", "{after}");
    let (status, _) = server.post_json(
        "/v1/conversations/conv_0123456789abcdef0123456789abcdef/feedback",
        &json!({"turn": 1, "rating": "good"}),
    );
    assert_eq!(status, 404);
    let (status, _, _) = export(&server, "nope");
    assert_eq!(status, 404);
}

#[test]
fn history_is_cut_to_the_context_window() {
    let server = Server::start_with_env(&[("ZHIKU_LLM__N_CTX", "512")]);
    let (status, body) = server.upload("kb", &[("backup.md", BACKUP.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    // A long first question: about 300 tokens, which fits the window on its own turn
    // but not again as history beside a later question and its source.
    let long = format!(
        "I am preparing a detailed report for the office manager about how our small office protects its data. {} So, what is the Zhiku Backup Pro plan?",
        "The report must compare every option we have looked at, explain the monthly costs, list the storage limits, describe how restores work and say who we call when something goes wrong. ".repeat(7)
    );
    let body = |question: &str, id: Option<&str>| {
        let mut body = json!({"question": question, "temperature": 0, "max_tokens": 32});
        if let Some(id) = id {
            body["conversation_id"] = json!(id);
        }
        body
    };
    let first = ask(&server, "kb", body(&long, None));
    let id = first["conversation_id"].as_str().unwrap().to_string();
    let second = ask(&server, "kb", body("How much does it cost?", Some(&id)));
    assert_eq!(second["history_turns_used"], 0, "{second}");
    // The subject comes from the sentence that asks, not the long preamble.
    let query = second["search_query"].as_str().unwrap();
    assert!(query.contains("Zhiku Backup Pro plan"), "{second}");
    let third = ask(&server, "kb", body("What does it come with?", Some(&id)));
    // Turn 2 fits beside the source; turn 1 does not.
    assert_eq!(third["history_turns_used"], 1, "{third}");
    assert!(third["sources_used"].as_u64().unwrap() >= 1, "{third}");
    assert_eq!(third["grounded"], true);
    let (_, conversation) = server.get(&format!("/v1/conversations/{id}"));
    assert_eq!(conversation["turns"].as_array().unwrap().len(), 3);
    assert_eq!(conversation["turns"][2]["history_turns_used"], 1);
}
