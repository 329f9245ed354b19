//! `zhiku`: the knowledge-base service and its command-line tools.

mod error;
mod guard;
mod http;
mod ingest_cmd;
mod json_schemas;
mod keys_cmd;
mod openapi;
mod responses;
mod routes;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use zhiku_schemas::{AnswerMode, AskRequest, KbName, SearchMode, SearchRequest};

use zhiku_app::config::{Config, Overrides, Role};
use zhiku_app::services::{Models, Services};

#[derive(Parser)]
#[command(
    name = "zhiku",
    version,
    about = "知库: a retrieval-augmented knowledge base for Chinese and English documents"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// TOML config file (default: ./zhiku.toml if present).
    #[arg(long, global = true, env = "ZHIKU_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Models directory (overrides server.models_dir).
    #[arg(long, global = true)]
    models: Option<PathBuf>,
    /// Log format on stderr: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ZHIKU_LOG_FORMAT")]
    log_format: LogFormat,
}

/// Where a command that can run on a server sends its work.
#[derive(Args)]
struct RemoteArgs {
    /// Send the work to the zhiku server at this URL instead of using the data directory
    /// directly (needed while a server holds it).
    #[arg(long)]
    server: Option<String>,
    /// API key for --server (a write key for the KB, or an admin key).
    #[arg(
        long,
        env = "ZHIKU_API_KEY",
        hide_env_values = true,
        requires = "server"
    )]
    api_key: Option<String>,
}

impl RemoteArgs {
    /// The server to send the work to, if one was named.
    fn remote(&self) -> anyhow::Result<Option<ingest_cmd::Remote>> {
        self.server
            .as_deref()
            .map(|url| ingest_cmd::Remote::new(url, self.api_key.as_deref()))
            .transpose()
    }
}

/// `zhiku serve --role`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ServeRole {
    /// The HTTP API and a job worker.
    All,
    /// The HTTP API; jobs are queued for workers.
    Api,
    /// A job worker.
    Worker,
}

/// Where `zhiku migrate-kb` moves a knowledge base.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MigrateTarget {
    /// The Qdrant cluster of `[store]`.
    Qdrant,
}

