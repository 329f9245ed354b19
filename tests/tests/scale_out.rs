//! Scaled out: API nodes and workers as separate processes over one PostgreSQL catalog
//! and one Qdrant. Any API node answers for what another was given; jobs queued through
//! an API node wait for a worker, and the job of a worker killed mid-way is finished by
//! another.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zhiku_catalog::test_support::TestDatabase;
use zhiku_e2e::{Server, write_corpus};

fn job_id(status: u16, body: &Value) -> String {
    assert_eq!(status, 202, "{body}");
    body["job_id"].as_str().expect("job_id").to_string()
}

#[test]
#[ignore = "needs a Qdrant server: set ZHIKU_TEST_QDRANT_URL (gRPC, e.g. http://127.0.0.1:6334) and run with --ignored (and ZHIKU_TEST_POSTGRES_URL)"]
fn api_nodes_and_workers_share_kbs_jobs_and_answers() {
    let qdrant = std::env::var("ZHIKU_TEST_QDRANT_URL").expect("ZHIKU_TEST_QDRANT_URL");
    let db = TestDatabase::create();
    let shared = tempfile::tempdir().unwrap();
    let staging = shared.path().join("staging");
    let root = shared.path().join("imports");
    write_corpus(&root.join("corpus"), 24, 6);
    let prefix = format!(
        "e2e_scale_{}_",
        &db.url
            .rsplit('/')
            .next()
            .unwrap()
            .replace("zhiku_test_", "")
    );
    let roots = format!("[\"{}\"]", root.display());
    let common = [
        ("ZHIKU_CATALOG__BACKEND", "postgres"),
        ("ZHIKU_CATALOG__URL", db.url.as_str()),
        ("ZHIKU_STORE__BACKEND", "qdrant"),
        ("ZHIKU_STORE__URL", qdrant.as_str()),
        ("ZHIKU_STORE__COLLECTION_PREFIX", prefix.as_str()),
        ("ZHIKU_JOBS__STAGING_DIR", staging.to_str().unwrap()),
        ("ZHIKU_JOBS__IMPORT_ROOTS", roots.as_str()),
        ("ZHIKU_JOBS__LEASE_SECS", "6"),
        ("ZHIKU_JOBS__POLL_SECS", "1"),
    ];
    let node = |role: &'static str| {
        let mut env = common.to_vec();
        env.push(("ZHIKU_SERVER__ROLE", role));
        Server::start_with_env(&env)
    };
    let (api1, api2) = (node("api"), node("api"));

    // A synchronous upload through one API node is found through the other.
    let (status, body) = api1.upload(
        "handbook",
        &[(
            "leave.md",
            b"# Leave\n\nEmployees get 25 days of paid leave a year.".to_vec(),
        )],
    );
    assert_eq!(status, 201, "{body}");
    let hits = api2.search("handbook", "how many days of paid leave", "hybrid");
    assert_eq!(hits[0]["document_name"], "leave.md", "{hits:?}");

    // A job queued through an API node waits: no worker runs yet.
    let (status, body) = api2.upload_form(
        "handbook",
        "?wait=false",
        &[
            (
                "file",
                Some("travel.md"),
                b"# Travel\n\nBook trains over flights under 600 km.".to_vec(),
            ),
            (
                "file",
                Some("bikes.md"),
                b"# Bikes\n\nThe bike shed opens at 7 am.".to_vec(),
            ),
        ],
    );
    let upload = job_id(status, &body);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(api1.get(&format!("/v1/jobs/{upload}")).1["state"], "queued");

    // A worker takes it; every API node sees it done and its documents.
    let worker = node("worker");
    // A worker answers operations only, and says where the API is.
    assert_eq!(worker.get("/readyz").0, 200);
    let (status, refused) = worker.get("/v1/kbs");
    assert_eq!(status, 404, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("role worker"), "{refused}");
    let job = api1.wait_job(&upload);
    assert_eq!(job["state"], "succeeded", "{job}");
    let (_, docs) = api2.get("/v1/kbs/handbook/documents");
    assert_eq!(docs["documents"].as_array().unwrap().len(), 3, "{docs}");
    let hits = api1.search("handbook", "when does the bike shed open", "hybrid");
    assert_eq!(hits[0]["document_name"], "bikes.md", "{hits:?}");

    // An import killed mid-way with its worker is finished by another worker.
    let (status, body) = api1.post_json(
        "/v1/jobs",
        &json!({"kb": "reports", "path": root.join("corpus").to_str().unwrap()}),
    );
    let import = job_id(status, &body);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, job) = api2.get(&format!("/v1/jobs/{import}"));
        if job["files_done"].as_u64().unwrap() >= 3 {
            assert!(
                job["files_done"].as_u64().unwrap() < 24,
                "finished too soon: {job}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.kill();
    let _second = node("worker");
    let job = api2.wait_job(&import);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (job["files_done"].clone(), job["files_indexed"].clone()),
        (json!(24), json!(24)),
        "every file counted once: {job}"
    );
    let (_, listed) = api1.get("/v1/kbs");
    let names: Vec<&str> = listed["kbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kb| kb["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["handbook", "reports"], "{listed}");

    // Deleted through one node: gone on the other.
    assert_eq!(api1.delete("/v1/kbs/reports").0, 204);
    assert_eq!(api2.get("/v1/kbs/reports").0, 404);
    assert_eq!(api2.delete("/v1/kbs/handbook").0, 204);
}
