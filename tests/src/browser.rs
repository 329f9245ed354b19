//! A headless Chromium driven through ChromeDriver's WebDriver protocol (W3C): plain HTTP
//! with JSON, so the web page's tests need no browser-automation crate. Debian's
//! `chromium` and `chromium-driver` packages provide both programs (`deploy/setup.sh`
//! installs them with the test tools).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a step may take before the test gives up: long enough for a busy 2-core machine
/// (a streamed answer on the CPU, an upload job), so reaching it means the page is stuck.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// A browser session, closed (and its driver stopped) on drop.
pub struct Browser {
    driver: Child,
    client: Client,
    session: String,
    /// Where screenshots go.
    shots: PathBuf,
    step: usize,
}

fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: run ZHIKU_TEST_TOOLS=1 deploy/setup.sh (deploy/test.sh does), or set {env}",
        path.display()
    );
    path
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium whose language is `lang` (e.g. `en-US`);
    /// screenshots are written to `shots`.
    pub fn start(lang: &str, shots: &Path) -> Self {
        let chromium = program("ZHIKU_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("ZHIKU_CHROMEDRIVER", "/usr/bin/chromedriver");
        std::fs::create_dir_all(shots).expect("screenshot directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = Client::builder().timeout(PATIENCE).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = client
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--lang={lang}")],
                "prefs": {"intl.accept_languages": lang},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let response: Value = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .and_then(|r| r.json())
            .expect("new session");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_string();
        Self {
            driver,
            client,
            session: format!("{base}/session/{session}"),
            shots: shots.to_path_buf(),
            step: 0,
        }
    }

    /// One WebDriver command; its `value`, or a panic naming the command and the error.
    fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method.clone(), path, body)
            .unwrap_or_else(|(error, message)| panic!("{method} {path}: {error}: {message}"))
    }

    /// One WebDriver command; its `value`, or the WebDriver error code and message.
    fn try_command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, String)> {
        let url = if path.is_empty() {
            self.session.clone()
        } else {
            format!("{}/{path}", self.session)
        };
        let mut request = self.client.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == Method::POST {
            request = request.json(&json!({}));
        }
        let response: Value = request
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if let Some(error) = response["value"]["error"].as_str() {
            let message = response["value"]["message"].as_str().unwrap_or_default();
            return Err((error.to_string(), message.to_string()));
        }
        Ok(response["value"].clone())
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.command(Method::POST, "url", Some(json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            Method::POST,
            "execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script`, which calls its last argument with the result (a promise's value),
    /// and returns that result.
    pub fn script_async(&self, script: &str, args: Value) -> Value {
        self.command(
            Method::POST,
            "execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Waits until `script` returns true, polling; panics with `what` after [`PATIENCE`].
    pub fn wait_until(&self, what: &str, script: &str, args: Value) {
        let deadline = Instant::now() + PATIENCE;
        while self.script(script, args.clone()) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "waited {} s for {what}; the console said: {}; the page says: {}",
                PATIENCE.as_secs(),
                self.console(),
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What the page wrote to the browser console since the last call (ChromeDriver's log
    /// endpoint), for failure messages.
    pub fn console(&self) -> String {
        let log: Option<Value> = self
            .client
            .post(format!("{}/se/log", self.session))
            .json(&json!({"type": "browser"}))
            .send()
            .and_then(|r| r.json())
            .ok();
        log.as_ref()
            .and_then(|l| l["value"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["message"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until an element matching `css` is displayed.
    pub fn wait_visible(&self, css: &str) {
        self.wait_until(
            &format!("{css} to be visible"),
            "const e = document.querySelector(arguments[0]); \
             return !!e && !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);",
            json!([css]),
        );
    }

    /// The first element matching `css`, waiting for it to exist.
    fn element(&self, css: &str) -> String {
        self.wait_until(
            &format!("{css} to exist"),
            "return !!document.querySelector(arguments[0]);",
            json!([css]),
        );
        let found = self.command(
            Method::POST,
            "element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element reference for {css}: {found}"))
            .to_string()
    }

    /// Clicks the element matching `css`, once it is displayed. A page that re-renders
    /// it between finding and clicking (a streamed answer's citation chips) makes the
    /// reference stale: it is then found again, a bounded number of times.
    pub fn click(&self, css: &str) {
        for _ in 0..20 {
            self.wait_visible(css);
            let id = self.element(css);
            let path = format!("element/{id}/click");
            match self.try_command(Method::POST, &path, None) {
                Ok(_) => return,
                Err((error, _)) if error == "stale element reference" => continue,
                Err((error, message)) => panic!("POST {path}: {error}: {message}"),
            }
        }
        panic!("{css} was replaced by the page 20 times in a row before it could be clicked");
    }

    /// Replaces the text of the field matching `css` with `text` (typed, so the page sees
    /// input events). A file input takes a file's path.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.element(css);
        let is_file = self.script(
            "return document.querySelector(arguments[0]).type === 'file';",
            json!([css]),
        ) == Value::Bool(true);
        if !is_file {
            self.command(Method::POST, &format!("element/{id}/clear"), None);
        }
        self.command(
            Method::POST,
            &format!("element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Chooses the option with value `value` in the select matching `css`, as a user
    /// would (the page gets its change event).
    pub fn select(&self, css: &str, value: &str) {
        self.element(css);
        self.script(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
             s.dispatchEvent(new Event('input', {bubbles: true})); \
             s.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([css, value]),
        );
    }

    /// The visible text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// An attribute of the element matching `css`, if the element and the attribute exist.
    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.script(
            "const e = document.querySelector(arguments[0]); \
             return e ? e.getAttribute(arguments[1]) : null;",
            json!([css, name]),
        )
        .as_str()
        .map(str::to_string)
    }

    /// Whether an element matching `css` exists, is displayed and is enabled.
    pub fn usable(&self, css: &str) -> bool {
        self.script(
            "const e = document.querySelector(arguments[0]); \
             return !!e && !e.disabled && !e.closest('[hidden]') && \
               !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);",
            json!([css]),
        ) == Value::Bool(true)
    }

    /// Every URL the page loaded or fetched that is not on `origin`.
    pub fn foreign_requests(&self, origin: &str) -> Vec<String> {
        let urls = self.script(
            "return performance.getEntriesByType('resource').map(e => e.name)\
               .concat([location.href]);",
            json!([]),
        );
        urls.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|url| !url.starts_with(origin))
            .map(str::to_string)
            .collect()
    }

    /// Saves a screenshot of the page as `<shots>/<NN>-<name>.png` and returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        self.step += 1;
        let data = self.command(Method::GET, "screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.client.delete(&self.session).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
