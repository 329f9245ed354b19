//! Who may call each route: one table, read by the server's access check and compiled
//! into the isolation test (`tests/tests/auth.rs`), so that a route cannot be served
//! without a decision about who may call it, nor decided without being tested.
//!
//! A route missing from the table is refused (500, logged) and a method missing from a
//! listed path is answered 405, before any handler runs. This file depends on nothing
//! else in the crate so the test can include it as it is.

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, key or not: liveness and readiness probes and metric scrapers run without
    /// credentials.
    Open,
    /// Any valid key: nothing it returns belongs to a knowledge base.
    AnyKey,
    /// A key that may read the path's `{kb}`; others get the same 404 as for a knowledge
    /// base that does not exist.
    KbRead,
    /// A key that may write the path's `{kb}`: 404 as above without read access, 403 with
    /// read access only.
    KbWrite,
    /// Any valid key; the handler decides per item because the knowledge base is not in
    /// the path (it is in the body, or belongs to the job or conversation named), or
    /// filters a list to what the key may read.
    PerItem,
}

/// Every route: method, path template as registered with axum, who may call it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    ("GET", "/metrics", Access::Open),
    // The API reference describes the API, not anyone's data; the docs page fetches the
    // document without a key.
    ("GET", "/openapi.json", Access::Open),
    ("GET", "/docs", Access::Open),
    ("GET", "/v1/models", Access::PerItem),
    ("POST", "/v1/tokenize", Access::AnyKey),
    ("POST", "/v1/chat/completions", Access::PerItem),
    ("POST", "/v1/embeddings", Access::AnyKey),
    ("GET", "/v1/kbs", Access::PerItem),
    ("GET", "/v1/kbs/{kb}", Access::KbRead),
    ("DELETE", "/v1/kbs/{kb}", Access::KbWrite),
    ("POST", "/v1/kbs/{kb}/documents", Access::KbWrite),
    ("GET", "/v1/kbs/{kb}/documents", Access::KbRead),
    ("GET", "/v1/kbs/{kb}/documents/{*id}", Access::KbRead),
    ("DELETE", "/v1/kbs/{kb}/documents/{*id}", Access::KbWrite),
    ("POST", "/v1/kbs/{kb}/search", Access::KbRead),
    ("POST", "/v1/kbs/{kb}/reindex", Access::KbWrite),
    ("POST", "/v1/kbs/{kb}/ask", Access::KbRead),
    ("GET", "/v1/kbs/{kb}/export/qa.jsonl", Access::KbRead),
    ("GET", "/v1/conversations", Access::PerItem),
    ("GET", "/v1/conversations/{id}", Access::PerItem),
    ("DELETE", "/v1/conversations/{id}", Access::PerItem),
    ("POST", "/v1/conversations/{id}/feedback", Access::PerItem),
    ("POST", "/v1/jobs", Access::PerItem),
    ("GET", "/v1/jobs", Access::PerItem),
    ("GET", "/v1/jobs/{id}", Access::PerItem),
    ("DELETE", "/v1/jobs/{id}", Access::PerItem),
    ("GET", "/v1/jobs/{id}/events", Access::PerItem),
];

/// What the table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A listed route.
    Route(Access),
    /// The path is listed, but not with this method.
    OtherMethod,
    /// The path is not listed at all.
    Unlisted,
}

/// The access of `method` on the route template `path`. `HEAD` is served by `GET`
/// handlers, so it has their access.
pub fn lookup(method: &str, path: &str) -> Lookup {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut listed = false;
    for (m, p, access) in ROUTES {
        if *p == path {
            if *m == method {
                return Lookup::Route(*access);
            }
            listed = true;
        }
    }
    if listed {
        Lookup::OtherMethod
    } else {
        Lookup::Unlisted
    }
}
