//! [`Generator`] over any OpenAI-compatible `/v1/chat/completions` server (vLLM, the
//! llama.cpp server, Ollama, a hosted API): zhiku keeps retrieval, prompts, citations and
//! streaming, the upstream model writes the answer.
//!
//! The upstream's tokenizer is out of reach, so token counts for prompt budgeting are a
//! conservative estimate ([`estimate_tokens`]); the usage reported with an answer is the
//! upstream's own when it sends one.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

mod stream;
#[cfg(test)]
mod tests;

use stream::{StreamError, completion_as_stream, read_stream};

use crate::stop::StopScanner;
use crate::{
    ChatMessage, FinishReason, GenerateError, Generation, Generator, LlmInfo, SamplingParams,
    Timings, TokenPiece,
};

/// What [`OpenAiGenerator::schema_grammar`] returns: a GBNF comment line (so it can never
/// be mistaken for a grammar that constrains anything) followed by the JSON Schema. The
/// generator recognises it in [`SamplingParams::grammar`] and sends the schema as
/// `response_format: {"type": "json_schema"}` instead of a grammar.
pub const JSON_SCHEMA_MARKER: &str = "# zhiku: json_schema\n";

/// Tokens added per chat message for the role markup of a chat template, in the estimate.
const MESSAGE_OVERHEAD: usize = 8;
/// Tokens of the assistant turn's opening markup, in the estimate.
const REPLY_OVERHEAD: usize = 4;
/// Most bytes of an upstream error body read to explain it.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Longest pause between retries, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An API key: only ever sent in the `Authorization` header, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(********)")
    }
}

/// How [`OpenAiGenerator`] reaches its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// The API's base URL, ending before `/chat/completions`, e.g. `http://127.0.0.1:8081/v1`.
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// Sent as `Authorization: Bearer`; `None` sends no header (local servers).
    pub api_key: Option<ApiKey>,
    /// Context window (prompt plus answer) in tokens that prompts are budgeted for: the
    /// upstream's, or less.
    pub n_ctx: u32,
    /// Longest wait for the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for the response to start, and then for each further piece of the
    /// stream: an idle timeout, so long answers are not cut off while they flow.
    pub timeout: Duration,
    /// Further attempts after a connection failure, a 429 or a 5xx, as long as no answer
    /// text was received.
    pub max_retries: u32,
}

/// A chat model behind an OpenAI-compatible HTTP API.
pub struct OpenAiGenerator {
    client: Client,
    /// `<base_url>/chat/completions`.
    url: String,
    /// The base URL as configured (no credentials: those are refused), for `info`.
    base_url: String,
    /// `host[:port]` of the upstream, the only part of it error messages name.
    host: String,
    model: String,
    api_key: Option<ApiKey>,
    n_ctx: u32,
    timeout: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for OpenAiGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiGenerator")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("n_ctx", &self.n_ctx)
            .finish_non_exhaustive()
    }
}

