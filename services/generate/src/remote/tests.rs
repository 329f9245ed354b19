use super::stream::{SseParser, StreamEnd};
use super::*;

/// A reader handing out its bytes `step` at a time, as a network read might.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    step: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn read_all(stream: &str, step: usize) -> (Result<StreamEnd, StreamError>, Vec<String>) {
    let mut pieces = Vec::new();
    let reader = Trickle {
        bytes: stream.as_bytes().to_vec(),
        at: 0,
        step,
    };
    let end = read_stream(reader, &mut |p| {
        pieces.push(p.to_string());
        true
    });
    (end, pieces)
}

fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

#[test]
fn pieces_usage_and_done_whatever_the_read_sizes() {
    let stream = format!(
        ": keep-alive\n\ndata: {}\n\n{}{}data: {}\r\n\r\ndata: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        chunk("备份在"),
        chunk(" two o'clock"),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 4, "total_tokens": 35}}),
    );
    // One byte at a time splits every line and every multi-byte character.
    for step in [1, 2, 7, 8192] {
        let (end, pieces) = read_all(&stream, step);
        let end = end.unwrap();
        assert_eq!(pieces, ["备份在", " two o'clock"], "step {step}");
        assert_eq!(
            end,
            StreamEnd {
                finish_reason: Some("length".into()),
                usage: Some((31, 4)),
                done: true,
                stopped: false,
            },
            "step {step}"
        );
    }
}

#[test]
fn nothing_is_read_after_done_or_after_the_caller_stops() {
    let stream = format!("{}data: [DONE]\n\n{}", chunk("a"), chunk("b"));
    let (end, pieces) = read_all(&stream, 3);
    assert!(end.unwrap().done);
    assert_eq!(pieces, ["a"]);

    let stream = format!("{}{}", chunk("a"), chunk("b"));
    let reader = Trickle {
        bytes: stream.into_bytes(),
        at: 0,
        step: 5,
    };
    let mut seen = 0;
    let end = read_stream(reader, &mut |_| {
        seen += 1;
        false
    })
    .unwrap();
    assert!(end.stopped && !end.done);
    assert_eq!(seen, 1);
}

#[test]
fn a_last_event_without_its_blank_line_still_counts() {
    let stream = format!(
        "data: {}",
        json!({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]})
    );
    let (end, pieces) = read_all(&stream, 4);
    assert_eq!(pieces, ["x"]);
    assert_eq!(end.unwrap().finish_reason.as_deref(), Some("stop"));
}

#[test]
fn error_events_and_garbage_are_errors() {
    let stream = format!(
        "{}data: {}\n\n",
        chunk("a"),
        json!({"error": {"message": "model overloaded", "code": 503}})
    );
    let (end, pieces) = read_all(&stream, 16);
    assert!(
        matches!(end, Err(StreamError::Upstream(m)) if m == "model overloaded"),
        "{pieces:?}"
    );

    let (end, _) = read_all("data: {not json\n\n", 16);
    assert!(matches!(end, Err(StreamError::Malformed(m)) if m.contains("not JSON")));

    let (end, _) = read_all("data: {\"id\": 1}\n\n", 16);
    assert!(matches!(end, Err(StreamError::Malformed(m)) if m.contains("without choices")));

    let (end, _) = read_all("data: \u{FFFD}\n\n", 16);
    assert!(end.is_err());
    let mut parser = SseParser::default();
    assert!(matches!(
        parser.push(b"data: \xff\xfe\n"),
        Err(StreamError::Malformed(_))
    ));
}

#[test]
fn multi_line_data_is_joined() {
    let mut parser = SseParser::default();
    assert!(
        parser
            .push(b"event: x\ndata: {\"a\":\ndata: 1}\n")
            .unwrap()
            .is_empty()
    );
    assert_eq!(parser.push(b"\n").unwrap(), ["{\"a\":\n1}"]);
}

