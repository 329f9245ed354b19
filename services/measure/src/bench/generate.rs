//! `zhiku bench generate`: generation speed through the service's path, against llama.cpp's
//! own benchmark loop on the same model and settings.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use zhiku_generate::reference::ReferenceBench;
use zhiku_generate::{
    ChatMessage, Generation, Generator, SamplingParams, Source, build_grounded_prompt,
};
use zhiku_schemas::{KbName, SearchRequest};

use super::percentile;
use zhiku_app::config::Config;
use zhiku_app::services::{Models, Services};

/// Arguments of `bench generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Knowledge base whose chunks, retrieved for QUESTION, make the sources (default: the
    /// chunks of --docs).
    #[arg(long)]
    kb: Option<KbName>,
    /// Documents chunked (as an import would) into the sources when no --kb is given.
    #[arg(long, default_values = DEFAULT_DOCS)]
    docs: Vec<PathBuf>,
    /// The question of the grounded prompt (the default asks for a long answer).
    #[arg(long, default_value = DEFAULT_QUESTION)]
    question: String,
    /// Tokens of the templated prompt: sources are added, the last one cut short, until
    /// the prompt has exactly this many (or one less, where a token straddles the cut).
    #[arg(long, default_value_t = 1500)]
    prompt_tokens: usize,
    /// Answer tokens per generation (greedy; fewer if the model ends its answer earlier).
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Concurrent generations, each on its own thread, per level.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    concurrency: Vec<usize>,
    /// Rounds per level (each round starts CONCURRENCY generations at once), after one
    /// untimed warm-up generation.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Skip llama.cpp's reference loop.
    #[arg(long)]
    no_reference: bool,
}

/// The Debian Reference chapter on package management, installed by `deploy/dev/corpus.sh`.
const DEFAULT_DOCS: &[&str] = &["/usr/share/doc/debian-reference-common/docs/ch02.en.html"];

/// Asks for a long answer, so that greedy decoding runs to the answer budget instead of
/// ending early (SmolLM2-135M answers this with 128+ tokens from the default sources).
const DEFAULT_QUESTION: &str = "Explain step by step, in detail, everything the sources say about package management on Debian.";

/// The grounded prompt every generation of the benchmark answers.
struct Prompt {
    messages: Vec<ChatMessage>,
    /// Tokens of the templated chat.
    tokens: usize,
    /// Sources in it (the last possibly cut short) and what they were taken from.
    sources: usize,
    origin: String,
}

/// One timed generation.
struct Sample {
    generation: Generation,
    /// When the call was made.
    called: Instant,
    /// From the call to the first streamed piece of the answer.
    first_piece: Duration,
    /// From the call to its return.
    total: Duration,
}

impl Sample {
    fn prompt_start(&self) -> Instant {
        self.called + self.generation.timings.setup
    }

    fn prompt_end(&self) -> Instant {
        self.prompt_start() + self.generation.timings.prompt
    }

    fn end(&self) -> Instant {
        self.called + self.total
    }

    /// Prompt tokens read per second.
    fn pp_rate(&self) -> f64 {
        self.generation.prompt_tokens as f64 / secs(self.generation.timings.prompt)
    }

