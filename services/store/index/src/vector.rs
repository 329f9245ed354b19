//! Dense vector storage behind one trait: embedded Qdrant Edge by default.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use qdrant_edge::{
    Condition, CountRequest, CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeShard,
    EdgeVectorParams, FieldCondition, FieldIndexOperations, Filter, HnswIndexConfig, JsonPath,
    Match, NamedQuery, PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStruct, QueryEnum, QueryRequest, Range, ScoringQuery, ScrollRequest,
    SearchParams, UpdateOperation, ValueVariants, VectorInternal, VectorStructInternal,
    WithPayloadInterface, WithVector,
};
use zhiku_schemas::{ChunkRecord, SearchFilter, path_prefixes};

use crate::{IndexError, filter_terms};

/// Where chunk vectors are stored and searched. Implementations must be shareable.
pub trait VectorStore: Send + Sync {
    /// Dimension every vector must have.
    fn dimension(&self) -> usize;
    /// Inserts or overwrites chunks with their vectors; a chunk is identified by its id and
    /// version, so a new version never overwrites the old one.
    fn upsert(&self, points: &[(ChunkRecord, Vec<f32>)]) -> Result<(), IndexError>;
    /// Removes the chunks of a document, except those of version `keep` if given.
    fn delete_versions(&self, document_id: &str, keep: Option<u64>) -> Result<(), IndexError> {
        self.delete_versions_below(document_id, keep, u64::MAX)
    }
    /// Removes the chunks of a document's versions below `below`, except those of version
    /// `keep` if given: versions are handed out in increasing order, so a write that
    /// started after the caller chose `below` is never touched.
    fn delete_versions_below(
        &self,
        document_id: &str,
        keep: Option<u64>,
        below: u64,
    ) -> Result<(), IndexError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), IndexError>;
    /// The chunks of one document version whose index lies in `from..=to`, in order, with
    /// their dense vectors when `with_vectors`.
    fn scroll_range(
        &self,
        document_id: &str,
        version: u64,
        from: u32,
        to: u32,
        with_vectors: bool,
    ) -> Result<Vec<MaybeVector>, IndexError>;
    /// [`scroll_range`](Self::scroll_range) with the vectors: for moving a KB to another
    /// store without embedding it again, and for comparing hits across languages.
    fn points(
        &self,
        document_id: &str,
        version: u64,
        from: u32,
        to: u32,
    ) -> Result<Vec<(ChunkRecord, Vec<f32>)>, IndexError> {
        require_vectors(self.scroll_range(document_id, version, from, to, true)?)
    }
    /// Chunk counts per `(document id, version)`: a full scan, for reconciliation only.
    fn versions(&self) -> Result<HashMap<(String, u64), usize>, IndexError>;
    /// The chunks of one document version whose index lies in `from..=to`, in order.
    fn chunks(
        &self,
        document_id: &str,
        version: u64,
        from: u32,
        to: u32,
    ) -> Result<Vec<ChunkRecord>, IndexError> {
        Ok(records(self.scroll_range(
            document_id,
            version,
            from,
            to,
            false,
        )?))
    }
    /// The `limit` chunks nearest to `vector` among those matching `filter`, best first,
    /// with cosine similarity. The filter is part of the query, not applied to its
    /// results, so a selective filter still yields `limit` hits when that many match.
    fn search(
        &self,
        vector: &[f32],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError>;
    /// The `limit` chunks truly nearest to `vector`, by brute force: the reference the
    /// approximate index's recall is measured against (`zhiku bench search --recall`).
    fn search_exact(
        &self,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError>;
    /// Number of chunks stored.
    fn count(&self) -> Result<usize, IndexError>;
    /// Builds indexes and merges segments after a batch of writes.
    fn optimize(&self) -> Result<(), IndexError>;
    /// Whether the store also indexes chunk text for [`keyword_search`](Self::keyword_search),
    /// so the KB keeps no keyword index of its own beside it.
    fn indexes_keywords(&self) -> bool {
        false
    }
    /// BM25 search for a query's analysed `terms` among the chunks matching `filter`;
    /// only stores that [index keywords](Self::indexes_keywords) have it.
    fn keyword_search(
        &self,
        _terms: &[String],
        _limit: usize,
        _filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        Err(IndexError::Vector(
            "this vector store has no keyword index".into(),
        ))
    }
    /// [`search`](Self::search) and [`keyword_search`](Self::keyword_search) for one
    /// hybrid query, in one request where the store allows it.
    fn hybrid_search(
        &self,
        vector: &[f32],
        terms: &[String],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<HybridHits, IndexError> {
        Ok((
            self.search(vector, limit, filter)?,
            self.keyword_search(terms, limit, filter)?,
        ))
    }
}

/// The dense and the keyword hits of one hybrid query, each best first.
pub type HybridHits = (Vec<(ChunkRecord, f32)>, Vec<(ChunkRecord, f32)>);

/// A chunk, with its vector when it was asked for.
/// A chunk, with its dense vector when asked for.
pub type MaybeVector = (ChunkRecord, Option<Vec<f32>>);

/// The chunks of scrolled points, without their vectors.
pub(crate) fn records(points: Vec<MaybeVector>) -> Vec<ChunkRecord> {
    points.into_iter().map(|(chunk, _)| chunk).collect()
}

/// Scrolled points that were asked for with their vectors: one without is corrupt.
pub(crate) fn require_vectors(
    points: Vec<MaybeVector>,
) -> Result<Vec<(ChunkRecord, Vec<f32>)>, IndexError> {
    points
        .into_iter()
        .map(|(chunk, vector)| {
            let vector = vector.ok_or_else(|| {
                IndexError::Corrupt(format!("chunk {} has no dense vector", chunk.chunk_id))
            })?;
            Ok((chunk, vector))
        })
        .collect()
}

/// HNSW graph parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Edges per node.
    pub m: usize,
    /// Candidates considered while building.
    pub ef_construct: usize,
    /// Candidates considered while searching.
    pub ef: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        // ef measured with `zhiku bench search --recall` on 100k Chinese law chunks
        // (README, Benchmarks): recall@10 against exact search was 0.975 at 64, 0.980 at
        // 128 and 0.9975 at 256, for under 1 ms more per search.
        Self {
            m: 16,
            ef_construct: 128,
            ef: 256,
        }
    }
}

