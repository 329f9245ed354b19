//! [`Generator`] over a local GGUF model run by llama.cpp.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::vocab::VocabType;

use crate::stop::StopScanner;
use crate::utf8::Utf8Stream;
use crate::{
    ChatMessage, FinishReason, GenerateError, Generation, Generator, LlmInfo, PromptProfile,
    SamplingParams, Timings, TokenPiece,
};

/// Prompt tokens decoded per llama.cpp call; also the default physical batch of llama.cpp,
/// so larger values would only cost memory.
pub(crate) const MAX_BATCH: u32 = 512;

/// Prompt positions at which a cached start may end, and the size of the batches a prompt
/// is read in when the cache is on. A token's keys and values come out of llama.cpp
/// slightly differently (in the last bits) depending on the batch it was read in, and a
/// greedy answer can turn on those bits. Reading every prompt in the same aligned batches,
/// and reusing only whole batches, keeps the numbers and so the answer the same whether
/// the start was cached or read again. 64 keeps 320 of the 1.5B's 330-odd tokens of
/// rules and examples, and reads no slower per token than 512-token batches.
const CACHE_GRID: usize = 64;

/// Texts beyond this are rejected before reaching llama.cpp, whose tokenizer and template
/// calls take `i32` lengths and would overflow (and the bindings panic). No context window
/// comes anywhere near it.
const MAX_TEXT_BYTES: usize = 1 << 28;

/// How [`LlamaGenerator`] loads and runs its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaConfig {
    /// The GGUF model file.
    pub model_path: PathBuf,
    /// Context window (prompt plus answer) in tokens; 0 means the model's training context.
    pub n_ctx: u32,
    /// CPU threads per generation, for both prompt processing and generation; `<= 0` means
    /// all available cores.
    pub threads: i32,
    /// Chat template used when the model carries none llama.cpp can apply: a llama.cpp
    /// built-in template name such as `"chatml"`, or a template string.
    pub fallback_template: String,
    /// llama.cpp contexts (KV caches) created at load and kept for reuse: the number of
    /// generations expected to run at once (at least 1). More concurrent calls still work,
    /// each with a context of its own that is dropped afterwards.
    pub parallel: usize,
    /// How grounded prompts are worded for this model; `None` chooses by the model's
    /// architecture ([`PromptProfile::for_architecture`]).
    pub prompt_profile: Option<PromptProfile>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            model_path: PathBuf::new(),
            n_ctx: 2048,
            threads: 2,
            fallback_template: "chatml".to_string(),
            parallel: 1,
            prompt_profile: None,
        }
    }
}

/// A GGUF chat model run in-process by llama.cpp.
///
/// The weights are loaded once and shared; every [`Generator::generate`] call borrows a
/// llama.cpp context (KV cache) of its own from a pool, so concurrent calls are independent
/// and none pays for allocating a context.
pub struct LlamaGenerator {
    // Loaded once and never freed: pooled contexts borrow the model beyond any one call.
    // One LLM per process, so nothing accumulates.
    model: &'static LlamaModel,
    /// Idle contexts, at most `parallel`, each with the prompt its KV cache holds.
    idle: Mutex<Vec<Slot>>,
    parallel: usize,
    template: LlamaChatTemplate,
    /// `"model"` or the fallback template's name, for [`Generator::info`].
    template_source: String,
    path: PathBuf,
    name: String,
    n_ctx: u32,
    n_batch: u32,
    threads: i32,
    prompt_profile: PromptProfile,
    /// llama.cpp context creation mutates the shared model (see the FIXME on
    /// `LlamaModel::new_context`), so it must not run concurrently.
    context_lock: Mutex<()>,
    /// The bias that bans every CJK token ([`SamplingParams::ban_cjk`]), found on first use:
    /// a walk over the whole vocabulary (150k tokens for Qwen) is not worth paying at load.
    cjk_ban: OnceLock<Vec<LlamaLogitBias>>,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("name", &self.name)
            .field("n_ctx", &self.n_ctx)
            .field("threads", &self.threads)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// The shared llama.cpp backend, with its failure in this crate's terms.
fn backend() -> Result<&'static LlamaBackend, GenerateError> {
    zhiku_llama::backend().map_err(GenerateError::Backend)
}

