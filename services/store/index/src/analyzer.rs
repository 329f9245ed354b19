//! The text analyzer shared by indexing and querying.
//!
//! Chinese has no spaces, so text is segmented with jieba (search mode, which also emits
//! the shorter words inside long compounds, for recall). Traditional characters are folded
//! to simplified before segmentation so 資料庫 finds 数据库 and jieba's simplified dictionary
//! applies. Punctuation and whitespace tokens are dropped and positions renumbered; Latin
//! tokens are lowercased and stemmed (English).

use std::sync::{Arc, OnceLock};

use jieba_rs::{Jieba, TokenizeMode};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// Name under which the analyzer is registered in every index.
pub const ANALYZER_NAME: &str = "zhiku";

fn jieba() -> Arc<Jieba> {
    // Loading the dictionary takes a noticeable moment: do it once per process.
    static JIEBA: OnceLock<Arc<Jieba>> = OnceLock::new();
    JIEBA.get_or_init(|| Arc::new(Jieba::new())).clone()
}

/// Folds traditional Chinese characters to simplified; other text is unchanged.
pub fn fold_chinese(text: &str) -> String {
    fast2s::convert(text)
}

/// Segments text with jieba after folding traditional to simplified.
#[derive(Clone)]
pub struct JiebaTokenizer {
    jieba: Arc<Jieba>,
}

impl Default for JiebaTokenizer {
    fn default() -> Self {
        Self { jieba: jieba() }
    }
}

/// Tokens of one text, produced eagerly (jieba segments whole sentences anyway).
pub struct JiebaTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = JiebaTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JiebaTokenStream {
        let folded = fold_chinese(text);
        let tokens = self
            .jieba
            .tokenize(&folded, TokenizeMode::Search, true)
            .into_iter()
            // Spaces and punctuation carry no meaning for retrieval.
            .filter(|t| t.word.chars().any(char::is_alphanumeric))
            .enumerate()
            .map(|(position, t)| Token {
                // Offsets point into the folded text; no caller highlights with them.
                offset_from: t.byte_start,
                offset_to: t.byte_end,
                position,
                text: t.word.to_string(),
                position_length: 1,
            })
            .collect();
        JiebaTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for JiebaTokenStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// The full analyzer: jieba segmentation, lowercasing, English stemming.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(JiebaTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The terms a text analyzes to, in order; queries are built from these.
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The words of a text as written (not lowercased or stemmed, traditional characters
/// kept): jieba's plain segmentation, without the extra sub-words search mode adds, and
/// without punctuation and whitespace. For building queries that people and the
/// embedding model read, where [`terms`] would give stems like `packag`.
pub fn words(text: &str) -> Vec<String> {
    jieba()
        .cut(text, true)
        .into_iter()
        .filter(|t| t.word.chars().any(char::is_alphanumeric))
        .map(|t| t.word.to_string())
        .collect()
}

/// Whether a word (as written, any case) is a function word that says little about
/// what a question or sentence is about: English and Chinese question words, pronouns,
/// particles and the like. Queries keep them (BM25 weighs them down by itself); code that
/// compares texts by their words leaves them out.
pub fn is_stopword(word: &str) -> bool {
    let lower = word.to_lowercase();
    EN_STOPWORDS.contains(&lower.as_str()) || ZH_STOPWORDS.contains(&word)
}

const EN_STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "explain",
    "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "know", "many", "me",
    "more", "most", "much", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only",
    "or", "other", "our", "out", "over", "own", "please", "same", "she", "should", "so", "some",
    "such", "tell", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
    "you", "your",
];

const ZH_STOPWORDS: &[&str] = &[
    "的",
    "了",
    "是",
    "在",
    "有",
    "和",
    "与",
    "及",
    "或",
    "吗",
    "呢",
    "吧",
    "啊",
    "呀",
    "么",
    "什么",
    "怎么",
    "怎样",
    "怎么样",
    "如何",
    "哪",
    "哪些",
    "哪个",
    "哪里",
    "多少",
    "几",
    "为什么",
    "是否",
    "能否",
    "可以",
    "能",
    "会",
    "要",
    "请",
    "请问",
    "问",
    "我",
    "你",
    "您",
    "他",
    "她",
    "它",
    "我们",
    "你们",
    "他们",
    "她们",
    "它们",
    "这",
    "那",
    "这个",
    "那个",
    "这些",
    "那些",
    "其",
    "该",
    "此",
    "也",
    "都",
    "就",
    "还",
    "又",
    "一下",
    "告诉",
    "介绍",
    "一些",
    "有些",
    "有没有",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_chinese_and_drops_punctuation() {
        let t = terms("我们使用数据库。");
        assert!(t.contains(&"数据库".to_string()), "{t:?}");
        assert!(!t.iter().any(|w| w == "。"), "{t:?}");
    }

    #[test]
    fn words_are_kept_as_written() {
        assert_eq!(
            words("What does the Pro plan include?"),
            ["What", "does", "the", "Pro", "plan", "include"]
        );
        let w = words("智库备份的专业版包括什么？");
        assert!(w.iter().any(|w| w == "专业版" || w == "专业"), "{w:?}");
        assert!(!w.iter().any(|w| w == "？"), "{w:?}");
    }

    #[test]
    fn folds_traditional_to_simplified() {
        let simplified = terms("数据库的网络设置");
        let traditional = terms("數據庫的網絡設置");
        assert_eq!(simplified, traditional);
    }

    #[test]
    fn lowercases_and_stems_english() {
        let t = terms("Installing Packages");
        assert_eq!(t, vec!["instal", "packag"]);
    }

    #[test]
    fn identifiers_survive_whole() {
        // Commands, encodings, versions and code names must match exactly, so they are
        // kept as one term (with their parts as extra terms for recall).
        assert_eq!(terms("od -t x1"), ["od", "t", "x1"]);
        assert_eq!(terms("GB18030"), ["gb18030"]);
        assert_eq!(terms("SIGKILL"), terms("sigkill"));
        assert!(terms("iso-8859-1").contains(&"iso-8859-1".to_string()));
        assert!(terms("v2.3.1").contains(&"v2.3.1".to_string()));
        assert!(terms("x86_64").contains(&"x86_64".to_string()));
        assert!(terms("第十二条").contains(&"第十二条".to_string()));
    }

    #[test]
    fn mixed_language() {
        let t = terms("用 apt-get 安装软件包");
        assert!(t.contains(&"apt".to_string()), "{t:?}");
        assert!(t.contains(&"安装".to_string()), "{t:?}");
    }
}
