//! Harness for end-to-end tests: starts the built `zhiku` binary on a free port with a
//! temporary data directory and the real models, and talks to it over HTTP.
//!
//! The binary is found through `ZHIKU_BIN`, or next to the test executable's target
//! directory; `deploy/test.sh` builds it before running the tests.

pub mod browser;
mod files;
pub mod hostile;

pub use files::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, multipart};
use serde_json::Value;

/// The workspace root: the nearest folder holding `Cargo.lock` above the crate under
/// test (this one, or a crate deeper down that uses these helpers).
pub fn workspace_root() -> PathBuf {
    // Read at run time: a shared target directory may hold a test binary compiled from
    // another checkout of the same sources, whose compile-time path is not this one.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the crate is inside the workspace")
        .to_path_buf()
}

/// The models directory: `ZHIKU_MODELS` or `<workspace>/models`.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("ZHIKU_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models"));
    assert!(
        dir.join("smollm2").is_dir(),
        "models not found in {}: run deploy/setup.sh first",
        dir.display()
    );
    dir
}

/// A program of the test tools' virtualenv (`python`, `hadolint`, `yamllint`), made by
/// `ZHIKU_TEST_TOOLS=1 deploy/setup.sh` (deploy/test.sh does); `ZHIKU_TEST_TOOLS_BIN`
/// names another directory.
pub fn test_tool(name: &str) -> PathBuf {
    let bin = match std::env::var_os("ZHIKU_TEST_TOOLS_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("ZHIKU_CACHE")
            .map_or_else(
                || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/zhiku"),
                PathBuf::from,
            )
            .join("test-venv/bin"),
    };
    let tool = bin.join(name);
    assert!(
        tool.exists(),
        "{} not found: run ZHIKU_TEST_TOOLS=1 deploy/setup.sh (deploy/test.sh does)",
        tool.display()
    );
    tool
}

/// The environment that switches the embedder from the default (multilingual-e5-small,
/// GGUF) to all-MiniLM-L6-v2 on ONNX Runtime.
pub const MINILM_ENV: [(&str, &str); 6] = [
    ("ZHIKU_EMBEDDER__KIND", "onnx"),
    ("ZHIKU_EMBEDDER__NAME", "all-minilm-l6-v2"),
    ("ZHIKU_EMBEDDER__MODEL", "all-minilm-l6-v2/model.onnx"),
    ("ZHIKU_EMBEDDER__QUERY_PREFIX", ""),
    ("ZHIKU_EMBEDDER__PASSAGE_PREFIX", ""),
    // The relevance floor is on e5's cosine scale; MiniLM's is different.
    ("ZHIKU_LLM__MIN_RELEVANCE", "0"),
];

/// The tiny English-only LLM (SmolLM2-135M) that servers under test run unless a test
/// says otherwise: most tests check what the service does around an answer, not how good
/// it is, and this model answers four times faster than the default.
pub const SMALL_LLM: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The small Chinese-capable LLM (Qwen2.5-Coder-0.5B-Instruct), for tests that judge what an
/// answer says, in Chinese or English, or need a model that translates:
/// `Server::start_with_env(&[("ZHIKU_LLM__MODEL", CHINESE_LLM)])`. It shares the default's
/// family, prompt and chat template (the default is its 1.5B sibling) at half the time.
pub const CHINESE_LLM: &str = "qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// An answer's text with every `[n]` citation marker, and the spaces before it, removed:
/// markers may be added to an answer (a sentence stating a source's fact) or removed from
/// it (one naming no source) after it was streamed, while its words are what was streamed.
pub fn without_markers(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(']') {
            out.push_str(rest[..open].trim_end_matches(' '));
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..=open]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A route as the server's table lists it (`zhiku routes`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path template as axum matches it (`/v1/kbs/{kb}/documents/{*id}`).
    pub path: String,
    /// Who may call it (`open`, `any-key`, `kb-read`, `kb-write`, `per-item`).
    pub access: String,
}

/// Every route the binary serves, from `zhiku routes`: the tests cover what the server
/// has, not a list of their own.
pub fn routes() -> Vec<Route> {
    let output = Command::new(binary())
        .arg("routes")
        .output()
        .expect("run zhiku routes");
    assert!(output.status.success(), "{output:?}");
    let routes: Vec<Route> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(method), Some(path), Some(access), None) => Route {
                    method: method.into(),
                    path: path.into(),
                    access: access.into(),
                },
                _ => panic!("not METHOD PATH ACCESS: {line}"),
            }
        })
        .collect();
    assert!(routes.len() > 10, "{routes:?}");
    routes
}

