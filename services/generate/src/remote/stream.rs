//! The answer stream of an OpenAI-compatible server: Server-Sent Events split into
//! chunks, each applied to the answer; a non-streaming completion is read as one.

use super::*;

/// Longest SSE line accepted; a stream without line breaks is not an event stream.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

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
pub(super) fn completion_as_stream(mut response: Response) -> Result<Vec<u8>, StreamError> {
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
