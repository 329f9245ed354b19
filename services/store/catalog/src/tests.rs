use super::*;
use std::time::Duration;
use zhiku_schemas::{DocumentStatus, KbName};

fn doc(id: &str, version: u64) -> DocumentInfo {
    DocumentInfo {
        id: id.into(),
        name: format!("{id}.txt"),
        chunks: 2,
        status: DocumentStatus::Indexed,
        reason: None,
        ocr_pages: Vec::new(),
        format: Some("text/plain".into()),
        tags: vec!["hr".into()],
        path: format!("docs/{id}.txt"),
        hash: "sha256:00".into(),
        size: 10,
        version,
        created_at: now_rfc3339(),
        updated_at: now_rfc3339(),
    }
}

fn job(id: &str) -> StoredJob {
    StoredJob {
        info: JobInfo::new(
            id.into(),
            KbName::new("docs").unwrap(),
            JobSource::Upload,
            now_rfc3339(),
        ),
        spec: JobSpec {
            source: JobSource::Upload,
            uploads: vec![],
            tags: vec!["hr".into()],
        },
    }
}

/// Documents, versions, intents, pages and job files on either engine; `reopen` gives
/// a second handle on the same catalog, as a restarted process would have.
fn documents_versions_intents_and_pages_on(
    catalog: Box<dyn Catalog>,
    reopen: impl FnOnce() -> Box<dyn Catalog>,
) {
    let versions = catalog.begin_versions("docs", &["a", "b", "c"]).unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let v = |i: usize| versions[i];
    assert_eq!(catalog.intents("docs").unwrap().len(), 3);
    let mut j = job("j1");
    j.info.files_done = 3;
    let file = FileRecord {
        name: "dir/a.txt".into(),
        document_id: "a".into(),
        bytes: 10,
        outcome: FileOutcome::Unchanged,
    };
    catalog
        .commit(
            "docs",
            &Commit {
                upserts: vec![doc("a", v(0)), doc("b", v(1)), doc("c", v(2))],
                files: vec![("j1".into(), file.clone())],
                jobs: vec![j.clone()],
                ..Commit::default()
            },
        )
        .unwrap();
    catalog
        .clear_intents("docs", &catalog.intents("docs").unwrap())
        .unwrap();
    assert!(catalog.intents("docs").unwrap().is_empty());
    // Another KB with a name that is a prefix must not leak into "docs".
    catalog
        .commit(
            "doc",
            &Commit {
                upserts: vec![doc("z", 9)],
                ..Commit::default()
            },
        )
        .unwrap();

    let (page, more) = catalog.documents("docs", None, 2).unwrap();
    assert_eq!(
        page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(more);
    let (page, more) = catalog.documents("docs", Some("b"), 2).unwrap();
    assert_eq!(
        page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(!more);
    assert_eq!(
        catalog.document("docs", "b").unwrap().unwrap().version,
        v(1)
    );
    assert_eq!(catalog.job("j1").unwrap().unwrap(), j);
    assert_eq!(catalog.job_files("j1").unwrap()["a"], file);
    assert_eq!(catalog.kbs().unwrap(), ["doc", "docs"]);

    catalog
        .commit(
            "docs",
            &Commit {
                deletes: vec!["a".into(), "nope".into()],
                ..Commit::default()
            },
        )
        .unwrap();
    assert!(catalog.document("docs", "a").unwrap().is_none());
    assert_eq!(
        catalog.intents("docs").unwrap(),
        vec![Intent {
            document_id: "a".into(),
            version: 0
        }]
    );
    drop(catalog);

    // Durable across reopen; versions keep increasing, past any reserved.
    let catalog = reopen();
    assert!(catalog.begin_versions("docs", &["b"]).unwrap()[0] > v(2));
    catalog.reserve_versions(1_000).unwrap();
    catalog.reserve_versions(10).unwrap();
    assert_eq!(catalog.begin_versions("docs", &["b"]).unwrap(), [1_001]);
    catalog.purge_kb("docs").unwrap();
    assert!(catalog.all_documents("docs").unwrap().is_empty());
    assert!(catalog.intents("docs").unwrap().is_empty());
    assert_eq!(catalog.all_documents("doc").unwrap().len(), 1);
    assert_eq!(catalog.jobs().unwrap().len(), 1);
    catalog.forget_job_files("j1").unwrap();
    assert!(catalog.job_files("j1").unwrap().is_empty());
}

#[test]
fn records_written_before_document_metadata_still_decode() {
    let doc: DocumentInfo = decode(br#"{"id":"a","name":"a.txt","chunks":1}"#).unwrap();
    assert!(doc.tags.is_empty() && doc.path.is_empty());
    let spec: JobSpec = decode(
        br#"{"source":{"type":"upload"},"uploads":[{"name":"a.txt","document_id":"a","path":"/s/0"}]}"#,
    )
    .unwrap();
    assert!(spec.tags.is_empty() && spec.uploads[0].client_path.is_empty());
}

/// Two workers claim different jobs, oldest first; a lease that runs out lets another
/// worker take the job over, and the first then finds it lost; a cancel request reaches
/// the holder when it renews, and a queued job can be claimed by id.
fn job_leases_on(catalog: &dyn Catalog) {
    let long = Duration::from_secs(60);
    let mut jobs = Vec::new();
    for (i, id) in ["j1", "j2", "j3"].iter().enumerate() {
        let mut j = job(id);
        j.info.created_at = format!("2026-01-0{}T00:00:00Z", i + 1);
        catalog.put_job(&j).unwrap();
        jobs.push(j);
    }
    let mut done = job("old");
    done.info.state = zhiku_schemas::JobState::Succeeded;
    catalog.put_job(&done).unwrap();

    let claim = |worker: &str, lease: Duration| {
        catalog
            .claim_job(worker, lease, None)
            .unwrap()
            .map(|(j, cancel)| (j.info.id, cancel))
    };
    let counts = |queued, running| JobCounts { queued, running };
    assert_eq!(catalog.job_counts().unwrap(), counts(3, 0));
    assert_eq!(claim("w1", long), Some(("j1".into(), false)));
    assert_eq!(catalog.job_counts().unwrap(), counts(2, 1));
    assert_eq!(claim("w2", long), Some(("j2".into(), false)));
    // j3 is cancelled while queued: whoever claims it hears so.
    assert!(catalog.request_cancel("j3").unwrap());
    assert!(!catalog.request_cancel("old").unwrap());
    assert_eq!(claim("w1", long), Some(("j3".into(), true)));
    assert_eq!(claim("w3", long), None);

    // w2 lets j2's lease run out: renewed for no time, it has expired once the clock
    // moves on. (A short lease from the claim would race a slow machine's asserts above.)
    assert_eq!(
        catalog.renew_lease("j2", "w2", Duration::ZERO).unwrap(),
        Lease::Held {
            cancel_requested: false
        }
    );
    std::thread::sleep(Duration::from_millis(50));
    // j2's lease ran out: waiting again.
    assert_eq!(catalog.job_counts().unwrap(), counts(1, 2));
    assert_eq!(claim("w3", long), Some(("j2".into(), false)));
    assert_eq!(catalog.renew_lease("j2", "w2", long).unwrap(), Lease::Lost);
    assert_eq!(
        catalog.renew_lease("j2", "w3", long).unwrap(),
        Lease::Held {
            cancel_requested: false
        }
    );
    assert!(catalog.request_cancel("j2").unwrap());
    assert_eq!(
        catalog.renew_lease("j2", "w3", long).unwrap(),
        Lease::Held {
            cancel_requested: true
        }
    );
    // Released by its holder (not by anyone else): free at once, by id too.
    catalog.release_job("j1", "w3").unwrap();
    assert_eq!(
        catalog
            .claim_job("w4", long, Some("j1"))
            .unwrap()
            .map(|j| j.0.info.id),
        None
    );
    catalog.release_job("j1", "w1").unwrap();
    assert_eq!(
        catalog
            .claim_job("w4", long, Some("j1"))
            .unwrap()
            .map(|j| j.0.info.id),
        Some("j1".to_string())
    );
    // A finished job is nobody's.
    let mut finished = jobs[0].clone();
    finished.info.state = zhiku_schemas::JobState::Succeeded;
    catalog.put_job(&finished).unwrap();
    assert_eq!(catalog.renew_lease("j1", "w4", long).unwrap(), Lease::Lost);
}

/// KB records: created once (the first creator's record wins), listed, replaced and
/// removed; the generation moves with every change to the record or the documents.
fn kb_records_and_generations_on(catalog: &dyn Catalog) {
    // PostgreSQL normalises JSON text: compare values.
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(catalog.kb_generation("docs").unwrap(), None);
    assert_eq!(
        json(&catalog.create_kb("docs", r#"{"v":1}"#).unwrap()),
        json(r#"{"v":1}"#)
    );
    assert_eq!(
        json(&catalog.create_kb("docs", r#"{"v":2}"#).unwrap()),
        json(r#"{"v":1}"#)
    );
    catalog.create_kb("a", r#"{"v":0}"#).unwrap();
    assert_eq!(catalog.kb_names().unwrap(), ["a", "docs"]);
    let g0 = catalog.kb_generation("docs").unwrap().unwrap();

    let version = catalog.begin_versions("docs", &["x"]).unwrap()[0];
    catalog
        .commit(
            "docs",
            &Commit {
                upserts: vec![doc("x", version)],
                ..Commit::default()
            },
        )
        .unwrap();
    let g1 = catalog.kb_generation("docs").unwrap().unwrap();
    assert!(g1 > g0);
    // Job progress alone changes nothing a reader caches.
    catalog
        .commit(
            "docs",
            &Commit {
                jobs: vec![job("j")],
                ..Commit::default()
            },
        )
        .unwrap();
    assert_eq!(catalog.kb_generation("docs").unwrap(), Some(g1));
    catalog.put_kb_record("docs", r#"{"v":3}"#).unwrap();
    let (record, g2) = catalog.kb_record("docs").unwrap().unwrap();
    assert_eq!(json(&record), json(r#"{"v":3}"#));
    assert!(g2 > g1);
    assert!(catalog.kb_generation("a").unwrap().is_some());

    assert!(catalog.remove_kb_record("docs").unwrap());
    assert!(!catalog.remove_kb_record("docs").unwrap());
    assert_eq!(catalog.kb_record("docs").unwrap(), None);
    assert_eq!(catalog.kb_names().unwrap(), ["a"]);
}

fn finished_jobs_past_the_cutoff_are_pruned_with_their_files_on(catalog: &dyn Catalog) {
    let mut old = job("old");
    old.info.state = zhiku_schemas::JobState::Succeeded;
    old.info.finished_at = Some("2020-01-01T00:00:00Z".into());
    let mut recent = job("recent");
    recent.info.state = zhiku_schemas::JobState::Failed;
    recent.info.finished_at = Some(now_rfc3339());
    let running = job("running");
    for j in [&old, &recent, &running] {
        catalog.put_job(j).unwrap();
    }
    let file = FileRecord {
        name: "a.txt".into(),
        document_id: "a".into(),
        bytes: 1,
        outcome: FileOutcome::Unchanged,
    };
    let files = vec![
        ("old".to_string(), file.clone()),
        ("recent".to_string(), file),
    ];
    catalog
        .commit(
            "docs",
            &Commit {
                files,
                ..Commit::default()
            },
        )
        .unwrap();
    assert_eq!(catalog.prune_jobs(&rfc3339_days_ago(30)).unwrap(), 1);
    let ids: Vec<String> = catalog
        .jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.info.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&"old".to_string()), "{ids:?}");
    assert!(catalog.job_files("old").unwrap().is_empty());
    assert_eq!(catalog.job_files("recent").unwrap().len(), 1);
    assert_eq!(catalog.prune_jobs(&rfc3339_days_ago(30)).unwrap(), 0);
    assert!(rfc3339_days_ago(1) < now_rfc3339());
}

fn turn(at: &str) -> zhiku_schemas::ConversationTurn {
    zhiku_schemas::ConversationTurn {
        turn: 0,
        question: "q".into(),
        search_query: "q".into(),
        rewrite: None,
        answer: "a".into(),
        grounded: true,
        citations: Vec::new(),
        context: Vec::new(),
        history_turns_used: 0,
        created_at: at.into(),
        feedback: None,
    }
}

fn conversations_past_their_retention_are_pruned_on(store: &dyn ConversationLog) {
    store
        .append("old", "kb", false, 10, turn("2020-01-01T00:00:00Z"))
        .unwrap();
    store
        .append("old", "kb", true, 10, turn("2020-01-02T00:00:00Z"))
        .unwrap();
    // Started long ago, but asked again today: kept.
    store
        .append("busy", "kb", false, 10, turn("2020-01-01T00:00:00Z"))
        .unwrap();
    store
        .append("busy", "kb", true, 10, turn(&now_rfc3339()))
        .unwrap();
    store
        .append("new", "kb2", false, 10, turn(&now_rfc3339()))
        .unwrap();
    let cutoff = rfc3339_days_ago(30);
    assert_eq!(store.prune(&cutoff).unwrap(), 1);
    assert!(store.get("old").unwrap().is_none());
    assert_eq!(store.get("busy").unwrap().unwrap().turns.len(), 2);
    let listed: Vec<String> = store
        .list(None)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(store.prune(&cutoff).unwrap(), 0);
}

/// Turns are numbered in order, limited, rated, listed per KB, scanned and purged alike
/// on both engines.
fn conversation_turns_ratings_and_scans_on(store: &dyn ConversationLog) {
    use zhiku_schemas::{Feedback, Rating};
    for (i, at) in ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
        .iter()
        .enumerate()
    {
        let number = store.append("c1", "kb", i > 0, 2, turn(at)).unwrap();
        assert_eq!(number, i as u32 + 1);
    }
    assert!(matches!(
        store.append("c1", "kb", true, 2, turn("2026-01-03T00:00:00Z")),
        Err(CatalogError::Full { max_turns: 2, .. })
    ));
    // Named by a client but unknown, or of another KB: not found.
    assert!(matches!(
        store.append("nope", "kb", true, 2, turn("2026-01-03T00:00:00Z")),
        Err(CatalogError::NotFound(_))
    ));
    assert!(matches!(
        store.append("c1", "other", true, 9, turn("2026-01-03T00:00:00Z")),
        Err(CatalogError::NotFound(_))
    ));
    store
        .append("c2", "kb", false, 2, turn("2026-01-05T00:00:00Z"))
        .unwrap();
    store
        .append("c3", "kb2", false, 2, turn("2026-01-06T00:00:00Z"))
        .unwrap();

    let (kb, turns, recent) = store.recent("c1", 1).unwrap().unwrap();
    assert_eq!((kb.as_str(), turns), ("kb", 2));
    assert_eq!(recent.iter().map(|t| t.turn).collect::<Vec<_>>(), [2]);
    assert!(store.recent("nope", 1).unwrap().is_none());

    let good = Feedback {
        rating: Rating::Good,
        comment: Some("right".into()),
        at: "2026-01-07T00:00:00Z".into(),
    };
    store.rate("c1", 2, good.clone()).unwrap();
    assert!(matches!(
        store.rate("c1", 3, good.clone()),
        Err(CatalogError::NoSuchTurn { turn: 3, turns: 2 })
    ));
    assert!(matches!(
        store.rate("nope", 1, good.clone()),
        Err(CatalogError::NotFound(_))
    ));
    let c1 = store.get("c1").unwrap().unwrap();
    assert_eq!(c1.turns[1].feedback, Some(good));
    assert_eq!(c1.updated_at, "2026-01-07T00:00:00Z");
    // Rated last, so listed first.
    let ids = |kb| -> Vec<String> { store.list(kb).unwrap().into_iter().map(|c| c.id).collect() };
    assert_eq!(ids(Some("kb")), ["c1", "c2"]);
    assert_eq!(ids(None), ["c1", "c3", "c2"]);

    let mut seen = Vec::new();
    store
        .scan_kb("kb", &|t| t.feedback.is_some(), &mut |id, turns| {
            seen.push((id.to_string(), turns.len()));
            true
        })
        .unwrap();
    assert_eq!(seen, [("c1".to_string(), 2)]);

    assert!(store.delete("c2").unwrap());
    assert!(!store.delete("c2").unwrap());
    store.purge_kb("kb").unwrap();
    assert!(store.get("c1").unwrap().is_none());
    assert_eq!(ids(None), ["c3"]);
}

#[test]
fn conversations_past_their_retention_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedConversations::open(&dir.path().join("c.redb")).unwrap();
    conversations_past_their_retention_are_pruned_on(&store);
}

#[test]
fn conversation_turns_ratings_and_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedConversations::open(&dir.path().join("c.redb")).unwrap();
    conversation_turns_ratings_and_scans_on(&store);
}

#[test]
fn documents_versions_intents_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.redb");
    let catalog = EmbeddedCatalog::open(&path).unwrap();
    assert!(matches!(
        EmbeddedCatalog::open(&path),
        Err(CatalogError::Locked(_))
    ));
    documents_versions_intents_and_pages_on(Box::new(catalog), || {
        Box::new(EmbeddedCatalog::open(&path).unwrap())
    });
}

#[test]
fn job_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redb");
    let catalog = EmbeddedCatalog::open(&path).unwrap();
    job_leases_on(&catalog);
    // A new process owns the directory: the old one's leases are void, its cancel
    // requests stand.
    catalog.put_job(&job("j9")).unwrap();
    catalog
        .claim_job("w1", Duration::from_secs(60), Some("j9"))
        .unwrap()
        .unwrap();
    catalog.request_cancel("j9").unwrap();
    drop(catalog);
    let catalog = EmbeddedCatalog::open(&path).unwrap();
    let (job, cancel) = catalog
        .claim_job("w2", Duration::from_secs(60), Some("j9"))
        .unwrap()
        .unwrap();
    assert_eq!((job.info.id.as_str(), cancel), ("j9", true));
}

#[test]
fn kb_records_and_generations() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = EmbeddedCatalog::open(&dir.path().join("c.redb")).unwrap();
    assert!(!catalog.shared());
    kb_records_and_generations_on(&catalog);
}

#[test]
fn finished_jobs_past_the_cutoff_are_pruned_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = EmbeddedCatalog::open(&dir.path().join("c.redb")).unwrap();
    finished_jobs_past_the_cutoff_are_pruned_with_their_files_on(&catalog);
}

/// The same behaviour on PostgreSQL, each test in a database of its own.
mod postgres {
    use super::*;
    use crate::test_support::TestDatabase;

    #[test]
    fn documents_versions_intents_and_pages() {
        let db = TestDatabase::create();
        let catalog = db.catalog();
        documents_versions_intents_and_pages_on(Box::new(catalog), || Box::new(db.catalog()));
    }

    #[test]
    fn finished_jobs_past_the_cutoff_are_pruned_with_their_files() {
        let db = TestDatabase::create();
        finished_jobs_past_the_cutoff_are_pruned_with_their_files_on(&db.catalog());
    }

    #[test]
    fn job_leases() {
        let db = TestDatabase::create();
        job_leases_on(&db.catalog());
    }

    /// Many workers claiming at once from many connections: every job goes to exactly
    /// one of them.
    #[test]
    fn concurrent_claims_never_share_a_job() {
        let db = TestDatabase::create();
        let catalog = db.catalog();
        for i in 0..40 {
            catalog.put_job(&job(&format!("j{i:02}"))).unwrap();
        }
        let claimed: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let db = &db;
                    scope.spawn(move || {
                        let catalog = db.catalog();
                        let mut mine = Vec::new();
                        while let Some((job, _)) = catalog
                            .claim_job(&format!("w{w}"), Duration::from_secs(60), None)
                            .unwrap()
                        {
                            mine.push(job.info.id);
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let mut sorted = claimed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 40, "{claimed:?}");
        assert_eq!(claimed.len(), 40, "a job was claimed twice: {claimed:?}");
    }

    #[test]
    fn kb_records_and_generations() {
        let db = TestDatabase::create();
        let catalog = db.catalog();
        assert!(catalog.shared());
        kb_records_and_generations_on(&catalog);
    }

    #[test]
    fn conversations_past_their_retention_are_pruned() {
        let db = TestDatabase::create();
        conversations_past_their_retention_are_pruned_on(&db.catalog());
    }

    #[test]
    fn conversation_turns_ratings_and_scans() {
        let db = TestDatabase::create();
        conversation_turns_ratings_and_scans_on(&db.catalog());
    }

    #[test]
    fn api_key_records_change_the_generation() {
        let db = TestDatabase::create();
        let catalog = db.catalog();
        let (g0, keys) = catalog.api_keys().unwrap();
        assert!(keys.is_empty());
        assert!(catalog.insert_api_key("k1", r#"{"id":"k1"}"#).unwrap());
        assert!(!catalog.insert_api_key("k1", r#"{"id":"other"}"#).unwrap());
        let (g1, keys) = catalog.api_keys().unwrap();
        assert!(g1 > g0);
        assert_eq!(keys, [r#"{"id": "k1"}"#]);
        assert_eq!(catalog.api_keys_generation().unwrap(), g1);
        assert!(catalog.delete_api_key("k1").unwrap());
        assert!(!catalog.delete_api_key("k1").unwrap());
        assert!(catalog.api_keys_generation().unwrap() > g1);
        assert!(catalog.api_keys().unwrap().1.is_empty());
    }

    #[test]
    fn migrations_are_versioned_and_run_once() {
        let db = TestDatabase::create();
        let catalog = db.catalog();
        assert_eq!(catalog.schema_version().unwrap(), latest_schema());
        assert!(catalog.migrate().unwrap().is_empty());
        catalog.check_schema().unwrap();
        // A database never migrated is refused, naming the command.
        let bare_db = TestDatabase::bare();
        let bare = bare_db.catalog();
        let e = bare.check_schema().unwrap_err().to_string();
        assert!(
            e.contains("zhiku migrate") && e.contains("version 0"),
            "{e}"
        );
        let applied = bare.migrate().unwrap();
        assert_eq!(applied.len(), MIGRATIONS.len(), "{applied:?}");
        bare.check_schema().unwrap();
    }
}
