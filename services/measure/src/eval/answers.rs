//! `zhiku eval answers`: how good the answers of a knowledge base are, per answer mode,
//! against the `answer` strings of a judged queries file.
//!
//! Every question is asked through the same code as `POST /v1/kbs/{kb}/ask` (retrieval,
//! the "not found" floor, the prompt, generation, citations), greedily (temperature 0),
//! without storing a conversation. Per answer:
//!
//! - **correct**: the answer contains one of the expected strings (compared as evidence
//!   is: whitespace collapsed, ASCII lowercased);
//! - **cited-correct**: it contains an expected string that a source it cites contains too;
//! - **faithful**: every sentence that cites `[n]` shares at least half of its content terms
//!   (words less stopwords, analyzed as the keyword index does) with the sources it cites.
//!   A sentence citing only sources in the other language (a Chinese sentence, English
//!   sources) is judged by its translation into their language, made by the LLM as query
//!   translations are, when the words as written fall short: words are compared within
//!   one language. **faithful-lex** is the same judge without translations. Answers
//!   citing nothing count as faithful, and the table shows how many answers cited
//!   anything;
//! - **language**: the answer is in the question's language (mostly CJK or not);
//! - **no echo**: the answer neither lists the sources (`[n] title` lines, "Sources:") nor
//!   copies a run of [`ECHO_CHARS`] or more characters of one. Extractive answers quote
//!   by design, so their echo is reported but means nothing;
//! - latency (the whole ask, and what came after retrieval) and token counts.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use serde::Serialize;
use zhiku_generate::is_mostly_cjk;
use zhiku_schemas::{AnswerMode, AskRequest, AskResponse, Citation, KbName};

use super::{EvalArgs, Query, normalize};
use zhiku_app::config::Config;
use zhiku_app::services::{Models, Services};

/// Characters copied from one source, in one run, that make an answer an echo.
pub const ECHO_CHARS: usize = 100;

/// One question's answer, judged.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerResult {
    /// Line in the queries file.
    pub line: usize,
    /// Group tag.
    pub lang: Option<String>,
    /// The question.
    pub question: String,
    /// The answer as returned.
    pub answer: String,
    /// How it was made (`auto` reports the mode it fell to).
    pub answer_mode: AnswerMode,
    /// Whether the KB had context to answer from.
    pub grounded: bool,
    /// The judgements.
    #[serde(flatten)]
    pub judged: Judged,
    /// Whole ask, milliseconds.
    pub total_ms: u64,
    /// After retrieval: prompt, generation, citations.
    pub answer_ms: u64,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// The numbered sources the answer was made from, in number order: what to read when
    /// a judgement looks wrong.
    pub sources: Vec<GivenSource>,
}

/// A source given for an answer, as `--json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GivenSource {
    /// Its `[n]`.
    pub index: usize,
    /// Whether the answer cites it.
    pub cited: bool,
    /// The document it comes from.
    pub document: String,
    /// The chunk's text.
    pub text: String,
}

/// The judgements of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Judged {
    /// Contains an expected string.
    pub correct: bool,
    /// Contains an expected string that a cited source contains.
    pub cited_correct: bool,
    /// Cites at least one source.
    pub cites: bool,
    /// Every citing sentence is supported by the sources it cites (across languages, by
    /// the sentence's translation).
    pub faithful: bool,
    /// The same, words as written only.
    pub faithful_lexical: bool,
    /// In the question's language.
    pub language: bool,
    /// Neither lists the sources nor copies a long run of one.
    pub no_echo: bool,
}

/// Shares and latencies over a group of answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnswerSummary {
    /// Answers in the group.
    pub questions: usize,
    /// Share correct.
    pub correct: f64,
    /// Share cited-correct.
    pub cited_correct: f64,
    /// Share citing anything.
    pub cites: f64,
    /// Share faithful.
    pub faithful: f64,
    /// Share faithful, words as written only.
    pub faithful_lexical: f64,
    /// Share in the question's language.
    pub language: f64,
    /// Share without echo.
    pub no_echo: f64,
    /// Median whole-ask time, milliseconds.
    pub median_total_ms: u64,
    /// Median time after retrieval, milliseconds.
    pub median_answer_ms: u64,
    /// Mean prompt tokens.
    pub mean_prompt_tokens: f64,
    /// Mean generated tokens.
    pub mean_completion_tokens: f64,
}

