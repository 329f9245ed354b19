//! The use cases driven directly, with the real small models and stores in a temporary
//! directory and no HTTP server: upload, search, ask with a conversation, and the access
//! rules. (The server's own tests cover the HTTP mapping on top.)

use zhiku_app::config::Config;
use zhiku_app::services::{Models, Services};
use zhiku_jobs::{Input, InputSource};
use zhiku_schemas::{AnswerMode, AskRequest, DocumentId, KbName, SearchRequest};

fn input(name: &str, text: &str) -> Input {
    Input {
        name: name.into(),
        path: name.into(),
        tags: Vec::new(),
        document_id: DocumentId::new(name).unwrap(),
        content_type: None,
        source: InputSource::Bytes(text.as_bytes().into()),
    }
}

#[test]
fn upload_search_and_ask_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.server.models_dir = zhiku_e2e::models_dir();
    // Parser workers are the `zhiku` binary itself; a test binary parses in-process.
    config.jobs.parser_processes = 0;
    config.ocr.enabled = false;
    let services = Services::load(config, Models::All, false).expect("load the models");
    let hr = KbName::new("hr").unwrap();

    let (documents, errors) = services
        .ingest_now(
            &hr,
            vec![
                input(
                    "leave.md",
                    "# Leave policy\n\nEmployees get 25 days of paid leave per year, booked in the HR portal.\n",
                ),
                input(
                    "travel.md",
                    "# Travel\n\nTrain tickets are reimbursed in second class; flights need approval.\n",
                ),
            ],
        )
        .expect("ingest");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(documents.len(), 2);

    let hits = services
        .search(&hr, &SearchRequest::new("how many days of paid leave"))
        .expect("search");
    assert_eq!(hits[0].document_id, "leave.md", "{hits:?}");

    // Extractive answers need no generation: quick and deterministic.
    let mut request = AskRequest::new("How many days of paid leave do employees get?");
    request.answer_mode = Some(AnswerMode::Extractive);
    let mut streamed = String::new();
    let mut sink = |piece: &str| {
        streamed.push_str(piece);
        true
    };
    let answer = services.ask(&hr, &request, &mut sink).expect("ask");
    assert!(answer.answer.contains("25 days"), "{}", answer.answer);
    assert_eq!(answer.citations[0].document_id, "leave.md");
    assert_eq!(streamed, answer.answer);

    let err = services
        .search(
            &KbName::new("no-such-kb").unwrap(),
            &SearchRequest::new("leave"),
        )
        .expect_err("an unknown knowledge base");
    assert!(err.to_string().contains("no-such-kb"), "{err}");
}
