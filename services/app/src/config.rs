//! The one typed configuration: defaults, then a TOML file, then `ZHIKU_SECTION__KEY`
//! environment variables, then command-line flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The hidden command that makes this binary a parser worker (see `zhiku-sandbox`).
pub const PARSE_WORKER: &str = "parse-worker";

/// Everything the service can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Network and storage locations.
    pub server: ServerConfig,
    /// The embedding model: a GGUF encoder (default multilingual-e5-small) or any ONNX
    /// text encoder with a Hugging Face tokenizer.
    pub embedder: zhiku_embed::EmbedderConfig,
    /// How documents are cut into chunks.
    pub chunking: ChunkingConfig,
    /// Vector index tuning.
    pub index: IndexConfig,
    /// Where knowledge bases keep their chunks: embedded, or a Qdrant cluster.
    pub store: StoreConfig,
    /// Where documents, versions and jobs are recorded: embedded, or PostgreSQL.
    pub catalog: CatalogConfig,
    /// Retrieval defaults.
    pub search: SearchConfig,
    /// The LLM: a local GGUF model, or an OpenAI-compatible endpoint.
    pub llm: LlmConfig,
    /// Batch ingestion.
    pub jobs: JobsSection,
    /// Reading images and scanned PDF pages with Tesseract.
    pub ocr: OcrSection,
    /// Default persona and CO-STAR fields for answers, overall and per knowledge base.
    pub prompt: PromptSection,
    /// Conversations: history, follow-up rewriting, limits.
    pub conversations: ConversationsConfig,
}

/// How follow-up questions are made standalone before retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewriteMode {
    /// Ask the LLM, check its rewrite, and fall back to `keywords` if it fails a check.
    Model,
    /// Add the previous search query's key terms to the question.
    Keywords,
    /// Search every question as asked.
    Off,
}

/// Conversations: history, follow-up rewriting, limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationsConfig {
    /// Turns a conversation may have; further questions are refused (409) so that no
    /// rated turn is ever dropped to make room.
    pub max_turns: u32,
    /// Most recent turns offered to the model with a follow-up (fewer when the context
    /// window is full).
    pub history_turns: usize,
    /// How a follow-up becomes a standalone search query.
    pub rewrite: RewriteMode,
    /// Longest question accepted, in characters (every question is stored).
    pub max_question_chars: usize,
    /// Conversations are deleted, ratings included, this many days after their last
    /// turn; 0 keeps them. Export rated answers (`/export/qa.jsonl`) before they go.
    pub retention_days: u64,
}

impl Default for ConversationsConfig {
    fn default() -> Self {
        Self {
            max_turns: 100,
            history_turns: 4,
            rewrite: RewriteMode::Model,
            max_question_chars: 4000,
            retention_days: 365,
        }
    }
}

/// Default persona and CO-STAR fields (`[prompt.default]`, and `[prompt.kb.<name>]` for
/// one knowledge base). A request's `prompt` overrides them field by field, then the KB's,
/// then the overall defaults apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSection {
    /// For every knowledge base.
    pub default: zhiku_schemas::PromptFields,
    /// Per knowledge base, by name.
    pub kb: std::collections::BTreeMap<String, zhiku_schemas::PromptFields>,
}

impl PromptSection {
    /// The fields for a request to `kb`: the request's, then the KB's, then the defaults.
    pub fn resolve(
        &self,
        kb: &str,
        request: Option<&zhiku_schemas::PromptFields>,
    ) -> zhiku_schemas::PromptFields {
        let kb_fields = self
            .kb
            .get(kb)
            .map_or_else(|| self.default.clone(), |f| f.over(&self.default));
        request.map_or(kb_fields.clone(), |r| r.over(&kb_fields))
    }
}