/// A Qdrant Edge shard in the KB directory: the in-process Qdrant engine.
pub struct EdgeVectorStore {
    shard: EdgeShard,
    dimension: usize,
    hnsw: HnswParams,
}

pub(crate) const DOCUMENT_ID: &str = "document_id";
pub(crate) const VERSION: &str = "version";
pub(crate) const CHUNK_INDEX: &str = "chunk_index";
pub(crate) const TAGS: &str = "tags";
pub(crate) const MIME: &str = "mime";
/// Payload-only field (not part of the record): every ancestor prefix of the path, see
/// [`path_prefixes`].
pub(crate) const PATH_PREFIXES: &str = "path_prefixes";
/// Payload fields with a keyword index: documents are deleted by id, searches filtered by
/// all four. Indexed fields also let the query planner pick exact search for selective
/// filters instead of an HNSW walk that could run out of matching neighbours.
pub(crate) const KEYWORD_FIELDS: [&str; 4] = [DOCUMENT_ID, TAGS, PATH_PREFIXES, MIME];
/// Page size of reconciliation scans.
pub(crate) const SCROLL_PAGE: usize = 1_000;

fn json_path(key: &str) -> Result<JsonPath, IndexError> {
    JsonPath::try_from(key).map_err(|_| IndexError::Vector(format!("bad payload key {key}")))
}

/// Point ids must be integers or UUIDs; derive a stable UUID from chunk id and version,
/// the same in every store, so a KB moved between them keeps its ids.
pub(crate) fn point_uuid(record: &ChunkRecord) -> uuid::Uuid {
    let key = format!("{}@{}", record.chunk_id, record.version);
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes())
}

fn point_id(record: &ChunkRecord) -> PointId {
    PointId::Uuid(point_uuid(record))
}

