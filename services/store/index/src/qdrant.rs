//! A Qdrant server or cluster as the store of a KB's chunks, through `qdrant-client`
//! (gRPC): the scale-out side of the [`VectorStore`] seam.
//!
//! One collection per KB store (`<prefix><kb>.<store>`; KB names hold no dot): Qdrant computes the IDF of the
//! sparse BM25 vectors per collection, so a KB's keyword scores never depend on another
//! KB's documents, and deleting a KB is dropping its collections. Each point holds the
//! chunk's dense vector (`dense`), its BM25 term weights (`bm25`, with `Modifier::Idf`
//! applied by the server) and the whole [`ChunkRecord`] as payload, so the KB needs no
//! Tantivy index beside it: any node can answer a search.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, HnswConfigDiffBuilder, Modifier, PointId,
    PointStruct, Query, QueryBatchPointsBuilder, QueryPoints, QueryPointsBuilder, Range,
    ScoredPoint, ScrollPointsBuilder, SearchParamsBuilder, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder,
    VectorsConfigBuilder, VectorsSelector, vector_output, vectors_config,
    with_vectors_selector::SelectorOptions,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use zhiku_schemas::{ChunkRecord, SearchFilter, path_prefixes};

use crate::vector::{
    CHUNK_INDEX, DOCUMENT_ID, KEYWORD_FIELDS, MIME, MaybeVector, PATH_PREFIXES, SCROLL_PAGE, TAGS,
    VERSION, point_uuid,
};
use crate::{HnswParams, HybridHits, IndexError, VectorStore, analyzer, filter_terms};

/// Name of the dense vector in every collection.
const DENSE: &str = "dense";
/// Name of the sparse BM25 vector in every collection.
const BM25: &str = "bm25";
/// Points per upsert request: keeps a request far below gRPC's message limit even for
/// large vectors and long chunks.
const UPSERT_BATCH: usize = 256;
/// BM25's term-frequency saturation and length normalisation, as Tantivy uses them.
const BM25_K1: f32 = 1.2;
const BM25_B: f32 = 0.75;
/// The average lengths in analysed terms that BM25's length normalisation compares
/// against, of a chunk's text and of its heading. Tantivy measures them over its index;
/// writers on many nodes cannot, so they are constants: what the default 256-token chunks
/// analyse to (the Debian FAQ evaluation KB, 434 chunks in both languages: text 104 terms,
/// heading breadcrumbs 21).
const BM25_AVG_TEXT_TERMS: f32 = 104.0;
const BM25_AVG_HEADING_TERMS: f32 = 21.0;

/// How to reach the Qdrant cluster and how to lay out new collections.
#[derive(Debug, Clone)]
pub struct QdrantSettings {
    /// gRPC address of any node, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    /// API key, if the cluster requires one.
    pub api_key: Option<String>,
    /// Prefix of every collection name, so several deployments can share a cluster.
    pub collection_prefix: String,
    /// Shards per new collection.
    pub shard_number: u32,
    /// Copies of each shard.
    pub replication_factor: u32,
    /// Replicas that must confirm a write before it counts as done.
    pub write_consistency_factor: u32,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// HNSW parameters of new collections and of searches.
    pub hnsw: HnswParams,
}

/// One client for the cluster, shared by all KBs, with the small runtime its async calls
/// run on: the stores' callers are synchronous (like Qdrant Edge's), and may be threads of
/// another runtime, so calls are sent to this one and waited for.
pub struct QdrantConnection {
    client: Qdrant,
    runtime: Option<tokio::runtime::Runtime>,
    settings: QdrantSettings,
}

impl Drop for QdrantConnection {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for QdrantConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the settings: they hold the API key.
        write!(f, "QdrantConnection({})", self.settings.url)
    }
}

fn qdrant_error(what: &str, e: QdrantError) -> IndexError {
    IndexError::Vector(format!("Qdrant {what}: {e}"))
}

