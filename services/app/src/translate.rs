//! Cross-language retrieval by query translation.
//!
//! Dense retrieval with a multilingual embedder bridges Chinese and English only weakly,
//! and BM25 not at all: a question whose only answer is written in the other language
//! loses to same-language chunks about neighbouring topics. So, when a knowledge base
//! holds documents in the language the query is not in, the LLM translates the query into
//! that language, both are searched (each with the full hybrid search), and the two
//! rankings are merged (see [`merge`]).
//!
//! - **Languages** are two: mostly CJK ideographs ("Chinese") or not ("English", which
//!   stands for any Latin-script text), as [`is_mostly_cjk`] tells. A document's language
//!   is that of most of its first [`SAMPLE_CHUNKS`] chunks. The KB's documents are
//!   classified once per document version and remembered in [`Translator`]; a search
//!   compares the visible versions with what it remembers (in memory, no I/O) and reads
//!   only the chunks of documents that changed.
//! - **Translation** is one short greedy generation ([`translation_messages`]), checked by
//!   [`check_translation`]; a translation that fails the checks is not used, and the query
//!   is searched as given. Translations (and failures) are cached per query.
//! - **A generation slot** is taken for the translation: it is a decode on the same model
//!   and threads as answers (seconds on two cores: ~10 s per query with search on the
//!   shared eval machine), so running it outside the slots would overcommit the CPU the
//!   slots are sized for.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use zhiku_generate::{ChatMessage, FinishReason, is_mostly_cjk};
use zhiku_index::KnowledgeBase;
use zhiku_schemas::SearchHit;

use crate::error::ServiceError;

/// Chunks of a document read to tell its language.
pub const SAMPLE_CHUNKS: u32 = 16;

/// Translations remembered; the oldest is forgotten first.
const CACHE_ENTRIES: usize = 1024;

/// Most tokens a translation may take; a longer output is not a translation.
pub(crate) const MAX_TRANSLATION_TOKENS: u32 = 96;

/// The two languages told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// Mostly CJK ideographs.
    Chinese,
    /// Anything else, in practice English.
    English,
}

impl Lang {
    /// The language of a text.
    pub fn of(text: &str) -> Self {
        if is_mostly_cjk(text) {
            Lang::Chinese
        } else {
            Lang::English
        }
    }

    /// The other language.
    pub fn other(self) -> Self {
        match self {
            Lang::Chinese => Lang::English,
            Lang::English => Lang::Chinese,
        }
    }
}

/// What the service remembers between searches: document languages per KB and
/// translations per query.
#[derive(Default)]
pub struct Translator {
    kbs: Mutex<HashMap<String, KbLangs>>,
    pub(crate) cache: Mutex<Cache>,
}

/// The language of each visible document of one KB, by version.
struct KbLangs {
    /// The KB these are about: a KB deleted and created again under the same name is
    /// another object, and starts afresh.
    kb: Weak<KnowledgeBase>,
    documents: HashMap<String, (u64, Option<Lang>)>,
}

/// Translations by (query, target language), bounded, oldest out first.
#[derive(Default)]
pub(crate) struct Cache {
    entries: HashMap<(String, Lang), Option<String>>,
    order: VecDeque<(String, Lang)>,
}

impl Cache {
    pub(crate) fn get(&self, key: &(String, Lang)) -> Option<Option<String>> {
        self.entries.get(key).cloned()
    }

    pub(crate) fn put(&mut self, key: (String, Lang), value: Option<String>) {
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > CACHE_ENTRIES {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }
}

impl Translator {
    /// Whether the KB holds at least one document in `lang`. Documents whose version
    /// changed since the last call are classified now (a read of their first chunks).
    pub fn kb_has(&self, kb: &Arc<KnowledgeBase>, lang: Lang) -> Result<bool, ServiceError> {
        let name = kb.meta().name;
        let mut kbs = self.kbs.lock();
        let entry = kbs.entry(name).or_insert_with(|| KbLangs {
            kb: Arc::downgrade(kb),
            documents: HashMap::new(),
        });
        if !std::ptr::eq(entry.kb.as_ptr(), Arc::as_ptr(kb)) {
            entry.kb = Arc::downgrade(kb);
            entry.documents.clear();
        }
        let view = kb.view();
        let visible = view.documents();
        let ids: HashSet<&str> = visible.iter().map(|(id, _, _)| *id).collect();
        entry.documents.retain(|id, _| ids.contains(id.as_str()));
        for (id, version, _) in visible {
            if entry.documents.get(id).is_some_and(|(v, _)| *v == version) {
                continue;
            }
            let chunks = view.document_chunks(id, SAMPLE_CHUNKS)?;
            let lang = document_lang(chunks.iter().map(|c| c.text.as_str()));
            entry.documents.insert(id.to_string(), (version, lang));
        }
        Ok(entry.documents.values().any(|(_, l)| *l == Some(lang)))
    }
}

/// The language of most of a document's chunks (ties: Chinese); none without chunks.
pub fn document_lang<'a>(chunks: impl Iterator<Item = &'a str>) -> Option<Lang> {
    let (mut chinese, mut english) = (0usize, 0usize);
    for text in chunks {
        match Lang::of(text) {
            Lang::Chinese => chinese += 1,
            Lang::English => english += 1,
        }
    }
    match (chinese, english) {
        (0, 0) => None,
        (c, e) if c >= e => Some(Lang::Chinese),
        _ => Some(Lang::English),
    }
}

