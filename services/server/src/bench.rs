//! `zhiku bench`: speed figures that are reproducible from one command.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use zhiku_schemas::{SearchMode, SearchRequest};

use crate::collect_files;
use crate::config::Config;
use crate::services::{Models, Services};

/// What to measure.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ingest every file under DIR into a scratch data directory: files/s, chunks/s, and the
    /// ratio of pipeline throughput to the raw embedder on the same chunks.
    Ingest {
        /// Directory (or files) to ingest.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Search latency per mode (p50/p99) against an existing knowledge base.
    Search {
        /// Knowledge base to query.
        #[arg(long)]
        kb: String,
        /// Queries, one per line (default: a built-in bilingual set).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Searches per mode.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
}

/// Runs a benchmark and prints its figures.
pub fn run(config: Config, what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Ingest { paths } => ingest(config, &paths),
        BenchCommand::Search {
            kb,
            queries,
            iterations,
        } => search(config, &kb, queries, iterations),
    }
}

fn ingest(mut config: Config, paths: &[PathBuf]) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    config.server.data_dir = scratch.path().to_path_buf();
    let files = collect_files(paths)?;
    anyhow::ensure!(!files.is_empty(), "no files found");
    let services = Services::load(config, Models::EmbedderOnly)?;
    let kb = "bench";
    let (mut ok, mut failed, mut bytes, mut inputs) = (0usize, 0usize, 0u64, Vec::new());
    let started = Instant::now();
    for file in &files {
        let data = std::fs::read(file)?;
        bytes += data.len() as u64;
        let name = file.to_string_lossy().into_owned();
        let result = services
            .prepare_file(kb, &name, None, &data)
            .and_then(|doc| {
                // Kept to embed exactly the same inputs again without the pipeline around them.
                inputs.extend(
                    doc.points
                        .iter()
                        .map(|(r, _)| zhiku_ingest::embedding_input(r)),
                );
                services.store_prepared(kb, doc)
            });
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                failed += 1;
                eprintln!("skipped {}: {e}", file.display());
            }
        }
    }
    let pipeline = started.elapsed();
    let chunks = inputs.len();
    let raw_started = Instant::now();
    services.embedder.embed_passages(&inputs)?;
    let raw = raw_started.elapsed();

    let secs = pipeline.as_secs_f64();
    println!(
        "bench ingest: {} files ({failed} failed), {:.1} MiB, {chunks} chunks",
        ok + failed,
        bytes as f64 / 1048576.0
    );
    println!(
        "  pipeline: {secs:.2}s  {:.2} files/s  {:.1} chunks/s",
        ok as f64 / secs,
        chunks as f64 / secs
    );
    println!(
        "  raw embedder on the same chunks: {:.2}s  {:.1} chunks/s",
        raw.as_secs_f64(),
        chunks as f64 / raw.as_secs_f64()
    );
    println!(
        "  pipeline / raw embedder throughput: {:.2}",
        raw.as_secs_f64() / secs
    );
    Ok(())
}

const DEFAULT_QUERIES: [&str; 10] = [
    "How do I install a package?",
    "network configuration",
    "how to upgrade the system",
    "SIGKILL",
    "file system permissions",
    "如何安装软件包",
    "网络配置",
    "升级系统",
    "數據備份",
    "用户权限",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn search(
    config: Config,
    kb: &str,
    queries: Option<PathBuf>,
    iterations: usize,
) -> anyhow::Result<()> {
    let queries: Vec<String> = match queries {
        Some(path) => std::fs::read_to_string(&path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => DEFAULT_QUERIES.iter().map(|q| q.to_string()).collect(),
    };
    anyhow::ensure!(!queries.is_empty() && iterations > 0, "nothing to run");
    let services = Services::load(config, Models::EmbedderOnly)?;
    let info = services.kb(kb)?.info();
    println!(
        "bench search: kb {kb} ({} documents, {} chunks), {iterations} searches per mode",
        info.documents, info.chunks
    );
    for mode in [SearchMode::Keyword, SearchMode::Dense, SearchMode::Hybrid] {
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations {
            let request = SearchRequest {
                query: queries[i % queries.len()].clone(),
                top_k: Some(10),
                mode: Some(mode),
            };
            let started = Instant::now();
            services.search(kb, &request)?;
            times.push(started.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {:<8} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            format!("{mode:?}").to_lowercase(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
        );
    }
    Ok(())
}
