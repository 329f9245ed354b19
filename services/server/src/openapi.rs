//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! `zhiku-schemas` types, so the reference cannot drift from the code; the docs page that
//! shows it; and the JSON Schemas of the API types cut out of it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi as Spec, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};
use zhiku_schemas::openai::ChatCompletionChunk;
use zhiku_schemas::{AskSources, AskToken, ErrorBody};

use crate::guard::UNTIMED_ROUTES;
use crate::http;
use crate::responses::{
    BadGateway, BadRequest, Conflict, Forbidden, Internal, NotFound, NotImplemented, Overloaded,
    PayloadTooLarge, RateLimited, Timeout, Unauthorized, UnprocessableContent,
    UnsupportedMediaType,
};
use zhiku_app::access::{self, Access};

/// The API reference. Paths come from the handlers' attributes; schemas from the types
/// they name, collected recursively.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "zhiku",
        description = "知库: a retrieval-augmented knowledge base for Chinese and English documents. \
            Upload documents into knowledge bases, search them (hybrid BM25 and dense), and ask \
            questions answered from them with citations.\n\n\
            Every error is JSON `{\"error\": {\"code\", \"message\", \"files\"?}}` (`ErrorBody`): \
            `code` is stable and machine-readable, `message` is for people.\n\n\
            Routes other than the probes, metrics and this reference take an API key \
            (`Authorization: Bearer zk_...`, see the `api_key` scheme).",
    ),
    paths(
        http::operations::healthz,
        http::operations::readyz,
        http::operations::metrics,
        spec,
        docs,
        http::models::models,
        http::models::tokenize,
        http::openai::chat_completions,
        http::openai::embeddings,
        http::kbs::list_kbs,
        http::kbs::get_kb,
        http::kbs::delete_kb,
        http::documents::upload,
        http::documents::list_documents,
        http::documents::get_document,
        http::documents::delete_document,
        http::jobs::create_job,
        http::jobs::list_jobs,
        http::jobs::get_job,
        http::jobs::cancel_job,
        http::jobs::job_events,
        http::search::search,
        http::kbs::reindex,
        http::ask::ask,
        http::conversations::export_qa,
        http::conversations::list_conversations,
        http::conversations::get_conversation,
        http::conversations::delete_conversation,
        http::conversations::conversation_feedback,
    ),
    components(
        // The error body is named only by the shared responses below; the others are sent
        // only as `data` of Server-Sent Events, which OpenAPI 3.1 cannot type.
        schemas(ErrorBody, AskSources, AskToken, ChatCompletionChunk),
        responses(
            BadRequest,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            UnprocessableContent,
            Internal,
            Overloaded,
            Unauthorized,
            RateLimited,
            Timeout,
            BadGateway,
            NotImplemented,
        ),
    ),
    modifiers(&EveryOperationCanFail, &AccessControl),
    tags(
        (name = "operations", description = "Health, readiness and metrics for orchestrators and monitoring."),
        (name = "reference", description = "This API reference."),
        (name = "models", description = "The loaded LLM and embedding model."),
        (name = "knowledge bases", description = "Knowledge bases: created by the first upload or import."),
        (name = "documents", description = "Uploading, listing and deleting documents."),
        (name = "jobs", description = "Batch imports of server directories, and uploads with `wait=false`."),
        (name = "search", description = "Retrieval without generation."),
        (name = "ask", description = "Answers generated from retrieved sources, with citations."),
        (name = "openai", description = "OpenAI-compatible chat completions and embeddings, for existing OpenAI clients."),
        (name = "conversations", description = "Every answer is a turn of a conversation: follow-ups, feedback, and the export of good answers as fine-tuning data."),
    ),
)]
pub struct ApiDoc;

/// A server-side failure (`internal`, `storage_failed`, `index_failed`, `embedding_failed`,
/// `generation_failed`) can end almost any request; documented once here rather than on
/// every handler, so a new route gets it without anyone remembering to.
struct EveryOperationCanFail;