impl QdrantConnection {
    /// Connects to the cluster and checks that it answers.
    pub fn connect(settings: QdrantSettings) -> Result<Self, IndexError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zhiku-qdrant")
            .enable_all()
            .build()
            .map_err(|e| IndexError::Vector(format!("starting the Qdrant client: {e}")))?;
        let client = {
            let _context = runtime.enter();
            Qdrant::from_url(&settings.url)
                .api_key(settings.api_key.clone())
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout)
                .skip_compatibility_check()
                .build()
                .map_err(|e| qdrant_error("client", e))?
        };
        let connection = Self {
            client,
            runtime: Some(runtime),
            settings,
        };
        connection
            .call("health check", |c| async move { c.health_check().await })
            .map_err(|e| {
                IndexError::Vector(format!(
                    "cannot reach Qdrant at {}: {e}",
                    connection.settings.url
                ))
            })?;
        Ok(connection)
    }

    /// The settings connected with.
    pub fn settings(&self) -> &QdrantSettings {
        &self.settings
    }

    /// Runs one request on the client's runtime and waits for its answer; works from any
    /// thread, including another runtime's.
    fn call<T, F, Fut>(&self, what: &str, request: F) -> Result<T, IndexError>
    where
        F: FnOnce(Qdrant) -> Fut,
        Fut: Future<Output = Result<T, QdrantError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(IndexError::Vector("the Qdrant client is closed".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let future = request(self.client.clone());
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .map_err(|_| IndexError::Vector(format!("Qdrant {what}: the client stopped")))?
            .map_err(|e| qdrant_error(what, e))
    }

    /// The collection of one KB store.
    pub fn collection(&self, kb: &str, store: &str) -> String {
        format!("{}{kb}.{store}", self.settings.collection_prefix)
    }

    /// The KB a collection of this deployment belongs to.
    fn kb_of<'a>(&self, collection: &'a str) -> Option<&'a str> {
        let rest = collection.strip_prefix(&self.settings.collection_prefix)?;
        rest.split_once('.').map(|(kb, _)| kb)
    }

    /// Drops the collections of KB `kb` other than store `keep` (all with `""`): those a
    /// reindex replaced, or of a KB deleted.
    pub fn remove_retired(&self, kb: &str, keep: &str) -> Result<(), IndexError> {
        let keep = self.collection(kb, keep);
        for name in self.collections_of(kb)? {
            if name != keep {
                self.call("delete collection", |c| async move {
                    c.delete_collection(name).await
                })?;
            }
        }
        Ok(())
    }

    /// The collections of KB `kb`, sorted.
    pub fn collections_of(&self, kb: &str) -> Result<Vec<String>, IndexError> {
        let listed = self.call(
            "list collections",
            |c| async move { c.list_collections().await },
        )?;
        let mut names: Vec<String> = listed
            .collections
            .into_iter()
            .map(|c| c.name)
            .filter(|name| self.kb_of(name) == Some(kb))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The fields a chunk's terms are counted in, each with its own dimensions (so its own
/// IDF) and length normalisation, as Tantivy scores its text and heading fields apart:
/// a term of a short heading weighs more than the same term in a long text.
#[derive(Clone, Copy)]
enum Field {
    Text,
    Heading,
}

/// Stable sparse index of an analysed term in a field: FNV-1a, so every node and every
/// version of zhiku maps a term to the same dimension.
fn term_id(field: Field, term: &str) -> u32 {
    let seed: &[u8] = match field {
        Field::Text => b"",
        Field::Heading => b"\x1fheading\x1f",
    };
    seed.iter()
        .chain(term.as_bytes())
        .fold(0x811c_9dc5u32, |hash, byte| {
            (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
        })
}

/// The BM25 term weights of a chunk's text and heading (analysed as Tantivy analyses
/// them): the term-frequency part of BM25; the server multiplies in the IDF.
fn document_weights(record: &ChunkRecord) -> (Vec<u32>, Vec<f32>) {
    let mut weights: HashMap<u32, f32> = HashMap::new();
    let fields = [
        (Field::Text, Some(record.text.as_str()), BM25_AVG_TEXT_TERMS),
        (
            Field::Heading,
            record.heading.as_deref(),
            BM25_AVG_HEADING_TERMS,
        ),
    ];
    for (field, text, average) in fields {
        let terms = text.map(analyzer::terms).unwrap_or_default();
        let mut counts: HashMap<u32, f32> = HashMap::new();
        for term in &terms {
            *counts.entry(term_id(field, term)).or_default() += 1.0;
        }
        let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * terms.len() as f32 / average);
        for (id, tf) in counts {
            // Two terms whose ids collide add up, as one term would.
            *weights.entry(id).or_default() += tf * (BM25_K1 + 1.0) / (tf + norm);
        }
    }
    let mut weights: Vec<(u32, f32)> = weights.into_iter().collect();
    weights.sort_by_key(|(id, _)| *id);
    weights.into_iter().unzip()
}

/// A query's terms as a sparse vector: each distinct term once in each field, weight 1.
fn query_weights(terms: &[String]) -> (Vec<u32>, Vec<f32>) {
    let mut ids: Vec<u32> = terms
        .iter()
        .flat_map(|t| [term_id(Field::Text, t), term_id(Field::Heading, t)])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let weights = vec![1.0; ids.len()];
    (ids, weights)
}

/// The Qdrant form of a search filter, built from the same terms as the other stores'.
fn payload_filter(filter: &SearchFilter) -> Option<Filter> {
    let must: Vec<Condition> = filter_terms(filter, [DOCUMENT_ID, TAGS, PATH_PREFIXES, MIME])
        .into_iter()
        .map(|(key, values)| Condition::matches(key, values))
        .collect();
    (!must.is_empty()).then(|| Filter::must(must))
}

fn versions_filter(document_id: &str, keep: Option<u64>, below: u64) -> Filter {
    let mut filter = Filter::must([Condition::matches(DOCUMENT_ID, document_id.to_string())]);
    if below < u64::MAX {
        filter.must.push(Condition::range(
            VERSION,
            Range {
                lt: Some(below as f64),
                ..Range::default()
            },
        ));
    }
    if let Some(keep) = keep {
        filter.must_not = vec![Condition::matches(VERSION, keep as i64)];
    }
    filter
}

fn chunk_record(
    payload: HashMap<String, qdrant_client::qdrant::Value>,
) -> Result<ChunkRecord, IndexError> {
    Payload::from(payload)
        .deserialize()
        .map_err(|e| IndexError::Corrupt(e.to_string()))
}

fn scored(points: Vec<ScoredPoint>) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
    points
        .into_iter()
        .map(|p| Ok((chunk_record(p.payload)?, p.score)))
        .collect()
}

