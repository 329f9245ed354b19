//! What operators rely on: health and readiness, Prometheus metrics that move with the
//! traffic, request ids, JSON logs, the effective configuration, and a graceful stop that
//! lets requests in flight finish.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_e2e::{Server, binary};

/// Parses the text exposition into `series → value`, where a series is written exactly as
/// in the text: `name{label="value",...}`. Checks the shape of every sample line.
fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, content_type, text) = server.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(content_type.contains("text"), "{content_type}");
    let mut samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(series.starts_with("zhiku_"), "{line}");
        samples.insert(series.to_string(), value);
    }
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    samples
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[test]
fn health_metrics_and_request_ids() {
    // Per-KB series name KBs, so they are behind a switch (see below for the default).
    let server = Server::start_with_env(&[("ZHIKU_SERVER__EXPOSE_KB_NAMES", "true")]);
    let (status, body) = server.get("/healthz");
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let (status, body) = server.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    let (status, body) = server.upload(
        "kb",
        &[(
            "backup.md",
            b"# Backups\n\nThe nightly backup runs at two o'clock.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");
    let search =
        r#"zhiku_http_requests_total{method="POST",route="/v1/kbs/{kb}/search",status="200"}"#;
    let before = scrape(&server);
    assert_eq!(sample(&before, r#"zhiku_kb_documents{kb="kb"}"#), 1.0);
    assert!(sample(&before, r#"zhiku_kb_chunks{kb="kb"}"#) >= 1.0);
    assert!(sample(&before, "zhiku_ingested_chunks_total") >= 1.0);
    assert_eq!(sample(&before, r#"zhiku_llm_slots{state="parallel"}"#), 2.0);
    assert_eq!(sample(&before, "zhiku_jobs_queued"), 0.0);

    server.search("kb", "backup", "hybrid");
    server.search("kb", "backup", "keyword");
    let (status, _) = server.get("/v1/nothing-here");
    assert_eq!(status, 404);
    let (status, answer) = server.post_json(
        "/v1/kbs/kb/ask",
        &json!({"question": "When does the nightly backup run?", "max_tokens": 8}),
    );
    assert_eq!(status, 200, "{answer}");
    let after = scrape(&server);
    assert_eq!(sample(&after, search) - sample(&before, search), 2.0);
    assert_eq!(
        sample(&after, "zhiku_search_duration_seconds_count")
            - sample(&before, "zhiku_search_duration_seconds_count"),
        3.0,
        "two searches and the answer's retrieval"
    );
    let not_found = r#"zhiku_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(sample(&after, not_found) - sample(&before, not_found), 1.0);
    assert_eq!(
        sample(&after, "zhiku_ask_time_to_first_token_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(&after, "zhiku_generated_tokens_total"),
        answer["usage"]["completion_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        sample(&after, r#"zhiku_llm_requests_total{state="admitted"}"#),
        1.0
    );
    assert!(
        sample(
            &after,
            r#"zhiku_http_request_duration_seconds_count{method="POST",route="/v1/kbs/{kb}/search"}"#
        ) >= 2.0
    );

    // Every response carries a request id; a client's own is echoed.
    let response = server
        .client
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let response = server
        .client
        .get(format!("{}/v1/kbs", server.url))
        .header("x-request-id", "trace-me-42")
        .send()
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

#[test]
fn config_show_prints_the_effective_configuration() {
    let output = Command::new(binary())
        .args(["config", "show"])
        .env("ZHIKU_LLM__TEMPERATURE", "0.5")
        .env("ZHIKU_SERVER__SHUTDOWN_TIMEOUT_SECS", "7")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    for line in [
        "[llm]",
        "temperature = 0.5",
        "shutdown_timeout_secs = 7",
        "[embedder]",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "{line} missing:\n{text}"
        );
    }
    // Not a secret: a directory whose name contains "token".
    assert!(text.contains("tokenizer_dir = "), "{text}");
    assert!(
        !text.contains("********"),
        "nothing here is secret:\n{text}"
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let mut server = Server::start_with_env(&[
        ("ZHIKU_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,tower_http=debug"),
        // A grace period no busy machine outlasts: the answer in flight must finish, not
        // be cut off at the default 30 s because both cores are shared with other tests.
        ("ZHIKU_SERVER__SHUTDOWN_TIMEOUT_SECS", "900"),
    ]);
    let (status, body) = server.upload(
        "kb",
        &[(
            "backup.md",
            b"# Backups\n\nThe nightly backup runs at two o'clock and copies the database to the archive server.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");
    let in_flight = {
        let (url, client) = (server.url.clone(), server.client.clone());
        std::thread::spawn(move || {
            let response = client
                .post(format!("{url}/v1/kbs/kb/ask"))
                .json(&json!({
                    "question": "When does the nightly backup run?",
                    "temperature": 0,
                    "max_tokens": 160,
                    // Long enough to still be generating when the signal comes.
                    "response_format": {"type": "json_schema", "schema": {
                        "type": "array", "minItems": 60, "items": {"type": "integer"}
                    }}
                }))
                .send()
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().unwrap())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, models) = server.get("/v1/models");
        if models["data"][0]["slots"]["busy"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the answer never started: {models}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate();
    let (status, answer) = in_flight.join().unwrap();
    assert_eq!(status, 200, "the request in flight finished: {answer}");
    assert!(answer["answer"].as_str().unwrap().len() > 10, "{answer}");
    let exit = server.wait_exit();
    assert!(exit.success(), "clean exit: {exit}");
    // New connections are refused once stopped.
    assert!(
        server
            .client
            .get(format!("{}/healthz", server.url))
            .send()
            .is_err()
    );
    // Logs were JSON, one object per line, with the request id on request lines.
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{log}");
    assert!(
        lines.iter().any(|l| l["span"]["request_id"].is_string()),
        "{log}"
    );
    // The data survives: a new server on the same directory finds the document.
    let data = server.kill();
    let server = Server::start_in(data, &[]);
    assert_eq!(server.search("kb", "nightly backup", "keyword").len(), 1);
}

#[test]
fn keyless_probes_do_not_name_knowledge_bases_by_default() {
    let server = Server::start();
    let (status, body) = server.upload(
        "secret-merger",
        &[("plan.md", b"# Plan\n\nThe merger closes in May.".to_vec())],
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, metrics) = server.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("zhiku_ingested_chunks_total"), "{metrics}");
    assert!(!metrics.contains("secret-merger"), "{metrics}");
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["kbs"], json!(1), "{ready}");
    assert!(!ready.to_string().contains("secret-merger"), "{ready}");
}
