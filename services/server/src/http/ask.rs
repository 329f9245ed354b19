//! Ask.

use super::stream::{GoneOnDrop, JsonSink, start_stream, wants_events};
use super::*;

/// Ask
///
/// A grounded answer from the knowledge base's documents, citing them as `[n]`. As one
/// JSON body, or, with `"stream": true` or `Accept: text/event-stream`, as Server-Sent
/// Events: `sources` (data: `AskSources`), a `token` (data: `AskToken`) per piece, then
/// `done` (data: `AskResponse`) or `error` (data: `ErrorBody`). Errors found before the
/// first event are plain HTTP errors. Every answer is a turn of a conversation: send its
/// `conversation_id` with the next question to ask a follow-up.
#[utoipa::path(post, path = "/v1/kbs/{kb}/ask", tag = "ask", params(KbPath),
    request_body = AskRequest, responses(
        (status = 200, description = "The answer, or its events.", content(
            (AskResponse = "application/json"),
            (String = "text/event-stream", example = "event: sources\ndata: {\"sources\":[…],\"sources_dropped\":0,\"grounded\":true}\n\nevent: token\ndata: {\"text\":\"The backup\"}\n\nevent: done\ndata: {\"answer\":\"The backup runs at 02:00 [1].\",…}\n\n"),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Overloaded),
        (status = 502, response = BadGateway),
    ))]
pub(crate) async fn ask(
    State(s): State<AppState>,
    Kb(kb): Kb,
    headers: HeaderMap,
    body: Result<Json<AskRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = json_body(body)?;
    if !wants_events(&request, &headers) {
        let gone = Arc::new(AtomicBool::new(false));
        let _guard = GoneOnDrop(gone.clone());
        return blocking(move || {
            let response = s.ask(&kb, &request, &mut JsonSink { gone })?;
            Ok(Json(response).into_response())
        })
        .await;
    }
    let events = start_stream(move |sink| s.ask(&kb, &request, sink)).await?;
    let stream = events.map(|event| Ok::<_, Infallible>(event.into_sse()));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
