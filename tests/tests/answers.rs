//! `/ask` beyond one JSON answer: streaming as Server-Sent Events, JSON-schema output, the
//! "not found" path that never calls the model, and the generation slots (queue, 503,
//! a disconnecting client freeing its slot at once).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_e2e::{EventStream, Server, without_markers};

const BACKUP: &str = "# Backups\n\nThe nightly backup runs at two o'clock and copies the database to the archive server in building C. Restores are requested from the operations team by ticket.";
const QUESTION: &str = "When does the nightly backup run?";

fn start_with_backup_doc(env: &[(&str, &str)]) -> Server {
    let server = Server::start_with_env(env);
    let (status, body) = server.upload("kb", &[("backup.md", BACKUP.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    server
}

fn slots(server: &Server) -> Value {
    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200, "{models}");
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "llm")
        .expect("llm in /v1/models")["slots"]
        .clone()
}

/// Opens a streamed answer; panics unless the server starts an event stream.
fn stream(server: &Server, client: &reqwest::blocking::Client, body: Value) -> EventStream {
    let response = client
        .post(format!("{}/v1/kbs/kb/ask", server.url))
        .json(&body)
        .send()
        .expect("ask request");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    EventStream::new(response)
}

#[test]
fn streams_answers_and_constrains_them_to_json() {
    let server = start_with_backup_doc(&[]);

    // Streamed: sources first, then tokens, then done; the same answer as unstreamed.
    let greedy = json!({"question": QUESTION, "temperature": 0, "max_tokens": 40});
    let (status, whole) = server.post_json("/v1/kbs/kb/ask", &greedy);
    assert_eq!(status, 200, "{whole}");
    let mut streamed = greedy.clone();
    streamed["stream"] = json!(true);
    let mut events = stream(&server, &server.client, streamed);
    let (name, sources) = events.next_event().expect("first event");
    assert_eq!(name, "sources", "{sources}");
    assert_eq!(sources["grounded"], true);
    let sources = sources["sources"].as_array().unwrap().clone();
    assert!(!sources.is_empty());
    assert_eq!(sources[0]["index"], 1);
    assert_eq!(sources[0]["document_name"], "backup.md");
    let (text, tokens, done) = events.answer();
    assert!(events.next_event().is_none(), "nothing after done");
    assert!(tokens > 0);
    assert!(!text.trim().is_empty());
    assert_eq!(
        done["answer"], whole["answer"],
        "temperature 0: same answer"
    );
    for count in ["prompt_tokens", "completion_tokens"] {
        assert_eq!(done["usage"][count], whole["usage"][count], "{count}");
    }
    // The second ask of the same question reads only its last tokens again: the rest
    // was kept from the first (in whole pieces of 64), and the answer is the same.
    assert_eq!(whole["usage"]["cached_prompt_tokens"], 0, "{whole}");
    let cached = done["usage"]["cached_prompt_tokens"].as_u64().unwrap();
    let prompt = done["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(cached, (prompt - 1) / 64 * 64, "{done}");
    // Citation markers may be added (a sentence stating a source's fact) or removed (one
    // naming no source) after streaming; the words are exactly what was streamed.
    assert_eq!(
        without_markers(done["answer"].as_str().unwrap()),
        without_markers(text.trim())
    );
    let timings = &done["timings"];
    assert!(
        timings["time_to_first_token_ms"].as_u64().unwrap()
            <= timings["total_ms"].as_u64().unwrap()
    );
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() >= tokens as u64);

    // `Accept: text/event-stream` alone asks for a stream too.
    let response = server
        .client
        .post(format!("{}/v1/kbs/kb/ask", server.url))
        .header("accept", "text/event-stream")
        .json(&greedy)
        .send()
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = EventStream::new(response);
    assert_eq!(events.next_event().unwrap().0, "sources");

    // JSON schema: the answer is JSON that validates, and comes back parsed.
    let schema = json!({
        "type": "object",
        "properties": {
            "time": {"type": "string", "maxLength": 40},
            "place": {"type": "string", "maxLength": 60},
            "confident": {"type": "boolean"}
        },
        "required": ["time", "place", "confident"],
        "additionalProperties": false
    });
    let (status, response) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({
            "question": "When does the nightly backup run and where does it go?",
            "temperature": 0,
            "max_tokens": 200,
            "response_format": {"type": "json_schema", "schema": schema}
        }),
    );
    assert_eq!(status, 200, "{response}");
    let parsed: Value = serde_json::from_str(response["answer"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {response}"));
    assert_eq!(response["json"], parsed);
    let object = parsed.as_object().expect("an object");
    assert_eq!(object.len(), 3, "{parsed}");
    assert!(
        object["time"]
            .as_str()
            .is_some_and(|t| t.chars().count() <= 40)
    );
    assert!(
        object["place"]
            .as_str()
            .is_some_and(|p| p.chars().count() <= 60)
    );
    assert!(object["confident"].is_boolean());

    // The OpenAI form of the same thing.
    let (status, response) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({
            "question": QUESTION,
            "temperature": 0,
            "max_tokens": 60,
            "response_format": {"type": "json_schema", "json_schema": {"name": "when", "schema": {
                "type": "object",
                "properties": {"when": {"type": "string", "maxLength": 30}},
                "required": ["when"]
            }}}
        }),
    );
    assert_eq!(status, 200, "{response}");
    assert!(response["json"]["when"].is_string(), "{response}");

    // Schemas that cannot be used are 400s that say so.
    for format in [
        json!({"type": "json_schema"}),
        json!({"type": "json_schema", "schema": 5}),
        json!({"type": "json_schema", "schema": {"$ref": "#/$defs/missing"}}),
        // Converted fine, but beyond llama.cpp's grammar limits.
        json!({"type": "json_schema", "schema": {"type": "string", "minLength": 4000}}),
        json!({"type": "xml"}),
    ] {
        let (status, body) = server.post_json(
            "/v1/kbs/kb/ask",
            &json!({"question": QUESTION, "response_format": format}),
        );
        assert_eq!(status, 400, "{format}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            code == "invalid_response_format" || code == "invalid_json",
            "{format}: {body}"
        );
    }
}

#[test]
fn questions_the_kb_cannot_answer_never_reach_the_model() {
    // Without query translation: translating the Chinese question for the English KB is a
    // model call of its own (tests/tests/translate.rs), made before retrieval can tell.
    let server = start_with_backup_doc(&[("ZHIKU_SEARCH__TRANSLATE", "off")]);
    let admitted = slots(&server)["admitted"].as_u64().unwrap();
    for (question, answer) in [
        (
            "How do I bake sourdough bread?",
            "Not found in the knowledge base.",
        ),
        ("如何做红烧肉？", "知识库中未找到相关内容。"),
    ] {
        let (status, response) = server.post_json(
            "/v1/kbs/kb/ask",
            &json!({"question": question, "temperature": 0}),
        );
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["grounded"], false, "{response}");
        assert_eq!(response["answer"], answer);
        assert_eq!(response["usage"]["completion_tokens"], 0);
        assert!(response["citations"].as_array().unwrap().is_empty());
    }
    // Streamed, the same: sources (none, not grounded), then done, no tokens.
    let mut events = stream(
        &server,
        &server.client,
        json!({"question": "How do I bake sourdough bread?", "stream": true}),
    );
    let (name, sources) = events.next_event().unwrap();
    assert_eq!(
        (name.as_str(), &sources["grounded"]),
        ("sources", &json!(false))
    );
    let (name, done) = events.next_event().unwrap();
    assert_eq!(name, "done");
    assert_eq!(done["grounded"], false);
    assert_eq!(
        slots(&server)["admitted"].as_u64().unwrap(),
        admitted,
        "the model was never called"
    );

    // An answerable question still is answered.
    let (status, response) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({"question": QUESTION, "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["grounded"], true, "{response}");
    assert_eq!(slots(&server)["admitted"].as_u64().unwrap(), admitted + 1);
}

/// Polls the slots until `check` holds (a minute at most).
fn wait_slots(server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let slots = slots(server);
        if check(&slots) {
            return slots;
        }
        assert!(Instant::now() < deadline, "{what}: {slots}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_queue_is_refused_and_a_client_that_leaves_frees_its_slot() {
    let server = start_with_backup_doc(&[("ZHIKU_LLM__PARALLEL", "1"), ("ZHIKU_LLM__QUEUE", "1")]);
    // A long answer: the grammar admits no array shorter than 1,900 numbers, so this one
    // generates all 1,024 tokens, for many seconds, unless stopped.
    let long = json!({
        "question": QUESTION,
        "max_tokens": 1024,
        "stream": true,
        "response_format": {"type": "json_schema", "schema": {
            "type": "array", "minItems": 1900, "items": {"type": "integer"}
        }}
    });
    let streaming_client = reqwest::blocking::Client::new();
    let mut first = stream(&server, &streaming_client, long.clone());
    assert_eq!(first.next_event().unwrap().0, "sources");
    assert_eq!(first.next_event().unwrap().0, "token", "generating");

    // A second request waits in the queue...
    let waiting = {
        let (url, client) = (server.url.clone(), server.client.clone());
        std::thread::spawn(move || {
            let response = client
                .post(format!("{url}/v1/kbs/kb/ask"))
                .json(&json!({"question": QUESTION, "temperature": 0, "max_tokens": 8}))
                .send()
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().unwrap())
        })
    };
    wait_slots(&server, "second request queued", |s| {
        s["busy"] == 1 && s["queued"] == 1
    });

    // ...and a third finds the queue full: 503 with Retry-After, at once.
    let refused = server
        .client
        .post(format!("{}/v1/kbs/kb/ask", server.url))
        .json(&json!({"question": QUESTION, "max_tokens": 8}))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // A stream is refused the same way, before any event.
    let (status, body) = server.post_json("/v1/kbs/kb/ask", &long);
    assert_eq!(status, 503, "{body}");

    // The streaming client goes away: its generation stops, the queued request proceeds.
    drop(first);
    drop(streaming_client);
    let (status, answer) = waiting.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["grounded"], true);
    let after = wait_slots(&server, "slot freed", |s| s["busy"] == 0);
    assert_eq!(
        after["cancelled"], 1,
        "the abandoned stream was stopped: {after}"
    );
    assert_eq!(after["rejected"], 2, "{after}");

    // An unstreamed request whose client gives up is stopped too.
    let mut unstreamed = long.clone();
    unstreamed["stream"] = json!(false);
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/v1/kbs/kb/ask", server.url))
        .json(&unstreamed)
        .send();
    assert!(gave_up.is_err(), "the answer takes longer than 3 s");
    drop(impatient);
    let after = wait_slots(&server, "abandoned request stopped", |s| {
        s["cancelled"] == 2 && s["busy"] == 0
    });
    assert_eq!(after["queued"], 0);
}