/// Whether a character is a CJK ideograph (as [`is_mostly_cjk`] counts them).
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF)
}

/// The chat that asks for a translation of `query` into `target`.
///
/// One example exchange comes first: without it a small model often answers the question
/// instead of translating it.
pub fn translation_messages(query: &str, target: Lang) -> Vec<ChatMessage> {
    const ZH: &str = "怎样用 apt-get 安装一个软件包？";
    const EN: &str = "How do I install a package with apt-get?";
    let (system, example, translation) = match target {
        Lang::English => (
            "Translate the user's text from Chinese into English. Do not answer it: only \
             translate it. Keep commands, package names, file names and code unchanged. \
             Output only the English translation.",
            ZH,
            EN,
        ),
        Lang::Chinese => (
            "把用户的文字从英文翻译成简体中文。不要回答，只翻译。命令、软件包名、文件名和代码保持不变。只输出中文译文。",
            EN,
            ZH,
        ),
    };
    vec![
        ChatMessage::system(system),
        ChatMessage::user(example),
        ChatMessage::assistant(translation),
        ChatMessage::user(query),
    ]
}

/// Words of `query` that must appear verbatim in a translation: every Latin-script word of
/// a Chinese query; in an English one, words that look technical (holding a digit or one of
/// `. _ / : + -`, or in capitals, e.g. `apt-get`, `/etc/fstab`, `DNS`).
pub fn verbatim_terms(query: &str) -> Vec<String> {
    let chinese = is_mostly_cjk(query);
    let mut terms: Vec<String> = Vec::new();
    let words = query
        .split(|c: char| !(c.is_ascii_alphanumeric() || "._/:+-".contains(c)))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.chars().any(|c| c.is_ascii_alphanumeric()));
    for word in words {
        let technical = word.chars().any(|c| !c.is_ascii_alphabetic())
            || (word.len() >= 2 && word.chars().all(|c| c.is_ascii_uppercase()));
        if (chinese || technical) && !terms.iter().any(|t| t == word) {
            terms.push(word.to_string());
        }
    }
    terms
}

/// The model's output as a usable translation of `query` into `target`, or `None`: it
/// must have ended by itself (not at the token budget), be one line, non-empty, in the
/// target language (into Chinese: holding an ideograph, as English terms are kept; into
/// English: holding none), not the query itself, a question if the query is one (ends with a
/// question mark), and not absurdly long (over four times the query's characters plus 32
/// into English, twice plus 16 into Chinese): the last two catch a model that answers
/// instead of translating. Labels and quotes around it are removed;
/// technical terms of the query missing from it are appended.
pub fn check_translation(
    output: &str,
    finish: FinishReason,
    query: &str,
    target: Lang,
) -> Option<String> {
    if finish != FinishReason::Stop {
        return None;
    }
    let mut text = output.trim();
    for label in [
        "English translation:",
        "Translation:",
        "English:",
        "翻译：",
        "译文：",
        "中文译文：",
        "中文：",
    ] {
        if let Some(rest) = text.strip_prefix(label) {
            text = rest.trim();
        }
    }
    let text = text
        .trim_matches(|c| matches!(c, '"' | '\'' | '“' | '”' | '「' | '」' | '`'))
        .trim();
    let query = query.trim();
    let chars = query.chars().count();
    let longest = match target {
        Lang::English => chars * 4 + 32,
        Lang::Chinese => chars * 2 + 16,
    };
    let asks = |t: &str| t.ends_with('?') || t.ends_with('？');
    let acceptable = !text.is_empty()
        && (!asks(query) || asks(text))
        && !text.contains('\n')
        && text.chars().count() <= longest
        && match target {
            // Technical terms kept in English may outnumber the Chinese words.
            Lang::Chinese => text.chars().any(is_cjk),
            Lang::English => !text.chars().any(is_cjk),
        }
        && text.to_lowercase() != query.to_lowercase();
    if !acceptable {
        return None;
    }
    let lower = text.to_lowercase();
    let missing: Vec<String> = verbatim_terms(query)
        .into_iter()
        .filter(|t| !lower.contains(&t.to_lowercase()))
        .collect();
    Some(if missing.is_empty() {
        text.to_string()
    } else {
        format!("{text} {}", missing.join(" "))
    })
}