impl OpenAiGenerator {
    /// Checks the configuration and builds the HTTP client; the upstream is not contacted
    /// (it may start after zhiku).
    ///
    /// # Errors
    /// [`GenerateError::Backend`] for an unusable base URL, an empty model name or a
    /// context window of 0.
    pub fn new(config: &OpenAiConfig) -> Result<Self, GenerateError> {
        let invalid = |why: String| GenerateError::Backend(format!("llm.base_url: {why}"));
        let base = config.base_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|e| invalid(format!("{base:?} is not a URL ({e})")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(format!("{base:?} is not an http(s) URL")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the URL: put the key in the environment variable named by llm.api_key_env".into(),
            ));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return Err(invalid(format!("{base:?} names no host"))),
        };
        if config.model.trim().is_empty() {
            return Err(GenerateError::Backend(
                "llm.remote_model is empty: name the model the endpoint serves".into(),
            ));
        }
        if config.n_ctx == 0 {
            return Err(GenerateError::Backend(
                "llm.n_ctx must be set to the remote model's context window".into(),
            ));
        }
        let client = Client::builder()
            .connect_timeout(config.connect_timeout)
            // For the blocking client this bounds the wait for the response head and each
            // read of the body, not the whole answer.
            .timeout(config.timeout)
            .build()
            .map_err(|e| GenerateError::Backend(format!("cannot create the HTTP client: {e}")))?;
        tracing::info!(url = %base, model = %config.model, n_ctx = config.n_ctx, "remote LLM configured");
        Ok(Self {
            client,
            url: format!("{base}/chat/completions"),
            base_url: base.to_string(),
            host,
            model: config.model.clone(),
            api_key: config.api_key.clone(),
            n_ctx: config.n_ctx,
            timeout: config.timeout,
            max_retries: config.max_retries,
        })
    }

    /// The request body for a chat.
    fn body(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        max_tokens: usize,
    ) -> Result<Value, GenerateError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "role": m.role.as_str(), "content": m.content }))
            .collect();
        // As locally: NaN or <= 0 is greedy.
        let temperature = if params.temperature.is_nan() || params.temperature <= 0.0 {
            0.0
        } else {
            params.temperature
        };
        let top_p = if params.top_p > 0.0 && params.top_p < 1.0 {
            params.top_p
        } else {
            1.0
        };
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "stream_options": { "include_usage": true },
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": params.seed,
        });
        let stops: Vec<&str> = params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .collect();
        if !stops.is_empty() {
            body["stop"] = json!(stops);
        }
        if let Some(grammar) = &params.grammar {
            let schema = grammar.strip_prefix(JSON_SCHEMA_MARKER).ok_or_else(|| {
                GenerateError::InvalidSchema(
                    "a GBNF grammar cannot be sent to an OpenAI-compatible endpoint".into(),
                )
            })?;
            let schema: Value = serde_json::from_str(schema)
                .map_err(|e| GenerateError::InvalidSchema(e.to_string()))?;
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": { "name": "answer", "schema": schema },
            });
        }
        Ok(body)
    }

    /// Sends the request, retrying connection failures, 429s and 5xxs with backoff; the
    /// successful response, its body not yet read.
    fn send(&self, body: &Value) -> Result<Response, GenerateError> {
        let mut attempt = 0;
        loop {
            let mut request = self.client.post(&self.url).json(body);
            if let Some(ApiKey(key)) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let retry_in = match request.send() {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || attempt >= self.max_retries {
                        return Err(self.status_error(response));
                    }
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    tracing::warn!(host = %self.host, %status, attempt, "LLM endpoint failed; retrying");
                    backoff(attempt).max(retry_after.unwrap_or_default())
                }
                Err(e) if e.is_connect() && attempt < self.max_retries => {
                    tracing::warn!(host = %self.host, error = %describe(&e), attempt, "cannot reach the LLM endpoint; retrying");
                    backoff(attempt)
                }
                Err(e) => return Err(self.request_error(&e)),
            };
            std::thread::sleep(retry_in.min(MAX_BACKOFF));
            attempt += 1;
        }
    }

    /// A failed request (no response) in this crate's terms.
    fn request_error(&self, e: &reqwest::Error) -> GenerateError {
        if e.is_timeout() {
            return self.timed_out();
        }
        self.upstream(if e.is_connect() {
            format!("cannot connect: {}", describe(e))
        } else {
            describe(e)
        })
    }

    fn timed_out(&self) -> GenerateError {
        let error = GenerateError::UpstreamTimeout {
            host: self.host.clone(),
            secs: self.timeout.as_secs(),
        };
        tracing::warn!(error = %error, "LLM endpoint timed out");
        error
    }

    fn upstream(&self, detail: String) -> GenerateError {
        GenerateError::Upstream {
            host: self.host.clone(),
            detail: self.redact(&detail),
        }
    }

    /// A non-2xx response, explained by the upstream's own error message when it sends one.
    fn status_error(&self, response: Response) -> GenerateError {
        let status = response.status();
        let mut text = String::new();
        // A body that cannot be read leaves the status to speak for itself.
        let _ = response.take(MAX_ERROR_BODY).read_to_string(&mut text);
        let message = error_message(&text);
        self.upstream(match message {
            Some(message) => format!("answered {status}: {message}"),
            None => format!("answered {status}"),
        })
    }

    /// `text` without the API key, should an upstream echo it back.
    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(ApiKey(key)) if !key.is_empty() => text.replace(key.as_str(), "********"),
            _ => text.to_string(),
        }
    }

    /// A failure while reading the stream in this crate's terms.
    fn stream_error(&self, e: StreamError) -> GenerateError {
        match e {
            StreamError::Read(e) if is_timeout(&e) => self.timed_out(),
            StreamError::Read(e) => self.upstream(format!("the answer stream broke: {e}")),
            StreamError::Malformed(why) => {
                self.upstream(format!("sent a malformed answer stream: {why}"))
            }
            StreamError::Upstream(message) => {
                self.upstream(format!("failed during the answer: {message}"))
            }
        }
    }
}

