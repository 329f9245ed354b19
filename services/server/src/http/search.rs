//! Search.

use super::*;

/// Search
///
/// Hybrid (BM25 and dense, fused), dense or keyword search, optionally filtered by document
/// metadata and expanded with neighbouring chunks. With `translate`, the query's
/// translation into the knowledge base's other language is searched too, which needs a
/// generation slot (503 when the queue is full).
#[utoipa::path(post, path = "/v1/kbs/{kb}/search", tag = "search", params(KbPath),
    request_body = SearchRequest, responses(
        (status = 200, description = "Hits, best first.", body = SearchResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Overloaded),
    ))]
pub(crate) async fn search(
    State(s): State<AppState>,
    Kb(kb): Kb,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let request = json_body(body)?;
    blocking(move || {
        let (hits, translated_query) = s.search_translated(&kb, &request)?;
        Ok(Json(SearchResponse {
            translated_query,
            ..SearchResponse::new(hits)
        }))
    })
    .await
}