/// Merges the ranking of the query as given (`original`) with that of its translation,
/// best first, each chunk once, at most `top_k`.
///
/// The two lists are merged like sorted runs: each keeps its own (hybrid) order, and the
/// next hit is taken from the list whose head has the higher key. A hit's key is its
/// dense similarity to the query that found it, less `margin` for the translation (the
/// caller's, per target language: the embedder scores Chinese text higher); a
/// hit the dense side did not find inherits the key of the hit above it, so keys never
/// rise down a list. The keys tell which query matched better: a question answered in
/// its own language finds its answer at about the same similarity as the translation
/// finds the other language's version of it, and the margin keeps the original first;
/// a question answered only in the other language matches its own language's chunks
/// poorly, and the translation's hits go first. Without dense scores (keyword search)
/// the lists alternate, the original first.
///
/// `twins[i]`, when given, names the original hit that translation hit `i` is the other
/// language's version of ([`twins`]): that original hit takes its place, so a question
/// whose answer exists in both languages gets it in its own language, moved up to where
/// the translation found it.
pub fn merge(
    original: Vec<SearchHit>,
    translated: Vec<SearchHit>,
    twins: &[Option<usize>],
    margin: f32,
    top_k: usize,
) -> Vec<SearchHit> {
    let translated: Vec<SearchHit> = translated
        .into_iter()
        .enumerate()
        .map(|(i, hit)| match twins.get(i).copied().flatten() {
            Some(o) if o < original.len() => SearchHit {
                // The key is the translation's match; the hit, the original's chunk.
                dense_score: hit.dense_score,
                ..original[o].clone()
            },
            _ => hit,
        })
        .collect();
    let dense = original
        .iter()
        .chain(&translated)
        .any(|h| h.dense_score.is_some());
    let keyed = |hits: Vec<SearchHit>, translation: bool| -> VecDeque<(f32, SearchHit)> {
        let penalty = if translation { margin } else { 0.0 };
        let mut last = f32::INFINITY;
        hits.into_iter()
            .enumerate()
            .map(|(rank, hit)| {
                let key = if dense {
                    let key = hit.dense_score.map_or(last, |s| (s - penalty).min(last));
                    last = key;
                    key
                } else {
                    -(rank as f32) - if translation { 0.5 } else { 0.0 }
                };
                (key, hit)
            })
            .collect()
    };
    let mut original = keyed(original, false);
    let mut translated = keyed(translated, true);
    let mut seen: HashSet<String> = HashSet::new();
    let mut merged = Vec::with_capacity(top_k);
    while merged.len() < top_k {
        let take_original = match (original.front(), translated.front()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((a, _)), Some((b, _))) => a >= b,
        };
        let next = if take_original {
            original.pop_front()
        } else {
            translated.pop_front()
        };
        if let Some((_, hit)) = next
            && seen.insert(hit.chunk_id.clone())
        {
            merged.push(hit);
        }
    }
    merged
}