/// Operations that touch no storage or model and so never answer 500 (`/readyz` reports
/// its failures as 503).
const INFALLIBLE: [&str; 4] = ["healthz", "readyz", "spec", "docs"];

impl Modify for EveryOperationCanFail {
    fn modify(&self, openapi: &mut Spec) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if !INFALLIBLE.contains(&operation.operation_id.as_deref().unwrap_or_default()) {
                    respond::<Internal>(operation, "500");
                }
            }
        }
    }
}

/// Name of the API-key security scheme.
const API_KEY: &str = "api_key";

/// What stands in front of the handlers, from the same access table the server checks
/// (`access::ROUTES`): which operations need a key, and the refusals that brings (401,
/// 403 for read keys on write routes, 404 for a knowledge base the key may not read,
/// 429, 504), plus 413 for any request body over the limit.
struct AccessControl;

impl Modify for AccessControl {
    fn modify(&self, openapi: &mut Spec) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("zk_<id>_<secret>")
            .description(Some(
                "An API key from `zhiku keys create`, sent as `Authorization: Bearer zk_...`. \
                 Required once any key exists, and always when the server listens beyond \
                 loopback (unless `server.allow_unauthenticated`). A key may be limited to one \
                 knowledge base and to reading it: other knowledge bases then answer 404, as if \
                 they did not exist, and its write routes 403.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build())
            .add_security_scheme(API_KEY, SecurityScheme::Http(scheme));
        for &(method, route, access) in access::ROUTES {
            let Some(operation) = operation_mut(openapi, method, &route.replace("{*", "{")) else {
                continue;
            };
            if operation.request_body.is_some() {
                respond::<PayloadTooLarge>(operation, "413");
            }
            if access == Access::Open {
                continue;
            }
            operation
                .security
                .get_or_insert_with(Vec::new)
                .push(SecurityRequirement::new::<_, _, &str>(API_KEY, []));
            respond::<Unauthorized>(operation, "401");
            respond::<RateLimited>(operation, "429");
            if !UNTIMED_ROUTES.contains(&route) {
                respond::<Timeout>(operation, "504");
            }
            if matches!(access, Access::KbRead | Access::KbWrite) {
                respond::<BadRequest>(operation, "400");
                respond::<NotFound>(operation, "404");
            }
            if access == Access::KbWrite {
                respond::<Forbidden>(operation, "403");
            }
        }
    }
}

/// The operation of `method` on the OpenAPI `path`.
fn operation_mut<'a>(openapi: &'a mut Spec, method: &str, path: &str) -> Option<&'a mut Operation> {
    let item = openapi.paths.paths.get_mut(path)?;
    match method {
        "GET" => item.get.as_mut(),
        "POST" => item.post.as_mut(),
        "PUT" => item.put.as_mut(),
        "PATCH" => item.patch.as_mut(),
        "DELETE" => item.delete.as_mut(),
        _ => None,
    }
}

/// Adds the shared response `R` for `status`, unless the operation documents that status
/// itself.
fn respond<'r, R: ToResponse<'r>>(operation: &mut Operation, status: &str) {
    let (name, _) = R::response();
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
}

/// The document as served: generated once, it never changes while the process runs.
static SPEC_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!(r#"{{"error":{{"code":"internal","message":"{e}"}}}}"#))
});

/// OpenAPI document
///
/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "reference", responses(
    (status = 200, description = "The OpenAPI document.", body = serde_json::Value, content_type = "application/json"),
))]
pub async fn spec() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        SPEC_JSON.as_str(),
    )
        .into_response()
}

/// The docs page: Scalar's API reference, which the browser loads from a CDN, so the
/// binary ships no JavaScript and the build downloads nothing. The spec is named
/// relative to the page so that it still resolves behind a path-prefixing proxy.
const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>zhiku API reference</title>
</head>
<body>
  <noscript>The interactive reference needs JavaScript; the OpenAPI document is at <a href="./openapi.json">/openapi.json</a>.</noscript>
  <div id="app"></div>
  <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference@1"></script>
  <script>Scalar.createApiReference('#app', { url: './openapi.json' })</script>