/// Pause before retry `attempt` (0-based): 0.5 s, 1 s, 2 s, ...
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6)))
}

/// A reqwest error with its causes, without the URL (the host is named separately).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    // reqwest's own message repeats the URL; the causes say what happened.
    if let Some(at) = text.find(" for url (") {
        text.truncate(at);
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether a read error is the client's timeout firing.
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout)
}

/// The message of an OpenAI-style error body (`{"error": {"message"}}`), vLLM's
/// (`{"message"}`), FastAPI's (`{"detail"}`), or the start of a plain-text body.
fn error_message(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    let message = match serde_json::from_str::<Value>(body) {
        Ok(value) => {
            let pick = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("message").and_then(Value::as_str).map(String::from),
                _ => None,
            };
            value
                .get("error")
                .and_then(pick)
                .or_else(|| value.get("message").and_then(pick))
                .or_else(|| {
                    value
                        .get("detail")
                        .map(|d| pick(d).unwrap_or_else(|| d.to_string()))
                })
                .unwrap_or_else(|| body.to_string())
        }
        Err(_) => body.to_string(),
    };
    let long = message.chars().count() > 300;
    let mut message: String = message.chars().take(300).collect();
    if long {
        message.push('…');
    }
    Some(message)
}

/// A conservative estimate of a text's tokens when the model's tokenizer is out of reach:
/// every non-ASCII character (CJK, other scripts, emoji) counts as one token, ASCII text
/// as one token per 3 characters, rounded up. Real BPE tokenizers give about 4 ASCII
/// characters per token and 1-1.5 CJK characters, so prompts budgeted with it fit.
pub fn estimate_tokens(text: &str) -> usize {
    let (mut ascii, mut other) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    other + ascii.div_ceil(3)
}

impl Generator for OpenAiGenerator {
    fn name(&self) -> &str {
        &self.model
    }

    fn info(&self) -> LlmInfo {
        LlmInfo {
            engine: "openai".into(),
            endpoint: Some(self.base_url.clone()),
            path: std::path::PathBuf::new(),
            file_size: 0,
            parameters: None,
            quantization: None,
            trained_context: None,
            context_window: self.n_ctx,
            chat_template: "upstream".into(),
        }
    }

    fn tokenize(&self, _text: &str) -> Result<Vec<TokenPiece>, GenerateError> {
        Err(GenerateError::NotSupported(format!(
            "the LLM {} runs behind an OpenAI-compatible endpoint, whose tokenizer zhiku cannot reach; token counts for prompts are estimated",
            self.model
        )))
    }