/// Batch ingestion: imports, limits and pipeline tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// Server directories `POST /v1/jobs` may import from (after resolving `..` and
    /// symlinks); empty disables server-side imports.
    pub import_roots: Vec<PathBuf>,
    /// Per knowledge base, the directories its imports may read from instead of
    /// `import_roots` (`[jobs.kb_import_roots] hr = ["/srv/hr"]`); an empty list
    /// disables that KB's imports.
    pub kb_import_roots: std::collections::BTreeMap<String, Vec<PathBuf>>,
    /// Seconds one file may take from read to embedded before it fails with `timeout`.
    pub file_timeout_secs: u64,
    /// Largest file a job or upload ingests, in bytes.
    pub max_file_bytes: u64,
    /// Chunks per embedding call (small files share calls).
    pub embed_batch: usize,
    /// Chunks per store commit.
    pub commit_chunks: usize,
    /// Parser worker processes kept running: files are parsed in them, so that a hostile
    /// file kills a worker rather than the service. 0 parses inside the service process
    /// (only for trusted input).
    pub parser_processes: usize,
    /// Address space each parser worker may use, in MiB.
    pub parser_memory_mb: u64,
    /// Stack of the parsing thread, in MiB: how deeply nested a document may be.
    pub parser_stack_mb: u64,
    /// CPU seconds parsing one file may use.
    pub parser_cpu_secs: u64,
    /// Finished jobs are deleted this many days after they finished; 0 keeps them.
    pub retention_days: u64,
    /// Seconds a worker's claim on a running job lasts unless renewed (every third of
    /// it): how soon another worker resumes the job of a worker that died.
    pub lease_secs: u64,
    /// Seconds between an idle worker's looks for jobs queued through other nodes.
    pub poll_secs: u64,
    /// Where uploads wait until a worker processes them; every worker must be able to
    /// read it (a shared volume when workers are other machines). Empty:
    /// `<data_dir>/uploads`.
    pub staging_dir: PathBuf,
}

impl JobsSection {
    /// Where uploads are staged, for a data directory.
    pub fn staging_dir(&self, data_dir: &Path) -> PathBuf {
        if self.staging_dir.as_os_str().is_empty() {
            data_dir.join("uploads")
        } else {
            self.staging_dir.clone()
        }
    }
}

impl Default for JobsSection {
    fn default() -> Self {
        let d = zhiku_jobs::PipelineSettings::default();
        Self {
            import_roots: Vec::new(),
            kb_import_roots: Default::default(),
            file_timeout_secs: d.file_timeout.as_secs(),
            max_file_bytes: d.max_file_bytes,
            embed_batch: d.embed_batch,
            commit_chunks: d.commit_chunks,
            parser_processes: 2,
            parser_memory_mb: 2048,
            parser_stack_mb: 16,
            parser_cpu_secs: 300,
            retention_days: 30,
            lease_secs: 30,
            poll_secs: 2,
            staging_dir: PathBuf::new(),
        }
    }
}

/// OCR of images and scanned PDF pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcrSection {
    /// Read images and PDF pages without a text layer. When false, a scanned PDF is an
    /// `empty` document (`no_text_layer`) and an image one too (`ocr_disabled`), and
    /// `tesseract` need not be installed.
    pub enabled: bool,
    /// Tesseract languages joined by `+`; each needs its Debian package
    /// (`tesseract-ocr-chi-sim` for `chi_sim`).
    pub languages: String,
    /// Resolution PDF pages are rasterized at.
    pub dpi: u32,
    /// Pages read at once, one single-threaded `tesseract` each, shared by all uploads and
    /// jobs.
    pub workers: usize,
    /// Seconds one page may take (rasterizing included); then it fails alone.
    pub page_timeout_secs: u64,
    /// Most pages and images of one file OCR will read; a file with more fails with
    /// `too_many_pages` (413) before any is read.
    pub max_pages: usize,
    /// Largest image (or page raster) in pixels; larger images are refused from their
    /// header (`image_too_large`, 413), larger pages rasterized at a lower DPI.
    pub max_image_pixels: u64,
    /// Also read the images embedded in DOCX files.
    pub docx_images: bool,
}

impl Default for OcrSection {
    fn default() -> Self {
        let d = zhiku_ocr::OcrConfig::default();
        Self {
            enabled: true,
            languages: d.languages,
            dpi: d.dpi,
            workers: d.workers,
            page_timeout_secs: d.page_timeout.as_secs(),
            max_pages: d.max_pages,
            max_image_pixels: d.max_image_pixels,
            docx_images: false,
        }
    }
}