    /// Answer tokens decoded per second, sampling and detokenizing included.
    fn tg_rate(&self) -> f64 {
        self.generation.timings.decoded_tokens as f64 / secs(self.generation.timings.generation)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `arg` as a POSIX shell word.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `median (min–max)` of rates.
fn spread(mut values: Vec<f64>, decimals: usize) -> String {
    let m = median(&mut values);
    let (lo, hi) = (values[0], values[values.len() - 1]);
    format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
}

/// Runs the benchmark and prints its figures.
pub fn run(mut config: Config, args: &GenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|&c| c >= 1),
        "--concurrency takes levels of at least 1"
    );
    anyhow::ensure!(
        args.prompt_tokens >= 1 && args.max_tokens >= 1,
        "--prompt-tokens and --max-tokens must be positive"
    );
    // Without a KB the data directory is not needed: a scratch one keeps the real one free.
    let scratch = tempfile::tempdir()?;
    if args.kb.is_none() {
        config.server.data_dir = scratch.path().join("data");
    }
    let llm = config.llm();
    let services = Services::load(config, Models::All, false)?;
    let generator = services
        .generator
        .clone()
        .context("the LLM is not loaded")?;
    let (sources, origin) = match &args.kb {
        Some(kb) => retrieved_sources(&services, kb, &args.question)?,
        None => chunked_sources(&services, &args.docs)?,
    };
    let prompt = fit_prompt(
        generator.as_ref(),
        &args.question,
        &sources,
        origin,
        args.prompt_tokens,
        args.max_tokens as usize,
    )?;
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: args.max_tokens,
        stop: Vec::new(),
        // Every round reads the same prompt: each must read all of it, as llama.cpp's
        // loop does.
        cache_prompt: false,
        ..SamplingParams::default()
    };
    let reference = if args.no_reference {
        None
    } else {
        Some(ReferenceBench::load(&llm)?)
    };

    let command: Vec<String> = std::iter::once("zhiku".to_string())
        .chain(std::env::args().skip(1).map(|a| shell_quote(&a)))
        .collect();
    println!(
        "bench generate: {}, {} threads per generation, n_ctx {}; prompt {} tokens ({} sources: {}), up to {} answer tokens, greedy; {} rounds per level",
        generator.name(),
        llm.threads,
        generator.context_window(),
        prompt.tokens,
        prompt.sources,
        prompt.origin,
        args.max_tokens,
        args.runs,
    );
    println!("  command: {}", command.join(" "));

    // Warm-up: pages the weights in and settles the allocator.
    generate_once(generator.as_ref(), &prompt.messages, &params)?;
    let mut pairs = Vec::new();
    let mut session = match &reference {
        Some(reference) => {
            let mut session = reference.session()?;
            session.run(prompt.tokens, args.max_tokens as usize - 1)?;
            Some(session)
        }
        None => None,
    };
    for &level in &args.concurrency {
        let mut samples: Vec<Sample> = Vec::new();
        let (mut aggregate_pp, mut aggregate_tg, mut walls) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let round = round(generator.as_ref(), &prompt.messages, &params, level)?;
            // Aggregates: all prompt tokens over the span from the first prompt's start to
            // the last prompt's end; all decoded answer tokens over the span from the first
            // answer's start to the last answer's end; the round's wall time.
            let first_start = round.iter().map(Sample::prompt_start).min();
            let last_prompt = round.iter().map(Sample::prompt_end).max();
            let first_gen = round.iter().map(Sample::prompt_end).min();
            let last_end = round.iter().map(Sample::end).max();
            let first_call = round.iter().map(|s| s.called).min();
            if let (Some(a), Some(b), Some(c), Some(d), Some(e)) =
                (first_start, last_prompt, first_gen, last_end, first_call)
            {
                walls.push(secs(d - e));
                let prompt_tokens: usize = round.iter().map(|s| s.generation.prompt_tokens).sum();
                let decoded: usize = round
                    .iter()
                    .map(|s| s.generation.timings.decoded_tokens)
                    .sum();
                aggregate_pp.push(prompt_tokens as f64 / secs(b - a));
                aggregate_tg.push(decoded as f64 / secs(d - c));
            }
            if level == 1
                && let (Some(session), Some(sample)) = (session.as_mut(), round.first())
            {
                let n_gen = sample.generation.timings.decoded_tokens;
                let reference = session.run(prompt.tokens, n_gen)?;
                let ref_pp = prompt.tokens as f64 / secs(reference.prompt);
                let ref_tg = n_gen as f64 / secs(reference.generation);
                pairs.push((ref_pp, ref_tg, sample.pp_rate(), sample.tg_rate(), n_gen));
            }
            samples.extend(round);
        }
        let mut ttft: Vec<Duration> = samples.iter().map(|s| s.first_piece).collect();
        ttft.sort();
        let mut setup: Vec<f64> = samples
            .iter()
            .map(|s| s.generation.timings.setup.as_secs_f64() * 1000.0)
            .collect();
        let answer: Vec<f64> = samples
            .iter()
            .map(|s| s.generation.completion_tokens as f64)
            .collect();
        println!(
            "  concurrency {level}: per stream pp {} t/s, tg {} t/s; TTFT p50 {:.0} ms (max {:.0}); setup {:.0} ms; aggregate pp {} t/s, tg {} t/s; all {level} answers done in {} s; answers {}–{} tokens",
            spread(samples.iter().map(Sample::pp_rate).collect(), 0),
            spread(samples.iter().map(Sample::tg_rate).collect(), 1),
            percentile(&ttft, 0.5).as_secs_f64() * 1000.0,
            ttft.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            median(&mut setup),
            spread(aggregate_pp, 0),
            spread(aggregate_tg, 1),
            spread(walls, 1),
            answer.iter().copied().fold(f64::INFINITY, f64::min),
            answer.iter().copied().fold(0.0, f64::max),
        );
    }
    if let Some(reference) = &reference {
        if pairs.is_empty() {
            println!(
                "  (llama.cpp reference: runs alternately with concurrency 1, which was not run)"
            );
            return Ok(());
        }
        let n_gen = pairs[0].4;
        println!(
            "  llama.cpp reference, llama-bench's pp and tg loops in-process ({}), alternated with the concurrency-1 rounds:",
            reference.settings()
        );
        println!(
            "    pp {}: {} t/s; tg {n_gen} at depth {}: {} t/s",
            prompt.tokens,
            spread(pairs.iter().map(|p| p.0).collect(), 0),
            prompt.tokens,
            spread(pairs.iter().map(|p| p.1).collect(), 1),
        );
        println!(
            "  zhiku / llama.cpp at concurrency 1, per round: pp {}, tg {}",
            spread(pairs.iter().map(|p| p.2 / p.0).collect(), 3),
            spread(pairs.iter().map(|p| p.3 / p.1).collect(), 3),
        );
    }
    Ok(())
}

