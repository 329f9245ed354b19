//! Models and tokenization.

use super::*;

/// Models
///
/// In OpenAI's shape, so OpenAI clients can list them: the LLM and the embedder (engine,
/// file, size, parameters, quantization, context, the LLM's generation slots), and each
/// knowledge base the caller may read as a `kb:<name>` model for chat completions.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses(
    (status = 200, description = "The models.", body = ModelList),
))]
pub(crate) async fn models(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ModelList>, ApiError> {
    blocking(move || Ok(Json(s.models(&|kb| principal.can_read(kb))?))).await
}

/// Tokenize
///
/// How the two sides of zhiku see a text: the LLM's tokens and the keyword index's words.
#[utoipa::path(post, path = "/v1/tokenize", tag = "models", request_body = TokenizeRequest, responses(
    (status = 200, description = "Tokens and words.", body = TokenizeResponse),
    (status = 400, response = BadRequest),
    (status = 501, response = NotImplemented),
))]
pub(crate) async fn tokenize(
    State(s): State<AppState>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let request = json_body(body)?;
    blocking(move || Ok(Json(s.tokenize(&request.text)?))).await
}
