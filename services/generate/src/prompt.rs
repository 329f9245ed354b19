//! Grounded RAG prompting: numbered sources, the question, and instructions to answer only
//! from the sources with `[n]` citations, fitted to the model's context window.

use crate::{ChatMessage, GenerateError, Generator};

/// A retrieved passage offered to the model as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Name of the document the passage comes from.
    pub title: String,
    /// Section heading of the passage, if known.
    pub heading: Option<String>,
    /// Page number of the passage, if known.
    pub page: Option<u32>,
    /// The passage itself.
    pub text: String,
}

/// An earlier exchange of a conversation, offered to the model before the current
/// question so it can resolve references like "it".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTurn {
    /// What the user asked, as asked.
    pub question: String,
    /// What was answered. Its `[n]` markers are removed when composed: they numbered that
    /// turn's sources, and would point at the wrong ones now.
    pub answer: String,
}

/// A chat ready for [`Generator::generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundedPrompt {
    /// The system message, the history turns if any, and the grounded user message.
    pub messages: Vec<ChatMessage>,
    /// How many of the given sources made it into the prompt: always the first
    /// `sources_used`, numbered `[1]..=[sources_used]`, so a citation `[n]` refers to
    /// `sources[n - 1]`.
    pub sources_used: usize,
    /// How many of the given history turns made it into the prompt: always the most
    /// recent `history_used`.
    pub history_used: usize,
}

/// How a grounded chat is worded. Models differ in what they follow: the rules that a
/// 135M model half-follows make a 0.5B Qwen answer with citation markers alone, while a
/// worked example is copied faithfully by both (README, "Answer quality").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptProfile {
    /// Grounding rules in the system message; sources, question and a reminder of the
    /// rules in the user message.
    #[default]
    Standard,
    /// Short rules, then two worked exchanges (sources, a question, a one-sentence answer
    /// naming the exact term with its `[n]`; the second a yes/no question answered with
    /// the fact) before the real question, whose sources are shown the same way. Sources
    /// are numbered best first but listed from the lowest ranked up, so the best stands
    /// next to the question: the 1.5B Qwen otherwise answered from the last-listed source
    /// when the first held the answer, and listing them so took its correct-and-cited
    /// answers from 41 to 46 of 73 (README, "Answer quality"). [`PromptProfile::Standard`]
    /// lists them best first: listed the other way, the same model was right less often.
    Example,
}

impl PromptProfile {
    /// The profile that answered best on the answer evaluation for a model of this GGUF
    /// `general.architecture` (`qwen2`, `llama`, …).
    pub fn for_architecture(architecture: &str) -> Self {
        if architecture.starts_with("qwen") {
            PromptProfile::Example
        } else {
            PromptProfile::Standard
        }
    }
}

/// The language the instructions are written in; small models follow instructions in the
/// question's language much more reliably than a request to switch languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    En,
    Zh,
}

/// Appended to a passage cut short to fit, so the model does not read it as complete.
const TRUNCATION_MARK: &str = " …";

/// Builds the system + user messages: the numbered sources `[1]..[n]` (in the given order,
/// which is best-first), the question, and the grounding instructions: answer only from the
/// sources, cite with `[n]`, say plainly when the sources do not contain the answer.
/// Instructions are in Chinese when the question is mostly CJK, else English (the answer
/// should be in the question's language).
///
/// Fits to the window: drops sources from the end (lowest ranked) until
/// `count_chat_tokens(messages) + reserve_answer_tokens <= generator.context_window()`; a
/// first source too long on its own is truncated on a char boundary rather than dropped.
///
/// # Errors
/// [`GenerateError::PromptTooLong`] when even the question and instructions alone (with at
/// most an empty first source) leave no room for `reserve_answer_tokens`; errors of
/// [`Generator::count_chat_tokens`].
pub fn build_grounded_prompt(
    generator: &dyn Generator,
    question: &str,
    sources: &[Source],
    reserve_answer_tokens: usize,
) -> Result<GroundedPrompt, GenerateError> {
    build_styled_prompt(generator, question, sources, reserve_answer_tokens, &[])
}

