//! The sentences of retrieved chunks that answer a question: the quote a citation shows,
//! the compressed evidence a small model is given instead of whole chunks, and the
//! extractive answer that needs no model at all.
//!
//! Sentences are compared by their content terms: the keyword index's terms (jieba words,
//! stemmed English, folded Chinese) less stopwords, so `备份` in a question finds `備份` in
//! a sentence and "how do I" matches nothing.

use std::collections::HashSet;
use std::sync::LazyLock;

use zhiku_index::analyzer::{is_stopword, terms, words};

/// The content terms of a text: its words less stopwords, analyzed as the keyword index
/// does.
pub fn content_terms(text: &str) -> HashSet<String> {
    words(text)
        .into_iter()
        .filter(|w| !is_stopword(w))
        .flat_map(|w| terms(&w))
        .collect()
}

/// Byte ranges of the sentences of `text` (also the unit answers are judged by): cut after sentence-ending punctuation (`.`
/// `!` `?` followed by a space, or `。！？；` anywhere) and at line breaks; trimmed, empty
/// pieces skipped.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = i + c.len_utf8();
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        if matches!(c, '。' | '！' | '？' | '；' | '\n')
            || (matches!(c, '.' | '!' | '?') && next_is_space)
        {
            cuts.push(end);
        }
    }
    cuts.push(text.len());
    let mut spans = Vec::new();
    let mut start = 0;
    for end in cuts {
        let piece = &text[start..end];
        let lead = piece.len() - piece.trim_start().len();
        let trimmed = piece.trim();
        if !trimmed.is_empty() {
            spans.push((start + lead, start + lead + trimmed.len()));
        }
        start = end;
    }
    spans
}

/// Each sentence's span and how many of `wanted` it shares.
fn scored_sentences(text: &str, wanted: &HashSet<String>) -> Vec<((usize, usize), usize)> {
    sentence_spans(text)
        .into_iter()
        .map(|(a, b)| {
            let shared = content_terms(&text[a..b]).intersection(wanted).count();
            ((a, b), shared)
        })
        .collect()
}

/// The sentence of `text` sharing the most content terms with `query`, verbatim (a slice
/// of `text`, trimmed): the quote a citation shows so a reader can check a claim at a
/// glance. Ties go to the earlier sentence; with no shared term at all, the first
/// sentence.
pub fn best_sentence<'a>(text: &'a str, query: &str) -> &'a str {
    let wanted = content_terms(query);
    let mut best: Option<((usize, usize), usize)> = None;
    for (span, shared) in scored_sentences(text, &wanted) {
        if best.is_none_or(|(_, s)| shared > s) {
            best = Some((span, shared));
        }
    }
    best.map_or(text.trim(), |((a, b), _)| &text[a..b])
}

/// Whether a sentence announces what follows it, so it answers nothing without the next
/// line: it ends with a colon ("Use this command:", "例如：") or with no punctuation at
/// all ("execute the command", "请执行"), where the text breaks the line before the command
/// it names.
fn leads_on(sentence: &str) -> bool {
    sentence
        .chars()
        .last()
        .is_some_and(|c| matches!(c, ':' | '：') || c.is_alphanumeric())
}

