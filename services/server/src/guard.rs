//! What stands in front of every handler: API keys and per-route access (the router's
//! table that `routes.rs` builds), the per-caller rate limit, the request timeout, request
//! body limits and CORS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use zhiku_app::access::{self, Access, Lookup, RouteAccess};
use zhiku_app::auth::Keys;
use zhiku_app::config::ServerConfig;
use zhiku_app::error::ServiceError;

use crate::error::ApiError;
use crate::http::extract::path_param;
use zhiku_app::limits::RateLimiter;

/// The upload route: its body limit is `server.max_upload_bytes`, every other route's
/// `server.max_body_bytes`.
pub const UPLOAD_ROUTE: &str = "/v1/kbs/{kb}/documents";

/// Routes without the request timeout: a reindex runs to completion whatever the client
/// does (it cannot be stopped midway), so a timeout would only hide its result.
pub const UNTIMED_ROUTES: &[&str] = &["/v1/kbs/{kb}/reindex"];

/// Bytes of an unread body [`drain_unread`] reads and throws away before answering.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The settings and state the layers share.
pub struct Guard {
    /// The API keys, reloaded when `zhiku keys` changes them.
    pub keys: Keys,
    limiter: RateLimiter,
    timeout: Option<Duration>,
    /// Largest JSON (any non-upload) request body.
    pub max_body_bytes: usize,
    /// Largest upload request body.
    pub max_upload_bytes: usize,
    /// `None` when no origin is configured: no CORS headers at all.
    pub cors: Option<CorsLayer>,
    /// Origins whose browsers may write (`server.cors_origins`); `*` is every one.
    write_origins: Vec<String>,
    /// Host names answered besides loopback ones (`server.allowed_hosts`), lowercased.
    hosts: Vec<String>,
    /// Who may call each route: the router's table.
    routes: Vec<RouteAccess>,
}

impl Guard {
    /// The guard for `config`, with the keys already loaded, checking access by the
    /// router's `routes`. Fails on unusable CORS origins.
    pub fn new(
        config: &ServerConfig,
        keys: Keys,
        routes: Vec<RouteAccess>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            keys,
            limiter: RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_burst),
            timeout: (config.request_timeout_secs > 0)
                .then(|| Duration::from_secs(config.request_timeout_secs)),
            max_body_bytes: config.max_body_bytes,
            max_upload_bytes: config.max_upload_bytes,
            cors: cors_layer(&config.cors_origins)?,
            write_origins: config.cors_origins.clone(),
            hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            routes,
        })
    }
}

/// CORS for `origins`: none for an empty list, any origin for `["*"]`, else exactly the
/// listed ones. Keys travel in the `Authorization` header, never cookies, so credentials
/// are not allowed.
fn cors_layer(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        anyhow::ensure!(
            origins.len() == 1,
            "server.cors_origins: \"*\" allows every origin and cannot be combined with others"
        );
        AllowOrigin::any()
    } else {
        let mut values = Vec::with_capacity(origins.len());
        for origin in origins {
            let (_, host) = origin.split_once("://").unwrap_or_default();
            anyhow::ensure!(
                (origin.starts_with("http://") || origin.starts_with("https://"))
                    && !host.is_empty()
                    && !host.contains('/'),
                "server.cors_origins: {origin:?} is not an origin: write scheme://host[:port], without a path or trailing slash"
            );
            values.push(HeaderValue::from_str(origin)?);
        }
        AllowOrigin::list(values)
    };
    let request_id = HeaderName::from_static("x-request-id");
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                request_id.clone(),
            ])
            .expose_headers([header::RETRY_AFTER, request_id])
            .max_age(Duration::from_secs(600)),
    ))
}

/// The route template a request matched; `None` for the fallback.
fn matched(request: &Request) -> Option<String> {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
}

/// Authenticates the caller, applies the rate limit and the route's [`Access`], and puts
/// the [`zhiku_app::auth::Principal`] in the request's extensions for handlers that decide
/// per item.
pub async fn check_access(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&guard, request).await {
        Ok(request) => next.run(request).await,
        // The refused request's body is read by [`drain_unread`] before this is sent.
        Err(error) => ApiError(error).into_response(),
    }
}

/// The host name of a `Host` header value (or an origin's authority): lowercased,
/// without port; IPv6 literals without their brackets.
fn host_name(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    authority
        .rsplit_once(':')
        .map_or(authority.clone(), |(host, _)| host.to_string())
}

/// Whether a host name is this machine's loopback by name or address.
fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a request whose `Host` is neither loopback nor allowed: a page on another
/// site can point a DNS name at 127.0.0.1, and the browser then sends that name. A
/// request without `Host` (HTTP/1.0 tools) is let through: browsers always send one.
fn check_host(guard: &Guard, headers: &axum::http::HeaderMap) -> Result<(), ServiceError> {
    let Some(value) = headers.get(header::HOST) else {
        return Ok(());
    };
    let host = host_name(value.to_str().unwrap_or_default());
    if is_loopback_name(&host) || guard.hosts.iter().any(|h| h == "*" || *h == host) {
        return Ok(());
    }
    Err(ServiceError::HostNotAllowed(format!(
        "host {host:?} is not served here: add it to server.allowed_hosts"
    )))
}

