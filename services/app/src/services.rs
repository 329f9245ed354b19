//! The operations the HTTP API and the CLI share: ingest, search, ask.
//!
//! Everything here is blocking (model inference, index I/O); async callers run it on the
//! blocking pool.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;
use zhiku_catalog::{
    Catalog, CatalogError, Commit, ConversationLog, EmbeddedCatalog, EmbeddedConversations,
    FileOutcome, FileRecord, PostgresCatalog,
};
use zhiku_embed::Embedder;
use zhiku_generate::{Generator, LlamaGenerator, OpenAiGenerator, Slots};
use zhiku_index::{KbRegistry, KnowledgeBase};
use zhiku_jobs::{Engines, FileResult, Input, Jobs, JobsConfig, Recorder};
use zhiku_retrieve::{Query, SearchOptions};
use zhiku_schemas::{
    DocumentOutcome, FileError, KbInfo, KbName, ModelInfo, ModelList, ReindexResponse,
    SearchFilter, SearchHit, SearchRequest, SlotInfo, Token, TokenizeResponse, UploadedDocument,
    path_prefixes,
};

use crate::config::{
    CatalogBackendChoice, Config, LlmProvider, Role, SearchConfig, StoreBackendChoice,
};
use crate::conversations::ConversationStore;
use crate::error::{ServiceError, kb_not_found};
use crate::metrics::{Metrics, Snapshot};

/// How old a write intent on a shared catalog must be before its chunks are taken for a
/// dead writer's leftovers: far longer than a commit of one batch of chunks takes.
pub const STALE_WRITE: std::time::Duration = std::time::Duration::from_secs(3600);

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
    /// Held while the services live when the catalog is not the embedded one (whose own
    /// lock does this): one process per data directory.
    _data_lock: Option<std::fs::File>,
}

/// A search checked against the limits, with its defaults settled: what retrieval runs.
#[derive(Debug, Clone)]
pub struct CheckedSearch {
    /// The query, segmented.
    pub query: Query,
    /// How retrieval runs.
    pub options: SearchOptions,
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

/// A query within the configured bounds, or a 400 naming the bound it passes: the
/// characters first (cheap to count), then the distinct terms the keyword index would
/// look up.
fn check_query(query: &str, config: &SearchConfig) -> Result<Query, ServiceError> {
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
    let query = Query::new(query);
    let terms = query.terms().len();
    if terms > config.max_query_terms {
        return Err(ServiceError::over_limit(
            "query_too_long",
            "query",
            terms,
            "distinct terms",
            config.max_query_terms,
            "search.max_query_terms",
        ));
    }
    Ok(query)
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
        let (catalog, conversation_log, data_lock) = open_catalog(&config, &data_dir)?;
        let conversations = ConversationStore::new(conversation_log);
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
        let backend = match config.store.backend {
            StoreBackendChoice::Embedded => zhiku_index::StoreBackend::Embedded(config.hnsw()),
            StoreBackendChoice::Qdrant => zhiku_index::StoreBackend::Qdrant(Arc::new(
                zhiku_index::QdrantConnection::connect(config.qdrant()?)?,
            )),
        };
        let registry = Arc::new(KbRegistry::open(&data_dir, backend, catalog.clone())?);
        for (kb, report) in registry.reconcile_all()? {
            if report != Default::default() {
                tracing::warn!(kb = %kb, ?report, "reconciled the stores with the catalog");
            }
        }
        let jobs = if jobs {
            let jobs_config = JobsConfig {
                import_roots: config.jobs.import_roots.clone(),
                kb_import_roots: config.jobs.kb_import_roots.clone(),
                staging_dir: config.jobs.staging_dir(&data_dir),
                lease: std::time::Duration::from_secs(config.jobs.lease_secs.max(3)),
                poll: std::time::Duration::from_secs(config.jobs.poll_secs.max(1)),
                pipeline: config.pipeline(),
            };
            let engines = Engines {
                embedder: embedder.clone(),
                ocr: ocr.clone(),
                parsers: parsers.clone(),
            };
            // An API node queues jobs and follows them; workers (and `all`) run them.
            let work = config.server.role != Role::Api;
            Some(Jobs::start(
                catalog,
                registry.clone(),
                engines,
                jobs_config,
                work,
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
            _data_lock: data_lock,
        })
    }

    /// Deletes finished jobs and conversations older than their retention
    /// (`[jobs] retention_days`, `[conversations] retention_days`; 0 keeps them) and
    /// returns how many of each went. Also collects dead writers' leftovers on a shared
    /// catalog. Runs at start and hourly.
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
        self.collect_stale_writes();
        Ok((jobs, conversations))
    }

