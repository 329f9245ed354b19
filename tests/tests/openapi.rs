//! The API reference: `/openapi.json` documents every route the router has (the list comes
//! from the binary, `zhiku routes`, so a route added without docs fails here), its
//! references resolve, errors are `ErrorBody`, and `/docs` shows it.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use zhiku_e2e::{Server, binary};

/// `(METHOD, path)` of every route, as the router matches them.
fn routes() -> Vec<(String, String)> {
    zhiku_e2e::routes()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

/// A route's path as OpenAPI writes it: axum's catch-all `{*id}` is `{id}`.
fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

/// Every `$ref` in a JSON value.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

/// Follows a local `$ref` (`#/a/b`) to what it names.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> Option<&'a Value> {
    match value.get("$ref").and_then(Value::as_str) {
        Some(target) => spec.pointer(target.strip_prefix('#')?),
        None => Some(value),
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn the_spec_documents_every_route_and_the_docs_page_shows_it() {
    let routes = routes();
    let server = Server::start();
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200, "{spec}");
    let version = spec["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "OpenAPI {version}");
    assert_eq!(spec["info"]["title"], "zhiku");
    let cli_version = Command::new(binary()).arg("--version").output().unwrap();
    let cli_version = String::from_utf8(cli_version.stdout).unwrap();
    assert_eq!(
        cli_version.trim(),
        format!("zhiku {}", spec["info"]["version"].as_str().unwrap())
    );

    // Both ways: every route is documented, every documented operation is routed.
    let paths = spec["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(method, path)| (method.clone(), openapi_path(path)))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json (add #[utoipa::path] and list them in ApiDoc): {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );

    // `zhiku routes` is the router's own list: each route reaches a handler (an empty
    // request is refused by the handler, or names a missing KB, document or job, never
    // the fallback's "no such route", a 405, or the refusal of a route missing from the
    // access table).
    for (method, path) in &routes {
        let concrete = path
            .replace("{*id}", "no/such/doc")
            .replace("{kb}", "no-such-kb")
            .replace("{id}", "no-such-id");
        let url = format!("{}{concrete}", server.url);
        let response = server
            .client
            .request(method.parse().unwrap(), &url)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is not routed: {status} {body}"
        );
        assert!(
            !body.contains("access table"),
            "{method} {path} is not in access.rs: {body}"
        );
    }

    // Every reference resolves.
    let mut targets = Vec::new();
    refs(&spec, &mut targets);
    assert!(targets.len() > 50, "{targets:?}");
    for target in &targets {
        assert!(
            target.starts_with("#/components/"),
            "non-local reference {target}"
        );
        assert!(
            resolve(&spec, &serde_json::json!({ "$ref": target })).is_some(),
            "{target} does not resolve"
        );
    }

    // Every error is the error body (a probe may answer its own report with an error
    // status), and every operation that takes input documents how it refuses it.
    let error_body = "#/components/schemas/ErrorBody";
    for (method, path) in &documented {
        let operation = &paths[path][method.to_lowercase()];
        let responses = operation["responses"].as_object().unwrap();
        let schema = |code: &str| {
            responses
                .get(code)
                .and_then(|r| resolve(&spec, r))
                .and_then(|r| r.pointer("/content/application~1json/schema/$ref"))
                .and_then(Value::as_str)
        };
        let errors: Vec<&String> = responses.keys().filter(|c| c.as_str() >= "400").collect();
        for code in &errors {
            assert!(
                schema(code).is_some_and(|s| s == error_body || Some(s) == schema("200")),
                "{method} {path}: {code} is not an ErrorBody"
            );
        }
        let takes_input = operation.get("requestBody").is_some()
            || operation["parameters"]
                .as_array()
                .is_some_and(|p| !p.is_empty());
        assert!(
            !takes_input || errors.iter().any(|c| c.starts_with('4')),
            "{method} {path} takes input but documents no 4xx response"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has no summary"
        );
    }
    let error = &spec["components"]["schemas"]["ErrorBody"];
    assert_eq!(
        error["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );

    // The docs page is HTML whose script, served by the binary too, loads this document.
    let (status, content_type, html) = server.get_text("/docs");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        html.contains("<html") && html.contains("ui/docs.js"),
        "{html}"
    );
    let (status, content_type, script) = server.get_text("/ui/docs.js");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
    assert!(script.contains("openapi.json"), "{script}");
}