/// The Qdrant form of a search filter: one `must` condition per field given.
fn payload_filter(filter: &SearchFilter) -> Result<Option<Filter>, IndexError> {
    let mut must = Vec::new();
    for (key, values) in filter_terms(filter, [DOCUMENT_ID, TAGS, PATH_PREFIXES, MIME]) {
        must.push(Condition::Field(FieldCondition::new_match(
            json_path(key)?,
            Match::from(values),
        )));
    }
    Ok((!must.is_empty()).then(|| Filter {
        must: Some(must),
        ..Filter::default()
    }))
}

/// The chunk stored as a point's payload.
fn chunk_record(payload: Option<qdrant_edge::Payload>) -> Result<ChunkRecord, IndexError> {
    let payload = payload.ok_or_else(|| IndexError::Corrupt("point without payload".into()))?;
    let value = serde_json::to_value(payload).map_err(|e| IndexError::Corrupt(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| IndexError::Corrupt(e.to_string()))
}

impl EdgeVectorStore {
    /// Opens the shard at `dir`, creating it for `dimension`-sized cosine vectors if absent.
    pub fn open(dir: &Path, dimension: usize, hnsw: HnswParams) -> Result<Self, IndexError> {
        let hnsw_config = HnswIndexConfig {
            m: hnsw.m,
            ef_construct: hnsw.ef_construct,
            ..HnswIndexConfig::default()
        };
        let config = EdgeConfig::builder()
            .vector(
                DEFAULT_VECTOR_NAME,
                EdgeVectorParams::builder(dimension, Distance::Cosine).build(),
            )
            .hnsw_config(hnsw_config)
            .build();
        let exists = dir.join("edge_config.json").is_file();
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Vector(e.to_string()))?;
        let shard = if exists {
            EdgeShard::load(dir, None)?
        } else {
            let shard = EdgeShard::new(dir, config)?;
            for field in KEYWORD_FIELDS {
                shard.update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: json_path(field)?,
                        field_schema: Some(PayloadFieldSchema::FieldType(
                            PayloadSchemaType::Keyword,
                        )),
                    }),
                ))?;
            }
            shard
        };
        let stored = shard
            .config()
            .vectors
            .get(DEFAULT_VECTOR_NAME)
            .map(|v| v.size)
            .unwrap_or(dimension);
        if stored != dimension {
            return Err(IndexError::Dimension {
                expected: stored,
                got: dimension,
            });
        }
        Ok(Self {
            shard,
            dimension,
            hnsw,
        })
    }

    fn versions_filter(
        document_id: &str,
        keep: Option<u64>,
        below: u64,
    ) -> Result<Filter, IndexError> {
        use qdrant_edge::external::ordered_float::OrderedFloat;
        let mut filter = Filter::new_must(Condition::Field(FieldCondition::new_match(
            json_path(DOCUMENT_ID)?,
            Match::new_value(ValueVariants::String(document_id.to_string())),
        )));
        if below < u64::MAX {
            filter
                .must
                .get_or_insert_with(Vec::new)
                .push(Condition::Field(FieldCondition::new_range(
                    json_path(VERSION)?,
                    Range {
                        lt: Some(OrderedFloat(below as f64)),
                        ..Range::default()
                    },
                )));
        }
        if let Some(keep) = keep {
            filter.must_not = Some(vec![Condition::Field(FieldCondition::new_match(
                json_path(VERSION)?,
                Match::new_value(ValueVariants::Integer(keep as i64)),
            ))]);
        }
        Ok(filter)
    }
}