    /// With a shared catalog, removes the chunks that nodes which died mid-write left,
    /// KB by KB (each logs what it collects; a KB that fails is logged and skipped). No
    /// write takes [`STALE_WRITE`], so an intent that old is a dead writer's.
    fn collect_stale_writes(&self) {
        if !self.registry.catalog().shared() {
            return;
        }
        let Ok(names) = self.registry.names() else {
            return;
        };
        for name in names {
            let collected = self
                .registry
                .get(&name)
                .and_then(|kb| kb.map_or(Ok(0), |kb| kb.collect_stale(STALE_WRITE)));
            if let Err(e) = collected {
                tracing::warn!(kb = %name, "could not collect dead writers' leftovers: {e}");
            }
        }
    }

    /// The job system, or a 500 if this process runs none (never the case for `serve`).
    pub fn jobs(&self) -> Result<&Jobs, ServiceError> {
        self.jobs
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("the job system is not running".into()))
    }

    /// The KB called `name`, or a 404 naming it.
    pub fn kb(&self, name: &KbName) -> Result<Arc<KnowledgeBase>, ServiceError> {
        self.registry.get(name)?.ok_or_else(|| kb_not_found(name))
    }

    /// Creates the empty KB `name` for the service's embedding model. Returns whether it
    /// was created (rather than there already) and its summary.
    pub fn create_kb(&self, name: &KbName) -> Result<(bool, KbInfo), ServiceError> {
        if let Some(kb) = self.registry.get(name)? {
            return Ok((false, kb.info()));
        }
        let kb =
            self.registry
                .get_or_create(name, self.embedder.name(), self.embedder.dimension())?;
        Ok((true, kb.info()))
    }

    /// Runs files through the pipeline now and waits for them, creating the KB if needed.
    /// Each file succeeds or fails alone; a failed file writes nothing.
    pub fn ingest_now(
        &self,
        kb: &KbName,
        inputs: Vec<Input>,
    ) -> Result<(Vec<UploadedDocument>, Vec<FileError>), ServiceError> {
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
    pub fn reindex(&self, kb: &KbName) -> Result<ReindexResponse, ServiceError> {
        let started = Instant::now();
        let store = self.kb(kb)?;
        let embedder = self.embedder.clone();
        let report = store.reindex(embedder.name(), embedder.dimension(), &mut |records| {
            let inputs: Vec<String> = records.iter().map(zhiku_ingest::embedding_input).collect();
            embedder.embed_passages(&inputs).map_err(|e| e.to_string())
        })?;
        tracing::info!(%kb, from = %report.from.0, to = %embedder.name(), chunks = report.chunks, "reindexed");
        Ok(ReindexResponse {
            kb: store.info(),
            previous_embedder: report.from.0,
            previous_dimension: report.from.1,
            documents: report.documents,
            chunks: report.chunks,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Copies KB `kb` (its chunks and vectors, not embedded again) into the Qdrant cluster
    /// of `settings`, into the collection the KB uses once the service runs with
    /// `store.backend = "qdrant"`, and checks the copy (see
    /// [`KnowledgeBase::copy_to`]). Run again after an interruption, it resumes.
    /// With `catalog`, the KB's catalog entries then move to that PostgreSQL catalog too
    /// (see [`KnowledgeBase::copy_catalog_to`]); returned is how many documents it
    /// recorded. `progress` hears (documents done, documents in all).
    pub fn migrate_kb(
        &self,
        kb: &KbName,
        settings: zhiku_index::QdrantSettings,
        catalog: Option<zhiku_catalog::PostgresSettings>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(zhiku_index::CopyReport, Option<usize>), ServiceError> {
        let store = self.kb(kb)?;
        let meta = store.meta();
        let connection = Arc::new(zhiku_index::QdrantConnection::connect(settings)?);
        let target = zhiku_index::QdrantVectorStore::open(
            connection,
            kb.as_str(),
            &meta.vectors_dir,
            meta.dimension,
        )?;
        let report = store.copy_to(&target, progress)?;
        // The chunks are in place and checked: now the KB's entries, if the catalog
        // moves too.
        let recorded = match catalog {
            Some(settings) => {
                let catalog = PostgresCatalog::connect(&settings)
                    .and_then(|c| c.check_schema().map(|()| c))
                    .map_err(zhiku_index::IndexError::from)?;
                Some(store.copy_catalog_to(&catalog)?)
            }
            None => None,
        };
        Ok((report, recorded))
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

    /// Searches a KB: the request checked ([`Services::check_search`]), then run
    /// ([`Services::retrieve`]).
    pub fn search(
        &self,
        kb: &KbName,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>, ServiceError> {
        self.retrieve(kb, &self.check_search(request)?)
    }

    /// Checks a search request against the limits (top_k, fusion parameters, expansion,
    /// the query's length and terms, the filter) and settles its defaults.
    pub fn check_search(&self, request: &SearchRequest) -> Result<CheckedSearch, ServiceError> {
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
        let query = check_query(&request.query, config)?;
        let filter = request.filter.as_ref().map(check_filter).transpose()?;
        Ok(CheckedSearch {
            query,
            options: SearchOptions {
                filter,
                expand,
                top_k,
                mode: request.mode.unwrap_or_default(),
                candidates: config.candidates,
                rrf_k,
                fusion: request.fusion.unwrap_or(config.fusion),
                alpha,
                min_score: request.min_score,
            },
        })
    }

    /// The search an ask runs for `query` (the question, or a follow-up made standalone):
    /// a request with `top_k` and every other option at its default, checked like any
    /// other, so the defaults are settled in one place.
    pub fn question_search(
        &self,
        query: &str,
        top_k: usize,
    ) -> Result<CheckedSearch, ServiceError> {
        self.check_search(&SearchRequest {
            top_k: Some(top_k),
            ..SearchRequest::new(query)
        })
    }

    /// Runs a checked search on a KB.
    pub fn retrieve(
        &self,
        kb: &KbName,
        search: &CheckedSearch,
    ) -> Result<Vec<SearchHit>, ServiceError> {
        let kb = self.kb(kb)?;
        let started = Instant::now();
        let hits =
            zhiku_retrieve::search(&kb, self.embedder.as_ref(), &search.query, &search.options)?;
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
                kbs.push((name.into(), info.documents, info.chunks));
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

    /// The generation slots' occupancy, for `GET /v1/models`.
    pub fn slot_info(&self) -> SlotInfo {
        self.slots.status()
    }
}

/// The catalog, the conversations' store, and the data directory's lock if held apart.
type OpenedCatalog = (
    Arc<dyn Catalog>,
    Arc<dyn ConversationLog>,
    Option<std::fs::File>,
);

/// What `[catalog]` names: the catalog, where conversations are kept, and the data
/// directory's lock when the catalog is not the one that holds it. The embedded catalog
/// is opened before anything else: its lock says whether another process owns the
/// directory before any model is loaded. The PostgreSQL one must be at this build's
/// schema (`zhiku migrate`), and keeps the conversations too, so any node continues them.
fn open_catalog(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<OpenedCatalog> {
    let in_use = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "{e}: a zhiku server is probably running on {}; stop it, or send the work to it with --server URL",
            data_dir.display()
        )
    };
    match config.catalog.backend {
        CatalogBackendChoice::Embedded => {
            let catalog = match EmbeddedCatalog::open(&data_dir.join("catalog.redb")) {
                Ok(catalog) => catalog,
                Err(e @ CatalogError::Locked(_)) => return Err(in_use(&e)),
                Err(e) => return Err(e.into()),
            };
            let conversations = EmbeddedConversations::open(&data_dir.join("conversations.redb"))?;
            Ok((Arc::new(catalog), Arc::new(conversations), None))
        }
        CatalogBackendChoice::Postgres => {
            let path = data_dir.join("zhiku.lock");
            let lock = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            if lock.try_lock().is_err() {
                let e = CatalogError::Locked(path);
                return Err(in_use(&e));
            }
            let catalog = Arc::new(PostgresCatalog::connect(&config.postgres()?)?);
            catalog.check_schema()?;
            Ok((catalog.clone(), catalog, Some(lock)))
        }
    }
}
