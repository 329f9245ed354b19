//! The pool against the real worker program and the hostile files that once killed the
//! service: each fails alone, with its cause, and the pool goes on parsing.

use std::time::Duration;

use zhiku_parse::{BlockKind, DocFormat, ParseOptions};
use zhiku_sandbox::{ParserPool, SandboxConfig};

fn pool(processes: usize, timeout: Duration) -> ParserPool {
    ParserPool::start(SandboxConfig {
        program: env!("CARGO_BIN_EXE_zhiku-parse-worker").into(),
        args: Vec::new(),
        processes,
        memory_bytes: 1 << 30,
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