/// Maps a failed GGUF file check to the generator's errors.
fn check_model_file(path: &Path) -> Result<(), GenerateError> {
    zhiku_llama::check_gguf(path).map_err(|problem| match problem {
        zhiku_llama::GgufProblem::Missing => GenerateError::ModelMissing {
            path: path.to_path_buf(),
        },
        zhiku_llama::GgufProblem::Invalid(detail) => GenerateError::ModelInvalid {
            path: path.to_path_buf(),
            detail,
        },
    })
}

impl LlamaGenerator {
    /// Loads the model and settles its chat template.
    ///
    /// # Errors
    /// [`GenerateError::ModelMissing`] if the file does not exist,
    /// [`GenerateError::ModelInvalid`] if it is not a loadable GGUF model,
    /// [`GenerateError::Backend`] if no usable chat template is available.
    pub fn load(config: &LlamaConfig) -> Result<Self, GenerateError> {
        let path = &config.model_path;
        check_model_file(path)?;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| GenerateError::ModelInvalid {
                path: path.clone(),
                detail: format!("llama.cpp could not load it ({e})"),
            })?;
        let (template, template_source) = choose_template(&model, &config.fallback_template)?;
        let model: &'static LlamaModel = Box::leak(Box::new(model));
        let n_ctx = if config.n_ctx == 0 {
            model.n_ctx_train()
        } else {
            config.n_ctx
        };
        if n_ctx > model.n_ctx_train() {
            tracing::warn!(
                n_ctx,
                n_ctx_train = model.n_ctx_train(),
                "context window exceeds the model's training context; answers may degrade"
            );
        }
        // Positions are i32 in llama.cpp.
        if i32::try_from(n_ctx).is_err() {
            return Err(GenerateError::Backend(format!(
                "context window of {n_ctx} tokens is too large"
            )));
        }
        let threads = if config.threads > 0 {
            config.threads
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| i32::try_from(n.get()).unwrap_or(i32::MAX))
        };
        let name = path
            .file_stem()
            .map_or_else(|| "llama".to_string(), |s| s.to_string_lossy().into_owned());
        let parallel = config.parallel.max(1);
        let architecture = model
            .meta_val_str("general.architecture")
            .unwrap_or_default();
        let prompt_profile = config
            .prompt_profile
            .unwrap_or_else(|| PromptProfile::for_architecture(&architecture));
        tracing::info!(
            model = %name,
            n_ctx,
            threads,
            parallel,
            params = model.n_params(),
            architecture,
            ?prompt_profile,
            "loaded LLM"
        );
        let generator = Self {
            model,
            idle: Mutex::new(Vec::with_capacity(parallel)),
            parallel,
            template,
            template_source,
            path: path.clone(),
            name,
            n_ctx,
            n_batch: n_ctx.min(MAX_BATCH),
            threads,
            prompt_profile,
            context_lock: Mutex::new(()),
            cjk_ban: OnceLock::new(),
        };
        // All contexts up front: memory use is known at startup, and the first requests do
        // not pay for allocation.
        let contexts = (0..parallel)
            .map(|_| generator.new_context())
            .collect::<Result<Vec<_>, _>>()?;
        *generator.idle_contexts() = contexts
            .into_iter()
            .map(|ctx| Slot {
                ctx,
                prompt: Vec::new(),
            })
            .collect();
        Ok(generator)
    }

    fn idle_contexts(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A context is only ever pushed or popped whole; a panic elsewhere cannot leave
        // the list half-changed.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A context for `prompt`: the idle one whose cache saves the most reading (when
    /// `reuse`; see [`reusable_context`]), its KV cache cut back to what is reused, or
    /// else the least recently used one emptied (a new one when none is idle).
    fn take_context(
        &self,
        prompt: &[LlamaToken],
        reuse: bool,
    ) -> Result<Pooled<'_>, GenerateError> {
        let idle = {
            let mut idle = self.idle_contexts();
            let cached: Vec<&[LlamaToken]> = idle.iter().map(|slot| &slot.prompt[..]).collect();
            let chosen = match reusable_context(&cached, prompt) {
                Some(best) if reuse => Some(best),
                // Most recently returned last: the first has been idle longest.
                _ if !idle.is_empty() => Some((0, 0)),
                _ => None,
            };
            chosen.map(|(i, reused)| (idle.remove(i), reused))
        };
        let (mut ctx, cached) = match idle {
            Some((slot, reused)) => (slot.ctx, reused),
            None => (self.new_context()?, 0),
        };
        // Models whose memory cannot drop a range (recurrent ones) refuse the cut: they
        // read the whole prompt again.
        let cut = cached > 0
            && u32::try_from(cached)
                .ok()
                .and_then(|p0| ctx.clear_kv_cache_seq(Some(0), Some(p0), None).ok())
                .unwrap_or(false);
        let cached = if cut {
            cached
        } else {
            ctx.clear_kv_cache();
            0
        };
        Ok(Pooled {
            generator: self,
            ctx: Some(ctx),
            cached,
            prompt: Vec::new(),
        })
    }

    /// Tokens of the templated chat, ready to decode.
    fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<LlamaToken>, GenerateError> {
        let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        if bytes > MAX_TEXT_BYTES {
            return Err(self.too_long(bytes));
        }
        let vocab = self.model.vocab();
        // Splitting only matches whole-prompt tokenization for byte-level BPE vocabularies;
        // SentencePiece-style ones prefix every separately tokenized piece with a space.
        let split = if vocab.vocab_type() == VocabType::BPE {
            self.chat_tokens_split(messages)?
        } else {
            None
        };
        let tokens = match split {
            Some(tokens) => tokens,
            None => {
                let chat = messages
                    .iter()
                    .map(|m| llama_message(m.role.as_str(), &m.content))
                    .collect::<Result<Vec<_>, _>>()?;
                let text = self.apply_template(&chat)?;
                // llama.cpp's convention for a templated prompt: add_special lets the
                // vocabulary add its BOS, parse_special turns the template's markup into
                // control tokens.
                vocab.tokenize(text.as_bytes(), true, true)
            }
        };
        Ok(dedupe_bos(tokens, vocab.bos()))
    }

    /// Tokenizes the chat with special-token parsing for the template's own text only.
    ///
    /// The template is rendered around placeholders; message contents (documents, user
    /// questions) are then tokenized as plain text, so a document containing e.g.
    /// `<|im_end|>` cannot end its turn early or forge another. `None` when the template
    /// rewrites contents so that the placeholders are not found verbatim.
    fn chat_tokens_split(
        &self,
        messages: &[ChatMessage],
    ) -> Result<Option<Vec<LlamaToken>>, GenerateError> {
        let markers: Vec<String> = (0..messages.len()).map(marker).collect();
        let placeholders = messages
            .iter()
            .zip(&markers)
            .map(|(m, marker)| llama_message(m.role.as_str(), marker))
            .collect::<Result<Vec<_>, _>>()?;
        let skeleton = self.apply_template(&placeholders)?;

        let mut segments = Vec::with_capacity(2 * messages.len() + 1);
        let mut rest = skeleton.as_str();
        for (message, marker) in messages.iter().zip(&markers) {
            let Some(at) = rest.find(marker.as_str()) else {
                tracing::debug!("chat template rewrites contents; tokenizing the prompt whole");
                return Ok(None);
            };
            segments.push((&rest[..at], true));
            segments.push((message.content.as_str(), false));
            rest = &rest[at + marker.len()..];
        }
        segments.push((rest, true));

        let vocab = self.model.vocab();
        let mut tokens = Vec::new();
        let mut first = true;
        for (text, parse_special) in segments {
            if text.is_empty() && !first {
                continue;
            }
            // BOS (add_special) once, at the very start, as for a whole templated prompt.
            vocab.tokenize_into(text.as_bytes(), &mut tokens, first, parse_special);
            first = false;
        }
        Ok(Some(tokens))
    }

    fn apply_template(&self, chat: &[LlamaChatMessage]) -> Result<String, GenerateError> {
        self.model
            .apply_chat_template(&self.template, chat, true)
            .map_err(|e| GenerateError::Backend(format!("cannot apply the chat template: {e}")))
    }

    fn too_long(&self, tokens: usize) -> GenerateError {
        GenerateError::PromptTooLong {
            tokens,
            window: self.n_ctx as usize,
        }
    }

    fn new_context(&self) -> Result<LlamaContext<'static>, GenerateError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.n_ctx))
            .with_n_batch(self.n_batch)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let backend = backend()?;
        // A poisoned lock only means another thread panicked while holding it; the guarded
        // data is `()`, so there is nothing to repair.
        let _guard = self
            .context_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.model
            .new_context(backend, params)
            .map_err(|e| GenerateError::Backend(format!("cannot create a llama.cpp context: {e}")))
    }
}

