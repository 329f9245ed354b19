//! Making a follow-up question stand alone for retrieval.
//!
//! Only a question that needs its conversation is rewritten: one that refers back
//! ("it", "these", "它", "这个") or names at most one subject of its own ("And the
//! price?"). Anything else is searched as asked, so a change of topic is not dragged back
//! to the previous one.
//!
//! The rewrite adds the key terms of the previous turn's search query (which carries
//! the terms of the turns before it, so a chain of follow-ups keeps its subject). In
//! `model` mode the LLM is asked first, at temperature 0; its rewrite is used only if
//! it is one short line in the question's language, still a question when the
//! follow-up is one, cites nothing, keeps the follow-up's own content words and at least
//! half of the previous key terms. Otherwise, and in `keywords` mode, the key terms are
//! appended to the question in parentheses.

use super::*;
use zhiku_index::analyzer::{is_stopword, terms, words};

/// Most key terms carried over from the previous search query.
const MAX_KEY_TERMS: usize = 8;
/// Longest model rewrite accepted, in characters.
const MAX_REWRITE_CHARS: usize = 300;

/// Words that point back at something said before.
const EN_ANAPHORA: &[&str] = &[
    // Not "that" or "there": as a relative pronoun and in "is there" they refer to
    // nothing said before.
    "it", "its", "itself", "they", "them", "their", "theirs", "this", "these", "those", "he", "him",
    "his", "she", "her", "former", "latter", "above", "same",
];
const ZH_ANAPHORA: &[&str] = &[
    "它", "它们", "他", "她", "他们", "她们", "其", "该", "此", "上述", "前者", "后者", "其中",
];

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF)
}

/// Whether a word carries meaning on its own: not a stopword, and not too short to
/// (Latin words of one or two letters, single ideographs), though `S3` or `v2` are.
fn is_content(word: &str) -> bool {
    if is_stopword(word) {
        return false;
    }
    let cjk = word.chars().filter(|c| is_cjk(*c)).count();
    let len = word.chars().count();
    if cjk > 0 {
        len >= 2
    } else {
        len >= 3 || (len == 2 && word.chars().any(|c| c.is_ascii_digit()))
    }
}

fn refers_back(word: &str) -> bool {
    let lower = word.to_lowercase();
    EN_ANAPHORA.contains(&lower.as_str())
        || ZH_ANAPHORA.contains(&word)
        // 这款, 那里, 这种, 这项…: a demonstrative pointing at the previous subject.
        || (word.chars().count() > 1 && (word.starts_with('这') || word.starts_with('那')))
        || word == "这"
        || word == "那"
}

/// The words of a text with runs of single ideographs joined: jieba cuts words it
/// does not know (年假) into characters, which alone mean little.
fn joined_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run = String::new();
    let single = |w: &str| {
        let mut chars = w.chars();
        chars.next().is_some_and(is_cjk) && chars.next().is_none() && !is_stopword(w)
    };
    for word in words(text) {
        if single(&word) {
            run.push_str(&word);
            continue;
        }
        if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
        out.push(word);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// Whether the question needs its conversation to be understood.
pub fn needs_context(question: &str) -> bool {
    words(question).iter().any(|w| refers_back(w))
        || joined_words(question)
            .iter()
            .filter(|w| is_content(w))
            .count()
            <= 1
}

/// The text's sentences, those that ask first: a long question is mostly background,
/// and its subject is in the sentence that asks. Otherwise the last come first.
fn sentences_asking_first(text: &str) -> Vec<&str> {
    let mut sentences: Vec<&str> = text
        .split_inclusive(['.', '!', '?', '。', '！', '？', '\n'])
        .filter(|s| !s.trim().is_empty())
        .collect();
    sentences.reverse();
    // Stable: within each group the order stays last to first.
    sentences.sort_by_key(|s| !s.trim_end().ends_with(['?', '？']));
    sentences
}

/// The content words of a text, as written, first occurrence of each (ignoring
/// case), the asking sentences' first.
fn content_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let words = sentences_asking_first(text)
        .into_iter()
        .flat_map(joined_words);
    for word in words {
        if is_content(&word) && !out.iter().any(|w| w.to_lowercase() == word.to_lowercase()) {
            out.push(word);
        }
    }
    out
}

/// The first [`MAX_KEY_TERMS`] content words of a text.
pub fn key_terms(text: &str) -> Vec<String> {
    let mut words = content_words(text);
    words.truncate(MAX_KEY_TERMS);
    words
}

