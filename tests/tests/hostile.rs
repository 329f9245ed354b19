//! Hostile files, each of which once killed the service with one upload: now each fails
//! alone with a clear 4xx code, the server stays up, what was stored stays intact, and a
//! job holding them finishes and is not resumed into a crash loop at the next start.

use serde_json::{Value, json};
use zhiku_e2e::{Server, hostile};

const CANARY: &str = "# Keep\n\nThe canary phrase is amber falcon.";

/// The canary document is still stored and found.
fn assert_intact(server: &Server) {
    let (status, body) = server.get("/v1/kbs/kb/documents");
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(names.contains(&"keep.md"), "{body}");
    let hits = server.search("kb", "amber falcon", "hybrid");
    assert!(
        hits.first()
            .is_some_and(|h| h["text"].as_str().unwrap_or("").contains("amber falcon")),
        "{hits:?}"
    );
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn hostile_files_fail_alone_and_the_service_survives() {
    // One worker: each file that kills it must leave a working replacement.
    let env = [("ZHIKU_JOBS__PARSER_PROCESSES", "1")];
    let mut server = Server::start_with_env(&env);
    let (status, body) = server.upload("kb", &[("keep.md", CANARY.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");

    let files = hostile::all();
    for file in &files {
        let (status, body) = server.upload("kb", &[(file.name, file.bytes.clone())]);
        if status == 201 {
            assert!(file.codes.contains(&"indexed"), "{}: {body}", file.what);
        } else {
            assert_eq!(status, 422, "{}: {body}", file.what);
            assert!(file.codes.contains(&code(&body)), "{}: {body}", file.what);
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(file.name), "{}: {body}", file.what);
        }
        assert!(server.is_running(), "{} killed the server", file.what);
        assert_intact(&server);
    }

    // The same files in a background job, beside a good one: the job finishes, the good
    // file is indexed and each hostile one is a failed file with its code.
    let mut parts = vec![("file", Some("good.md"), b"# Good\n\nA good file.".to_vec())];
    parts.extend(
        files
            .iter()
            .map(|f| ("file", Some(f.name), f.bytes.clone())),
    );
    let (status, body) = server.upload_form("jobs", "?wait=false", &parts);
    assert_eq!(status, 202, "{body}");
    let job = server.wait_job(body["job_id"].as_str().expect("job_id"));
    assert_eq!(job["state"], "succeeded", "{job}");
    let mut failed = 0;
    for file in &files {
        let error = job["errors"]
            .as_array()
            .and_then(|errors| errors.iter().find(|e| e["name"] == file.name));
        let Some(error) = error else {
            assert!(
                file.codes.contains(&"indexed"),
                "{} not failed: {job}",
                file.what
            );
            continue;
        };
        failed += 1;
        assert!(
            file.codes
                .contains(&error["code"].as_str().unwrap_or_default()),
            "{}: {error}",
            file.what
        );
        assert_eq!(error["stage"], "parse", "{error}");
    }
    assert!(failed >= 2, "the PDFs fail: {job}");
    assert_eq!(job["files_failed"], json!(failed), "{job}");
    assert_eq!(
        job["files_indexed"],
        json!(1 + files.len() - failed),
        "{job}"
    );
    assert!(server.is_running());

    // A restart resumes nothing: the job is finished, the server comes up and stays up.
    let data = server.kill();
    let mut server = Server::start_in(data, &env);
    assert_intact(&server);
    let (status, jobs) = server.get("/v1/jobs");
    assert_eq!(status, 200, "{jobs}");
    assert!(
        jobs["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().all(|j| j["state"] == "succeeded")),
        "{jobs}"
    );
    assert!(server.is_running());
}

#[test]
fn without_the_sandbox_a_deeply_nested_page_still_parses() {
    // parser_processes = 0 parses on a thread of the server: the deep HTML must not
    // overflow that thread's stack either (the HTML walk is iterative).
    let server = Server::start_with_env(&[("ZHIKU_JOBS__PARSER_PROCESSES", "0")]);
    let (status, body) = server.upload("kb", &[("keep.md", CANARY.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.upload("kb", &[("deep.html", hostile::deep_html(200_000))]);
    assert_eq!(status / 100, 2, "{body}");
    let mut server = server;
    assert!(server.is_running());
}

#[test]
fn a_file_past_the_parser_memory_limit_fails_alone() {
    // An idle worker uses about 90 MiB of its address space: 160 MiB leaves too little for
    // 40 MB of text, which parsing holds several times (bytes, blocks, reply).
    let env = [
        ("ZHIKU_JOBS__PARSER_PROCESSES", "1"),
        ("ZHIKU_JOBS__PARSER_MEMORY_MB", "160"),
    ];
    let mut server = Server::start_with_env(&env);
    let (status, body) = server.upload("kb", &[("keep.md", CANARY.as_bytes().to_vec())]);
    assert_eq!(status, 201, "{body}");
    let big = "plain words in a long file\n"
        .repeat(1_500_000)
        .into_bytes();
    let (status, body) = server.upload("kb", &[("big.txt", big)]);
    assert_eq!(status, 422, "{body}");
    assert_eq!(code(&body), "parser_out_of_memory", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("parser_memory_mb"),
        "{body}"
    );
    assert!(server.is_running());
    assert_intact(&server);
    // The worker was replaced: the next upload parses.
    let (status, body) = server.upload("kb", &[("next.md", b"# Next\n\nStill parsing.".to_vec())]);
    assert_eq!(status, 201, "{body}");
}