/// A pooled llama.cpp context and the prompt tokens its KV cache holds from position 0
/// (empty when unknown, e.g. after a failed decode).
struct Slot {
    ctx: LlamaContext<'static>,
    prompt: Vec<LlamaToken>,
}

/// A context borrowed from the pool; returned to it on drop (kept only while the pool is
/// below `parallel`).
struct Pooled<'a> {
    generator: &'a LlamaGenerator,
    ctx: Option<LlamaContext<'static>>,
    /// Prompt tokens already in the KV cache when borrowed.
    cached: usize,
    /// The prompt this generation read in full, set once reading succeeded: what the next
    /// borrower may reuse.
    prompt: Vec<LlamaToken>,
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let mut idle = self.generator.idle_contexts();
            if idle.len() < self.generator.parallel {
                idle.push(Slot {
                    ctx,
                    prompt: std::mem::take(&mut self.prompt),
                });
            }
        }
    }
}

/// Which of the prompts cached by idle contexts (least recently used first) saves the
/// most reading of `prompt`, and how many of its tokens: the shared start rounded down to
/// [`CACHE_GRID`], leaving at least the last prompt token to read (its logits start the
/// answer). `None` when none saves a whole piece: a translation prompt and an answer
/// prompt share only the template's first tokens, and the caller then empties the
/// context idle longest, so each kind of prompt keeps a context of its own. Ties go to
/// the context idle longest.
///
/// How much the cached prompt goes on beyond the shared start does not matter: an
/// answer's prompt shares its rules and examples (320 tokens) with the last answer's,
/// whose sources take over half of it; weighing that against the shared start once made
/// every answer after a long one read its whole prompt again.
fn reusable_context<T: PartialEq>(cached: &[&[T]], prompt: &[T]) -> Option<(usize, usize)> {
    let readable = prompt.len().saturating_sub(1);
    cached
        .iter()
        .enumerate()
        .map(|(i, old)| {
            let shared = shared_start(old, prompt).min(readable);
            (i, shared - shared % CACHE_GRID)
        })
        .filter(|&(_, reused)| reused > 0)
        .max_by_key(|&(i, reused)| (reused, std::cmp::Reverse(i)))
}