/// What a follow-up to a turn is about: the terms that turn's search query carried
/// beyond its question (the subject it continued) first, then its question's own
/// words, at most [`MAX_KEY_TERMS`]. A chain of follow-ups thus keeps its subject
/// ahead of what each one asked about it.
pub fn subject_terms(question: &str, search_query: &str) -> Vec<String> {
    let own = content_words(question);
    let mut out: Vec<String> = content_words(search_query)
        .into_iter()
        .filter(|w| !own.iter().any(|o| o.to_lowercase() == w.to_lowercase()))
        .collect();
    out.extend(own);
    out.truncate(MAX_KEY_TERMS);
    out
}

/// Whether `text` contains `word` as the index would match it (stemmed, folded).
fn mentions(text_terms: &[String], word: &str) -> bool {
    let word_terms = terms(word);
    !word_terms.is_empty() && word_terms.iter().all(|t| text_terms.contains(t))
}

/// The search query for `question`, a follow-up to `previous`, and how it was made
/// (`None`: as asked).
pub fn standalone(
    question: &str,
    previous: &ConversationTurn,
    mode: RewriteMode,
    generator: &dyn Generator,
) -> (String, Option<QueryRewrite>) {
    if mode == RewriteMode::Off || !needs_context(question) {
        return (question.to_string(), None);
    }
    let asked = terms(question);
    let carried: Vec<String> = subject_terms(&previous.question, &previous.search_query)
        .into_iter()
        .filter(|t| !mentions(&asked, t))
        .collect();
    if carried.is_empty() {
        // The question already names everything the previous one was about.
        return (question.to_string(), None);
    }
    if mode == RewriteMode::Model {
        match model_rewrite(question, previous, generator) {
            Ok((rewrite, true)) => {
                if let Some(accepted) = check_model_rewrite(&rewrite, question, &carried) {
                    return (accepted, Some(QueryRewrite::Model));
                }
                tracing::debug!(%rewrite, "model rewrite rejected; using key terms");
            }
            Ok((rewrite, false)) => {
                tracing::debug!(%rewrite, "model rewrite too long; using key terms")
            }
            Err(e) => tracing::warn!(error = %e, "model rewrite failed; using key terms"),
        }
    }
    (
        keyword_query(question, &carried),
        Some(QueryRewrite::Keywords),
    )
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The question with the carried key terms after it in parentheses.
pub fn keyword_query(question: &str, carried: &[String]) -> String {
    if is_mostly_cjk(question) {
        format!("{question}（{}）", carried.join(" "))
    } else {
        format!("{question} ({})", carried.join(" "))
    }
}

/// The model's rewrite, and whether it ended within its budget.
fn model_rewrite(
    question: &str,
    previous: &ConversationTurn,
    generator: &dyn Generator,
) -> Result<(String, bool), zhiku_generate::GenerateError> {
    let (answer, _) = resolve_citations(&previous.answer, 0);
    // The start of the answer names the subject; the rest only costs time.
    let answer = one_line(&answer);
    let answer: String = answer.chars().take(300).collect();
    // A long question's subject is usually at its end.
    let previous_question: String = {
        let q = one_line(&previous.question);
        let skip = q.chars().count().saturating_sub(500);
        q.chars().skip(skip).collect()
    };
    let messages = if is_mostly_cjk(question) {
        vec![
            ChatMessage::system("你把追问改写成一个独立完整的问题。只输出改写后的问题。"),
            ChatMessage::user(format!(
                "上一个问题：{previous_question}\n上一个回答：{answer}\n追问：{question}\n\n请把追问改写成不看对话也能理解的完整问题，写出它所指的对象。"
            )),
        ]
    } else {
        vec![
            ChatMessage::system(
                "You rewrite a follow-up question into a standalone question. Reply with the rewritten question only.",
            ),
            ChatMessage::user(format!(
                "Previous question: {previous_question}\nPrevious answer: {answer}\nFollow-up question: {question}\n\nRewrite the follow-up question so that it can be understood without the conversation, naming what it refers to."
            )),
        ]
    };
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 64,
        stop: vec!["\n".into()],
        ..SamplingParams::default()
    };
    let generation = generator.generate(&messages, &params, &mut |_| true)?;
    let finished = generation.finish_reason == zhiku_generate::FinishReason::Stop;
    Ok((generation.text, finished))
}