/// What a `zhiku serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API and a job worker: the one process of the embedded default.
    #[default]
    All,
    /// The HTTP API only: jobs are queued for the workers. Stateless with the PostgreSQL
    /// catalog and a Qdrant store, so any number can sit behind a load balancer.
    Api,
    /// A job worker: claims queued jobs from the catalog and runs them. It answers HTTP
    /// too (health, metrics), without loading the LLM.
    Worker,
}

/// Network and storage locations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub addr: String,
    /// What this process does (`zhiku serve --role`): `all`, `api` or `worker`.
    pub role: Role,
    /// Where knowledge bases are stored.
    pub data_dir: PathBuf,
    /// Where relative model paths are resolved.
    pub models_dir: PathBuf,
    /// Largest accepted upload request, in bytes.
    pub max_upload_bytes: usize,
    /// Largest accepted body of any other request (JSON), in bytes.
    pub max_body_bytes: usize,
    /// On SIGTERM/Ctrl-C: how long requests in flight may take to finish, and then how
    /// long a running job may take to reach its next commit.
    pub shutdown_timeout_secs: u64,
    /// Serve without API keys on an address other than loopback. Without keys anyone who
    /// can reach the port may read, change and delete everything, so this must be said
    /// explicitly (e.g. behind an authenticating proxy).
    pub allow_unauthenticated: bool,
    /// Requests a minute per API key (per client address while no keys exist); 0 is no
    /// limit. Probes and metrics are not counted.
    pub rate_limit_per_minute: u32,
    /// Requests a caller may make at once before the per-minute rate applies.
    pub rate_limit_burst: u32,
    /// Seconds until a response must start, else 504; 0 is no limit. Streamed answers
    /// start with their sources, so they are not cut off; reindexing is exempt.
    pub request_timeout_secs: u64,
    /// Origins browsers may call the API from (`https://app.example`), or `["*"]` for any;
    /// empty sends no CORS headers, so browsers allow only same-origin pages.
    pub cors_origins: Vec<String>,
    /// Host names (the `Host` header without its port) answered besides loopback ones
    /// (`localhost`, `*.localhost`, `127.0.0.1`, `::1`); others get 421, so a web page
    /// cannot reach the service through a DNS name rebound to this machine. `["*"]`
    /// answers any (behind a proxy that checks the host).
    pub allowed_hosts: Vec<String>,
    /// Parts (files and fields) one upload request may have; more is a 400
    /// `too_many_parts`, before any file is stored.
    pub max_upload_parts: usize,
    /// Show knowledge-base names on the keyless `/metrics` (per-KB series) and `/readyz`
    /// (which KB cannot be opened). Off: names are what keys protect, and probes and
    /// scrapers carry none.
    pub expose_kb_names: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            role: Role::All,
            data_dir: "./data".into(),
            models_dir: "./models".into(),
            max_upload_bytes: 50 * 1024 * 1024,
            // Roomy for a search filter of a thousand document ids or a long JSON schema,
            // small enough that a stray upload to a JSON route is refused at once.
            max_body_bytes: 1024 * 1024,
            shutdown_timeout_secs: 30,
            allow_unauthenticated: false,
            rate_limit_per_minute: 0,
            rate_limit_burst: 20,
            // A queued answer on a busy CPU takes minutes at worst; beyond that the
            // client has long given up.
            request_timeout_secs: 300,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_upload_parts: 1000,
            expose_kb_names: false,
        }
    }
}

/// Chunking budget, in tokens of the embedding model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingConfig {
    /// Upper bound on a chunk.
    pub max_tokens: usize,
    /// Tokens repeated between consecutive pieces of a split block.
    pub overlap_tokens: usize,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            overlap_tokens: 32,
        }
    }
}

/// HNSW parameters of the vector index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Edges per node.
    pub hnsw_m: usize,
    /// Build-time candidates.
    pub hnsw_ef_construct: usize,
    /// Search-time candidates.
    pub hnsw_ef: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        let d = zhiku_index::HnswParams::default();
        Self {
            hnsw_m: d.m,
            hnsw_ef_construct: d.ef_construct,
            hnsw_ef: d.ef,
        }
    }
}

