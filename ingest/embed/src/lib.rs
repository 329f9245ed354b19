//! Text → vectors.
//!
//! [`Embedder`] is the seam between the pipeline and any embedding model; [`OnnxEmbedder`]
//! runs a user-supplied ONNX model through fastembed with ONNX Runtime loaded dynamically
//! from a path in the config, so no model or runtime is ever fetched from a hub.

use std::path::{Path, PathBuf};

use fastembed::{
    InitOptionsUserDefined, OutputKey, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

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

/// Where an ONNX embedding model lives and how to run it. This is also the `[embedder]`
/// section of the service config, where relative paths are under the models directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnnxEmbedderConfig {
    /// Name recorded in each KB.
    pub name: String,
    /// The `.onnx` file.
    pub model: PathBuf,
    /// Directory with tokenizer.json, config.json, special_tokens_map.json, tokenizer_config.json.
    pub tokenizer_dir: PathBuf,
    /// `libonnxruntime.so` to load dynamically.
    pub runtime_library: PathBuf,
    /// Pooling over token vectors.
    pub pooling: PoolingKind,
    /// Name of the model output holding token vectors, e.g. `last_hidden_state`.
    pub output: String,
    /// Longest input in tokens; longer inputs are truncated.
    pub max_length: usize,
    /// Texts per inference call; bounds memory since each call holds its batch's hidden states.
    pub batch_size: usize,
    /// Prefix for queries (e5 models want `query: `).
    pub query_prefix: String,
    /// Prefix for passages (e5 models want `passage: `).
    pub passage_prefix: String,
    /// ONNX Runtime intra-op threads; 0 lets it decide.
    pub threads: usize,
}

impl Default for OnnxEmbedderConfig {
    /// all-MiniLM-L6-v2 as `deploy/setup.sh` lays it out.
    fn default() -> Self {
        Self {
            name: "all-minilm-l6-v2".into(),
            model: "all-minilm-l6-v2/model.onnx".into(),
            tokenizer_dir: "all-minilm-l6-v2".into(),
            runtime_library: "onnxruntime/libonnxruntime.so.1.31.1".into(),
            pooling: PoolingKind::Mean,
            output: "last_hidden_state".into(),
            max_length: 512,
            // Measured on 2 CPU cores with mixed-length chunks: batches of 1 embed fastest
            // (no padding) and keep ONNX Runtime's arena smallest (330 MB peak RSS against
            // 1.2 GB with 32). Raise it for GPUs or many cores.
            batch_size: 1,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            threads: 0,
        }
    }
}

/// The tokenizer files fastembed expects beside the model.
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// An ONNX embedding model run by fastembed.
pub struct OnnxEmbedder {
    config: OnnxEmbedderConfig,
    // fastembed's embed() takes &mut self; requests take turns, ONNX Runtime parallelises inside.
    model: Mutex<TextEmbedding>,
    // A separate tokenizer so counting tokens for chunking never waits behind inference.
    tokenizer: tokenizers::Tokenizer,
    dimension: usize,
}

fn read_file(path: &Path) -> Result<Vec<u8>, EmbedError> {
    if !path.is_file() {
        return Err(EmbedError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(|e| EmbedError::InvalidFile {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Checks every file the embedder needs before touching ONNX Runtime, whose loader panics
/// on a missing library.
pub fn check_files(config: &OnnxEmbedderConfig) -> Result<(), EmbedError> {
    let mut paths = vec![config.runtime_library.clone(), config.model.clone()];
    paths.extend(TOKENIZER_FILES.iter().map(|f| config.tokenizer_dir.join(f)));
    for path in paths {
        if !path.is_file() {
            return Err(EmbedError::MissingFile { path });
        }
    }
    Ok(())
}

impl OnnxEmbedder {
    /// Loads the runtime, the model and its tokenizer, and probes the output dimension.
    pub fn load(config: OnnxEmbedderConfig) -> Result<Self, EmbedError> {
        check_files(&config)?;
        let invalid = |path: &Path, detail: String| EmbedError::InvalidFile {
            path: path.to_path_buf(),
            detail,
        };
        let environment = ort::init_from(&config.runtime_library)
            .map_err(|e| invalid(&config.runtime_library, e.to_string()))?
            .with_name("zhiku")
            .build()
            .map_err(|e| invalid(&config.runtime_library, e.to_string()))?;

        let tokenizer_file = |name: &str| read_file(&config.tokenizer_dir.join(name));
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: tokenizer_file("tokenizer.json")?,
            config_file: tokenizer_file("config.json")?,
            special_tokens_map_file: tokenizer_file("special_tokens_map.json")?,
            tokenizer_config_file: tokenizer_file("tokenizer_config.json")?,
        };
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(&tokenizer_files.tokenizer_file)
            .map_err(|e| invalid(&config.tokenizer_dir.join("tokenizer.json"), e.to_string()))?;
        // tokenizer.json files often ship fixed padding/truncation (128 for MiniLM), which
        // would make every count the same; counting needs the raw length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| invalid(&config.tokenizer_dir.join("tokenizer.json"), e.to_string()))?;

        let pooling = match config.pooling {
            PoolingKind::Mean => fastembed::Pooling::Mean,
            PoolingKind::Cls => fastembed::Pooling::Cls,
        };
        let mut user_model =
            UserDefinedEmbeddingModel::new(read_file(&config.model)?, tokenizer_files)
                .with_pooling(pooling);
        // fastembed wants a 'static name; the config lives for the whole process anyway.
        user_model.output_key = Some(OutputKey::ByName(Box::leak(
            config.output.clone().into_boxed_str(),
        )));
        let mut options = InitOptionsUserDefined::new()
            .with_environment(environment)
            .with_max_length(config.max_length);
        if config.threads > 0 {
            options = options.with_intra_threads(config.threads);
        }
        let mut model = TextEmbedding::try_new_from_user_defined(user_model, options)
            .map_err(|e| invalid(&config.model, e.to_string()))?;
        let probe = model
            .embed(["dimension probe"], None)
            .map_err(|e| invalid(&config.model, format!("test inference failed: {e}")))?;
        let dimension = probe.first().map_or(0, Vec::len);
        if dimension == 0 {
            return Err(invalid(
                &config.model,
                "model returned an empty vector".into(),
            ));
        }
        tracing::info!(model = %config.name, dimension, "embedding model loaded");
        Ok(Self {
            config,
            model: Mutex::new(model),
            tokenizer,
            dimension,
        })
    }

    fn embed_prefixed(&self, prefix: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let batch = self.config.batch_size.max(1);
        // Texts of similar length share a batch: every input is padded to the longest of
        // its batch, and padding is pure waste.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        // One slice at a time: embed() keeps every batch's hidden states until it returns.
        for slice in order.chunks(batch) {
            let inputs: Vec<String> = slice
                .iter()
                .map(|&i| format!("{prefix}{}", texts[i]))
                .collect();
            let vectors = self
                .model
                .lock()
                .embed(&inputs, Some(batch))
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            for (&i, vector) in slice.iter().zip(vectors) {
                out[i] = vector;
            }
        }
        Ok(out)
    }
}

impl Embedder for OnnxEmbedder {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn count_tokens(&self, text: &str) -> usize {
        // An encoding failure only happens on pathological input; fall back to a char count
        // so the chunker still keeps pieces small.
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| text.chars().count())
    }

    fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_prefixed(&self.config.passage_prefix, texts)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed_prefixed(&self.config.query_prefix, &[text.to_string()])?
            .pop()
            .ok_or_else(|| EmbedError::Inference("model returned no vector".into()))
    }
}