/// [`build_grounded_prompt`] with a persona and CO-STAR fields: `style` is `(field,
/// value)` pairs (`persona`, `context`, `objective`, `style`, `tone`, `audience`,
/// `response_format`), added to the system prompt after the grounding rules under a line
/// saying the rules still apply. Empty values are left out.
///
/// The system prompt then reads (English; Chinese labels for Chinese questions):
///
/// ```text
/// <grounding rules>
/// The rules above always apply. Within them:
/// Persona: <persona>
/// Context: <context>
/// ...
/// Response format: <response_format>
/// ```
///
/// # Errors
/// As [`build_grounded_prompt`].
pub fn build_styled_prompt(
    generator: &dyn Generator,
    question: &str,
    sources: &[Source],
    reserve_answer_tokens: usize,
    style: &[(&str, &str)],
) -> Result<GroundedPrompt, GenerateError> {
    let lang = lang_of(question);
    let profile = generator.prompt_profile();
    let window = generator.context_window();
    let too_long = |prompt_tokens: usize| GenerateError::PromptTooLong {
        tokens: prompt_tokens.saturating_add(reserve_answer_tokens),
        window,
    };
    let fit =
        |messages: Vec<ChatMessage>| -> Result<Result<Vec<ChatMessage>, usize>, GenerateError> {
            let tokens = generator.count_chat_tokens(&messages)?;
            Ok(if tokens.saturating_add(reserve_answer_tokens) <= window {
                Ok(messages)
            } else {
                Err(tokens)
            })
        };

    // The common case: everything fits.
    let all_tokens = match fit(compose(lang, question, sources, None, style, &[], profile))? {
        Ok(messages) => {
            return Ok(GroundedPrompt {
                messages,
                sources_used: sources.len(),
                history_used: 0,
            });
        }
        Err(tokens) => tokens,
    };
    let Some(first) = sources.first() else {
        return Err(too_long(all_tokens));
    };

    // Token counts grow with every source added, so the largest prefix of sources that fits
    // can be found by bisection. Invariant: `hi` sources do not fit; `lo` sources fit, or
    // lo == 0 (not yet known).
    let (mut lo, mut hi) = (0, sources.len());
    let mut best = None;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fit(compose(
            lang,
            question,
            &sources[..mid],
            None,
            style,
            &[],
            profile,
        ))? {
            Ok(messages) => {
                lo = mid;
                best = Some(messages);
            }
            Err(_) => hi = mid,
        }
    }
    if let Some(messages) = best {
        return Ok(GroundedPrompt {
            messages,
            sources_used: lo,
            history_used: 0,
        });
    }

    // Not even the best source fits whole: keep as much of it as fits rather than answering
    // without evidence.
    let one = std::slice::from_ref(first);
    let mut best = match fit(compose(lang, question, one, Some(""), style, &[], profile))? {
        Ok(messages) => messages,
        Err(tokens) => return Err(too_long(tokens)),
    };
    let mut cuts: Vec<usize> = first.text.char_indices().map(|(i, _)| i).collect();
    cuts.push(first.text.len());
    // Invariant: a cut at `cuts[lo]` fits, the whole text (`cuts[hi]`) does not.
    let (mut lo, mut hi) = (0, cuts.len() - 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fit(compose(
            lang,
            question,
            one,
            Some(&first.text[..cuts[mid]]),
            style,
            &[],
            profile,
        ))? {
            Ok(messages) => {
                lo = mid;
                best = messages;
            }
            Err(_) => hi = mid,
        }
    }
    Ok(GroundedPrompt {
        messages: best,
        sources_used: 1,
        history_used: 0,
    })
}