/// `store.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackendChoice {
    /// A Qdrant Edge shard and a Tantivy index per KB in the data directory.
    #[default]
    Embedded,
    /// A collection per KB in the Qdrant cluster at `store.url`, with BM25 as sparse
    /// vectors instead of Tantivy.
    Qdrant,
}

/// Where knowledge bases keep their chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (the default: nothing else to run) or `qdrant`.
    pub backend: StoreBackendChoice,
    /// `qdrant`: the gRPC URL of any node of the cluster.
    pub url: String,
    /// `qdrant`: the NAME of the environment variable holding the cluster's API key;
    /// empty sends none.
    pub api_key_env: String,
    /// `qdrant`: prefix of every collection zhiku creates (`<prefix><kb>.<store>`), so
    /// deployments can share a cluster.
    pub collection_prefix: String,
    /// `qdrant`: shards of each new collection.
    pub shard_number: u32,
    /// `qdrant`: copies of each shard in new collections.
    pub replication_factor: u32,
    /// `qdrant`: replicas that must confirm a write.
    pub write_consistency_factor: u32,
    /// `qdrant`: seconds allowed for one request (and for connecting).
    pub timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackendChoice::Embedded,
            url: "http://127.0.0.1:6334".into(),
            api_key_env: String::new(),
            collection_prefix: "zhiku_".into(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            timeout_secs: 30,
        }
    }
}

/// `catalog.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogBackendChoice {
    /// A redb file in the data directory, which one process owns.
    #[default]
    Embedded,
    /// Tables in the PostgreSQL database at `catalog.url`, shared by every node.
    Postgres,
}

/// Where documents, their versions and the job queue are recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `embedded` (the default) or `postgres`.
    pub backend: CatalogBackendChoice,
    /// `postgres`: `postgres://user@host:port/database`, without a password (see
    /// `password_env`).
    pub url: String,
    /// `postgres`: the NAME of the environment variable holding the password; empty uses
    /// the URL as it is.
    pub password_env: String,
    /// `postgres`: most connections one process opens.
    pub pool_size: usize,
    /// `postgres`: seconds allowed for connecting and for one catalog operation.
    pub timeout_secs: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            backend: CatalogBackendChoice::Embedded,
            url: "postgres://zhiku@127.0.0.1:5432/zhiku".into(),
            password_env: String::new(),
            pool_size: 8,
            timeout_secs: 30,
        }
    }
}

/// Retrieval defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Hits returned when a request does not say.
    pub top_k: usize,
    /// Largest `top_k` a request may ask for.
    pub max_top_k: usize,
    /// Candidates per retriever before fusion.
    pub candidates: usize,
    /// Reciprocal rank fusion constant.
    pub rrf_k: f32,
    /// How hybrid search fuses its two rankings: `rrf` or `weighted`.
    pub fusion: zhiku_schemas::Fusion,
    /// Weight of the dense side in weighted fusion, 0 to 1.
    pub alpha: f32,
    /// Whether asks also retrieve with the question translated into the knowledge base's
    /// other language (when it holds documents in a language the question is not in):
    /// `auto` or `off`. A request's `translate` overrides it; searches translate only
    /// when the request asks.
    pub translate: TranslateMode,
    /// Dense similarity by which the query's own ranking is preferred over that of its
    /// English translation when the two are merged (see the `translate` module).
    pub translate_margin_en: f32,
    /// The same for a Chinese translation: larger, because the embedder gives Chinese
    /// text higher similarities than English (tuned on the eval set, README).
    pub translate_margin_zh: f32,
    /// Cosine similarity of two chunks' stored vectors at or above which a translation's
    /// hit and a hit of the query as asked that choose each other count as one passage in
    /// two languages: the question's own language's version takes the translation's place
    /// (see the `translate` module). Tuned on the eval set (README); above 1 turns it off.
    pub translate_twin: f32,
    /// Longest query, in characters, a search takes (asks' searches too); longer is a 400.
    pub max_query_chars: usize,
    /// Most distinct keyword terms a query may hold: the keyword search's work grows with
    /// them, and one query of 120,000 distinct words kept a core busy for minutes.
    pub max_query_terms: usize,
}

