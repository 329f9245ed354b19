//! The web page, driven in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`) against the real server: a user with an admin key uploads a Chinese
//! and an English file, watches the job finish, searches, asks (tokens stream in), opens a
//! citation, rates the answer and switches the language; then the same page with a
//! read-only key, whose write actions are not offered and are refused. A second user, whose
//! browser speaks Chinese, uploads a folder together with a file dropped on the page,
//! re-uploads a document, and deletes a document and the knowledge base through their
//! confirmations. Screenshots of every step go to `<target>/tmp/ui-screenshots/<test>/`.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use zhiku_e2e::browser::Browser;
use zhiku_e2e::{Server, create_key};

fn shots(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ui-screenshots")
        .join(test)
}

const ZH_FILE: &str =
    "# 数据备份\n\n系统每天凌晨两点自动备份数据库，备份文件保存三十天，存放在备份服务器上。\n";
const EN_FILE: &str = "# Leave policy\n\nEmployees get 25 days of paid leave per year. Leave is booked in the HR portal and approved by the team lead.\n";

/// The status of `fetch(method, path)` run by the page with `key`.
fn page_fetch(browser: &Browser, method: &str, path: &str, key: &str) -> u64 {
    let script = "const done = arguments[arguments.length - 1]; \
        fetch(arguments[1], {method: arguments[0], headers: {Authorization: 'Bearer ' + arguments[2]}}) \
          .then(r => done(r.status), () => done(0));";
    browser
        .script_async(script, json!([method, path, key]))
        .as_u64()
        .expect("a status")
}

/// Starts the upload chosen in the upload view and waits for its job to succeed.
fn upload_and_wait(b: &mut Browser) {
    b.click("#upload-start");
    b.wait_until(
        "the upload job to finish",
        "const s = document.querySelector('#upload-progress')?.dataset.state; \
         return s === 'succeeded' || s === 'failed' || s === 'cancelled';",
        json!([]),
    );
    b.screenshot("uploaded");
    assert_eq!(
        b.attribute("#upload-progress", "data-state").as_deref(),
        Some("succeeded"),
        "{}",
        b.text("#view-upload")
    );
}

/// Asks `question` in the ask view and waits for the answer to finish.
fn ask_and_wait(b: &Browser, question: &str) {
    b.fill("#ask-question", question);
    b.click("#ask-send");
    let (script, args) = state_is("#ask-answer", "data-state", "done");
    b.wait_until("the answer to finish", &script, args);
}

fn state_is(css: &str, attribute: &str, value: &str) -> (String, Value) {
    (
        "return document.querySelector(arguments[0])?.getAttribute(arguments[1]) === arguments[2];"
            .to_string(),
        json!([css, attribute, value]),
    )
}

