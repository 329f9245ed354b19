//! `zhiku eval`: retrieval quality of a knowledge base against a file of judged queries;
//! `zhiku eval answers`: the quality of its answers ([`answers`]).
//!
//! The queries file is JSON Lines, one query per line (blank lines are skipped):
//!
//! ```text
//! {"query": "怎样升级整个系统？", "relevant": ["zh-cn/uptodate.zh-cn.html"], "lang": "zh"}
//! {"query": "Which tool shows a package's files?", "evidence": ["dpkg -L"], "lang": "en"}
//! ```
//!
//! Each line has `query`, exactly one of `relevant` and `evidence`, and optionally a
//! `lang` tag (any string, e.g. `zh`, `en`, `cross`) that groups queries in the report,
//! and `answer`: strings one of which a correct answer contains (for `zhiku eval answers`).
//!
//! When a hit is relevant:
//! - `relevant`: its document id is listed. Each listed document counts once: a later chunk
//!   of a document already found higher up is not relevant again. The ideal ranking puts
//!   min(|relevant|, 10) relevant hits first.
//! - `evidence`: its chunk text contains one of the strings, both compared after
//!   collapsing every run of whitespace to one space and lowercasing ASCII letters. The
//!   query has one answer: only the first such hit is relevant, and the ideal ranking has
//!   one relevant hit.
//!
//! Metrics, each averaged over queries: hit@1 and hit@5 (a relevant hit among the first 1
//! or 5), MRR@10 (1 / rank of the first relevant hit among the first 10, else 0) and
//! nDCG@10 (binary gains, discount 1 / log2(rank + 1), divided by the ideal ranking's DCG).
//! Every mode searches with the service's defaults, through the same code as
//! `POST /v1/kbs/{kb}/search`, asking for `--top-k` hits; a metric whose cutoff exceeds
//! `--top-k` sees only the hits returned. With `--translate` every search also searches
//! the query's translation (`translate: true`), which loads the LLM.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use zhiku_schemas::{KbName, SearchMode, SearchRequest};

use zhiku_app::config::Config;
use zhiku_app::services::{Models, Services};

pub mod answers;

/// What `zhiku eval` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Retrieval: hit@1, hit@5, MRR@10, nDCG@10 per search mode.
    Retrieval,
    /// Answers: correct, cited, faithful, language, no echo, latency per answer mode.
    Answers,
}

/// `zhiku eval` options.
#[derive(Args)]
pub struct EvalArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = Target::Retrieval)]
    pub target: Target,
    /// Knowledge base to evaluate.
    #[arg(long)]
    pub kb: KbName,
    /// Judged queries, JSON Lines: {"query", "relevant": [document ids] or "evidence":
    /// [strings a relevant chunk contains], "lang"?: tag}.
    #[arg(long)]
    pub queries: PathBuf,
    /// Mode to evaluate: hybrid, dense or keyword; repeat for several (default: all three).
    #[arg(long = "mode", value_name = "MODE", value_parser = crate::parse_mode)]
    pub modes: Vec<SearchMode>,
    /// Hits requested per query.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Questions the KB cannot answer, one per line: the report then shows how well
    /// `llm.min_relevance` tells them from the judged (answerable) queries.
    #[arg(long, value_name = "FILE")]
    pub off_topic: Option<PathBuf>,
    /// `answers`: the answer mode to evaluate (generative, extractive or auto); repeat for
    /// several (default: all three).
    #[arg(long = "answer-mode", value_name = "MODE", value_parser = crate::parse_answer_mode)]
    pub answer_modes: Vec<zhiku_schemas::AnswerMode>,
    /// `answers`: answer length bound in tokens.
    #[arg(long, default_value_t = 160)]
    pub max_tokens: u32,
    /// `answers`: evaluate only the first N queries of the file.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Search each query's translation into the KB's other language too, as
    /// `"translate": true` does (loads the LLM).
    #[arg(long)]
    pub translate: bool,
}

/// How the best retrieved similarity separates answerable questions from off-topic ones:
/// the evidence for `llm.min_relevance`, under which `/ask` answers "not found" without
/// calling the model.
#[derive(Debug, Clone, Serialize)]
pub struct RelevanceReport {
    /// The configured `llm.min_relevance`.
    pub threshold: f32,
    /// Best dense similarity among the chunks `/ask` retrieves, per answerable query,
    /// ascending.
    pub answerable: Vec<f32>,
    /// The same for each off-topic question, ascending.
    pub off_topic: Vec<f32>,
    /// Answerable queries the threshold would turn away.
    pub answerable_refused: usize,
    /// Off-topic questions the threshold turns away.
    pub off_topic_refused: usize,
}

