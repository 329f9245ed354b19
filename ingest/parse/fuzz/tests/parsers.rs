//! One fuzzing run per parser, `ZHIKU_FUZZ_SECS` seconds each (5 by default; the README's
//! test command runs 30), from the fixed seed `ZHIKU_FUZZ_SEED` (so a run repeats the
//! inputs of the last one, as far as its time allows). An input that kills or stalls the
//! worker is saved under `ingest/parse/fuzz/crashes/` and fails the test; once fixed it
//! moves to `regressions/<target>/`, which every run replays first.

use std::path::PathBuf;
use std::time::Duration;

use zhiku_parse::ParseOptions;
use zhiku_parse_fuzz::{Target, check, fuzz, targets};
use zhiku_sandbox::{ParserPool, SandboxConfig};

/// The limits the service's workers run under by default.
fn pool() -> ParserPool {
    ParserPool::start(SandboxConfig {
        program: env!("CARGO_BIN_EXE_zhiku-fuzz-worker").into(),
        args: Vec::new(),
        processes: 1,
        memory_bytes: 2 << 30,
        stack_bytes: 16 << 20,
        cpu_seconds: 300,
        // Generous: a hang is a failure, a slow busy machine is not.
        timeout: Duration::from_secs(120),
    })
    .expect("start the fuzz worker")
}

fn target(name: &str) -> Target {
    targets()
        .into_iter()
        .find(|t| t.name == name)
        .expect("a target of that name")
}

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(sub)
}

/// The saved crash inputs of a target, if any.
fn regressions(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir("regressions").join(name)) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read a regression input");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

fn run(name: &str) {
    let target = target(name);
    let pool = pool();
    for (path, bytes) in regressions(name) {
        if let Err(e) = check(&pool, &target, &bytes) {
            panic!("regression {}: the worker died again: {e}", path.display());
        }
    }
    let seconds = env_number("ZHIKU_FUZZ_SECS", 5);
    let seed = env_number("ZHIKU_FUZZ_SEED", 0x5eed);
    let report = fuzz(&target, &pool, Duration::from_secs(seconds), seed);
    eprintln!(
        "fuzz {name}: {} inputs in {seconds} s (seed {seed:#x}), corpus {}",
        report.execs, report.corpus
    );
    if let Some((input, reason)) = report.failures.first() {
        let crashes = dir("crashes");
        std::fs::create_dir_all(&crashes).expect("create crashes/");
        let hash = input.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        let path = crashes.join(format!("{name}-{hash:016x}.bin"));
        std::fs::write(&path, input).expect("save the crash input");
        panic!(
            "fuzz {name}: {reason} on an input of {} bytes, saved as {}; fix it, then move the file to regressions/{name}/",
            input.len(),
            path.display()
        );
    }
    assert!(
        report.execs as usize >= target.seeds.len(),
        "every seed was parsed"
    );
}

#[test]
fn text() {
    run("text");
}

#[test]
fn markdown() {
    run("markdown");
}

#[test]
fn html() {
    run("html");
}

#[test]
fn csv() {
    run("csv");
}

#[test]
fn tsv() {
    run("tsv");
}

#[test]
fn docx() {
    run("docx");
}

#[test]
fn pdf() {
    run("pdf");
}

#[test]
fn pdf_content() {
    run("pdf-content");
}

#[test]
fn sniff() {
    run("sniff");
}

#[test]
fn image() {
    run("image");
}

/// The hostile files, at full strength, parse or fail with a parser error in a worker:
/// none may kill it any more.
#[test]
fn hostile_files_no_longer_kill_the_worker() {
    let pool = pool();
    for hostile in zhiku_e2e::hostile::all() {
        let outcome = pool.parse(hostile.name, None, &hostile.bytes, &ParseOptions::default());
        let code = match &outcome {
            Ok(Ok(_)) => "indexed",
            Ok(Err(e)) => e.code(),
            Err(e) => panic!("{}: the worker died: {e}", hostile.what),
        };
        assert!(hostile.codes.contains(&code), "{}: {code}", hostile.what);
    }
}
