//! The router: every route, its handler (in `http`) and the layers around them.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::guard::{self, Guard, UPLOAD_ROUTE};
use crate::http::{self, AppState};
use crate::openapi;

/// The API's routes, as the router matches them: `(method, path)`. `zhiku routes` prints
/// them and the e2e test checks each against the OpenAPI document, so a route added here
/// without `#[utoipa::path]` docs fails the build's tests.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes(0).table
}

/// The router and the list of what it routes, built together so that they cannot differ.
struct Routes {
    router: Router<AppState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add_wrapped(method, path, handler, |route| route)
    }

    /// A route whose handler gets its own layers (e.g. a body limit).
    fn add_wrapped<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        handler: H,
        wrap: impl FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} cannot be routed"));
        self.router = self.router.route(path, wrap(on(filter, handler)));
        self.table.push((method, path));
        self
    }
}

/// Every route; the only place routes are added. Each must also be in
/// [`zhiku_app::access::ROUTES`], which says who may call it: an unlisted one is refused.
fn routes(upload_limit: usize) -> Routes {
    let api = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    api.add(Method::GET, "/healthz", http::operations::healthz)
        .add(Method::GET, "/readyz", http::operations::readyz)
        .add(Method::GET, "/metrics", http::operations::metrics)
        .add(Method::GET, "/openapi.json", openapi::spec)
        .add(Method::GET, "/docs", openapi::docs)
        .add(Method::GET, "/v1/models", http::models::models)
        .add(Method::POST, "/v1/tokenize", http::models::tokenize)
        .add(
            Method::POST,
            "/v1/chat/completions",
            http::openai::chat_completions,
        )
        .add(Method::POST, "/v1/embeddings", http::openai::embeddings)
        .add(Method::GET, "/v1/kbs", http::kbs::list_kbs)
        .add(Method::GET, "/v1/kbs/{kb}", http::kbs::get_kb)
        .add(Method::DELETE, "/v1/kbs/{kb}", http::kbs::delete_kb)
        .add_wrapped(
            Method::POST,
            UPLOAD_ROUTE,
            http::documents::upload,
            |route| route.layer(DefaultBodyLimit::max(upload_limit)),
        )
        .add(
            Method::GET,
            "/v1/kbs/{kb}/documents",
            http::documents::list_documents,
        )
        .add(
            Method::GET,
            "/v1/kbs/{kb}/documents/{*id}",
            http::documents::get_document,
        )
        .add(
            Method::DELETE,
            "/v1/kbs/{kb}/documents/{*id}",
            http::documents::delete_document,
        )
        .add(Method::POST, "/v1/jobs", http::jobs::create_job)
        .add(Method::GET, "/v1/jobs", http::jobs::list_jobs)
        .add(Method::GET, "/v1/jobs/{id}", http::jobs::get_job)
        .add(Method::DELETE, "/v1/jobs/{id}", http::jobs::cancel_job)
        .add(Method::GET, "/v1/jobs/{id}/events", http::jobs::job_events)
        .add(Method::POST, "/v1/kbs/{kb}/search", http::search::search)
        .add(Method::POST, "/v1/kbs/{kb}/reindex", http::kbs::reindex)
        .add(Method::POST, "/v1/kbs/{kb}/ask", http::ask::ask)
        .add(
            Method::GET,
            "/v1/kbs/{kb}/export/qa.jsonl",
            http::conversations::export_qa,
        )
        .add(
            Method::GET,
            "/v1/conversations",
            http::conversations::list_conversations,
        )
        .add(
            Method::GET,
            "/v1/conversations/{id}",
            http::conversations::get_conversation,
        )
        .add(
            Method::DELETE,
            "/v1/conversations/{id}",
            http::conversations::delete_conversation,
        )
        .add(
            Method::POST,
            "/v1/conversations/{id}/feedback",
            http::conversations::conversation_feedback,
        )
}

/// The API's routes, behind the [`Guard`]'s layers.
pub fn router(services: AppState, guard: Arc<Guard>) -> Router {
    let router = routes(guard.max_upload_bytes)
        .router
        .fallback(http::not_found)
        // Layers added last run first. Innermost: body limits (the upload route's own
        // limit above wins over this one), then access, then the timeout, then metrics,
        // which so count refusals too.
        .layer(middleware::from_fn_with_state(
            guard.clone(),
            guard::reject_oversize,
        ))
        .layer(DefaultBodyLimit::max(guard.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            guard.clone(),
            guard::check_access,
        ))
        .layer(middleware::from_fn_with_state(
            guard.clone(),
            guard::time_limit,
        ))
        .layer(middleware::from_fn_with_state(
            services.clone(),
            http::track,
        ))
        .layer(middleware::from_fn(guard::drain_unread));
    // CORS answers preflights before access is checked, and its headers reach refusals.
    let router = match &guard.cors {
        Some(cors) => router.layer(cors.clone()),
        None => router,
    };
    // Every request gets an id (a client's own `x-request-id` is kept) before the trace
    // span opens, and the response carries it.
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(http::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(services)
}