#[test]
fn upload_search_ask_and_rate_in_a_browser_then_read_only() {
    let data = Arc::new(tempfile::tempdir().expect("tempdir"));
    let admin = create_key(data.path(), &["--admin", "--name", "ui-test"]);
    let reader = create_key(data.path(), &["--kb", "docs", "--scope", "read"]);
    let server = Server::start_in(data, &[]);
    let files = tempfile::tempdir().expect("tempdir");
    let zh = files.path().join("备份制度.md");
    let en = files.path().join("leave.md");
    std::fs::write(&zh, ZH_FILE).expect("write");
    std::fs::write(&en, EN_FILE).expect("write");

    let mut b = Browser::start("en-US", &shots("upload_search_ask_and_rate"));
    b.open(&format!("{}/", server.url));
    b.wait_visible("#api-key");
    b.screenshot("opened");

    b.fill("#api-key", &admin);
    b.click("#api-key-save");
    let (script, args) = state_is("body", "data-scope", "admin");
    b.wait_until("the admin scope", &script, args);

    // A knowledge base, created empty and selected.
    b.click("#nav-kbs");
    b.fill("#kb-new-name", "docs");
    b.click("#kb-create");
    b.wait_visible("#kb-list [data-kb='docs']");
    b.click("#kb-list [data-kb='docs'] .kb-select");
    b.wait_until(
        "docs to be the current KB",
        "return document.querySelector('#current-kb').innerText.trim() === 'docs';",
        json!([]),
    );
    b.screenshot("kb-created");

    // Upload both files; the job's progress reaches its end.
    b.click("#nav-upload");
    b.fill(
        "#upload-files",
        &format!("{}\n{}", zh.display(), en.display()),
    );
    upload_and_wait(&mut b);

    b.click("#nav-documents");
    b.click("#documents-refresh");
    b.wait_until(
        "two documents in the table",
        "return document.querySelectorAll('#documents-table [data-doc-id]').length === 2;",
        json!([]),
    );
    b.screenshot("documents");

    // Search, in both languages.
    b.click("#nav-search");
    b.fill("#search-query", "paid leave days");
    b.click("#search-run");
    b.wait_visible("#search-results .hit");
    assert!(b.text("#search-results .hit .hit-doc").contains("leave"));
    assert!(!b.text("#search-results .hit .hit-score").trim().is_empty());
    b.fill("#search-query", "数据库备份保存多久");
    b.click("#search-run");
    b.wait_until(
        "the Chinese document to be the first hit",
        "return (document.querySelector('#search-results .hit .hit-doc')?.innerText || '')\
           .includes('备份');",
        json!([]),
    );
    b.screenshot("searched");

    // Ask: the answer streams in token by token.
    b.click("#nav-ask");
    ask_and_wait(&b, "How many days of paid leave do employees get?");
    let tokens: u64 = b
        .attribute("#ask-answer", "data-tokens")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(tokens > 1, "streamed in {tokens} token events");
    assert!(!b.text("#ask-answer").trim().is_empty());
    b.screenshot("answered");

    // Rate it.
    b.click("#feedback-up");
    b.wait_until(
        "the rating to be recorded",
        "return !!document.querySelector('[data-rated=\"up\"]');",
        json!([]),
    );

    // A follow-up, answered from the sources (extractive: always cited): its rewritten
    // search query is shown, and a citation opens its quote.
    b.click("#ask-advanced summary");
    b.select("#ask-mode", "extractive");
    // Sent from the keyboard: Enter in the question box.
    b.fill("#ask-question", "How is it booked?\u{E007}");
    let (script, args) = state_is("#ask-answer", "data-state", "done");
    b.wait_until("the follow-up to finish", &script, args);
    b.wait_visible(".citation-chip");
    b.click(".citation-chip");
    b.wait_visible("#citation-dialog");
    let quote = b.text("#citation-quote");
    assert!(
        !quote.trim().is_empty() && EN_FILE.contains(quote.trim()),
        "the quote is the cited document's text: {}",
        b.text("#citation-dialog")
    );
    assert!(b.text("#citation-doc").contains("leave"));
    b.screenshot("citation");
    b.script(
        "document.querySelector('#citation-dialog').close();",
        json!([]),
    );
    assert!(
        b.usable("#ask-rewrite"),
        "the follow-up's search query is shown"
    );
    b.wait_visible("#conversation-list [data-conversation-id]");

    // The models, and the tokenizer's LLM tokens and segmented words.
    b.click("#nav-models");
    b.wait_until(
        "the models to be listed",
        "return document.querySelector('#models-list').innerText.includes('kb:docs');",
        json!([]),
    );
    b.fill("#tokenize-text", "数据库每天备份");
    b.click("#tokenize-run");
    b.wait_until(
        "the text's tokens and words",
        "return document.querySelector('#tokenize-tokens').innerText.trim() !== '' && \
           document.querySelector('#tokenize-words').innerText.includes('备份');",
        json!([]),
    );
    b.screenshot("models");

    // Every control has a name a screen reader can say.
    let unnamed = b.script(
        "return [...document.querySelectorAll('input, select, textarea, button')]\
           .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && \
             !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby') && \
             !(e.innerText || '').trim() && !e.title)\
           .map(e => e.outerHTML.slice(0, 120));",
        json!([]),
    );
    assert_eq!(unnamed, json!([]), "controls without a label");

    // The page in Chinese.
    let english = b.text("#nav-ask");
    b.select("#lang-select", "zh");
    b.wait_until(
        "the page to be in Chinese",
        "return document.documentElement.lang.startsWith('zh');",
        json!([]),
    );
    assert_ne!(b.text("#nav-ask"), english);
    b.screenshot("chinese");
    b.select("#lang-select", "en");

    // Nothing came from anywhere but the server.
    assert_eq!(b.foreign_requests(&server.url), Vec::<String>::new());

    // Read-only: no write action is offered, and the API refuses them.
    b.fill("#api-key", &reader);
    b.click("#api-key-save");
    let (script, args) = state_is("body", "data-scope", "read");
    b.wait_until("the read scope", &script, args);
    b.click("#nav-kbs");
    b.wait_visible("#kb-list [data-kb='docs']");
    assert!(!b.usable("#kb-create"), "no KB creation with a read key");
    assert!(!b.usable("#kb-list .kb-delete"), "no KB deletion");
    assert!(!b.usable("#nav-upload"), "no upload");
    b.click("#nav-documents");
    b.click("#documents-refresh");
    b.wait_visible("#documents-table [data-doc-id]");
    assert!(
        !b.usable("#documents-table .doc-delete"),
        "no document deletion"
    );
    b.screenshot("read-only");
    assert_eq!(page_fetch(&b, "DELETE", "/v1/kbs/docs", &reader), 403);
    assert_eq!(page_fetch(&b, "PUT", "/v1/kbs/other", &reader), 404);
    // Reading still works.
    b.click("#nav-search");
    b.fill("#search-query", "paid leave");
    b.click("#search-run");
    b.wait_visible("#search-results .hit");
    b.screenshot("read-only-search");
    // And so does asking, with its citations.
    b.click("#nav-ask");
    b.select("#ask-mode", "extractive");
    ask_and_wait(&b, "How many days of paid leave do employees get?");
    b.click(".citation-chip");
    b.wait_visible("#citation-dialog");
    assert!(b.text("#citation-doc").contains("leave"));
    b.screenshot("read-only-ask");
    b.script(
        "document.querySelector('#citation-dialog').close();",
        json!([]),
    );
    assert_eq!(server.api().get("/v1/kbs/docs").0, 401, "keys are required");
    assert_eq!(server.as_key(&admin).get("/v1/kbs/docs").0, 200);

    // The API reference renders from the binary alone.
    b.open(&format!("{}/docs", server.url));
    b.wait_until(
        "the reference to list the ask operation",
        "return document.body.innerText.includes('/v1/kbs/{kb}/ask');",
        json!([]),
    );
    b.screenshot("docs");
    assert_eq!(b.foreign_requests(&server.url), Vec::<String>::new());
}