impl AnswerSummary {
    /// Summarises results.
    pub fn of<'a>(results: impl IntoIterator<Item = &'a AnswerResult>) -> Self {
        let results: Vec<&AnswerResult> = results.into_iter().collect();
        let n = results.len();
        if n == 0 {
            return Self::default();
        }
        let share = |f: fn(&Judged) -> bool| {
            results.iter().filter(|r| f(&r.judged)).count() as f64 / n as f64
        };
        let median = |f: fn(&AnswerResult) -> u64| {
            let mut v: Vec<u64> = results.iter().map(|r| f(r)).collect();
            v.sort_unstable();
            v[n / 2]
        };
        let mean = |f: fn(&AnswerResult) -> usize| {
            results.iter().map(|r| f(r) as f64).sum::<f64>() / n as f64
        };
        Self {
            questions: n,
            correct: share(|j| j.correct),
            cited_correct: share(|j| j.cited_correct),
            cites: share(|j| j.cites),
            faithful: share(|j| j.faithful),
            faithful_lexical: share(|j| j.faithful_lexical),
            language: share(|j| j.language),
            no_echo: share(|j| j.no_echo),
            median_total_ms: median(|r| r.total_ms),
            median_answer_ms: median(|r| r.answer_ms),
            mean_prompt_tokens: mean(|r| r.prompt_tokens),
            mean_completion_tokens: mean(|r| r.completion_tokens),
        }
    }
}

/// The results of one answer mode.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerModeReport {
    /// The mode asked for.
    pub mode: AnswerMode,
    /// Over every question.
    pub overall: AnswerSummary,
    /// Per `lang` tag.
    pub by_lang: BTreeMap<String, AnswerSummary>,
    /// Each question, in file order.
    pub per_query: Vec<AnswerResult>,
}

/// What `zhiku eval answers --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerReport {
    /// Knowledge base evaluated.
    pub kb: KbName,
    /// The LLM.
    pub model: String,
    /// Answer length bound.
    pub max_tokens: u32,
    /// Questions evaluated.
    pub queries: usize,
    /// One entry per mode, in the order asked for.
    pub modes: Vec<AnswerModeReport>,
}

