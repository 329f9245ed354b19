//! The operations the HTTP API and the CLI share: ingest, search, ask.
//!
//! Everything here is blocking (model inference, index I/O); async callers run it on the
//! blocking pool.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;
use zhiku_catalog::{Catalog, CatalogError, Commit, FileOutcome, FileRecord};
use zhiku_embed::Embedder;
use zhiku_generate::{
    Generator, LlamaGenerator, OpenAiGenerator, SamplingParams, Slot, SlotError, Slots, Source,
    build_conversation_prompt, is_mostly_cjk, not_found_answer, resolve_citations,
};
use zhiku_index::{KbRegistry, KnowledgeBase};
use zhiku_jobs::{Engines, FileResult, Input, Jobs, JobsConfig, Recorder};
use zhiku_retrieve::SearchOptions;
use zhiku_schemas::{
    AnswerMode, AskRequest, AskResponse, AskSources, Citation, DocumentOutcome, FileError,
    ModelInfo, ModelList, ReindexResponse, SearchFilter, SearchHit, SearchRequest, SlotInfo,
    Timings, Token, TokenizeResponse, UploadedDocument, Usage, is_valid_kb_name, path_prefixes,
};

use crate::config::{Config, LlmConfig, LlmProvider, RewriteMode, SearchConfig};
use crate::conversations::ConversationContext;
use crate::conversations::ConversationStore;
use crate::error::{ServiceError, kb_not_found};
use crate::metrics::{Metrics, Snapshot};

/// Loaded models and open stores, shared by every request.
pub struct Services {
    /// The effective configuration.
    pub config: Config,
    /// All knowledge bases.
    pub registry: Arc<KbRegistry>,
    /// The embedding model.
    pub embedder: Arc<dyn Embedder>,
    /// The LLM; absent for commands that never generate.
    pub generator: Option<Arc<dyn Generator>>,
    /// The batch job system; absent for commands that run no jobs.
    pub jobs: Option<Jobs>,
    /// The OCR engine, for commands that ingest, unless OCR is disabled.
    pub ocr: Option<Arc<zhiku_ocr::Ocr>>,
    /// The parser worker processes uploads and imports are parsed in; absent for commands
    /// that run no jobs, or when `[jobs] parser_processes = 0`.
    pub parsers: Option<Arc<zhiku_sandbox::ParserPool>>,
    /// The gate in front of the LLM: `llm.parallel` answers at once, `llm.queue` waiting.
    pub slots: Slots,
    /// Counters and histograms for `GET /metrics`.
    pub metrics: Metrics,
    /// Set when shutdown begins: `/readyz` then answers 503 so load balancers stop
    /// sending work while in-flight requests finish.
    pub draining: AtomicBool,
    /// Conversation histories and ratings.
    pub conversations: ConversationStore,
    /// Document languages and query translations, for cross-language retrieval.
    pub translator: crate::translate::Translator,
}

/// Most entries a list of a search filter may have: each becomes a term of both index
/// queries.
const MAX_FILTER_VALUES: usize = 1000;

/// Checks a search filter and puts it in the form the indexes match exactly: tags
/// trimmed as at ingest, MIME types lowercased, the path prefix normalised to whole
/// components. Errors name the offending field.
fn check_filter(filter: &SearchFilter) -> Result<SearchFilter, ServiceError> {
    let bad = |message: String| ServiceError::bad_request("invalid_filter", message);
    let list = |field: &str,
                values: &Option<Vec<String>>,
                clean: fn(&str) -> String|
     -> Result<Option<Vec<String>>, ServiceError> {
        let Some(values) = values else {
            return Ok(None);
        };
        if values.is_empty() {
            return Err(bad(format!(
                "filter.{field} is an empty list, which would match nothing; leave the field out to not filter by it"
            )));
        }
        if values.len() > MAX_FILTER_VALUES {
            return Err(bad(format!(
                "filter.{field} has {} entries; at most {MAX_FILTER_VALUES} are allowed",
                values.len()
            )));
        }
        let mut cleaned = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let value = clean(value);
            if value.is_empty() {
                return Err(bad(format!("filter.{field}[{i}] is an empty string")));
            }
            cleaned.push(value);
        }
        Ok(Some(cleaned))
    };
    let path_prefix = match &filter.path_prefix {
        None => None,
        Some(prefix) => Some(path_prefixes(prefix).pop().ok_or_else(|| {
            bad(format!(
                "filter.path_prefix {prefix:?} names no path component"
            ))
        })?),
    };
    Ok(SearchFilter {
        document_ids: list("document_ids", &filter.document_ids, str::to_string)?,
        tags: list("tags", &filter.tags, |t| t.trim().to_string())?,
        path_prefix,
        mime_types: list("mime_types", &filter.mime_types, |m| {
            m.trim().to_ascii_lowercase()
        })?,
    })
}

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