/// A queries file that cannot be used. `zhiku` exits with status 2 on it.
#[derive(Debug, thiserror::Error)]
pub enum QueriesError {
    /// The file cannot be read.
    #[error("cannot read queries file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// One line is malformed.
    #[error("queries file {path}, line {line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// No line holds a query.
    #[error("queries file {path} holds no queries")]
    Empty {
        /// The file.
        path: String,
    },
}

/// What makes a hit relevant to a query (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Ids of the documents that answer the query, without repeats.
    Relevant(Vec<String>),
    /// Strings, already [`normalize`]d, of which a relevant chunk contains at least one.
    Evidence(Vec<String>),
}

impl Judgement {
    /// How many relevant hits the ideal ranking has (before the nDCG cutoff).
    pub fn ideal_hits(&self) -> usize {
        match self {
            Judgement::Relevant(ids) => ids.len(),
            Judgement::Evidence(_) => 1,
        }
    }

    /// Which hits, given as `(document_id, chunk text)` in rank order, are relevant.
    pub fn relevance<'a>(&self, hits: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<bool> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut answered = false;
        hits.into_iter()
            .map(|(document_id, text)| match self {
                Judgement::Relevant(ids) => {
                    ids.iter().any(|id| id == document_id) && seen.insert(document_id)
                }
                Judgement::Evidence(evidence) => {
                    let relevant = !answered && contains_any(&normalize(text), evidence);
                    answered |= relevant;
                    relevant
                }
            })
            .collect()
    }
}

/// One judged query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// 1-based line in the queries file.
    pub line: usize,
    /// The query text.
    pub text: String,
    /// The optional group tag.
    pub lang: Option<String>,
    /// What counts as relevant.
    pub judgement: Judgement,
    /// Strings, already [`normalize`]d, one of which a correct answer contains (empty when
    /// the line gives none).
    pub answers: Vec<String>,
}

/// A line of the queries file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    query: String,
    #[serde(default)]
    relevant: Option<Vec<String>>,
    #[serde(default)]
    evidence: Option<Vec<String>>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    answer: Option<Vec<String>>,
}

/// Text as evidence is compared: whitespace runs collapsed to one space, trimmed, ASCII
/// letters lowercased (other scripts are left alone).
pub fn normalize(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

fn contains_any(normalized_text: &str, evidence: &[String]) -> bool {
    evidence
        .iter()
        .any(|e| normalized_text.contains(e.as_str()))
}

/// Parses a queries file's text; an error names the 1-based line and what is wrong.
pub fn parse_queries(text: &str) -> Result<Vec<Query>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut queries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        queries.push(parse_line(i + 1, raw).map_err(|message| (i + 1, message))?);
    }
    Ok(queries)
}

fn parse_line(number: usize, raw: &str) -> Result<Query, String> {
    let line: Line = serde_json::from_str(raw).map_err(|e| {
        format!("expected {{\"query\", \"relevant\" or \"evidence\", \"lang\"?}}: {e}")
    })?;
    let text = line.query.trim();
    if text.is_empty() {
        return Err("\"query\" is empty".into());
    }
    let lang = match line.lang {
        Some(lang) if lang.trim().is_empty() => return Err("\"lang\" is empty".into()),
        lang => lang.map(|l| l.trim().to_string()),
    };
    let judgement = match (line.relevant, line.evidence) {
        (Some(ids), None) => Judgement::Relevant(distinct(
            "relevant",
            ids.iter().map(|id| id.trim().to_string()),
        )?),
        (None, Some(evidence)) => {
            Judgement::Evidence(distinct("evidence", evidence.iter().map(|e| normalize(e)))?)
        }
        (Some(_), Some(_)) => {
            return Err("has both \"relevant\" and \"evidence\"; give one".into());
        }
        (None, None) => {
            return Err("needs \"relevant\" (document ids) or \"evidence\" (strings a relevant chunk contains)".into());
        }
    };
    let answers = match line.answer {
        Some(answers) => distinct("answer", answers.iter().map(|a| normalize(a)))?,
        None => Vec::new(),
    };
    Ok(Query {
        line: number,
        text: text.to_string(),
        lang,
        judgement,
        answers,
    })
}

/// The values of list `key` without repeats; an error if it is empty or holds an empty
/// string.
fn distinct(key: &str, values: impl Iterator<Item = String>) -> Result<Vec<String>, String> {
    let mut unique: Vec<String> = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err(format!("\"{key}\" holds an empty string"));
        }
        if !unique.contains(&value) {
            unique.push(value);
        }
    }
    if unique.is_empty() {
        return Err(format!("\"{key}\" is empty"));
    }
    Ok(unique)
}