/// How many tokens two prompts share from the start.
fn shared_start<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl std::ops::Deref for Pooled<'_> {
    type Target = LlamaContext<'static>;
    fn deref(&self) -> &Self::Target {
        self.ctx.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.ctx.as_mut().expect("present until drop")
    }
}

/// Converts a JSON schema into the GBNF grammar that makes the model's output valid JSON
/// matching it (llama.cpp's converter, the one its server uses for `json_schema`).
fn json_schema_grammar(schema: &str) -> Result<String, GenerateError> {
    if schema.len() > MAX_TEXT_BYTES || schema.contains('\0') {
        return Err(GenerateError::InvalidSchema(
            "the schema is too large or contains a NUL character".into(),
        ));
    }
    let grammar = llama_cpp_2::json_schema_to_grammar(schema)
        .map_err(|e| GenerateError::InvalidSchema(e.to_string()))?;
    if grammar.trim().is_empty() {
        return Err(GenerateError::InvalidSchema(
            "the converter produced an empty grammar".into(),
        ));
    }
    Ok(grammar)
}

/// A placeholder for message `i` that no template or content will contain by accident.
fn marker(i: usize) -> String {
    format!("\u{F8FF}zhiku-message-{i}\u{F8FF}")
}

fn llama_message(role: &str, content: &str) -> Result<LlamaChatMessage, GenerateError> {
    // C strings cannot hold NUL, and a NUL has no meaning in a prompt: drop it rather than
    // fail the request over a stray byte in a document.
    let content = content.replace('\0', "");
    LlamaChatMessage::new(role.to_string(), content)
        .map_err(|e| GenerateError::Backend(format!("invalid chat message: {e}")))
}