/// One KB store as a Qdrant collection.
pub struct QdrantVectorStore {
    connection: std::sync::Arc<QdrantConnection>,
    collection: String,
    dimension: usize,
}

impl QdrantVectorStore {
    /// Opens the collection of store `store` of KB `kb`, creating it (with its payload
    /// indexes) for `dimension`-sized cosine vectors if absent.
    pub fn open(
        connection: std::sync::Arc<QdrantConnection>,
        kb: &str,
        store: &str,
        dimension: usize,
    ) -> Result<Self, IndexError> {
        let collection = connection.collection(kb, store);
        let store = Self {
            connection,
            collection,
            dimension,
        };
        let name = store.collection.clone();
        let exists = store.connection.call("collection exists", |c| async move {
            c.collection_exists(name).await
        })?;
        if !exists {
            store.create()?;
        }
        let stored = store.stored_dimension()?;
        if stored != dimension {
            return Err(IndexError::Dimension {
                expected: stored,
                got: dimension,
            });
        }
        Ok(store)
    }

    fn create(&self) -> Result<(), IndexError> {
        let settings = self.connection.settings();
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(
            DENSE,
            VectorParamsBuilder::new(self.dimension as u64, Distance::Cosine).hnsw_config(
                HnswConfigDiffBuilder::default()
                    .m(settings.hnsw.m as u64)
                    .ef_construct(settings.hnsw.ef_construct as u64),
            ),
        );
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            BM25,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        let request = CreateCollectionBuilder::new(&self.collection)
            .vectors_config(vectors)
            .sparse_vectors_config(sparse)
            .shard_number(settings.shard_number)
            .replication_factor(settings.replication_factor)
            .write_consistency_factor(settings.write_consistency_factor);
        let created = self.connection.call("create collection", |c| async move {
            c.create_collection(request).await
        });
        if let Err(e) = created {
            // Another node may have created it meanwhile.
            let name = self.collection.clone();
            let exists = self.connection.call("collection exists", |c| async move {
                c.collection_exists(name).await
            })?;
            if !exists {
                return Err(e);
            }
        }
        let indexes = KEYWORD_FIELDS
            .iter()
            .map(|f| (*f, FieldType::Keyword))
            .chain([
                (VERSION, FieldType::Integer),
                (CHUNK_INDEX, FieldType::Integer),
            ]);
        for (field, kind) in indexes {
            let request =
                CreateFieldIndexCollectionBuilder::new(&self.collection, field, kind).wait(true);
            self.connection
                .call("create payload index", |c| async move {
                    c.create_field_index(request).await
                })?;
        }
        Ok(())
    }

