//! Text → vectors.
//!
//! [`Embedder`] is the seam between the pipeline and any embedding model. Two engines sit
//! behind it, chosen by [`EmbedderConfig::kind`]:
//! - [`GgufEmbedder`] runs a GGUF encoder (BERT family) in-process through llama.cpp; the
//!   default, multilingual-e5-small converted by `deploy/setup.sh`, is one.
//! - [`OnnxEmbedder`] runs an ONNX model through fastembed, with ONNX Runtime loaded
//!   dynamically from a path in the config.
//!
//! Either way no model or runtime is ever fetched from a hub.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod gguf;
mod onnx;

pub use gguf::GgufEmbedder;
pub use onnx::OnnxEmbedder;

/// Errors of the embedding stage.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model or runtime file is missing; the message names it and the setup command.
    #[error(
        "model file {path} is missing: run deploy/setup.sh (or point the config at an existing file)"
    )]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but could not be loaded.
    #[error(
        "could not load {path}: {detail} (run deploy/setup.sh to restore the pinned model files, or fix the config path)"
    )]
    InvalidFile {
        /// The offending file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Running the model failed.
    #[error("embedding failed: {0}")]
    Inference(String),
}

/// Turns text into fixed-size vectors. Implementations must be safe to share across requests.
pub trait Embedder: Send + Sync {
    /// Name recorded with every knowledge base so a KB is never queried with another model.
    fn name(&self) -> &str;
    /// Vector dimension.
    fn dimension(&self) -> usize;
    /// Tokens the model sees for `text`, without special tokens; the chunker budgets with it.
    fn count_tokens(&self, text: &str) -> usize;
    /// Embeds document passages (applying the model's passage prefix, if any).
    fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Embeds one query (applying the model's query prefix, if any).
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
    /// Size and weight format, where the engine can tell (for `GET /v1/models`).
    fn details(&self) -> ModelDetails {
        ModelDetails::default()
    }
}

/// What an engine can tell about its model beyond name and dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDetails {
    /// Parameter count.
    pub parameters: Option<u64>,
    /// Weight format by llama.cpp's name, e.g. `Q4_0`.
    pub quantization: Option<String>,
}

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolingKind {
    /// Attention-masked mean of the token vectors (sentence-transformers models).
    Mean,
    /// The `[CLS]` vector.
    Cls,
}

/// Which engine runs the embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// A GGUF encoder run by llama.cpp ([`GgufEmbedder`]).
    #[default]
    Gguf,
    /// An ONNX model run by fastembed and ONNX Runtime ([`OnnxEmbedder`]).
    Onnx,
}

/// Which embedding model to run and how. This is also the `[embedder]` section of the
/// service config, where relative paths are under the models directory.
///
/// One flat struct rather than one per engine, so that switching engines from the
/// environment (`ZHIKU_EMBEDDER__KIND=onnx`, …) needs no restructuring; fields an engine
/// does not use are ignored by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderConfig {
    /// The engine.
    pub kind: EmbedderKind,
    /// Name recorded in each KB: a KB is only ever queried with the model that built it.
    pub name: String,
    /// The model file: `.gguf` for `gguf`, `.onnx` for `onnx`.
    pub model: PathBuf,
    /// Prefix for queries (e5 models want `query: `).
    pub query_prefix: String,
    /// Prefix for passages (e5 models want `passage: `).
    pub passage_prefix: String,
    /// Pooling over token vectors.
    pub pooling: PoolingKind,
    /// Longest input in tokens, special tokens included. `gguf` embeds longer texts as
    /// windows of this size averaged by length (what e5's reference engine does); `onnx`
    /// truncates.
    pub max_length: usize,
    /// CPU threads per embedding call; 0 uses all cores.
    pub threads: usize,
    /// `onnx`: texts per inference call; bounds memory since each call holds its batch's
    /// hidden states.
    pub batch_size: usize,
    /// `onnx`: directory with tokenizer.json, config.json, special_tokens_map.json,
    /// tokenizer_config.json.
    pub tokenizer_dir: PathBuf,
    /// `onnx`: `libonnxruntime.so` to load dynamically.
    pub runtime_library: PathBuf,
    /// `onnx`: name of the model output holding token vectors, e.g. `last_hidden_state`.
    pub output: String,
}

impl Default for EmbedderConfig {
    /// multilingual-e5-small (q4_0 GGUF) as `deploy/setup.sh` lays it out: the one
    /// Chinese-and-English model available here.
    fn default() -> Self {
        Self {
            kind: EmbedderKind::Gguf,
            name: "multilingual-e5-small-q4".into(),
            model: "e5-small/e5-small-q4_0.gguf".into(),
            query_prefix: "query: ".into(),
            passage_prefix: "passage: ".into(),
            pooling: PoolingKind::Mean,
            max_length: 512,
            threads: 2,
            // Measured on 2 CPU cores with mixed-length chunks: batches of 1 embed fastest
            // (no padding) and keep ONNX Runtime's arena smallest (330 MB peak RSS against
            // 1.2 GB with 32). Raise it for GPUs or many cores.
            batch_size: 1,
            tokenizer_dir: "all-minilm-l6-v2".into(),
            runtime_library: "onnxruntime/libonnxruntime.so.1.31.1".into(),
            output: "last_hidden_state".into(),
        }
    }
}

impl EmbedderConfig {
    /// all-MiniLM-L6-v2 (int8 ONNX) as `deploy/setup.sh` lays it out: English only, the
    /// previous default, kept for comparison and for English-only deployments.
    pub fn minilm() -> Self {
        Self {
            kind: EmbedderKind::Onnx,
            name: "all-minilm-l6-v2".into(),
            model: "all-minilm-l6-v2/model.onnx".into(),
            query_prefix: String::new(),
            passage_prefix: String::new(),
            threads: 0,
            ..Self::default()
        }
    }
}

/// Loads the configured model with its engine.
///
/// # Errors
/// [`EmbedError::MissingFile`] or [`EmbedError::InvalidFile`] naming the file at fault.
pub fn load(config: EmbedderConfig) -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(match config.kind {
        EmbedderKind::Gguf => Arc::new(GgufEmbedder::load(config)?),
        EmbedderKind::Onnx => Arc::new(OnnxEmbedder::load(config)?),
    })
}
