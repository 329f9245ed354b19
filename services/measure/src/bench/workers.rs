//! `zhiku bench workers`: ingestion throughput with 1, 2, … separate worker processes
//! (`zhiku serve --role worker`) over the configured PostgreSQL catalog and Qdrant.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use zhiku_app::config::{CatalogBackendChoice, Config, Role, StoreBackendChoice};
use zhiku_app::services::{Models, Services};
use zhiku_schemas::{JobState, KbName};

/// Worker processes, stopped (killed) when dropped, whatever the benchmark's outcome.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Imports each subdirectory of `dir` as one job, once per count in `counts` (a fresh KB
/// each time), with that many worker processes of one embedding thread each; prints
/// chunks/s and the speed-up over the first count.
pub fn run(mut config: Config, dir: &Path, counts: &[usize]) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.catalog.backend == CatalogBackendChoice::Postgres
            && config.store.backend == StoreBackendChoice::Qdrant,
        "bench workers runs separate worker processes: it needs catalog.backend = \"postgres\" and store.backend = \"qdrant\""
    );
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    parts.sort();
    anyhow::ensure!(
        !parts.is_empty(),
        "{} has no subdirectories: each becomes one job",
        dir.display()
    );
    let scratch = tempfile::tempdir()?;
    config.jobs.import_roots = vec![dir.clone()];
    // The workers get this very configuration, one embedding thread each.
    let mut worker_config = config.clone();
    worker_config.embedder.threads = 1;
    worker_config.server.role = Role::Worker;
    let config_file = scratch.path().join("worker.toml");
    std::fs::write(&config_file, toml::to_string(&worker_config)?)?;
    // This process only queues and watches, as an API node does.
    config.server.role = Role::Api;
    config.server.data_dir = scratch.path().join("api");
    let models_dir = config.server.models_dir.clone();
    let services = Services::load(config, Models::EmbedderOnly, true)?;
    let jobs = services.jobs()?;
    let exe = std::env::current_exe()?;

    let mut first: Option<f64> = None;
    for &count in counts {
        anyhow::ensure!(count >= 1, "worker counts start at 1");
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let kb = KbName::new(format!("bench-workers-{count}-{}", &run_id[..8]))?;
        let mut children = Vec::new();
        for i in 0..count {
            let data = scratch.path().join(format!("worker-{count}-{i}"));
            std::fs::create_dir_all(&data)?;
            let log = std::fs::File::create(data.join("worker.log"))?;
            children.push(
                Command::new(&exe)
                    .arg("--config")
                    .arg(&config_file)
                    .arg("--data")
                    .arg(&data)
                    .arg("--models")
                    .arg(&models_dir)
                    .args(["serve", "--role", "worker", "--addr", "127.0.0.1:0"])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .context("starting a worker")?,
            );
        }
        let workers = Workers(children);
        let ids: Vec<String> = parts
            .iter()
            .map(|part| {
                jobs.submit_import(&kb, &part.to_string_lossy(), None, &[])
                    .map(|j| j.id)
            })
            .collect::<Result<_, _>>()?;
        // Timed from the first claim, so starting the workers (loading the model) is not.
        let mut started: Option<Instant> = None;
        let infos = loop {
            let infos = ids
                .iter()
                .map(|id| jobs.get(id)?.context("a job vanished"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if started.is_none() && infos.iter().any(|i| i.state != JobState::Queued) {
                started = Some(Instant::now());
            }
            if infos.iter().all(|i| i.state.is_finished()) {
                break infos;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        drop(workers);
        for info in &infos {
            anyhow::ensure!(
                info.state == JobState::Succeeded,
                "job {} ended {:?}: {:?}",
                info.id,
                info.state,
                info.message
            );
        }
        let chunks: u64 = infos.iter().map(|i| i.chunks_indexed).sum();
        let files: u64 = infos.iter().map(|i| i.files_done).sum();
        let rate = chunks as f64 / secs.max(1e-3);
        let speedup = first.map_or(1.0, |base| rate / base);
        first.get_or_insert(rate);
        println!(
            "bench workers: {count} worker(s), {} jobs, {files} files, {chunks} chunks in {secs:.1} s: {rate:.1} chunks/s, x{speedup:.2}",
            ids.len()
        );
        services.registry.delete(&kb)?;
    }
    Ok(())
}
