//! Who may call a route. The server's route table gives every route an [`Access`] where
//! the route is added, so a route cannot be served without a decision about who may call
//! it; `zhiku routes` prints the table, and the isolation test (`tests/tests/auth.rs`)
//! calls every route it lists with keys of each kind.
//!
//! A route missing from the table is refused (500, logged) and a method missing from a
//! listed path is answered 405, before any handler runs.

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

/// One route and who may call it: what the router's table says, read by the access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAccess {
    /// The HTTP method, upper case (`GET`).
    pub method: String,
    /// The path template as registered with axum (`/v1/kbs/{kb}/documents/{*id}`).
    pub path: String,
    /// Who may call it.
    pub access: Access,
}

impl Access {
    /// The name `zhiku routes` prints (`kb-read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::AnyKey => "any-key",
            Access::KbRead => "kb-read",
            Access::KbWrite => "kb-write",
            Access::PerItem => "per-item",
        }
    }
}

impl std::str::FromStr for Access {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Access::Open,
            Access::AnyKey,
            Access::KbRead,
            Access::KbWrite,
            Access::PerItem,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown access {s:?}"))
    }
}

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

/// The access of `method` on the route template `path` in `table`. `HEAD` is served by
/// `GET` handlers, so it has their access.
pub fn lookup(table: &[RouteAccess], method: &str, path: &str) -> Lookup {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut listed = false;
    for route in table {
        if route.path == path {
            if route.method == method {
                return Lookup::Route(route.access);
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