/// Reads and parses a queries file.
pub fn load_queries(path: &Path) -> Result<Vec<Query>, QueriesError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| QueriesError::Read {
        path: shown.clone(),
        source,
    })?;
    let queries = parse_queries(&text).map_err(|(line, message)| QueriesError::Line {
        path: shown.clone(),
        line,
        message,
    })?;
    if queries.is_empty() {
        return Err(QueriesError::Empty { path: shown });
    }
    Ok(queries)
}

/// 1 if a relevant hit is among the first `k`, else 0.
pub fn hit_at(relevant: &[bool], k: usize) -> f64 {
    if relevant.iter().take(k).any(|&r| r) {
        1.0
    } else {
        0.0
    }
}

/// 1-based rank of the first relevant hit.
pub fn first_relevant_rank(relevant: &[bool]) -> Option<usize> {
    relevant.iter().position(|&r| r).map(|i| i + 1)
}

/// 1 / rank of the first relevant hit among the first `k`, else 0.
pub fn reciprocal_rank(relevant: &[bool], k: usize) -> f64 {
    match first_relevant_rank(relevant) {
        Some(rank) if rank <= k => 1.0 / rank as f64,
        _ => 0.0,
    }
}

/// Normalised discounted cumulative gain at `k` with binary gains: the DCG of the first
/// `k` hits over that of a ranking with min(`ideal_hits`, `k`) relevant hits first.
pub fn ndcg(relevant: &[bool], ideal_hits: usize, k: usize) -> f64 {
    let discount = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let ideal: f64 = (0..ideal_hits.min(k)).map(discount).sum();
    if ideal == 0.0 {
        return 0.0;
    }
    let dcg: f64 = relevant
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| discount(i))
        .sum();
    dcg / ideal
}

/// One query's metrics, or their means over a group of queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    /// A relevant hit first.
    pub hit_at_1: f64,
    /// A relevant hit among the first 5.
    pub hit_at_5: f64,
    /// Reciprocal rank of the first relevant hit, within 10.
    pub mrr_at_10: f64,
    /// nDCG over the first 10 hits.
    pub ndcg_at_10: f64,
}

impl Scores {
    /// The metrics of one ranked list of relevance flags.
    pub fn of(relevant: &[bool], ideal_hits: usize) -> Self {
        Self {
            hit_at_1: hit_at(relevant, 1),
            hit_at_5: hit_at(relevant, 5),
            mrr_at_10: reciprocal_rank(relevant, 10),
            ndcg_at_10: ndcg(relevant, ideal_hits, 10),
        }
    }
}

/// Mean metrics of a group of queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Queries in the group.
    pub queries: usize,
    /// Their mean metrics.
    #[serde(flatten)]
    pub means: Scores,
}

impl Summary {
    /// Means over `scores` (all zero for none).
    pub fn of<'a>(scores: impl IntoIterator<Item = &'a Scores>) -> Self {
        let mut n = 0;
        let mut sum = Scores::default();
        for s in scores {
            n += 1;
            sum.hit_at_1 += s.hit_at_1;
            sum.hit_at_5 += s.hit_at_5;
            sum.mrr_at_10 += s.mrr_at_10;
            sum.ndcg_at_10 += s.ndcg_at_10;
        }
        let mean = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
        Self {
            queries: n,
            means: Scores {
                hit_at_1: mean(sum.hit_at_1),
                hit_at_5: mean(sum.hit_at_5),
                mrr_at_10: mean(sum.mrr_at_10),
                ndcg_at_10: mean(sum.ndcg_at_10),
            },
        }
    }
}

/// One query's outcome in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    /// Line in the queries file.
    pub line: usize,
    /// Group tag.
    pub lang: Option<String>,
    /// The query text.
    pub query: String,
    /// With `--translate`: the translation searched besides the query, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translated_query: Option<String>,
    /// Rank of the first relevant hit among the `top_k` returned.
    pub first_relevant_rank: Option<usize>,
    /// Its metrics.
    #[serde(flatten)]
    pub scores: Scores,
}

/// The results of one mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// The mode.
    pub mode: SearchMode,
    /// Means over every query.
    pub overall: Summary,
    /// Means per `lang` tag (untagged queries only count in `overall`).
    pub by_lang: BTreeMap<String, Summary>,
    /// Each query, in file order.
    pub per_query: Vec<QueryResult>,
}

