//! The OpenAI-compatible routes: chat completions (an ask, or a plain generation) and
//! embeddings.

use super::stream::{AskEvent, GoneOnDrop, JsonSink, start_stream};
use super::*;

/// Seconds since the Unix epoch, for OpenAI's `created`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Chat completions (OpenAI)
///
/// OpenAI's chat API over a knowledge base (`model: "kb:<name>"`: retrieval, a grounded
/// answer, `citations`; earlier messages are the conversation) or the bare LLM (its name),
/// so OpenAI clients work unchanged. With `"stream": true`, Server-Sent Events without
/// names whose `data` is a `ChatCompletionChunk` (the first carries the sources as
/// `citations`), an `ErrorBody` if generation fails midway, and finally `[DONE]`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest, responses(
        (status = 200, description = "The completion, or its chunks.", content(
            (ChatCompletion = "application/json"),
            (String = "text/event-stream", example = "data: {\"id\":\"chatcmpl-…\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},…}],…}\n\ndata: {…\"delta\":{\"content\":\"The backup\"}…}\n\ndata: [DONE]\n\n"),
        )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Overloaded),
        (status = 502, response = BadGateway),
    ))]
pub(crate) async fn chat_completions(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = json_body(body)?;
    // A `kb:` model is its knowledge base: unreadable ones are unknown models.
    if let Some(kb) = request.model.strip_prefix("kb:") {
        principal.read(kb)?;
    }
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    let model = request.model.clone();
    if !request.stream.unwrap_or(false) {
        let gone = Arc::new(AtomicBool::new(false));
        let _guard = GoneOnDrop(gone.clone());
        let outcome = blocking(move || s.chat(&request, &mut JsonSink { gone })).await?;
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: outcome.content,
                    refusal: None,
                },
                finish_reason: outcome.finish_reason,
                logprobs: None,
            }],
            usage: CompletionUsage::new(
                outcome.usage.prompt_tokens,
                outcome.usage.completion_tokens,
            ),
            system_fingerprint: None,
            citations: outcome.citations,
            context: outcome.context,
            search_query: outcome.search_query,
            grounded: outcome.grounded,
        })
        .into_response());
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let events = start_stream(move |sink| s.chat(&request, sink)).await?;
    let chunk = move |delta: ChunkDelta, finish_reason: Option<String>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.clone(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        }],
        usage: None,
        system_fingerprint: None,
        citations: None,
    };
    let data = |value: &ChatCompletionChunk| {
        Event::default()
            .json_data(value)
            .unwrap_or_else(|_| Event::default().data("{}"))
    };
    // Whether any token went out: a "not found" answer is never generated, so it is sent
    // whole before the finishing chunk.
    let mut streamed = false;
    let stream = events
        .map(move |event| {
            let mut out = Vec::new();
            match event {
                AskEvent::Sources(sources) => {
                    let mut first = chunk(
                        ChunkDelta {
                            role: Some("assistant".into()),
                            content: Some(String::new()),
                        },
                        None,
                    );
                    first.citations = Some(sources.sources).filter(|c| !c.is_empty());
                    out.push(data(&first));
                }
                AskEvent::Token(text) => {
                    streamed = true;
                    out.push(data(&chunk(
                        ChunkDelta {
                            role: None,
                            content: Some(text),
                        },
                        None,
                    )));
                }
                AskEvent::Done(outcome) => {
                    if !streamed && !outcome.content.is_empty() {
                        out.push(data(&chunk(
                            ChunkDelta {
                                role: None,
                                content: Some(outcome.content.clone()),
                            },
                            None,
                        )));
                    }
                    let mut last = chunk(ChunkDelta::default(), Some(outcome.finish_reason));
                    last.citations = Some(outcome.citations).filter(|c| !c.is_empty());
                    out.push(data(&last));
                    if include_usage {
                        let mut usage = chunk(ChunkDelta::default(), None);
                        usage.choices.clear();
                        usage.usage = Some(CompletionUsage::new(
                            outcome.usage.prompt_tokens,
                            outcome.usage.completion_tokens,
                        ));
                        out.push(data(&usage));
                    }
                }
                AskEvent::Failed(error) => out.push(
                    Event::default()
                        .json_data(error_body(&error))
                        .unwrap_or_else(|_| Event::default().data("{}")),
                ),
            }
            futures_util::stream::iter(out.into_iter().map(Ok::<_, Infallible>))
        })
        .flatten()
        .chain(futures_util::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Embeddings (OpenAI)
///
/// OpenAI's embeddings API over the service's embedding model: L2-normalised vectors as
/// floats or base64.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingRequest, responses(
        (status = 200, description = "One embedding per input, in order.", body = EmbeddingResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ))]
pub(crate) async fn embeddings(
    State(s): State<AppState>,
    body: Result<Json<EmbeddingRequest>, JsonRejection>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let request = json_body(body)?;
    blocking(move || Ok(Json(s.embeddings(&request)?))).await
}
