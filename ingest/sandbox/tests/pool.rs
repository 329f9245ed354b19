//! The pool against the real worker program and the hostile files that once killed the
//! service: each fails alone, with its cause, and the pool goes on parsing.

use std::time::Duration;

use zhiku_ocr::{OcrConfig, Page};
use zhiku_parse::{BlockKind, DocFormat, ParseOptions};
use zhiku_sandbox::{ParserPool, SandboxConfig};

fn pool(processes: usize, timeout: Duration) -> ParserPool {
    pool_with_memory(processes, timeout, 1 << 30)
}

fn pool_with_memory(processes: usize, timeout: Duration, memory_bytes: u64) -> ParserPool {
    ParserPool::start(SandboxConfig {
        program: env!("CARGO_BIN_EXE_zhiku-parse-worker").into(),
        args: Vec::new(),
        processes,
        memory_bytes,
        stack_bytes: 8 << 20,
        cpu_seconds: 600,
        timeout,
    })
    .expect("start the pool")
}

fn parses_markdown(pool: &ParserPool) {
    let doc = pool
        .parse(
            "a.md",
            None,
            b"# Title\n\nSome text.\n",
            &ParseOptions::default(),
        )
        .expect("the worker answers")
        .expect("valid Markdown");
    assert_eq!(doc.format, DocFormat::Markdown);
    assert_eq!(doc.title.as_deref(), Some("Title"));
    assert!(matches!(
        doc.blocks[0].kind,
        BlockKind::Heading { level: 1 }
    ));
}

#[test]
fn documents_and_parse_errors_come_back_from_the_worker() {
    let pool = pool(2, Duration::from_secs(600));
    parses_markdown(&pool);
    let err = pool
        .parse(
            "broken.pdf",
            None,
            b"%PDF-1.4 not really",
            &ParseOptions::default(),
        )
        .expect("the worker answers")
        .expect_err("not a PDF");
    assert_eq!(err.code(), "invalid_pdf");
    let err = pool
        .parse("blank.txt", None, b"   \n", &ParseOptions::default())
        .expect("the worker answers")
        .expect_err("blank");
    assert_eq!(err.code(), "empty_document");
}

#[test]
fn each_hostile_file_fails_alone_and_the_pool_goes_on() {
    let pool = pool(1, Duration::from_secs(600));
    for hostile in zhiku_e2e::hostile::all() {
        let outcome = pool.parse(hostile.name, None, &hostile.bytes, &ParseOptions::default());
        let code = match &outcome {
            Ok(Ok(_)) => "indexed",
            Ok(Err(e)) => e.code(),
            Err(e) => e.code(),
        };
        assert!(
            hostile.codes.contains(&code),
            "{}: {code} ({:?})",
            hostile.what,
            outcome.err().map(|e| e.to_string())
        );
        eprintln!("{}: {code}", hostile.what);
        // The one worker was replaced: the next file parses.
        parses_markdown(&pool);
    }
}

#[test]
fn a_file_past_the_time_limit_kills_its_worker_only() {
    // A parse that takes long on purpose: a big table is quick, so use a tiny limit.
    let pool = pool(1, Duration::from_millis(1));
    let big = "word ".repeat(2_000_000);
    let outcome = pool.parse("big.txt", None, big.as_bytes(), &ParseOptions::default());
    match outcome {
        Err(e) => assert_eq!(e.code(), "timeout", "{e}"),
        // Finished within a millisecond: nothing to check on this machine, but say so.
        Ok(_) => panic!("a 10 MB text parsed in under a millisecond"),
    }
}

#[test]
fn a_file_past_the_memory_limit_kills_its_worker_only() {
    // 40 MB of text needs several copies of itself while parsed (bytes, decoded text,
    // blocks, reply): far past 48 MiB above what the worker had at start.
    let pool = pool_with_memory(1, Duration::from_secs(600), worker_baseline() + (48 << 20));
    let big = "plain words in a long file\n".repeat(1_500_000);
    let err = pool
        .parse("big.txt", None, big.as_bytes(), &ParseOptions::default())
        .expect_err("the worker runs out of memory");
    assert_eq!(err.code(), "parser_out_of_memory", "{err}");
    parses_markdown(&pool);
}

/// Address space of an idle worker: the program's mappings, before any file.
fn worker_baseline() -> u64 {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zhiku-parse-worker"))
        .args([u64::MAX.to_string(), (8u64 << 20).to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The hello frame is written once the worker is set up.
    let mut hello = [0u8; 8];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut hello).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    kib << 10
}

fn ocr_config() -> OcrConfig {
    OcrConfig {
        languages: "eng".into(),
        ..OcrConfig::default()
    }
}

#[test]
fn images_are_checked_and_read_in_the_worker() {
    let pool = pool(1, Duration::from_secs(600));
    let config = ocr_config();
    let pages: &[&[&str]] = &[&["Sandboxed scans read well"], &["Second page here"]];
    let tiff = zhiku_e2e::render(&serde_json::json!({"pages": pages, "format": "TIFF"}));
    let count = pool.image_pages("scan.tiff", &tiff, &config);
    assert_eq!(count.expect("the worker answers").expect("a TIFF"), 2);
    let second = pool
        .recognize("scan.tiff", &Page::Image { page: 2 }, &tiff, &config)
        .expect("the worker answers")
        .expect("page 2 is read");
    assert_eq!(second.page, 2);
    assert!(second.paragraphs.join(" ").contains("Second"), "{second:?}");
    // A header claiming 100,000 x 100,000 pixels is refused without decoding.
    let mut bomb = zhiku_e2e::scan(&[&["x"]], "PNG");
    bomb[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    let err = pool
        .image_pages("bomb.png", &bomb, &config)
        .expect("the worker answers")
        .expect_err("too many pixels");
    assert_eq!(err.code(), "image_too_large");
    let err = pool
        .recognize("scan.tiff", &Page::Image { page: 3 }, &tiff, &config)
        .expect("the worker answers")
        .expect_err("no third page");
    assert_eq!(err.code(), "invalid_image", "{err}");
}

#[test]
fn ocr_tools_run_under_the_workers_memory_limit() {
    // Tesseract needs well over 100 MiB of address space to load; the worker's own limit,
    // inherited by the tools it starts, leaves it far less.
    let limit = worker_baseline().max(48 << 20) + (16 << 20);
    let pool = pool_with_memory(1, Duration::from_secs(600), limit);
    let png = zhiku_e2e::scan(&[&["Not enough memory"]], "PNG");
    let err = pool
        .recognize("scan.png", &Page::Image { page: 1 }, &png, &ocr_config())
        .expect("the worker itself survives")
        .expect_err("tesseract cannot run in the limit");
    assert_eq!(err.code(), "ocr_failed", "{err}");
    assert!(err.to_string().contains("tesseract"), "{err}");
    parses_markdown(&pool);
}
