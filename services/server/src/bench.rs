//! `zhiku bench`: speed figures that are reproducible from one command.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use zhiku_schemas::{JobState, SearchMode, SearchRequest};

use crate::config::Config;
use crate::services::{Models, Services};

/// What to measure.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Copy the files under PATHS into a scratch directory (COPIES times, as distinct
    /// documents) and import it with a batch job: files/s, MB/s, chunks/s, peak RSS, and the
    /// ratio of end-to-end chunks/s to the raw embedder's chunks/s on the same chunks.
    Ingest {
        /// Directories (or files) to ingest.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How many copies of the corpus to ingest (memory must not grow with it).
        #[arg(long, default_value_t = 1)]
        copies: usize,
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
        BenchCommand::Ingest { paths, copies } => ingest(config, &paths, copies),
        BenchCommand::Search {
            kb,
            queries,
            iterations,
        } => search(config, &kb, queries, iterations),
    }
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Copies the corpus into `dest/copy<k>/<path index>/…`, `copies` times. Directories are
/// listed the way an import job lists them.
fn stage_corpus(paths: &[PathBuf], dest: &Path, copies: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut first = Vec::new();
    for (p, path) in paths.iter().enumerate() {
        let files: Vec<(PathBuf, PathBuf)> = if path.is_dir() {
            let dir = std::fs::canonicalize(path)?;
            zhiku_jobs::source::list(&dir, None)?
                .into_iter()
                .filter_map(|input| match input.source {
                    zhiku_jobs::InputSource::Path(file) => Some((file, input.name.into())),
                    zhiku_jobs::InputSource::Bytes(_) => None,
                })
                .collect()
        } else {
            let name = path.file_name().context("not a file name")?;
            vec![(path.clone(), name.into())]
        };
        for (file, relative) in files {
            for k in 0..copies {
                let target = dest.join(format!("copy{k}/{p}")).join(&relative);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&file, &target)?;
                if k == 0 {
                    first.push(target);
                }
            }
        }
    }
    Ok(first)
}

fn ingest(mut config: Config, paths: &[PathBuf], copies: usize) -> anyhow::Result<()> {
    anyhow::ensure!(copies >= 1, "--copies must be at least 1");
    let scratch = tempfile::tempdir()?;
    let corpus = scratch.path().join("corpus");
    let first_copy = stage_corpus(paths, &corpus, copies)?;
    anyhow::ensure!(!first_copy.is_empty(), "no files found");
    config.server.data_dir = scratch.path().join("data");
    config.jobs.import_roots = vec![corpus.clone()];
    let chunking = config.chunking();
    let services = Services::load(config, Models::EmbedderOnly, true)?;
    let jobs = services.jobs()?;

    // The raw embedder on exactly the chunks of one copy, without the pipeline around it;
    // measured before and after the job, since a single run on a shared machine is noisy.
    let mut inputs = Vec::new();
    for (i, file) in first_copy.iter().enumerate() {
        let bytes = std::fs::read(file)?;
        let name = file.to_string_lossy();
        if let Ok(chunked) = zhiku_ingest::chunk_file(
            &name,
            &i.to_string(),
            None,
            &bytes,
            services.embedder.as_ref(),
            &chunking,
        ) {
            inputs.extend(chunked.records.iter().map(zhiku_ingest::embedding_input));
        }
    }
    let raw = || -> anyhow::Result<f64> {
        let started = Instant::now();
        services.embedder.embed_passages(&inputs)?;
        Ok(inputs.len() as f64 / started.elapsed().as_secs_f64())
    };
    let raw_before = raw()?;

    let started = Instant::now();
    let job = jobs.submit_import("bench", &corpus.to_string_lossy(), None, &[])?;
    let info = loop {
        let info = jobs.get(&job.id)?.context("job vanished")?;
        if info.state.is_finished() {
            break info;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    anyhow::ensure!(
        info.state == JobState::Succeeded,
        "the job ended {:?}: {:?}",
        info.state,
        info.message
    );
    for e in &info.errors {
        eprintln!("skipped {}: [{}] {}", e.name, e.code, e.message);
    }
    let raw_after = raw()?;
    let raw_rate = (raw_before + raw_after) / 2.0;
    let rate = info.chunks_indexed as f64 / secs;

    println!(
        "bench ingest: {} files x {copies} = {} files ({} failed), {:.1} MiB, {} chunks",
        first_copy.len(),
        info.files_total,
        info.files_failed,
        info.bytes as f64 / 1048576.0,
        info.chunks_indexed
    );
    println!(
        "  end to end: {secs:.1} s  {:.2} files/s  {:.3} MB/s  {rate:.1} chunks/s",
        info.files_done as f64 / secs,
        info.bytes as f64 / 1e6 / secs,
    );
    println!(
        "  raw embedder on one copy's {} chunks: {raw_before:.1} chunks/s before the job, {raw_after:.1} after",
        inputs.len()
    );
    println!(
        "  end-to-end / raw embedder chunks/s: {:.2}",
        rate / raw_rate
    );
    if let Some(rss) = rss {
        println!("  peak RSS during the job: {rss:.0} MiB");
    }
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
    let services = Services::load(config, Models::EmbedderOnly, false)?;
    let info = services.kb(kb)?.info();
    println!(
        "bench search: kb {kb} ({} documents, {} chunks), {iterations} searches per mode",
        info.documents, info.chunks
    );
    for mode in [SearchMode::Keyword, SearchMode::Dense, SearchMode::Hybrid] {
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations {
            let request = SearchRequest {
                top_k: Some(10),
                mode: Some(mode),
                ..SearchRequest::new(queries[i % queries.len()].clone())
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