/// The sentences of `text` that best match the `queries` (a question and, say, its
/// translation), in their order in `text`, as many as fit `budget` as measured by `cost`
/// (e.g. the LLM's token count). A chosen sentence that leads on to the next ("run:")
/// brings that one too, and then up to `window` sentences on each side of it (as far as
/// they fit) come before the next best sentence. Gaps between chosen sentences are marked with ` … `; sentences
/// that follow each other keep their line break, so commands stay on lines of their own.
///
/// With no sentence sharing a term with the queries, the text's first sentences are
/// kept. A text that fits the budget whole is returned whole (trimmed): there is nothing
/// to gain by cutting it.
pub fn evidence(
    text: &str,
    queries: &[&str],
    budget: usize,
    window: usize,
    cost: &dyn Fn(&str) -> usize,
) -> String {
    let text_trimmed = text.trim();
    if cost(text_trimmed) <= budget {
        return text_trimmed.to_string();
    }
    let wanted: HashSet<String> = queries.iter().flat_map(|q| content_terms(q)).collect();
    let scored = scored_sentences(text, &wanted);
    // Best first; ties to the earlier sentence.
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(scored[i].1), i));
    if scored.iter().all(|(_, shared)| *shared == 0) {
        order.sort_unstable();
    }
    let mut chosen = vec![false; scored.len()];
    let mut used = 0;
    let mut take = |i: usize, chosen: &mut Vec<bool>| -> bool {
        if chosen[i] {
            return true;
        }
        let (a, b) = scored[i].0;
        let c = cost(&text[a..b]) + 1;
        if used + c > budget {
            return false;
        }
        used += c;
        chosen[i] = true;
        true
    };
    for &i in &order {
        if scored[i].1 == 0 && chosen.iter().any(|&c| c) {
            break;
        }
        if !take(i, &mut chosen) {
            continue;
        }
        let (a, b) = scored[i].0;
        if leads_on(&text[a..b]) && i + 1 < scored.len() {
            take(i + 1, &mut chosen);
        }
        // Its neighbours, nearest and following first, before the next best sentence: the
        // answer often follows a sentence that restates the question, in other words.
        for d in 1..=window {
            for j in [Some(i + d).filter(|j| *j < scored.len()), i.checked_sub(d)]
                .into_iter()
                .flatten()
            {
                take(j, &mut chosen);
            }
        }
    }
    let mut out = String::new();
    let mut last: Option<usize> = None;
    for (i, ((a, b), _)) in scored.iter().enumerate() {
        if !chosen[i] {
            continue;
        }
        match last {
            None if i > 0 => out.push_str("… "),
            None => {}
            Some(prev) if prev + 1 == i => {
                let gap = &text[scored[prev].0.1..*a];
                out.push(if gap.contains('\n') { '\n' } else { ' ' });
            }
            Some(_) => out.push_str(" … "),
        }
        out.push_str(&text[*a..*b]);
        last = Some(i);
    }
    if last.is_some_and(|l| l + 1 < scored.len()) {
        out.push_str(" …");
    }
    if out.is_empty() {
        // Not even one sentence fits: the start of the best one, cut on a char boundary.
        let (a, b) = scored
            .get(order.first().copied().unwrap_or(0))
            .map_or((0, text.len()), |s| s.0);
        let mut end = a;
        for (i, ch) in text[a..b].char_indices() {
            if cost(&text[a..a + i + ch.len_utf8()]) > budget {
                break;
            }
            end = a + i + ch.len_utf8();
        }
        out.push_str(&text[a..end]);
        out.push_str(" …");
    }
    out
}

/// One passage of an extractive answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Index of the text (in the list given to [`extract`]) it comes from.
    pub source: usize,
    /// The passage: the best sentence with its neighbours, verbatim.
    pub text: String,
    /// Content terms its best sentence shares with the queries.
    pub shared: usize,
}

/// Whether a sentence names something a reader can type: a command option (`--list`), a
/// path (`/etc/modules`), or a name joined by `-` `_` `.` `/` (`cron-apt`,
/// `sources.list`). In technical documents the sentence that answers a "how do I" or
/// "which tool" question usually holds one, while the sentences around it restate the
/// question in its words.
pub fn names_command(sentence: &str) -> bool {
    ascii_tokens(sentence).any(is_command)
}

/// The runs of printable ASCII in a text, trimmed of the punctuation around words.
fn ascii_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_graphic()).map(|t| {
        t.trim_matches(|c: char| {
            matches!(
                c,
                ',' | '.'
                    | ';'
                    | ':'
                    | '!'
                    | '?'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '"'
                    | '\''
                    | '`'
            )
        })
    })
}

/// An option (`--list`), a path (`/etc/modules`) or a name joined by `-` `_` `.` `/`.
fn is_command(t: &str) -> bool {
    let b = t.as_bytes();
    let letters = b.iter().any(u8::is_ascii_alphabetic);
    let option = t.len() >= 3
        && b[0] == b'-'
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    let path = t.len() >= 3 && b[0] == b'/' && letters;
    let joined = b.windows(3).any(|w| {
        w[0].is_ascii_alphanumeric()
            && matches!(w[1], b'-' | b'_' | b'.' | b'/')
            && w[2].is_ascii_alphanumeric()
    });
    letters
        && (option || path || joined)
        && !matches!(t.to_ascii_lowercase().as_str(), "e.g" | "i.e")
}