/// The `zhiku` binary under test.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ZHIKU_BIN") {
        return PathBuf::from(bin);
    }
    // Test executables live in <target>/<profile>/deps/; the binary in <target>/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("zhiku");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p zhiku-server), or set ZHIKU_BIN",
        bin.display()
    );
    bin
}

/// Whether process `pid` holds a listening TCP socket on `port`: one of its descriptors is
/// the socket that `/proc/net/tcp` (or `tcp6`) lists as listening there.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            let inode = link
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .to_string();
            Some(inode)
        })
        .collect();
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address, state (0A = LISTEN), inode
                fields.len() > 9
                    && fields[1].ends_with(&port_hex)
                    && fields[3] == "0A"
                    && inodes.contains(fields[9])
            })
        })
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `zhiku serve`, killed on drop.
pub struct Server {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// HTTP client with a generous timeout (answers come from a CPU LLM).
    pub client: Client,
    /// The server's data directory (shared with a restarted server via [`Server::kill`]).
    pub data: Arc<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with default settings.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts a server with extra environment variables (config overrides).
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), env)
    }

    /// Starts a server on an existing data directory (e.g. after [`Server::kill`]).
    pub fn start_in(data: Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> Self {
        Self::start_on(data, "127.0.0.1", env)
    }

    /// Starts a server listening on `host` (e.g. `0.0.0.0`), reached through loopback.
    ///
    /// The port is picked free, then given to the server; another process (a test binary
    /// running beside this one) can take it in between. So the server counts as started
    /// only once this very process listens on the port, and one that could not bind it is
    /// started again on another port.
    pub fn start_on(data: Arc<tempfile::TempDir>, host: &str, env: &[(&str, &str)]) -> Self {
        for _ in 0..10 {
            let port = free_port();
            let addr = format!("{host}:{port}");
            let mut command = Command::new(binary());
            command
                .args(["serve", "--addr", &addr, "--data"])
                .arg(data.path())
                .arg("--models")
                .arg(models_dir())
                .env("RUST_LOG", "warn")
                .env("ZHIKU_LLM__MODEL", SMALL_LLM)
                .env("ZHIKU_STORE__COLLECTION_PREFIX", store_prefix(data.path()))
                .envs(catalog_env(data.path()))
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log_path(&data))
                        .expect("server log"),
                ));
            for (k, v) in env {
                command.env(k, v);
            }
            let child = command.spawn().expect("spawn zhiku");
            let client = Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client");
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                client,
                data: data.clone(),
            };
            if server.wait_ready(port) {
                return server;
            }
        }
        panic!("no free port could be bound in 10 tries");
    }

    /// Waits until the server answers `/healthz` from a socket it owns. False when it
    /// exited because another process took its port.
    fn wait_ready(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let stderr = std::fs::read_to_string(log_path(&self.data)).unwrap_or_default();
                if stderr.contains(&format!(":{port}: Address already in use")) {
                    return false;
                }
                panic!("zhiku exited early with {status}: {stderr}");
            }
            if listens_on(self.child.id(), port)
                && let Ok(r) = self.client.get(format!("{}/healthz", self.url)).send()
                && r.status().is_success()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("zhiku did not become healthy within 180 s");
    }

    /// Requests without an API key.
    pub fn api(&self) -> Api<'_> {
        Api {
            server: self,
            key: None,
        }
    }

    /// Requests that present `key` as `Authorization: Bearer`.
    pub fn as_key(&self, key: &str) -> Api<'_> {
        Api {
            server: self,
            key: Some(key.to_string()),
        }
    }

    /// Uploads files `(name, bytes)` to a KB; returns status and JSON body.
    pub fn upload(&self, kb: &str, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
        self.api().upload(kb, files)
    }

    /// POSTs JSON to a path; returns status and JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.api().post_json(path, body)
    }

    /// POSTs raw bytes with a content type; returns status and JSON body.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        self.api().post_raw(path, content_type, body)
    }

    /// GETs a path; returns status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.api().get(path)
    }

    /// GETs a path that answers text (HTML, metrics); returns status, content type and body.
    pub fn get_text(&self, path: &str) -> (u16, String, String) {
        self.api().get_text(path)
    }

    /// DELETEs a path; returns status and JSON body (Null when empty).
    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.api().delete(path)
    }

    /// Searches a KB and returns the hits.
    pub fn search(&self, kb: &str, query: &str, mode: &str) -> Vec<Value> {
        self.api().search(kb, query, mode)
    }

    /// Uploads with explicit form parts: `(field, file name or None for text, bytes)`,
    /// to `/v1/kbs/{kb}/documents{query}`; returns status and JSON body.
    pub fn upload_form(
        &self,
        kb: &str,
        query: &str,
        parts: &[(&str, Option<&str>, Vec<u8>)],
    ) -> (u16, Value) {
        self.api().upload_form(kb, query, parts)
    }

    /// Polls a job until it finishes (10 minutes at most) and returns its final state.
    pub fn wait_job(&self, id: &str) -> Value {
        self.api().wait_job(id)
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and returns its data
    /// directory for a restart.
    pub fn kill(mut self) -> Arc<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data.clone()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM, as a service manager does to stop the server gracefully.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (a minute at most) and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "zhiku did not exit within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.data)).unwrap_or_default()
    }
}