/// Refuses a browser's write from another site: a method other than GET, HEAD or
/// OPTIONS whose `Sec-Fetch-Site` says cross-site or same-site, or whose `Origin` is not
/// the request's own host, unless `server.cors_origins` lists that origin (or `*`).
/// Clients other than browsers send neither header and are not affected.
fn check_site(
    guard: &Guard,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
) -> Result<(), ServiceError> {
    use axum::http::Method;
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text("origin");
    let fetch_site = text("sec-fetch-site");
    let same_origin = match origin {
        Some(origin) => {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            text("host").is_some_and(|host| host.eq_ignore_ascii_case(authority))
        }
        None => true,
    };
    let cross = !same_origin || matches!(fetch_site, Some("cross-site" | "same-site"));
    let allowed = |o: &str| {
        guard
            .write_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(o))
    };
    if !cross || origin.is_some_and(allowed) {
        return Ok(());
    }
    Err(ServiceError::CrossSite(format!(
        "a browser write from {} is refused: add the origin to server.cors_origins to allow it",
        origin.unwrap_or("another site")
    )))
}

/// The `Content-Length` a request declares.
fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Reads whatever a handler (or a layer that refused the request) left of a request body
/// before the response is sent. Clients send the whole body before they read the
/// response; a server that answers early and closes the connection with body unread makes
/// most of them report a broken connection (or lose the response to a TCP reset) instead
/// of the 4xx it sent. Bodies declared larger than [`DRAIN_LIMIT`], or not sent within
/// [`DRAIN_TIME`], are cut off instead.
pub async fn drain_unread(request: Request, next: Next) -> Response {
    let declared = declared_length(request.headers());
    let left = Arc::new(parking_lot::Mutex::new(None));
    let request = request.map(|body| {
        axum::body::Body::new(Tracked {
            body: Some(body),
            left: left.clone(),
        })
    });
    let response = next.run(request).await;
    let unread = left.lock().take();
    if let Some(body) = unread
        && declared.is_none_or(|length| length <= DRAIN_LIMIT)
    {
        let _ = tokio::time::timeout(DRAIN_TIME, discard(body)).await;
    }
    response
}

/// How long [`drain_unread`] waits for the rest of a body.
const DRAIN_TIME: Duration = Duration::from_secs(30);

async fn discard(mut body: axum::body::Body) {
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |d| d.len());
        if read > DRAIN_LIMIT {
            break;
        }
    }
}

/// A request body that, dropped before its end, hands what is left to [`drain_unread`].
struct Tracked {
    body: Option<axum::body::Body>,
    left: Arc<parking_lot::Mutex<Option<axum::body::Body>>>,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.body.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(body) = self.body.take()
            && !body.is_end_stream()
        {
            *self.left.lock() = Some(body);
        }
    }
}

async fn authorize(guard: &Guard, mut request: Request) -> Result<Request, ServiceError> {
    check_host(guard, request.headers())?;
    check_site(guard, request.method(), request.headers())?;
    let access = match matched(&request) {
        // Unknown paths are 404s, but only to callers with a key.
        None => Access::AnyKey,
        Some(route) => match access::lookup(&guard.routes, request.method().as_str(), &route) {
            Lookup::Route(access) => access,
            Lookup::OtherMethod => {
                return Err(ServiceError::MethodNotAllowed(format!(
                    "{} is not allowed on {route}",
                    request.method()
                )));
            }
            Lookup::Unlisted => {
                return Err(ServiceError::Internal(format!(
                    "route {route} has no entry in the access table (access.rs)"
                )));
            }
        },
    };
    if access == Access::Open {
        return Ok(request);
    }
    let principal = guard.keys.authenticate(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )?;
    let caller = match principal.key_id() {
        Some(id) => format!("key {id}"),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".into(), |c| format!("ip {}", c.0.ip())),
    };
    guard
        .limiter
        .check(&caller)
        .map_err(|retry_after_secs| ServiceError::RateLimited { retry_after_secs })?;
    if matches!(access, Access::KbRead | Access::KbWrite) {
        let (mut parts, body) = request.into_parts();
        // Compared with the key's own KB as written: checking the name is the handler's.
        let kb = path_param(&mut parts, "kb").await?;
        if access == Access::KbRead {
            principal.read(&kb)?;
        } else {
            principal.write(&kb)?;
        }
        request = Request::from_parts(parts, body);
    }
    if let Some(id) = principal.key_id() {
        tracing::Span::current().record("key", id);
    }
    request.extensions_mut().insert(principal);
    Ok(request)
}

/// Answers 504 when a response has not started within `server.request_timeout_secs`. A
/// streamed answer has started once its first event is ready, so it is never cut off
/// midway; dropping the handler stops a generation still waiting or running.
pub async fn time_limit(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let untimed = matched(&request).is_some_and(|r| UNTIMED_ROUTES.contains(&r.as_str()));
    match guard.timeout {
        Some(limit) if !untimed => match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError(ServiceError::Timeout(limit.as_secs())).into_response(),
        },
        _ => next.run(request).await,
    }
}