/// Runs `zhiku eval answers`.
pub fn run(config: Config, args: &EvalArgs, queries: Vec<Query>) -> anyhow::Result<()> {
    let mut queries = queries;
    if let Some(limit) = args.limit {
        queries.truncate(limit);
    }
    if let Some(q) = queries.iter().find(|q| q.answers.is_empty()) {
        return Err(super::QueriesError::Line {
            path: args.queries.display().to_string(),
            line: q.line,
            message: "needs \"answer\" (strings a correct answer contains) for zhiku eval answers"
                .into(),
        }
        .into());
    }
    let mut modes: Vec<AnswerMode> = Vec::new();
    for mode in &args.answer_modes {
        if !modes.contains(mode) {
            modes.push(*mode);
        }
    }
    if modes.is_empty() {
        modes = vec![
            AnswerMode::Generative,
            AnswerMode::Extractive,
            AnswerMode::Auto,
        ];
    }
    let services = Services::load(config, Models::All, false)?;
    services.kb(&args.kb)?;
    let model = services
        .generator
        .as_ref()
        .map(|g| g.name().to_string())
        .unwrap_or_default();
    let mut reports = Vec::new();
    for mode in modes {
        let mut per_query = Vec::with_capacity(queries.len());
        for (i, query) in queries.iter().enumerate() {
            let response = ask(&services, &args.kb, query, mode, args.max_tokens)
                .map_err(|e| anyhow::anyhow!("question on line {}: {e}", query.line))?;
            let result = judge_response(&services, query, &response);
            if !args.json {
                eprintln!(
                    "[{mode:?} {}/{}] line {} {}{}{} {} ms",
                    i + 1,
                    queries.len(),
                    query.line,
                    if result.judged.correct { "C" } else { "-" },
                    if result.judged.cited_correct {
                        "c"
                    } else {
                        "-"
                    },
                    if result.judged.faithful { "F" } else { "-" },
                    result.total_ms,
                );
            }
            per_query.push(result);
        }
        let mut tags: BTreeMap<String, Vec<&AnswerResult>> = BTreeMap::new();
        for r in &per_query {
            if let Some(lang) = &r.lang {
                tags.entry(lang.clone()).or_default().push(r);
            }
        }
        let by_lang = tags
            .into_iter()
            .map(|(tag, rs)| (tag, AnswerSummary::of(rs)))
            .collect();
        reports.push(AnswerModeReport {
            mode,
            overall: AnswerSummary::of(&per_query),
            by_lang,
            per_query,
        });
    }
    let report = AnswerReport {
        kb: args.kb.clone(),
        model,
        max_tokens: args.max_tokens,
        queries: queries.len(),
        modes: reports,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// Asks one question as `/ask` would, greedily, storing no conversation.
fn ask(
    services: &Services,
    kb: &KbName,
    query: &Query,
    mode: AnswerMode,
    max_tokens: u32,
) -> Result<AskResponse, zhiku_app::error::ServiceError> {
    let started = Instant::now();
    let request = AskRequest {
        answer_mode: Some(mode),
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..AskRequest::new(&query.text)
    };
    let checked = services.check_ask(&request)?;
    let context = services.inline_context(checked.question, &[], checked.generator.as_ref());
    services.answer(kb, &request, checked, context, &mut |_: &str| true, started)
}

fn judge_response(services: &Services, query: &Query, response: &AskResponse) -> AnswerResult {
    let cited: Vec<(usize, &str)> = response
        .citations
        .iter()
        .map(|c: &Citation| (c.index, c.text.as_str()))
        .collect();
    let t = &response.timings;
    let mut sources: Vec<GivenSource> = response
        .citations
        .iter()
        .map(|c| (c, true))
        .chain(response.context.iter().map(|c| (c, false)))
        .map(|(c, cited)| GivenSource {
            index: c.index,
            cited,
            document: c.document_name.clone(),
            text: c.text.clone(),
        })
        .collect();
    sources.sort_by_key(|s| s.index);
    let given: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
    AnswerResult {
        line: query.line,
        lang: query.lang.clone(),
        question: query.text.clone(),
        answer: response.answer.clone(),
        answer_mode: response.answer_mode,
        grounded: response.grounded,
        judged: judge(
            &query.text,
            &query.answers,
            &response.answer,
            &cited,
            &given,
            &|sentence| services.translate_text(sentence),
        ),
        total_ms: t.total_ms,
        answer_ms: t.total_ms.saturating_sub(t.retrieval_ms),
        prompt_tokens: response.usage.prompt_tokens,
        completion_tokens: response.usage.completion_tokens,
        sources,
    }
}

/// Judges an answer to `question`: `expected` are normalized strings, `cited` the cited
/// sources' numbers and texts, `given` the texts of every source the answer was made from.
///
/// `translate` gives a sentence in the other language (Chinese for English, English for
/// Chinese), or `None`; see [`faithful`].
pub fn judge(
    question: &str,
    expected: &[String],
    answer: &str,
    cited: &[(usize, &str)],
    given: &[&str],
    translate: &dyn Fn(&str) -> Option<String>,
) -> Judged {
    let normalized = normalize(answer);
    let found: Vec<&String> = expected
        .iter()
        .filter(|e| normalized.contains(e.as_str()))
        .collect();
    let cited_texts: Vec<String> = cited.iter().map(|(_, t)| normalize(t)).collect();
    Judged {
        correct: !found.is_empty(),
        cited_correct: found
            .iter()
            .any(|e| cited_texts.iter().any(|t| t.contains(e.as_str()))),
        cites: !cited.is_empty(),
        faithful: faithful(answer, cited, translate),
        faithful_lexical: faithful(answer, cited, &|_| None),
        language: is_mostly_cjk(answer) == is_mostly_cjk(question),
        no_echo: !echoes(answer, given),
    }
}

/// The `[n]` numbers in a piece of text.
fn markers(text: &str) -> Vec<usize> {
    let (_, cited) = zhiku_generate::resolve_citations(text, usize::MAX);
    cited
}

/// Whether every sentence that cites sources shares at least half of its content terms
/// with them. A piece holding only markers ("… files. [1]") cites for the sentence before.
/// A sentence that falls short while every source it cites is in the other language is
/// judged again by its translation (`translate`, into that language) if there is one:
/// the words of a Chinese sentence cannot be found in an English source as written.
pub fn faithful(
    answer: &str,
    cited: &[(usize, &str)],
    translate: &dyn Fn(&str) -> Option<String>,
) -> bool {
    let source_terms = |numbers: &[usize]| -> HashSet<String> {
        cited
            .iter()
            .filter(|(n, _)| numbers.contains(n))
            .flat_map(|(_, t)| zhiku_retrieve::content_terms(t))
            .collect()
    };
    let mut pieces: Vec<(String, Vec<usize>)> = Vec::new();
    for piece in split_sentences(answer) {
        let numbers = markers(piece);
        let (bare, _) = zhiku_generate::resolve_citations(piece, 0);
        if bare.trim().chars().all(|c| !c.is_alphanumeric()) {
            if let Some(last) = pieces.last_mut() {
                last.1.extend(numbers);
            }
            continue;
        }
        pieces.push((bare, numbers));
    }
    pieces
        .iter()
        .filter(|(_, numbers)| !numbers.is_empty())
        .all(|(sentence, numbers)| {
            let sources = source_terms(numbers);
            let supported = |sentence: &str| {
                let terms = zhiku_retrieve::content_terms(sentence);
                let shared = terms.iter().filter(|t| sources.contains(*t)).count();
                shared * 2 >= terms.len()
            };
            if supported(sentence) {
                return true;
            }
            let cjk = is_mostly_cjk(sentence);
            let across = cited
                .iter()
                .filter(|(n, _)| numbers.contains(n))
                .all(|(_, text)| is_mostly_cjk(text) != cjk);
            across && translate(sentence).is_some_and(|t| supported(&t))
        })
}

/// An answer cut into sentences, as sources are.
fn split_sentences(text: &str) -> Vec<&str> {
    zhiku_retrieve::sentence_spans(text)
        .into_iter()
        .map(|(a, b)| &text[a..b])
        .collect()
}

/// Whether an answer lists the sources or copies a long run of one.
pub fn echoes(answer: &str, sources: &[&str]) -> bool {
    let lists_sources = answer.lines().any(|line| {
        let line = line.trim_start();
        let lower = line.to_lowercase();
        lower.starts_with("sources:")
            || lower.starts_with("source:")
            || lower.starts_with("the source is")
            || line.starts_with("资料：")
            || line.starts_with("来源：")
            || (line.starts_with('[')
                && line[1..].starts_with(|c: char| c.is_ascii_digit())
                && line.find(']').is_some_and(|i| i <= 4))
    });
    lists_sources
        || sources
            .iter()
            .any(|s| longest_common_run(answer, s) >= ECHO_CHARS)
}

/// The longest run of characters two texts share (whitespace runs compared as one space).
fn longest_common_run(a: &str, b: &str) -> usize {
    let a: Vec<char> = normalize(a).chars().collect();
    let b: Vec<char> = normalize(b).chars().collect();
    let mut best = 0;
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for &ca in &a {
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb { prev[j] + 1 } else { 0 };
            best = best.max(cur[j + 1]);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    best
}

/// The human-readable report: one row per mode and tag.
fn table(report: &AnswerReport) -> String {
    let mut out = format!(
        "kb {}, model {}, max_tokens {}; {} questions\n",
        report.kb, report.model, report.max_tokens, report.queries
    );
    let header = [
        "mode",
        "lang",
        "n",
        "correct",
        "cited-ok",
        "cites",
        "faithful",
        "faithful-lex",
        "language",
        "no-echo",
        "p50 ms",
        "p50 ans ms",
        "prompt t",
        "answer t",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for mode in &report.modes {
        let name = format!("{:?}", mode.mode).to_lowercase();
        let groups = std::iter::once(("all", &mode.overall))
            .chain(mode.by_lang.iter().map(|(tag, s)| (tag.as_str(), s)));
        for (tag, s) in groups {
            rows.push(vec![
                name.clone(),
                tag.to_string(),
                s.questions.to_string(),
                format!("{:.3}", s.correct),
                format!("{:.3}", s.cited_correct),
                format!("{:.3}", s.cites),
                format!("{:.3}", s.faithful),
                format!("{:.3}", s.faithful_lexical),
                format!("{:.3}", s.language),
                format!("{:.3}", s.no_echo),
                s.median_total_ms.to_string(),
                s.median_answer_ms.to_string(),
                format!("{:.0}", s.mean_prompt_tokens),
                format!("{:.0}", s.mean_completion_tokens),
            ]);
        }
    }
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
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
mod tests {
    use super::*;

    fn expected(strings: &[&str]) -> Vec<String> {
        strings.iter().map(|s| normalize(s)).collect()
    }

    #[test]
    fn correct_and_cited_correct() {
        let source = "To list the files of package foo, run dpkg -L foo.";
        let other = "Nothing about files here.";
        let exp = expected(&["dpkg -L"]);
        let j = judge(
            "Which command lists a package's files?",
            &exp,
            "Run `dpkg -L foo` to list the files [1].",
            &[(1, source)],
            &[source, other],
            &|_| None,
        );
        assert!(j.correct && j.cited_correct && j.cites && j.faithful && j.language && j.no_echo);
        // Right string, but the cited source does not hold it.
        let j = judge(
            "q?",
            &exp,
            "Use dpkg -L [2].",
            &[(2, other)],
            &[source, other],
            &|_| None,
        );
        assert!(j.correct && !j.cited_correct);
        // Wrong answer.
        let j = judge(
            "q?",
            &exp,
            "Use apt [1].",
            &[(1, source)],
            &[source],
            &|_| None,
        );
        assert!(!j.correct && !j.cited_correct);
    }

    #[test]
    fn a_sentence_citing_the_other_language_is_judged_by_its_translation() {
        let source = "Modules to load at boot time are listed in /etc/modules.";
        let sentence = "开机加载的模块写在 /etc/modules 文件里 [1]。";
        let translated =
            |_: &str| Some("Modules loaded at boot are written in /etc/modules".into());
        assert!(!faithful(sentence, &[(1, source)], &|_| None));
        assert!(faithful(sentence, &[(1, source)], &translated));
        // A translation that says something else does not pass.
        let wrong = |_: &str| Some("Printers need toner cartridges replaced weekly".into());
        assert!(!faithful(sentence, &[(1, source)], &wrong));
        // Same language: no translation is asked for.
        let never = |_: &str| -> Option<String> { panic!("same language") };
        assert!(!faithful(
            "Printers need toner weekly [1].",
            &[(1, source)],
            &never
        ));
    }

    #[test]
    fn faithfulness_checks_each_citing_sentence() {
        let source = "Backups run nightly at two o'clock in building C.";
        assert!(faithful(
            "Backups run nightly at two [1].",
            &[(1, source)],
            &|_| None
        ));
        // Marker after the full stop counts for the sentence before it.
        assert!(faithful(
            "Backups run nightly at two. [1]",
            &[(1, source)],
            &|_| None
        ));
        assert!(!faithful(
            "Printers need toner cartridges replaced weekly [1].",
            &[(1, source)],
            &|_| None
        ));
        // Sentences citing nothing are not judged.
        assert!(faithful("Printers need toner.", &[(1, source)], &|_| None));
        assert!(faithful(
            "数据备份每天凌晨两点进行 [1]。",
            &[(1, "公司位于北京。数据备份每天凌晨两点进行。")],
            &|_| None
        ));
    }

    #[test]
    fn language_follows_the_question() {
        let j = judge(
            "如何列出文件？",
            &[],
            "使用 dpkg -L 命令 [1]。",
            &[],
            &[],
            &|_| None,
        );
        assert!(j.language);
        let j = judge("How?", &[], "使用 dpkg -L 命令。", &[], &[], &|_| None);
        assert!(!j.language);
    }

    #[test]
    fn echo_is_a_source_list_or_a_long_copy() {
        let source = "a".repeat(20)
            + " The quick brown fox jumps over the lazy dog and keeps running far beyond the hills until the night falls down.";
        assert!(echoes("Answer.\n[1] handbook.md › Setup", &[]));
        assert!(echoes("Answer.\nSources: [1]", &[]));
        assert!(echoes(&format!("Copied: {source}"), &[&source]));
        assert!(!echoes("The fox jumps [1].", &[&source]));
        assert_eq!(longest_common_run("abcXdef", "zzdefzz"), 3);
    }

    #[test]
    fn sentences_split_on_both_scripts() {
        assert_eq!(
            split_sentences("One. Two!\n三。四"),
            ["One.", "Two!", "三。", "四"]
        );
    }
}