/// Requests to a [`Server`] as one caller: with an API key, or without.
pub struct Api<'a> {
    server: &'a Server,
    key: Option<String>,
}

impl Api<'_> {
    /// A request to `path` on the server, carrying the key if there is one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let request = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.url));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Uploads files `(name, bytes)` to a KB; returns status and JSON body.
    pub fn upload(&self, kb: &str, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
        let parts: Vec<(&str, Option<&str>, Vec<u8>)> = files
            .iter()
            .map(|(name, bytes)| ("file", Some(*name), bytes.clone()))
            .collect();
        self.upload_form(kb, "", &parts)
    }

    /// POSTs JSON to a path; returns status and JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        send(self.request(reqwest::Method::POST, path).json(body))
    }

    /// POSTs raw bytes with a content type; returns status and JSON body.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
    }

    /// GETs a path; returns status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::GET, path))
    }

    /// GETs a path that answers text (HTML, metrics); returns status, content type and body.
    pub fn get_text(&self, path: &str) -> (u16, String, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .expect("request");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (
            response.status().as_u16(),
            content_type,
            response.text().expect("body"),
        )
    }

    /// DELETEs a path; returns status and JSON body (Null when empty).
    pub fn delete(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::DELETE, path))
    }

    /// Searches a KB and returns the hits.
    pub fn search(&self, kb: &str, query: &str, mode: &str) -> Vec<Value> {
        let (status, body) = self.post_json(
            &format!("/v1/kbs/{kb}/search"),
            &serde_json::json!({ "query": query, "top_k": 5, "mode": mode }),
        );
        assert_eq!(status, 200, "search failed: {body}");
        body["hits"].as_array().expect("hits array").clone()
    }

    /// Uploads with explicit form parts: `(field, file name or None for text, bytes)`,
    /// to `/v1/kbs/{kb}/documents{query}`; returns status and JSON body.
    pub fn upload_form(
        &self,
        kb: &str,
        query: &str,
        parts: &[(&str, Option<&str>, Vec<u8>)],
    ) -> (u16, Value) {
        let mut form = multipart::Form::new();
        for (field, name, bytes) in parts {
            let part = multipart::Part::bytes(bytes.clone());
            let part = match name {
                Some(name) => part.file_name(name.to_string()),
                None => part,
            };
            form = form.part(field.to_string(), part);
        }
        send(
            self.request(
                reqwest::Method::POST,
                &format!("/v1/kbs/{kb}/documents{query}"),
            )
            .multipart(form),
        )
    }

    /// Polls a job until it finishes (10 minutes at most) and returns its final state.
    pub fn wait_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(status, 200, "{job}");
            let state = job["state"].as_str().unwrap_or_default();
            if ["succeeded", "failed", "cancelled"].contains(&state) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Deterministic prose for file `i`: several paragraphs, so a file makes several chunks.
pub fn prose(i: usize, paragraphs: usize) -> String {
    const WORDS: [&str; 16] = [
        "inventory",
        "shipment",
        "invoice",
        "warehouse",
        "customer",
        "supplier",
        "audit",
        "contract",
        "budget",
        "schedule",
        "quality",
        "safety",
        "training",
        "network",
        "backup",
        "release",
    ];
    let mut out = format!("# Report {i}\n\n");
    for p in 0..paragraphs {
        for s in 0..8 {
            let a = WORDS[(i * 7 + p * 3 + s) % 16];
            let b = WORDS[(i + p * 5 + s * 11) % 16];
            out.push_str(&format!(
                "The {a} review number {i}-{p}-{s} found that the {b} process needs a follow-up. "
            ));
        }
        out.push_str("\n\n");
    }
    out
}

