//! Answer modes: `extractive` (the sources' own sentences, no model call), `generative`
//! and `auto`, through `/ask` (JSON and Server-Sent Events), conversations and
//! `/v1/chat/completions`; and the default LLM answering Chinese and English questions
//! correctly with citations.

use serde_json::{Value, json};
use zhiku_e2e::{CHINESE_LLM, EventStream, Server};

const HANDBOOK: &str = "# Packages\n\nDebian keeps its package lists in several places. To list the files that an installed package put on the system, use:\n\ndpkg -L packagename\n\nThe weather in the server room is always cold.\n\n# Backups\n\nThe nightly backup runs at two o'clock and copies the database to the archive server in building C.";
const HANDBOOK_ZH: &str = "# 软件包\n\n系统里有很多软件包。要查看某个软件包是否已经安装，请运行 dpkg-query -W 命令。这个命令很快。打印机在三楼。\n\n# 备份\n\n数据库每天凌晨两点自动备份到 C 楼的归档服务器。";

fn start(env: &[(&str, &str)]) -> Server {
    let server = Server::start_with_env(env);
    let (status, body) = server.upload(
        "kb",
        &[
            ("handbook.md", HANDBOOK.as_bytes().to_vec()),
            ("手册.md", HANDBOOK_ZH.as_bytes().to_vec()),
        ],
    );
    assert_eq!(status, 201, "{body}");
    server
}

fn ask(server: &Server, body: Value) -> Value {
    let (status, answer) = server.post_json("/v1/kbs/kb/ask", &body);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The text of every cited source of an answer.
fn cited_texts(answer: &Value) -> Vec<String> {
    answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn extractive_answers_quote_the_sources_without_the_model() {
    let server = start(&[]);
    let question = "How do I list the files of an installed package?";
    let answer = ask(
        &server,
        json!({"question": question, "answer_mode": "extractive"}),
    );
    let text = answer["answer"].as_str().unwrap();
    assert_eq!(answer["answer_mode"], "extractive", "{answer}");
    assert!(text.contains("dpkg -L packagename"), "{text}");
    assert!(text.contains("[1]"), "{text}");
    assert!(
        !text.contains("weather"),
        "only the passage around the best sentence: {text}"
    );
    assert_eq!(answer["usage"]["completion_tokens"], 0, "no model call");
    assert!(
        answer["citations"][0]["text"]
            .as_str()
            .unwrap()
            .contains("dpkg -L packagename")
    );

    // Chinese question, Chinese evidence.
    let answer = ask(
        &server,
        json!({"question": "怎么查看软件包是否已经安装？", "answer_mode": "extractive"}),
    );
    let text = answer["answer"].as_str().unwrap();
    assert!(text.contains("dpkg-query -W"), "{text}");
    assert!(!text.contains("打印机"), "{text}");

    // Streamed: sources, the answer as one token event, done.
    let response = server
        .client
        .post(format!("{}/v1/kbs/kb/ask", server.url))
        .header("accept", "text/event-stream")
        .json(&json!({"question": question, "answer_mode": "extractive"}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = EventStream::new(response);
    let (name, sources) = events.next_event().expect("sources");
    assert_eq!(name, "sources", "{sources}");
    let (streamed, _, done) = events.answer();
    assert_eq!(streamed, done["answer"].as_str().unwrap());
    assert!(streamed.contains("dpkg -L packagename"));

    // A follow-up in the same conversation, extractive too.
    let first = ask(
        &server,
        json!({"question": "When does the nightly backup run?", "answer_mode": "extractive"}),
    );
    assert!(
        first["answer"].as_str().unwrap().contains("two o'clock"),
        "{first}"
    );
    let follow = ask(
        &server,
        json!({"question": "Where does it copy the database to?", "answer_mode": "extractive",
               "conversation_id": first["conversation_id"]}),
    );
    assert!(
        follow["answer"]
            .as_str()
            .unwrap()
            .contains("archive server"),
        "{follow}"
    );
    let (status, conversation) = server.get(&format!(
        "/v1/conversations/{}",
        first["conversation_id"].as_str().unwrap()
    ));
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["turns"].as_array().unwrap().len(), 2);

    // The OpenAI adapter takes the mode as an extra field.
    let (status, completion) = server.post_json(
        "/v1/chat/completions",
        &json!({"model": "kb:kb", "messages": [{"role": "user", "content": question}],
                "answer_mode": "extractive"}),
    );
    assert_eq!(status, 200, "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(content.contains("dpkg -L packagename"), "{content}");

    // Bad input: an unknown mode, and JSON output from a mode that cannot write it.
    let (status, body) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({"question": question, "answer_mode": "poetic"}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({"question": question, "answer_mode": "extractive",
                "response_format": {"type": "json_object"}}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_answer_mode", "{body}");
}

#[test]
fn auto_falls_back_to_the_sources_when_the_model_cites_nothing() {
    // SmolLM2 cannot answer Chinese: its answer is not Chinese, so `auto` gives the
    // extractive one instead, which is.
    let server = start(&[]);
    let answer = ask(
        &server,
        json!({"question": "数据库什么时候备份？", "answer_mode": "auto", "temperature": 0,
               "max_tokens": 48}),
    );
    let text = answer["answer"].as_str().unwrap();
    let mode = answer["answer_mode"].as_str().unwrap();
    assert!(mode == "generative" || mode == "extractive", "{answer}");
    if mode == "extractive" {
        assert!(text.contains("凌晨两点"), "{text}");
    }
    // Whatever the mode, the answer is Chinese and cites a source.
    assert!(
        !answer["citations"].as_array().unwrap().is_empty(),
        "{answer}"
    );
}

#[test]
fn the_default_model_answers_in_the_question_language_with_citations() {
    let server = start(&[("ZHIKU_LLM__MODEL", CHINESE_LLM)]);
    for (question, expected) in [
        (
            "Which command lists the files of an installed package?",
            "dpkg -L",
        ),
        ("怎么查看软件包是否已经安装？", "dpkg-query -W"),
    ] {
        let answer = ask(
            &server,
            json!({"question": question, "temperature": 0, "max_tokens": 80}),
        );
        let text = answer["answer"].as_str().unwrap();
        assert_eq!(answer["answer_mode"], "generative", "{answer}");
        assert!(text.contains(expected), "{question}: {text}");
        assert!(
            cited_texts(&answer).iter().any(|t| t.contains(expected)),
            "{question}: cites a source holding the answer: {answer}"
        );
    }
}