/// Whether asks search a translation of the question too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranslateMode {
    /// When the KB holds documents in the language the question is not in.
    Auto,
    /// Never, unless a request asks.
    Off,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            top_k: 5,
            max_top_k: 100,
            candidates: 50,
            rrf_k: 60.0,
            // Chosen on the bilingual eval set (README, "Retrieval quality") with the
            // default embedder: weighted fusion at 0.6-0.7 beat RRF and both single modes
            // on every language slice; 0.65 sits mid-plateau.
            fusion: zhiku_schemas::Fusion::Weighted,
            alpha: 0.65,
            translate: TranslateMode::Auto,
            translate_margin_en: 0.005,
            translate_margin_zh: 0.04,
            translate_twin: 0.88,
            max_query_chars: 8000,
            max_query_terms: 1024,
        }
    }
}

/// Where answers are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    /// The GGUF model of `llm.model`, run in-process by llama.cpp.
    #[default]
    Local,
    /// The model `llm.remote_model` behind the OpenAI-compatible API at `llm.base_url`;
    /// no GGUF LLM is loaded.
    Openai,
}

/// The LLM: a local GGUF model, or an OpenAI-compatible endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// `local` (llama.cpp, `llm.model`) or `openai` (an OpenAI-compatible endpoint).
    pub provider: LlmProvider,
    /// GGUF file (relative paths are under `server.models_dir`); `provider = "local"` only.
    pub model: PathBuf,
    /// Context window in tokens: the prompt plus the answer must fit it. With
    /// `provider = "openai"`, the remote model's window (or less), which prompts are
    /// budgeted for by an estimate of their tokens.
    pub n_ctx: u32,
    /// `provider = "openai"`: the API's base URL, the part before `/chat/completions`
    /// (e.g. `http://127.0.0.1:8081/v1`).
    pub base_url: String,
    /// `provider = "openai"`: the model name sent upstream; also the LLM's name in
    /// `GET /v1/models` and `/v1/chat/completions`.
    pub remote_model: String,
    /// `provider = "openai"`: the NAME of the environment variable holding the API key
    /// (sent as `Authorization: Bearer`); empty sends none. The key itself never goes in
    /// the configuration.
    pub api_key_env: String,
    /// `provider = "openai"`: seconds to wait for a connection.
    pub connect_timeout_secs: u64,
    /// `provider = "openai"`: seconds to wait for the answer to start, and then for each
    /// further piece of it; then the request fails with 504.
    pub timeout_secs: u64,
    /// `provider = "openai"`: further attempts (with backoff) after a connection failure,
    /// a 429 or a 5xx, before any of the answer was received.
    pub max_retries: u32,
    /// CPU threads per generation.
    pub threads: i32,
    /// Default answer length bound.
    pub max_tokens: u32,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_limit: u32,
    /// Default sampling temperature.
    pub temperature: f32,
    /// Chunks given to the model as sources.
    pub context_chunks: usize,
    /// llama.cpp template used when the model has none.
    pub fallback_template: String,
    /// Answers generated at once, each with its own llama.cpp context (KV cache) created at
    /// startup. On few cores, more slots share the same cores: latency per answer grows.
    pub parallel: usize,
    /// Requests that may wait for a free slot; beyond it a request gets 503 with
    /// `Retry-After`.
    pub queue: usize,
    /// Below this similarity (cosine, of the best retrieved chunk by the embedder) the KB is
    /// taken to hold no answer: the reply says so in the question's language without
    /// calling the model (`grounded: false`). 0 turns the check off. The scale belongs to
    /// the embedder: the default suits multilingual-e5-small, whose cosines bunch high
    /// (README, "Not found"); set it anew for another model.
    pub min_relevance: f32,
    /// How answers are made unless a request says: `generative`, `extractive` or `auto`.
    pub answer_mode: zhiku_schemas::AnswerMode,
    /// Each source is given to the model as its sentences that best match the question,
    /// up to this many of the model's tokens, rather than the whole chunk: small models
    /// answer better from less noise, and more sources fit. 0 gives whole chunks.
    pub source_tokens: usize,
    /// Sources an extractive answer quotes: one passage from each of the best ranked.
    pub extractive_sources: usize,
    /// Sentences kept on each side of a best-matching one, in extractive answers and in
    /// the compressed sources given to the model: the answer often follows a sentence that
    /// restates the question, in other words.
    pub passage_window: usize,
    /// How grounded prompts are worded: `auto` (by the model's architecture: `example`
    /// for Qwen, `standard` otherwise), `standard` or `example`.
    pub prompt_profile: PromptProfileChoice,
}