/// The rows of the documents table.
fn document_rows(b: &Browser) -> u64 {
    b.script(
        "return document.querySelectorAll('#documents-table [data-doc-id]').length;",
        json!([]),
    )
    .as_u64()
    .unwrap_or(0)
}

#[test]
fn folder_and_drop_uploads_reupload_and_deletions_in_chinese() {
    let server = Server::start();
    let files = tempfile::tempdir().expect("tempdir");
    let folder = files.path().join("手册");
    std::fs::create_dir_all(folder.join(".git")).expect("mkdir");
    std::fs::write(folder.join("a.md"), ZH_FILE).expect("write");
    std::fs::write(folder.join("b.txt"), EN_FILE).expect("write");
    // Hidden files of a folder are noise, never content.
    std::fs::write(folder.join(".git").join("HEAD"), "ref: refs/heads/main\n").expect("write");
    let newer = files.path().join("dropped.md");
    std::fs::write(
        &newer,
        "# Dropped\n\nThe second version of the dropped note.\n",
    )
    .expect("write");

    // A browser set to Chinese gets the page in Chinese.
    let mut b = Browser::start("zh-CN", &shots("folder_and_drop"));
    b.open(&format!("{}/", server.url));
    b.wait_until(
        "the page to follow the browser's language",
        "return document.documentElement.lang.startsWith('zh') && \
           document.querySelector('#nav-upload').innerText.trim() === '上传';",
        json!([]),
    );
    b.wait_until(
        "the caller's scope",
        "return !!document.body.dataset.scope && document.body.dataset.scope !== 'none';",
        json!([]),
    );
    b.click("#nav-kbs");
    b.fill("#kb-new-name", "drops");
    b.click("#kb-create");
    b.wait_visible("#kb-list [data-kb='drops']");
    b.click("#kb-list [data-kb='drops'] .kb-select");
    b.screenshot("kb-created");

    // A folder chosen, and a file dropped on the zone, go up together.
    b.click("#nav-upload");
    b.fill("#upload-folder", &folder.display().to_string());
    b.script(
        "const dt = new DataTransfer(); \
         dt.items.add(new File([arguments[0]], 'dropped.md', {type: 'text/markdown'})); \
         const zone = document.querySelector('#upload-dropzone'); \
         for (const type of ['dragenter', 'dragover', 'drop']) \
           zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));",
        json!(["# Dropped\n\nA note dropped on the page.\n"]),
    );
    b.wait_until(
        "the dropped file to be selected",
        "return !document.querySelector('#upload-clear').hidden;",
        json!([]),
    );
    b.screenshot("selected");
    upload_and_wait(&mut b);
    let (status, listing) = server.api().get("/v1/kbs/drops/documents");
    assert_eq!(status, 200, "{listing}");
    let docs = listing["documents"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = docs
        .iter()
        .map(|d| d["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "the folder's two files and the dropped one: {names:?}"
    );
    for name in ["a.md", "b.txt", "dropped.md"] {
        assert!(
            names.iter().any(|n| n.ends_with(name)),
            "{name} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.contains(".git")), "{names:?}");
    let dropped = docs
        .iter()
        .find(|d| d["name"] == "dropped.md")
        .and_then(|d| d["id"].as_str())
        .expect("the dropped document")
        .to_string();
    let row = format!("#documents-table [data-doc-id=\"{dropped}\"]");

    // Re-upload: a new version under the same id.
    b.click("#nav-documents");
    b.click("#documents-refresh");
    b.wait_until(
        "three documents in the table",
        "return document.querySelectorAll('#documents-table [data-doc-id]').length === 3;",
        json!([]),
    );
    // Versions count per knowledge base, so the new one is only known to be higher.
    let version = |server: &Server| {
        let (status, doc) = server
            .api()
            .get(&format!("/v1/kbs/drops/documents/{dropped}"));
        assert_eq!(status, 200, "{doc}");
        doc["version"].as_u64().expect("a version")
    };
    let before = version(&server);
    let shown = b.text(&format!("{row} .doc-size"));
    b.fill(
        &format!("{row} .doc-reupload"),
        &newer.display().to_string(),
    );
    b.wait_until(
        "the new version in the table",
        "const s = document.querySelector(arguments[0] + ' .doc-size'); \
         return !!s && s.innerText !== arguments[1];",
        json!([row, shown]),
    );
    assert!(version(&server) > before);
    b.screenshot("reuploaded");
    let hits = server.search("drops", "second version of the dropped note", "keyword");
    assert!(
        hits.iter().any(|h| h["document_id"] == dropped.as_str()),
        "{hits:?}"
    );

    // Deleting a document asks first; cancelling keeps it.
    b.click(&format!("{row} .doc-delete"));
    b.wait_visible("#confirm-dialog");
    b.click("#confirm-cancel");
    assert_eq!(document_rows(&b), 3);
    b.click(&format!("{row} .doc-delete"));
    b.wait_visible("#confirm-dialog");
    b.screenshot("confirm-delete");
    b.click("#confirm-ok");
    b.wait_until(
        "two documents in the table",
        "return document.querySelectorAll('#documents-table [data-doc-id]').length === 2;",
        json!([]),
    );
    assert_eq!(
        server
            .api()
            .get(&format!("/v1/kbs/drops/documents/{dropped}"))
            .0,
        404
    );

    // Deleting the knowledge base asks too.
    b.click("#nav-kbs");
    b.click("#kb-list [data-kb='drops'] .kb-delete");
    b.wait_visible("#confirm-dialog");
    b.click("#confirm-cancel");
    assert_eq!(server.api().get("/v1/kbs/drops").0, 200);
    b.click("#kb-list [data-kb='drops'] .kb-delete");
    b.wait_visible("#confirm-dialog");
    b.click("#confirm-ok");
    b.wait_until(
        "the knowledge base to leave the list",
        "return !document.querySelector(\"#kb-list [data-kb='drops']\");",
        json!([]),
    );
    b.screenshot("kb-deleted");
    assert_eq!(server.api().get("/v1/kbs/drops").0, 404);
    assert_eq!(b.foreign_requests(&server.url), Vec::<String>::new());
}