/// One generation, timed from outside as a client of the service would see it.
fn generate_once(
    generator: &dyn Generator,
    messages: &[ChatMessage],
    params: &SamplingParams,
) -> anyhow::Result<Sample> {
    let called = Instant::now();
    let mut first_piece = None;
    let generation = generator.generate(messages, params, &mut |_| {
        first_piece.get_or_insert_with(|| called.elapsed());
        true
    })?;
    let total = called.elapsed();
    Ok(Sample {
        generation,
        called,
        first_piece: first_piece.unwrap_or(total),
        total,
    })
}

/// `level` generations started at once, each on its own thread.
fn round(
    generator: &dyn Generator,
    messages: &[ChatMessage],
    params: &SamplingParams,
    level: usize,
) -> anyhow::Result<Vec<Sample>> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..level)
            .map(|_| scope.spawn(|| generate_once(generator, messages, params)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The KB's chunks for the question, best first, as many as a search may return.
fn retrieved_sources(
    services: &Services,
    kb: &KbName,
    question: &str,
) -> anyhow::Result<(Vec<Source>, String)> {
    let request = SearchRequest {
        top_k: Some(services.config.search.max_top_k),
        ..SearchRequest::new(question)
    };
    let hits = services.search(kb, &request)?;
    let sources = hits
        .into_iter()
        .map(|h| Source {
            title: h.document_name,
            heading: h.heading,
            page: h.page,
            text: h.text,
        })
        .collect();
    Ok((
        sources,
        format!("chunks of kb {kb} retrieved for the question"),
    ))
}

/// The documents' chunks in document order, chunked as an import would.
fn chunked_sources(services: &Services, docs: &[PathBuf]) -> anyhow::Result<(Vec<Source>, String)> {
    let chunking = services.config.chunking();
    let mut sources = Vec::new();
    let mut names = Vec::new();
    for path in docs {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {} (deploy/dev/corpus.sh installs the Debian Reference; or give --docs or --kb)",
                path.display()
            )
        })?;
        let name = path
            .file_name()
            .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy())
            .into_owned();
        let chunked = zhiku_ingest::chunk_file(
            &name,
            &name,
            None,
            &bytes,
            services.embedder.as_ref(),
            &chunking,
        )
        .with_context(|| format!("cannot chunk {}", path.display()))?;
        sources.extend(chunked.records.into_iter().map(|r| Source {
            title: r.document_name,
            heading: r.heading,
            page: r.page,
            text: r.text,
        }));
        names.push(name);
    }
    Ok((sources, format!("chunks of {}", names.join(", "))))
}

/// The grounded prompt of the first sources, the last cut short so that the templated chat
/// has `target` tokens (one less where a token straddles the cut), built by the service's
/// prompt builder with `answer_tokens` reserved.
fn fit_prompt(
    generator: &dyn Generator,
    question: &str,
    sources: &[Source],
    origin: String,
    target: usize,
    answer_tokens: usize,
) -> anyhow::Result<Prompt> {
    let window = generator.context_window();
    anyhow::ensure!(
        target + answer_tokens <= window,
        "a {target}-token prompt and {answer_tokens} answer tokens do not fit the {window}-token context window"
    );
    let build = |sources: &[Source]| -> anyhow::Result<(Vec<ChatMessage>, usize, usize)> {
        let prompt = build_grounded_prompt(generator, question, sources, answer_tokens)?;
        let tokens = generator.count_chat_tokens(&prompt.messages)?;
        Ok((prompt.messages, tokens, prompt.sources_used))
    };
    // The fewest sources that reach the target.
    let mut n = 0;
    loop {
        anyhow::ensure!(
            n < sources.len(),
            "the sources ({origin}) make a prompt of only {} tokens; --prompt-tokens is {target}",
            build(sources)?.1
        );
        n += 1;
        if build(&sources[..n])?.1 >= target {
            break;
        }
    }
    // The longest prefix of the last one's text that stays within it.
    let mut chosen = sources[..n].to_vec();
    let text = chosen[n - 1].text.clone();
    let cuts: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let (mut lo, mut hi) = (0, cuts.len() - 1);
    chosen[n - 1].text = String::new();
    if build(&sources[..n])?.1 == target {
        chosen[n - 1].text = text;
    } else if build(&chosen)?.1 > target {
        // Even an empty last source overshoots: the prompt stays below the target.
        chosen.pop();
    } else {
        // Invariant: a cut at cuts[lo] fits, at cuts[hi] it does not.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            chosen[n - 1].text = text[..cuts[mid]].to_string();
            if build(&chosen)?.1 <= target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        chosen[n - 1].text = text[..cuts[lo]].to_string();
    }
    let (messages, tokens, used) = build(&chosen)?;
    anyhow::ensure!(used == chosen.len(), "the prompt builder dropped sources");
    Ok(Prompt {
        messages,
        tokens,
        sources: used,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
        assert_eq!(spread(vec![0.5, 0.25, 1.0], 2), "0.50 (0.25–1.00)");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("--concurrency=1,2,4"), "--concurrency=1,2,4");
        assert_eq!(shell_quote("How do I?"), "'How do I?'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