/// [`build_styled_prompt`] for a turn of a conversation: the most recent earlier turns
/// (`history`, oldest first) go between the system message and the grounded user message
/// as user/assistant messages, their answers without `[n]` markers.
///
/// `question` is the question as the user asked it; `standalone` is the same question
/// rewritten to stand alone (the search query). The grounded message carries `question`
/// when at least one turn is in the prompt, else `standalone`: without history the model
/// has nothing to resolve "it" against.
///
/// Fits to the window in this order, each as far as it goes:
///
/// 1. the best source, whole;
/// 2. earlier turns, most recent first (the oldest are dropped first);
/// 3. further sources, best first (the lowest ranked are dropped first).
///
/// Evidence comes first because the answer must be grounded, and retrieval has already
/// used what the history adds (through the search query). When the best source does not
/// fit beside even the most recent turn, the prompt is [`build_styled_prompt`] of
/// `standalone` with no history (the first source cut short if need be). Without history
/// the result is exactly [`build_styled_prompt`] of `standalone`.
///
/// # Errors
/// As [`build_grounded_prompt`].
#[allow(clippy::too_many_arguments)]
pub fn build_conversation_prompt(
    generator: &dyn Generator,
    question: &str,
    standalone: &str,
    history: &[HistoryTurn],
    sources: &[Source],
    reserve_answer_tokens: usize,
    style: &[(&str, &str)],
) -> Result<GroundedPrompt, GenerateError> {
    let without_history =
        || build_styled_prompt(generator, standalone, sources, reserve_answer_tokens, style);
    if history.is_empty() {
        return without_history();
    }
    let lang = lang_of(question);
    let profile = generator.prompt_profile();
    let window = generator.context_window();
    let fits = |messages: &[ChatMessage]| -> Result<bool, GenerateError> {
        let tokens = generator.count_chat_tokens(messages)?;
        Ok(tokens.saturating_add(reserve_answer_tokens) <= window)
    };
    let with = |turns: usize, used: usize| {
        compose(
            lang,
            question,
            &sources[..used],
            None,
            style,
            &history[history.len() - turns..],
            profile,
        )
    };
    let prompt = |messages, sources_used, history_used| GroundedPrompt {
        messages,
        sources_used,
        history_used,
    };

    let all = with(history.len(), sources.len());
    if fits(&all)? {
        return Ok(prompt(all, sources.len(), history.len()));
    }
    // The best source, then as many recent turns as fit beside it.
    let base = sources.len().min(1);
    let mut kept = None;
    for turns in (1..=history.len()).rev() {
        let messages = with(turns, base);
        if fits(&messages)? {
            kept = Some((turns, messages));
            break;
        }
    }
    let Some((turns, mut best)) = kept else {
        return without_history();
    };
    // Then as many further sources as fit beside those turns. Invariant: `lo` sources
    // fit, `hi` do not (all of them are known not to fit only beside every turn).
    let (mut lo, mut hi) = (base, sources.len());
    if turns < history.len() {
        let messages = with(turns, hi);
        if fits(&messages)? {
            return Ok(prompt(messages, hi, turns));
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let messages = with(turns, mid);
        if fits(&messages)? {
            lo = mid;
            best = messages;
        } else {
            hi = mid;
        }
    }
    Ok(prompt(best, lo, turns))
}

/// The system and user messages of a grounded question, composed as for the model (no
/// history, no style, nothing cut to fit): for records of what a grounded exchange
/// looks like, such as fine-tuning data.
pub fn grounded_messages(question: &str, sources: &[Source]) -> Vec<ChatMessage> {
    compose(
        lang_of(question),
        question,
        sources,
        None,
        &[],
        &[],
        PromptProfile::Standard,
    )
}

/// Chinese instructions for a mostly Chinese question, else English.
fn lang_of(question: &str) -> Lang {
    if is_mostly_cjk(question) {
        Lang::Zh
    } else {
        Lang::En
    }
}

/// The chat for `sources`, after the `history` turns; `first_text` replaces the first
/// source's text when it had to be cut to fit.
fn compose(
    lang: Lang,
    question: &str,
    sources: &[Source],
    first_text: Option<&str>,
    style: &[(&str, &str)],
    history: &[HistoryTurn],
    profile: PromptProfile,
) -> Vec<ChatMessage> {
    if profile == PromptProfile::Example {
        return compose_example(lang, question, sources, first_text, style, history);
    }
    let mut user = String::new();
    user.push_str(match lang {
        Lang::En => "Sources:\n\n",
        Lang::Zh => "资料：\n\n",
    });
    user.push_str(&sources_block(lang, sources, first_text, false));
    let question = question.trim();
    match lang {
        Lang::En => {
            user.push_str("Question: ");
            user.push_str(question);
            user.push_str(
                "\n\nAnswer the question using only the sources above and cite them as [n]. \
                 If they do not contain the answer, say so.",
            );
        }
        Lang::Zh => {
            user.push_str("问题：");
            user.push_str(question);
            user.push_str(
                "\n\n请只根据以上资料回答，并用 [n] 标注出处。如果资料中没有答案，请直接说明。",
            );
        }
    }
    let mut messages = vec![ChatMessage::system(styled_system_prompt(lang, style))];
    push_history(&mut messages, history);
    messages.push(ChatMessage::user(user));
    messages
}

/// Earlier turns as user/assistant messages, their answers without `[n]` markers (they
/// numbered that turn's sources, and would point at the wrong ones now).
fn push_history(messages: &mut Vec<ChatMessage>, history: &[HistoryTurn]) {
    for turn in history {
        messages.push(ChatMessage::user(turn.question.trim()));
        let (answer, _) = crate::resolve_citations(turn.answer.trim(), 0);
        messages.push(ChatMessage::assistant(answer));
    }
}

/// The sources block of a user message: `[n] header` then the text, for each source,
/// numbered best first. `best_last` lists them from the lowest ranked up, so that the best
/// source stands next to the question: small models lean on what they read last (see
/// [`PromptProfile::Example`]).
fn sources_block(
    lang: Lang,
    sources: &[Source],
    first_text: Option<&str>,
    best_last: bool,
) -> String {
    let mut out = String::new();
    if sources.is_empty() {
        out.push_str(match lang {
            Lang::En => "(no sources)\n\n",
            Lang::Zh => "（无资料）\n\n",
        });
    }
    let mut order: Vec<(usize, &Source)> = sources.iter().enumerate().collect();
    if best_last {
        order.reverse();
    }
    for (i, source) in order {
        out.push_str(&source_header(lang, i + 1, source));
        out.push('\n');
        match first_text.filter(|_| i == 0) {
            Some(cut) => {
                out.push_str(cut.trim());
                out.push_str(TRUNCATION_MARK);
            }
            None => out.push_str(source.text.trim()),
        }
        out.push_str("\n\n");
    }
    out
}

/// The user message of [`PromptProfile::Example`]: documents, then the question.
fn example_user(lang: Lang, sources_block: &str, question: &str) -> String {
    match lang {
        Lang::En => format!("Documents:\n\n{sources_block}Question: {}", question.trim()),
        Lang::Zh => format!("资料：\n\n{sources_block}问题：{}", question.trim()),
    }
}

/// [`PromptProfile::Example`]: short rules, two worked exchanges over the same documents (a
/// "what" question, and a yes/no question answered with the fact, not a bare yes), then the
/// history and the question with its sources in the same form. The rules and examples are
/// the same for every question in a language, so a local model reads them once
/// ([`crate::SamplingParams::cache_prompt`]).
fn compose_example(
    lang: Lang,
    question: &str,
    sources: &[Source],
    first_text: Option<&str>,
    style: &[(&str, &str)],
    history: &[HistoryTurn],
) -> Vec<ChatMessage> {
    let (rules, example_sources, exchanges) = match lang {
        Lang::En => (
            "You answer questions from the numbered documents the user gives.\n\
             - Answer in one or two short sentences, in English.\n\
             - Give the exact command, package, file or term from the documents.\n\
             - Do not answer only yes or no, and do not repeat the question: state the fact.\n\
             - End each sentence with the number of the document it comes from, like [2].\n\
             - If the documents do not contain the answer, say that they do not.\n\
             - Never list or repeat the documents.",
            vec![
                Source {
                    title: "Office handbook".into(),
                    heading: Some("Printing".into()),
                    page: None,
                    text: "The printers are on the third floor. To print from a laptop, \
                           install the package office-print first."
                        .into(),
                },
                Source {
                    title: "Office handbook".into(),
                    heading: Some("Backups".into()),
                    page: None,
                    text: "Backups run every night at two o'clock. Visitors may use the \
                           office Wi-Fi: reception gives each of them a code that works for \
                           one day."
                        .into(),
                },
            ],
            [
                (
                    "What do I need to print from my laptop?",
                    "Install the package office-print first [1].",
                ),
                (
                    "Can my visitors use the Wi-Fi?",
                    "Yes: reception gives each visitor a code that works for one day [2].",
                ),
            ],
        ),
        Lang::Zh => (
            "你根据用户给出的编号资料回答问题。\n\
             - 用一两句简短的中文回答。\n\
             - 写出资料中确切的命令、软件包、文件名或术语。\n\
             - 不要只回答“是”或“不是”，也不要重复问题：直接写出事实。\n\
             - 每句话末尾用方括号写出所依据资料的编号，例如 [2]。\n\
             - 如果资料中没有答案，就直接说资料中没有。\n\
             - 不要罗列或复述资料。",
            vec![
                Source {
                    title: "办公手册".into(),
                    heading: Some("打印".into()),
                    page: None,
                    text: "打印机在三楼。要从笔记本电脑打印，请先安装软件包 office-print。".into(),
                },
                Source {
                    title: "办公手册".into(),
                    heading: Some("备份".into()),
                    page: None,
                    text: "每天凌晨两点进行备份。访客可以使用办公室的 Wi-Fi：\
                           前台给每位访客一个当天有效的密码。"
                        .into(),
                },
            ],
            [
                (
                    "从笔记本电脑打印需要什么？",
                    "需要先安装软件包 office-print [1]。",
                ),
                (
                    "我的访客能用 Wi-Fi 吗？",
                    "能：前台给每位访客一个当天有效的密码 [2]。",
                ),
            ],
        ),
    };
    let mut system = rules.to_string();
    append_style(&mut system, lang, style);
    let example_block = sources_block(lang, &example_sources, None, true);
    let mut messages = vec![ChatMessage::system(system)];
    for (example_question, example_answer) in exchanges {
        messages.push(ChatMessage::user(example_user(
            lang,
            &example_block,
            example_question,
        )));
        messages.push(ChatMessage::assistant(example_answer));
    }
    push_history(&mut messages, history);
    messages.push(ChatMessage::user(example_user(
        lang,
        &sources_block(lang, sources, first_text, true),
        question,
    )));
    messages
}

/// The grounding rules, then the persona and CO-STAR fields as the rules' refinement.
fn styled_system_prompt(lang: Lang, style: &[(&str, &str)]) -> String {
    let mut prompt = system_prompt(lang).to_string();
    append_style(&mut prompt, lang, style);
    prompt
}

/// Adds the persona and CO-STAR fields to a system prompt, under a line saying the rules
/// above still apply. Empty fields are left out; with none, nothing is added.
fn append_style(prompt: &mut String, lang: Lang, style: &[(&str, &str)]) {
    let fields: Vec<(&str, &str)> = style
        .iter()
        .map(|(k, v)| (*k, v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if fields.is_empty() {
        return;
    }
    prompt.push_str(match lang {
        Lang::En => "\nThe rules above always apply. Within them:",
        Lang::Zh => "\n以上规则始终有效。在此前提下：",
    });
    for (field, value) in fields {
        let label = match (lang, field) {
            (Lang::En, "persona") => "Persona",
            (Lang::En, "context") => "Context",
            (Lang::En, "objective") => "Objective",
            (Lang::En, "style") => "Style",
            (Lang::En, "tone") => "Tone",
            (Lang::En, "audience") => "Audience",
            (Lang::En, "response_format") => "Response format",
            (Lang::Zh, "persona") => "角色",
            (Lang::Zh, "context") => "背景",
            (Lang::Zh, "objective") => "目标",
            (Lang::Zh, "style") => "风格",
            (Lang::Zh, "tone") => "语气",
            (Lang::Zh, "audience") => "受众",
            (Lang::Zh, "response_format") => "回答格式",
            (_, other) => other,
        };
        prompt.push_str(&format!("\n{label}: {}", one_line(value)));
    }
}

fn system_prompt(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "You answer questions using only the numbered sources the user provides.\n\
             - Use only facts stated in the sources; do not add outside knowledge.\n\
             - Cite the source of each statement with its number in square brackets, \
             e.g. [1] or [2][3].\n\
             - If the sources do not contain the answer, say plainly that the provided \
             documents do not contain it. Do not guess.\n\
             - Answer concisely, in the same language as the question."
        }
        Lang::Zh => {
            "你根据用户提供的编号资料回答问题。\n\
             - 只使用资料中明确给出的信息，不要添加资料以外的知识。\n\
             - 每个陈述后用方括号中的编号标注出处，例如 [1] 或 [2][3]。\n\
             - 如果资料中没有答案，请直接说明提供的资料中没有相关内容，不要猜测。\n\
             - 用与问题相同的语言简洁地回答。"
        }
    }
}

/// `text` with every run of whitespace (newlines included) made one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `[n] Title › Heading (page p)`, on one line whatever the metadata contains.
fn source_header(lang: Lang, n: usize, source: &Source) -> String {
    let mut header = format!("[{n}] {}", one_line(&source.title));
    if let Some(heading) = source
        .heading
        .as_deref()
        .map(one_line)
        .filter(|h| !h.is_empty())
    {
        header.push_str(" › ");
        header.push_str(&heading);
    }
    if let Some(page) = source.page {
        header.push_str(&match lang {
            Lang::En => format!(" (page {page})"),
            Lang::Zh => format!("（第 {page} 页）"),
        });
    }
    header
}

/// The answer given without calling the model when retrieval found nothing to ground one
/// on, in the question's language.
pub fn not_found_answer(question: &str) -> &'static str {
    if is_mostly_cjk(question) {
        "知识库中未找到相关内容。"
    } else {
        "Not found in the knowledge base."
    }
}

