//! The operations the HTTP API and the CLI share: ingest, search, ask.
//!
//! Everything here is blocking (model inference, index I/O); async callers run it on the
//! blocking pool.

use std::sync::Arc;
use std::time::Instant;

use zhiku_embed::{Embedder, OnnxEmbedder};
use zhiku_generate::{
    Generator, LlamaGenerator, SamplingParams, Source, build_grounded_prompt, not_found_answer,
};
use zhiku_index::{KbRegistry, KnowledgeBase};
use zhiku_ingest::PreparedDocument;
use zhiku_retrieve::SearchOptions;
use zhiku_schemas::{
    AskRequest, AskResponse, Citation, DocumentInfo, SearchHit, SearchRequest, Usage,
    is_valid_kb_name,
};

use crate::config::Config;
use crate::error::ServiceError;

/// Loaded models and open stores, shared by every request.
pub struct Services {
    /// The effective configuration.
    pub config: Config,
    /// All knowledge bases.
    pub registry: KbRegistry,
    /// The embedding model.
    pub embedder: Arc<dyn Embedder>,
    /// The LLM; absent for commands that never generate.
    pub generator: Option<Arc<dyn Generator>>,
}

/// Which models a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// Embedder only (ingest, search).
    EmbedderOnly,
    /// Embedder and LLM (serve, ask).
    All,
}

impl Services {
    /// Loads the models and opens the data directory. Fails with a message naming any
    /// missing model file and the setup command.
    pub fn load(config: Config, models: Models) -> anyhow::Result<Self> {
        let embedder_config = config.embedder();
        let generator: Option<Arc<dyn Generator>> = match models {
            Models::All => {
                let llm = config.llm();
                let started = Instant::now();
                let generator = LlamaGenerator::load(&llm)?;
                tracing::info!(model = %llm.model_path.display(), ms = started.elapsed().as_millis() as u64, "LLM loaded");
                Some(Arc::new(generator))
            }
            Models::EmbedderOnly => None,
        };
        let embedder = Arc::new(OnnxEmbedder::load(embedder_config)?);
        let registry = KbRegistry::open(&config.server.data_dir, config.hnsw())?;
        Ok(Self {
            config,
            registry,
            embedder,
            generator,
        })
    }

    /// The KB called `name`, or a 404 naming it.
    pub fn kb(&self, name: &str) -> Result<Arc<KnowledgeBase>, ServiceError> {
        self.registry.get(name)?.ok_or_else(|| {
            ServiceError::NotFound(format!("knowledge base {name:?} does not exist"))
        })
    }

    /// Checks a KB name given by a client.
    pub fn check_kb_name(name: &str) -> Result<(), ServiceError> {
        if is_valid_kb_name(name) {
            Ok(())
        } else {
            Err(ServiceError::bad_request(
                "invalid_kb_name",
                format!(
                    "invalid knowledge base name {name:?}: use 1-64 characters of a-z, 0-9, _ and -"
                ),
            ))
        }
    }

    /// Parses, chunks, embeds and stores one file, creating the KB if needed. Nothing is
    /// written unless the file made it through parsing and embedding.
    pub fn ingest_file(
        &self,
        kb: &str,
        name: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<DocumentInfo, ServiceError> {
        let prepared = self.prepare_file(kb, name, content_type, bytes)?;
        self.store_prepared(kb, prepared)
    }

    /// The side-effect-free part of ingestion: parse, chunk, embed.
    pub fn prepare_file(
        &self,
        kb: &str,
        name: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<PreparedDocument, ServiceError> {
        Self::check_kb_name(kb)?;
        Ok(zhiku_ingest::prepare(
            kb,
            name,
            content_type,
            bytes,
            self.embedder.as_ref(),
            &self.config.chunking(),
        )?)
    }

    /// Stores a prepared document, creating the KB if needed.
    pub fn store_prepared(
        &self,
        kb: &str,
        prepared: PreparedDocument,
    ) -> Result<DocumentInfo, ServiceError> {
        let store =
            self.registry
                .get_or_create(kb, self.embedder.name(), self.embedder.dimension())?;
        Ok(zhiku_ingest::store(
            &store,
            self.embedder.as_ref(),
            prepared,
        )?)
    }

    /// Searches a KB.
    pub fn search(
        &self,
        kb: &str,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>, ServiceError> {
        let top_k = self.top_k(request.top_k)?;
        let options = SearchOptions {
            top_k,
            mode: request.mode.unwrap_or_default(),
            candidates: self.config.search.candidates,
            rrf_k: self.config.search.rrf_k,
        };
        let kb = self.kb(kb)?;
        Ok(zhiku_retrieve::search(
            &kb,
            self.embedder.as_ref(),
            &request.query,
            &options,
        )?)
    }

    fn top_k(&self, requested: Option<usize>) -> Result<usize, ServiceError> {
        let top_k = requested.unwrap_or(self.config.search.top_k);
        let max = self.config.search.max_top_k;
        if top_k == 0 || top_k > max {
            return Err(ServiceError::bad_request(
                "invalid_top_k",
                format!("top_k must be between 1 and {max}"),
            ));
        }
        Ok(top_k)
    }

    /// Answers a question from a KB's documents, citing them. `on_token` receives the answer
    /// as it is generated and may return false to stop.
    pub fn ask(
        &self,
        kb: &str,
        request: &AskRequest,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<AskResponse, ServiceError> {
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
        let search = SearchRequest {
            query: question.to_string(),
            top_k: Some(request.top_k.unwrap_or(llm.context_chunks)),
            mode: None,
        };
        let hits = self.search(kb, &search)?;
        if hits.is_empty() {
            return Ok(AskResponse {
                answer: not_found_answer(question).to_string(),
                citations: Vec::new(),
                grounded: false,
                finish_reason: None,
                usage: Usage::default(),
            });
        }
        let sources: Vec<Source> = hits
            .iter()
            .map(|h| Source {
                title: h.document_name.clone(),
                heading: h.heading.clone(),
                page: h.page,
                text: h.text.clone(),
            })
            .collect();
        let prompt =
            build_grounded_prompt(generator.as_ref(), question, &sources, max_tokens as usize)?;
        let params = SamplingParams {
            temperature,
            max_tokens,
            ..SamplingParams::default()
        };
        let generation = generator.generate(&prompt.messages, &params, on_token)?;
        let citations = hits
            .into_iter()
            .take(prompt.sources_used)
            .enumerate()
            .map(|(i, h)| Citation {
                index: i + 1,
                chunk_id: h.chunk_id,
                document_id: h.document_id,
                document_name: h.document_name,
                text: h.text,
                heading: h.heading,
                page: h.page,
            })
            .collect();
        Ok(AskResponse {
            answer: generation.text.trim().to_string(),
            citations,
            grounded: true,
            finish_reason: Some(generation.finish_reason.as_str().to_string()),
            usage: Usage {
                prompt_tokens: generation.prompt_tokens,
                completion_tokens: generation.completion_tokens,
            },
        })
    }
}
