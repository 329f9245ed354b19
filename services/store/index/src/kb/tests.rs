use super::*;
use crate::KbRegistry;
use crate::analyzer::terms;
use zhiku_schemas::KbName;

fn name(name: &str) -> KbName {
    KbName::new(name).unwrap()
}

fn record(doc: &str, i: u32, text: &str) -> ChunkRecord {
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
        version: 0,
        tags: Vec::new(),
        path: String::new(),
        mime: String::new(),
    }
}

fn info(id: &str) -> DocumentInfo {
    DocumentInfo {
        id: id.into(),
        name: format!("{id}.txt"),
        chunks: 0,
        status: DocumentStatus::Indexed,
        reason: None,
        ocr_pages: Vec::new(),
        format: Some("text/plain".into()),
        tags: vec!["t1".into()],
        path: format!("dir/{id}.txt"),
        hash: String::new(),
        size: 0,
        version: 0,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

fn write(doc: &str, texts: &[(&str, [f32; 2])]) -> DocumentWrite {
    DocumentWrite {
        document: info(doc),
        points: texts
            .iter()
            .enumerate()
            .map(|(i, (t, v))| (record(doc, i as u32, t), v.to_vec()))
            .collect(),
    }
}

fn open(dir: &Path) -> KbRegistry {
    open_on(dir, &embedded())
}

fn open_on(dir: &Path, backend: &StoreBackend) -> KbRegistry {
    let catalog =
        Arc::new(zhiku_catalog::EmbeddedCatalog::open(&dir.join("catalog.redb")).unwrap());
    KbRegistry::open(dir, backend.clone(), catalog).unwrap()
}

fn embedded() -> StoreBackend {
    crate::HnswParams::default().into()
}

/// Moving a KB's catalog entries into PostgreSQL: documents with their versions, the
/// record last, versions handed out afterwards above the copied ones.
#[test]
fn catalog_entries_move_to_postgres_with_their_versions() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path());
    let kb = registry.get_or_create(&name("docs"), "model", 2).unwrap();
    let written = kb
        .write(
            vec![
                write("d1", &[("alpha", [1.0, 0.0])]),
                write("d2", &[("beta", [0.0, 1.0])]),
            ],
            Commit::default(),
        )
        .unwrap();
    let db = zhiku_catalog::test_support::TestDatabase::create();
    let target = db.catalog();
    assert_eq!(kb.copy_catalog_to(&target).unwrap(), 2);
    // Again: the same, not twice.
    assert_eq!(kb.copy_catalog_to(&target).unwrap(), 2);
    let copied = target.all_documents("docs").unwrap();
    assert_eq!(
        copied
            .iter()
            .map(|d| (&d.id, d.version))
            .collect::<Vec<_>>(),
        written
            .iter()
            .map(|d| (&d.id, d.version))
            .collect::<Vec<_>>()
    );
    let (record, _) = target.kb_record("docs").unwrap().unwrap();
    let meta: KbMeta = serde_json::from_str(&record).unwrap();
    assert_eq!((meta.embedder.as_str(), meta.dimension), ("model", 2));
    let newest = written.iter().map(|d| d.version).max().unwrap();
    assert!(target.begin_versions("docs", &["d3"]).unwrap()[0] > newest);
}

/// The tests of this module that hold for every backend, run on a Qdrant server.
mod qdrant {
    use super::*;
    use crate::qdrant::tests::connection;