</body>
</html>
"#;

/// API reference page
///
/// An interactive reference of this API (Scalar, loaded by the browser from a CDN),
/// showing `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "reference", responses(
    (status = 200, description = "The HTML page.", body = String, content_type = "text/html"),
))]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

/// The JSON Schema (draft 2020-12) of every API type, by type name: each component schema
/// of the OpenAPI document with the components it refers to under `$defs`. OpenAPI 3.1
/// schemas are JSON Schema 2020-12, so only the references need rewriting.
pub fn json_schemas() -> BTreeMap<String, Value> {
    let components = ApiDoc::openapi()
        .components
        .unwrap_or_else(|| ComponentsBuilder::new().build());
    let all: BTreeMap<String, Value> = components
        .schemas
        .iter()
        .map(|(name, schema)| {
            let mut schema = serde_json::to_value(schema).unwrap_or(Value::Null);
            rewrite_refs(&mut schema);
            (name.clone(), schema)
        })
        .collect();
    all.iter()
        .map(|(name, schema)| {
            let mut defs = BTreeMap::new();
            collect_defs(schema, &all, &mut defs);
            let mut document = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": name,
            });
            if let (Value::Object(document), Value::Object(schema)) = (&mut document, schema) {
                document.extend(schema.clone());
                if !defs.is_empty() {
                    document.insert("$defs".into(), json!(defs));
                }
            }
            (name.clone(), document)
        })
        .collect()
}

const COMPONENT_PREFIX: &str = "#/components/schemas/";

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix(COMPONENT_PREFIX) {
                            *target = format!("#/$defs/{name}");
                        }
                    }
                    (_, value) => rewrite_refs(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Adds every schema `value` refers to, directly or not, to `defs`.
fn collect_defs(value: &Value, all: &BTreeMap<String, Value>, defs: &mut BTreeMap<String, Value>) {
    for target in refs(value) {
        if let Some(name) = target.strip_prefix("#/$defs/")
            && !defs.contains_key(name)
            && let Some(schema) = all.get(name)
        {
            defs.insert(name.to_string(), schema.clone());
            collect_defs(schema, all, defs);
        }
    }
}

/// Every `$ref` target in `value`.
fn refs(value: &Value) -> Vec<&str> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value) {
                ("$ref", Value::String(target)) => vec![target.as_str()],
                _ => refs(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

/// Writes [`json_schemas`] into `dir` as `<Type>.schema.json`, and removes schema files of
/// types that no longer exist, so the directory is exactly what the code defines.
pub fn write_json_schemas(dir: &std::path::Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let schemas = json_schemas();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".schema.json")
            && !schemas.contains_key(stem)
        {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, schema) in &schemas {
        std::fs::write(dir.join(format!("{name}.schema.json")), schema_text(schema))?;
    }
    Ok(schemas.len())
}

/// A schema file's text: pretty JSON with a final newline.
pub fn schema_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn committed_json_schemas_are_generated_ones() {
        // Read at run time, as the e2e harness does: a shared target directory may hold a
        // test binary compiled from another checkout.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let dir = manifest.join("../../schemas/json");
        let generated = json_schemas();
        let mut committed = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".schema.json") {
                committed.insert(stem.to_string());
            }
        }
        assert_eq!(
            committed,
            generated.keys().cloned().collect(),
            "schemas/json is stale: run `zhiku schemas`"
        );
        for (name, schema) in &generated {
            let text = std::fs::read_to_string(dir.join(format!("{name}.schema.json"))).unwrap();
            assert_eq!(
                text,
                schema_text(schema),
                "schemas/json/{name}.schema.json is stale: run `zhiku schemas`"
            );
        }
    }

    #[test]
    fn json_schemas_refer_only_to_their_own_defs() {
        for (name, schema) in json_schemas() {
            for target in refs(&schema) {
                let def = target
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("{name}: reference {target} is not to its $defs"));
                assert!(
                    schema["$defs"].get(def).is_some(),
                    "{name}: {target} is missing"
                );
            }
        }
    }
}
