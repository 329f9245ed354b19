//! Batch jobs over HTTP: asynchronous uploads, server-side imports confined to import
//! roots, progress and events, cancellation, and resumption after `kill -9`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_e2e::{Server, prose, write_corpus};

fn roots_env(root: &Path) -> String {
    format!("[\"{}\"]", root.display())
}

/// A job's event stream. It lasts as long as the job, which on two busy cores can be
/// longer than any fixed client timeout, so this client has none: the stream ends when
/// the job does.
fn event_stream(server: &Server, job: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/v1/jobs/{job}/events", server.url))
        .send()
        .unwrap()
}

fn job_id(status: u16, body: &Value) -> String {
    assert_eq!(status, 202, "{body}");
    body["job_id"].as_str().expect("job_id").to_string()
}

/// `(id, chunks, hash)` of every document of a KB.
fn documents(server: &Server, kb: &str) -> BTreeMap<String, (u64, String)> {
    let (status, body) = server.get(&format!("/v1/kbs/{kb}/documents?limit=1000"));
    assert_eq!(status, 200, "{body}");
    assert!(body["next_cursor"].is_null());
    body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                (
                    d["chunks"].as_u64().unwrap(),
                    d["hash"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn assert_consistent(server: &Server, kb: &str) {
    let (status, info) = server.get(&format!("/v1/kbs/{kb}"));
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info["stored"]["vectors"], info["chunks"],
        "no duplicates: {info}"
    );
    assert_eq!(
        info["stored"]["keywords"], info["chunks"],
        "no duplicates: {info}"
    );
}

#[test]
fn async_uploads_imports_events_and_cancellation() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let docs = root.path().join("docs");
    write_corpus(&docs, 6, 2);
    std::fs::write(
        docs.join("notes.txt"),
        "Plain text notes about the backup rotation.",
    )
    .unwrap();
    std::fs::write(
        outside.path().join("secret.md"),
        "# Secret\n\nDo not import.",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.md"),
        docs.join("linked-secret.md"),
    )
    .unwrap();
    let tiny = root.path().join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    for i in 0..1000 {
        std::fs::write(tiny.join(format!("t{i:04}.txt")), format!("Tiny note {i}.")).unwrap();
    }
    let server = Server::start_with_env(&[("ZHIKU_JOBS__IMPORT_ROOTS", &roots_env(root.path()))]);

    // Asynchronous upload: 202 with a job id, then the job runs to completion.
    let (status, body) = server.upload_form(
        "uploads",
        "?wait=false",
        &[
            ("file", Some("a.md"), prose(1, 2).into_bytes()),
            ("file", Some("b.md"), prose(2, 2).into_bytes()),
            ("file", Some("bad.pdf"), b"%PDF-1.4 garbage".to_vec()),
        ],
    );
    let upload_job = job_id(status, &body);
    let job = server.wait_job(&upload_job);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["source"]["type"], "upload");
    assert_eq!(
        (
            job["files_total"].clone(),
            job["files_indexed"].clone(),
            job["files_failed"].clone()
        ),
        (json!(3), json!(2), json!(1)),
        "{job}"
    );
    assert_eq!(job["errors"][0]["name"], "bad.pdf");
    assert_eq!(job["errors"][0]["code"], "invalid_pdf");
    assert_eq!(job["errors"][0]["stage"], "parse");
    assert!(job["finished_at"].is_string());
    assert_eq!(documents(&server, "uploads").len(), 2);

    // Import with a glob; the symlink pointing outside the root is not followed.
    let (status, body) = server.post_json(
        "/v1/jobs",
        &json!({"kb": "imports", "path": docs.to_str().unwrap(), "glob": "**/*.md"}),
    );
    let import_job = job_id(status, &body);
    let job = server.wait_job(&import_job);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["files_total"], 6, "{job}");
    let ids: Vec<String> = documents(&server, "imports").into_keys().collect();
    assert_eq!(ids.len(), 6);
    assert!(ids.contains(&"team-0/report-000.md".to_string()), "{ids:?}");
    assert!(ids.iter().all(|id| !id.contains("secret")), "{ids:?}");
    assert!(job["chunks_indexed"].as_u64().unwrap() >= 6);
    assert!(job["bytes"].as_u64().unwrap() > 0);
    assert!(job["files_per_second"].as_f64().unwrap() > 0.0);

    // The same import again: everything unchanged.
    let (status, body) = server.post_json(
        "/v1/jobs",
        &json!({"kb": "imports", "path": docs.to_str().unwrap(), "glob": "**/*.md"}),
    );
    let job = server.wait_job(&job_id(status, &body));
    assert_eq!(
        (job["files_unchanged"].clone(), job["files_indexed"].clone()),
        (json!(6), json!(0)),
        "{job}"
    );

    // Events of a finished job: one `done` event, then the stream ends.
    let events = event_stream(&server, &import_job);
    assert_eq!(events.status().as_u16(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = events.text().unwrap();
    assert!(text.contains("event: done"), "{text}");
    assert!(text.contains("\"state\":\"succeeded\""), "{text}");

    // Paths outside the roots, by `..` or by symlink, are forbidden, and so is a path
    // that does not exist (the answer must not tell which server paths exist); bad input
    // is 400.
    let forbidden = [
        outside.path().to_str().unwrap().to_string(),
        format!("{}/../..", docs.display()),
        root.path().join("escape").to_str().unwrap().to_string(),
        root.path().join("missing").to_str().unwrap().to_string(),
        "/etc/no-such-dir".to_string(),
    ];
    for path in &forbidden {
        let (status, body) = server.post_json("/v1/jobs", &json!({"kb": "x", "path": path}));
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (403, json!("forbidden")),
            "{path}: {body}"
        );
    }
    for request in [
        json!({"kb": "x", "path": docs.join("notes.txt").to_str().unwrap()}),
        json!({"kb": "x", "path": docs.to_str().unwrap(), "glob": "["}),
        json!({"kb": "x", "path": docs.to_str().unwrap(), "recursive": true}),
        json!({"kb": "Bad Name", "path": docs.to_str().unwrap()}),
    ] {
        let (status, body) = server.post_json("/v1/jobs", &request);
        assert_eq!(status, 400, "{request}: {body}");
    }
    let (status, _) = server.get("/v1/jobs/no-such-job");
    assert_eq!(status, 404);
    let (status, _) = server.get("/v1/jobs/no-such-job/events");
    assert_eq!(status, 404);
    let (status, _) = server.delete("/v1/jobs/no-such-job");
    assert_eq!(status, 404);
    let (status, body) = server.delete(&format!("/v1/jobs/{import_job}"));
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict")),
        "{body}"
    );

    // 1,000 tiny files in one job; a job queued behind it is cancelled before it starts,
    // and live events show progress.
    let (status, body) = server.post_json(
        "/v1/jobs",
        &json!({"kb": "tiny", "path": tiny.to_str().unwrap()}),
    );
    let tiny_job = job_id(status, &body);
    let (status, body) = server.post_json(
        "/v1/jobs",
        &json!({"kb": "later", "path": docs.to_str().unwrap()}),
    );
    let queued_job = job_id(status, &body);
    let (status, body) = server.delete(&format!("/v1/jobs/{queued_job}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled", "{body}");
    let events = event_stream(&server, &tiny_job).text().unwrap();
    assert!(events.contains("event: progress"), "{events}");
    assert!(
        events.trim_end().ends_with('}') && events.contains("event: done"),
        "{events}"
    );
    let job = server.wait_job(&tiny_job);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (job["files_total"].clone(), job["files_indexed"].clone()),
        (json!(1000), json!(1000)),
        "{job}"
    );
    assert_eq!(documents(&server, "tiny").len(), 1000);
    assert_consistent(&server, "tiny");
    let (status, _) = server.get("/v1/kbs/later");
    assert_eq!(status, 404, "the cancelled job never ran");

    // Cancelling a running job stops it; what it committed stays consistent.
    let (status, body) = server.post_json(
        "/v1/jobs",
        &json!({"kb": "tiny2", "path": tiny.to_str().unwrap()}),
    );
    let running = job_id(status, &body);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, job) = server.get(&format!("/v1/jobs/{running}"));
        if job["files_done"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = server.delete(&format!("/v1/jobs/{running}"));
    assert_eq!(status, 200, "{body}");
    let job = server.wait_job(&running);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["files_done"].as_u64().unwrap() < 1000, "{job}");
    assert_eq!(
        documents(&server, "tiny2").len() as u64,
        job["files_indexed"].as_u64().unwrap()
    );
    assert_consistent(&server, "tiny2");

    let (status, list) = server.get("/v1/jobs");
    assert_eq!(status, 200);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 6, "{list}");
    assert_eq!(list["jobs"][0]["id"], json!(running), "newest first");
}