/// Removes a second BOS when the template already wrote one and the vocabulary added
/// another, which some models handle badly.
fn dedupe_bos(mut tokens: Vec<LlamaToken>, bos: LlamaToken) -> Vec<LlamaToken> {
    if tokens.len() >= 2 && tokens[0] == bos && tokens[1] == bos {
        tokens.remove(0);
    }
    tokens
}

/// The model's own chat template if llama.cpp can apply it, else the configured fallback.
/// The model's own chat template if llama.cpp can apply it, else the fallback; with
/// `"model"` or the fallback's name saying which.
fn choose_template(
    model: &LlamaModel,
    fallback: &str,
) -> Result<(LlamaChatTemplate, String), GenerateError> {
    let usable = |template: &LlamaChatTemplate| {
        let probe = [
            llama_message("system", "s")?,
            llama_message("user", "u")?,
            llama_message("assistant", "a")?,
            llama_message("user", "u")?,
        ];
        model
            .apply_chat_template(template, &probe, true)
            .map(|_| ())
            .map_err(|e| GenerateError::Backend(e.to_string()))
    };
    match model.chat_template(None) {
        Ok(template) => match usable(&template) {
            Ok(()) => return Ok((template, "model".to_string())),
            Err(e) => tracing::warn!(
                fallback,
                error = %e,
                "llama.cpp cannot apply the model's chat template; using the fallback"
            ),
        },
        Err(e) => tracing::warn!(
            fallback,
            error = %e,
            "the model has no chat template; using the fallback"
        ),
    }
    let template = LlamaChatTemplate::new(fallback)
        .map_err(|e| GenerateError::Backend(format!("invalid fallback chat template: {e}")))?;
    usable(&template).map_err(|e| {
        GenerateError::Backend(format!(
            "fallback chat template {fallback:?} is not supported by llama.cpp: {e}"
        ))
    })?;
    Ok((template, fallback.to_string()))
}

/// A ban (bias −∞) on every token whose text holds the first byte of a UTF-8 character from
/// U+3000 to U+FFFF (lead bytes 0xE3 to 0xEF), or starts inside a character (a continuation
/// byte). Byte-level vocabularies split rare characters over several tokens; with their
/// lead bytes banned, a token continuing one could only ever print as U+FFFD.
fn cjk_ban(model: &LlamaModel) -> Vec<LlamaLogitBias> {
    let vocab = model.vocab();
    let mut piece = Vec::with_capacity(16);
    (0..vocab.n_tokens())
        .map(LlamaToken)
        .filter(|&token| {
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            piece.first().is_some_and(|b| (0x80..=0xBF).contains(b))
                || piece.iter().any(|b| (0xE3..=0xEF).contains(b))
        })
        .map(|token| LlamaLogitBias::new(token, f32::NEG_INFINITY))
        .collect()
}

fn sampler(
    model: &LlamaModel,
    params: &SamplingParams,
    bans: &[LlamaLogitBias],
) -> Result<LlamaSampler, GenerateError> {
    let mut chain = Vec::with_capacity(6);
    if let Some(grammar) = &params.grammar {
        // First, so every later sampler only sees tokens the grammar allows.
        chain.push(
            LlamaSampler::grammar(model, grammar, "root")
                .map_err(|e| GenerateError::InvalidSchema(format!("grammar rejected: {e}")))?,
        );
    }
    if !bans.is_empty() {
        chain.push(LlamaSampler::logit_bias(model.n_vocab(), bans));
    }
    // NaN would poison every logit; treat it like "no temperature given".
    if params.temperature.is_nan() || params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return Ok(LlamaSampler::chain_simple(chain));
    }
    if params.top_k > 0 {
        chain.push(LlamaSampler::top_k(params.top_k));
    }
    if params.top_p > 0.0 && params.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(params.top_p, 1));
    }
    chain.push(LlamaSampler::temp(params.temperature));
    chain.push(LlamaSampler::dist(params.seed));
    Ok(LlamaSampler::chain_simple(chain))
}

fn position(pos: usize) -> Result<i32, GenerateError> {
    i32::try_from(pos)
        .map_err(|_| GenerateError::Backend(format!("token position {pos} overflows")))
}

