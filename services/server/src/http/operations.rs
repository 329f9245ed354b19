//! Operations: liveness, readiness and metrics.

use super::*;

/// Liveness
///
/// 200 while the process serves; it listens only once the models are loaded.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves.", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness
///
/// Ready for traffic: the models are loaded (the server only listens once they are), every
/// knowledge base's indexes open, and no shutdown under way.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready: send traffic.", body = Readiness),
    (status = 503, description = "Draining for shutdown, or a knowledge base cannot be opened.", body = Readiness),
))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Response {
    let unready = |status, problems| Readiness {
        status,
        models: None,
        kbs: None,
        problems,
    };
    if s.draining.load(Ordering::Relaxed) {
        let body = unready(ReadyState::Draining, Vec::new());
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let checked = blocking(move || {
        let mut problems = Vec::new();
        let names = s.registry.names()?;
        for name in &names {
            if let Err(e) = s.registry.get(name) {
                problems.push(if s.config.server.expose_kb_names {
                    format!("{name}: {e}")
                } else {
                    // The error names the KB too; the log has it, the keyless probe not.
                    tracing::warn!(kb = %name, "not ready: {e}");
                    "a knowledge base cannot be opened (see the server log)".to_string()
                });
            }
        }
        // Knowledge bases are left out: probes need no key, and KB names are not theirs.
        Ok((s.models(&|_| false)?, names.len(), problems))
    })
    .await;
    match checked {
        Ok((models, kbs, problems)) if problems.is_empty() => Json(Readiness {
            status: ReadyState::Ready,
            models: Some(
                models
                    .data
                    .into_iter()
                    .filter(|m| m.role != "knowledge_base")
                    .map(|m| m.name)
                    .collect(),
            ),
            kbs: Some(kbs),
            problems: Vec::new(),
        })
        .into_response(),
        Ok((_, _, problems)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(unready(ReadyState::Unavailable, problems)),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(unready(ReadyState::Unavailable, vec![e.to_string()])),
        )
            .into_response(),
    }
}

/// Metrics
///
/// Prometheus text exposition (OpenMetrics): requests by route and status, latencies, time
/// to first token, tokens per second, ingestion, the job queue, generation slots and
/// per-KB counts.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The metrics.", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
))]
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let text = blocking(move || s.metrics_text()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
