//! Knowledge bases: list, show, delete, reindex.

use super::*;

/// List knowledge bases
///
/// The knowledge bases the caller may read, with their document and chunk counts.
#[utoipa::path(get, path = "/v1/kbs", tag = "knowledge bases", responses(
    (status = 200, description = "The knowledge bases, by name.", body = KbList),
    (status = 409, response = Conflict),
))]
pub(crate) async fn list_kbs(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<KbList>, ApiError> {
    blocking(move || {
        let mut kbs = Vec::new();
        for name in s.registry.names()? {
            if !principal.can_read(&name) {
                continue;
            }
            if let Some(kb) = s.registry.get(&name)? {
                kbs.push(kb.info());
            }
        }
        Ok(Json(KbList { kbs }))
    })
    .await
}

/// Get a knowledge base
///
/// Its counts, embedding model and what each index physically stores.
#[utoipa::path(get, path = "/v1/kbs/{kb}", tag = "knowledge bases", params(KbPath), responses(
    (status = 200, description = "The knowledge base.", body = KbInfo),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn get_kb(
    State(s): State<AppState>,
    Kb(kb): Kb,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        let kb = s.kb(&kb)?;
        let mut info = kb.info();
        info.stored = Some(kb.stored_counts()?);
        Ok(Json(info))
    })
    .await
}

/// Create a knowledge base
///
/// An empty knowledge base for the service's embedding model (an upload or an import also
/// creates the one it names). Creating one that exists changes nothing.
#[utoipa::path(put, path = "/v1/kbs/{kb}", tag = "knowledge bases", params(KbPath), responses(
    (status = 201, description = "Created.", body = KbInfo),
    (status = 200, description = "It existed already.", body = KbInfo),
    (status = 400, response = BadRequest),
    (status = 409, response = Conflict),
))]
pub(crate) async fn create_kb(
    State(s): State<AppState>,
    NewKb(kb): NewKb,
) -> Result<(StatusCode, Json<KbInfo>), ApiError> {
    blocking(move || {
        let (created, info) = s.create_kb(&kb)?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(info)))
    })
    .await
}

/// Delete a knowledge base
///
/// Removes its directory: documents, both indexes and their catalog entries.
#[utoipa::path(delete, path = "/v1/kbs/{kb}", tag = "knowledge bases", params(KbPath), responses(
    (status = 204, description = "Deleted."),
    (status = 404, response = NotFound),
    (status = 409, response = Conflict),
))]
pub(crate) async fn delete_kb(
    State(s): State<AppState>,
    Kb(kb): Kb,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if s.registry.delete(&kb)? {
            s.conversations.purge_kb(&kb)?;
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(kb_not_found(&kb))
        }
    })
    .await
}

/// Reindex
///
/// Re-embeds every chunk with the service's embedding model and switches the knowledge
/// base to it atomically; searches use the old vectors until then. Runs to completion
/// before answering: a reindex is an operator's action, and the answer says what it did.
#[utoipa::path(post, path = "/v1/kbs/{kb}/reindex", tag = "knowledge bases", params(KbPath),
    responses(
        (status = 200, description = "Done.", body = ReindexResponse),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn reindex(
    State(s): State<AppState>,
    Kb(kb): Kb,
) -> Result<Json<ReindexResponse>, ApiError> {
    blocking(move || Ok(Json(s.reindex(&kb)?))).await
}
