//! Sampling controls on `/ask`: temperature 0 is greedy and deterministic, a seed makes
//! sampled answers reproducible, stop sequences end the answer, bad values are 400s.

use serde_json::{Value, json};
use zhiku_e2e::{Server, without_markers};

fn ask(server: &Server, body: Value) -> (u16, Value) {
    server.post_json("/v1/kbs/kb/ask", &body)
}

fn answer(server: &Server, body: Value) -> String {
    let (status, response) = ask(server, body);
    assert_eq!(status, 200, "{response}");
    response["answer"].as_str().unwrap().to_string()
}

#[test]
fn sampling_is_controllable_and_reproducible() {
    let server = Server::start();
    let (status, body) = server.upload(
        "kb",
        &[(
            "backup.md",
            b"# Backups\n\nThe nightly backup runs at two o'clock and copies the database to the archive server in building C. Restores are requested from the operations team.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");
    let question = "When does the nightly backup run and where does it go?";

    let greedy = json!({"question": question, "temperature": 0, "max_tokens": 48});
    let first = answer(&server, greedy.clone());
    assert!(!first.trim().is_empty());
    assert_eq!(
        answer(&server, greedy.clone()),
        first,
        "temperature 0 is deterministic"
    );

    let sampled = json!({"question": question, "temperature": 1.2, "seed": 7, "max_tokens": 48});
    let a = answer(&server, sampled.clone());
    assert_eq!(answer(&server, sampled), a, "same seed, same answer");

    // Stop at a word from the middle of the greedy answer: the answer ends just before it.
    // Words the model wrote: citation markers may be added after generation.
    let plain = without_markers(&first);
    let words: Vec<&str> = plain.split_whitespace().collect();
    assert!(words.len() >= 4, "answer too short to test stop: {first}");
    let stop = words[words.len() / 2];
    let at = plain.find(stop).unwrap();
    let mut with_stop = greedy.clone();
    with_stop["stop"] = json!([stop]);
    let (status, response) = ask(&server, with_stop);
    assert_eq!(status, 200, "{response}");
    // The service trims the answer it returns (and may cite what it cut differently).
    assert_eq!(
        without_markers(response["answer"].as_str().unwrap()),
        plain[..at].trim_end(),
        "{response}"
    );
    assert_eq!(response["finish_reason"], "stop", "{response}");

    // A persona and CO-STAR fields reach the model: the greedy answer changes.
    let mut styled = greedy.clone();
    styled["prompt"] = json!({
        "persona": "a pirate captain",
        "tone": "exuberant",
        "response_format": "one short sentence that starts with 'Ahoy'"
    });
    let (status, response) = ask(&server, styled);
    assert_eq!(status, 200, "{response}");
    assert_ne!(response["answer"].as_str().unwrap(), first, "{response}");
    assert_eq!(response["grounded"], true);

    // A window too small for every source: the lowest ranked are dropped, and said so.
    drop(server);
    let small = Server::start_with_env(&[("ZHIKU_LLM__N_CTX", "512")]);
    let long: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let body = format!(
                "# Backup note {i}\n\n{}",
                "The nightly backup copies the database to the archive server. ".repeat(12)
            );
            (format!("note{i}.md"), body.into_bytes())
        })
        .collect();
    let files: Vec<(&str, Vec<u8>)> = long.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (status, body) = small.upload("kb", &files);
    assert_eq!(status, 201, "{body}");
    let (status, response) = small.post_json(
        "/v1/kbs/kb/ask",
        &json!({"question": question, "temperature": 0, "max_tokens": 32, "top_k": 4}),
    );
    assert_eq!(status, 200, "{response}");
    let used = response["sources_used"].as_u64().unwrap();
    let dropped = response["sources_dropped"].as_u64().unwrap();
    assert!(used >= 1 && dropped >= 1, "{response}");
    assert_eq!(used + dropped, 4, "{response}");
    let given = response["citations"].as_array().unwrap().len()
        + response["context"].as_array().unwrap().len();
    assert_eq!(given as u64, used, "{response}");
    let server = small;

    for (bad, code) in [
        (
            json!({"question": question, "prompt": {"personna": "x"}}),
            "invalid_json",
        ),
        (
            json!({"question": question, "prompt": {"tone": "x".repeat(2001)}}),
            "invalid_prompt",
        ),
        (json!({"question": question, "top_p": 0}), "invalid_top_p"),
        (json!({"question": question, "top_p": 1.5}), "invalid_top_p"),
        (
            json!({"question": question, "top_k_tokens": 0}),
            "invalid_top_k_tokens",
        ),
        (
            json!({"question": question, "stop": ["a", "b", "c", "d", "e"]}),
            "invalid_stop",
        ),
        (json!({"question": question, "stop": [""]}), "invalid_stop"),
        (json!({"question": question, "seed": -1}), "invalid_json"),
    ] {
        let (status, body) = ask(&server, bad.clone());
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
    }
}
