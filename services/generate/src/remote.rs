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
/// Longest SSE line accepted; a stream without line breaks is not an event stream.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
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

/// Splits a byte stream into Server-Sent Events, returning each event's `data` (its
/// `data:` lines joined by newlines). Lines may arrive split across reads at any byte;
/// comments and other fields are skipped.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes after the last line break seen.
    partial: Vec<u8>,
    /// `data` of the event being read.
    data: Option<String>,
}

impl SseParser {
    /// Takes the next bytes; returns the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, StreamError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let line = std::mem::take(&mut self.partial);
            if let Some(data) = self.line(&line)? {
                events.push(data);
            }
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE_BYTES {
            return Err(StreamError::Malformed(format!(
                "a line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        Ok(events)
    }

    /// The end of the stream: the last event, even without its closing blank line.
    pub(crate) fn finish(&mut self) -> Result<Option<String>, StreamError> {
        let line = std::mem::take(&mut self.partial);
        if !line.is_empty()
            && let Some(data) = self.line(&line)?
        {
            return Ok(Some(data));
        }
        Ok(self.data.take())
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<String>, StreamError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(self.data.take());
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| StreamError::Malformed("a line that is not UTF-8".into()))?;
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        // Comments (`:` keep-alives), `event:`, `id:` and `retry:` carry nothing needed.
        Ok(None)
    }
}

/// Why reading an answer stream failed.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The connection failed or timed out.
    Read(std::io::Error),
    /// The bytes are not an OpenAI chat-completion stream.
    Malformed(String),
    /// The upstream sent an error event.
    Upstream(String),
}

/// What a chat-completion stream said, apart from the text.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamEnd {
    /// The choice's `finish_reason`, if one came.
    pub finish_reason: Option<String>,
    /// `(prompt_tokens, completion_tokens)` from a `usage` object, if one came.
    pub usage: Option<(usize, usize)>,
    /// Whether `data: [DONE]` came.
    pub done: bool,
    /// Whether the reader stopped early because `on_delta` returned false.
    pub stopped: bool,
}

/// Reads a chat-completion stream, calling `on_delta` with each non-empty content delta
/// until it returns false, the stream says `[DONE]`, or it ends.
pub(crate) fn read_stream(
    mut reader: impl Read,
    on_delta: &mut dyn FnMut(&str) -> bool,
) -> Result<StreamEnd, StreamError> {
    let mut parser = SseParser::default();
    let mut end = StreamEnd::default();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        let events: Vec<String> = if n == 0 {
            parser.finish()?.into_iter().collect()
        } else {
            parser.push(&buf[..n])?
        };
        for data in events {
            if apply_event(&data, &mut end, on_delta)? {
                return Ok(end);
            }
        }
        if n == 0 {
            return Ok(end);
        }
    }
}

/// A whole (unstreamed) `chat.completion` as the event stream carrying the same answer,
/// finish reason and usage.
fn completion_as_stream(mut response: Response) -> Result<Vec<u8>, StreamError> {
    let mut text = String::new();
    response
        .read_to_string(&mut text)
        .map_err(StreamError::Read)?;
    let completion: Value = serde_json::from_str(&text)
        .map_err(|e| StreamError::Malformed(format!("a completion that is not JSON ({e})")))?;
    if completion.get("error").is_some() {
        // Read as an error event.
        return Ok(format!("data: {completion}\n\n").into_bytes());
    }
    let choice = completion
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| StreamError::Malformed("a completion without choices".into()))?;
    let chunk = json!({
        "choices": [{
            "index": 0,
            "delta": {"content": choice.pointer("/message/content").cloned().unwrap_or(Value::Null)},
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        }],
        "usage": completion.get("usage").cloned().unwrap_or(Value::Null),
    });
    Ok(format!("data: {chunk}\n\ndata: [DONE]\n\n").into_bytes())
}

