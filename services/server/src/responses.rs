//! The API's error responses and path parameters as the OpenAPI document describes them:
//! named in the handlers' `#[utoipa::path]` attributes and in the document's defaults.

use utoipa::{IntoParams, ToResponse};
use zhiku_schemas::ErrorBody;

/// The request is malformed; `error.code` says how, e.g. `invalid_json`, `invalid_query`,
/// `invalid_kb_name`, `invalid_multipart`, `no_files`, `missing_file_name`,
/// `invalid_document_id`, `duplicate_document`, `invalid_tags`, `invalid_limit`,
/// `invalid_request`, `invalid_filter`, `invalid_top_k`, `invalid_rrf_k`, `invalid_alpha`,
/// `invalid_min_score`, `invalid_expand`, `empty_query`, `empty_question`,
/// `question_too_long`, `empty_text`, `invalid_max_tokens`, `invalid_temperature`,
/// `invalid_top_p`, `invalid_top_k_tokens`, `invalid_stop`, `invalid_prompt`,
/// `prompt_too_long`, `invalid_response_format`, `invalid_conversation_id`,
/// `invalid_turn`, `invalid_comment`, `invalid_path` (a path that does not decode); OpenAI-compatible routes: `invalid_messages`,
/// `invalid_n`, `tools_not_supported`, `logprobs_not_supported`, `invalid_input`,
/// `invalid_input_type`, `invalid_encoding_format`, `invalid_dimensions`.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct BadRequest(ErrorBody);

/// Not allowed (`forbidden`): the API key may only read this knowledge base, or the import
/// path lies outside the configured import roots.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct Forbidden(ErrorBody);

/// The knowledge base, document, job, conversation or (OpenAI-compatible routes) model
/// does not exist (`not_found`). A knowledge base the API key may not read, and anything
/// in it, answers the same, and so does a conversation of another knowledge base.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct NotFound(ErrorBody);

/// The request conflicts with the stored state: the KB was built with another embedding
/// model (`model_mismatch`; reindex it) or by an older zhiku (`outdated_kb`; ingest it
/// again), it is busy with another change (`busy`), the job already finished
/// (`conflict`), or the conversation has reached its maximum number of turns
/// (`conversation_full`).
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct Conflict(ErrorBody);

/// The request body is larger than its limit (`payload_too_large`:
/// `server.max_upload_bytes` for uploads, `server.max_body_bytes` otherwise), or a file of
/// an upload is (`file_too_large`).
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct PayloadTooLarge(ErrorBody);

/// Every file of the upload failed, the first for its format (`unsupported_type`);
/// `error.files` lists each file's failure.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct UnsupportedMediaType(ErrorBody);

/// Every file of the upload failed, the first for its content (`empty_document`,
/// `not_text`, `invalid_pdf`, `invalid_docx`, `no_text_layer`, `timeout`, or
/// `parser_crashed`, `parser_out_of_memory` and `parser_cpu_limit` when the file killed
/// the parser's worker process); `error.files` lists each file's failure.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct UnprocessableContent(ErrorBody);

/// A server-side failure: `internal`, `storage_failed`, `index_failed`,
/// `embedding_failed` or `generation_failed`. The server log has the details.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct Internal(ErrorBody);

/// Every generation slot is busy and the queue is full (`overloaded`); retry after the
/// `Retry-After` seconds.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds after which a retry is likely to be admitted.")))]
#[allow(dead_code)] // Describes a response; never built.
pub struct Overloaded(ErrorBody);

/// No API key, or an unknown or revoked one (`unauthorized`).
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "`Bearer`.")))]
#[allow(dead_code)] // Describes a response; never built.
pub struct Unauthorized(ErrorBody);

/// The key (or, without keys, the client address) is over `server.rate_limit_per_minute`
/// (`rate_limited`); retry after the `Retry-After` seconds.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds until the next request is allowed.")))]
#[allow(dead_code)] // Describes a response; never built.
pub struct RateLimited(ErrorBody);

/// The response did not start within `server.request_timeout_secs` (`timeout`). Streamed
/// answers start with their first event and are never cut off midway. With
/// `llm.provider = "openai"`, also the LLM endpoint sending nothing for `llm.timeout_secs`
/// (`upstream_timeout`).
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct Timeout(ErrorBody);

/// With `llm.provider = "openai"`: the LLM endpoint failed (`upstream_failed`): it could
/// not be reached, answered an error (its status and message are quoted), or broke off
/// or garbled its answer stream. The message names the endpoint's host, never the key.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct BadGateway(ErrorBody);

/// The LLM cannot do this (`not_supported`): with `llm.provider = "openai"` its
/// tokenizer is out of reach, so `/v1/tokenize` cannot show its tokens.
#[derive(ToResponse)]
#[allow(dead_code)] // Describes a response; never built.
pub struct NotImplemented(ErrorBody);

/// Path parameter of routes on one knowledge base.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes parameters; never built.
pub struct KbPath {
    /// Knowledge base name: 1-64 characters of `a-z`, `0-9`, `_` and `-`.
    kb: String,
}

/// Path parameters of routes on one document.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes parameters; never built.
pub struct DocumentPath {
    /// Knowledge base name.
    kb: String,
    /// Document id; it may contain `/`, which need not be escaped: the rest of the path
    /// is the id.
    id: String,
}

/// Path parameter of routes on one conversation.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes parameters; never built.
pub struct ConversationPath {
    /// Conversation id: `conv_` and 32 lowercase hex digits, as returned by an answer.
    id: String,
}

/// Path parameter of routes on one job.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes parameters; never built.
pub struct JobPath {
    /// Job id, as returned by the request that started it.
    id: String,
}