/// What `zhiku eval --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Knowledge base evaluated.
    pub kb: KbName,
    /// The embedding model that built it.
    pub embedder: String,
    /// Documents in it.
    pub documents: usize,
    /// Chunks in it.
    pub chunks: usize,
    /// Queries evaluated.
    pub queries: usize,
    /// Hits requested per query.
    pub top_k: usize,
    /// Whether queries were searched with their translations (`--translate`).
    pub translate: bool,
    /// Lines of queries that no chunk of the KB can answer (no chunk holds their evidence,
    /// or none of their documents is in the KB); they count as misses.
    pub unanswerable: Vec<usize>,
    /// The relevance floor's evidence, with `--off-topic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevance: Option<RelevanceReport>,
    /// One entry per mode, in the order asked for.
    pub modes: Vec<ModeReport>,
}

/// Runs `zhiku eval`: prints the report as a table, or as JSON with `--json`.
pub fn run(config: Config, args: EvalArgs) -> anyhow::Result<()> {
    // The file is checked before any model is loaded.
    let queries = load_queries(&args.queries)?;
    if args.target == Target::Answers {
        return answers::run(config, &args, queries);
    }
    let mut modes: Vec<SearchMode> = Vec::new();
    for mode in args.modes {
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    if modes.is_empty() {
        modes = vec![SearchMode::Hybrid, SearchMode::Dense, SearchMode::Keyword];
    }
    let models = if args.translate {
        Models::All
    } else {
        Models::EmbedderOnly
    };
    let services = Services::load(config, models, false)?;
    let kb = services.kb(&args.kb)?;
    let info = kb.info();
    let chunks = kb.view().chunks()?;
    let unanswerable = unanswerable(&queries, &chunks, &args.kb);

    let mut reports = Vec::with_capacity(modes.len());
    for mode in modes {
        let mut per_query = Vec::with_capacity(queries.len());
        for query in &queries {
            let request = SearchRequest {
                top_k: Some(args.top_k),
                mode: Some(mode),
                translate: Some(args.translate),
                ..SearchRequest::new(query.text.clone())
            };
            let (hits, translated_query) = services
                .search_translated(&args.kb, &request)
                .map_err(|e| anyhow::anyhow!("query on line {}: {e}", query.line))?;
            let relevant = query.judgement.relevance(
                hits.iter()
                    .map(|h| (h.document_id.as_str(), h.text.as_str())),
            );
            per_query.push(QueryResult {
                line: query.line,
                lang: query.lang.clone(),
                query: query.text.clone(),
                translated_query,
                first_relevant_rank: first_relevant_rank(&relevant),
                scores: Scores::of(&relevant, query.judgement.ideal_hits()),
            });
        }
        let mut tags: BTreeMap<String, Vec<Scores>> = BTreeMap::new();
        for result in &per_query {
            if let Some(lang) = &result.lang {
                tags.entry(lang.clone()).or_default().push(result.scores);
            }
        }
        reports.push(ModeReport {
            mode,
            overall: Summary::of(per_query.iter().map(|r| &r.scores)),
            by_lang: tags
                .iter()
                .map(|(tag, scores)| (tag.clone(), Summary::of(scores)))
                .collect(),
            per_query,
        });
    }
    let relevance = match &args.off_topic {
        Some(path) => Some(relevance(&services, &args.kb, &queries, path)?),
        None => None,
    };
    let report = Report {
        relevance,
        kb: args.kb,
        embedder: info.embedder,
        documents: info.documents,
        chunks: info.chunks,
        queries: queries.len(),
        top_k: args.top_k,
        translate: args.translate,
        unanswerable,
        modes: reports,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// Lines of the queries that no chunk can answer, each explained on stderr; also warns
/// about listed documents that are not in the KB.
/// Best dense similarity of the chunks `/ask` would retrieve for a question.
fn best_similarity(services: &Services, kb: &KbName, question: &str) -> anyhow::Result<f32> {
    let request = SearchRequest {
        top_k: Some(services.config.llm.context_chunks),
        ..SearchRequest::new(question)
    };
    Ok(services
        .search(kb, &request)?
        .iter()
        .filter_map(|h| h.dense_score)
        .fold(0.0, f32::max))
}

fn relevance(
    services: &Services,
    kb: &KbName,
    queries: &[Query],
    off_topic: &Path,
) -> anyhow::Result<RelevanceReport> {
    let text = std::fs::read_to_string(off_topic)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", off_topic.display()))?;
    let score_all = |questions: Vec<&str>| -> anyhow::Result<Vec<f32>> {
        let mut scores = questions
            .into_iter()
            .map(|q| best_similarity(services, kb, q))
            .collect::<anyhow::Result<Vec<f32>>>()?;
        scores.sort_by(f32::total_cmp);
        Ok(scores)
    };
    let answerable = score_all(queries.iter().map(|q| q.text.as_str()).collect())?;
    let off_topic = score_all(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect(),
    )?;
    let threshold = services.config.llm.min_relevance;
    let refused = |scores: &[f32]| scores.iter().filter(|s| **s < threshold).count();
    Ok(RelevanceReport {
        threshold,
        answerable_refused: refused(&answerable),
        off_topic_refused: refused(&off_topic),
        answerable,
        off_topic,
    })
}

fn unanswerable(queries: &[Query], chunks: &[zhiku_schemas::ChunkRecord], kb: &str) -> Vec<usize> {
    let texts: Vec<String> = chunks.iter().map(|c| normalize(&c.text)).collect();
    let documents: HashSet<&str> = chunks.iter().map(|c| c.document_id.as_str()).collect();
    let mut lines = Vec::new();
    for query in queries {
        let answerable = match &query.judgement {
            Judgement::Relevant(ids) => {
                let missing: Vec<&str> = ids
                    .iter()
                    .map(String::as_str)
                    .filter(|id| !documents.contains(id))
                    .collect();
                if !missing.is_empty() {
                    eprintln!(
                        "warning: line {}: not in kb {kb}: {}",
                        query.line,
                        missing.join(", ")
                    );
                }
                missing.len() < ids.len()
            }
            Judgement::Evidence(evidence) => {
                let found = texts.iter().any(|t| contains_any(t, evidence));
                if !found {
                    eprintln!(
                        "warning: line {}: no chunk of kb {kb} contains any evidence string",
                        query.line
                    );
                }
                found
            }
        };
        if !answerable {
            lines.push(query.line);
        }
    }
    if !lines.is_empty() {
        let shown: Vec<String> = lines.iter().map(usize::to_string).collect();
        eprintln!(
            "warning: kb {kb} cannot answer the queries on lines {}; they count as misses",
            shown.join(", ")
        );
    }
    lines
}

/// The human-readable report: a header line, then one row per mode and tag.
fn table(report: &Report) -> String {
    let mut out = format!(
        "kb {}: {} documents, {} chunks, embedder {}; {} queries, top {}{}\n",
        report.kb,
        report.documents,
        report.chunks,
        report.embedder,
        report.queries,
        report.top_k,
        if report.translate {
            ", with translation"
        } else {
            ""
        }
    );
    if let Some(mode) = report.modes.first().filter(|_| report.translate) {
        let translated = mode
            .per_query
            .iter()
            .filter(|q| q.translated_query.is_some())
            .count();
        out.push_str(&format!(
            "{translated} of {} queries searched with a translation\n",
            mode.per_query.len()
        ));
    }
    let mut rows: Vec<[String; 7]> = vec![[
        "mode".into(),
        "lang".into(),
        "queries".into(),
        "hit@1".into(),
        "hit@5".into(),
        "MRR@10".into(),
        "nDCG@10".into(),
    ]];
    for mode in &report.modes {
        let name = format!("{:?}", mode.mode).to_lowercase();
        let groups = std::iter::once(("all", &mode.overall))
            .chain(mode.by_lang.iter().map(|(tag, s)| (tag.as_str(), s)));
        for (tag, summary) in groups {
            let m = &summary.means;
            rows.push([
                name.clone(),
                tag.to_string(),
                summary.queries.to_string(),
                format!("{:.3}", m.hit_at_1),
                format!("{:.3}", m.hit_at_5),
                format!("{:.3}", m.mrr_at_10),
                format!("{:.3}", m.ndcg_at_10),
            ]);
        }
    }
    if let Some(r) = &report.relevance {
        let span = |s: &[f32]| match (s.first(), s.get(s.len() / 2), s.last()) {
            (Some(lo), Some(mid), Some(hi)) => format!("min {lo:.3}, median {mid:.3}, max {hi:.3}"),
            _ => "none".to_string(),
        };
        out.push_str(&format!(
            "best similarity of the retrieved chunks: answerable {} ({}); off-topic {} ({})\n\
             llm.min_relevance {:.3} refuses {} of {} answerable and {} of {} off-topic questions\n",
            r.answerable.len(),
            span(&r.answerable),
            r.off_topic.len(),
            span(&r.off_topic),
            r.threshold,
            r.answerable_refused,
            r.answerable.len(),
            r.off_topic_refused,
            r.off_topic.len(),
        ));
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            // Text columns are left-aligned, numbers right-aligned.
            .map(|(i, (cell, w))| {
                if i < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
