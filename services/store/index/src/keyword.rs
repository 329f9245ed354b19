//! BM25 keyword search over chunk text with Tantivy.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use parking_lot::Mutex;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use zhiku_schemas::{ChunkRecord, SearchFilter, path_prefixes};

use crate::analyzer::{ANALYZER_NAME, analyzer};
use crate::{IndexError, filter_terms};

/// Distinct query terms a keyword search scores: the rarest ones. Questions have far
/// fewer; only pasted text has more.
pub const MAX_SCORED_TERMS: usize = 32;

/// Writer memory budget; Tantivy's minimum per thread is 15 MB.
const WRITER_HEAP_BYTES: usize = 50_000_000;

#[derive(Clone, Copy)]
struct Fields {
    document_id: Field,
    version_key: Field,
    text: Field,
    heading: Field,
    tags: Field,
    path_prefixes: Field,
    mime: Field,
    record: Field,
}

/// The keyword index of one knowledge base.
pub struct KeywordIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let analyzed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER_NAME)
            // BM25 needs term frequencies; no phrase queries are run, so no positions.
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        document_id: builder.add_text_field("document_id", STRING),
        // `<document id>\u{1f}<version>`: lets one delete drop all versions but one.
        version_key: builder.add_text_field("version_key", STRING),
        text: builder.add_text_field("text", analyzed.clone()),
        heading: builder.add_text_field("heading", analyzed),
        // Metadata for filters, as raw keywords (multi-valued: one value per tag, one per
        // ancestor prefix of the path); indexed only, the record holds them.
        tags: builder.add_text_field("tags", STRING),
        path_prefixes: builder.add_text_field("path_prefixes", STRING),
        mime: builder.add_text_field("mime", STRING),
        // The whole record as JSON, so a hit needs no second store.
        record: builder.add_text_field("record", STORED),
    };
    (builder.build(), fields)
}