    fn stored_dimension(&self) -> Result<usize, IndexError> {
        let name = self.collection.clone();
        let info = self.connection.call("collection info", |c| async move {
            c.collection_info(name).await
        })?;
        let size = info
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                vectors_config::Config::ParamsMap(map) => map.map.get(DENSE).map(|p| p.size),
                vectors_config::Config::Params(p) => Some(p.size),
            })
            .ok_or_else(|| IndexError::Outdated {
                what: format!("Qdrant collection {}", self.collection),
                detail: format!("it has no {DENSE:?} vector"),
            })?;
        Ok(size as usize)
    }

    /// The query for the `limit` points nearest to `query` by vector `using`.
    fn query(
        &self,
        query: VectorInput,
        using: &str,
        limit: usize,
        filter: Option<&SearchFilter>,
        exact: bool,
    ) -> QueryPoints {
        let mut request = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(query))
            .using(using)
            .limit(limit as u64)
            .with_payload(true)
            .params(
                SearchParamsBuilder::default()
                    .hnsw_ef(self.connection.settings().hnsw.ef as u64)
                    .exact(exact),
            );
        if let Some(filter) = filter.and_then(payload_filter) {
            request = request.filter(filter);
        }
        request.build()
    }

    fn nearest(
        &self,
        query: VectorInput,
        using: &str,
        limit: usize,
        filter: Option<&SearchFilter>,
        exact: bool,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = self.query(query, using, limit, filter, exact);
        let points = self
            .connection
            .call("query", |c| async move { c.query(request).await })?;
        scored(points.result)
    }

    fn check_dimension(&self, vector: &[f32]) -> Result<(), IndexError> {
        if vector.len() != self.dimension {
            return Err(IndexError::Dimension {
                expected: self.dimension,
                got: vector.len(),
            });
        }
        Ok(())
    }
}