/// Answers 413 to a body declared larger than its route's limit before any of it is
/// parsed. (Bodies without a declared length are cut by `DefaultBodyLimit` as they are
/// read.)
pub async fn reject_oversize(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let (limit, key) = if matched(&request).as_deref() == Some(UPLOAD_ROUTE) {
        (guard.max_upload_bytes, "server.max_upload_bytes")
    } else {
        (guard.max_body_bytes, "server.max_body_bytes")
    };
    match declared_length(request.headers()) {
        Some(length) if length > limit => {
            drop(request);
            ApiError(ServiceError::PayloadTooLarge(format!(
                "request body of {length} bytes is larger than the limit of {limit} bytes ({key})"
            )))
            .into_response()
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use zhiku_app::auth::{KEY_FILE, Principal, Scope, create_key};

    /// A router with the access check and stand-in handlers that report the principal.
    fn app(data: &std::path::Path) -> Router {
        let keys = Keys::load(data, false).unwrap();
        let table = [
            ("GET", "/healthz", Access::Open),
            ("GET", "/v1/kbs/{kb}", Access::KbRead),
            ("DELETE", "/v1/kbs/{kb}", Access::KbWrite),
        ]
        .map(|(method, path, access)| RouteAccess {
            method: method.into(),
            path: path.into(),
            access,
        })
        .to_vec();
        let guard = Arc::new(Guard::new(&ServerConfig::default(), keys, table).unwrap());
        let who = |axum::Extension(p): axum::Extension<Principal>| async move { format!("{p:?}") };
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/v1/kbs/{kb}", get(who).delete(who))
            .route("/v1/unlisted", get(who))
            .layer(axum::middleware::from_fn_with_state(guard, check_access))
    }

    async fn send(app: &Router, method: &str, path: &str, key: Option<&str>) -> (u16, String) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn routes_are_served_only_as_the_access_table_says() {
        let dir = tempfile::tempdir().unwrap();
        let open = app(dir.path());
        // A route missing from the table never reaches its handler, nor does a method
        // missing from a listed path.
        assert_eq!(send(&open, "GET", "/v1/unlisted", None).await.0, 500);
        assert_eq!(send(&open, "POST", "/healthz", None).await.0, 405);
        assert_eq!(send(&open, "GET", "/healthz", None).await.0, 200);
        assert_eq!(
            send(&open, "GET", "/v1/kbs/a", None).await,
            (200, "Open".to_string())
        );

        // The keys file is read per request: from now on keys are required.
        std::fs::write(
            dir.path().join(KEY_FILE),
            br#"{"keys": [{"id": "k1", "scope": "read", "kb": "a", "created": "now",
                "salt": "s", "hash": "4f3c1e4d5c0bd8e0d2bd3c2f2e4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a99887766"}]}"#,
        )
        .unwrap();
        let (status, body) = send(&open, "GET", "/v1/kbs/a", None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(send(&open, "GET", "/healthz", None).await.0, 200);
    }

    #[tokio::test]
    async fn kb_routes_check_the_path_kb() {
        let dir = tempfile::tempdir().unwrap();
        let (read, write) = (
            create_key(&dir.path().into(), Scope::Read, Some("a"), None)
                .unwrap()
                .1,
            create_key(&dir.path().into(), Scope::Write, Some("a"), None)
                .unwrap()
                .1,
        );
        let app = app(dir.path());
        let (status, body) = send(&app, "GET", "/v1/kbs/a", Some(&read)).await;
        assert_eq!(status, 200);
        assert!(body.contains("write: false"), "{body}");
        let (status, body) = send(&app, "GET", "/v1/kbs/b", Some(&read)).await;
        assert_eq!(status, 404);
        assert!(
            body.contains(r#"knowledge base \"b\" does not exist"#),
            "{body}"
        );
        // Percent-encoding does not get around the check.
        assert_eq!(send(&app, "GET", "/v1/kbs/%62", Some(&read)).await.0, 404);
        assert_eq!(send(&app, "DELETE", "/v1/kbs/a", Some(&read)).await.0, 403);
        assert_eq!(send(&app, "DELETE", "/v1/kbs/a", Some(&write)).await.0, 200);
        assert_eq!(send(&app, "DELETE", "/v1/kbs/b", Some(&write)).await.0, 404);
    }

    #[test]
    fn cors_origins_are_checked() {
        assert!(cors_layer(&[]).unwrap().is_none());
        assert!(cors_layer(&["*".into()]).unwrap().is_some());
        assert!(cors_layer(&["https://app.example:8443".into()]).is_ok());
        for bad in [
            vec!["https://app.example/".to_string()],
            vec!["app.example".into()],
            vec!["*".into(), "https://app.example".into()],
        ] {
            assert!(cors_layer(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_names_and_loopback() {
        assert_eq!(host_name("Example.COM:8080"), "example.com");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        for loopback in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.8.0.1",
            "::1",
        ] {
            assert!(is_loopback_name(loopback), "{loopback}");
        }
        for other in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_name(other), "{other}");
        }
    }
}