/// What sentences are matched against: the search query, the question as asked when a
/// rewrite made them differ, and the query's translation when one was searched (so a
/// source in the other language has its matching sentences found too).
fn search_queries<'a>(
    question: &'a str,
    search_query: &'a str,
    translated: Option<&'a str>,
) -> Vec<&'a str> {
    let mut queries = vec![search_query];
    if question != search_query {
        queries.push(question);
    }
    queries.extend(translated);
    queries
}

/// A query within the configured bounds, or a 400 naming the bound it passes: the
/// characters first (cheap to count), then the distinct terms the keyword index would
/// look up.
fn check_query(query: &str, config: &SearchConfig) -> Result<(), ServiceError> {
    let chars = query.chars().count();
    if chars > config.max_query_chars {
        return Err(ServiceError::over_limit(
            "query_too_long",
            "query",
            chars,
            "characters",
            config.max_query_chars,
            "search.max_query_chars",
        ));
    }
    let terms: std::collections::HashSet<String> =
        zhiku_index::analyzer::terms(query).into_iter().collect();
    if terms.len() > config.max_query_terms {
        return Err(ServiceError::over_limit(
            "query_too_long",
            "query",
            terms.len(),
            "distinct terms",
            config.max_query_terms,
            "search.max_query_terms",
        ));
    }
    Ok(())
}

/// The extractive answer from numbered sources: one passage per quoted source, each ending
/// with its source's `[n]`; and the numbers cited, in order.
fn extractive_text(
    numbered: &[Citation],
    queries: &[&str],
    llm: &LlmConfig,
) -> (String, Vec<usize>) {
    let texts: Vec<&str> = numbered.iter().map(|c| c.text.as_str()).collect();
    let picked =
        zhiku_retrieve::extract(&texts, queries, llm.extractive_sources, llm.passage_window);
    let answer = picked
        .iter()
        .map(|e| format!("{} [{}]", e.text, numbered[e.source].index))
        .collect::<Vec<_>>()
        .join("\n");
    let cited = picked.iter().map(|e| numbered[e.source].index).collect();
    (answer, cited)
}

/// A response made without calling the model, as far as that decides it: no answer yet,
/// no sources, no tokens, the times so far.
fn without_model(
    conversation: &ConversationContext,
    answer_mode: AnswerMode,
    retrieval_ms: u64,
    started: Instant,
) -> AskResponse {
    AskResponse {
        answer: String::new(),
        json: None,
        citations: Vec::new(),
        context: Vec::new(),
        sources_used: 0,
        sources_dropped: 0,
        grounded: false,
        finish_reason: None,
        usage: Usage::default(),
        timings: Timings {
            retrieval_ms,
            total_ms: started.elapsed().as_millis() as u64,
            ..Timings::default()
        },
        conversation_id: conversation.id.clone(),
        search_query: conversation.search_query.clone(),
        rewrite: conversation.rewrite,
        translated_query: None,
        history_turns_used: 0,
        answer_mode,
    }
}

