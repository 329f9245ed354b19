//! The OpenAPI document's frame (info, tags, shared responses) and what the guard adds to
//! every operation; the handlers that serve it and the docs page. The operations come from
//! the handlers' `#[utoipa::path]` attributes, added by the route table (`routes.rs`), so
//! the reference cannot drift from the code.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi as Spec, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};
use zhiku_schemas::openai::ChatCompletionChunk;
use zhiku_schemas::{AskSources, AskToken, ErrorBody};

use crate::guard::UNTIMED_ROUTES;
use crate::responses::{
    BadGateway, BadRequest, Conflict, Forbidden, Internal, NotFound, NotImplemented, Overloaded,
    PayloadTooLarge, RateLimited, Timeout, Unauthorized, UnprocessableContent,
    UnsupportedMediaType,
};
use zhiku_app::access::{Access, RouteAccess};

/// The API reference without its paths: the route table (`routes.rs`) adds each route's
/// operation from its handler's `#[utoipa::path]`, with the schemas it names, then
/// [`describe_guard`].
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
    tags(
        (name = "operations", description = "Health, readiness and metrics for orchestrators and monitoring."),
        (name = "reference", description = "This API reference, and the web page."),
        (name = "access", description = "What the caller's API key may do."),
        (name = "models", description = "The loaded LLM and embedding model."),
        (name = "knowledge bases", description = "Knowledge bases: created explicitly, or by the first upload or import."),
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
const INFALLIBLE: [&str; 6] = ["healthz", "readyz", "spec", "docs", "index", "caller"];

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

/// Adds to `openapi` what stands in front of the handlers of `table`: the failures any
/// operation can have, and from the same access table the server checks, which operations
/// need a key and the refusals that brings.
pub fn describe_guard(openapi: &mut Spec, table: &[RouteAccess]) {
    EveryOperationCanFail.modify(openapi);
    AccessControl(table).modify(openapi);
}

/// What stands in front of the handlers, from the access table the server checks: which
/// operations need a key, and the refusals that brings (401, 403 for read keys on write
/// routes, 404 for a knowledge base the key may not read, 429, 504), plus 413 for any
/// request body over the limit.
struct AccessControl<'a>(&'a [RouteAccess]);

impl Modify for AccessControl<'_> {
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
        for RouteAccess {
            method,
            path: route,
            access,
        } in self.0
        {
            let access = *access;
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
            if !UNTIMED_ROUTES.contains(&route.as_str()) {
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
/// The OpenAPI document as `/openapi.json` serves it, rendered once when the router is
/// built (the router is what knows the routes, so it hands the document to the handler).
#[derive(Clone)]
pub struct SpecJson(Arc<str>);

impl SpecJson {
    /// `openapi` rendered as pretty JSON.
    pub fn new(openapi: &Spec) -> Self {
        Self(
            openapi
                .to_pretty_json()
                .unwrap_or_else(|e| format!(r#"{{"error":{{"code":"internal","message":"{e}"}}}}"#))
                .into(),
        )
    }
}

/// OpenAPI document
///
/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "reference", responses(
    (status = 200, description = "The OpenAPI document.", body = serde_json::Value, content_type = "application/json"),
))]
pub async fn spec(Extension(SpecJson(json)): Extension<SpecJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}