/// The names a sentence gives that a reader could type, lowercased: commands, paths and
/// options ([`is_command`]), and words of letters and digits (`libpaper1`, `ext4`). They
/// read the same in an English and a Chinese text.
fn typed_names(sentence: &str) -> Vec<String> {
    ascii_tokens(sentence)
        .filter(|t| {
            is_command(t)
                || (t.len() >= 3
                    && t.bytes().any(|c| c.is_ascii_alphabetic())
                    && t.bytes().any(|c| c.is_ascii_digit())
                    && t.bytes().all(|c| c.is_ascii_alphanumeric()))
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The extractive answer: from each of the first `max_sources` texts (retrieved chunks,
/// best ranked first), the passage of up to `2 * window + 1` consecutive sentences that
/// best matches the `queries`, with the next sentence when the passage's last leads on to
/// it (as "use this command:" does).
///
/// A passage is scored by the content terms its middle sentence shares with the queries
/// (counted twice), those its other sentences share, and one more when it names a
/// command, path or package ([`names_command`]); ties go to the earlier passage. The
/// neighbours matter because documents often restate the question in one sentence and
/// answer it in the next, in other words. Passages whose middle sentence shares no term
/// are skipped, except from the first text, and so are passages already taken. The rank
/// of the chunk counts for more than the words of a sentence: picking passages across
/// more chunks answered fewer questions of the evaluation set (README, "Answer
/// quality").
pub fn extract(
    texts: &[&str],
    queries: &[&str],
    max_sources: usize,
    window: usize,
) -> Vec<Evidence> {
    let wanted: HashSet<String> = queries.iter().flat_map(|q| content_terms(q)).collect();
    let mut out: Vec<Evidence> = Vec::new();
    for (source, text) in texts.iter().enumerate().take(max_sources) {
        let scored = scored_sentences(text, &wanted);
        let commands: Vec<bool> = scored
            .iter()
            .map(|((a, b), _)| names_command(&text[*a..*b]))
            .collect();
        let span = |i: usize| (i.saturating_sub(window), (i + window + 1).min(scored.len()));
        let Some(best) = (0..scored.len()).max_by_key(|&i| {
            let (a, b) = span(i);
            let around: usize = scored[a..b].iter().map(|(_, shared)| shared).sum();
            let command = usize::from(commands[a..b].iter().any(|c| *c));
            (scored[i].1 + around + command, std::cmp::Reverse(i))
        }) else {
            continue;
        };
        let shared = scored[best].1;
        if shared == 0 && source > 0 {
            continue;
        }
        let (first, mut last) = span(best);
        // A command line ends like a sentence that leads on ("请执行"), so only the best
        // sentence leads on that way; any last sentence may with a colon.
        let (a, b) = scored[last - 1].0;
        let tail = &text[a..b];
        if last < scored.len()
            && (tail.ends_with([':', '：']) || (last - 1 == best && leads_on(tail)))
        {
            last += 1;
        }
        let passage = joined(text, &scored[first..last]);
        if out.iter().any(|e| e.text == passage) {
            continue;
        }
        out.push(Evidence {
            source,
            text: passage,
            shared,
        });
    }
    out
}

/// Consecutive sentences of `text`, each with its inner whitespace collapsed, joined by a
/// line break where the text breaks the line between them (commands stay on lines of
/// their own) and by a space elsewhere.
fn joined(text: &str, sentences: &[((usize, usize), usize)]) -> String {
    let mut out = String::new();
    let mut prev_end: Option<usize> = None;
    for ((a, b), _) in sentences {
        if let Some(p) = prev_end {
            out.push(if text[p..*a].contains('\n') {
                '\n'
            } else {
                ' '
            });
        }
        out.push_str(
            &text[*a..*b]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
        prev_end = Some(*b);
    }
    out
}

/// The `[n]` markers of a piece of an answer: each one's byte range and number.
fn markers(text: &str) -> Vec<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    text.match_indices('[')
        .filter_map(|(i, _)| {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            (digits > 0 && bytes.get(i + 1 + digits) == Some(&b']'))
                .then(|| text[i + 1..i + 1 + digits].parse().ok())
                .flatten()
                .map(|n| (i, i + digits + 2, n))
        })
        .collect()
}

/// A cited sentence whose markers name the wrong source gets the right one instead. Small
/// models often state one source's fact under another's number; the reader following the
/// marker should find the fact. The right source is, in this order:
///
/// - none, when a cited source holds a name the sentence gives that a reader could type
///   (`libpaper1`, `/etc/papersize`, `dpkg-divert`): names read the same in both
///   languages, so the citation holds however few other words they share; unless another
///   source gives the name too and holds at least half of the sentence's content terms
///   where the cited ones hold fewer (the same passage in the sentence's language);
/// - the only source holding one of those names, when no cited one does;
/// - the one holding most of the sentence's distinctive terms (those only one source
///   holds: `libpaper1`, `/etc/modules`, 玩具总动员), when the cited sources hold none of
///   them and it shares as many of all its terms as they do; the fact is in the names;
/// - else, when the cited sources hold fewer than half of its content terms (two at
///   least), one that holds at least half and more of them.
fn recite(sentence: &str, source_terms: &[HashSet<String>], lowered: &[String]) -> String {
    let found = markers(sentence);
    let bare = unmarked(sentence);
    let terms = content_terms(&bare);
    let count = |terms: &HashSet<String>, held: &dyn Fn(&String) -> bool| {
        terms.iter().filter(|t| held(t)).count()
    };
    let is_cited = |t: &String| {
        found.iter().any(|(_, _, n)| {
            n.checked_sub(1)
                .and_then(|i| source_terms.get(i))
                .is_some_and(|st| st.contains(t))
        })
    };
    let cited = count(&terms, &is_cited);
    let recited = |i: usize| {
        let end = bare
            .trim_end_matches(['.', '!', '?', '。', '！', '？', '；', ':', '：'])
            .len();
        format!("{} [{}]{}", bare[..end].trim_end(), i + 1, &bare[end..])
    };

    // A name the reader could type that no cited source holds and exactly one other does
    // is that source's, whichever language the rest of the sentence shares with which
    // source (an English sentence naming libpaper1 from a Chinese source).
    let names = typed_names(&bare);
    let in_cited = |name: &String| {
        found.iter().any(|(_, _, n)| {
            n.checked_sub(1)
                .and_then(|i| lowered.get(i))
                .is_some_and(|text| text.contains(name.as_str()))
        })
    };
    // The source sharing most of the sentence's content terms (the first on ties).
    let best = source_terms
        .iter()
        .enumerate()
        .map(|(i, st)| (count(&terms, &|t| st.contains(t)), i))
        .max_by_key(|&(shared, i)| (shared, std::cmp::Reverse(i)));
    let holds_most = |(shared, _): (usize, usize)| {
        terms.len() >= 2 && cited * 2 < terms.len() && shared * 2 >= terms.len() && shared > cited
    };
    if names.iter().any(in_cited) {
        // A cited source gives the name: the citation holds, however few other words the
        // sentence shares with it (a Chinese source for an English sentence), unless
        // another source gives the name too and holds most of the sentence as well (the
        // sentence's own language's version of the cited passage).
        return match best {
            Some(b @ (_, i))
                if holds_most(b) && names.iter().any(|n| lowered[i].contains(n.as_str())) =>
            {
                recited(i)
            }
            _ => sentence.to_string(),
        };
    }
    if let Some(i) = only_holder(&names, lowered) {
        return recited(i);
    }

    let distinctive = distinctive_terms(&terms, source_terms);
    if !distinctive.is_empty()
        && count(&distinctive, &is_cited) == 0
        && let Some((held, i)) = naming_source(&distinctive, source_terms)
        && held > 0
        && count(&terms, &|t| source_terms[i].contains(t)) >= cited
    {
        return recited(i);
    }

    match best {
        Some(b @ (_, i)) if holds_most(b) => recited(i),
        _ => sentence.to_string(),
    }
}

/// The one source (of the `lowered` texts) holding one of the `names`, taking the names in
/// order: the first name exactly one source holds decides.
fn only_holder(names: &[String], lowered: &[String]) -> Option<usize> {
    names.iter().find_map(|name| {
        let mut holders = lowered
            .iter()
            .enumerate()
            .filter(|(_, text)| text.contains(name.as_str()));
        match (holders.next(), holders.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    })
}

/// The terms of `terms` that exactly one source holds.
fn distinctive_terms(terms: &HashSet<String>, source_terms: &[HashSet<String>]) -> HashSet<String> {
    terms
        .iter()
        .filter(|t| source_terms.iter().filter(|st| st.contains(*t)).count() == 1)
        .cloned()
        .collect()
}

/// The source holding most of the `distinctive` terms, and how many it holds (the first
/// source on ties).
fn naming_source(
    distinctive: &HashSet<String>,
    source_terms: &[HashSet<String>],
) -> Option<(usize, usize)> {
    source_terms
        .iter()
        .enumerate()
        .map(|(i, st)| (distinctive.iter().filter(|t| st.contains(*t)).count(), i))
        .max_by_key(|&(held, i)| (held, std::cmp::Reverse(i)))
}

/// Words that answer a yes/no question and say nothing more.
const ASSENT: &[&str] = &[
    "yes",
    "yeah",
    "sure",
    "certainly",
    "indeed",
    "possible",
    "allowed",
    "可以",
    "能",
    "能够",
    "不能",
    "不",
    "需要",
    "不需要",
    "是的",
    "对",
    "会",
    "不会",
    "行",
    "没有",
];

/// Whether an answer says nothing the question did not: a bare "Yes [1]", or the
/// question restated as an answer ("Yes, you can burn and sell Debian CDs [3]"). Small
/// models answer yes/no questions this way although their sources state the fact; such an
/// answer is worth completing with the sentence that does (`/ask` does).
pub fn adds_nothing(answer: &str, question: &str) -> bool {
    static ASSENT_TERMS: LazyLock<HashSet<String>> =
        LazyLock::new(|| content_terms(&ASSENT.join(" ")));
    let asked = content_terms(question);
    content_terms(&unmarked(answer))
        .iter()
        .all(|t| asked.contains(t) || ASSENT_TERMS.contains(t))
}

/// A piece of an answer without its `[n]` markers, nor the spaces before them.
fn unmarked(text: &str) -> String {
    let mut bare = String::with_capacity(text.len());
    let mut at = 0;
    for (a, b, _) in markers(text) {
        bare.push_str(text[at..a].trim_end());
        at = b;
    }
    bare.push_str(&text[at..]);
    bare
}

/// Whether a piece of an answer holds a `[n]` citation marker.
fn has_marker(text: &str) -> bool {
    !markers(text).is_empty()
}

/// The length of the `[n]` markers (and the spaces between them) `text` starts with.
fn leading_markers(text: &str) -> usize {
    let mut end = 0;
    loop {
        let rest = &text[end..];
        let spaces = rest.len() - rest.trim_start().len();
        match markers(&rest[spaces..]).first() {
            Some(&(0, stop, _)) => end += spaces + stop,
            _ => return end,
        }
    }
}

/// Adds a citation to each sentence of `answer` that has none but gives a name a reader
/// could type (`libpaper1`, `/etc/papersize`) that only one of `sources` (numbered from 1
/// in order) holds, or whose content terms (two at least) come mostly (at least half of
/// them) from one source, or that names what only one source names (two such terms, or
/// one in a sentence naming a command, path or package: "应该装到 /usr/local/bin" from an
/// English source shares little else with it): that source's `[n]` goes before the
/// sentence's closing punctuation. Small models often state a source's fact without the
/// marker asked for; the reader still deserves to see where it comes from. Sentences matching no source stay as they are,
/// and so does everything else in the answer (line breaks, code).
pub fn attribute(answer: &str, sources: &[&str]) -> String {
    let source_terms: Vec<HashSet<String>> = sources.iter().map(|s| content_terms(s)).collect();
    let lowered: Vec<String> = sources.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut out = String::with_capacity(answer.len() + 16);
    let mut start = 0;
    for (a, b) in sentence_spans(answer) {
        // A span may begin with markers already taken with the sentence before it.
        let a = a.max(start);
        if a >= b {
            continue;
        }
        out.push_str(&answer[start..a]);
        let sentence = &answer[a..b];
        start = b;
        if has_marker(sentence) {
            out.push_str(&recite(sentence, &source_terms, &lowered));
            continue;
        }
        // Markers right after the sentence ("... files. [1]") cite it: checked with it.
        let run = leading_markers(&answer[b..]);
        if run > 0 {
            let cited = &answer[a..b + run];
            start = b + run;
            out.push_str(&recite(cited, &source_terms, &lowered));
            continue;
        }
        let terms = content_terms(sentence);
        let best = source_terms
            .iter()
            .enumerate()
            .map(|(i, st)| (terms.iter().filter(|t| st.contains(*t)).count(), i))
            .max_by_key(|&(shared, i)| (shared, std::cmp::Reverse(i)));
        let source = match best {
            _ if let Some(i) = only_holder(&typed_names(sentence), &lowered) => Some(i),
            // A fragment of one word ("Restores", cut short) says too little to attribute.
            Some((shared, i)) if terms.len() >= 2 && shared * 2 >= terms.len() => Some(i),
            _ => naming_source(&distinctive_terms(&terms, &source_terms), &source_terms)
                .filter(|&(held, _)| held >= 2 || (held == 1 && names_command(sentence)))
                .map(|(_, i)| i),
        };
        match source {
            Some(i) => {
                let end = sentence
                    .trim_end_matches(['.', '!', '?', '。', '！', '？', '；', ':', '：'])
                    .len();
                let marker = format!(" [{}]", i + 1);
                out.push_str(&sentence[..end]);
                out.push_str(&marker);
                out.push_str(&sentence[end..]);
            }
            None => out.push_str(sentence),
        }
    }
    out.push_str(&answer[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_sentence_that_answers() {
        let text = "The office opens at eight. Backups run nightly at two o'clock. Printers are on floor 3.";
        assert_eq!(
            best_sentence(text, "when do the backups run?"),
            "Backups run nightly at two o'clock."
        );
        let zh = "公司位于北京。數據備份每天凌晨兩點進行！打印機在三樓。";
        assert_eq!(
            best_sentence(zh, "数据备份什么时候进行"),
            "數據備份每天凌晨兩點進行！"
        );
        assert_eq!(best_sentence(text, "zzz"), "The office opens at eight.");
        assert_eq!(best_sentence("  just one  ", "x"), "just one");
        assert_eq!(best_sentence("v2.3.1 is out. Use it.", "use"), "Use it.");
    }

    fn chars(text: &str) -> usize {
        text.chars().count()
    }

    #[test]
    fn evidence_keeps_matching_sentences_in_order() {
        let text = "Debian has many tools. The weather is nice today. To list the files of a package, run:\ndpkg -L foo\nPrinters are on floor 3. Nothing else here matters at all.";
        let got = evidence(
            text,
            &["How do I list the files of a package?"],
            70,
            0,
            &chars,
        );
        assert!(
            got.contains("To list the files of a package, run:\ndpkg -L foo"),
            "{got:?}"
        );
        assert!(!got.contains("weather"), "{got:?}");
        assert!(got.starts_with("… "), "{got:?}");
        // Whole when it fits.
        assert_eq!(evidence(" short. ", &["x"], 100, 0, &chars), "short.");
        // No shared term: the first sentences.
        let got = evidence(text, &["zzz"], 40, 0, &chars);
        assert!(got.starts_with("Debian has many tools."), "{got:?}");
        // Chinese, with a budget in characters.
        let zh = "公司位于北京。数据备份每天凌晨两点进行。打印机在三楼。食堂中午开门。";
        let got = evidence(zh, &["数据备份什么时候进行"], 14, 0, &chars);
        assert_eq!(got, "… 数据备份每天凌晨两点进行。 …");
        // With a window, the neighbours of the best sentence come before the next best.
        let zh = "公司位于北京。怎样自动备份数据？可以使用 cron-apt。打印机在三楼。数据很重要。";
        let got = evidence(zh, &["如何自动备份数据"], 30, 1, &chars);
        assert!(got.contains("可以使用 cron-apt。"), "{got:?}");
        assert!(!got.contains("数据很重要"), "{got:?}");
    }

    #[test]
    fn evidence_cuts_a_sentence_too_long_for_the_budget() {
        let got = evidence(
            "abcdefghij klmnop. qrstuv wxyz.",
            &["abcdefghij"],
            5,
            1,
            &chars,
        );
        assert_eq!(got, "abcde …");
    }

    #[test]
    fn extract_takes_one_passage_per_source() {
        let texts = [
            "Packages are great. To list the files of a package, use:\ndpkg -L foo",
            "Nothing relevant here.",
            "The files of a package are listed by dpkg -L. Other things.",
        ];
        let got = extract(&texts, &["how to list the files of a package"], 3, 0);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].source, 0);
        // The line break before the command is kept.
        assert_eq!(
            got[0].text,
            "To list the files of a package, use:\ndpkg -L foo"
        );
        assert_eq!(got[1].source, 2);
        assert_eq!(got[1].text, "The files of a package are listed by dpkg -L.");
        assert!(extract(&[], &["x"], 3, 1).is_empty());
    }

    #[test]
    fn extract_keeps_the_answer_next_to_the_restated_question() {
        // The best-matching sentence restates the question; the answer, in other words,
        // follows it.
        let text = "Debian has many tools. Can the system be upgraded automatically? \
                    You can use cron-apt; it runs from cron. Unrelated closing words here. \
                    More unrelated words.";
        let got = extract(&[text], &["upgrade the system automatically"], 2, 1);
        assert_eq!(got.len(), 1);
        assert!(got[0].text.contains("cron-apt"), "{got:?}");
        assert!(!got[0].text.contains("More unrelated"), "{got:?}");
        let alone = extract(&[text], &["upgrade the system automatically"], 2, 0);
        assert!(!alone[0].text.contains("cron-apt"), "{alone:?}");
    }

    #[test]
    fn names_command_finds_what_can_be_typed() {
        for yes in [
            "Run dpkg --list.",
            "编辑 /etc/modules 文件",
            "您可以使用 cron-apt；",
            "Edit sources.list first",
            "use `apt_pkg` here",
        ] {
            assert!(names_command(yes), "{yes}");
        }
        for no in [
            "Plain words only.",
            "e.g. this one",
            "第 8 章",
            "a - b",
            "1.5 million",
        ] {
            assert!(!names_command(no), "{no}");
        }
    }

    #[test]
    fn attribute_cites_sentences_that_come_from_a_source() {
        let sources = [
            "The printers are on the third floor.",
            "Backups run every night at two o'clock.",
        ];
        assert_eq!(
            attribute("Backups run every night at two. Ask IT for more.", &sources),
            "Backups run every night at two [2]. Ask IT for more."
        );
        // Already cited, before or after the full stop: unchanged.
        for cited in ["Backups run nightly [2].", "Backups run nightly. [2]"] {
            assert_eq!(attribute(cited, &sources), cited);
        }
        assert_eq!(
            attribute("备份在每天凌晨两点进行。", &["每天凌晨两点进行备份。"]),
            "备份在每天凌晨两点进行 [1]。"
        );
        assert_eq!(attribute("", &sources), "");
        // Cited, but under the wrong number: the marker moves to the source that holds it.
        assert_eq!(
            attribute("Backups run every night at two [1].", &sources),
            "Backups run every night at two [2]."
        );
        assert_eq!(
            attribute(
                "备份在每天凌晨两点进行 [2]。",
                &["每天凌晨两点进行备份。", "打印机在三楼。"]
            ),
            "备份在每天凌晨两点进行 [1]。"
        );
        // Right, or supported by no source better: unchanged.
        for kept in [
            "Backups run every night at two [2].",
            "Lunch is at noon today [1].",
        ] {
            assert_eq!(attribute(kept, &sources), kept);
        }
        // The name is the fact: a sentence naming what only another source names is that
        // source's, though most of its words are everywhere.
        let papers = [
            "Many programs print on paper of a size set for the whole system.",
            "Install the libpaper1 package, then set the paper size for every program in /etc/papersize.",
        ];
        assert_eq!(
            attribute(
                "Install the libpaper1 package for every program [1].",
                &papers
            ),
            "Install the libpaper1 package for every program [2]."
        );
        assert_eq!(
            attribute(
                "在 /etc/modules 文件里 [1]。",
                &[
                    "内核模块由 kmod 加载。",
                    "开机时加载的模块写在 /etc/modules 文件里。"
                ]
            ),
            "在 /etc/modules 文件里 [2]。"
        );
        let kept = "Install the libpaper1 package for every program [2].";
        assert_eq!(attribute(kept, &papers), kept);
        // The name only a Chinese source gives moves an English sentence's marker there,
        // though the English source shares more of its words.
        let bilingual = [
            "Install a package to set the paper size for every program.",
            "安装 libpaper1 软件包，然后在 /etc/papersize 中设置纸张大小。",
        ];
        assert_eq!(
            attribute("Install the libpaper1 software package [1].", &bilingual),
            "Install the libpaper1 software package [2]."
        );
        // A name the cited source holds too keeps the marker.
        let both = [
            "Install libpaper1 for every program.",
            "安装 libpaper1 软件包。",
        ];
        let kept = "Install the libpaper1 software package [1].";
        assert_eq!(attribute(kept, &both), kept);
        // A name both give, and the rest of the sentence only in the uncited source: the
        // marker moves to the passage in the sentence's language.
        assert_eq!(
            attribute(
                "这个单词是 Debra 和 Ian Murdock 两个名字的缩写 [1]。",
                &[
                    "This word is a contraction of the names of Debra and Ian Murdock.",
                    "这个单词是 Debra，以及 Ian Murdock，本计划的建立者，两个名字的缩写。"
                ]
            ),
            "这个单词是 Debra 和 Ian Murdock 两个名字的缩写 [2]。"
        );
        // Seen in the evaluation: the second sentence cited the English version of the
        // passage its own language's source gives word for word.
        let answer = "Deb'-ee-en，Deb 的 e 是短元音 e，重音在第一个音节 [2]。 这个单词是 Debra，以及 Ian Murdock，本计划的建立者，两个名字的缩写。 [1]";
        let sources = [
            "The project name is pronounced Deb'-ee-en, with a short e in Deb, and emphasis on the first syllable. This word is a contraction of the names of Debra and Ian Murdock, who founded the project. (Dictionaries seem to offer some ambiguity in the pronunciation of Ian (!), but Ian prefers ee'-en.)\n\nThe Debian GNU/Linux FAQ |  | Chapter 2. Getting and installing Debian GNU/Linux",
            "本计划的名字的发音为 Deb'-ee-en，Deb 的 e 是短元音 e，重音在第一个音节。这个单词是 Debra，以及 Ian Murdock，本计划的建立者，两个名字的缩写。（字典对 Ian 的发音似乎模棱两可（！），但是 Ian 本人倾向于 ee'-en。）\n\nDebian GNU/Linux 常见问题（FAQ） |  | 第 2 章 获取和安装 Debian GNU/Linux",
        ];
        assert_eq!(
            attribute(answer, &sources),
            answer.replace("缩写。 [1]", "缩写 [2]。")
        );
        // Nor does the English source's share of the words move it away from the Chinese
        // source that gives the name.
        let kept = "Install libpaper1 software package [2].";
        assert_eq!(
            attribute(
                kept,
                &[
                    "Install the software package you need.",
                    "安装 libpaper1 软件包。"
                ]
            ),
            kept
        );
        // Uncited, in another language than its source: the path only one source names
        // says where it comes from; a single ordinary word does not.
        let places = [
            "Programs not packaged by Debian belong in /usr/local/bin.",
            "Packaged programs go to /usr/bin.",
        ];
        assert_eq!(
            attribute("应该装到 /usr/local/bin 目录。", &places),
            "应该装到 /usr/local/bin 目录 [1]。"
        );
        let unnamed = "这些程序不是 Debian 打包的。";
        assert_eq!(attribute(unnamed, &places), unnamed);
        // The name decides over shared words: the English source shares "install",
        // "software" and "package", the Chinese one the package's name.
        let bilingual = [
            "Install the software package you need with apt.",
            "安装 libpaper1 软件包，然后在 /etc/papersize 中设置纸张大小。",
        ];
        assert_eq!(
            attribute("Install libpaper1 software package.", &bilingual),
            "Install libpaper1 software package [2]."
        );
    }

    #[test]
    fn bare_and_restating_answers_add_nothing() {
        let question = "Am I allowed to burn and sell Debian CDs?";
        for bare in [
            "Yes [1], [2], [3].",
            "Yes, you can burn and sell Debian CDs [3].",
            "",
        ] {
            assert!(adds_nothing(bare, question), "{bare}");
        }
        assert!(!adds_nothing(
            "Yes, you do not need permission to distribute anything we released [2].",
            question
        ));
        assert!(!adds_nothing(
            "Use alien [1].",
            "Can I install an .rpm package?"
        ));
        assert!(adds_nothing(
            "不需要授权 [2]。",
            "自己刻录 Debian 光盘拿去卖需要授权吗"
        ));
        assert!(!adds_nothing(
            "可以，用 alien 转换 [1]。",
            "能在 Debian 上安装红帽的 rpm 软件包吗"
        ));
    }
}