/// Takes one event's data into `end`; true when reading should stop.
fn apply_event(
    data: &str,
    end: &mut StreamEnd,
    on_delta: &mut dyn FnMut(&str) -> bool,
) -> Result<bool, StreamError> {
    let data = data.trim();
    if data == "[DONE]" {
        end.done = true;
        return Ok(true);
    }
    if data.is_empty() {
        return Ok(false);
    }
    let chunk: Value = serde_json::from_str(data).map_err(|e| {
        let start: String = data.chars().take(120).collect();
        StreamError::Malformed(format!("an event that is not JSON ({e}): {start}"))
    })?;
    if let Some(error) = chunk.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), String::from);
        return Err(StreamError::Upstream(message));
    }
    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
        let count = |field: &str| usage.get(field).and_then(Value::as_u64);
        if let (Some(prompt), Some(completion)) =
            (count("prompt_tokens"), count("completion_tokens"))
        {
            end.usage = Some((prompt as usize, completion as usize));
        }
    }
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        // A usage-only chunk has an empty list; no list at all is not a completion chunk.
        return if chunk.get("usage").is_some() {
            Ok(false)
        } else {
            Err(StreamError::Malformed(format!(
                "a chunk without choices: {}",
                data.chars().take(120).collect::<String>()
            )))
        };
    };
    // n = 1: only the first choice exists.
    if let Some(choice) = choices.first() {
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            end.finish_reason = Some(reason.to_string());
        }
        if let Some(text) = choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            && !text.is_empty()
            && !on_delta(text)
        {
            end.stopped = true;
            return Ok(true);
        }
    }
    Ok(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out its bytes `step` at a time, as a network read might.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn read_all(stream: &str, step: usize) -> (Result<StreamEnd, StreamError>, Vec<String>) {
        let mut pieces = Vec::new();
        let reader = Trickle {
            bytes: stream.as_bytes().to_vec(),
            at: 0,
            step,
        };
        let end = read_stream(reader, &mut |p| {
            pieces.push(p.to_string());
            true
        });
        (end, pieces)
    }

    fn chunk(content: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
        )
    }

    #[test]
    fn pieces_usage_and_done_whatever_the_read_sizes() {
        let stream = format!(
            ": keep-alive\n\ndata: {}\n\n{}{}data: {}\r\n\r\ndata: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            chunk("备份在"),
            chunk(" two o'clock"),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 4, "total_tokens": 35}}),
        );
        // One byte at a time splits every line and every multi-byte character.
        for step in [1, 2, 7, 8192] {
            let (end, pieces) = read_all(&stream, step);
            let end = end.unwrap();
            assert_eq!(pieces, ["备份在", " two o'clock"], "step {step}");
            assert_eq!(
                end,
                StreamEnd {
                    finish_reason: Some("length".into()),
                    usage: Some((31, 4)),
                    done: true,
                    stopped: false,
                },
                "step {step}"
            );
        }
    }

    #[test]
    fn nothing_is_read_after_done_or_after_the_caller_stops() {
        let stream = format!("{}data: [DONE]\n\n{}", chunk("a"), chunk("b"));
        let (end, pieces) = read_all(&stream, 3);
        assert!(end.unwrap().done);
        assert_eq!(pieces, ["a"]);

        let stream = format!("{}{}", chunk("a"), chunk("b"));
        let reader = Trickle {
            bytes: stream.into_bytes(),
            at: 0,
            step: 5,
        };
        let mut seen = 0;
        let end = read_stream(reader, &mut |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert!(end.stopped && !end.done);
        assert_eq!(seen, 1);
    }

    #[test]
    fn a_last_event_without_its_blank_line_still_counts() {
        let stream = format!(
            "data: {}",
            json!({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]})
        );
        let (end, pieces) = read_all(&stream, 4);
        assert_eq!(pieces, ["x"]);
        assert_eq!(end.unwrap().finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn error_events_and_garbage_are_errors() {
        let stream = format!(
            "{}data: {}\n\n",
            chunk("a"),
            json!({"error": {"message": "model overloaded", "code": 503}})
        );
        let (end, pieces) = read_all(&stream, 16);
        assert!(
            matches!(end, Err(StreamError::Upstream(m)) if m == "model overloaded"),
            "{pieces:?}"
        );

        let (end, _) = read_all("data: {not json\n\n", 16);
        assert!(matches!(end, Err(StreamError::Malformed(m)) if m.contains("not JSON")));

        let (end, _) = read_all("data: {\"id\": 1}\n\n", 16);
        assert!(matches!(end, Err(StreamError::Malformed(m)) if m.contains("without choices")));

        let (end, _) = read_all("data: \u{FFFD}\n\n", 16);
        assert!(end.is_err());
        let mut parser = SseParser::default();
        assert!(matches!(
            parser.push(b"data: \xff\xfe\n"),
            Err(StreamError::Malformed(_))
        ));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .push(b"event: x\ndata: {\"a\":\ndata: 1}\n")
                .unwrap()
                .is_empty()
        );
        assert_eq!(parser.push(b"\n").unwrap(), ["{\"a\":\n1}"]);
    }

    #[test]
    fn error_bodies_are_explained_briefly() {
        assert_eq!(
            error_message(
                r#"{"error": {"message": "no such model", "type": "invalid_request_error"}}"#
            ),
            Some("no such model".into())
        );
        assert_eq!(
            error_message(r#"{"object": "error", "message": "too long"}"#),
            Some("too long".into())
        );
        assert_eq!(
            error_message(r#"{"detail": "Not Found"}"#),
            Some("Not Found".into())
        );
        assert_eq!(error_message("  "), None);
        let long = "x".repeat(1000);
        assert_eq!(error_message(&long).unwrap().chars().count(), 301);
    }

    #[test]
    fn estimates_count_cjk_per_character_and_ascii_per_three() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abc"), 1);
        assert_eq!(estimate_tokens("abcd"), 2);
        assert_eq!(estimate_tokens("智库备份"), 4);
        assert_eq!(estimate_tokens("智库 backup"), 2 + 3);
    }

    /// A generator for `base_url`, without retries, and with timeouts long enough for a
    /// busy machine.
    fn generator_at(base_url: String, key: Option<&str>) -> OpenAiGenerator {
        OpenAiGenerator::new(&OpenAiConfig {
            base_url,
            model: "m".into(),
            api_key: key.map(ApiKey::new),
            n_ctx: 1000,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_retries: 0,
        })
        .unwrap()
    }

    /// A generator for a closed port (nothing is sent in these tests).
    fn generator(key: Option<&str>) -> OpenAiGenerator {
        generator_at("http://127.0.0.1:9/v1/".into(), key)
    }

    #[test]
    fn schemas_travel_as_response_format_and_grammars_are_refused() {
        let g = generator(None);
        let schema = r#"{"type":"object"}"#;
        let params = SamplingParams {
            grammar: Some(g.schema_grammar(schema).unwrap()),
            stop: vec!["\n".into()],
            temperature: 0.0,
            ..SamplingParams::default()
        };
        let body = g.body(&[ChatMessage::user("q")], &params, 10).unwrap();
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}})
        );
        assert_eq!(body["stop"], json!(["\n"]));
        assert_eq!(body["max_tokens"], 10);
        assert_eq!(body["stream"], true);
        assert_eq!(body["temperature"], 0.0);
        assert!(g.schema_grammar("[1]").is_err());
        let gbnf = SamplingParams {
            grammar: Some("root ::= \"a\"".into()),
            ..SamplingParams::default()
        };
        assert!(matches!(
            g.body(&[ChatMessage::user("q")], &gbnf, 10),
            Err(GenerateError::InvalidSchema(_))
        ));
    }

    #[test]
    fn urls_with_credentials_and_empty_models_are_refused() {
        let config = |base_url: &str, model: &str| OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            n_ctx: 1000,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_retries: 0,
        };
        let g = OpenAiGenerator::new(&config("http://h:8/v1/", "m")).unwrap();
        assert_eq!(
            (g.url.as_str(), g.host.as_str()),
            ("http://h:8/v1/chat/completions", "h:8")
        );
        for (url, model) in [
            ("http://user:secret@h/v1", "m"),
            ("ftp://h/v1", "m"),
            ("not a url", "m"),
            ("http://h/v1", " "),
        ] {
            let err = OpenAiGenerator::new(&config(url, model))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn https_endpoints_are_reached_over_tls() {
        // A TCP server that closes every connection: a TLS client fails in the handshake,
        // one without TLS support would refuse the URL's scheme before connecting.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || drop(listener.accept()));
        let g = generator_at(format!("https://127.0.0.1:{port}/v1"), None);
        let err = g
            .generate(
                &[ChatMessage::user("q")],
                &SamplingParams::default(),
                &mut |_| true,
            )
            .unwrap_err();
        server.join().unwrap();
        let GenerateError::Upstream { host, detail } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(host, &format!("127.0.0.1:{port}"));
        assert!(!detail.contains("scheme"), "{err}");
    }

    #[test]
    fn a_server_ignoring_stream_is_read_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut stream, _) = listener.accept().unwrap();
            // Read the whole request (head, then `content-length` bytes of body), so
            // closing the connection afterwards cannot reset it under the reply.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).unwrap();
            let body = json!({"object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "At two."}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3}})
            .to_string();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        let g = generator_at(format!("http://127.0.0.1:{port}/v1"), None);
        let mut streamed = String::new();
        let generation = g
            .generate(
                &[ChatMessage::user("q")],
                &SamplingParams::default(),
                &mut |p| {
                    streamed.push_str(p);
                    true
                },
            )
            .unwrap();
        server.join().unwrap();
        assert_eq!(
            (generation.text.as_str(), streamed.as_str()),
            ("At two.", "At two.")
        );
        assert_eq!(generation.finish_reason, FinishReason::Length);
        assert_eq!(
            (generation.prompt_tokens, generation.completion_tokens),
            (12, 3)
        );
    }

    #[test]
    fn the_key_is_never_shown() {
        let g = generator(Some("sk-very-secret"));
        assert!(!format!("{g:?}").contains("sk-very-secret"));
        let err = g.upstream("echo: Bearer sk-very-secret".into()).to_string();
        assert!(!err.contains("sk-very-secret"), "{err}");
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }
}
