//! Checking an ask request before any work: the LLM, the question, sampling and the
//! response format.

use super::*;

/// The sampling settings of an ask request, checked with its prompt fields; errors name
/// the field.
fn sampling(
    request: &AskRequest,
    temperature: f32,
    max_tokens: u32,
) -> Result<SamplingParams, ServiceError> {
    let defaults = SamplingParams::default();
    let top_p = request.top_p.unwrap_or(defaults.top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ServiceError::bad_request(
            "invalid_top_p",
            "top_p must be greater than 0 and at most 1",
        ));
    }
    let top_k = request.top_k_tokens.unwrap_or(defaults.top_k);
    if !(1..=1000).contains(&top_k) {
        return Err(ServiceError::bad_request(
            "invalid_top_k_tokens",
            "top_k_tokens must be between 1 and 1000",
        ));
    }
    if request.stop.len() > 4
        || request
            .stop
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > 64)
    {
        return Err(ServiceError::bad_request(
            "invalid_stop",
            "stop takes at most 4 strings of 1 to 64 characters",
        ));
    }
    if let Some(prompt) = &request.prompt
        && let Some((field, _)) = prompt
            .entries()
            .into_iter()
            .find(|(_, v)| v.is_some_and(|v| v.chars().count() > 2000))
    {
        return Err(ServiceError::bad_request(
            "invalid_prompt",
            format!("prompt.{field} is longer than 2000 characters"),
        ));
    }
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        seed: request.seed.unwrap_or(defaults.seed),
        max_tokens,
        stop: request.stop.clone(),
        grammar: None,
        ..SamplingParams::default()
    })
}

/// The JSON Schema an ask request's `response_format` asks for, checked; errors are 400s
/// naming the field.
fn response_schema(request: &AskRequest) -> Result<Option<serde_json::Value>, ServiceError> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    let schema = format
        .schema()
        .map_err(|message| ServiceError::bad_request("invalid_response_format", message))?;
    if let Some(schema) = &schema
        && !(schema.is_object() || schema.is_boolean())
    {
        return Err(ServiceError::bad_request(
            "invalid_response_format",
            "response_format.schema must be a JSON Schema object",
        ));
    }
    Ok(schema)
}

/// An ask request that passed its checks, with what the checks worked out.
pub struct CheckedAsk<'r> {
    /// The LLM.
    pub generator: Arc<dyn Generator>,
    /// The question, trimmed.
    pub question: &'r str,
    /// Sampling, with the schema's grammar when one was asked for.
    pub params: SamplingParams,
    /// The JSON Schema the answer must follow, if any.
    pub schema: Option<serde_json::Value>,
    /// How the answer is made.
    pub mode: AnswerMode,
}

impl Services {
    /// Checks an ask request: the LLM, the question, sampling and response format; the
    /// schema's grammar is made here, so a bad schema costs nothing.
    pub fn check_ask<'r>(&self, request: &'r AskRequest) -> Result<CheckedAsk<'r>, ServiceError> {
        let llm = &self.config.llm;
        let generator = self
            .generator
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("the LLM is not loaded".into()))?;
        let question = request.question.trim();
        if question.is_empty() {
            return Err(ServiceError::bad_request(
                "empty_question",
                "question is empty",
            ));
        }
        // Here rather than with the conversation: `/v1/chat/completions` builds its
        // context from the request's messages and would skip it there.
        let chars = question.chars().count();
        let max_chars = self.config.conversations.max_question_chars;
        if chars > max_chars {
            return Err(ServiceError::over_limit(
                "question_too_long",
                "question",
                chars,
                "characters",
                max_chars,
                "conversations.max_question_chars",
            ));
        }
        let max_tokens = request.max_tokens.unwrap_or(llm.max_tokens);
        if max_tokens == 0 || max_tokens > llm.max_tokens_limit {
            return Err(ServiceError::bad_request(
                "invalid_max_tokens",
                format!("max_tokens must be between 1 and {}", llm.max_tokens_limit),
            ));
        }
        let temperature = request.temperature.unwrap_or(llm.temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ServiceError::bad_request(
                "invalid_temperature",
                "temperature must be between 0 and 2",
            ));
        }
        let mut params = sampling(request, temperature, max_tokens)?;
        let schema = response_schema(request)?;
        let mode = request.answer_mode.unwrap_or(llm.answer_mode);
        if schema.is_some() && mode != AnswerMode::Generative {
            return Err(ServiceError::bad_request(
                "invalid_answer_mode",
                "response_format asks for JSON, which only answer_mode generative can write",
            ));
        }
        if let Some(schema) = &schema {
            params.grammar = Some(generator.schema_grammar(&schema.to_string())?);
        }
        Ok(CheckedAsk {
            generator: generator.clone(),
            question,
            params,
            schema,
            mode,
        })
    }
}
