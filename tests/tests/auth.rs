//! API keys and isolation, route by route; the rate limit, body limit, request timeout and
//! CORS; and the refusal to serve beyond loopback without keys.
//!
//! The routes come from the server's own route table (`zhiku routes`): a route added to
//! the server without a case below fails `keys_isolate_knowledge_bases_route_by_route`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use zhiku_e2e::{Api, EventStream, MINILM_ENV, Server, create_key, zhiku};

use zhiku_app::access::Access;

/// The id part of a key: `zk_<id>_<secret>`.
fn key_id(key: &str) -> &str {
    key.split('_').nth(1).expect("key id")
}

/// A request body.
#[derive(Clone)]
enum Body {
    None,
    /// JSON text, with `{kb}` replaced by the target knowledge base.
    Json(&'static str),
    /// A multipart upload of one file with this document id.
    Upload(&'static str),
}

/// How one route is exercised.
struct Case {
    method: Method,
    /// The route template as `zhiku routes` prints it.
    template: &'static str,
    body: Body,
    /// Status on the caller's own knowledge base.
    own: u16,
    /// Whether the route belongs to a knowledge base: 404 for one the key cannot read.
    scoped: bool,
    /// Whether it changes the knowledge base: 403 for a read key.
    writes: bool,
    /// Whether an admin calling it on a knowledge base that does not exist creates it
    /// (so there is no "unknown KB" answer to compare with).
    creates: bool,
}

/// The case of a route, or `None` for a route this test does not know yet.
fn case(method: &str, template: &'static str, access: Access) -> Option<Case> {
    let kb_route = matches!(access, Access::KbRead | Access::KbWrite);
    let (body, own, scoped, writes, creates) = match (method, template) {
        (
            "GET",
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/docs" | "/" | "/ui/{file}",
        ) => (Body::None, 200, false, false, false),
        ("GET", "/v1/models" | "/v1/auth") => (Body::None, 200, false, false, false),
        ("POST", "/v1/embeddings") => (
            Body::Json(r#"{"input": "backup", "model": "all-minilm-l6-v2"}"#),
            200,
            false,
            false,
            false,
        ),
        ("POST", "/v1/chat/completions") => (
            Body::Json(
                r#"{"model": "kb:{kb}", "max_tokens": 4,
                    "messages": [{"role": "user", "content": "When does the backup run?"}]}"#,
            ),
            200,
            true,
            false,
            false,
        ),
        ("GET", "/v1/kbs/{kb}/export/qa.jsonl") => (Body::None, 200, true, false, false),
        ("GET", "/v1/conversations") => (Body::None, 200, false, false, false),
        ("GET", "/v1/conversations/{id}") => (Body::None, 200, true, false, false),
        // Conversations are made by asking: a read key may rate and delete them.
        ("DELETE", "/v1/conversations/{id}") => (Body::None, 204, true, false, false),
        ("POST", "/v1/conversations/{id}/feedback") => (
            Body::Json(r#"{"turn": 1, "rating": "good"}"#),
            204,
            true,
            false,
            false,
        ),
        ("POST", "/v1/tokenize") => (
            Body::Json(r#"{"text": "备份 backup"}"#),
            200,
            false,
            false,
            false,
        ),
        ("GET", "/v1/kbs" | "/v1/jobs") => (Body::None, 200, false, false, false),
        ("GET", "/v1/kbs/{kb}") => (Body::None, 200, true, false, false),
        ("PUT", "/v1/kbs/{kb}") => (Body::None, 200, true, true, true),
        // Last on the own KB: it deletes it.
        ("DELETE", "/v1/kbs/{kb}") => (Body::None, 204, true, true, false),
        ("POST", "/v1/kbs/{kb}/documents") => (Body::Upload("doc-new"), 201, true, true, true),
        ("GET", "/v1/kbs/{kb}/documents") => (Body::None, 200, true, false, false),
        ("GET", "/v1/kbs/{kb}/documents/{*id}") => (Body::None, 200, true, false, false),
        ("DELETE", "/v1/kbs/{kb}/documents/{*id}") => (Body::None, 204, true, true, false),
        ("POST", "/v1/kbs/{kb}/search") => (
            Body::Json(r#"{"query": "nightly backup"}"#),
            200,
            true,
            false,
            false,
        ),
        ("POST", "/v1/kbs/{kb}/reindex") => (Body::None, 200, true, true, false),
        ("POST", "/v1/kbs/{kb}/ask") => (
            Body::Json(r#"{"question": "When does the backup run?", "max_tokens": 4}"#),
            200,
            true,
            false,
            false,
        ),
        ("POST", "/v1/jobs") => (
            Body::Json(r#"{"kb": "{kb}", "path": "{import}"}"#),
            202,
            true,
            true,
            true,
        ),
        ("GET", "/v1/jobs/{id}") => (Body::None, 200, true, false, false),
        // The job has finished: cancelling it is a conflict, after access was granted.
        ("DELETE", "/v1/jobs/{id}") => (Body::None, 409, true, true, false),
        ("GET", "/v1/jobs/{id}/events") => (Body::None, 200, true, false, false),
        _ => return None,
    };
    assert_eq!(
        kb_route,
        scoped && template.contains("{kb}"),
        "{method} {template}: the test and the access table disagree on whether it is per KB"
    );
    if access == Access::KbWrite {
        assert!(writes, "{method} {template} writes");
    }
    Some(Case {
        method: method.parse().expect("method"),
        template,
        body,
        own,
        scoped,
        writes,
        creates,
    })
}

/// What a route is called on: a knowledge base, one of its jobs and one of its
/// conversations.
struct Target<'a> {
    kb: &'a str,
    job: &'a str,
    conversation: &'a str,
}

impl Target<'_> {
    /// The name a route's refusal names: the job, the conversation or the KB.
    fn name(&self, template: &str) -> &str {
        if template.starts_with("/v1/jobs/") {
            self.job
        } else if template.starts_with("/v1/conversations/") {
            self.conversation
        } else {
            self.kb
        }
    }
}

/// A response: status, headers, body text.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text))
    }

    /// The JSON error body with the target's name replaced, to compare refusals made for
    /// different names.
    fn error_for(&self, name: &str) -> Value {
        let mut body = self.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        body["error"]["message"] = json!(message.replace(&format!("{name:?}"), "\"…\""));
        body
    }
}

fn call(api: &Api, case: &Case, target: &Target, import: &str) -> Reply {
    let path = case
        .template
        .replace("{kb}", target.kb)
        .replace(
            "{*id}",
            if case.method == Method::DELETE {
                "doc-del"
            } else {
                "doc-keep"
            },
        )
        .replace("{id}", target.name(case.template))
        .replace("{file}", "app.js");
    let request = api.request(case.method.clone(), &path);
    let request = match &case.body {
        Body::None => request,
        Body::Json(text) => request
            .header("content-type", "application/json")
            .body(text.replace("{kb}", target.kb).replace("{import}", import)),
        Body::Upload(id) => request.multipart(
            reqwest::blocking::multipart::Form::new()
                .text("document_id", *id)
                .part(
                    "file",
                    reqwest::blocking::multipart::Part::bytes(b"New notes.".to_vec())
                        .file_name("new.md"),
                ),
        ),
    };
    let response = request.send().expect("request");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().expect("body"),
    }
}

/// Two documents (`doc-keep`, `doc-del`), one finished upload job and a conversation of
/// one turn in `kb`; returns the job id and the conversation id.
fn seed(api: &Api, kb: &str) -> (String, String) {
    let (status, body) = api.upload_form(
        kb,
        "",
        &[
            ("document_id", None, b"doc-keep".to_vec()),
            (
                "file",
                Some("keep.md"),
                b"# Backups\n\nThe nightly backup runs at two.".to_vec(),
            ),
            ("document_id", None, b"doc-del".to_vec()),
            (
                "file",
                Some("del.md"),
                b"# Lunch\n\nLunch is served at noon.".to_vec(),
            ),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = api.upload_form(
        kb,
        "?wait=false",
        &[(
            "file",
            Some("async.md"),
            b"Parking is in garage B.".to_vec(),
        )],
    );
    assert_eq!(status, 202, "{body}");
    let job = body["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(api.wait_job(&job)["state"], "succeeded");
    (job, converse(api, kb))
}

/// A new conversation of one turn in `kb`.
fn converse(api: &Api, kb: &str) -> String {
    let (status, body) = api.post_json(
        &format!("/v1/kbs/{kb}/ask"),
        &json!({"question": "When does the backup run?", "max_tokens": 4}),
    );
    assert_eq!(status, 200, "{body}");
    body["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .to_string()
}

fn names(list: &Value, field: &str, key: &str) -> BTreeSet<String> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|item| item[key].as_str().unwrap().to_string())
        .collect()
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text);
    assert_eq!(reply.json()["error"]["code"], "unauthorized", "{what}");
    assert_eq!(reply.headers["www-authenticate"], "Bearer", "{what}");
}

#[test]
fn keys_isolate_knowledge_bases_route_by_route() {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let import = tempfile::tempdir().unwrap();
    std::fs::write(import.path().join("imported.md"), "Imported notes.").unwrap();
    let import_dir = import.path().to_str().unwrap().to_string();
    let admin = create_key(data.path(), &["--admin", "--name", "ops"]);
    let a_write = create_key(data.path(), &["--kb", "a", "--scope", "write"]);
    let a_read = create_key(data.path(), &["--kb", "a", "--scope", "read"]);
    // Listing shows ids, scopes and names, never secrets.
    let (code, stdout, stderr) = zhiku(data.path(), &["keys", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(listed[0]["scope"], "admin");
    assert_eq!(listed[0]["name"], "ops");
    assert_eq!(listed[1]["kb"], "a");
    for key in [&admin, &a_write, &a_read] {
        assert!(!stdout.contains(&key[key.len() - 32..]), "{stdout}");
    }

    let roots = format!("[\"{import_dir}\"]");
    let mut env = MINILM_ENV.to_vec();
    env.push(("ZHIKU_JOBS__IMPORT_ROOTS", &roots));
    let server = Server::start_in(data.clone(), &env);
    let (as_admin, as_writer, as_reader) = (
        server.as_key(&admin),
        server.as_key(&a_write),
        server.as_key(&a_read),
    );
    let (job_a, conversation_a) = seed(&as_admin, "a");
    let (job_b, conversation_b) = seed(&as_admin, "b");
    let own = Target {
        kb: "a",
        job: &job_a,
        conversation: &conversation_a,
    };
    let other = Target {
        kb: "b",
        job: &job_b,
        conversation: &conversation_b,
    };
    let missing = Target {
        kb: "nope",
        job: "0123456789abcdef",
        conversation: "conv_0123456789abcdef0123456789abcdef",
    };

    let mut cases = Vec::new();
    let mut uncovered = Vec::new();
    for route in zhiku_e2e::routes() {
        let access: Access = route.access.parse().expect("access");
        let (method, template) = (route.method.as_str(), route.path.leak() as &'static str);
        match case(method, template, access) {
            Some(case) => cases.push((case, access)),
            None => uncovered.push(format!("{method} {template}")),
        }
    }
    assert!(
        uncovered.is_empty(),
        "routes without an isolation case in tests/tests/auth.rs: {uncovered:?}"
    );
    // Deletions last on the own KB: the conversation, then the KB.
    cases.sort_by_key(|(c, _)| match (&c.method, c.template) {
        (&Method::DELETE, "/v1/conversations/{id}") => 1,
        (&Method::DELETE, "/v1/kbs/{kb}") => 2,
        _ => 0,
    });

    // Without a key, or with a wrong one, only the open routes answer.
    let flipped = format!("{}x", &a_write[..a_write.len() - 1]);
    for (case, access) in &cases {
        for (api, who) in [
            (server.api(), "no key"),
            (server.as_key(&flipped), "wrong key"),
        ] {
            let reply = call(&api, case, &own, &import_dir);
            let what = format!("{who}: {} {}", case.method, case.template);
            if *access == Access::Open {
                assert_eq!(reply.status, 200, "{what}: {}", reply.text);
            } else {
                assert_unauthorized(&reply, &what);
            }
        }
    }
    // Unknown paths do not tell strangers they are unknown.
    let reply = call(
        &server.api(),
        &case("GET", "/v1/kbs/{kb}", Access::KbRead).unwrap(),
        &Target {
            kb: "a/nothing/here",
            job: "",
            conversation: "",
        },
        "",
    );
    assert_unauthorized(&reply, "unknown path");

    // Another KB is indistinguishable from one that does not exist, on every route.
    for (case, _) in cases.iter().filter(|(c, _)| c.scoped) {
        let what = format!("{} {}", case.method, case.template);
        for (api, who) in [(&as_writer, "write key"), (&as_reader, "read key")] {
            let to_other = call(api, case, &other, &import_dir);
            assert_eq!(
                to_other.status, 404,
                "{who}, {what} on b: {}",
                to_other.text
            );
            let to_missing = call(api, case, &missing, &import_dir);
            assert_eq!(
                to_missing.status, 404,
                "{who}, {what} on nope: {}",
                to_missing.text
            );
            let (other_name, missing_name) =
                (other.name(case.template), missing.name(case.template));
            assert_eq!(
                to_other.error_for(other_name),
                to_missing.error_for(missing_name),
                "{who}, {what}"
            );
            if !case.creates {
                // ...and what an admin gets for one that truly does not exist.
                let truly = call(&as_admin, case, &missing, &import_dir);
                assert_eq!(
                    to_other.error_for(other_name),
                    truly.error_for(missing_name),
                    "{who}, {what}: admin on nope"
                );
            }
        }
    }
    // Nothing above touched b.
    let (status, b) = as_admin.get("/v1/kbs/b");
    assert_eq!((status, &b["documents"]), (200, &json!(3)), "{b}");

    // Lists show only what the key may read; the admin sees everything.
    let (_, kbs) = as_reader.get("/v1/kbs");
    assert_eq!(
        names(&kbs, "kbs", "name"),
        BTreeSet::from(["a".to_string()])
    );
    let (_, kbs) = as_admin.get("/v1/kbs");
    assert_eq!(
        names(&kbs, "kbs", "name"),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    let (_, jobs) = as_writer.get("/v1/jobs");
    assert_eq!(
        names(&jobs, "jobs", "kb"),
        BTreeSet::from(["a".to_string()])
    );
    let (_, jobs) = as_admin.get("/v1/jobs");
    assert_eq!(names(&jobs, "jobs", "kb").len(), 2, "{jobs}");
    let (_, list) = as_reader.get("/v1/conversations");
    assert_eq!(
        names(&list, "conversations", "kb"),
        BTreeSet::from(["a".to_string()])
    );
    let (_, list) = as_reader.get("/v1/conversations?kb=b");
    assert_eq!(list["conversations"], json!([]), "{list}");
    let (_, list) = as_admin.get("/v1/conversations");
    assert_eq!(names(&list, "conversations", "kb").len(), 2, "{list}");
    let (_, models) = as_reader.get("/v1/models");
    let kb_models: BTreeSet<String> = names(&models, "data", "id")
        .into_iter()
        .filter(|id| id.starts_with("kb:"))
        .collect();
    assert_eq!(kb_models, BTreeSet::from(["kb:a".to_string()]), "{models}");
    let (_, models) = as_admin.get("/v1/models");
    assert!(models.to_string().contains("\"kb:b\""), "{models}");
    // Probes name no knowledge base.
    let (_, ready) = server.get("/readyz");
    assert!(!ready.to_string().contains("kb:"), "{ready}");
    // Asking a with b's conversation is refused like a conversation that does not exist.
    let follow_up = |conversation: &str| {
        as_writer.post_json(
            "/v1/kbs/a/ask",
            &json!({"question": "And on Sundays?", "max_tokens": 4, "conversation_id": conversation}),
        )
    };
    let (status, to_other) = follow_up(&conversation_b);
    assert_eq!(status, 404, "{to_other}");
    let (_, to_missing) = follow_up(missing.conversation);
    assert_eq!(
        to_other.to_string().replace(&conversation_b, "…"),
        to_missing.to_string().replace(missing.conversation, "…")
    );

    // A read key reads its KB and is refused (403, not 404) on its write routes.
    for (case, _) in cases.iter().filter(|(c, _)| c.scoped) {
        let reply = call(&as_reader, case, &own, &import_dir);
        let what = format!("read key: {} {}", case.method, case.template);
        if case.writes {
            assert_eq!(reply.status, 403, "{what}: {}", reply.text);
            assert_eq!(reply.json()["error"]["code"], "forbidden", "{what}");
        } else {
            assert_eq!(reply.status, case.own, "{what}: {}", reply.text);
        }
    }

    // The CLI's remote commands present a key.
    let url = server.url.clone();
    let (code, _, stderr) = zhiku(data.path(), &["reindex", "--kb", "a", "--server", &url]);
    assert_ne!(code, 0);
    assert!(stderr.contains("401"), "{stderr}");
    let (code, _, stderr) = zhiku(
        data.path(),
        &[
            "reindex",
            "--kb",
            "a",
            "--server",
            &url,
            "--api-key",
            &a_write,
        ],
    );
    assert_eq!(code, 0, "{stderr}");

    // A key created while the server runs works at once; a revoked one stops at once.
    let b_read = create_key(data.path(), &["--kb", "b", "--scope", "read"]);
    assert_eq!(server.as_key(&b_read).get("/v1/kbs/b").0, 200);
    assert_eq!(server.as_key(&b_read).get("/v1/kbs/a").0, 404);
    let (code, _, stderr) = zhiku(data.path(), &["keys", "revoke", key_id(&b_read)]);
    assert_eq!(code, 0, "{stderr}");
    let reply = call(
        &server.as_key(&b_read),
        &case("GET", "/v1/kbs/{kb}", Access::KbRead).unwrap(),
        &other,
        "",
    );
    assert_unauthorized(&reply, "revoked key");
    let (code, _, stderr) = zhiku(data.path(), &["keys", "revoke", "nosuchid"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("nosuchid"), "{stderr}");

    // Everything works on the key's own KB (the KB is deleted last), with a new
    // conversation: the read key deleted the first.
    let conversation = converse(&as_writer, "a");
    let own = Target {
        conversation: &conversation,
        ..own
    };
    for (case, _) in &cases {
        let reply = call(&as_writer, case, &own, &import_dir);
        assert_eq!(
            reply.status, case.own,
            "write key: {} {}: {}",
            case.method, case.template, reply.text
        );
        let body: Value = serde_json::from_str(&reply.text).unwrap_or_default();
        if let Some(job) = body["job_id"].as_str() {
            // An import: done before the KB is deleted.
            as_writer.wait_job(job);
        }
    }
    let (status, _) = as_admin.get("/v1/kbs/a");
    assert_eq!(status, 404, "a was deleted by its write key");
    let (status, _) = as_admin.get("/v1/kbs/b");
    assert_eq!(status, 200);
}

#[test]
fn rate_limit_body_limit_and_cors() {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let first = create_key(data.path(), &["--admin"]);
    let second = create_key(data.path(), &["--admin"]);
    let env = [
        ("ZHIKU_SERVER__RATE_LIMIT_PER_MINUTE", "6"),
        ("ZHIKU_SERVER__RATE_LIMIT_BURST", "3"),
        ("ZHIKU_SERVER__MAX_BODY_BYTES", "1024"),
        ("ZHIKU_SERVER__CORS_ORIGINS", "[\"https://app.example\"]"),
        ("ZHIKU_LLM__MIN_RELEVANCE", "0"),
    ];
    let server = Server::start_in(data, &env);

    // Three at once, then 429 with Retry-After; another key has its own allowance, and
    // probes are never limited.
    let models = |key: &str| {
        server
            .as_key(key)
            .request(Method::GET, "/v1/models")
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(models(&first).status().as_u16(), 200);
    }
    let limited = models(&first);
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(models(&second).status().as_u16(), 200);
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").0, 200);
    }

    // A JSON body over server.max_body_bytes: 413 whether its length is declared or not.
    let big = json!({ "query": "backup ".repeat(300) }).to_string();
    let as_second = server.as_key(&second);
    let declared = as_second
        .request(Method::POST, "/v1/kbs/kb/search")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(declared.status().as_u16(), 413);
    let body: Value = declared.json().unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_body_bytes"),
        "{body}"
    );
    let chunked = as_second
        .request(Method::POST, "/v1/kbs/kb/search")
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            big.into_bytes(),
        )))
        .send()
        .unwrap();
    assert_eq!(chunked.status().as_u16(), 413);
    let body: Value = chunked.json().unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");

    // CORS: a preflight from the configured origin is answered without a key; another
    // origin gets no CORS headers; refusals carry them so browsers can read the error.
    let preflight = |origin: &str| {
        server
            .api()
            .request(Method::OPTIONS, "/v1/kbs/kb/search")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .unwrap()
    };
    let allowed = preflight("https://app.example");
    assert_eq!(allowed.status().as_u16(), 200);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let allow_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization"), "{allow_headers}");
    let refused = preflight("https://evil.example");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        refused.headers()
    );
    let unauthorized = server
        .api()
        .request(Method::GET, "/v1/kbs")
        .header("origin", "https://app.example")
        .send()
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_eq!(
        unauthorized.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

const BACKUP: &str = "# Backups\n\nThe nightly backup runs at two o'clock and copies the database to the archive server in building C.";

#[test]
fn request_timeout_spares_started_streams_and_limits_by_address_without_keys() {
    // The document goes in first, without limits: on a loaded machine an upload can take
    // longer than the one-second timeout under test.
    let server = Server::start();
    let (status, body) = server.upload("kb", &[("backup.md", BACKUP.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    let server = Server::start_in(
        server.kill(),
        &[
            ("ZHIKU_SERVER__REQUEST_TIMEOUT_SECS", "1"),
            ("ZHIKU_SERVER__RATE_LIMIT_PER_MINUTE", "1"),
            ("ZHIKU_SERVER__RATE_LIMIT_BURST", "8"),
            ("ZHIKU_LLM__MIN_RELEVANCE", "0"),
        ],
    );
    // Open on loopback, with a warning.
    assert!(server.log().contains("no API keys"), "{}", server.log());
    // The grammar admits no array shorter than 1,900 numbers: generation takes all of
    // max_tokens, many seconds.
    let long = json!({
        "question": "When does the nightly backup run?",
        "max_tokens": 1000,
        "response_format": {"type": "json_schema", "schema": {
            "type": "array", "minItems": 1900, "items": {"type": "integer"}
        }}
    });
    let started = Instant::now();
    let (status, body) = server.post_json("/v1/kbs/kb/ask", &long);
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Streamed, the response has started with the sources: tokens keep coming past the
    // timeout.
    let mut streamed = long.clone();
    streamed["stream"] = json!(true);
    streamed["max_tokens"] = json!(1024);
    let started = Instant::now();
    let response = server
        .api()
        .request(Method::POST, "/v1/kbs/kb/ask")
        .json(&streamed)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = EventStream::new(response);
    loop {
        let (name, data) = events.next_event().expect("stream ended early");
        assert!(name == "sources" || name == "token", "{name}: {data}");
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    drop(events);

    // Without keys the rate limit applies per client address (8 at once, the first
    // request above used some).
    let statuses: Vec<u16> = (0..8).map(|_| server.get("/v1/models").0).collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

fn serve_and_exit(data: &Path, addr: &str, env: &[(&str, &str)]) -> (i32, String) {
    let output = std::process::Command::new(zhiku_e2e::binary())
        .envs(zhiku_e2e::catalog_env(data))
        .envs(env.iter().copied())
        .args(["serve", "--addr", addr, "--data"])
        .arg(data)
        .arg("--models")
        .arg(zhiku_e2e::models_dir())
        .output()
        .expect("run zhiku");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn no_keys_beyond_loopback_refuses_to_start_unless_overridden() {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let started = Instant::now();
    let (code, stderr) = serve_and_exit(data.path(), "0.0.0.0:0", &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("without API keys") && stderr.contains("server.allow_unauthenticated"),
        "{stderr}"
    );
    // Refused before any model is loaded.
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");

    let open = Server::start_on(
        data.clone(),
        "0.0.0.0",
        &[("ZHIKU_SERVER__ALLOW_UNAUTHENTICATED", "true")],
    );
    assert!(open.log().contains("WITHOUT API keys"), "{}", open.log());
    assert_eq!(open.get("/v1/kbs").0, 200);
    let data = open.kill();

    // With a key, the same address needs no override and requires the key.
    let key = create_key(data.path(), &["--admin"]);
    let keyed = Server::start_on(data, "0.0.0.0", &[]);
    assert_eq!(keyed.get("/v1/kbs").0, 401);
    assert_eq!(keyed.as_key(&key).get("/v1/kbs").0, 200);
}

#[test]
fn browsers_cannot_reach_the_service_from_other_sites() {
    // Open mode (no keys, loopback), where a web page would otherwise be enough.
    let server = Server::start();
    let (status, body) = server.upload("kb", &[("backup.md", BACKUP.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let with_host = |host: &str| {
        server
            .api()
            .request(Method::GET, "/v1/kbs")
            .header("host", host)
            .send()
            .unwrap()
    };
    // A DNS name rebound to 127.0.0.1: 421, whatever the port.
    for host in ["evil.example", &format!("evil.example:{port}")] {
        let refused = with_host(host);
        assert_eq!(refused.status().as_u16(), 421, "{host}");
        let body: Value = refused.json().unwrap();
        assert_eq!(body["error"]["code"], "host_not_allowed", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("server.allowed_hosts"),
            "{body}"
        );
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(with_host(&host).status().as_u16(), 200, "{host}");
    }

    // Cross-site writes from a browser: refused, and nothing changes.
    let search = |headers: &[(&str, &str)]| {
        let mut request = server
            .api()
            .request(Method::POST, "/v1/kbs/kb/search")
            .json(&json!({"query": "nightly backup", "mode": "keyword"}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().unwrap()
    };
    let refused = search(&[("origin", "http://evil.example")]);
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "cross_site_refused", "{body}");
    assert_eq!(
        search(&[("sec-fetch-site", "cross-site")])
            .status()
            .as_u16(),
        403
    );
    let upload = server
        .api()
        .request(Method::POST, "/v1/kbs/kb/documents")
        .header("origin", "http://evil.example")
        .multipart(
            reqwest::blocking::multipart::Form::new().part(
                "files",
                reqwest::blocking::multipart::Part::bytes(b"# Evil\n\nReplaced.".to_vec())
                    .file_name("backup.md"),
            ),
        )
        .send()
        .unwrap();
    assert_eq!(upload.status().as_u16(), 403);
    let hits = server.search("kb", "nightly backup", "keyword");
    assert!(
        hits[0]["text"].as_str().unwrap().contains("two o'clock"),
        "{hits:?}"
    );
    // The same site (the service's own page) and clients that are not browsers may.
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(
        search(&[("origin", &own), ("sec-fetch-site", "same-origin")])
            .status()
            .as_u16(),
        200
    );
    assert_eq!(search(&[]).status().as_u16(), 200);

    // Configured: a host name behind a proxy, and an origin allowed by CORS.
    let server = Server::start_in(
        server.kill(),
        &[
            ("ZHIKU_SERVER__ALLOWED_HOSTS", "[\"zhiku.internal\"]"),
            ("ZHIKU_SERVER__CORS_ORIGINS", "[\"https://app.example\"]"),
        ],
    );
    let allowed = server
        .api()
        .request(Method::POST, "/v1/kbs/kb/search")
        .header("host", "zhiku.internal")
        .header("origin", "https://app.example")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"query": "nightly backup", "mode": "keyword"}))
        .send()
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
}
