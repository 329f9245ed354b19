use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::*;

fn config() -> SandboxConfig {
    SandboxConfig {
        program: "/bin/true".into(),
        args: Vec::new(),
        processes: 1,
        memory_bytes: 512 << 20,
        stack_bytes: 8 << 20,
        cpu_seconds: 30,
        timeout: Duration::from_secs(60),
    }
}

fn eof() -> io::Error {
    io::ErrorKind::UnexpectedEof.into()
}

#[test]
fn deaths_are_named_by_their_cause() {
    let signal = |n| Some(ExitStatus::from_raw(n));
    let c = config();
    let e = diagnose(
        Some(Duration::from_secs(60)),
        signal(libc::SIGKILL),
        "",
        &eof(),
        &c,
    );
    assert_eq!(e.code(), "timeout");
    assert!(e.to_string().contains("60 s"), "{e}");
    let e = diagnose(None, signal(libc::SIGXCPU), "", &eof(), &c);
    assert_eq!(e.code(), "parser_cpu_limit");
    assert!(e.to_string().contains("parser_cpu_secs"), "{e}");
    let e = diagnose(
        None,
        signal(libc::SIGABRT),
        "memory allocation of 17179869184 bytes failed\n",
        &eof(),
        &c,
    );
    assert_eq!(e.code(), "parser_out_of_memory");
    assert!(e.to_string().contains("512 MiB"), "{e}");
    let e = diagnose(
        None,
        signal(libc::SIGABRT),
        "\nthread 'zhiku-parse' has overflowed its stack\nfatal runtime error: stack overflow\n",
        &eof(),
        &c,
    );
    assert_eq!(e.code(), "parser_crashed");
    assert!(e.to_string().contains("nests too deeply"), "{e}");
    let e = diagnose(None, signal(libc::SIGSEGV), "", &eof(), &c);
    assert_eq!(e.code(), "parser_crashed");
    assert!(e.to_string().contains("signal 11"), "{e}");
}

#[test]
fn frames_round_trip_and_refuse_oversized_lengths() {
    let mut buf = Vec::new();
    write_frame(&mut buf, b"hello").unwrap();
    write_frame(&mut buf, b"").unwrap();
    let mut input = &buf[..];
    assert_eq!(read_frame(&mut input, 5).unwrap(), b"hello");
    assert_eq!(read_frame(&mut input, 5).unwrap(), b"");
    assert_eq!(
        read_frame(&mut input, 5).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    let mut big = Vec::new();
    write_frame(&mut big, &[0; 10]).unwrap();
    let err = read_frame(&mut &big[..], 9).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // A length promising more than follows is a truncated frame, not a short one.
    let err = read_frame(&mut &big[..big.len() - 1], 10).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn a_program_that_is_no_worker_is_refused_at_start() {
    for program in ["/bin/true", "/bin/echo"] {
        let err = ParserPool::start(SandboxConfig {
            program: program.into(),
            ..config()
        })
        .err()
        .expect("not a worker");
        assert_eq!(err.code(), "parser_unavailable", "{program}: {err}");
    }
    let err = ParserPool::start(SandboxConfig {
        program: "/nonexistent/zhiku".into(),
        ..config()
    })
    .err()
    .expect("no such program");
    assert!(err.to_string().contains("cannot start"), "{err}");
}