impl VectorStore for QdrantVectorStore {
    fn scroll_range(
        &self,
        document_id: &str,
        version: u64,
        from: u32,
        to: u32,
        vectors: bool,
    ) -> Result<Vec<MaybeVector>, IndexError> {
        let filter = Filter::must([
            Condition::matches(DOCUMENT_ID, document_id.to_string()),
            Condition::matches(VERSION, version as i64),
            Condition::range(
                CHUNK_INDEX,
                Range {
                    gte: Some(f64::from(from)),
                    lte: Some(f64::from(to)),
                    ..Range::default()
                },
            ),
        ]);
        let request = ScrollPointsBuilder::new(&self.collection)
            .filter(filter)
            .limit(to.saturating_sub(from).saturating_add(1))
            .with_payload(true)
            .with_vectors(if vectors {
                SelectorOptions::Include(VectorsSelector {
                    names: vec![DENSE.to_string()],
                })
            } else {
                SelectorOptions::Enable(false)
            });
        let page = self
            .connection
            .call("scroll", |c| async move { c.scroll(request).await })?;
        let mut points = page
            .result
            .into_iter()
            .map(|p| {
                let vector = p
                    .vectors
                    .and_then(|v| v.get_vector_by_name(DENSE))
                    .and_then(|v| match v {
                        vector_output::Vector::Dense(d) => Some(d.data),
                        _ => None,
                    });
                Ok((chunk_record(p.payload)?, vector))
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        points.sort_by_key(|(c, _)| c.chunk_index);
        Ok(points)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn upsert(&self, points: &[(ChunkRecord, Vec<f32>)]) -> Result<(), IndexError> {
        for batch in points.chunks(UPSERT_BATCH) {
            let mut list = Vec::with_capacity(batch.len());
            for (record, vector) in batch {
                self.check_dimension(vector)?;
                let mut payload =
                    serde_json::to_value(record).map_err(|e| IndexError::Corrupt(e.to_string()))?;
                payload[PATH_PREFIXES] = path_prefixes(&record.path).into();
                let payload =
                    Payload::try_from(payload).map_err(|e| IndexError::Corrupt(e.to_string()))?;
                let (indices, weights) = document_weights(record);
                let vectors: HashMap<String, Vector> = HashMap::from([
                    (DENSE.to_string(), Vector::new_dense(vector.clone())),
                    (BM25.to_string(), Vector::new_sparse(indices, weights)),
                ]);
                let id = PointId::from(point_uuid(record).to_string());
                list.push(PointStruct::new(id, vectors, payload));
            }
            // `wait`: a document counts as indexed only once its chunks are searchable.
            let request = UpsertPointsBuilder::new(&self.collection, list).wait(true);
            self.connection
                .call("upsert", |c| async move { c.upsert_points(request).await })?;
        }
        Ok(())
    }

    fn delete_versions_below(
        &self,
        document_id: &str,
        keep: Option<u64>,
        below: u64,
    ) -> Result<(), IndexError> {
        let request = DeletePointsBuilder::new(&self.collection)
            .points(versions_filter(document_id, keep, below))
            .wait(true);
        self.connection
            .call("delete", |c| async move { c.delete_points(request).await })?;
        Ok(())
    }

    fn flush(&self) -> Result<(), IndexError> {
        // Every write waited for the cluster's write-ahead logs.
        Ok(())
    }

    fn versions(&self) -> Result<HashMap<(String, u64), usize>, IndexError> {
        let mut counts = HashMap::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .limit(SCROLL_PAGE as u32)
                .with_payload(true)
                .with_vectors(false);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let page = self
                .connection
                .call("scroll", |c| async move { c.scroll(request).await })?;
            for point in page.result {
                let chunk = chunk_record(point.payload)?;
                *counts
                    .entry((chunk.document_id, chunk.version))
                    .or_default() += 1;
            }
            match page.next_page_offset {
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
        self.check_dimension(vector)?;
        self.nearest(vector.to_vec().into(), DENSE, limit, filter, false)
    }

    fn search_exact(
        &self,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        self.check_dimension(vector)?;
        self.nearest(vector.to_vec().into(), DENSE, limit, None, true)
    }

    fn count(&self) -> Result<usize, IndexError> {
        let request = CountPointsBuilder::new(&self.collection).exact(true);
        let counted = self
            .connection
            .call("count", |c| async move { c.count(request).await })?;
        Ok(counted.result.map_or(0, |r| r.count as usize))
    }

    fn optimize(&self) -> Result<(), IndexError> {
        // The server's optimizers run by themselves.
        Ok(())
    }

    fn indexes_keywords(&self) -> bool {
        true
    }

    fn keyword_search(
        &self,
        terms: &[String],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<Vec<(ChunkRecord, f32)>, IndexError> {
        let (indices, weights) = query_weights(terms);
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        self.nearest(
            VectorInput::new_sparse(indices, weights),
            BM25,
            limit,
            filter,
            false,
        )
    }

    /// Both sides in one batch request to the Query API. The lists are fused by the
    /// caller, not by the server: fusion needs each side's own score (the dense cosine
    /// decides "not found" and the translated-query merge), which a fused result drops.
    fn hybrid_search(
        &self,
        vector: &[f32],
        terms: &[String],
        limit: usize,
        filter: Option<&SearchFilter>,
    ) -> Result<HybridHits, IndexError> {
        self.check_dimension(vector)?;
        let (indices, weights) = query_weights(terms);
        if limit == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        if indices.is_empty() {
            return Ok((self.search(vector, limit, filter)?, Vec::new()));
        }
        let queries = vec![
            self.query(vector.to_vec().into(), DENSE, limit, filter, false),
            self.query(
                VectorInput::new_sparse(indices, weights),
                BM25,
                limit,
                filter,
                false,
            ),
        ];
        let request = QueryBatchPointsBuilder::new(&self.collection, queries);
        let response =
            self.connection.call(
                "query batch",
                |c| async move { c.query_batch(request).await },
            )?;
        let mut lists = response.result.into_iter().map(|b| scored(b.result));
        match (lists.next(), lists.next()) {
            (Some(dense), Some(keyword)) => Ok((dense?, keyword?)),
            _ => Err(IndexError::Vector(
                "Qdrant query batch: fewer results than queries".into(),
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{CHUNKS, cases, corpus, documents};

    /// Why the tests needing a Qdrant server are ignored without one.
    pub const NEEDS_QDRANT: &str = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored";

    /// A connection to the test server whose collections no other test run shares.
    pub fn connection() -> std::sync::Arc<QdrantConnection> {
        let url = std::env::var("ZHIKU_TEST_QDRANT_URL").expect(NEEDS_QDRANT);
        let run = uuid::Uuid::new_v4().simple().to_string();
        std::sync::Arc::new(
            QdrantConnection::connect(QdrantSettings {
                url,
                api_key: None,
                collection_prefix: format!("zhiku_test_{}_", &run[..12]),
                shard_number: 2,
                replication_factor: 1,
                write_consistency_factor: 1,
                timeout: Duration::from_secs(60),
                hnsw: HnswParams::default(),
            })
            .unwrap(),
        )
    }

    #[test]
    fn term_ids_are_stable_and_weights_saturate() {
        // Fixed values: a change would silently split old and new points' vocabularies.
        assert_eq!(term_id(Field::Text, ""), 0x811c_9dc5);
        assert_eq!(term_id(Field::Text, "a"), 0xe40c_292c);
        let mut record = corpus()[0].0.clone();
        record.text = "apt apt apt install".into();
        record.heading = Some("apt".into());
        let (ids, weights) = document_weights(&record);
        assert_eq!(ids.len(), 3);
        let weight = |field, term: &str| {
            weights[ids.iter().position(|i| *i == term_id(field, term)).unwrap()]
        };
        assert!(weight(Field::Text, "apt") > weight(Field::Text, "instal"));
        assert!(
            weight(Field::Text, "apt") < 3.0 * weight(Field::Text, "instal"),
            "tf saturates"
        );
        // The heading's "apt" is a dimension of its own, weighed by the heading's length.
        assert_ne!(term_id(Field::Heading, "apt"), term_id(Field::Text, "apt"));
        assert!(weight(Field::Heading, "apt") > 0.0);
        assert_eq!(query_weights(&["apt".into(), "apt".into()]).0.len(), 2);
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn qdrant_store_searches_filters_and_drops_versions() {
        let connection = connection();
        let store = QdrantVectorStore::open(connection.clone(), "kb", "vectors", 3).unwrap();
        store.upsert(&corpus()).unwrap();
        let all = corpus().len();
        assert_eq!(store.count().unwrap(), all);
        for (filter, expected) in cases() {
            let dense = store.search(&[0.0, 0.0, 1.0], all, Some(&filter)).unwrap();
            assert_eq!(documents(&dense), expected, "{filter:?}");
            assert_eq!(dense.len(), expected.len() * CHUNKS as usize, "{filter:?}");
            let keyword = store
                .keyword_search(&analyzer::terms("alpha"), all, Some(&filter))
                .unwrap();
            assert_eq!(documents(&keyword), expected, "{filter:?}");
        }
        // Every chunk says "alpha"; only the leave document's say "leave": the rare term
        // decides (IDF), and the chunk read back is the one written.
        let hits = store
            .keyword_search(&analyzer::terms("alpha leave"), 2, None)
            .unwrap();
        assert_eq!(documents(&hits), ["leave"]);
        assert!(hits[0].1 > 0.0);
        let (dense, keyword) = store
            .hybrid_search(&[0.0, 0.0, 1.0], &analyzer::terms("alpha leave"), 2, None)
            .unwrap();
        assert_eq!(dense, store.search(&[0.0, 0.0, 1.0], 2, None).unwrap());
        assert_eq!(keyword, hits);
        let chunk = &store.chunks("leave", 1, 0, 0).unwrap()[0];
        assert_eq!(chunk, &corpus()[3].0);
        assert_eq!(
            store.chunks("leave", 1, 0, 9).unwrap().len(),
            CHUNKS as usize
        );
        // Vectors come back as stored (Qdrant keeps cosine vectors normalized).
        let (chunk, vector) = &store.points("leave", 1, 0, 0).unwrap()[0];
        assert_eq!(chunk, &corpus()[3].0);
        let written = &corpus()[3].1;
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let dot: f32 = vector.iter().zip(written).map(|(a, b)| a * b).sum();
        assert!(dot / (norm(vector) * norm(written)) > 0.999, "{vector:?}");
        // A second version beside the first, until the first is dropped.
        let mut v2 = corpus()[0].clone();
        v2.0.version = 2;
        store.upsert(&[v2.clone()]).unwrap();
        let versions = store.versions().unwrap();
        assert_eq!(versions[&(v2.0.document_id.clone(), 1)], CHUNKS as usize);
        assert_eq!(versions[&(v2.0.document_id.clone(), 2)], 1);
        store.delete_versions(&v2.0.document_id, Some(2)).unwrap();
        assert_eq!(store.count().unwrap(), all - CHUNKS as usize + 1);
        assert!(matches!(
            store.upsert(&[(corpus()[0].0.clone(), vec![1.0])]),
            Err(IndexError::Dimension { .. })
        ));
        drop(store);
        assert!(matches!(
            QdrantVectorStore::open(connection.clone(), "kb", "vectors", 4),
            Err(IndexError::Dimension {
                expected: 3,
                got: 4
            })
        ));
        connection.remove_retired("kb", "").unwrap();
        assert!(connection.collections_of("kb").unwrap().is_empty());
    }
}