    fn backend() -> StoreBackend {
        StoreBackend::Qdrant(connection())
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn leftovers_of_a_dead_writer_are_collected_and_writes_in_flight_kept() {
        let db = zhiku_catalog::test_support::TestDatabase::create();
        let dir = tempfile::tempdir().unwrap();
        let catalog: Arc<dyn Catalog> = Arc::new(db.catalog());
        let registry = KbRegistry::open(dir.path(), backend(), catalog.clone()).unwrap();
        let kb = registry.get_or_create(&name("docs"), "model", 2).unwrap();
        kb.write(
            vec![write("d1", &[("alpha", [1.0, 0.0])])],
            Commit::default(),
        )
        .unwrap();
        let current = kb.document("d1").unwrap().unwrap().version;
        let chunk_of = |version: u64, text: &str| {
            let mut points = write("d1", &[(text, [1.0, 0.0])]).points;
            points[0].0.version = version;
            points
        };
        // A writer dies after storing a new version of d1, before its commit.
        let dead = catalog.begin_versions("docs", &["d1"]).unwrap()[0];
        kb.vectors().upsert(&chunk_of(dead, "alpha, dead")).unwrap();
        // ... two hours ago.
        db.execute(&format!(
            "UPDATE intents SET recorded_at = now() - interval '2 hours' \
             WHERE kb = 'docs' AND version = {dead}"
        ));
        // Another writer is storing a newer version right now.
        let live = catalog.begin_versions("docs", &["d1"]).unwrap()[0];
        kb.vectors().upsert(&chunk_of(live, "alpha, live")).unwrap();

        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(kb.collect_stale(hour).unwrap(), 1);
        let versions = kb.vectors().versions().unwrap();
        let has = |v: u64| versions.contains_key(&("d1".to_string(), v));
        assert!(has(current) && has(live), "{versions:?}");
        assert!(!has(dead), "{versions:?}");
        let pending: Vec<u64> = catalog
            .intents("docs")
            .unwrap()
            .iter()
            .map(|i| i.version)
            .collect();
        assert_eq!(pending, [live]);
        assert_eq!(kb.collect_stale(hour).unwrap(), 0);
        // The embedded catalog replays its intents at start instead: nothing to collect.
        let local_dir = tempfile::tempdir().unwrap();
        let local = open(local_dir.path());
        let kb = local.get_or_create(&name("docs"), "model", 2).unwrap();
        assert_eq!(kb.collect_stale(std::time::Duration::ZERO).unwrap(), 0);
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn reindex_switches_model_and_keeps_every_chunk() {
        super::reindex_on(&backend());
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn create_list_replace_delete() {
        super::create_list_replace_delete_on(&backend());
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn reconcile_removes_uncommitted_and_stray_versions() {
        super::reconcile_on(&backend());
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn chunks_carry_their_documents_metadata() {
        super::metadata_on(&backend());
    }

    /// Two nodes (registries on their own data directories) over one PostgreSQL catalog
    /// and one Qdrant: what one writes, the other reads, however it had cached the KB.
    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored (and ZHIKU_TEST_POSTGRES_URL)"]
    fn two_nodes_share_kbs_through_the_catalog() {
        let db = zhiku_catalog::test_support::TestDatabase::create();
        let backend = backend();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let node =
            |dir: &Path| KbRegistry::open(dir, backend.clone(), Arc::new(db.catalog())).unwrap();
        let (a, b) = (node(dir_a.path()), node(dir_b.path()));
        let first = |kb: &KnowledgeBase, v: &[f32]| -> Vec<(String, String)> {
            kb.view()
                .dense_search(v, 5, None)
                .unwrap()
                .into_iter()
                .map(|(r, _)| (r.document_id, r.text))
                .collect()
        };
        let text =
            |pairs: Vec<(String, String)>| pairs.into_iter().map(|p| p.1).collect::<Vec<_>>();

        let kb_a = a.get_or_create(&name("docs"), "model", 2).unwrap();
        kb_a.write(
            vec![write("d1", &[("alpha", [1.0, 0.0])])],
            Commit::default(),
        )
        .unwrap();
        // B never saw the KB: it finds it, and the document, through the catalog.
        assert_eq!(b.names().unwrap(), [name("docs")]);
        let kb_b = b.get(&name("docs")).unwrap().unwrap();
        assert_eq!(text(first(&kb_b, &[1.0, 0.0])), ["alpha"]);
        // B has the KB cached now; A replaces d1 and adds d2: B sees the new version
        // only, and d2, once it looks the KB up again (every request does).
        kb_a.write(
            vec![
                write("d1", &[("alpha two", [1.0, 0.0])]),
                write("d2", &[("beta", [0.0, 1.0])]),
            ],
            Commit::default(),
        )
        .unwrap();
        let kb_b = b.get(&name("docs")).unwrap().unwrap();
        let hits = first(&kb_b, &[1.0, 0.0]);
        assert_eq!(text(hits), ["alpha two", "beta"]);
        assert_eq!(kb_b.info().documents, 2);
        // B creating the same KB gets A's record, whatever model it names.
        let again = b.get_or_create(&name("docs"), "other-model", 3).unwrap();
        assert!(again.ensure_model("model", 2).is_ok());

        // A reindexes: B switches to the new store.
        kb_a.reindex("model-2", 3, &mut |records| {
            Ok(records.iter().map(|_| vec![0.0, 0.0, 1.0]).collect())
        })
        .unwrap();
        let kb_b = b.get(&name("docs")).unwrap().unwrap();
        kb_b.ensure_model("model-2", 3).unwrap();
        assert_eq!(first(&kb_b, &[0.0, 0.0, 1.0]).len(), 2);

        // A deletes the KB: B finds it gone.
        assert!(a.delete(&name("docs")).unwrap());
        assert!(b.get(&name("docs")).unwrap().is_none());
        assert!(b.names().unwrap().is_empty());
        assert!(!b.delete(&name("docs")).unwrap());
    }

    #[test]
    #[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored"]
    fn copy_moves_every_chunk_with_its_vector_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let connection = connection();
        let target =
            crate::QdrantVectorStore::open(connection.clone(), "docs", "vectors", 2).unwrap();
        super::copy_on(dir.path(), &target);
        connection.remove_retired("docs", "").unwrap();
    }
}

/// The stores of KB "docs": directories beside an embedded KB, collections in Qdrant.
fn stores(dir: &Path, backend: &StoreBackend) -> Vec<String> {
    match backend {
        StoreBackend::Embedded(_) => {
            let mut names: Vec<String> = std::fs::read_dir(dir.join("kbs/docs"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("vectors"))
                .collect();
            names.sort();
            names
        }
        StoreBackend::Qdrant(connection) => connection
            .collections_of("docs")
            .unwrap()
            .into_iter()
            .map(|c| c.rsplit('.').next().unwrap().to_string())
            .collect(),
    }
}

#[test]
fn empty_documents_are_stored_and_survive_reconciliation() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path());
    let kb = registry.get_or_create(&name("docs"), "m", 2).unwrap();
    let mut blank = write("blank", &[]);
    blank.document.status = DocumentStatus::Empty;
    blank.document.reason = Some("OCR found no text".into());
    let stored = kb
        .write(
            vec![blank, write("d1", &[("alpha", [1.0, 0.0])])],
            Commit::default(),
        )
        .unwrap();
    assert_eq!(stored[0].status, DocumentStatus::Empty);
    assert_eq!(stored[0].reason.as_deref(), Some("OCR found no text"));
    assert_eq!(stored[1].status, DocumentStatus::Indexed);
    // A store loses d1's chunks: the next start scans everything.
    kb.vectors().delete_versions("d1", None).unwrap();
    kb.vectors().flush().unwrap();
    let report = kb.reconcile().unwrap();
    assert!(report.full_scan);
    assert_eq!(report.damaged, ["d1"]);
    let blank = kb.document("blank").unwrap().unwrap();
    assert_eq!((blank.status, blank.chunks), (DocumentStatus::Empty, 0));
}

#[test]
fn reindex_switches_model_and_keeps_every_chunk() {
    reindex_on(&embedded());
}

fn reindex_on(backend: &StoreBackend) {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_on(dir.path(), backend);
    let kb = registry
        .get_or_create(&name("docs"), "old-model", 2)
        .unwrap();
    kb.write(
        vec![
            write("d1", &[("alpha", [1.0, 0.0]), ("beta", [0.0, 1.0])]),
            write("d2", &[("gamma", [0.5, 0.5])]),
        ],
        Commit::default(),
    )
    .unwrap();
    // A 3-dimensional "model": one axis per chunk text, so each chunk is findable.
    let axis = |text: &str| match text {
        "alpha" => vec![1.0, 0.0, 0.0],
        "beta" => vec![0.0, 1.0, 0.0],
        _ => vec![0.0, 0.0, 1.0],
    };
    let report = kb
        .reindex("new-model", 3, &mut |records| {
            Ok(records.iter().map(|r| axis(&r.text)).collect())
        })
        .unwrap();
    assert_eq!(report.from, ("old-model".to_string(), 2));
    assert_eq!((report.documents, report.chunks), (2, 3));
    assert!(kb.ensure_model("old-model", 2).is_err());
    kb.ensure_model("new-model", 3).unwrap();
    let hit = |kb: &KnowledgeBase, v: &[f32]| {
        kb.view().dense_search(v, 1, None).unwrap()[0]
            .0
            .text
            .clone()
    };
    assert_eq!(hit(&kb, &[0.0, 1.0, 0.0]), "beta");
    assert_eq!(
        kb.view()
            .keyword_search(&terms("gamma"), 5, None)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        stores(dir.path(), backend),
        vec![kb.meta().vectors_dir.clone()],
        "the old store is gone"
    );

    // A failing model leaves the KB as it was.
    let err = kb.reindex("broken", 3, &mut |_| Err("out of memory".into()));
    assert!(matches!(err, Err(IndexError::Embedding(m)) if m.contains("out of memory")));
    kb.ensure_model("new-model", 3).unwrap();
    drop(kb);
    drop(registry);

    let reopened = open_on(dir.path(), backend);
    let kb = reopened.get(&name("docs")).unwrap().unwrap();
    kb.ensure_model("new-model", 3).unwrap();
    assert_eq!(hit(&kb, &[1.0, 0.0, 0.0]), "alpha");
    assert_eq!(kb.stored_counts().unwrap().vectors, 3);
    assert_eq!(
        stores(dir.path(), backend),
        vec![kb.meta().vectors_dir.clone()],
        "the failed reindex's half-built store was removed"
    );
    drop(kb);
    assert!(reopened.delete(&name("docs")).unwrap());
    assert!(stores_gone(dir.path(), backend));
}

/// Whether KB "docs" has no store left anywhere.
fn stores_gone(dir: &Path, backend: &StoreBackend) -> bool {
    match backend {
        StoreBackend::Embedded(_) => !dir.join("kbs/docs").exists(),
        StoreBackend::Qdrant(connection) => connection.collections_of("docs").unwrap().is_empty(),
    }
}

#[test]
fn create_list_replace_delete() {
    create_list_replace_delete_on(&embedded());
}

fn create_list_replace_delete_on(backend: &StoreBackend) {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_on(dir.path(), backend);
    assert!(registry.get(&name("docs")).unwrap().is_none());
    let kb = registry
        .get_or_create(&name("docs"), "test-model", 2)
        .unwrap();
    let first = kb
        .write(
            vec![write("d1", &[("hello world", [1.0, 0.0])])],
            Commit::default(),
        )
        .unwrap();
    let second = kb
        .write(
            vec![write(
                "d1",
                &[("goodbye moon", [0.0, 1.0]), ("more", [0.5, 0.5])],
            )],
            Commit::default(),
        )
        .unwrap();
    assert!(second[0].version > first[0].version);
    assert_eq!(second[0].created_at, first[0].created_at);
    assert_eq!(kb.info().chunks, 2);
    let view = kb.view();
    assert!(
        view.keyword_search(&terms("hello"), 5, None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        view.keyword_search(&terms("goodbye"), 5, None)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(view.dense_search(&[0.0, 1.0], 5, None).unwrap().len(), 2);
    // Only the current version, in document order.
    let texts: Vec<String> = view.chunks().unwrap().into_iter().map(|c| c.text).collect();
    assert_eq!(texts, ["goodbye moon", "more"]);
    drop(view);
    assert_eq!(
        kb.vectors().count().unwrap(),
        2,
        "the old version left the vectors"
    );
    assert_eq!(
        kb.keyword_count().unwrap(),
        2,
        "the old version left the keywords"
    );
    assert_eq!(registry.names().unwrap(), vec![name("docs")]);
    assert_eq!(kb.document("d1").unwrap().unwrap().chunks, 2);
    drop(kb);
    // One process owns a KB at a time: the shard's WAL and the catalog are locked.
    drop(registry);

    let reopened = open_on(dir.path(), backend);
    let kb = reopened.get(&name("docs")).unwrap().unwrap();
    assert_eq!(kb.meta().embedder, "test-model");
    assert_eq!(kb.info().documents, 1);
    assert_eq!(kb.reconcile().unwrap(), ReconcileReport::default());
    assert!(kb.delete_document("d1").unwrap());
    assert!(!kb.delete_document("d1").unwrap());
    assert_eq!(kb.vectors().count().unwrap(), 0);
    drop(kb);
    assert!(reopened.delete(&name("docs")).unwrap());
    assert!(!reopened.delete(&name("docs")).unwrap());
    assert!(reopened.names().unwrap().is_empty());
    assert!(!dir.path().join("kbs/docs").exists());
    assert!(stores_gone(dir.path(), backend));
    assert!(reopened.catalog().all_documents("docs").unwrap().is_empty());
}

#[test]
fn reconcile_removes_uncommitted_and_stray_versions() {
    reconcile_on(&embedded());
}

fn reconcile_on(backend: &StoreBackend) {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_on(dir.path(), backend);
    let kb = registry
        .get_or_create(&name("docs"), "test-model", 2)
        .unwrap();
    kb.write(
        vec![write("d1", &[("alpha", [1.0, 0.0])])],
        Commit::default(),
    )
    .unwrap();
    // A crash after the chunks of a new version were written but before the catalog
    // switched: intent recorded, chunks in both stores, catalog unchanged.
    let version = registry.catalog().begin_versions("docs", &["d1"]).unwrap()[0];
    let mut crashed = write("d1", &[("beta", [0.0, 1.0])]);
    crashed.points[0].0.version = version;
    kb.vectors().upsert(&crashed.points).unwrap();
    if let Some(keywords) = &kb.keywords {
        keywords.add(&[crashed.points[0].0.clone()]).unwrap();
        keywords.commit().unwrap();
    }
    // And a stray chunk with no intent at all (e.g. a lost catalog write).
    let mut stray = write("ghost", &[("gamma", [0.5, 0.5])]);
    stray.points[0].0.version = 99;
    kb.vectors().upsert(&stray.points).unwrap();
    assert!(
        kb.view()
            .keyword_search(&terms("beta"), 5, None)
            .unwrap()
            .is_empty(),
        "uncommitted is invisible"
    );
    drop(kb);
    drop(registry);

    let registry = open_on(dir.path(), backend);
    let reports = registry.reconcile_all().unwrap();
    let report = &reports[0].1;
    assert_eq!(report.intents_replayed, 1);
    assert!(report.full_scan);
    assert_eq!(report.stray_versions_removed, 1);
    assert!(report.damaged.is_empty());
    let kb = registry.get(&name("docs")).unwrap().unwrap();
    assert_eq!(kb.vectors().count().unwrap(), 1);
    assert_eq!(kb.keyword_count().unwrap(), 1);
    assert_eq!(
        kb.view()
            .keyword_search(&terms("alpha"), 5, None)
            .unwrap()
            .len(),
        1
    );
    assert!(registry.catalog().intents("docs").unwrap().is_empty());
    drop(kb);
    assert!(registry.delete(&name("docs")).unwrap());
}

#[test]
fn chunks_carry_their_documents_metadata() {
    metadata_on(&embedded());
}

fn metadata_on(backend: &StoreBackend) {
    let dir = tempfile::tempdir().unwrap();
    let registry = open_on(dir.path(), backend);
    let kb = registry
        .get_or_create(&name("docs"), "test-model", 2)
        .unwrap();
    kb.write(
        vec![write("d1", &[("alpha", [1.0, 0.0]), ("beta", [0.0, 1.0])])],
        Commit::default(),
    )
    .unwrap();
    let view = kb.view();
    let dense = view.dense_search(&[1.0, 0.0], 1, None).unwrap();
    let keyword = view.keyword_search(&terms("alpha"), 1, None).unwrap();
    for record in [
        &dense[0].0,
        &keyword[0].0,
        &view.neighbours(&dense[0].0, 1).unwrap()[0],
    ] {
        assert_eq!(record.tags, ["t1"]);
        assert_eq!(record.path, "dir/d1.txt");
        assert_eq!(record.mime, "text/plain");
    }
    let filter: SearchFilter =
        serde_json::from_value(serde_json::json!({"path_prefix": "dir", "tags": ["t1"]})).unwrap();
    assert_eq!(
        view.dense_search(&[1.0, 0.0], 5, Some(&filter))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        view.keyword_search(&terms("beta"), 5, Some(&filter))
            .unwrap()
            .len(),
        1
    );
    let other: SearchFilter = serde_json::from_value(serde_json::json!({"tags": ["t2"]})).unwrap();
    assert!(
        view.dense_search(&[1.0, 0.0], 5, Some(&other))
            .unwrap()
            .is_empty()
    );
    assert!(
        view.keyword_search(&terms("beta"), 5, Some(&other))
            .unwrap()
            .is_empty()
    );
    drop(view);
    drop(kb);
    assert!(registry.delete(&name("docs")).unwrap());
}

#[test]
fn a_kb_from_an_older_build_is_refused_and_skipped_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path());
    registry
        .get_or_create(&name("new"), "test-model", 2)
        .unwrap();
    let old = registry
        .get_or_create(&name("old"), "test-model", 2)
        .unwrap();
    old.write(
        vec![write("d1", &[("alpha", [1.0, 0.0])])],
        Commit::default(),
    )
    .unwrap();
    drop(old);
    drop(registry);
    // Replace the keyword index by one with the schema of the build before filters.
    let keywords = dir.path().join("kbs/old/keywords");
    std::fs::remove_dir_all(&keywords).unwrap();
    std::fs::create_dir_all(&keywords).unwrap();
    let mut builder = tantivy::schema::Schema::builder();
    for name in ["document_id", "version_key"] {
        builder.add_text_field(name, tantivy::schema::STRING);
    }
    builder.add_text_field("text", tantivy::schema::TEXT);
    builder.add_text_field("heading", tantivy::schema::TEXT);
    builder.add_text_field("record", tantivy::schema::STORED);
    tantivy::Index::create_in_dir(&keywords, builder.build()).unwrap();

    let registry = open(dir.path());
    let reports = registry.reconcile_all().unwrap();
    let names: Vec<&str> = reports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["new"]);
    let error = registry.get(&name("old")).err().unwrap();
    assert!(matches!(error, IndexError::Outdated { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("knowledge base \"old\" was built by an older version of zhiku")
            && message.contains("ingest its documents again"),
        "{message}"
    );
    // It can still be deleted, to be ingested again.
    assert!(registry.delete(&name("old")).unwrap());
    assert_eq!(registry.names().unwrap(), [name("new")]);
}

#[test]
fn copy_moves_every_chunk_with_its_vector_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let target =
        crate::EdgeVectorStore::open(&dir.path().join("target"), 2, Default::default()).unwrap();
    copy_on(dir.path(), &target);
}

fn copy_on(dir: &Path, target: &dyn VectorStore) {
    let registry = open(dir);
    let kb = registry.get_or_create(&name("docs"), "m", 2).unwrap();
    kb.write(
        vec![
            write("d1", &[("alpha", [1.0, 0.0]), ("beta", [0.0, 1.0])]),
            write("d2", &[("gamma", [0.6, 0.8])]),
        ],
        Commit::default(),
    )
    .unwrap();
    // A chunk of a version the KB does not show, left in the target by someone else.
    let mut stray = write("d2", &[("old gamma", [0.8, 0.6])]);
    stray.points[0].0.version = 99;
    target.upsert(&stray.points).unwrap();
    let mut seen = Vec::new();
    let report = kb
        .copy_to(target, &mut |done, all| seen.push((done, all)))
        .unwrap();
    assert_eq!((report.copied, report.skipped, report.chunks), (2, 0, 3));
    assert_eq!(report.strays_removed, 1);
    assert_eq!(report.searches_compared, 2);
    assert_eq!(seen, [(1, 2), (2, 2)]);
    assert_eq!(target.count().unwrap(), 3);
    let hits = target.search(&[0.0, 1.0], 1, None).unwrap();
    assert_eq!(hits[0].0.text, "beta");
    assert!(
        (hits[0].1 - 1.0).abs() < 1e-4,
        "the vector came along unchanged"
    );
    // Run again (as after an interruption): nothing left to copy.
    let again = kb.copy_to(target, &mut |_, _| {}).unwrap();
    assert_eq!((again.copied, again.skipped, again.chunks), (0, 2, 0));
    // A target missing a chunk of d1 gets d1 again.
    target.delete_versions("d1", None).unwrap();
    let repaired = kb.copy_to(target, &mut |_, _| {}).unwrap();
    assert_eq!(
        (repaired.copied, repaired.skipped, repaired.chunks),
        (1, 1, 2)
    );
    // A store of another dimension is refused before anything is written.
    let other = crate::EdgeVectorStore::open(&dir.join("other"), 3, Default::default()).unwrap();
    assert!(matches!(
        kb.copy_to(&other, &mut |_, _| {}),
        Err(IndexError::Dimension { .. })
    ));
}
