//! The router: every route, its handler (in `http`) and the layers around them.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::MethodRouter;
use axum::{Extension, Router, middleware};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Spec;
use utoipa::openapi::path::PathItem;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;
use zhiku_app::access::{Access, RouteAccess};
use zhiku_app::config::Role;

use crate::guard::{self, Guard};
use crate::http::{self, AppState};
use crate::openapi;

/// The API's routes as the router matches them, each with who may call it. `zhiku routes`
/// prints them; the e2e tests call every one (`tests/tests/auth.rs`) and check each
/// against the OpenAPI document (`tests/tests/openapi.rs`).
pub fn route_table() -> Vec<RouteAccess> {
    routes(0).table
}

/// The OpenAPI document of the routes, as `/openapi.json` serves it.
pub fn document() -> Spec {
    routes(0).openapi
}

/// The router, who may call each of its routes, and its OpenAPI document: built together
/// from one list, so that none of the three can name a route the others lack.
struct Routes {
    router: Router<AppState>,
    table: Vec<RouteAccess>,
    openapi: Spec,
}

impl Routes {
    /// A route documented by its handler's `#[utoipa::path]` (through `routes!`), served
    /// at the path the documentation names.
    fn add(self, access: Access, route: UtoipaMethodRouter<AppState>) -> Self {
        self.add_wrapped(None, access, route, |r| r)
    }

    /// A route whose axum path differs from its documented one: a catch-all `{*id}`,
    /// which OpenAPI writes `{id}`.
    fn add_at(
        self,
        path: &'static str,
        access: Access,
        route: UtoipaMethodRouter<AppState>,
    ) -> Self {
        self.add_wrapped(Some(path), access, route, |r| r)
    }

    /// A route whose handler gets its own layers (e.g. a body limit).
    fn add_wrapped(
        mut self,
        path: Option<&'static str>,
        access: Access,
        (schemas, paths, method_router): UtoipaMethodRouter<AppState>,
        wrap: impl FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>,
    ) -> Self {
        let mut paths = paths.paths.into_iter();
        let (documented, item) = match (paths.next(), paths.next()) {
            (Some(only), None) => only,
            _ => panic!("one handler per route: its #[utoipa::path] names one path"),
        };
        let path = path.map_or_else(|| documented.clone(), str::to_string);
        assert_eq!(
            path.replace("{*", "{"),
            documented,
            "the route is served where its documentation says"
        );
        for method in methods(&item) {
            self.table.push(RouteAccess {
                method: method.to_string(),
                path: path.clone(),
                access,
            });
        }
        self.router = self.router.route(&path, wrap(method_router));
        match self.openapi.paths.paths.get_mut(&documented) {
            Some(existing) => existing.merge_operations(item),
            None => {
                self.openapi.paths.paths.insert(documented, item);
            }
        }
        self.openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .extend(schemas);
        self
    }

    /// Adds what stands in front of the handlers to the document, now that it has them all.
    fn finish(mut self) -> Self {
        openapi::describe_guard(&mut self.openapi, &self.table);
        self
    }
}

/// The methods a documented path item has operations for.
fn methods(item: &PathItem) -> Vec<Method> {
    [
        (&item.get, Method::GET),
        (&item.post, Method::POST),
        (&item.put, Method::PUT),
        (&item.patch, Method::PATCH),
        (&item.delete, Method::DELETE),
    ]
    .into_iter()
    .filter(|(operation, _)| operation.is_some())
    .map(|(_, method)| method)
    .collect()
}

/// What every node answers, workers included: health, readiness and metrics.
fn operations() -> Routes {
    Routes {
        router: Router::new(),
        table: Vec::new(),
        openapi: openapi::ApiDoc::openapi(),
    }
    .add(Access::Open, routes!(http::operations::healthz))
    .add(Access::Open, routes!(http::operations::readyz))
    .add(Access::Open, routes!(http::operations::metrics))
}

/// Every route; the only place routes are added, each with who may call it and its
/// documentation (the handler's `#[utoipa::path]`).
fn routes(upload_limit: usize) -> Routes {
    use Access::*;
    operations()
        // The API reference describes the API, not anyone's data; the docs page fetches the
        // document without a key.
        .add(Open, routes!(openapi::spec))
        .add(Open, routes!(http::ui::docs))
        // The web page is public like the reference; everything it shows comes from the API,
        // with the key the user enters.
        .add(Open, routes!(http::ui::index))
        .add(Open, routes!(http::ui::asset))
        .add(AnyKey, routes!(http::auth::caller))
        .add(PerItem, routes!(http::models::models))
        .add(AnyKey, routes!(http::models::tokenize))
        .add(PerItem, routes!(http::openai::chat_completions))
        .add(AnyKey, routes!(http::openai::embeddings))
        .add(PerItem, routes!(http::kbs::list_kbs))
        .add(KbRead, routes!(http::kbs::get_kb))
        .add(KbWrite, routes!(http::kbs::create_kb))
        .add(KbWrite, routes!(http::kbs::delete_kb))
        .add_wrapped(None, KbWrite, routes!(http::documents::upload), |route| {
            route.layer(DefaultBodyLimit::max(upload_limit))
        })
        .add(KbRead, routes!(http::documents::list_documents))
        .add_at(
            "/v1/kbs/{kb}/documents/{*id}",
            KbRead,
            routes!(http::documents::get_document),
        )
        .add_at(
            "/v1/kbs/{kb}/documents/{*id}",
            KbWrite,
            routes!(http::documents::delete_document),
        )
        .add(PerItem, routes!(http::jobs::create_job))
        .add(PerItem, routes!(http::jobs::list_jobs))
        .add(PerItem, routes!(http::jobs::get_job))
        .add(PerItem, routes!(http::jobs::cancel_job))
        .add(PerItem, routes!(http::jobs::job_events))
        .add(KbRead, routes!(http::search::search))
        .add(KbWrite, routes!(http::kbs::reindex))
        .add(KbRead, routes!(http::ask::ask))
        .add(KbRead, routes!(http::conversations::export_qa))
        .add(PerItem, routes!(http::conversations::list_conversations))
        .add(PerItem, routes!(http::conversations::get_conversation))
        .add(PerItem, routes!(http::conversations::delete_conversation))
        .add(PerItem, routes!(http::conversations::conversation_feedback))
        .finish()
}

/// The API's routes, behind the [`Guard`]'s layers.
pub fn router(services: AppState, guard: Arc<Guard>) -> Router {
    // A worker runs jobs: it has no LLM loaded, and clients talk to API nodes.
    let router = if services.config.server.role == Role::Worker {
        operations().finish().router.fallback(http::worker_only)
    } else {
        let Routes {
            router, openapi, ..
        } = routes(guard.max_upload_bytes);
        router
            .layer(Extension(openapi::SpecJson::new(&openapi)))
            .fallback(http::not_found)
    };
    let router = router
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
