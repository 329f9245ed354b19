//! `zhiku bench`: speed figures that are reproducible from one command.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use zhiku_index::DocumentWrite;
use zhiku_schemas::{ChunkRecord, DocumentInfo, JobState, KbName, SearchMode, SearchRequest};

use zhiku_app::config::Config;
use zhiku_app::services::{Models, Services};

mod generate;
mod workers;

/// What to measure.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Copy the files under PATHS into a scratch directory (COPIES times, as distinct
    /// documents) and import it with a batch job: files/s, MB/s, chunks/s, peak RSS, the
    /// ratio of end-to-end chunks/s to the raw embedder's chunks/s on the same chunks
    /// (of the files that need no OCR), and for scans and images the OCR pages/s and
    /// OCR's share of the time.
    Ingest {
        /// Directories (or files) to ingest.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How many copies of the corpus to ingest (memory must not grow with it).
        #[arg(long, default_value_t = 1)]
        copies: usize,
    },
    /// Build a knowledge base of exactly SIZE chunks from a JSON-lines corpus (one chunk per
    /// line: {"document", "heading", "text"}; `deploy/dev/corpus-laws.sh` makes one), for
    /// search benchmarks at a chosen scale. Each distinct line is embedded once (cached in
    /// the data directory); beyond the corpus size, lines repeat as further copies of their
    /// documents with their vectors slightly perturbed, so every point is distinct.
    Load {
        /// Knowledge base to create (must not exist).
        #[arg(long)]
        kb: KbName,
        /// The corpus, JSON lines.
        #[arg(long)]
        chunks: PathBuf,
        /// Chunks to store.
        #[arg(long)]
        size: usize,
    },
    /// Search latency per mode (p50/p99) against an existing knowledge base.
    Search {
        /// Knowledge base to query.
        #[arg(long)]
        kb: KbName,
        /// Queries, one per line (default: a built-in bilingual set).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Searches per mode.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Also measure recall@10 of the dense (HNSW) index against exact search, per query.
        #[arg(long)]
        recall: bool,
        /// Also measure the CPU time of the costliest queries the limits let through:
        /// `search.max_query_terms` distinct terms taken from the KB's own text (long
        /// posting lists), and `search.max_query_chars` characters of it.
        #[arg(long)]
        worst_case: bool,
    },
    /// Answer generation through the service's path (grounded prompt, chat template,
    /// `Generator::generate`), greedy with a fixed answer budget: prompt tokens/s, generation
    /// tokens/s and time to first token per concurrency level; at concurrency 1 also
    /// llama.cpp's own benchmark loop (llama-bench's pp and tg tests) on the same model and
    /// settings, run alternately with it, and the ratio of the two.
    Generate(generate::GenerateArgs),
    /// Ingestion with separate worker processes (`serve --role worker`, one embedding
    /// thread each) over the configured PostgreSQL catalog and Qdrant: each subdirectory
    /// of DIR is one import job, run with each worker count in turn (a fresh KB each
    /// time); chunks/s and the speed-up over the first count.
    Workers {
        /// Directory whose subdirectories become one job each.
        dir: PathBuf,
        /// Worker counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
    },
}

/// Runs a benchmark and prints its figures.
pub fn run(config: Config, what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Ingest { paths, copies } => ingest(config, &paths, copies),
        BenchCommand::Load { kb, chunks, size } => load(config, &kb, &chunks, size),
        BenchCommand::Search {
            kb,
            queries,
            iterations,
            recall,
            worst_case,
        } => search(config, &kb, queries, iterations, recall, worst_case),
        BenchCommand::Generate(args) => generate::run(config, &args),
        BenchCommand::Workers { dir, workers } => workers::run(config, &dir, &workers),
    }
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU ticks of this process and of its living children (the parser workers): the time
/// they ran themselves, and the time of the processes they waited for (the OCR tools,
/// started by a worker or, with `parser_processes = 0`, by this process).
fn cpu_ticks() -> Option<(u64, u64)> {
    let (_, mut own, mut waited) = stat_ticks(Path::new("/proc/self/stat"))?;
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        if let Some((parent, o, w)) = stat_ticks(&entry.path().join("stat"))
            && parent == me
        {
            own += o;
            waited += w;
        }
    }
    Some((own, waited))
}

/// A process's parent, its own CPU ticks and those of the children it waited for.
fn stat_ticks(stat: &Path) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name, which may itself hold spaces: state is field 3, the
    // parent 4, utime, stime, cutime and cstime are fields 14 to 17.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    let ticks: Vec<u64> = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = ticks[..] else {
        return None;
    };
    Some((parent, utime + stime, cutime + cstime))
}