/// Writes `files` reports of `paragraphs` paragraphs under `dir`, in three team folders.
pub fn write_corpus(dir: &Path, files: usize, paragraphs: usize) {
    for i in 0..files {
        let sub = dir.join(format!("team-{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("report-{i:03}.md")), prose(i, paragraphs)).unwrap();
    }
}

/// The Qdrant collection prefix of the servers and commands on one data directory: with
/// `ZHIKU_STORE__BACKEND=qdrant` the suite shares one Qdrant server, and tests that use the
/// same KB names must not share collections (the embedded default ignores it).
pub fn store_prefix(data: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    format!("e2e_{:016x}_", hasher.finish())
}

/// The catalog settings of the servers and commands on one data directory: with
/// `ZHIKU_CATALOG__BACKEND=postgres` each data directory gets a database of its own on
/// the test server (`ZHIKU_TEST_POSTGRES_URL`), created and migrated on first use, as
/// its redb catalog would be fresh. Empty on the embedded default.
pub fn catalog_env(data: &Path) -> Vec<(&'static str, String)> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static CREATED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if std::env::var("ZHIKU_CATALOG__BACKEND").as_deref() != Ok("postgres") {
        return Vec::new();
    }
    let name = format!("{}db", store_prefix(data));
    let server = zhiku_catalog::test_support::server_url();
    let url = zhiku_catalog::test_support::with_database(&server, &name);
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    if created
        .get_or_insert_with(HashSet::new)
        .insert(name.clone())
    {
        zhiku_catalog::test_support::create_database(&server, &name);
    }
    vec![("ZHIKU_CATALOG__URL", url)]
}

/// Runs the `zhiku` CLI on a data directory with the real models; returns exit code,
/// stdout and stderr.
pub fn zhiku(data: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("--data")
        .arg(data)
        .arg("--models")
        .arg(models_dir())
        .args(args)
        .env("RUST_LOG", "warn")
        .env("ZHIKU_LLM__MODEL", SMALL_LLM)
        .env("ZHIKU_STORE__COLLECTION_PREFIX", store_prefix(data))
        .envs(catalog_env(data))
        .output()
        .expect("run zhiku");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `zhiku keys create ARGS` on a data directory; returns the key printed on stdout.
pub fn create_key(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = zhiku(data, &all);
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.trim().to_string();
    assert!(key.starts_with("zk_"), "{stdout}");
    key
}

/// Server-Sent Events read from a streaming response as they arrive.
pub struct EventStream {
    reader: std::io::BufReader<reqwest::blocking::Response>,
}

impl EventStream {
    /// Reads an answer's `token` events up to its `done` event: the streamed text, the
    /// number of token events, and the `done` data. Panics on any other event or if the
    /// stream ends first.
    pub fn answer(&mut self) -> (String, usize, Value) {
        let (mut text, mut tokens) = (String::new(), 0);
        loop {
            let (name, data) = self.next_event().expect("stream ended before done");
            match name.as_str() {
                "token" => {
                    tokens += 1;
                    text.push_str(data["text"].as_str().unwrap());
                }
                "done" => return (text, tokens, data),
                other => panic!("unexpected event {other}: {data}"),
            }
        }
    }

    /// Wraps a response whose body is `text/event-stream`.
    pub fn new(response: reqwest::blocking::Response) -> Self {
        Self {
            reader: std::io::BufReader::new(response),
        }
    }

    /// The next event as `(name, data as JSON)`, skipping comments (keep-alives); `None`
    /// when the stream ends.
    pub fn next_event(&mut self) -> Option<(String, Value)> {
        use std::io::BufRead;
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).expect("read event stream") == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if name.is_empty() && data.is_empty() {
                    continue;
                }
                let value = serde_json::from_str(&data)
                    .unwrap_or_else(|_| panic!("event {name} data is not JSON: {data}"));
                return Some((name, value));
            }
            if let Some(rest) = line.strip_prefix("event:") {
                name = rest.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
    }
}

fn send(request: RequestBuilder) -> (u16, Value) {
    into_parts(request.send().expect("request"))
}

fn into_parts(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response is not JSON (status {status}): {text}"))
    };
    (status, body)
}

/// The server's stderr, kept beside (not in) its data directory's contents.
fn log_path(data: &tempfile::TempDir) -> PathBuf {
    data.path().join("server.log")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server logged.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(log_path(&self.data)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- server log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
