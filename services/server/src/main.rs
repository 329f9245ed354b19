//! `zhiku`: the knowledge-base service and its command-line tools.

mod bench;
mod config;
mod conversations;
mod error;
mod eval;
mod http;
mod ingest_cmd;
mod metrics;
mod openai;
mod openapi;
mod services;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use zhiku_schemas::{AskRequest, SearchMode, SearchRequest};

use crate::config::{Config, Overrides};
use crate::services::{Models, Services};

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
    },
    /// Ingest a directory (recursively) into a knowledge base as a batch job: locally, or
    /// on a running server with --server.
    Ingest {
        /// Directory to import; each file's path relative to it becomes its document id.
        dir: PathBuf,
        /// Knowledge base name.
        #[arg(long)]
        kb: String,
        /// Only files whose relative path matches this glob, e.g. '**/*.md'.
        #[arg(long)]
        glob: Option<String>,
        /// Tag every document (repeatable; a value may also list tags separated by commas),
        /// for filtering searches.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Send the files to the zhiku server at this URL instead of using the data
        /// directory directly (needed while a server holds it).
        #[arg(long)]
        server: Option<String>,
    },
    /// Re-embed a knowledge base with the configured embedding model and switch it over
    /// atomically: locally, or on a running server with --server.
    Reindex {
        /// Knowledge base name.
        #[arg(long)]
        kb: String,
        /// Ask the zhiku server at this URL to do it (needed while a server holds the
        /// data directory; the server's embedder is the one used).
        #[arg(long)]
        server: Option<String>,
    },
    /// Search a knowledge base.
    Search {
        /// The query.
        query: String,
        /// Knowledge base name.
        #[arg(long)]
        kb: String,
        /// Hits to show.
        #[arg(long)]
        top_k: Option<usize>,
        /// hybrid, dense or keyword.
        #[arg(long, value_parser = parse_mode)]
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
        kb: String,
        /// Sampling temperature.
        #[arg(long)]
        temperature: Option<f32>,
        /// Answer length bound in tokens.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Continue this conversation (the id printed after an earlier answer).
        #[arg(long)]
        conversation: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure retrieval quality against judged queries: hit@1, hit@5, MRR@10 and nDCG@10
    /// per search mode and per language tag. A queries file that cannot be used exits 2.
    Eval(eval::EvalArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Measure ingestion and search speed.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
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

fn parse_mode(s: &str) -> Result<SearchMode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("mode must be hybrid, dense or keyword, not {s:?}"))
}

fn main() {
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
        let unusable_input = e.downcast_ref::<eval::QueriesError>().is_some();
        std::process::exit(if unusable_input { 2 } else { 1 });
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // These describe the code, not a deployment: no configuration is read.
    match &cli.command {
        Command::Routes => {
            for (method, path) in http::route_table() {
                println!("{method} {path}");
            }
            return Ok(());
        }
        Command::Openapi => {
            use utoipa::OpenApi;
            println!("{}", openapi::ApiDoc::openapi().to_pretty_json()?);
            return Ok(());
        }
        Command::Schemas { out } => {
            let written = openapi::write_json_schemas(out)?;
            eprintln!("wrote {written} schemas to {}", out.display());
            return Ok(());
        }
        _ => {}
    }
    let addr = match &cli.command {
        Command::Serve { addr } => addr.clone(),
        _ => None,
    };
    let overrides = Overrides {
        data_dir: cli.global.data.clone(),
        models_dir: cli.global.models.clone(),
        addr,
    };
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => serve(config),
        Command::Ingest {
            dir,
            kb,
            glob,
            tags,
            server,
        } => {
            if !ingest_cmd::run(config, &dir, &kb, glob.as_deref(), &tags, server.as_deref())? {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Reindex { kb, server } => {
            let response = match server {
                Some(url) => reindex_remote(&url, &kb)?,
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
            json,
        } => {
            let services = Services::load(config, Models::All, false)?;
            let request = AskRequest {
                question,
                top_k: None,
                temperature,
                max_tokens,
                top_p: None,
                top_k_tokens: None,
                seed: None,
                stop: Vec::new(),
                prompt: None,
                response_format: None,
                stream: None,
                conversation_id,
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
        Command::Eval(args) => eval::run(config, args),
        Command::Bench { what } => bench::run(config, what),
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
fn reindex_remote(url: &str, kb: &str) -> anyhow::Result<zhiku_schemas::ReindexResponse> {
    let client = reqwest::blocking::Client::builder().timeout(None).build()?;
    let response = client
        .post(format!("{}/v1/kbs/{kb}/reindex", url.trim_end_matches('/')))
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

fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.server.addr.clone();
    let grace = std::time::Duration::from_secs(config.server.shutdown_timeout_secs);
    let services = Arc::new(Services::load(config, Models::All, true)?);
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
        let server = axum::serve(listener, http::router(services.clone()))
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