/// The model's rewrite cleaned of labels and quotes, if it passes the checks (see the
/// module documentation).
pub fn check_model_rewrite(output: &str, question: &str, carried: &[String]) -> Option<String> {
    let mut text = output.trim();
    for label in [
        "Standalone question:",
        "Rewritten question:",
        "Question:",
        "改写后的问题：",
        "问题：",
    ] {
        if let Some(rest) = text.strip_prefix(label) {
            text = rest.trim();
        }
    }
    let text = text
        .trim_matches(|c| matches!(c, '"' | '\'' | '“' | '”' | '「' | '」'))
        .trim();
    let asks = |t: &str| t.ends_with('?') || t.ends_with('？');
    let acceptable = !text.is_empty()
        && text.chars().count() <= MAX_REWRITE_CHARS
        && !text.contains('\n')
        && is_mostly_cjk(text) == is_mostly_cjk(question)
        && (!asks(question) || asks(text))
        && resolve_citations(text, 0).0 == text
        && text.to_lowercase() != question.trim().to_lowercase();
    if !acceptable {
        return None;
    }
    let got = terms(text);
    let own = key_terms(question);
    let keeps_own = own.iter().all(|w| mentions(&got, w));
    let kept = carried.iter().filter(|w| mentions(&got, w)).count();
    (keeps_own && kept * 2 >= carried.len()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_ups_are_told_from_standalone_questions() {
        assert!(needs_context("What does it include?"));
        assert!(needs_context("And the price?"));
        assert!(needs_context("How much do these cost?"));
        assert!(needs_context("它包括什么？"));
        assert!(needs_context("这款产品多少钱？"));
        assert!(!needs_context("What is the vacation policy?"));
        assert!(!needs_context("How long are nightly backups kept?"));
        assert!(!needs_context("年假政策是什么？"));
    }

    #[test]
    fn key_terms_keep_content_words_as_written() {
        assert_eq!(
            key_terms("What is the Zhiku Backup Pro plan?"),
            ["Zhiku", "Backup", "Pro", "plan"]
        );
        assert_eq!(key_terms("Is S3 in the v2 API? api"), ["S3", "v2", "API"]);
        let zh = key_terms("智库备份专业版是什么？");
        assert!(
            !zh.is_empty() && zh.iter().all(|w| w.chars().count() >= 2),
            "{zh:?}"
        );
        assert!(!zh.iter().any(|w| w == "什么"), "{zh:?}");
        // jieba cuts 年假 into characters; they are joined again.
        assert_eq!(key_terms("年假政策是什么？"), ["年假", "政策"]);
    }

    #[test]
    fn a_chain_of_follow_ups_keeps_its_subject_first() {
        assert_eq!(
            subject_terms(
                "What is the Zhiku Backup Pro plan?",
                "What is the Zhiku Backup Pro plan?"
            ),
            ["Zhiku", "Backup", "Pro", "plan"]
        );
        assert_eq!(
            key_terms(
                "We compare offsite storage offers for the office. Our budget is small. \
                 So, what is the Zhiku Backup Pro plan? Please be brief."
            )[..4],
            ["Zhiku", "Backup", "Pro", "plan"]
        );
        assert_eq!(
            subject_terms(
                "What does it include?",
                "What does it include? (Zhiku Backup Pro plan)"
            ),
            ["Zhiku", "Backup", "Pro", "plan", "include"]
        );
    }

    #[test]
    fn keyword_query_appends_the_carried_terms() {
        let carried = key_terms("What is the Zhiku Backup Pro plan?");
        assert_eq!(
            keyword_query("What does it include?", &carried),
            "What does it include? (Zhiku Backup Pro plan)"
        );
        assert_eq!(
            keyword_query("它包括什么？", &["专业版".to_string()]),
            "它包括什么？（专业版）"
        );
    }

    #[test]
    fn model_rewrites_are_checked() {
        let carried = key_terms("What is the Zhiku Backup Pro plan?");
        let q = "What does it include?";
        assert_eq!(
            check_model_rewrite(
                " Standalone question: \"What does the Zhiku Backup Pro plan include?\"",
                q,
                &carried
            )
            .as_deref(),
            Some("What does the Zhiku Backup Pro plan include?")
        );
        // Half the subject is enough.
        assert!(check_model_rewrite("What does Zhiku Backup include?", q, &carried).is_some());
        for bad in [
            "",
            "What does it include?",
            "The Pro plan includes daily backups [1].",
            "What does the plan include",
            "What does the Zhiku Backup Pro plan cost?",
            "智库备份专业版包括什么？",
            "What is included?",
        ] {
            assert_eq!(check_model_rewrite(bad, q, &carried), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id(&new_id()).is_ok());
        assert!(check_id("conv_0123").is_err());
        assert!(check_id("CONV_0123456789abcdef0123456789abcdef").is_err());
        assert!(check_id("conv_0123456789ABCDEF0123456789abcdef").is_err());
    }
}
