use super::*;

fn turn(at: &str) -> ConversationTurn {
    ConversationTurn {
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

#[test]
fn conversations_past_their_retention_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = ConversationStore::open(&dir.path().join("c.redb")).unwrap();
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
    let cutoff = zhiku_catalog::rfc3339_days_ago(30);
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