/// The cited sources, in the order the answer cites them, and the others.
fn split_cited(numbered: Vec<Citation>, cited: &[usize]) -> (Vec<Citation>, Vec<Citation>) {
    let (mut citations, context): (Vec<Citation>, Vec<Citation>) =
        numbered.into_iter().partition(|c| cited.contains(&c.index));
    citations.sort_by_key(|c| cited.iter().position(|n| *n == c.index));
    (citations, context)
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

/// Receives an answer while it is made: the HTTP layer (one JSON body, or Server-Sent
/// Events) and the CLI implement it.
pub trait AskSink {
    /// The numbered sources, once retrieval is done and a generation slot is granted (or,
    /// with `grounded: false`, when there is nothing to generate from). Returns false when
    /// the client is gone.
    fn sources(&mut self, _sources: &AskSources) -> bool {
        true
    }

    /// A piece of the answer. Returns false when the client is gone, which stops
    /// generation.
    fn token(&mut self, piece: &str) -> bool;

    /// Whether the client is gone; polled while the request waits for a slot.
    fn gone(&self) -> bool {
        false
    }
}

/// A closure taking each piece of the answer is a sink that never reports the client gone
/// on its own (the CLI prints pieces as they come).
impl<F: FnMut(&str) -> bool> AskSink for F {
    fn token(&mut self, piece: &str) -> bool {
        self(piece)
    }
}

/// Which models a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// Embedder only (ingest, search).
    EmbedderOnly,
    /// Embedder and LLM (serve, ask).
    All,
}

/// Collects the outcomes of a synchronous upload.
#[derive(Default)]
struct Collect {
    results: Vec<FileResult>,
}

impl Recorder for Collect {
    fn extra(&mut self, _files: &[FileRecord]) -> Commit {
        Commit::default()
    }

    fn committed(&mut self, results: Vec<FileResult>) {
        self.results.extend(results);
    }
}

impl Services {
    /// Loads the models, opens the data directory and reconciles every KB with the
    /// catalog. With `jobs` (commands that ingest), starts OCR, unless disabled, and the
    /// job worker, which resumes unfinished jobs. Fails with a message naming any missing
    /// model file or OCR package and the setup command, or the process that holds the
    /// data directory.
    pub fn load(config: Config, models: Models, jobs: bool) -> anyhow::Result<Self> {
        let embedder_config = config.embedder();
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        // The catalog is opened first: its lock says whether another process owns the
        // directory before any model is loaded.
        let catalog = match Catalog::open(&data_dir.join("catalog.redb")) {
            Ok(catalog) => Arc::new(catalog),
            Err(e @ CatalogError::Locked(_)) => anyhow::bail!(
                "{e}: a zhiku server is probably running on {}; stop it, or send the work to it with --server URL",
                data_dir.display()
            ),
            Err(e) => return Err(e.into()),
        };
        let conversations = ConversationStore::open(&data_dir.join("conversations.redb"))?;
        // Before the models: a missing OCR package is reported in a moment, not after them.
        let ocr = match config.ocr() {
            Some(ocr_config) if jobs => Some(Arc::new(zhiku_ocr::Ocr::new(ocr_config)?)),
            _ => None,
        };
        let parsers = match config.sandbox()? {
            Some(sandbox) if jobs => Some(Arc::new(zhiku_sandbox::ParserPool::start(sandbox)?)),
            _ => None,
        };
        let generator: Option<Arc<dyn Generator>> = match models {
            Models::All if config.llm.provider == LlmProvider::Openai => {
                // No GGUF LLM: the endpoint generates; it is first contacted by a request.
                Some(Arc::new(OpenAiGenerator::new(&config.remote_llm()?)?))
            }
            Models::All => {
                let llm = config.llm();
                let started = Instant::now();
                let generator = LlamaGenerator::load(&llm)?;
                tracing::info!(model = %llm.model_path.display(), ms = started.elapsed().as_millis() as u64, "LLM loaded");
                Some(Arc::new(generator))
            }
            Models::EmbedderOnly => None,
        };
        let embedder = zhiku_embed::load(embedder_config)?;
        let registry = Arc::new(KbRegistry::open(&data_dir, config.hnsw(), catalog.clone())?);
        for (kb, report) in registry.reconcile_all()? {
            if report != Default::default() {
                tracing::warn!(kb = %kb, ?report, "reconciled the stores with the catalog");
            }
        }
        let jobs = if jobs {
            let jobs_config = JobsConfig {
                import_roots: config.jobs.import_roots.clone(),
                kb_import_roots: config.jobs.kb_import_roots.clone(),
                staging_dir: data_dir.join("uploads"),
                pipeline: config.pipeline(),
            };
            let engines = Engines {
                embedder: embedder.clone(),
                ocr: ocr.clone(),
                parsers: parsers.clone(),
            };
            Some(Jobs::start(
                catalog,
                registry.clone(),
                engines,
                jobs_config,
            )?)
        } else {
            None
        };
        Ok(Self {
            slots: Slots::new(config.llm.parallel, config.llm.queue),
            metrics: Metrics::new(),
            draining: AtomicBool::new(false),
            config,
            registry,
            embedder,
            generator,
            jobs,
            conversations,
            ocr,
            parsers,
            translator: Default::default(),
        })
    }