#[test]
fn error_bodies_are_explained_briefly() {
    assert_eq!(
        error_message(
            r#"{"error": {"message": "no such model", "type": "invalid_request_error"}}"#
        ),
        Some("no such model".into())
    );
    assert_eq!(
        error_message(r#"{"object": "error", "message": "too long"}"#),
        Some("too long".into())
    );
    assert_eq!(
        error_message(r#"{"detail": "Not Found"}"#),
        Some("Not Found".into())
    );
    assert_eq!(error_message("  "), None);
    let long = "x".repeat(1000);
    assert_eq!(error_message(&long).unwrap().chars().count(), 301);
}

#[test]
fn estimates_count_cjk_per_character_and_ascii_per_three() {
    assert_eq!(estimate_tokens(""), 0);
    assert_eq!(estimate_tokens("abc"), 1);
    assert_eq!(estimate_tokens("abcd"), 2);
    assert_eq!(estimate_tokens("智库备份"), 4);
    assert_eq!(estimate_tokens("智库 backup"), 2 + 3);
}

/// A generator for `base_url`, without retries, and with timeouts long enough for a
/// busy machine.
fn generator_at(base_url: String, key: Option<&str>) -> OpenAiGenerator {
    OpenAiGenerator::new(&OpenAiConfig {
        base_url,
        model: "m".into(),
        api_key: key.map(ApiKey::new),
        n_ctx: 1000,
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(10),
        max_retries: 0,
    })
    .unwrap()
}

/// A generator for a closed port (nothing is sent in these tests).
fn generator(key: Option<&str>) -> OpenAiGenerator {
    generator_at("http://127.0.0.1:9/v1/".into(), key)
}

#[test]
fn schemas_travel_as_response_format_and_grammars_are_refused() {
    let g = generator(None);
    let schema = r#"{"type":"object"}"#;
    let params = SamplingParams {
        grammar: Some(g.schema_grammar(schema).unwrap()),
        stop: vec!["\n".into()],
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let body = g.body(&[ChatMessage::user("q")], &params, 10).unwrap();
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}})
    );
    assert_eq!(body["stop"], json!(["\n"]));
    assert_eq!(body["max_tokens"], 10);
    assert_eq!(body["stream"], true);
    assert_eq!(body["temperature"], 0.0);
    assert!(g.schema_grammar("[1]").is_err());
    let gbnf = SamplingParams {
        grammar: Some("root ::= \"a\"".into()),
        ..SamplingParams::default()
    };
    assert!(matches!(
        g.body(&[ChatMessage::user("q")], &gbnf, 10),
        Err(GenerateError::InvalidSchema(_))
    ));
}

#[test]
fn urls_with_credentials_and_empty_models_are_refused() {
    let config = |base_url: &str, model: &str| OpenAiConfig {
        base_url: base_url.into(),
        model: model.into(),
        api_key: None,
        n_ctx: 1000,
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        max_retries: 0,
    };
    let g = OpenAiGenerator::new(&config("http://h:8/v1/", "m")).unwrap();
    assert_eq!(
        (g.url.as_str(), g.host.as_str()),
        ("http://h:8/v1/chat/completions", "h:8")
    );
    for (url, model) in [
        ("http://user:secret@h/v1", "m"),
        ("ftp://h/v1", "m"),
        ("not a url", "m"),
        ("http://h/v1", " "),
    ] {
        let err = OpenAiGenerator::new(&config(url, model))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn https_endpoints_are_reached_over_tls() {
    // A TCP server that closes every connection: a TLS client fails in the handshake,
    // one without TLS support would refuse the URL's scheme before connecting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || drop(listener.accept()));
    let g = generator_at(format!("https://127.0.0.1:{port}/v1"), None);
    let err = g
        .generate(
            &[ChatMessage::user("q")],
            &SamplingParams::default(),
            &mut |_| true,
        )
        .unwrap_err();
    server.join().unwrap();
    let GenerateError::Upstream { host, detail } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(host, &format!("127.0.0.1:{port}"));
    assert!(!detail.contains("scheme"), "{err}");
}

#[test]
fn a_server_ignoring_stream_is_read_whole() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut stream, _) = listener.accept().unwrap();
        // Read the whole request (head, then `content-length` bytes of body), so
        // closing the connection afterwards cannot reset it under the reply.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        let body = json!({"object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "At two."}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}})
        .to_string();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let g = generator_at(format!("http://127.0.0.1:{port}/v1"), None);
    let mut streamed = String::new();
    let generation = g
        .generate(
            &[ChatMessage::user("q")],
            &SamplingParams::default(),
            &mut |p| {
                streamed.push_str(p);
                true
            },
        )
        .unwrap();
    server.join().unwrap();
    assert_eq!(
        (generation.text.as_str(), streamed.as_str()),
        ("At two.", "At two.")
    );
    assert_eq!(generation.finish_reason, FinishReason::Length);
    assert_eq!(
        (generation.prompt_tokens, generation.completion_tokens),
        (12, 3)
    );
}

#[test]
fn the_key_is_never_shown() {
    let g = generator(Some("sk-very-secret"));
    assert!(!format!("{g:?}").contains("sk-very-secret"));
    let err = g.upstream("echo: Bearer sk-very-secret".into()).to_string();
    assert!(!err.contains("sk-very-secret"), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}