/// For each translation hit, the original hit it is the other language's version of:
/// the original hit whose stored vector is nearest to its own, with cosine similarity at
/// least `threshold`, when it is also the original hit's nearest among the translation's
/// hits. The multilingual embedder puts a passage and its translation only a little
/// closer than two passages on one topic; asking both to choose each other keeps a
/// passage found only in the other language from being taken for the version of a
/// neighbour. `None` where there is no such hit or a vector is missing.
pub fn twins(
    original: &[Option<Vec<f32>>],
    translated: &[Option<Vec<f32>>],
    threshold: f32,
) -> Vec<Option<usize>> {
    let similarity: Vec<Vec<f32>> = translated
        .iter()
        .map(|t| {
            original
                .iter()
                .map(|o| match (t, o) {
                    (Some(t), Some(o)) => cosine(t, o),
                    _ => f32::NEG_INFINITY,
                })
                .collect()
        })
        .collect();
    let nearest = |scores: &mut dyn Iterator<Item = f32>| {
        scores
            .enumerate()
            .fold(None, |best: Option<(usize, f32)>, (i, s)| match best {
                Some((_, b)) if b >= s => best,
                _ => Some((i, s)),
            })
    };
    (0..translated.len())
        .map(|t| {
            let (o, s) = nearest(&mut similarity[t].iter().copied())?;
            let (back, _) = nearest(&mut similarity.iter().map(|row| row[o]))?;
            (s >= threshold && back == t).then_some(o)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator > 0.0 {
        dot / denominator
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, dense: Option<f32>) -> SearchHit {
        SearchHit {
            dense_score: dense,
            ..SearchHit::from_record(
                zhiku_schemas::ChunkRecord {
                    chunk_id: id.into(),
                    document_id: "d".into(),
                    document_name: "d".into(),
                    chunk_index: 0,
                    text: id.into(),
                    heading: None,
                    page: None,
                    ocr: false,
                    ocr_confidence: None,
                    version: 1,
                    tags: Vec::new(),
                    path: String::new(),
                    mime: String::new(),
                },
                0.0,
            )
        }
    }

    fn ids(hits: &[SearchHit]) -> Vec<&str> {
        hits.iter().map(|h| h.chunk_id.as_str()).collect()
    }

    #[test]
    fn languages_of_texts_and_documents() {
        assert_eq!(Lang::of("如何升级 Debian 系统？"), Lang::Chinese);
        assert_eq!(Lang::of("How do I upgrade Debian?"), Lang::English);
        assert_eq!(Lang::Chinese.other(), Lang::English);
        assert_eq!(
            document_lang(["中文段落", "English paragraph", "另一个中文段落"].into_iter()),
            Some(Lang::Chinese)
        );
        assert_eq!(
            document_lang(["English", "more English", "中文"].into_iter()),
            Some(Lang::English)
        );
        assert_eq!(document_lang(std::iter::empty()), None);
    }

    #[test]
    fn translations_are_checked() {
        let stop = FinishReason::Stop;
        let q = "怎样查看 dpkg 装了哪些文件？";
        assert_eq!(
            check_translation(
                " How do I see which files dpkg installed?\n",
                stop,
                q,
                Lang::English
            ),
            Some("How do I see which files dpkg installed?".into())
        );
        // Labels and quotes go; a technical term the model dropped is put back.
        assert_eq!(
            check_translation(
                "Translation: \"How do I see the installed files?\"",
                stop,
                q,
                Lang::English
            ),
            Some("How do I see the installed files? dpkg".into())
        );
        // Cut off at the token budget, empty, still Chinese, or an essay: rejected.
        let long = "word ".repeat(40);
        for (output, finish) in [
            ("How do I see", FinishReason::Length),
            ("  ", stop),
            ("怎样查看文件？", stop),
            (long.as_str(), stop),
            ("How do I\nsee them?", stop),
        ] {
            assert_eq!(
                check_translation(output, finish, q, Lang::English),
                None,
                "{output:?}"
            );
        }
        // Into Chinese: English terms may outnumber the Chinese words.
        assert_eq!(
            check_translation(
                "什么是 Recommends 和 Suggests？",
                stop,
                "What are Recommends and Suggests?",
                Lang::Chinese
            ),
            Some("什么是 Recommends 和 Suggests？".into())
        );
        // An answer instead of a translation of a question is rejected.
        assert_eq!(
            check_translation(
                "Debian runs on many CPUs.",
                stop,
                "Debian 能在哪些 CPU 上运行？",
                Lang::English
            ),
            None
        );
        // Into Chinese: English output or the question repeated are rejected.
        let e = "How do I remove old kernels with apt-get?";
        assert_eq!(check_translation(e, stop, e, Lang::Chinese), None);
        assert_eq!(
            check_translation("如何用 apt-get 删除旧内核？", stop, e, Lang::Chinese),
            Some("如何用 apt-get 删除旧内核？".into())
        );
        assert_eq!(
            check_translation("如何删除旧内核？", stop, e, Lang::Chinese),
            Some("如何删除旧内核？ apt-get".into())
        );
    }

    #[test]
    fn verbatim_terms_are_technical_words() {
        assert_eq!(
            verbatim_terms("How do I edit /etc/fstab or use apt-get on ARM64 with DNS?"),
            ["/etc/fstab", "apt-get", "ARM64", "DNS"]
        );
        assert_eq!(
            verbatim_terms("用 dpkg -L 查看 Debian 软件包"),
            ["dpkg", "-L", "Debian"]
        );
        assert!(verbatim_terms("What is a package?").is_empty());
    }

    #[test]
    fn merge_keeps_the_original_first_unless_the_translation_matches_clearly_better() {
        // Same-language question: the answer (a) and the other language's version of it
        // (x) match about equally; the margin keeps a first.
        let original = vec![hit("a", Some(0.90)), hit("b", Some(0.85))];
        let translated = vec![hit("x", Some(0.91)), hit("a", Some(0.84))];
        assert_eq!(
            ids(&merge(original, translated, &[], 0.02, 3)),
            ["a", "x", "b"]
        );
        // Cross-language question: the original's hits match poorly, the translation's
        // answer well; it goes first. Duplicates count once, and top_k holds.
        let original = vec![hit("b", Some(0.84)), hit("c", Some(0.83))];
        let translated = vec![hit("x", Some(0.90)), hit("b", Some(0.80)), hit("y", None)];
        assert_eq!(
            ids(&merge(original, translated, &[], 0.02, 4)),
            ["x", "b", "c", "y"]
        );
        assert_eq!(
            ids(&merge(
                vec![hit("b", Some(0.84))],
                vec![hit("x", Some(0.9))],
                &[],
                0.02,
                1
            )),
            ["x"]
        );
    }

    #[test]
    fn a_twin_in_the_other_language_gives_its_place_to_the_original_hit() {
        // The translation found x, the other language's version of b, first: b moves up
        // to x's place instead of x entering; y, with no twin, enters as usual.
        let original = vec![hit("a", Some(0.86)), hit("b", Some(0.85))];
        let translated = vec![hit("x", Some(0.95)), hit("y", Some(0.84))];
        assert_eq!(
            ids(&merge(original, translated, &[Some(1), None], 0.02, 4)),
            ["b", "a", "y"]
        );
        let same = twins(
            &[Some(vec![1.0, 0.0]), None, Some(vec![0.6, 0.8])],
            &[Some(vec![0.62, 0.78]), Some(vec![0.0, 1.0]), None],
            0.95,
        );
        assert_eq!(same, [Some(2), None, None]);
        // Near enough, but the original hit has a nearer translation hit: not its twin.
        let crowded = twins(
            &[Some(vec![1.0, 0.0])],
            &[Some(vec![0.96, 0.28]), Some(vec![1.0, 0.01])],
            0.95,
        );
        assert_eq!(crowded, [None, Some(0)]);
    }

    #[test]
    fn merge_without_dense_scores_alternates_original_first() {
        let original = vec![hit("a", None), hit("b", None)];
        let translated = vec![hit("x", None), hit("a", None), hit("y", None)];
        assert_eq!(
            ids(&merge(original, translated, &[], 0.02, 10)),
            ["a", "x", "b", "y"]
        );
    }

    #[test]
    fn a_keyword_only_hit_inherits_the_key_above_it() {
        // y (no dense score) sits under x's key 0.90 - 0.02 = 0.88, above b (0.85).
        let original = vec![hit("a", Some(0.95)), hit("b", Some(0.85))];
        let translated = vec![hit("x", Some(0.90)), hit("y", None)];
        assert_eq!(
            ids(&merge(original, translated, &[], 0.02, 4)),
            ["a", "x", "y", "b"]
        );
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest() {
        let mut cache = Cache::default();
        for i in 0..CACHE_ENTRIES + 5 {
            cache.put((i.to_string(), Lang::English), Some(format!("t{i}")));
        }
        assert_eq!(cache.entries.len(), CACHE_ENTRIES);
        assert_eq!(cache.get(&("0".into(), Lang::English)), None);
        let last = (CACHE_ENTRIES + 4).to_string();
        assert_eq!(
            cache.get(&(last.clone(), Lang::English)),
            Some(Some(format!("t{last}")))
        );
        // A failed translation is remembered too, so it is not tried again.
        cache.put(("q".into(), Lang::Chinese), None);
        assert_eq!(cache.get(&("q".into(), Lang::Chinese)), Some(None));
    }
}