    /// Deletes finished jobs and conversations older than their retention
    /// (`[jobs] retention_days`, `[conversations] retention_days`; 0 keeps them) and
    /// returns how many of each went.
    pub fn prune(&self) -> Result<(usize, usize), ServiceError> {
        let jobs = match (&self.jobs, self.config.jobs.retention_days) {
            (Some(jobs), days) if days > 0 => jobs.prune_finished(days)?,
            _ => 0,
        };
        let conversations = match self.config.conversations.retention_days {
            0 => 0,
            days => self
                .conversations
                .prune(&zhiku_catalog::rfc3339_days_ago(days))?,
        };
        Ok((jobs, conversations))
    }

    /// The job system, or a 500 if this process runs none (never the case for `serve`).
    pub fn jobs(&self) -> Result<&Jobs, ServiceError> {
        self.jobs
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("the job system is not running".into()))
    }

    /// The KB called `name`, or a 404 naming it.
    pub fn kb(&self, name: &str) -> Result<Arc<KnowledgeBase>, ServiceError> {
        self.registry.get(name)?.ok_or_else(|| kb_not_found(name))
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

    /// Runs files through the pipeline now and waits for them, creating the KB if needed.
    /// Each file succeeds or fails alone; a failed file writes nothing.
    pub fn ingest_now(
        &self,
        kb: &str,
        inputs: Vec<Input>,
    ) -> Result<(Vec<UploadedDocument>, Vec<FileError>), ServiceError> {
        Self::check_kb_name(kb)?;
        let store =
            self.registry
                .get_or_create(kb, self.embedder.name(), self.embedder.dimension())?;
        store.ensure_model(self.embedder.name(), self.embedder.dimension())?;
        let mut collect = Collect::default();
        let cancel = AtomicBool::new(false);
        let engines = Engines {
            embedder: self.embedder.clone(),
            ocr: self.ocr.clone(),
            parsers: self.parsers.clone(),
        };
        // The caller waits for the whole upload; OCR progress is for jobs.
        zhiku_jobs::run(
            &store,
            engines,
            &self.config.pipeline(),
            inputs.into_iter(),
            &cancel,
            &mut collect,
            &|_| {},
        )?;
        let mut documents: Vec<UploadedDocument> = Vec::new();
        let mut errors = Vec::new();
        let chunks: usize = collect
            .results
            .iter()
            .map(|r| match &r.record.outcome {
                FileOutcome::Indexed { chunks, .. } => *chunks,
                _ => 0,
            })
            .sum();
        self.metrics.uploaded(chunks);
        for result in collect.results {
            if let Some(error) = result.error() {
                errors.push(error);
                continue;
            }
            let outcome = match &result.record.outcome {
                FileOutcome::Indexed { outcome, .. } => *outcome,
                _ => DocumentOutcome::Unchanged,
            };
            if let Some(document) = result.document {
                documents.push(UploadedDocument { document, outcome });
            }
        }
        Ok((documents, errors))
    }

    /// Re-embeds every chunk of a KB with this service's embedding model and switches the
    /// KB to it atomically (see [`zhiku_index::KnowledgeBase::reindex`]). Ingestion into
    /// the KB waits meanwhile; searches go on against the old vectors until the switch.
    pub fn reindex(&self, kb: &str) -> Result<ReindexResponse, ServiceError> {
        let started = Instant::now();
        let store = self.kb(kb)?;
        let embedder = self.embedder.clone();
        let report = store.reindex(embedder.name(), embedder.dimension(), &mut |records| {
            let inputs: Vec<String> = records.iter().map(zhiku_ingest::embedding_input).collect();
            embedder.embed_passages(&inputs).map_err(|e| e.to_string())
        })?;
        tracing::info!(kb, from = %report.from.0, to = %embedder.name(), chunks = report.chunks, "reindexed");
        Ok(ReindexResponse {
            kb: store.info(),
            previous_embedder: report.from.0,
            previous_dimension: report.from.1,
            documents: report.documents,
            chunks: report.chunks,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The loaded models, as `GET /v1/models` shows them, with the knowledge bases for
    /// which `visible` holds (those the caller may read) as `kb:` models.
    pub fn models(&self, visible: &dyn Fn(&str) -> bool) -> Result<ModelList, ServiceError> {
        let created = |path: &std::path::Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        };
        let entry = |id: String, role: &str, engine: &str| ModelInfo {
            name: id.clone(),
            id,
            object: "model".into(),
            created: 0,
            owned_by: "zhiku".into(),
            role: role.into(),
            engine: engine.into(),
            description: None,
            path: String::new(),
            file_size: 0,
            parameters: None,
            parameters_label: None,
            quantization: None,
            context_length: None,
            context_window: None,
            embedding_dimension: None,
            chat_template: None,
            slots: None,
        };
        let mut data = Vec::new();
        if let Some(generator) = &self.generator {
            let info = generator.info();
            data.push(ModelInfo {
                created: created(&info.path),
                path: info.path.display().to_string(),
                file_size: info.file_size,
                parameters: info.parameters,
                parameters_label: info.parameters.map(ModelInfo::label),
                quantization: info.quantization,
                context_length: info.trained_context,
                context_window: Some(info.context_window),
                chat_template: Some(info.chat_template),
                slots: Some(self.slot_info()),
                description: info
                    .endpoint
                    .map(|url| format!("served by the OpenAI-compatible endpoint {url}")),
                ..entry(generator.name().to_string(), "llm", &info.engine)
            });
        }
        let embedder_config = self.config.embedder();
        let details = self.embedder.details();
        let engine = match embedder_config.kind {
            zhiku_embed::EmbedderKind::Gguf => "llama.cpp",
            zhiku_embed::EmbedderKind::Onnx => "onnxruntime",
        };
        data.push(ModelInfo {
            created: created(&embedder_config.model),
            file_size: std::fs::metadata(&embedder_config.model).map_or(0, |m| m.len()),
            path: embedder_config.model.display().to_string(),
            parameters_label: details.parameters.map(ModelInfo::label),
            parameters: details.parameters,
            quantization: details.quantization,
            context_length: u32::try_from(embedder_config.max_length).ok(),
            embedding_dimension: Some(self.embedder.dimension()),
            ..entry(self.embedder.name().to_string(), "embedder", engine)
        });
        if let Some(generator) = &self.generator {
            for name in self.registry.names()?.into_iter().filter(|n| visible(n)) {
                let Ok(Some(kb)) = self.registry.get(&name) else {
                    continue;
                };
                let info = kb.info();
                data.push(ModelInfo {
                    description: Some(format!(
                        "answers from knowledge base {name} ({} documents, {} chunks) by {}, with citations",
                        info.documents,
                        info.chunks,
                        generator.name()
                    )),
                    embedding_dimension: Some(info.dimension),
                    ..entry(format!("kb:{name}"), "knowledge_base", "zhiku")
                });
            }
        }
        Ok(ModelList {
            object: "list".into(),
            data,
        })
    }

    /// The LLM's tokens and the keyword index's words for a text.
    pub fn tokenize(&self, text: &str) -> Result<TokenizeResponse, ServiceError> {
        if text.is_empty() {
            return Err(ServiceError::bad_request("empty_text", "text is empty"));
        }
        let generator = self
            .generator
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no LLM is loaded".into()))?;
        let tokens: Vec<Token> = generator
            .tokenize(text)?
            .into_iter()
            .map(|t| Token {
                id: t.id,
                piece: t.piece,
            })
            .collect();
        Ok(TokenizeResponse {
            count: tokens.len(),
            tokens,
            words: zhiku_index::analyzer::terms(text),
        })
    }

    /// Searches a KB.
    pub fn search(
        &self,
        kb: &str,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>, ServiceError> {
        let top_k = self.top_k(request.top_k)?;
        let config = &self.config.search;
        let rrf_k = request.rrf_k.unwrap_or(config.rrf_k);
        if !(rrf_k.is_finite() && rrf_k > 0.0) {
            return Err(ServiceError::bad_request(
                "invalid_rrf_k",
                "rrf_k must be a positive number",
            ));
        }
        let alpha = request.alpha.unwrap_or(config.alpha);
        if !(0.0..=1.0).contains(&alpha) {
            return Err(ServiceError::bad_request(
                "invalid_alpha",
                "alpha must be between 0 and 1",
            ));
        }
        if request.min_score.is_some_and(|m| !m.is_finite()) {
            return Err(ServiceError::bad_request(
                "invalid_min_score",
                "min_score must be a finite number",
            ));
        }
        let expand = request.expand.unwrap_or(0);
        if expand > 5 {
            return Err(ServiceError::bad_request(
                "invalid_expand",
                "expand must be between 0 and 5",
            ));
        }
        check_query(&request.query, config)?;
        let filter = request.filter.as_ref().map(check_filter).transpose()?;
        let options = SearchOptions {
            filter,
            expand,
            top_k,
            mode: request.mode.unwrap_or_default(),
            candidates: config.candidates,
            rrf_k,
            fusion: request.fusion.unwrap_or(config.fusion),
            alpha,
            min_score: request.min_score,
        };
        let kb = self.kb(kb)?;
        let started = Instant::now();
        let hits = zhiku_retrieve::search(&kb, self.embedder.as_ref(), &request.query, &options)?;
        self.metrics.search(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// `GET /metrics`: the metrics, with gauges read from the slots, the jobs and every
    /// knowledge base now.
    pub fn metrics_text(&self) -> Result<String, ServiceError> {
        let mut kbs = Vec::new();
        let names = if self.config.server.expose_kb_names {
            self.registry.names()?
        } else {
            Vec::new()
        };
        for name in names {
            // A KB that cannot be opened (e.g. outdated) is left out rather than failing
            // the scrape of everything else.
            if let Ok(Some(kb)) = self.registry.get(&name) {
                let info = kb.info();
                kbs.push((name, info.documents, info.chunks));
            }
        }
        Ok(self.metrics.render(&Snapshot {
            slots: self.slots.status(),
            jobs: self.jobs.as_ref().map(Jobs::stats),
            kbs,
        }))
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

    /// Answers a question from a KB's documents, citing them. `sink` receives the numbered
    /// sources before generation and the answer as it is generated; when it reports the
    /// client gone, generation stops and the slot is freed.
    ///
    /// The order is: check the request, retrieve, decide whether the KB holds an answer
    /// (no model call when it does not), build the prompt to fit the window, wait for a
    /// generation slot (or refuse with [`ServiceError::Overloaded`]), generate.
    pub fn ask(
        &self,
        kb: &str,
        request: &AskRequest,
        sink: &mut dyn AskSink,
    ) -> Result<AskResponse, ServiceError> {
        let started = Instant::now();
        let checked = self.check_ask(request)?;
        let (generator, question) = (checked.generator.clone(), checked.question);
        // Conversations: history and a standalone search query for a follow-up. A model
        // rewrite is a generation like any other, so it waits for a slot of its own.
        let rewrite_slot = (request.conversation_id.is_some()
            && self.config.conversations.rewrite == RewriteMode::Model)
            .then(|| self.acquire_slot(sink))
            .transpose()?;
        let conversation = self.conversation_context(kb, request, question, generator.as_ref())?;
        drop(rewrite_slot);
        self.answer(kb, request, checked, conversation, sink, started)
    }

    /// [`Services::ask`] with the conversation's context worked out: retrieval, the "not
    /// found" check, the prompt, a generation slot, generation, citations; the turn is
    /// recorded when the context says so. `started` is when the request arrived.
    pub fn answer(
        &self,
        kb: &str,
        request: &AskRequest,
        checked: CheckedAsk<'_>,
        conversation: ConversationContext,
        sink: &mut dyn AskSink,
        started: Instant,
    ) -> Result<AskResponse, ServiceError> {
        let CheckedAsk {
            generator,
            question,
            params,
            schema,
            mode,
        } = checked;
        let llm = &self.config.llm;
        let search_query = conversation.search_query.as_str();
        let search = SearchRequest {
            top_k: Some(request.top_k.unwrap_or(llm.context_chunks)),
            ..SearchRequest::new(search_query)
        };
        let (hits, translated_query) = self.ask_search(kb, request, &search, sink)?;
        let retrieval_ms = started.elapsed().as_millis() as u64;
        let best = hits
            .iter()
            .filter_map(|h| h.dense_score)
            .fold(f32::NEG_INFINITY, f32::max);
        if hits.is_empty() || (llm.min_relevance > 0.0 && best < llm.min_relevance) {
            tracing::debug!(best, threshold = llm.min_relevance, "no relevant context");
            sink.sources(&AskSources {
                sources: Vec::new(),
                sources_dropped: 0,
                grounded: false,
            });
            let response = AskResponse {
                answer: not_found_answer(question).to_string(),
                translated_query,
                ..without_model(
                    &conversation,
                    match mode {
                        AnswerMode::Auto => AnswerMode::Generative,
                        mode => mode,
                    },
                    retrieval_ms,
                    started,
                )
            };
            self.record_turn(kb, question, &conversation, &response)?;
            return Ok(response);
        }

        let queries = search_queries(question, search_query, translated_query.as_deref());
        let numbered: Vec<Citation> = hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| Citation {
                index: i + 1,
                quote: zhiku_retrieve::best_sentence(&h.text, search_query).to_string(),
                chunk_id: h.chunk_id,
                document_id: h.document_id,
                document_name: h.document_name,
                text: h.text,
                heading: h.heading,
                page: h.page,
            })
            .collect();
        if mode == AnswerMode::Extractive {
            let response = self.extractive(
                kb,
                question,
                &conversation,
                numbered,
                &queries,
                sink,
                started,
            )?;
            return Ok(AskResponse {
                translated_query,
                ..response
            });
        }
        let sources: Vec<Source> = numbered
            .iter()
            .map(|c| Source {
                title: c.document_name.clone(),
                heading: c.heading.clone(),
                page: c.page,
                text: if llm.source_tokens == 0 {
                    c.text.clone()
                } else {
                    zhiku_retrieve::evidence(
                        &c.text,
                        &queries,
                        llm.source_tokens,
                        llm.passage_window,
                        &|t| generator.count_tokens(t),
                    )
                },
            })
            .collect();
        let style = self.config.prompt.resolve(kb, request.prompt.as_ref());
        let json_instruction = schema
            .as_ref()
            .map(|schema| format!("JSON that follows this JSON Schema: {schema}"));
        let style: Vec<(&str, &str)> = style
            .entries()
            .into_iter()
            .filter_map(|(field, value)| {
                // A schema decides the form of the answer, whatever the prompt fields say.
                match (field, &json_instruction) {
                    ("response_format", Some(json)) => Some((field, json.as_str())),
                    _ => value.map(|v| (field, v)),
                }
            })
            .collect();
        let prompt = build_conversation_prompt(
            generator.as_ref(),
            question,
            search_query,
            &conversation.history,
            &sources,
            params.max_tokens as usize,
            &style,
        )?;
        let sources_dropped = numbered.len() - prompt.sources_used;
        let mut numbered = numbered;
        numbered.truncate(prompt.sources_used);

        let queued = Instant::now();
        let slot = self.acquire_slot(sink)?;
        let slot_granted = Instant::now();
        if !sink.sources(&AskSources {
            sources: numbered.clone(),
            sources_dropped,
            grounded: true,
        }) {
            self.slots.record_cancelled();
            return Err(ServiceError::ClientGone);
        }
        let mut first_token = None;
        let mut gone = false;
        let generation = generator.generate(&prompt.messages, &params, &mut |piece| {
            first_token.get_or_insert_with(Instant::now);
            gone = !sink.token(piece);
            !gone
        })?;
        let finished = Instant::now();
        drop(slot);
        if gone {
            self.slots.record_cancelled();
            return Err(ServiceError::ClientGone);
        }

        let text = generation.text.trim();
        let (answer, cited, json) = if schema.is_some() {
            // JSON is returned as generated: removing a marker could break it (`[3]` may be
            // an array), so only the citations are resolved.
            let (_, cited) = resolve_citations(text, prompt.sources_used);
            (text.to_string(), cited, serde_json::from_str(text).ok())
        } else {
            // Only the sources the model was given may be cited.
            let given: Vec<&str> = numbered
                .iter()
                .take(prompt.sources_used)
                .map(|c| c.text.as_str())
                .collect();
            let attributed = zhiku_retrieve::attribute(text, &given);
            let (answer, cited) = resolve_citations(&attributed, prompt.sources_used);
            (answer, cited, None)
        };
        // `auto`: an answer that cites nothing, or is in another language than the
        // question, is replaced by the sources' own sentences.
        let (answer, cited, answer_mode) = if mode == AnswerMode::Auto
            && schema.is_none()
            && (cited.is_empty() || is_mostly_cjk(&answer) != is_mostly_cjk(question))
        {
            let (answer, cited) = extractive_text(&numbered, &queries, llm);
            (answer, cited, AnswerMode::Extractive)
        } else {
            (answer, cited, AnswerMode::Generative)
        };
        let (citations, context) = split_cited(numbered, &cited);
        let ms = |from: Instant, to: Instant| (to - from).as_millis() as u64;
        let usage = Usage {
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.completion_tokens,
        };
        let tokens_per_second = first_token
            .filter(|_| generation.completion_tokens > 1)
            .map(|first| {
                (generation.completion_tokens - 1) as f64
                    / (finished - first).as_secs_f64().max(1e-6)
            });
        let timings = Timings {
            retrieval_ms,
            queue_ms: ms(queued, slot_granted),
            time_to_first_token_ms: first_token.map(|t| ms(started, t)),
            generation_ms: ms(slot_granted, finished),
            tokens_per_second,
            total_ms: ms(started, Instant::now()),
        };
        self.metrics.answer(&timings, &usage);
        let response = AskResponse {
            answer,
            json,
            citations,
            context,
            sources_used: prompt.sources_used,
            sources_dropped,
            grounded: true,
            finish_reason: Some(generation.finish_reason.as_str().to_string()),
            usage,
            timings,
            conversation_id: conversation.id.clone(),
            search_query: search_query.to_string(),
            rewrite: conversation.rewrite,
            translated_query,
            history_turns_used: prompt.history_used,
            answer_mode,
        };
        self.record_turn(kb, question, &conversation, &response)?;
        Ok(response)
    }

    /// The extractive answer to a question with grounding sources: their best sentences
    /// with `[n]` markers, sent as one piece, with no generation slot (no model call).
    #[allow(clippy::too_many_arguments)]
    fn extractive(
        &self,
        kb: &str,
        question: &str,
        conversation: &ConversationContext,
        numbered: Vec<Citation>,
        queries: &[&str],
        sink: &mut dyn AskSink,
        started: Instant,
    ) -> Result<AskResponse, ServiceError> {
        let retrieval_ms = started.elapsed().as_millis() as u64;
        if !sink.sources(&AskSources {
            sources: numbered.clone(),
            sources_dropped: 0,
            grounded: true,
        }) {
            return Err(ServiceError::ClientGone);
        }
        let (answer, cited) = extractive_text(&numbered, queries, &self.config.llm);
        if !sink.token(&answer) {
            return Err(ServiceError::ClientGone);
        }
        let sources_used = numbered.len();
        let (citations, context) = split_cited(numbered, &cited);
        let response = AskResponse {
            answer,
            citations,
            context,
            sources_used,
            grounded: true,
            finish_reason: Some("stop".into()),
            ..without_model(conversation, AnswerMode::Extractive, retrieval_ms, started)
        };
        self.record_turn(kb, question, conversation, &response)?;
        Ok(response)
    }

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

    /// A generation slot, waiting in the queue while `sink`'s client is there; 503 when the
    /// queue is full.
    pub(crate) fn acquire_slot(&self, sink: &dyn AskSink) -> Result<Slot<'_>, ServiceError> {
        self.slots.acquire(&|| sink.gone()).map_err(|e| match e {
            SlotError::Busy {
                retry_after_secs, ..
            } => ServiceError::Overloaded {
                message: e.to_string(),
                retry_after_secs,
            },
            SlotError::Cancelled => ServiceError::ClientGone,
        })
    }

    /// The generation slots' occupancy, for `GET /v1/models`.
    pub fn slot_info(&self) -> SlotInfo {
        self.slots.status()
    }
}
