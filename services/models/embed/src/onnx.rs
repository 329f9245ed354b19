//! [`OnnxEmbedder`]: an ONNX model run by fastembed.

use std::path::Path;

use fastembed::{
    InitOptionsUserDefined, OutputKey, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use parking_lot::Mutex;

use crate::{EmbedError, Embedder, EmbedderConfig, PoolingKind};

/// The tokenizer files fastembed expects beside the model.
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// An ONNX embedding model run by fastembed.
pub struct OnnxEmbedder {
    config: EmbedderConfig,
    // fastembed's embed() takes &mut self; requests take turns, ONNX Runtime parallelises inside.
    model: Mutex<TextEmbedding>,
    // A separate tokenizer so counting tokens for chunking never waits behind inference.
    tokenizer: tokenizers::Tokenizer,
    dimension: usize,
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, EmbedError> {
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
fn check_files(config: &EmbedderConfig) -> Result<(), EmbedError> {
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
    pub fn load(config: EmbedderConfig) -> Result<Self, EmbedError> {
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