impl Generator for LlamaGenerator {
    fn name(&self) -> &str {
        &self.name
    }

    fn prompt_profile(&self) -> PromptProfile {
        self.prompt_profile
    }

    fn info(&self) -> LlmInfo {
        LlmInfo {
            engine: "llama.cpp".into(),
            endpoint: None,
            file_size: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            path: self.path.clone(),
            parameters: Some(self.model.n_params()),
            quantization: zhiku_llama::quantization(self.model),
            trained_context: Some(self.model.n_ctx_train()),
            context_window: self.n_ctx,
            chat_template: self.template_source.clone(),
        }
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenPiece>, GenerateError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(self.too_long(text.len()));
        }
        let vocab = self.model.vocab();
        Ok(vocab
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|token| TokenPiece {
                id: token.0,
                piece: String::from_utf8_lossy(&vocab.token_to_piece(token, false, None))
                    .into_owned(),
            })
            .collect())
    }

    fn context_window(&self) -> usize {
        self.n_ctx as usize
    }

    fn count_tokens(&self, text: &str) -> usize {
        zhiku_llama::count_tokens(self.model, text, MAX_TEXT_BYTES)
    }

    fn schema_grammar(&self, schema: &str) -> Result<String, GenerateError> {
        let grammar = json_schema_grammar(schema)?;
        // llama.cpp's grammar parser has limits of its own (e.g. on repetitions), so a
        // converted schema can still be unusable: find out now, not mid-answer.
        LlamaSampler::grammar(self.model, &grammar, "root").map_err(|e| {
            GenerateError::InvalidSchema(format!(
                "llama.cpp cannot use the grammar made from it ({e}); simplify the schema, e.g. smaller minItems/minLength"
            ))
        })?;
        Ok(grammar)
    }

    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<usize, GenerateError> {
        Ok(self.chat_tokens(messages)?.len())
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, GenerateError> {
        let called = Instant::now();
        let prompt = self.chat_tokens(messages)?;
        if prompt.is_empty() {
            return Err(GenerateError::Backend(
                "the chat template rendered an empty prompt".into(),
            ));
        }
        let window = self.n_ctx as usize;
        // The prompt must leave room for at least one answer token.
        if prompt.len() >= window {
            return Err(self.too_long(prompt.len() + 1));
        }
        let budget = (params.max_tokens as usize).min(window - prompt.len());
        let mut generation = Generation {
            text: String::new(),
            prompt_tokens: prompt.len(),
            completion_tokens: 0,
            finish_reason: FinishReason::Length,
            timings: Timings::default(),
        };
        if budget == 0 {
            return Ok(generation);
        }

        // Before any decoding, so a bad grammar costs nothing.
        let bans = if params.ban_cjk {
            self.cjk_ban.get_or_init(|| cjk_ban(self.model)).as_slice()
        } else {
            &[]
        };
        let mut sampler = sampler(self.model, params, bans)?;
        let started = Instant::now();
        let mut ctx = self.take_context(&prompt, params.cache_prompt)?;
        let cached = ctx.cached;
        let vocab = self.model.vocab();
        // With the cache, prompts are read in CACHE_GRID-aligned pieces whether or not a
        // start is reused, so a greedy answer is the same either way (see CACHE_GRID).
        let n_batch = if params.cache_prompt {
            CACHE_GRID.min(self.n_batch as usize)
        } else {
            self.n_batch as usize
        };
        let mut batch = LlamaBatch::new(n_batch, 1);
        let last = prompt.len() - 1;
        let reading = Instant::now();
        for (c, chunk) in prompt[cached..].chunks(n_batch).enumerate() {
            batch.clear();
            for (j, &token) in chunk.iter().enumerate() {
                let pos = cached + c * n_batch + j;
                // Logits are only needed to sample the first answer token.
                batch
                    .add(token, position(pos)?, &[0], pos == last)
                    .map_err(|e| GenerateError::Backend(format!("batching the prompt: {e}")))?;
            }
            // On the process's llama.cpp thread, as every decode (see zhiku_llama::compute).
            zhiku_llama::compute(|| ctx.decode(&mut batch))
                .map_err(|e| GenerateError::Backend(format!("decoding the prompt: {e}")))?;
        }
        let prompt_done = Instant::now();
        // Only now is the cache known to hold the whole prompt.
        ctx.prompt = prompt.clone();

        let mut stream = Utf8Stream::default();
        let mut stops = StopScanner::new(&params.stop);
        let mut logits_at = batch.n_tokens() - 1;
        let mut pos = prompt.len();
        let mut decoded_tokens = 0;
        let mut cancelled = false;
        loop {
            let token = sampler.sample(&ctx, logits_at);
            if vocab.is_eog(token) {
                generation.finish_reason = FinishReason::Stop;
                break;
            }
            generation.completion_tokens += 1;
            let scanned = stops.push(&stream.push(&vocab.token_to_piece(token, false, None)));
            let piece = scanned.release;
            if !piece.is_empty() {
                generation.text.push_str(&piece);
                if !on_token(&piece) {
                    generation.finish_reason = FinishReason::Stop;
                    cancelled = true;
                    break;
                }
            }
            if scanned.stopped {
                generation.finish_reason = FinishReason::Stop;
                // Nothing after a stop sequence is released.
                cancelled = true;
                break;
            }
            if generation.completion_tokens >= budget {
                generation.finish_reason = FinishReason::Length;
                break;
            }
            batch.clear();
            batch
                .add(token, position(pos)?, &[0], true)
                .map_err(|e| GenerateError::Backend(format!("batching a token: {e}")))?;
            zhiku_llama::compute(|| ctx.decode(&mut batch))
                .map_err(|e| GenerateError::Backend(format!("decoding a token: {e}")))?;
            decoded_tokens += 1;
            pos += 1;
            logits_at = 0;
        }
        if !cancelled {
            let mut rest = stops.push(&stream.finish()).release;
            rest.push_str(&stops.finish());
            if !rest.is_empty() {
                generation.text.push_str(&rest);
                on_token(&rest);
            }
        }

        generation.timings = Timings {
            setup: reading - called,
            prompt: prompt_done - reading,
            generation: prompt_done.elapsed(),
            decoded_tokens,
            cached_tokens: cached,
        };
        let gen_secs = generation.timings.generation.as_secs_f64();
        tracing::debug!(
            model = %self.name,
            prompt_tokens = generation.prompt_tokens,
            completion_tokens = generation.completion_tokens,
            cached_tokens = cached,
            prompt_ms = (prompt_done - started).as_millis() as u64,
            tokens_per_sec = generation.completion_tokens as f64 / gen_secs.max(1e-9),
            finish = generation.finish_reason.as_str(),
            "generated"
        );
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::{CACHE_GRID, reusable_context};

    /// A prompt of `rules` shared tokens, then `rest` tokens of its own starting at `seed`.
    fn prompt(rules: usize, rest: usize, seed: u32) -> Vec<u32> {
        (0..rules as u32).chain(seed..seed + rest as u32).collect()
    }

    #[test]
    fn an_answer_reuses_the_rules_of_a_longer_earlier_answer() {
        let rules = 5 * CACHE_GRID;
        let translation = prompt(3, 90, 10_000);
        // The earlier answer's sources make it more than twice as long as the shared rules.
        let earlier = prompt(rules, 400, 20_000);
        let next = prompt(rules, 350, 30_000);
        let cached = [&translation[..], &earlier[..]];
        assert_eq!(reusable_context(&cached, &next), Some((1, rules)));
    }

    #[test]
    fn a_start_shorter_than_a_piece_saves_nothing_and_the_last_token_is_read() {
        let translation = prompt(3, 90, 10_000);
        let answer = prompt(CACHE_GRID * 2, 300, 20_000);
        assert_eq!(reusable_context(&[&translation[..]], &answer), None);
        assert_eq!(reusable_context::<u32>(&[], &answer), None);
        // The same prompt again: all whole pieces but the one holding the last token.
        let same = [&answer[..]];
        let reused = (answer.len() - 1) / CACHE_GRID * CACHE_GRID;
        assert_eq!(reusable_context(&same, &answer), Some((0, reused)));
        // Equal savings: the context idle longest (first) is taken.
        let twice = [&answer[..], &answer[..]];
        assert_eq!(reusable_context(&twice, &answer), Some((0, reused)));
    }
}