impl KeywordIndex {
    /// Opens the index at `dir`, creating it if empty. An index whose schema is not this
    /// build's is refused with [`IndexError::Outdated`]: its chunks lack fields that
    /// searches rely on, and only re-ingesting the documents can supply them.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Keyword(e.to_string()))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| IndexError::Keyword(e.to_string()))?;
        if Index::exists(&directory).map_err(|e| IndexError::Keyword(e.to_string()))? {
            let stored = Index::open(directory.clone())?.schema();
            if stored != schema {
                let missing: Vec<&str> = schema
                    .fields()
                    .map(|(_, entry)| entry.name())
                    .filter(|name| stored.get_field(name).is_err())
                    .collect();
                return Err(IndexError::Outdated {
                    what: format!("the keyword index in {}", dir.display()),
                    detail: if missing.is_empty() {
                        "its schema differs".into()
                    } else {
                        format!("it has no {} field", missing.join(", "))
                    },
                });
            }
        }
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(ANALYZER_NAME, analyzer());
        let writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?;
        // Reloaded explicitly after each commit so a document is searchable once stored.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    fn version_term(&self, document_id: &str, version: u64) -> Term {
        Term::from_field_text(
            self.fields.version_key,
            &format!("{document_id}\u{1f}{version}"),
        )
    }

    /// Adds chunks; they become searchable at the next [`commit`](Self::commit).
    pub fn add(&self, chunks: &[ChunkRecord]) -> Result<(), IndexError> {
        let writer = self.writer.lock();
        for chunk in chunks {
            let mut doc = TantivyDocument::default();
            doc.add_text(self.fields.document_id, &chunk.document_id);
            doc.add_text(
                self.fields.version_key,
                format!("{}\u{1f}{}", chunk.document_id, chunk.version),
            );
            doc.add_text(self.fields.text, &chunk.text);
            if let Some(heading) = &chunk.heading {
                doc.add_text(self.fields.heading, heading);
            }
            for tag in &chunk.tags {
                doc.add_text(self.fields.tags, tag);
            }
            for prefix in path_prefixes(&chunk.path) {
                doc.add_text(self.fields.path_prefixes, prefix);
            }
            doc.add_text(self.fields.mime, &chunk.mime);
            let json =
                serde_json::to_string(chunk).map_err(|e| IndexError::Corrupt(e.to_string()))?;
            doc.add_text(self.fields.record, json);
            writer.add_document(doc)?;
        }
        Ok(())
    }

    /// Removes the chunks of `document_id`, except those of version `keep` if given, at the
    /// next commit.
    pub fn delete_versions(&self, document_id: &str, keep: Option<u64>) -> Result<(), IndexError> {
        let writer = self.writer.lock();
        let document = Term::from_field_text(self.fields.document_id, document_id);
        match keep {
            None => {
                writer.delete_term(document);
            }
            Some(keep) => {
                let query = BooleanQuery::new(vec![
                    (
                        Occur::Must,
                        Box::new(TermQuery::new(document, IndexRecordOption::Basic))
                            as Box<dyn Query>,
                    ),
                    (
                        Occur::MustNot,
                        Box::new(TermQuery::new(
                            self.version_term(document_id, keep),
                            IndexRecordOption::Basic,
                        )),
                    ),
                ]);
                writer.delete_query(Box::new(query))?;
            }
        }
        Ok(())
    }

    /// Durably commits the adds and deletes so far and makes them searchable.
    pub fn commit(&self) -> Result<(), IndexError> {
        let mut writer = self.writer.lock();
        if let Err(e) = writer.commit() {
            // Drop the half-written batch so the next commit does not publish it.
            let _ = writer.rollback();
            return Err(e.into());
        }
        self.reader.reload()?;
        Ok(())
    }

    /// Chunk counts per `(document id, version)`: a full scan, for reconciliation only.
    pub fn versions(&self) -> Result<HashMap<(String, u64), usize>, IndexError> {
        let searcher = self.reader.searcher();
        let mut counts = HashMap::new();
        for segment in searcher.segment_readers() {
            let store = segment
                .get_store_reader(64)
                .map_err(|e| IndexError::Keyword(e.to_string()))?;
            for doc_id in segment.doc_ids_alive() {
                let doc: TantivyDocument = store.get(doc_id)?;
                let record = self.record(&doc)?;
                *counts
                    .entry((record.document_id, record.version))
                    .or_default() += 1;
            }
        }
        Ok(counts)
    }

    fn record(&self, doc: &TantivyDocument) -> Result<ChunkRecord, IndexError> {
        let json = doc
            .get_first(self.fields.record)
            .and_then(|v| v.as_str())
            .ok_or_else(|| IndexError::Corrupt("keyword hit without a stored record".into()))?;
        serde_json::from_str(json).map_err(|e| IndexError::Corrupt(e.to_string()))
    }

    /// Number of chunks stored.
    pub fn count(&self) -> usize {
        self.reader.searcher().num_docs() as usize
    }

    /// The filter as required clauses that match or not but never score, so BM25 scores
    /// are the same with and without a filter.
    fn filter_clauses(&self, filter: &SearchFilter) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        filter_terms(filter, [f.document_id, f.tags, f.path_prefixes, f.mime])
            .into_iter()
            .map(|(field, values)| {
                let terms = values.iter().map(|v| Term::from_field_text(field, v));
                let any = ConstScoreQuery::new(Box::new(TermSetQuery::new(terms)), 0.0);
                (Occur::Must, Box::new(any) as Box<dyn Query>)
            })
            .collect()
    }

    /// BM25 search among the chunks matching `filter` for a query's `terms`, analysed as
    /// the text was ([`terms`]); each of its [`MAX_SCORED_TERMS`] rarest terms may match. The filter is part of the query, so a selective
    /// filter still yields `limit` hits when that many match.
    pub fn search(
        &self,
        terms: &[String],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        let searcher = self.reader.searcher();
        let mut seen = HashSet::new();
        let mut scored: Vec<(u64, String)> = Vec::new();
        for term in terms {
            if !seen.insert(term) {
                continue;
            }
            let frequency = [self.fields.text, self.fields.heading]
                .into_iter()
                .map(|field| {
                    searcher
                        .doc_freq(&Term::from_field_text(field, term))
                        .unwrap_or(0)
                })
                .sum::<u64>();
            // A term no chunk holds scores nothing.
            if frequency > 0 {
                scored.push((frequency, term.clone()));
            }
        }
        // Only the rarest terms are scored: they carry nearly all of BM25's weight, and a
        // pasted page of a thousand common terms otherwise costs seconds of CPU.
        scored.sort();
        scored.truncate(MAX_SCORED_TERMS);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (_, term) in scored {
            for field in [self.fields.text, self.fields.heading] {
                clauses.push((
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, &term),
                        IndexRecordOption::WithFreqs,
                    )),
                ));
            }
        }
        if clauses.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        if let Some(filter) = filter {
            let mut clauses = self.filter_clauses(filter);
            clauses.push((Occur::Must, query));
            query = Box::new(BooleanQuery::new(clauses));
        }
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        top.into_iter()
            .map(|(score, address)| {
                let doc: TantivyDocument = searcher.doc(address)?;
                Ok((self.record(&doc)?, score))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::terms;

    fn chunk(doc: &str, i: u32, text: &str, version: u64) -> ChunkRecord {
        ChunkRecord {
            chunk_id: ChunkRecord::make_id(doc, i),
            document_id: doc.into(),
            document_name: format!("{doc}.txt"),
            chunk_index: i,
            text: text.into(),
            heading: None,
            page: None,
            ocr: false,
            ocr_confidence: None,
            version,
            tags: Vec::new(),
            path: format!("{doc}.txt"),
            mime: "text/plain".into(),
        }
    }

    #[test]
    fn a_pasted_page_is_scored_by_its_rarest_terms() {
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::open(dir.path()).unwrap();
        // Forty words every chunk holds, and one word only the answer holds.
        let common: Vec<String> = (0..40).map(|i| format!("common{i}")).collect();
        let mut chunks: Vec<ChunkRecord> = (0..20)
            .map(|i| chunk("filler", i, &common.join(" "), 1))
            .collect();
        chunks.push(chunk("answer", 0, &format!("{} zebrafish", common[0]), 1));
        index.add(&chunks).unwrap();
        index.commit().unwrap();
        // The rare word last, after more common terms than are scored, and words no chunk
        // holds: it is still among the terms scored.
        let unknown: Vec<String> = (0..500).map(|i| format!("absent{i}")).collect();
        let query = format!("{} {} zebrafish", unknown.join(" "), common.join(" "));
        let hits = index.search(&terms(&query), 3, None).unwrap();
        assert_eq!(hits[0].0.chunk_id, "answer#0");
    }

    #[test]
    fn finds_chinese_and_english_and_replaces_versions() {
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::open(dir.path()).unwrap();
        index
            .add(&[
                chunk("a", 0, "数据库的备份策略很重要。", 1),
                chunk("a", 1, "The kernel schedules processes.", 1),
                chunk("b", 0, "网络配置使用 DHCP。", 2),
            ])
            .unwrap();
        assert_eq!(index.count(), 0, "nothing is visible before the commit");
        index.commit().unwrap();
        assert_eq!(index.count(), 3);

        let hits = index.search(&terms("數據庫備份"), 5, None).unwrap();
        assert_eq!(hits[0].0.chunk_id, "a#0");
        let hits = index.search(&terms("scheduling process"), 5, None).unwrap();
        assert_eq!(hits[0].0.chunk_id, "a#1");

        index
            .add(&[chunk("a", 0, "Completely new text.", 3)])
            .unwrap();
        index.commit().unwrap();
        assert_eq!(index.versions().unwrap().len(), 3);
        index.delete_versions("a", Some(3)).unwrap();
        index.commit().unwrap();
        assert_eq!(index.count(), 2);
        assert!(index.search(&terms("数据库"), 5, None).unwrap().is_empty());
        assert_eq!(
            index.search(&terms("completely"), 5, None).unwrap()[0]
                .0
                .version,
            3
        );

        drop(index);
        let reopened = KeywordIndex::open(dir.path()).unwrap();
        assert_eq!(reopened.count(), 2);
        assert_eq!(
            reopened.search(&terms("DHCP"), 5, None).unwrap()[0]
                .0
                .document_id,
            "b"
        );
        reopened.delete_versions("b", None).unwrap();
        reopened.commit().unwrap();
        assert_eq!(reopened.count(), 1);
        assert_eq!(
            reopened.versions().unwrap(),
            HashMap::from([(("a".to_string(), 3), 1)])
        );
    }

    #[test]
    fn punctuation_only_query_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::open(dir.path()).unwrap();
        index.add(&[chunk("a", 0, "text", 1)]).unwrap();
        index.commit().unwrap();
        assert!(index.search(&terms("？！。"), 5, None).unwrap().is_empty());
    }

    #[test]
    fn filters_apply_inside_the_search() {
        use crate::test_support::{CHUNKS, cases, corpus, documents};
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::open(dir.path()).unwrap();
        let records: Vec<ChunkRecord> = corpus().into_iter().map(|(r, _)| r).collect();
        index.add(&records).unwrap();
        index.commit().unwrap();
        let unfiltered = index
            .search(&terms("alpha eng"), records.len(), None)
            .unwrap();
        for (filter, expected) in cases() {
            let hits = index
                .search(&terms("alpha eng"), records.len(), Some(&filter))
                .unwrap();
            assert_eq!(documents(&hits), expected, "{filter:?}");
            assert_eq!(hits.len(), expected.len() * CHUNKS as usize, "{filter:?}");
            // The filter selects; it does not change BM25 scores.
            for (hit, score) in &hits {
                let same = unfiltered.iter().find(|(r, _)| r.chunk_id == hit.chunk_id);
                assert_eq!(same.map(|(_, s)| *s), Some(*score), "{filter:?}");
            }
        }
        // "eng" ranks its own chunks first, yet a filter excluding them fills the limit.
        let hr = serde_json::from_value(serde_json::json!({"tags": ["hr"]})).unwrap();
        let hits = index.search(&terms("alpha eng"), 4, Some(&hr)).unwrap();
        assert_eq!(hits.len(), 4);
        assert_eq!(documents(&hits), ["leave", "policy"]);
    }

    #[test]
    fn an_index_without_the_metadata_fields_is_outdated() {
        use tantivy::schema::TEXT;
        let dir = tempfile::tempdir().unwrap();
        // The schema of the build before filters.
        let mut builder = Schema::builder();
        builder.add_text_field("document_id", STRING);
        builder.add_text_field("version_key", STRING);
        builder.add_text_field("text", TEXT);
        builder.add_text_field("heading", TEXT);
        builder.add_text_field("record", STORED);
        Index::create_in_dir(dir.path(), builder.build()).unwrap();
        let error = KeywordIndex::open(dir.path()).err().unwrap();
        assert!(matches!(error, IndexError::Outdated { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("older version of zhiku"), "{message}");
        assert!(message.contains("tags, path_prefixes, mime"), "{message}");
    }
}