/// How logs are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `zhiku config ...`.
#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, then the file, then ZHIKU_*
    /// variables, then flags) as TOML, with secrets masked.
    Show,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Listen address, e.g. 127.0.0.1:8080 (overrides server.addr).
        #[arg(long)]
        addr: Option<String>,
        /// What this process does (overrides server.role): `all` (API and job worker, the
        /// default), `api` (API; jobs go to workers) or `worker` (runs queued jobs). `api`
        /// and `worker` need the PostgreSQL catalog and a Qdrant store.
        #[arg(long, value_enum)]
        role: Option<ServeRole>,
    },
    /// Ingest a directory (recursively) into a knowledge base as a batch job: locally, or
    /// on a running server with --server.
    Ingest {
        /// Directory to import; each file's path relative to it becomes its document id.
        dir: PathBuf,
        /// Knowledge base name.
        #[arg(long)]
        kb: KbName,
        /// Only files whose relative path matches this glob, e.g. '**/*.md'.
        #[arg(long)]
        glob: Option<String>,
        /// Tag every document (repeatable; a value may also list tags separated by commas),
        /// for filtering searches.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Bring the PostgreSQL catalog's schema (`catalog.backend = "postgres"`) up to this
    /// zhiku: applies the migrations it lacks, in order. Safe to run again, and from
    /// several nodes at once; servers refuse to start on an older schema.
    Migrate,
    /// Copy an embedded knowledge base into the Qdrant cluster of `[store]` (url, shards,
    /// replicas) with its vectors, without embedding again; resumable, and checked by
    /// chunk counts and equal exact-search results. With `catalog.backend = "postgres"`,
    /// its documents are then recorded there too. Then serve it with
    /// `store.backend = "qdrant"` (and the PostgreSQL catalog).
    MigrateKb {
        /// Knowledge base name.
        kb: KbName,
        /// Where to: `qdrant` (the only target).
        #[arg(long, value_enum)]
        to: MigrateTarget,
    },
    /// Re-embed a knowledge base with the configured embedding model and switch it over
    /// atomically: locally, or on a running server with --server (whose embedder is the
    /// one used).
    Reindex {
        /// Knowledge base name.
        #[arg(long)]
        kb: KbName,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Search a knowledge base.
    Search {
        /// The query.
        query: String,
        /// Knowledge base name.
        #[arg(long)]
        kb: KbName,
        /// Hits to show.
        #[arg(long)]
        top_k: Option<usize>,
        /// hybrid, dense or keyword.
        #[arg(long, value_parser = zhiku_measure::parse_mode)]
        mode: Option<SearchMode>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a question; the answer streams, then the cited sources are listed.
    Ask {
        /// The question.
        question: String,
        /// Knowledge base name.
        #[arg(long)]
        kb: KbName,
        /// Sampling temperature.
        #[arg(long)]
        temperature: Option<f32>,
        /// Answer length bound in tokens.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Continue this conversation (the id printed after an earlier answer).
        #[arg(long)]
        conversation: Option<String>,
        /// generative, extractive or auto (default: llm.answer_mode).
        #[arg(long, value_parser = zhiku_measure::parse_answer_mode)]
        mode: Option<AnswerMode>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure retrieval quality against judged queries: hit@1, hit@5, MRR@10 and nDCG@10
    /// per search mode and per language tag. A queries file that cannot be used exits 2.
    Eval(zhiku_measure::eval::EvalArgs),
    /// Manage API keys (in the data directory; works while a server runs, which sees
    /// the change on its next request).
    Keys {
        #[command(subcommand)]
        what: keys_cmd::KeysCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Measure ingestion and search speed.
    Bench {
        #[command(subcommand)]
        what: zhiku_measure::bench::BenchCommand,
    },
    /// Print the HTTP API's routes, `METHOD PATH` a line, as the router matches them.
    Routes,
    /// Print the HTTP API's OpenAPI document (also served at /openapi.json).
    Openapi,
    /// Write the JSON Schema of every API type, generated from the same types as the
    /// OpenAPI document, as `<Type>.schema.json`.
    Schemas {
        /// Directory to write to; schema files of types that no longer exist are removed.
        #[arg(long, default_value = "schemas/json")]
        out: PathBuf,
    },
}

fn main() {
    // Before clap and logging: a parser worker speaks a binary protocol on stdout and
    // takes no configuration (see zhiku-sandbox).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(zhiku_app::config::PARSE_WORKER) {
        if let Err(e) = zhiku_sandbox::worker_main(&args[1..]) {
            eprintln!("zhiku {}: {e}", zhiku_app::config::PARSE_WORKER);
            std::process::exit(1);
        }
        return;
    }
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn,ort=warn,qdrant_edge=error"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        // Like a usage error: the queries file given to `zhiku eval` is unusable.
        let unusable_input = e
            .downcast_ref::<zhiku_measure::eval::QueriesError>()
            .is_some();
        std::process::exit(if unusable_input { 2 } else { 1 });
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // These describe the code, not a deployment: no configuration is read.
    match &cli.command {
        Command::Routes => {
            for route in routes::route_table() {
                println!("{} {} {}", route.method, route.path, route.access.as_str());
            }
            return Ok(());
        }
        Command::Openapi => {
            println!("{}", routes::document().to_pretty_json()?);
            return Ok(());
        }
        Command::Schemas { out } => {
            let written = json_schemas::write_json_schemas(out, &routes::document())?;
            eprintln!("wrote {written} schemas to {}", out.display());
            return Ok(());
        }
        _ => {}
    }
    let addr = match &cli.command {
        Command::Serve { addr, .. } => addr.clone(),
        _ => None,
    };
    let role = match &cli.command {
        Command::Serve { role, .. } => role.map(|r| match r {
            ServeRole::All => Role::All,
            ServeRole::Api => Role::Api,
            ServeRole::Worker => Role::Worker,
        }),
        _ => None,
    };
    let overrides = Overrides {
        data_dir: cli.global.data.clone(),
        models_dir: cli.global.models.clone(),
        addr,
        role,
    };
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => serve(config),
        Command::Ingest {
            dir,
            kb,
            glob,
            tags,
            remote,
        } => {
            let server = remote.remote()?;
            if !ingest_cmd::run(config, &dir, &kb, glob.as_deref(), &tags, server.as_ref())? {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Migrate => {
            anyhow::ensure!(
                config.catalog.backend == zhiku_app::config::CatalogBackendChoice::Postgres,
                "zhiku migrate applies to catalog.backend = \"postgres\"; the embedded catalog needs no migration"
            );
            let catalog = zhiku_catalog::PostgresCatalog::connect(&config.postgres()?)?;
            for (version, name) in catalog.migrate()? {
                eprintln!("applied migration {version} ({name})");
            }
            eprintln!(
                "the catalog at {} is at schema version {}",
                catalog.place(),
                catalog.schema_version()?
            );
            Ok(())
        }
        Command::MigrateKb { kb, to } => {
            let MigrateTarget::Qdrant = to;
            let started = std::time::Instant::now();
            let settings = config.qdrant()?;
            // With the PostgreSQL catalog configured, the KB's entries move there too.
            let catalog = match config.catalog.backend {
                zhiku_app::config::CatalogBackendChoice::Postgres => Some(config.postgres()?),
                zhiku_app::config::CatalogBackendChoice::Embedded => None,
            };
            // The source is the KB in the data directory, whatever the backends set.
            let mut config = config;
            config.store.backend = zhiku_app::config::StoreBackendChoice::Embedded;
            config.catalog.backend = zhiku_app::config::CatalogBackendChoice::Embedded;
            let services = Services::load(config, Models::EmbedderOnly, false)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} documents · {elapsed_precise}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = services.migrate_kb(&kb, settings, catalog, &mut |done, all| {
                bar.set_length(all as u64);
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            let (report, recorded) = report?;
            eprintln!(
                "migrated {kb} to Qdrant: {} documents copied ({} chunks), {} already there, {} stray versions removed; checked: chunk counts equal, {} exact searches equal; {:.1} s",
                report.copied,
                report.chunks,
                report.skipped,
                report.strays_removed,
                report.searches_compared,
                started.elapsed().as_secs_f64()
            );
            if let Some(recorded) = recorded {
                eprintln!(
                    "recorded {kb} and its {recorded} documents in the PostgreSQL catalog, versions as they were"
                );
            }
            Ok(())
        }
        Command::Reindex { kb, remote } => {
            let response = match remote.remote()? {
                Some(server) => reindex_remote(&server, &kb)?,
                None => Services::load(config, Models::EmbedderOnly, false)?.reindex(&kb)?,
            };
            eprintln!(
                "reindexed {}: {} documents, {} chunks, {} ({} dims) → {} ({} dims) in {:.1} s",
                kb,
                response.documents,
                response.chunks,
                response.previous_embedder,
                response.previous_dimension,
                response.kb.embedder,
                response.kb.dimension,
                response.elapsed_ms as f64 / 1000.0
            );
            Ok(())
        }
        Command::Search {
            query,
            kb,
            top_k,
            mode,
            json,
        } => {
            let services = Services::load(config, Models::EmbedderOnly, false)?;
            let request = SearchRequest {
                top_k,
                mode,
                ..SearchRequest::new(query)
            };
            let hits = services.search(&kb, &request)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&zhiku_schemas::SearchResponse::new(hits))?
                );
            } else {
                for (i, hit) in hits.iter().enumerate() {
                    let place = hit
                        .heading
                        .as_deref()
                        .map(|h| format!(" › {h}"))
                        .unwrap_or_default();
                    println!(
                        "{}. [{:.4}] {}{place}\n   {}\n",
                        i + 1,
                        hit.score,
                        hit.document_name,
                        one_line(&hit.text, 200)
                    );
                }
            }
            Ok(())
        }
        Command::Ask {
            question,
            kb,
            temperature,
            max_tokens,
            conversation: conversation_id,
            mode,
            json,
        } => {
            let services = Services::load(config, Models::All, false)?;
            let request = AskRequest {
                temperature,
                max_tokens,
                conversation_id,
                answer_mode: mode,
                ..AskRequest::new(question)
            };
            let mut stdout = std::io::stdout();
            let response = services.ask(&kb, &request, &mut |piece: &str| {
                if !json {
                    let _ = write!(stdout, "{piece}");
                    let _ = stdout.flush();
                }
                true
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&response)?);
            } else {
                if !response.grounded {
                    print!("{}", response.answer);
                }
                println!("\n");
                for c in &response.citations {
                    println!(
                        "[{}] {} — {}",
                        c.index,
                        c.document_name,
                        one_line(&c.quote, 120)
                    );
                }
                if !response.context.is_empty() {
                    println!("also given to the model, not cited:");
                    for c in &response.context {
                        println!(
                            "  ({}) {} — {}",
                            c.index,
                            c.document_name,
                            one_line(&c.quote, 120)
                        );
                    }
                }
                println!("\nconversation: {}", response.conversation_id);
            }
            Ok(())
        }
        Command::Eval(args) => zhiku_measure::eval::run(config, args),
        Command::Keys { what } => {
            keys_cmd::run(&zhiku_app::auth::KeyStore::for_config(&config)?, what)
        }
        Command::Bench { what } => zhiku_measure::bench::run(config, what),
        Command::Config {
            what: ConfigCommand::Show,
        } => {
            print!("{}", config.show()?);
            Ok(())
        }
        Command::Routes | Command::Openapi | Command::Schemas { .. } => Ok(()),
    }
}

/// `POST /v1/kbs/{kb}/reindex` on a running server; it answers when done, however long
/// that takes, so there is no client timeout.
fn reindex_remote(
    server: &ingest_cmd::Remote,
    kb: &str,
) -> anyhow::Result<zhiku_schemas::ReindexResponse> {
    let response = server
        .request(reqwest::Method::POST, &format!("/v1/kbs/{kb}/reindex"))
        .send()?;
    anyhow::ensure!(
        response.status().is_success(),
        "reindex failed ({}): {}",
        response.status(),
        response.text().unwrap_or_default()
    );
    Ok(response.json()?)
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Whether every address `addr` names is a loopback address; an address that does not
/// resolve is not.
fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// The API keys, after refusing the one unsafe start: no keys on an address other than
/// loopback without `server.allow_unauthenticated`. Checked before models load, so the
/// refusal is immediate.
fn load_keys(config: &Config) -> anyhow::Result<zhiku_app::auth::Keys> {
    let server = &config.server;
    let loopback = is_loopback(&server.addr);
    let keys = zhiku_app::auth::Keys::load(
        zhiku_app::auth::KeyStore::for_config(config)?,
        !loopback && !server.allow_unauthenticated,
    )?;
    match (keys.count(), loopback, server.allow_unauthenticated) {
        (0, false, false) => anyhow::bail!(
            "refusing to serve on {} without API keys: anyone who can reach it could read, change and delete every knowledge base. \
             Create a key with `zhiku keys create --admin` (or --kb NAME --scope read|write), listen on loopback (127.0.0.1), \
             or set server.allow_unauthenticated = true (ZHIKU_SERVER__ALLOW_UNAUTHENTICATED=true) if something in front of zhiku authenticates",
            server.addr
        ),
        (0, false, true) => tracing::warn!(
            addr = %server.addr,
            "serving WITHOUT API keys beyond loopback (server.allow_unauthenticated = true): anyone who can reach this address has full access"
        ),
        (0, true, _) => tracing::warn!(
            "no API keys: the API is open to every local user; create one with `zhiku keys create` to require keys"
        ),
        (n, _, _) => tracing::info!(keys = n, "API keys required"),
    }
    Ok(keys)
}

fn serve(config: Config) -> anyhow::Result<()> {
    config.check_role()?;
    let addr = config.server.addr.clone();
    let grace = std::time::Duration::from_secs(config.server.shutdown_timeout_secs);
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            config.server.data_dir.display()
        )
    })?;
    let guard = Arc::new(guard::Guard::new(
        &config.server,
        load_keys(&config)?,
        routes::route_table(),
    )?);
    // A worker answers no questions: the LLM stays unloaded.
    let models = match config.server.role {
        Role::Worker => Models::EmbedderOnly,
        Role::All | Role::Api => Models::All,
    };
    tracing::info!(role = ?config.server.role, "starting");
    let services = Arc::new(Services::load(config, models, true)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "zhiku is listening");
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let signalled = {
            let services = services.clone();
            async move {
                shutdown_signal().await;
                tracing::info!(
                    grace_secs = grace.as_secs(),
                    "shutting down: no new connections, finishing requests in flight"
                );
                services
                    .draining
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = stopping_tx.send(true);
            }
        };
        // Retention: at start, then hourly; a day's precision is all it promises.
        {
            let services = services.clone();
            tokio::spawn(async move {
                loop {
                    let s = services.clone();
                    match tokio::task::spawn_blocking(move || s.prune()).await {
                        Ok(Ok((0, 0))) => {}
                        Ok(Ok((jobs, conversations))) => {
                            tracing::info!(jobs, conversations, "pruned past their retention")
                        }
                        Ok(Err(e)) => tracing::warn!("pruning failed: {e}"),
                        Err(e) => tracing::warn!("pruning failed: {e}"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
            });
        }
        // The client address keys the rate limit while no API keys exist.
        let app = routes::router(services.clone(), guard)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(signalled)
            .into_future();
        tokio::pin!(server);
        // In-flight requests get `grace` after the signal; then the rest are dropped
        // (their clients see the connection close; a generation stops at once).
        let mut stopping = stopping;
        tokio::select! {
            result = &mut server => result?,
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("requests still running after the grace period were cut off"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // A running job stops after its current commit and resumes at the next start.
    if let Some(jobs) = &services.jobs
        && !jobs.shutdown_within(grace)
    {
        tracing::warn!(
            "the running job did not reach a commit in time; it resumes from its last one at the next start"
        );
    }
    services.registry.flush_all();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_addresses_are_loopback() {
        for addr in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"] {
            assert!(is_loopback(addr), "{addr}");
        }
        for addr in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:80", "not an address"] {
            assert!(!is_loopback(addr), "{addr}");
        }
    }
}
