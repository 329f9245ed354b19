//! llama.cpp's own benchmark loop, run in-process as the yardstick for
//! [`LlamaGenerator`](crate::LlamaGenerator): the prompt-processing and text-generation tests
//! of `llama-bench` (raw `llama_decode` calls on synthetic tokens, no templating, sampling or
//! detokenizing), with the generator's model parameters and context settings.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use crate::llama::MAX_BATCH;
use crate::{GenerateError, LlamaConfig};

/// The model loaded on its own, as `llama-bench` loads it.
pub struct ReferenceBench {
    model: LlamaModel,
    n_ctx: u32,
    n_batch: u32,
    threads: i32,
}

impl std::fmt::Debug for ReferenceBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceBench")
            .field("n_ctx", &self.n_ctx)
            .field("n_batch", &self.n_batch)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// One repetition: the prompt test, then the generation test at the prompt's depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceRun {
    /// Decoding `n_prompt` tokens in batches of `n_batch` into an empty context.
    pub prompt: Duration,
    /// Decoding `n_gen` tokens one at a time after them.
    pub generation: Duration,
}

impl ReferenceBench {
    /// Loads the model of `config` with default model parameters (as
    /// [`LlamaGenerator::load`](crate::LlamaGenerator::load) does) and settles the context
    /// size, batch and threads the same way.
    ///
    /// # Errors
    /// As [`LlamaGenerator::load`](crate::LlamaGenerator::load).
    pub fn load(config: &LlamaConfig) -> Result<Self, GenerateError> {
        let backend = zhiku_llama::backend().map_err(GenerateError::Backend)?;
        let path = &config.model_path;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| GenerateError::ModelInvalid {
                path: path.clone(),
                detail: format!("llama.cpp could not load it ({e})"),
            })?;
        let n_ctx = if config.n_ctx == 0 {
            model.n_ctx_train()
        } else {
            config.n_ctx
        };
        let threads = if config.threads > 0 {
            config.threads
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| i32::try_from(n.get()).unwrap_or(i32::MAX))
        };
        Ok(Self {
            model,
            n_ctx,
            n_batch: n_ctx.min(MAX_BATCH),
            threads,
        })
    }

    /// The settings, as `llama-bench` would name them.
    pub fn settings(&self) -> String {
        let params = LlamaContextParams::default();
        format!(
            "n_ctx {}, n_batch {}, n_ubatch {}, threads {}, flash_attn {}, KV cache {:?}/{:?}",
            self.n_ctx,
            self.n_batch,
            params.n_ubatch().min(self.n_batch),
            self.threads,
            match params.flash_attention_policy() {
                -1 => "auto".to_string(),
                0 => "off".to_string(),
                1 => "on".to_string(),
                other => other.to_string(),
            },
            params.type_k(),
            params.type_v(),
        )
    }

    /// A context, kept across repetitions as `llama-bench` keeps it (its memory is cleared
    /// before each).
    ///
    /// # Errors
    /// [`GenerateError::Backend`] if llama.cpp cannot create it.
    pub fn session(&self) -> Result<ReferenceSession<'_>, GenerateError> {
        let backend = zhiku_llama::backend().map_err(GenerateError::Backend)?;
        // The same builder calls as the generator's contexts.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.n_ctx))
            .with_n_batch(self.n_batch)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let ctx = self.model.new_context(backend, params).map_err(|e| {
            GenerateError::Backend(format!("cannot create a llama.cpp context: {e}"))
        })?;
        let vocab = self.model.vocab();
        Ok(ReferenceSession {
            ctx,
            n_batch: self.n_batch as usize,
            n_vocab: u64::try_from(self.model.n_vocab()).unwrap_or(1).max(1),
            bos: vocab.should_add_bos().then(|| vocab.bos()),
            rng: 0x2545_F491_4F6C_DD1D,
        })
    }
}

/// A context of the reference model.
pub struct ReferenceSession<'a> {
    ctx: LlamaContext<'a>,
    n_batch: usize,
    n_vocab: u64,
    /// The token a sequence starts with, if the vocabulary adds one.
    bos: Option<LlamaToken>,
    rng: u64,
}

impl std::fmt::Debug for ReferenceSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceSession")
            .field("n_batch", &self.n_batch)
            .finish_non_exhaustive()
    }
}

impl ReferenceSession<'_> {
    /// A token drawn uniformly from the vocabulary (deterministic sequence).
    fn random_token(&mut self) -> LlamaToken {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // n_vocab came from an i32, so the remainder fits one.
        LlamaToken((self.rng % self.n_vocab) as i32)
    }

    /// The first token of a sequence: BOS if the vocabulary adds one, as in `llama-bench`.
    fn first_token(&mut self) -> LlamaToken {
        match self.bos {
            Some(bos) => bos,
            None => self.random_token(),
        }
    }

    /// `llama-bench`'s `pp` test then its `tg` test at depth `n_prompt`: `n_prompt` synthetic
    /// tokens decoded into the cleared context in batches of `n_batch` (logits for the last
    /// only), then `n_gen` single-token decodes after them.
    ///
    /// Runs whole on the process's llama.cpp thread ([`zhiku_llama::compute`]), as
    /// `llama-bench` runs on its one thread: the generator's decodes run there too, one call
    /// each, so that the comparison includes the cost of getting there.
    ///
    /// # Errors
    /// [`GenerateError::PromptTooLong`] if they do not fit the context window,
    /// [`GenerateError::Backend`] if a decode fails.
    pub fn run(&mut self, n_prompt: usize, n_gen: usize) -> Result<ReferenceRun, GenerateError> {
        zhiku_llama::compute(|| self.run_here(n_prompt, n_gen))
    }

    fn run_here(&mut self, n_prompt: usize, n_gen: usize) -> Result<ReferenceRun, GenerateError> {
        let window = self.ctx.n_ctx() as usize;
        if n_prompt == 0 || n_prompt + n_gen > window {
            return Err(GenerateError::PromptTooLong {
                tokens: n_prompt + n_gen,
                window,
            });
        }
        let failed = |e: llama_cpp_2::DecodeError| GenerateError::Backend(format!("decode: {e}"));
        self.ctx.clear_kv_cache();

        let started = Instant::now();
        let mut tokens = Vec::with_capacity(self.n_batch);
        let mut done = 0;
        while done < n_prompt {
            let n = (n_prompt - done).min(self.n_batch);
            tokens.clear();
            tokens.push(if done == 0 {
                self.first_token()
            } else {
                self.random_token()
            });
            while tokens.len() < n {
                let token = self.random_token();
                tokens.push(token);
            }
            let mut batch = LlamaBatch::get_one(&tokens)
                .map_err(|e| GenerateError::Backend(format!("batch: {e}")))?;
            self.ctx.decode(&mut batch).map_err(failed)?;
            done += n;
        }
        self.ctx.synchronize();
        let prompt = started.elapsed();

        let started = Instant::now();
        let mut token = [self.first_token()];
        for _ in 0..n_gen {
            {
                let mut batch = LlamaBatch::get_one(&token)
                    .map_err(|e| GenerateError::Backend(format!("batch: {e}")))?;
                self.ctx.decode(&mut batch).map_err(failed)?;
            }
            self.ctx.synchronize();
            token = [self.random_token()];
        }
        Ok(ReferenceRun {
            prompt,
            generation: started.elapsed(),
        })
    }
}