/// `llm.prompt_profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptProfileChoice {
    /// Chosen by the model's architecture.
    #[default]
    Auto,
    /// Rules, then sources and question.
    Standard,
    /// Short rules and a worked example before the question.
    Example,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: LlmProvider::Local,
            model: "qwen2.5-coder-1.5b/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf".into(),
            n_ctx: 2048,
            base_url: String::new(),
            remote_model: String::new(),
            api_key_env: String::new(),
            connect_timeout_secs: 10,
            // Long enough for a busy server's queue and a long prompt before the first token.
            timeout_secs: 120,
            max_retries: 2,
            threads: 2,
            max_tokens: 256,
            max_tokens_limit: 1024,
            temperature: 0.2,
            context_chunks: 3,
            fallback_template: "chatml".into(),
            parallel: 2,
            queue: 16,
            // On the eval set (README, "Not found") every answerable question's best chunk
            // scored at least 0.833 and 11 of 20 off-topic questions stayed below 0.82.
            min_relevance: 0.82,
            answer_mode: zhiku_schemas::AnswerMode::Generative,
            source_tokens: 80,
            extractive_sources: 2,
            passage_window: 1,
            prompt_profile: PromptProfileChoice::Auto,
        }
    }
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data`.
    pub data_dir: Option<PathBuf>,
    /// `--models`.
    pub models_dir: Option<PathBuf>,
    /// `--addr`.
    pub addr: Option<String>,
    /// `serve --role`.
    pub role: Option<Role>,
}

impl Config {
    /// Loads the configuration. Without `file`, `./zhiku.toml` is read if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(
                    path.is_file(),
                    "config file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None if Path::new("zhiku.toml").is_file() => {
                figment = figment.merge(Toml::file("zhiku.toml"))
            }
            None => {}
        }
        // Only nested keys (ZHIKU_SERVER__ADDR): plain ZHIKU_* variables belong to the scripts.
        figment = figment.merge(
            Env::prefixed("ZHIKU_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let mut config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        if let Some(dir) = &overrides.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(dir) = &overrides.models_dir {
            config.server.models_dir = dir.clone();
        }
        if let Some(addr) = &overrides.addr {
            config.server.addr = addr.clone();
        }
        if let Some(role) = overrides.role {
            config.server.role = role;
        }
        Ok(config)
    }

    /// The configuration as TOML, with text values of keys naming a secret (a word `key`,
    /// `secret`, `token` or `password`, e.g. `api_key`) masked, for `zhiku config show`.
    pub fn show(&self) -> anyhow::Result<String> {
        let mut value = toml::Value::try_from(self)?;
        mask_secrets(&mut value);
        Ok(toml::to_string_pretty(&value)?)
    }

    /// A model path as configured, resolved against the models directory when relative.
    pub fn model_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.server.models_dir.join(path)
        }
    }

    /// The embedder settings with paths resolved.
    pub fn embedder(&self) -> zhiku_embed::EmbedderConfig {
        let e = &self.embedder;
        zhiku_embed::EmbedderConfig {
            model: self.model_path(&e.model),
            tokenizer_dir: self.model_path(&e.tokenizer_dir),
            runtime_library: self.model_path(&e.runtime_library),
            ..e.clone()
        }
    }

    /// The LLM settings with paths resolved.
    pub fn llm(&self) -> zhiku_generate::LlamaConfig {
        zhiku_generate::LlamaConfig {
            model_path: self.model_path(&self.llm.model),
            n_ctx: self.llm.n_ctx,
            threads: self.llm.threads,
            fallback_template: self.llm.fallback_template.clone(),
            parallel: self.llm.parallel,
            prompt_profile: match self.llm.prompt_profile {
                PromptProfileChoice::Auto => None,
                PromptProfileChoice::Standard => Some(zhiku_generate::PromptProfile::Standard),
                PromptProfileChoice::Example => Some(zhiku_generate::PromptProfile::Example),
            },
        }
    }

    /// The remote LLM's settings, with the API key read from the environment variable
    /// `llm.api_key_env` names. Errors name the variable, never its value.
    pub fn remote_llm(&self) -> anyhow::Result<zhiku_generate::OpenAiConfig> {
        let llm = &self.llm;
        anyhow::ensure!(
            !llm.base_url.trim().is_empty(),
            "llm.provider = \"openai\" needs llm.base_url (e.g. http://127.0.0.1:8081/v1)"
        );
        anyhow::ensure!(
            !llm.remote_model.trim().is_empty(),
            "llm.provider = \"openai\" needs llm.remote_model: the model name the endpoint serves"
        );
        let api_key = secret_from_env("llm.api_key_env", &llm.api_key_env)?
            .map(|key| zhiku_generate::ApiKey::new(&key));
        Ok(zhiku_generate::OpenAiConfig {
            base_url: llm.base_url.clone(),
            model: llm.remote_model.trim().to_string(),
            api_key,
            n_ctx: llm.n_ctx,
            connect_timeout: std::time::Duration::from_secs(llm.connect_timeout_secs.max(1)),
            timeout: std::time::Duration::from_secs(llm.timeout_secs.max(1)),
            max_retries: llm.max_retries,
        })
    }

    /// The chunker settings.
    pub fn chunking(&self) -> zhiku_chunk::ChunkerConfig {
        zhiku_chunk::ChunkerConfig {
            max_tokens: self.chunking.max_tokens,
            overlap_tokens: self.chunking.overlap_tokens,
        }
    }

    /// The ingestion pipeline's settings.
    pub fn pipeline(&self) -> zhiku_jobs::PipelineSettings {
        zhiku_jobs::PipelineSettings {
            chunking: self.chunking(),
            file_timeout: std::time::Duration::from_secs(self.jobs.file_timeout_secs.max(1)),
            max_file_bytes: self.jobs.max_file_bytes,
            embed_batch: self.jobs.embed_batch.max(1),
            commit_chunks: self.jobs.commit_chunks.max(1),
            parse: zhiku_parse::ParseOptions {
                docx_images: self.ocr.enabled && self.ocr.docx_images,
            },
        }
    }

    /// How parser workers are started and limited, or `None` when files are parsed inside
    /// this process (`[jobs] parser_processes = 0`). The worker is this binary's hidden
    /// `parse-worker` command.
    pub fn sandbox(&self) -> anyhow::Result<Option<zhiku_sandbox::SandboxConfig>> {
        let j = &self.jobs;
        if j.parser_processes == 0 {
            return Ok(None);
        }
        Ok(Some(zhiku_sandbox::SandboxConfig {
            program: zhiku_sandbox::SandboxConfig::this_binary()
                .context("cannot find this program to start parser workers")?,
            args: vec![PARSE_WORKER.into()],
            processes: j.parser_processes,
            memory_bytes: j.parser_memory_mb.max(64) << 20,
            stack_bytes: j.parser_stack_mb.max(1) << 20,
            cpu_seconds: j.parser_cpu_secs.max(1),
            timeout: std::time::Duration::from_secs(j.file_timeout_secs.max(1)),
        }))
    }

    /// The OCR engine's settings, or `None` when OCR is disabled.
    pub fn ocr(&self) -> Option<zhiku_ocr::OcrConfig> {
        let o = &self.ocr;
        o.enabled.then(|| zhiku_ocr::OcrConfig {
            languages: o.languages.clone(),
            dpi: o.dpi,
            workers: o.workers,
            page_timeout: std::time::Duration::from_secs(o.page_timeout_secs.max(1)),
            max_pages: o.max_pages,
            max_image_pixels: o.max_image_pixels,
        })
    }

    /// The Qdrant cluster's settings, for `store.backend = "qdrant"`.
    pub fn qdrant(&self) -> anyhow::Result<zhiku_index::QdrantSettings> {
        let store = &self.store;
        anyhow::ensure!(
            !store.url.trim().is_empty(),
            "store.backend = \"qdrant\" needs store.url (e.g. http://127.0.0.1:6334)"
        );
        anyhow::ensure!(
            store.shard_number >= 1
                && store.replication_factor >= 1
                && (1..=store.replication_factor).contains(&store.write_consistency_factor),
            "store.shard_number and store.replication_factor must be at least 1, and store.write_consistency_factor between 1 and store.replication_factor"
        );
        Ok(zhiku_index::QdrantSettings {
            url: store.url.trim().to_string(),
            api_key: secret_from_env("store.api_key_env", &store.api_key_env)?,
            collection_prefix: store.collection_prefix.clone(),
            shard_number: store.shard_number,
            replication_factor: store.replication_factor,
            write_consistency_factor: store.write_consistency_factor,
            timeout: std::time::Duration::from_secs(store.timeout_secs.max(1)),
            hnsw: self.hnsw(),
        })
    }

    /// Refuses a role that needs what is not configured: separate API and worker
    /// processes share one catalog and one store, so both must be the scaled-out ones.
    pub fn check_role(&self) -> anyhow::Result<()> {
        if self.server.role != Role::All {
            anyhow::ensure!(
                self.catalog.backend == CatalogBackendChoice::Postgres
                    && self.store.backend == StoreBackendChoice::Qdrant,
                "serve --role {} needs catalog.backend = \"postgres\" and store.backend = \"qdrant\" \
                 (nodes share them); the embedded default runs as one process: --role all",
                serde_json::to_value(self.server.role)?
                    .as_str()
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The PostgreSQL catalog's settings, for `catalog.backend = "postgres"`.
    pub fn postgres(&self) -> anyhow::Result<zhiku_catalog::PostgresSettings> {
        let catalog = &self.catalog;
        let mut url = catalog.url.trim().to_string();
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "catalog.backend = \"postgres\" needs catalog.url = \"postgres://user@host:port/database\""
        );
        if let Some(password) = secret_from_env("catalog.password_env", &catalog.password_env)? {
            url = with_password(&url, &password);
        }
        Ok(zhiku_catalog::PostgresSettings {
            url,
            pool_size: catalog.pool_size.max(1),
            timeout: std::time::Duration::from_secs(catalog.timeout_secs.max(1)),
        })
    }

    /// The vector index settings.
    pub fn hnsw(&self) -> zhiku_index::HnswParams {
        zhiku_index::HnswParams {
            m: self.index.hnsw_m,
            ef_construct: self.index.hnsw_ef_construct,
            ef: self.index.hnsw_ef,
        }
    }
}

/// The secret in the environment variable a `*_api_key_env` setting names (`field`), or
/// `None` when the setting is empty; an error names the variable when it is unset.
fn secret_from_env(field: &str, name: &str) -> anyhow::Result<Option<String>> {
    match name.trim() {
        "" => Ok(None),
        name => match std::env::var(name) {
            Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_string())),
            _ => anyhow::bail!(
                "{field} names the environment variable {name}, which is not set (or empty)"
            ),
        },
    }
}

/// `url` with `password` as the password of its user (percent-encoded, so any character
/// may appear in it).
fn with_password(url: &str, password: &str) -> String {
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        // user[:old]@host: the configured password wins.
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{scheme}://{user}:{encoded}@{host}{path}")
        }
        None => format!("{scheme}://zhiku:{encoded}@{authority}{path}"),
    }
}

/// Replaces the values of keys that name secrets, at any depth.
fn mask_secrets(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                let key = key.to_ascii_lowercase();
                // Whole words, so `tokenizer_dir` is not a token; and only text, since
                // token counts and limits are numbers, not credentials. A key ending in
                // `_env` (`api_key_env`) names the variable that holds a secret, not it.
                let secret = !key.ends_with("_env")
                    && key.split(['_', '-']).any(|word| {
                        [
                            "key", "keys", "secret", "secrets", "token", "tokens", "password",
                        ]
                        .contains(&word)
                    })
                    && (value.is_str() || value.is_array());
                if secret {
                    *value = toml::Value::String("********".into());
                } else {
                    mask_secrets(value);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