/// Copies the corpus into `dest/copy<k>/<path index>/…`, `copies` times. Directories are
/// listed the way an import job lists them.
fn stage_corpus(paths: &[PathBuf], dest: &Path, copies: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut first = Vec::new();
    for (p, path) in paths.iter().enumerate() {
        let files: Vec<(PathBuf, PathBuf)> = if path.is_dir() {
            let dir = std::fs::canonicalize(path)?;
            zhiku_jobs::source::list(&KbName::new("bench")?, &dir, None)?
                .into_iter()
                .filter_map(|input| match input.source {
                    zhiku_jobs::InputSource::Path(file)
                    | zhiku_jobs::InputSource::Confined { path: file, .. } => {
                        Some((file, input.name.into()))
                    }
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
    // Text that only OCR reads is left out: it is not known before the job.
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
        if inputs.is_empty() {
            return Ok(f64::NAN);
        }
        let started = Instant::now();
        services.embedder.embed_passages(&inputs)?;
        Ok(inputs.len() as f64 / started.elapsed().as_secs_f64())
    };
    let raw_before = raw()?;

    let started = Instant::now();
    let cpu_before = cpu_ticks();
    let job = jobs.submit_import(&KbName::new("bench")?, &corpus.to_string_lossy(), None, &[])?;
    let info = loop {
        let info = jobs.get(&job.id)?.context("job vanished")?;
        if info.state.is_finished() {
            break info;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks();
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
    if !inputs.is_empty() {
        println!(
            "  raw embedder on one copy's {} chunks: {raw_before:.1} chunks/s before the job, {raw_after:.1} after",
            inputs.len()
        );
        println!(
            "  end-to-end / raw embedder chunks/s: {:.2}",
            rate / raw_rate
        );
    }
    let ocr = info.ocr;
    if ocr.pages_total > 0 {
        println!(
            "  OCR: {} pages or images ({} failed); OCR running {:.1} s of {secs:.1} s ({:.0}% of the ingest time): {:.3} pages/s",
            ocr.pages_done,
            ocr.pages_failed,
            ocr.busy_seconds,
            100.0 * ocr.busy_seconds / secs,
            ocr.pages_done as f64 / ocr.busy_seconds.max(1e-9),
        );
        if let (Some((own0, kids0)), Some((own1, kids1))) = (cpu_before, cpu_after) {
            let (own, kids) = (own1 - own0, kids1 - kids0);
            println!(
                "  OCR share of the job's CPU time (tesseract and pdftoppm vs everything else): {:.0}%",
                100.0 * kids as f64 / (own + kids).max(1) as f64
            );
        }
    }
    if let Some(rss) = rss {
        println!("  peak RSS during the job: {rss:.0} MiB");
    }
    Ok(())
}

/// One line of a `bench load` corpus.
#[derive(serde::Deserialize)]
struct CorpusLine {
    document: String,
    #[serde(default)]
    heading: Option<String>,
    text: String,
}

/// Standard deviation of the per-dimension noise that makes repeated copies distinct:
/// a copy keeps cosine ≈ 0.98 with its original, like a lightly revised document.
const COPY_NOISE: f32 = 0.01;

/// Chunks per store write while loading.
const LOAD_BATCH: usize = 5000;

fn load(config: Config, kb: &KbName, corpus: &Path, size: usize) -> anyhow::Result<()> {
    anyhow::ensure!(size > 0, "--size must be positive");
    let text = std::fs::read_to_string(corpus)
        .with_context(|| format!("cannot read {}", corpus.display()))?;
    let lines: Vec<CorpusLine> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", corpus.display(), i + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!lines.is_empty(), "{} holds no chunks", corpus.display());
    let data_dir = config.server.data_dir.clone();
    let services = Services::load(config, Models::EmbedderOnly, false)?;
    anyhow::ensure!(
        services.registry.get(kb)?.is_none(),
        "knowledge base {kb:?} already exists"
    );
    let embedder = services.embedder.clone();
    // Chunk index of each line within its document, in corpus order.
    let mut next_index: std::collections::HashMap<&str, u32> = Default::default();
    let records: Vec<ChunkRecord> = lines
        .iter()
        .map(|line| {
            let index = next_index.entry(&line.document).or_default();
            let record = ChunkRecord {
                chunk_id: String::new(),
                document_id: line.document.clone(),
                document_name: line.document.clone(),
                chunk_index: *index,
                text: line.text.clone(),
                heading: line.heading.clone(),
                page: None,
                ocr: false,
                ocr_confidence: None,
                version: 0,
                // Set from the document by the store write.
                tags: Vec::new(),
                path: String::new(),
                mime: String::new(),
            };
            *index += 1;
            record
        })
        .collect();
    let vectors = corpus_vectors(&data_dir, corpus, &text, &records, embedder.as_ref())?;

    let store = services
        .registry
        .get_or_create(kb, embedder.name(), embedder.dimension())?;
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(size as u64).with_message("storing");
    let mut pending: Vec<DocumentWrite> = Vec::new();
    let mut pending_chunks = 0;
    let mut noise = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..size {
        let (copy, line) = (i / records.len(), i % records.len());
        let mut record = records[line].clone();
        let mut vector = vectors[line].clone();
        if copy > 0 {
            record.document_id = format!("{}~{copy}", record.document_id);
            for x in &mut vector {
                *x += COPY_NOISE * gaussian(&mut noise);
            }
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        record.chunk_id = ChunkRecord::make_id(&record.document_id, record.chunk_index);
        match pending.last_mut() {
            Some(doc) if doc.document.id == record.document_id => {
                doc.document.chunks += 1;
                doc.points.push((record, vector));
            }
            _ => {
                // Writes end at document boundaries: writing part of a document again
                // would replace the part written before.
                if pending_chunks >= LOAD_BATCH {
                    store.write(std::mem::take(&mut pending), Default::default())?;
                    bar.set_position(i as u64);
                    pending_chunks = 0;
                }
                pending.push(DocumentWrite {
                    document: DocumentInfo {
                        id: record.document_id.clone(),
                        name: record.document_name.clone(),
                        chunks: 1,
                        status: zhiku_schemas::DocumentStatus::Indexed,
                        reason: None,
                        ocr_pages: Vec::new(),
                        format: Some("text/plain".into()),
                        hash: String::new(),
                        size: 0,
                        version: 0,
                        created_at: String::new(),
                        updated_at: String::new(),
                        tags: Vec::new(),
                        path: record.document_id.clone(),
                    },
                    points: vec![(record, vector)],
                });
            }
        }
        pending_chunks += 1;
    }
    store.write(pending, Default::default())?;
    bar.finish_and_clear();
    let info = store.info();
    anyhow::ensure!(
        info.chunks == size,
        "stored {} chunks, not {size}",
        info.chunks
    );
    println!(
        "bench load: kb {kb}: {} chunks in {} documents ({} distinct lines) stored in {:.1} s",
        info.chunks,
        info.documents,
        records.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A standard normal sample from a xorshift state (Box–Muller): deterministic noise
/// without a dependency.
fn gaussian(state: &mut u64) -> f32 {
    let mut uniform = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (u, v) = (uniform(), uniform());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// The embedding of every corpus line, from the cache in the data directory if this
/// corpus was embedded by this model before; embedding 26k chunks takes minutes.
fn corpus_vectors(
    data_dir: &Path,
    corpus: &Path,
    text: &str,
    records: &[ChunkRecord],
    embedder: &dyn zhiku_embed::Embedder,
) -> anyhow::Result<Vec<Vec<f32>>> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let cache = data_dir
        .join("bench-cache")
        .join(format!("{}-{key}.f32", embedder.name()));
    let dim = embedder.dimension();
    if let Ok(bytes) = std::fs::read(&cache)
        && bytes.len() == records.len() * dim * 4
    {
        return Ok(bytes
            .chunks_exact(dim * 4)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect());
    }
    eprintln!(
        "embedding {} distinct chunks of {} with {} (cached afterwards)",
        records.len(),
        corpus.display(),
        embedder.name()
    );
    let bar = indicatif::ProgressBar::new(records.len() as u64);
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(records.len());
    for batch in records.chunks(64) {
        let inputs: Vec<String> = batch.iter().map(zhiku_ingest::embedding_input).collect();
        vectors.extend(embedder.embed_passages(&inputs)?);
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!(
        "embedded at {:.1} chunks/s",
        records.len() as f64 / started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(cache.parent().context("cache dir")?)?;
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&cache, bytes)?;
    Ok(vectors)
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
    kb: &KbName,
    queries: Option<PathBuf>,
    iterations: usize,
    recall: bool,
    worst_case: bool,
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
    if worst_case {
        worst_case_cpu(&services, kb, &queries)?;
    }
    if recall {
        let (mean, worst) = dense_recall(&services, kb, &queries, 10)?;
        println!(
            "  dense recall@10 vs exact search: mean {mean:.4}, worst query {worst:.2} ({} queries; hnsw m {}, ef_construct {}, ef {})",
            queries.len(),
            services.config.index.hnsw_m,
            services.config.index.hnsw_ef_construct,
            services.config.index.hnsw_ef
        );
    }
    Ok(())
}

/// CPU time of searches with the longest queries the limits accept, per mode: the bound
/// that keeps one request from pinning a core. The queries are made of the KB's own words
/// (from the top hits of `queries`), so every term has postings to score.
fn worst_case_cpu(services: &Services, kb: &KbName, queries: &[String]) -> anyhow::Result<()> {
    let limits = &services.config.search;
    let mut texts: Vec<String> = Vec::new();
    for query in queries {
        let request = SearchRequest {
            top_k: Some(limits.max_top_k),
            mode: Some(SearchMode::Keyword),
            ..SearchRequest::new(query.clone())
        };
        texts.extend(services.search(kb, &request)?.into_iter().map(|h| h.text));
    }
    // Distinct terms, as many as allowed (and as fit in the character limit).
    let mut seen = std::collections::HashSet::new();
    let mut many_terms = String::new();
    'texts: for text in &texts {
        for term in zhiku_index::analyzer::terms(text) {
            if seen.len() >= limits.max_query_terms {
                break 'texts;
            }
            if many_terms.chars().count() + term.chars().count() + 1 > limits.max_query_chars {
                break 'texts;
            }
            if seen.insert(term.clone()) {
                many_terms.push_str(&term);
                many_terms.push(' ');
            }
        }
    }
    // Shortened from the end until its distinct terms fit the limit (terms joined or cut
    // anew can segment into a few more).
    let distinct = |q: &str| {
        zhiku_index::analyzer::terms(q)
            .into_iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let fit = |mut query: String| {
        while distinct(&query) > limits.max_query_terms {
            let keep = query.chars().count() * 99 / 100;
            query = query.chars().take(keep).collect();
        }
        query
    };
    let many_terms = fit(many_terms);
    // The most characters allowed.
    let long = fit(texts
        .concat()
        .chars()
        .take(limits.max_query_chars)
        .collect());
    let cases = [
        (
            format!("{} distinct terms", distinct(&many_terms)),
            many_terms,
        ),
        (format!("{} characters", long.chars().count()), long),
    ];
    let tick = 1.0 / 100.0; // /proc/self/stat counts in USER_HZ, 100 on Linux.
    let mut worst: f64 = 0.0;
    for (what, query) in &cases {
        for mode in [SearchMode::Keyword, SearchMode::Dense, SearchMode::Hybrid] {
            let request = SearchRequest {
                top_k: Some(10),
                mode: Some(mode),
                ..SearchRequest::new(query.clone())
            };
            let mut cpu: Vec<f64> = Vec::new();
            let mut wall: Vec<f64> = Vec::new();
            for _ in 0..5 {
                let (before, started) = (cpu_ticks(), Instant::now());
                services.search(kb, &request)?;
                wall.push(started.elapsed().as_secs_f64());
                if let (Some((a, _)), Some((b, _))) = (before, cpu_ticks()) {
                    cpu.push((b - a) as f64 * tick);
                }
            }
            let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
            worst = worst.max(max(&cpu));
            println!(
                "  worst case {what:<22} {:<8} CPU max {:.2} s  wall max {:.2} s (5 searches)",
                format!("{mode:?}").to_lowercase(),
                max(&cpu),
                max(&wall)
            );
        }
    }
    println!("  worst-case search CPU: {worst:.2} s at most (target: 1 s)");
    Ok(())
}

/// Mean and worst recall@k of the HNSW search against brute force: the share of each
/// query's exact top k that the index also returns.
fn dense_recall(
    services: &Services,
    kb: &KbName,
    queries: &[String],
    k: usize,
) -> anyhow::Result<(f64, f64)> {
    let kb = services.kb(kb)?;
    let view = kb.view();
    let mut recalls = Vec::with_capacity(queries.len());
    for query in queries {
        let vector = services.embedder.embed_query(query)?;
        let exact: std::collections::HashSet<String> = view
            .dense_search_exact(&vector, k)?
            .into_iter()
            .map(|(c, _)| c.chunk_id)
            .collect();
        if exact.is_empty() {
            continue;
        }
        let found = view
            .dense_search(&vector, k, None)?
            .into_iter()
            .filter(|(c, _)| exact.contains(&c.chunk_id))
            .count();
        recalls.push(found as f64 / exact.len() as f64);
    }
    anyhow::ensure!(!recalls.is_empty(), "no query had any neighbour");
    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    Ok((mean, recalls.iter().copied().fold(1.0, f64::min)))
}
