//! `zhiku ingest DIR --kb NAME`: a batch job run locally (same job machinery as the
//! server, in this process) or sent to a running server with `--server URL`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use zhiku_jobs::source;
use zhiku_schemas::{DocumentId, JobAccepted, JobInfo, JobSource, JobState, KbName};

use zhiku_app::config::Config;
use zhiku_app::services::{Models, Services};

/// How often progress is polled.
const POLL: Duration = Duration::from_millis(200);
/// Files per upload request in `--server` mode, and their byte budget.
const UPLOAD_FILES: usize = 64;
const UPLOAD_BYTES: u64 = 16 << 20;
/// Bound on one request of a remote ingest (uploads are asynchronous, so quick).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A running zhiku server the CLI sends work to, with the API key to present.
pub struct Remote {
    url: String,
    client: reqwest::blocking::Client,
}

impl Remote {
    /// A client for the server at `url`, sending `api_key` as `Authorization: Bearer` on
    /// every request. No overall timeout: a remote reindex answers when done.
    pub fn new(url: &str, api_key: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::blocking::Client::builder()
            .default_headers(headers)
            .timeout(None)
            .build()?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// A request to `path` (starting with `/`) on the server.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }
}

/// Runs the command; returns whether the job succeeded. Every document gets `tags`.
pub fn run(
    mut config: Config,
    dir: &Path,
    kb: &KbName,
    glob: Option<&str>,
    tags: &[String],
    server: Option<&Remote>,
) -> anyhow::Result<bool> {
    // Checked before anything is loaded or sent.
    let tags = zhiku_jobs::normalize_tags(tags)?;
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let bar = progress_bar();
    let info = match server {
        None => {
            // The user owns the directory they name: it is this run's only import root.
            config.jobs.import_roots = vec![dir.clone()];
            let services = Services::load(config, Models::EmbedderOnly, true)?;
            let jobs = services.jobs()?;
            let job = jobs.submit_import(kb, &dir.to_string_lossy(), glob, &tags)?;
            loop {
                let info = jobs
                    .get(&job.id)?
                    .context("the job disappeared from the catalog")?;
                show(&bar, &info);
                if info.state.is_finished() {
                    break info;
                }
                std::thread::sleep(POLL);
            }
        }
        Some(server) => remote(server, &dir, kb, glob, &tags, &bar)?,
    };
    bar.finish_and_clear();
    summary(&info);
    Ok(info.state == JobState::Succeeded)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files · {msg} · {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn show(bar: &ProgressBar, info: &JobInfo) {
    bar.set_length(info.files_total);
    bar.set_position(info.files_done);
    let eta = info
        .eta_seconds
        .map(|s| format!(" · eta {}", humantime_secs(s)))
        .unwrap_or_default();
    let ocr = if info.ocr.pages_total > 0 {
        format!(
            " · OCR {}/{} pages",
            info.ocr.pages_done, info.ocr.pages_total
        )
    } else {
        String::new()
    };
    bar.set_message(format!(
        "{} chunks · {:.1} chunks/s · {} failed{ocr}{eta}",
        info.chunks_indexed, info.chunks_per_second, info.files_failed
    ));
}

fn humantime_secs(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The final report: totals, then a table of the files that failed.
fn summary(info: &JobInfo) {
    println!(
        "job {} {:?}: {} files ({} indexed, {} unchanged, {} failed), {} chunks, {:.1} MiB",
        info.id,
        info.state,
        info.files_total,
        info.files_indexed,
        info.files_unchanged,
        info.files_failed,
        info.chunks_indexed,
        info.bytes as f64 / 1048576.0
    );
    if info.ocr.pages_total > 0 {
        println!(
            "OCR: {} pages or images read ({} failed) in {:.1} s",
            info.ocr.pages_done, info.ocr.pages_failed, info.ocr.busy_seconds
        );
    }
    if let Some(message) = &info.message {
        println!("{message}");
    }
    if info.errors.is_empty() {
        return;
    }
    let width = info
        .errors
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    println!(
        "\n{:<width$}  {:<7}  {:<18}  message",
        "file", "stage", "code"
    );
    for e in &info.errors {
        println!(
            "{:<width$}  {:<7}  {:<18}  {}",
            e.name,
            e.stage.as_deref().unwrap_or("-"),
            e.code,
            e.message
        );
    }
    if info.files_failed as usize > info.errors.len() {
        println!(
            "… and {} more",
            info.files_failed as usize - info.errors.len()
        );
    }
}

/// Uploads the files in batches as asynchronous jobs and follows them together.
fn remote(
    server: &Remote,
    dir: &Path,
    kb: &KbName,
    glob: Option<&str>,
    tags: &[String],
    bar: &ProgressBar,
) -> anyhow::Result<JobInfo> {
    let glob = source::compile_glob(glob)?;
    let files = source::list(kb, dir, glob.as_ref())?;
    let mut job_ids = Vec::new();
    let mut batch: Vec<(String, DocumentId, PathBuf)> = Vec::new();
    let mut batch_bytes = 0;
    let total = files.len();
    bar.set_message("uploading");
    bar.set_length(total as u64);
    for (i, input) in files.into_iter().enumerate() {
        let (zhiku_jobs::InputSource::Path(path) | zhiku_jobs::InputSource::Confined { path, .. }) =
            input.source
        else {
            continue;
        };
        batch_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        batch.push((input.name, input.document_id, path));
        if batch.len() == UPLOAD_FILES || batch_bytes >= UPLOAD_BYTES || i + 1 == total {
            job_ids.push(upload(server, kb, &batch, tags)?);
            bar.set_position(i as u64 + 1);
            batch.clear();
            batch_bytes = 0;
        }
    }
    loop {
        let mut infos = Vec::with_capacity(job_ids.len());
        for id in &job_ids {
            let response = server
                .request(reqwest::Method::GET, &format!("/v1/jobs/{id}"))
                .timeout(REQUEST_TIMEOUT)
                .send()?;
            anyhow::ensure!(
                response.status().is_success(),
                "GET /v1/jobs/{id}: {}",
                response.text().unwrap_or_default()
            );
            infos.push(response.json::<JobInfo>()?);
        }
        let combined = combine(kb, infos);
        show(bar, &combined);
        if combined.state.is_finished() {
            return Ok(combined);
        }
        std::thread::sleep(POLL);
    }
}

fn upload(
    server: &Remote,
    kb: &KbName,
    files: &[(String, DocumentId, PathBuf)],
    tags: &[String],
) -> anyhow::Result<String> {
    let mut form = reqwest::blocking::multipart::Form::new();
    if !tags.is_empty() {
        form = form.text("tags", tags.join(","));
    }
    for (name, id, path) in files {
        form = form.text("document_id", id.to_string());
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        // The server keeps only the last path component as the file name, and the whole
        // relative path as the document's `path`, as a local import does.
        let part = reqwest::blocking::multipart::Part::bytes(bytes).file_name(name.clone());
        form = form.part("file", part);
    }
    let response = server
        .request(
            reqwest::Method::POST,
            &format!("/v1/kbs/{kb}/documents?wait=false"),
        )
        .timeout(REQUEST_TIMEOUT)
        .multipart(form)
        .send()
        .with_context(|| format!("cannot reach {}", server.url))?;
    anyhow::ensure!(
        response.status().as_u16() == 202,
        "upload refused ({}): {}",
        response.status(),
        response.text().unwrap_or_default()
    );
    Ok(response.json::<JobAccepted>()?.job_id)
}

/// Sums several jobs into one view for the progress bar and the summary.
fn combine(kb: &KbName, infos: Vec<JobInfo>) -> JobInfo {
    let mut all = infos.iter();
    let Some(first) = all.next() else {
        let mut empty = JobInfo::new("-".into(), kb.clone(), JobSource::Upload, String::new());
        empty.state = JobState::Succeeded;
        return empty;
    };
    let mut sum = first.clone();
    sum.id = infos
        .iter()
        .map(|i| i.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    for info in all {
        sum.files_total += info.files_total;
        sum.files_done += info.files_done;
        sum.files_indexed += info.files_indexed;
        sum.files_unchanged += info.files_unchanged;
        sum.files_failed += info.files_failed;
        sum.chunks_indexed += info.chunks_indexed;
        sum.bytes += info.bytes;
        sum.ocr = sum.ocr.plus(info.ocr);
        sum.chunks_per_second = sum.chunks_per_second.max(info.chunks_per_second);
        sum.errors.extend(info.errors.iter().cloned());
    }
    let finished = infos.iter().all(|i| i.state.is_finished());
    sum.state = if !finished {
        JobState::Running
    } else if infos.iter().any(|i| i.state == JobState::Cancelled) {
        JobState::Cancelled
    } else if sum.files_total > 0 && sum.files_failed == sum.files_total {
        JobState::Failed
    } else {
        JobState::Succeeded
    };
    sum
}