    fn context_window(&self) -> usize {
        self.n_ctx as usize
    }

    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }

    fn schema_grammar(&self, schema: &str) -> Result<String, GenerateError> {
        let value: Value = serde_json::from_str(schema)
            .map_err(|e| GenerateError::InvalidSchema(format!("not JSON: {e}")))?;
        if !(value.is_object() || value.is_boolean()) {
            return Err(GenerateError::InvalidSchema(
                "a JSON Schema is an object or a boolean".into(),
            ));
        }
        Ok(format!("{JSON_SCHEMA_MARKER}{schema}"))
    }

    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<usize, GenerateError> {
        Ok(messages
            .iter()
            .map(|m| MESSAGE_OVERHEAD + estimate_tokens(&m.content))
            .sum::<usize>()
            + REPLY_OVERHEAD)
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, GenerateError> {
        let called = Instant::now();
        let prompt_tokens = self.count_chat_tokens(messages)?;
        let window = self.n_ctx as usize;
        if prompt_tokens >= window {
            return Err(GenerateError::PromptTooLong {
                tokens: prompt_tokens + 1,
                window,
            });
        }
        let budget = (params.max_tokens as usize).min(window - prompt_tokens);
        let mut generation = Generation {
            text: String::new(),
            prompt_tokens,
            completion_tokens: 0,
            finish_reason: FinishReason::Length,
            timings: Timings::default(),
        };
        if budget == 0 {
            return Ok(generation);
        }
        let body = self.body(messages, params, budget)?;
        let response = self.send(&body)?;
        let responded = Instant::now();
        let whole = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim_start().starts_with("application/json"));
        // A server that ignores `stream` answers one completion; it is read as the stream
        // it would have been.
        let reader: Box<dyn Read> = if whole {
            Box::new(std::io::Cursor::new(
                completion_as_stream(response).map_err(|e| self.stream_error(e))?,
            ))
        } else {
            Box::new(response)
        };

        // The upstream applies the stop sequences too; scanning again keeps their meaning
        // exact (nothing of a stop sequence is released) whatever the server does.
        let mut stops = StopScanner::new(&params.stop);
        let mut first = None;
        let mut deltas = 0;
        let mut cancelled = false;
        let end = read_stream(reader, &mut |delta| {
            first.get_or_insert_with(Instant::now);
            deltas += 1;
            let scanned = stops.push(delta);
            if !scanned.release.is_empty() {
                generation.text.push_str(&scanned.release);
                if !on_token(&scanned.release) {
                    cancelled = true;
                    return false;
                }
            }
            if scanned.stopped {
                cancelled = true;
            }
            !scanned.stopped
        })
        .map_err(|e| self.stream_error(e))?;
        // Returning here drops the response mid-stream when reading stopped early, which
        // closes the connection: the upstream stops generating.
        if !cancelled {
            if !end.done && end.finish_reason.is_none() {
                return Err(self.upstream("closed the answer stream before it finished".into()));
            }
            let rest = stops.finish();
            if !rest.is_empty() {
                generation.text.push_str(&rest);
                on_token(&rest);
            }
        }
        generation.finish_reason = match end.finish_reason.as_deref() {
            Some("length") if !cancelled => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        match end.usage {
            Some((prompt, completion)) => {
                generation.prompt_tokens = prompt;
                generation.completion_tokens = completion;
            }
            // Estimates: every delta is at least one token.
            None => {
                generation.completion_tokens = deltas.max(estimate_tokens(&generation.text));
            }
        }
        let finished = Instant::now();
        let first = first.unwrap_or(finished);
        generation.timings = Timings {
            setup: responded - called,
            prompt: first - responded,
            generation: finished - first,
            decoded_tokens: generation.completion_tokens,
            cached_tokens: 0,
        };
        tracing::debug!(
            model = %self.model,
            prompt_tokens = generation.prompt_tokens,
            completion_tokens = generation.completion_tokens,
            upstream_usage = end.usage.is_some(),
            finish = generation.finish_reason.as_str(),
            "generated remotely"
        );
        Ok(generation)
    }
}