impl VectorStore for EdgeVectorStore {
    fn scroll_range(
        &self,
        document_id: &str,
        version: u64,
        from: u32,
        to: u32,
        with_vectors: bool,
    ) -> Result<Vec<MaybeVector>, IndexError> {
        use qdrant_edge::external::ordered_float::OrderedFloat;
        let mut filter = Self::versions_filter(document_id, None, u64::MAX)?;
        let must = filter.must.get_or_insert_with(Vec::new);
        must.push(Condition::Field(FieldCondition::new_match(
            json_path(VERSION)?,
            Match::new_value(ValueVariants::Integer(version as i64)),
        )));
        must.push(Condition::Field(FieldCondition::new_range(
            json_path(CHUNK_INDEX)?,
            Range {
                gte: Some(OrderedFloat(from as f64)),
                lte: Some(OrderedFloat(to as f64)),
                ..Range::default()
            },
        )));
        let (records, _) = self.shard.scroll(ScrollRequest {
            offset: None,
            limit: Some((to - from) as usize + 1),
            filter: Some(filter),
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(with_vectors),
            order_by: None,
        })?;
        let mut chunks = records
            .into_iter()
            .map(|r| {
                let vector = r.vector.and_then(|v| match v {
                    VectorStructInternal::Single(v) => Some(v),
                    VectorStructInternal::Named(mut named) => {
                        match named.remove(DEFAULT_VECTOR_NAME) {
                            Some(VectorInternal::Dense(v)) => Some(v),
                            _ => None,
                        }
                    }
                    VectorStructInternal::MultiDense(_) => None,
                });
                Ok((chunk_record(r.payload)?, vector))
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        chunks.sort_by_key(|(c, _)| c.chunk_index);
        Ok(chunks)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn upsert(&self, points: &[(ChunkRecord, Vec<f32>)]) -> Result<(), IndexError> {
        let mut list = Vec::with_capacity(points.len());
        for (record, vector) in points {
            if vector.len() != self.dimension {
                return Err(IndexError::Dimension {
                    expected: self.dimension,
                    got: vector.len(),
                });
            }
            let mut payload =
                serde_json::to_value(record).map_err(|e| IndexError::Corrupt(e.to_string()))?;
            payload[PATH_PREFIXES] = path_prefixes(&record.path).into();
            list.push(PointStruct::new(point_id(record), vector.clone(), payload).into());
        }
        self.shard.update(UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
        ))?;
        Ok(())
    }

    fn delete_versions_below(
        &self,
        document_id: &str,
        keep: Option<u64>,
        below: u64,
    ) -> Result<(), IndexError> {
        self.shard.update(UpdateOperation::PointOperation(
            PointOperations::DeletePointsByFilter(Self::versions_filter(document_id, keep, below)?),
        ))?;
        Ok(())
    }

    fn flush(&self) -> Result<(), IndexError> {
        // The shard's flush expects no concurrent writer and panics otherwise; writers are
        // serialised by the KB, but a panic must still not take the process down.
        catch_unwind(AssertUnwindSafe(|| self.shard.flush()))
            .map_err(|_| IndexError::Vector("flushing the shard failed".into()))
    }

    fn versions(&self) -> Result<HashMap<(String, u64), usize>, IndexError> {
        let mut counts = HashMap::new();
        let mut offset = None;
        loop {
            let (records, next) = self.shard.scroll(ScrollRequest {
                offset,
                limit: Some(SCROLL_PAGE),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })?;
            for record in records {
                let chunk = chunk_record(record.payload)?;
                *counts
                    .entry((chunk.document_id, chunk.version))
                    .or_default() += 1;
            }
            match next {
                Some(next) => offset = Some(next),
                None => return Ok(counts),
            }
        }
    }

    fn search(
        &self,
        vector: &[f32],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        self.nearest(vector, limit, filter, false)
    }

    fn search_exact(
        &self,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        self.nearest(vector, limit, None, true)
    }

    fn count(&self) -> Result<usize, IndexError> {
        Ok(self.shard.count(CountRequest {
            filter: None,
            exact: true,
        })?)
    }

    fn optimize(&self) -> Result<(), IndexError> {
        self.shard.optimize()?;
        Ok(())
    }
}

impl EdgeVectorStore {
    /// Nearest neighbours through the HNSW graph, or by brute force with `exact`.
    fn nearest(
        &self,
        vector: &[f32],
        limit: usize,
        filter: Option<&SearchFilter>,
        exact: bool,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        if vector.len() != self.dimension {
            return Err(IndexError::Dimension {
                expected: self.dimension,
                got: vector.len(),
            });
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let points = self.shard.query(QueryRequest {
            prefetches: vec![],
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: VectorInternal::Dense(vector.to_vec()),
                using: None,
            }))),
            filter: filter.map(payload_filter).transpose()?.flatten(),
            score_threshold: None,
            limit,
            offset: 0,
            params: Some(SearchParams {
                hnsw_ef: Some(self.hnsw.ef),
                exact,
                ..SearchParams::default()
            }),
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        })?;
        points
            .into_iter()
            .map(|p| Ok((chunk_record(p.payload)?, p.score)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(doc: &str, i: u32) -> ChunkRecord {
        ChunkRecord {
            chunk_id: ChunkRecord::make_id(doc, i),
            document_id: doc.into(),
            document_name: format!("{doc}.md"),
            chunk_index: i,
            text: format!("text {i}"),
            heading: Some("A > B".into()),
            page: Some(2),
            ocr: false,
            ocr_confidence: None,
            version: 1,
            tags: vec!["t".into()],
            path: format!("dir/{doc}.md"),
            mime: "text/markdown".into(),
        }
    }

    #[test]
    fn upsert_search_delete_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeVectorStore::open(dir.path(), 3, HnswParams::default()).unwrap();
        store
            .upsert(&[
                (chunk("a", 0), vec![1.0, 0.0, 0.0]),
                (chunk("a", 1), vec![0.0, 1.0, 0.0]),
                (chunk("b", 0), vec![0.0, 0.0, 1.0]),
            ])
            .unwrap();
        let hits = store.search(&[0.9, 0.1, 0.0], 2, None).unwrap();
        assert_eq!(hits[0].0, chunk("a", 0));
        assert!(hits[0].1 > hits[1].1);
        assert_eq!(store.count().unwrap(), 3);
        // A second version of "a" sits beside the first until the first is dropped.
        let mut v2 = chunk("a", 0);
        v2.version = 2;
        store.upsert(&[(v2, vec![1.0, 0.0, 0.0])]).unwrap();
        assert_eq!(store.count().unwrap(), 4);
        let versions = store.versions().unwrap();
        assert_eq!(versions[&("a".to_string(), 1)], 2);
        assert_eq!(versions[&("a".to_string(), 2)], 1);
        let around = store.chunks("a", 1, 0, 5).unwrap();
        assert_eq!(
            around.iter().map(|c| c.chunk_index).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(store.chunks("a", 1, 1, 1).unwrap()[0].chunk_index, 1);
        assert!(store.chunks("a", 7, 0, 5).unwrap().is_empty());
        store.delete_versions("a", Some(2)).unwrap();
        assert_eq!(store.count().unwrap(), 2);
        store.delete_versions("a", None).unwrap();
        assert_eq!(store.count().unwrap(), 1);
        store.flush().unwrap();
        store.optimize().unwrap();
        assert!(matches!(
            store.upsert(&[(chunk("c", 0), vec![1.0])]),
            Err(IndexError::Dimension { .. })
        ));
        drop(store);
        let store = EdgeVectorStore::open(dir.path(), 3, HnswParams::default()).unwrap();
        assert_eq!(
            store.search(&[0.0, 0.0, 1.0], 5, None).unwrap()[0]
                .0
                .document_id,
            "b"
        );
        // One process owns a shard at a time (the WAL is locked).
        drop(store);
        assert!(matches!(
            EdgeVectorStore::open(dir.path(), 4, HnswParams::default()),
            Err(IndexError::Dimension { .. })
        ));
    }

    #[test]
    fn filters_apply_inside_the_search() {
        use crate::test_support::{CHUNKS, cases, corpus, documents};
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeVectorStore::open(dir.path(), 3, HnswParams::default()).unwrap();
        store.upsert(&corpus()).unwrap();
        let all = corpus().len();
        for (filter, expected) in cases() {
            let hits = store.search(&[0.0, 0.0, 1.0], all, Some(&filter)).unwrap();
            assert_eq!(documents(&hits), expected, "{filter:?}");
            assert_eq!(hits.len(), expected.len() * CHUNKS as usize, "{filter:?}");
        }
        // The query is nearest to "eng", yet a filter excluding it still fills the limit.
        let hr = serde_json::from_value(serde_json::json!({"tags": ["hr"]})).unwrap();
        let hits = store.search(&[0.0, 0.0, 1.0], 4, Some(&hr)).unwrap();
        assert_eq!(hits.len(), 4);
        assert_eq!(documents(&hits), ["leave", "policy"]);
        // A chunk read back carries its metadata, and the derived prefixes stay out of it.
        let chunk = &store.chunks("leave", 1, 0, 0).unwrap()[0];
        assert_eq!(chunk, &corpus()[3].0);
    }
}
