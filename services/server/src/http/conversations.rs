//! Conversations: list, show, delete, feedback, and the export of rated answers.

use super::*;

/// List conversations
///
/// The conversations of the knowledge bases the caller may read (of one, with `?kb=`:
/// empty for one it may not read, as for one that does not exist), without their turns,
/// most recently updated first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations",
    params(ConversationListParams), responses(
        (status = 200, description = "The conversations.", body = ConversationList),
        (status = 400, response = BadRequest),
    ))]
pub(crate) async fn list_conversations(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ConversationListParams>, QueryRejection>,
) -> Result<Json<ConversationList>, ApiError> {
    let params = query(params)?;
    blocking(move || {
        let mut conversations = s.conversations.list(params.kb.as_deref())?;
        conversations.retain(|c| principal.can_read(&c.kb));
        Ok(Json(ConversationList { conversations }))
    })
    .await
}

fn conversation_not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("conversation {id:?} does not exist"))
}

/// Conversation `id` if the caller may read its knowledge base; otherwise the same 404 as
/// for one that does not exist. Whoever may ask a knowledge base may also read, rate and
/// delete its conversations: they are made by asking.
fn visible_conversation(
    s: &Services,
    principal: &Principal,
    id: &str,
) -> Result<Conversation, ServiceError> {
    check_id(id)?;
    s.conversations
        .get(id)?
        .filter(|c| principal.can_read(&c.kb))
        .ok_or_else(|| conversation_not_found(id))
}

/// Get a conversation
///
/// Every turn: question, search query, answer, sources and feedback.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(ConversationPath), responses(
        (status = 200, description = "The conversation.", body = Conversation),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn get_conversation(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    blocking(move || visible_conversation(&s, &principal, &id).map(Json)).await
}

/// Delete a conversation
///
/// Its turns and feedback; later questions naming it are refused.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations",
    params(ConversationPath), responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn delete_conversation(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        visible_conversation(&s, &principal, &id)?;
        if s.conversations.delete(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(conversation_not_found(&id))
        }
    })
    .await
}

/// Rate an answer
///
/// Feedback on one turn; later feedback replaces earlier. Turns rated `good` are exported
/// by `GET /v1/kbs/{kb}/export/qa.jsonl`.
#[utoipa::path(post, path = "/v1/conversations/{id}/feedback", tag = "conversations",
    params(ConversationPath), request_body = FeedbackRequest, responses(
        (status = 204, description = "Recorded."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn conversation_feedback(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    let request = json_body(body)?;
    blocking(move || {
        visible_conversation(&s, &principal, &id)?;
        s.conversations.feedback(&id, &request)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Export fine-tuning data
///
/// The turns of a KB's conversations rated good, one chat fine-tuning record (`QaRecord`)
/// per line, streamed as they are read. A storage failure midway aborts the response, so a
/// truncated export is never mistaken for a complete one.
#[utoipa::path(get, path = "/v1/kbs/{kb}/export/qa.jsonl", tag = "conversations",
    params(KbPath), responses(
        (status = 200, description = "JSON Lines: one `QaRecord` per line.",
            content_type = "application/x-ndjson", body = QaRecord),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub(crate) async fn export_qa(State(s): State<AppState>, Kb(kb): Kb) -> Result<Response, ApiError> {
    let check = s.clone();
    let name = kb.clone();
    blocking(move || check.kb(&name).map(drop)).await?;
    let (lines, mut received) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || {
        let result = s.conversations.export_good(&kb, &mut |record| {
            let line = serde_json::to_string(&record)
                .map(|line| line + "\n")
                .map_err(std::io::Error::other);
            let failed = line.is_err();
            // A send fails once the client has gone: stop reading then too.
            lines.blocking_send(line).is_ok() && !failed
        });
        if let Err(e) = result {
            tracing::error!(error = %e, %kb, "export failed midway");
            let _ = lines.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| received.poll_recv(cx));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
