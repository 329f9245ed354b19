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