#[test]
fn a_job_resumes_after_kill_9_and_matches_a_clean_run() {
    let root = tempfile::tempdir().unwrap();
    let corpus = root.path().join("corpus");
    write_corpus(&corpus, 24, 6);
    let env = roots_env(root.path());
    let env = [("ZHIKU_JOBS__IMPORT_ROOTS", env.as_str())];
    let request = json!({"kb": "reports", "path": corpus.to_str().unwrap()});

    // Reference: a clean, uninterrupted run.
    let clean = Server::start_with_env(&env);
    let (status, body) = clean.post_json("/v1/jobs", &request);
    let job = clean.wait_job(&job_id(status, &body));
    assert_eq!(job["state"], "succeeded", "{job}");
    let expected = documents(&clean, "reports");
    assert_eq!(expected.len(), 24);
    drop(clean);

    // Interrupted: kill -9 once some files are committed, and well before the end.
    let server = Server::start_with_env(&env);
    let (status, body) = server.post_json("/v1/jobs", &request);
    let id = job_id(status, &body);
    let deadline = Instant::now() + Duration::from_secs(300);
    let done_before = loop {
        let (_, job) = server.get(&format!("/v1/jobs/{id}"));
        let done = job["files_done"].as_u64().unwrap();
        if done >= 3 {
            break done;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        done_before < 24,
        "the job finished before it could be killed"
    );
    let data = server.kill();

    let server = Server::start_in(data, &env);
    let job = server.wait_job(&id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (
            job["files_total"].clone(),
            job["files_done"].clone(),
            job["files_indexed"].clone()
        ),
        (json!(24), json!(24), json!(24)),
        "every file counted once: {job}"
    );
    assert_eq!(
        documents(&server, "reports"),
        expected,
        "same ids, chunks and hashes"
    );
    assert_consistent(&server, "reports");
    let hits = server.search("reports", "warehouse review follow-up", "hybrid");
    assert!(!hits.is_empty());
}

#[test]
fn an_upload_job_of_same_named_files_in_folders_resumes_every_file() {
    // Folder uploads send paths: `d00/readme.md` … `d23/readme.md` are 24 documents, and a
    // job interrupted midway must not take the files it has not done for ones it has.
    let parts: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| (format!("d{i:02}/readme.md"), prose(i, 6).into_bytes()))
        .collect();
    let form: Vec<(&str, Option<&str>, Vec<u8>)> = parts
        .iter()
        .map(|(path, bytes)| ("file", Some(path.as_str()), bytes.clone()))
        .collect();
    let server = Server::start();
    let (status, body) = server.upload_form("readmes", "?wait=false", &form);
    let id = job_id(status, &body);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, job) = server.get(&format!("/v1/jobs/{id}"));
        if job["files_done"].as_u64().unwrap() >= 3 {
            assert!(
                job["files_done"].as_u64().unwrap() < 24,
                "the job finished before it could be killed"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = server.kill();

    let server = Server::start_in(data, &[]);
    let job = server.wait_job(&id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (job["files_done"].clone(), job["files_indexed"].clone()),
        (json!(24), json!(24)),
        "{job}"
    );
    let stored = documents(&server, "readmes");
    assert_eq!(stored.len(), 24, "{stored:?}");
    assert_consistent(&server, "readmes");
}

#[test]
fn import_roots_are_per_kb_and_checked_again_when_a_job_runs() {
    let root = tempfile::tempdir().unwrap();
    let (hr, sales) = (root.path().join("hr"), root.path().join("sales"));
    for dir in [&hr, &sales] {
        std::fs::create_dir_all(dir).unwrap();
    }
    for i in 0..400 {
        std::fs::write(
            sales.join(format!("s{i:03}.txt")),
            format!("Sales note {i}."),
        )
        .unwrap();
    }
    std::fs::write(hr.join("leave.md"), "# Leave\n\nTwenty days.").unwrap();
    // KB `hr` may import from hr/ only; every other KB from the whole root.
    let per_kb = format!("{{hr=[\"{}\"]}}", hr.display());
    let env = [
        ("ZHIKU_JOBS__IMPORT_ROOTS", roots_env(root.path())),
        ("ZHIKU_JOBS__KB_IMPORT_ROOTS", per_kb),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with_env(&env);
    let import = |kb: &str, dir: &std::path::Path| {
        server.post_json(
            "/v1/jobs",
            &json!({"kb": kb, "path": dir.to_str().unwrap()}),
        )
    };
    let (status, body) = import("hr", &sales);
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    let (status, body) = import("hr", &hr);
    let job = server.wait_job(&job_id(status, &body));
    assert_eq!(job["state"], "succeeded", "{job}");

    // Queued under the old roots, resumed under new ones that no longer allow it: the
    // job fails rather than reading what the roots now forbid.
    let (status, body) = import("sales", &sales);
    let id = job_id(status, &body);
    let data = server.kill();
    let restricted = format!("{{sales=[\"{}\"]}}", hr.display());
    let server = Server::start_in(
        data,
        &[("ZHIKU_JOBS__KB_IMPORT_ROOTS", restricted.as_str())],
    );
    let job = server.wait_job(&id);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["message"]
            .as_str()
            .unwrap_or_default()
            .contains("import roots"),
        "{job}"
    );
    assert!(
        job["files_done"].as_u64().unwrap_or(0) < 400,
        "the job read on after its roots were withdrawn: {job}"
    );
}
