//! Retrieval for a question: the checked search, with the query's translation when the
//! knowledge base holds the other language.

use super::*;
use zhiku_retrieve::Query;

/// What sentences are matched against: the search query, the question as asked when a
/// rewrite made them differ, and the query's translation when one was searched (so a
/// source in the other language has its matching sentences found too).
pub(super) fn search_queries<'a>(
    question: &'a str,
    search_query: &'a str,
    translated: Option<&'a str>,
) -> Vec<&'a str> {
    let mut queries = vec![search_query];
    if question != search_query {
        queries.push(question);
    }
    queries.extend(translated);
    queries
}

impl Services {
    /// `POST /v1/kbs/{kb}/search`: [`Services::search`], and with `translate: true` also
    /// the query's translation (see `crate::translate`). Returns the hits and the
    /// translation searched, if any.
    pub fn search_translated(
        &self,
        kb: &KbName,
        request: &SearchRequest,
    ) -> Result<(Vec<SearchHit>, Option<String>), ServiceError> {
        let search = self.check_search(request)?;
        self.search_across(kb, &search, request.translate == Some(true), &NoClient)
    }

    /// The ask path's retrieval: the checked search for the question, with its translation
    /// unless the request or `search.translate` says not to. A wait for the translation's
    /// generation slot watches `sink`'s client.
    pub fn ask_search(
        &self,
        kb: &KbName,
        ask: &AskRequest,
        search: &CheckedSearch,
        sink: &dyn AskSink,
    ) -> Result<(Vec<SearchHit>, Option<String>), ServiceError> {
        let translate = ask
            .translate
            .unwrap_or(self.config.search.translate == TranslateMode::Auto);
        self.search_across(kb, search, translate, sink)
    }

    /// Runs `search` and, when `translate` and the KB holds documents in the other
    /// language and the LLM gives a translation that passes the checks, the translation
    /// too, merging the rankings.
    fn search_across(
        &self,
        kb: &KbName,
        search: &CheckedSearch,
        translate: bool,
        sink: &dyn AskSink,
    ) -> Result<(Vec<SearchHit>, Option<String>), ServiceError> {
        let original = self.retrieve(kb, search)?;
        let Some(generator) = self.generator.as_ref().filter(|_| translate) else {
            return Ok((original, None));
        };
        let query = search.query.text();
        let target = Lang::of(query).other();
        if !self.translator.kb_has(&self.kb(kb)?, target)? {
            return Ok((original, None));
        }
        let Some(translation) = self.translation(generator.as_ref(), query, target, sink)? else {
            return Ok((original, None));
        };
        let top_k = original.len().max(search.options.top_k);
        let translated = self.retrieve(
            kb,
            &CheckedSearch {
                query: Query::new(&translation),
                options: search.options.clone(),
            },
        )?;
        let margin = match target {
            Lang::English => self.config.search.translate_margin_en,
            Lang::Chinese => self.config.search.translate_margin_zh,
        };
        let twins = self.twins(kb, &original, &translated)?;
        Ok((
            merge(original, translated, &twins, margin, top_k),
            Some(translation),
        ))
    }

    /// [`twins`] of the translation's hits among the original's, from their stored
    /// vectors; none when turned off or when the store cannot give vectors back.
    fn twins(
        &self,
        kb: &KbName,
        original: &[SearchHit],
        translated: &[SearchHit],
    ) -> Result<Vec<Option<usize>>, ServiceError> {
        let threshold = self.config.search.translate_twin;
        if threshold > 1.0 || original.is_empty() || translated.is_empty() {
            return Ok(Vec::new());
        }
        let kb = self.kb(kb)?;
        let view = kb.view();
        fn keys(hits: &[SearchHit]) -> Vec<(&str, u32)> {
            hits.iter()
                .map(|h| (h.document_id.as_str(), h.chunk_index))
                .collect()
        }
        match (
            view.vectors_of(&keys(original)),
            view.vectors_of(&keys(translated)),
        ) {
            (Ok(o), Ok(mut t)) => {
                // A chunk both rankings found is no one's twin: it would be every original
                // hit's nearest (itself) and hide the twin from the choosing.
                for (vector, hit) in t.iter_mut().zip(translated) {
                    if original.iter().any(|o| o.chunk_id == hit.chunk_id) {
                        *vector = None;
                    }
                }
                Ok(twins(&o, &t, threshold))
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "no stored vectors: translation twins not looked for");
                Ok(Vec::new())
            }
        }
    }

    /// `text` translated into the other language (Chinese for English text, English for
    /// Chinese) by the LLM, checked and cached as query translations are; `None` without
    /// an LLM or when the output fails the checks. For judging answers across languages.
    pub fn translate_text(&self, text: &str) -> Option<String> {
        let generator = self.generator.as_ref()?;
        let target = Lang::of(text).other();
        self.translation(generator.as_ref(), text, target, &NoClient)
            .ok()
            .flatten()
    }

    /// The checked translation of `query` into `target`, from the cache or the LLM (in a
    /// generation slot); `None` when the model's output fails the checks or the model
    /// fails, which is logged, not an error: the search goes on with the query alone.
    fn translation(
        &self,
        generator: &dyn Generator,
        query: &str,
        target: Lang,
        sink: &dyn AskSink,
    ) -> Result<Option<String>, ServiceError> {
        let key = (query.to_string(), target);
        if let Some(cached) = self.translator.cache.lock().get(&key) {
            return Ok(cached);
        }
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: MAX_TRANSLATION_TOKENS,
            stop: vec!["\n".into()],
            ban_cjk: target == Lang::English,
            ..SamplingParams::default()
        };
        let slot = self.acquire_slot(sink)?;
        let generation =
            generator.generate(&translation_messages(query, target), &params, &mut |_| true);
        drop(slot);
        let checked = match generation {
            Ok(g) => {
                let checked = check_translation(&g.text, g.finish_reason, query, target);
                if checked.is_none() {
                    tracing::debug!(output = %g.text, "translation rejected");
                }
                checked
            }
            Err(e) => {
                tracing::warn!(error = %e, "translation failed; searching the query alone");
                return Ok(None);
            }
        };
        self.translator.cache.lock().put(key, checked.clone());
        Ok(checked)
    }
}

/// A sink for searches, which have no client to watch while waiting for a slot.
struct NoClient;

impl AskSink for NoClient {
    fn token(&mut self, _piece: &str) -> bool {
        true
    }
}