/// Whether the text is mostly CJK ideographs. One ideograph carries about a word's meaning,
/// so it is weighed against four Latin letters. Commands, options, paths and file names
/// (`apt-get`, `--purge`, `/etc/modules`, `sources.list`) belong to no language and are
/// not counted: "使用 apt-get build-dep" is a Chinese sentence.
pub fn is_mostly_cjk(text: &str) -> bool {
    // Words are the runs of ASCII between everything else (CJK has no spaces).
    let mut other: usize = text
        .split(|c: char| !c.is_ascii_graphic())
        .filter(|word| !is_code(word))
        .map(|word| word.bytes().filter(u8::is_ascii_alphanumeric).count())
        .sum();
    let mut cjk = 0usize;
    for c in text
        .chars()
        .filter(|c| c.is_alphanumeric() && !c.is_ascii())
    {
        if matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF) {
            cjk += 1;
        } else {
            other += 1;
        }
    }
    cjk > 0 && cjk * 4 >= other
}

/// A run of ASCII that reads as code rather than words: it starts with `-` or `/` before
/// a letter, or joins letters or digits with `-` `_` `.` `/`.
fn is_code(word: &str) -> bool {
    let word = word.trim_matches(|c: char| c.is_ascii_punctuation() && !matches!(c, '-' | '/'));
    let b = word.as_bytes();
    let lead =
        b.len() >= 2 && matches!(b[0], b'-' | b'/') && b[1..].iter().any(u8::is_ascii_alphabetic);
    let joined = b.windows(3).any(|w| {
        w[0].is_ascii_alphanumeric()
            && matches!(w[1], b'-' | b'_' | b'.' | b'/')
            && w[2].is_ascii_alphanumeric()
    });
    lead || joined
}

#[cfg(test)]
mod tests;
