//! Parses untrusted files in child processes, so that a file which makes a parser overflow
//! its stack, exhaust memory or spin cannot take the service down with it.
//!
//! OCR's reading of a file runs there too: an image's header check and page count
//! ([`ParserPool::image_pages`]) and each page's recognition ([`ParserPool::recognize`]:
//! cutting a TIFF page out, `pdftoppm`, `tesseract`), so the OCR tools start under the
//! worker's memory and CPU limits and a page that kills its worker fails alone.
//!
//! A [`ParserPool`] keeps a few worker processes running (the `zhiku` binary itself, started
//! with a hidden subcommand that calls [`worker_main`]). Each worker limits its own address
//! space (`RLIMIT_AS`), parses each file on a thread with a fixed stack, and raises its CPU
//! time limit (`RLIMIT_CPU`) by a fixed budget before each file; the pool kills a worker
//! that passes the per-file wall-clock limit. A worker that dies fails only the file it was
//! parsing, with a [`SandboxError`] saying why, and is replaced.
//!
//! The protocol on the worker's stdin and stdout is a sequence of frames (a little-endian
//! `u64` length, then that many bytes): a hello from the worker, then per task a request
//! (MessagePack [`Request`] frame, then the file's raw bytes) and a reply (MessagePack).
//! Whatever a parser prints goes to stderr, never into the protocol.

#![warn(missing_docs)]

use std::ffi::OsString;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use zhiku_ocr::{OcrConfig, OcrError, Page, PageReader, RecognizedPage};
use zhiku_parse::{ParseError, ParseOptions, ParsedDocument, detect_format, parse_with};

/// What the worker says first, so that a program which is not a worker (or a worker of
/// another protocol version) is refused at start rather than misread later.
const HELLO: &[u8] = b"zhiku-parse-worker/2";

/// A reply of the wrong kind: the worker speaks another protocol.
fn unexpected(reply: &Reply) -> SandboxError {
    let kind = match reply {
        Reply::Parsed(_) => "a parse",
        Reply::ImagePages(_) => "a page count",
        Reply::Recognized(_) => "a recognized page",
        Reply::Panicked(_) => "a panic",
    };
    SandboxError::Crashed {
        detail: format!("the worker answered with {kind}, not what was asked"),
    }
}

/// The largest reply the pool reads: far more than any parse of a file under the upload
/// limit yields, and small enough that a garbled length cannot make the service allocate
/// without bound.
const MAX_REPLY_BYTES: u64 = 1 << 31;

/// How much of a dead worker's stderr is kept to tell why it died.
const STDERR_TAIL_BYTES: usize = 16 << 10;

/// How the pool starts and limits its workers.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The worker program: normally this very binary ([`SandboxConfig::this_binary`]).
    pub program: PathBuf,
    /// Arguments that make `program` run [`worker_main`] (for `zhiku`: `parse-worker`).
    pub args: Vec<OsString>,
    /// Worker processes kept running; at most this many files are parsed at once.
    pub processes: usize,
    /// Address-space limit of each worker, in bytes.
    pub memory_bytes: u64,
    /// Stack of the thread that parses, in bytes.
    pub stack_bytes: u64,
    /// CPU seconds one file may use.
    pub cpu_seconds: u64,
    /// Wall-clock time one file may take before its worker is killed.
    pub timeout: Duration,
}

impl SandboxConfig {
    /// The program to start as a worker: the running binary. On Linux this is
    /// `/proc/self/exe`, which still names the running executable after an upgrade has
    /// replaced the file on disk, so workers always speak this process's protocol.
    pub fn this_binary() -> io::Result<PathBuf> {
        let proc_exe = PathBuf::from("/proc/self/exe");
        if proc_exe.exists() {
            Ok(proc_exe)
        } else {
            std::env::current_exe()
        }
    }
}

/// Why a file could not be parsed in the sandbox (the parser's own verdicts, such as an
/// unreadable PDF, are [`ParseError`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The worker died on this file, or its parser panicked.
    #[error("the parser crashed on this file ({detail}); only this file failed")]
    Crashed {
        /// What is known of the cause.
        detail: String,
    },
    /// The worker ran out of its address space.
    #[error(
        "parsing this file needed more memory than the parser's limit of {limit_mb} MiB ([jobs] parser_memory_mb)"
    )]
    OutOfMemory {
        /// The limit, in MiB.
        limit_mb: u64,
    },
    /// The worker used up its CPU time for this file.
    #[error("parsing this file used more than {seconds} s of CPU time ([jobs] parser_cpu_secs)")]
    CpuLimit {
        /// The limit.
        seconds: u64,
    },
    /// The file took longer than the per-file time limit; its worker was killed.
    #[error("parsing this file took longer than {seconds} s (per-file time limit)")]
    Timeout {
        /// The limit.
        seconds: u64,
    },
    /// No worker could be started or spoken to.
    #[error("no parser process is available: {0}")]
    Unavailable(String),
}

impl SandboxError {
    /// Machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::Crashed { .. } => "parser_crashed",
            SandboxError::OutOfMemory { .. } => "parser_out_of_memory",
            SandboxError::CpuLimit { .. } => "parser_cpu_limit",
            SandboxError::Timeout { .. } => "timeout",
            SandboxError::Unavailable(_) => "parser_unavailable",
        }
    }
}

/// One piece of work, as sent to a worker (the file's bytes follow in a frame of their
/// own).
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    task: Task,
    cpu_seconds: u64,
}

/// What a worker is asked to do with a file's bytes.
#[derive(Debug, Serialize, Deserialize)]
enum Task {
    /// Detect the format and parse.
    Parse {
        name: String,
        content_type: Option<String>,
        options: ParseOptions,
    },
    /// Check an image file's header and count its pages ([`PageReader::image_pages`]).
    ImagePages { config: OcrConfig },
    /// Read one page with OCR ([`PageReader::read`]); the tools it runs inherit the
    /// worker's limits.
    Recognize { config: OcrConfig, page: Page },
}

/// A worker's answer, one variant per [`Task`].
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Parsed(Result<ParsedDocument, ParseError>),
    ImagePages(Result<u32, OcrError>),
    Recognized(Result<RecognizedPage, OcrError>),
    /// The task panicked; the worker itself is fine and stays in the pool.
    Panicked(String),
}

impl Task {
    fn run(self, bytes: &[u8]) -> Reply {
        match self {
            Task::Parse {
                name,
                content_type,
                options,
            } => Reply::Parsed(
                detect_format(&name, content_type.as_deref(), bytes)
                    .and_then(|format| parse_with(format, bytes, &options)),
            ),
            Task::ImagePages { config } => {
                Reply::ImagePages(PageReader::new(config).image_pages(bytes))
            }
            Task::Recognize { config, page } => {
                Reply::Recognized(PageReader::new(config).read(&page, bytes))
            }
        }
    }
}

/// A pool of parser processes. Cheap to share behind an `Arc`; [`ParserPool::parse`] may
/// be called from many threads and waits for a free worker.
pub struct ParserPool {
    config: SandboxConfig,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    /// Started workers that are not parsing.
    idle: Vec<Worker>,
    /// Workers parsing right now.
    busy: usize,
}

impl ParserPool {
    /// Starts `config.processes` workers (at least one) and checks that each answers, so
    /// that a missing or wrong worker program fails at start-up, not at the first upload.
    pub fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let count = config.processes.max(1);
        let idle = (0..count)
            .map(|_| Worker::spawn(&config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            state: Mutex::new(PoolState { idle, busy: 0 }),
            freed: Condvar::new(),
        })
    }

    /// Detects the format of `bytes` and parses them in a worker. The outer error says the
    /// worker failed (crash, memory, time); the inner one is the parser's verdict.
    pub fn parse(
        &self,
        name: &str,
        content_type: Option<&str>,
        bytes: &[u8],
        options: &ParseOptions,
    ) -> Result<Result<ParsedDocument, ParseError>, SandboxError> {
        let task = Task::Parse {
            name: name.to_string(),
            content_type: content_type.map(str::to_string),
            options: *options,
        };
        match self.run(name, task, bytes, self.config.timeout)? {
            Reply::Parsed(parsed) => Ok(parsed),
            other => Err(unexpected(&other)),
        }
    }

    /// Checks an image file's header and counts its pages in a worker
    /// ([`PageReader::image_pages`]).
    pub fn image_pages(
        &self,
        name: &str,
        bytes: &[u8],
        config: &OcrConfig,
    ) -> Result<Result<u32, OcrError>, SandboxError> {
        let task = Task::ImagePages {
            config: config.clone(),
        };
        match self.run(name, task, bytes, self.config.timeout)? {
            Reply::ImagePages(pages) => Ok(pages),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads one page with OCR in a worker ([`PageReader::read`]): the page's own steps
    /// (cutting a TIFF page out, checking its header) run there, and `pdftoppm` and
    /// `tesseract` start from there, under its memory and CPU limits. OCR's own per-page
    /// deadline ends the tools first; the worker is killed only a minute past it.
    pub fn recognize(
        &self,
        name: &str,
        page: &Page,
        bytes: &[u8],
        config: &OcrConfig,
    ) -> Result<Result<RecognizedPage, OcrError>, SandboxError> {
        let task = Task::Recognize {
            config: config.clone(),
            page: page.clone(),
        };
        let timeout = config.page_timeout + Duration::from_secs(60);
        match self.run(name, task, bytes, timeout)? {
            Reply::Recognized(read) => Ok(read),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs `task` on `bytes` in a worker (waiting for one to be free), killing it past
    /// `timeout`; `name` is for the log.
    fn run(
        &self,
        name: &str,
        task: Task,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<Reply, SandboxError> {
        let worker = self.take();
        let mut worker = match worker {
            Some(worker) => worker,
            None => match Worker::spawn(&self.config) {
                Ok(worker) => worker,
                Err(e) => {
                    self.give_back(None);
                    return Err(e);
                }
            },
        };
        let request = Request {
            task,
            cpu_seconds: self.config.cpu_seconds.max(1),
        };
        let (reply, killed) = with_deadline(worker.child.id(), timeout, || {
            worker.exchange(&request, bytes)
        });
        match reply {
            Ok(Reply::Panicked(message)) => {
                self.give_back(Some(worker));
                Err(SandboxError::Crashed {
                    detail: format!("the parser panicked: {message}"),
                })
            }
            Ok(reply) => {
                self.give_back(Some(worker));
                Ok(reply)
            }
            Err(e) => {
                let error = worker.post_mortem(killed, timeout, &e, &self.config);
                tracing::warn!(file = %name, code = error.code(), "{error}");
                self.give_back(None);
                Err(error)
            }
        }
    }

    /// Waits for a free slot; `None` means the slot has no running worker yet.
    fn take(&self) -> Option<Worker> {
        let mut state = self.state.lock();
        while state.busy >= self.config.processes.max(1) {
            self.freed.wait(&mut state);
        }
        state.busy += 1;
        state.idle.pop()
    }

    /// Returns a slot, with its worker if that is still healthy.
    fn give_back(&self, worker: Option<Worker>) {
        let mut state = self.state.lock();
        state.busy -= 1;
        state.idle.extend(worker);
        drop(state);
        self.freed.notify_one();
    }
}

/// Runs `f` while a watchdog waits `timeout`; past it, process `pid` is killed, which
/// makes `f`'s pipe I/O fail. Returns `f`'s result and whether the watchdog fired.
///
/// The pid cannot have been reused when the watchdog fires: the worker is only reaped
/// after this function has joined the watchdog.
fn with_deadline<T>(pid: u32, timeout: Duration, f: impl FnOnce() -> T) -> (T, bool) {
    let (done, wait) = mpsc::channel::<()>();
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    let watchdog = std::thread::Builder::new()
        .name("zhiku-parse-watchdog".into())
        .spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                flag.store(true, Ordering::SeqCst);
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        });
    let result = f();
    drop(done);
    if let Ok(watchdog) = watchdog {
        let _ = watchdog.join();
    }
    (result, fired.load(Ordering::SeqCst))
}

/// One worker process and its pipes.
struct Worker {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The last bytes the worker wrote to stderr (every line is also logged).
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(config: &SandboxConfig) -> Result<Self, SandboxError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            SandboxError::Unavailable(format!(
                "{what} {} as a parser worker: {e}",
                config.program.display()
            ))
        };
        let mut child = Command::new(&config.program)
            .args(&config.args)
            .arg(config.memory_bytes.to_string())
            .arg(config.stack_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| unavailable("cannot start", &e))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(unavailable("no pipes to", &"spawn gave none"));
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr_tail.clone();
        let pid = child.id();
        let stderr_reader = std::thread::Builder::new()
            .name("zhiku-parse-stderr".into())
            .spawn(move || drain_stderr(stderr, pid, &tail))
            .ok();
        let mut worker = Worker {
            child,
            stdin: BufWriter::new(stdin),
            stdout: BufReader::new(stdout),
            stderr_tail,
            stderr_reader,
        };
        // Generous: on a loaded machine a process start can take seconds, and a worker that
        // never says hello is killed rather than waited for.
        let (hello, _) = with_deadline(pid, Duration::from_secs(120), || {
            read_frame(&mut worker.stdout, HELLO.len() as u64)
        });
        match hello {
            Ok(hello) if hello == HELLO => Ok(worker),
            Ok(other) => Err(unavailable(
                "unexpected greeting from",
                &String::from_utf8_lossy(&other),
            )),
            Err(e) => Err(unavailable("no greeting from", &e)),
        }
    }

    fn exchange(&mut self, request: &Request, bytes: &[u8]) -> io::Result<Reply> {
        let meta = rmp_serde::to_vec(request).map_err(io::Error::other)?;
        write_frame(&mut self.stdin, &meta)?;
        write_frame(&mut self.stdin, bytes)?;
        self.stdin.flush()?;
        let reply = read_frame(&mut self.stdout, MAX_REPLY_BYTES)?;
        rmp_serde::from_slice(&reply).map_err(io::Error::other)
    }

    /// Why the worker stopped answering: ends it (if it still runs), reaps it and reads
    /// the end of its stderr.
    fn post_mortem(
        mut self,
        killed: bool,
        timeout: Duration,
        error: &io::Error,
        config: &SandboxConfig,
    ) -> SandboxError {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let tail = String::from_utf8_lossy(&self.stderr_tail.lock()).into_owned();
        diagnose(killed.then_some(timeout), status, &tail, error, config)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Names the cause of a worker's death from how it ended and what it last printed;
/// `killed` is the deadline, if the watchdog killed it.
fn diagnose(
    killed: Option<Duration>,
    status: Option<ExitStatus>,
    stderr: &str,
    error: &io::Error,
    config: &SandboxConfig,
) -> SandboxError {
    if let Some(timeout) = killed {
        return SandboxError::Timeout {
            seconds: timeout.as_secs(),
        };
    }
    if status.and_then(|s| s.signal()) == Some(libc::SIGXCPU) {
        return SandboxError::CpuLimit {
            seconds: config.cpu_seconds,
        };
    }
    // Rust's allocation-failure handler and its stack-overflow handler print these lines
    // before aborting.
    if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
        return SandboxError::OutOfMemory {
            limit_mb: config.memory_bytes >> 20,
        };
    }
    let detail = if stderr.contains("overflowed its stack") {
        "stack overflow: the file nests too deeply".to_string()
    } else {
        match status {
            Some(s) => match s.signal() {
                Some(signal) => format!("the parser process died of signal {signal}"),
                None => format!("the parser process exited ({s}): {error}"),
            },
            None => format!("the parser process stopped answering: {error}"),
        }
    };
    SandboxError::Crashed { detail }
}

fn drain_stderr(stderr: impl Read, pid: u32, tail: &Mutex<Vec<u8>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match io::BufRead::read_until(&mut reader, b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                tracing::debug!(
                    worker = pid,
                    "parser: {}",
                    String::from_utf8_lossy(&line).trim_end()
                );
                let mut tail = tail.lock();
                tail.extend_from_slice(&line);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        }
    }
}

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u64).to_le_bytes())?;
    out.write_all(payload)
}

/// Reads one frame of at most `limit` bytes; input that ends before or inside a frame is
/// an `UnexpectedEof` error.
fn read_frame(input: &mut impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    input.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes, more than {limit}"),
        ));
    }
    let mut payload = Vec::new();
    input.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(payload)
}

/// The worker's side: the hidden subcommand calls this with its two arguments, the
/// address-space limit and the parse thread's stack size in bytes, and exits with what it
/// returns. It serves requests on stdin until stdin closes.
pub fn worker_main(args: &[String]) -> io::Result<()> {
    let number = |i: usize| -> io::Result<u64> {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other("usage: parse-worker MEMORY_BYTES STACK_BYTES"))
    };
    let (memory, stack) = (number(0)?, number(1)?);
    set_limit(libc::RLIMIT_AS as _, memory)?;
    let mut out = protocol_output()?;
    write_frame(&mut out, HELLO)?;
    out.flush()?;
    let mut input = BufReader::new(io::stdin().lock());
    loop {
        let meta = match read_frame(&mut input, u64::MAX) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let request: Request = rmp_serde::from_slice(&meta).map_err(io::Error::other)?;
        let bytes = read_frame(&mut input, u64::MAX)?;
        // The soft limit only: the next file raises it again. Past it the kernel sends
        // SIGXCPU, which ends the process.
        set_limit(
            libc::RLIMIT_CPU as _,
            cpu_seconds_used() + request.cpu_seconds,
        )?;
        let reply = std::thread::Builder::new()
            .name("zhiku-parse".into())
            .stack_size(stack as usize)
            .spawn(move || request.task.run(&bytes))
            .map(|parser| {
                parser
                    .join()
                    .unwrap_or_else(|panic| Reply::Panicked(panic_message(panic)))
            })
            .unwrap_or_else(|e| Reply::Panicked(format!("cannot start a parse thread: {e}")));
        let reply = rmp_serde::to_vec(&reply).map_err(io::Error::other)?;
        write_frame(&mut out, &reply)?;
        out.flush()?;
    }
}

/// `main` of a standalone worker program: [`worker_main`] on the command line's
/// arguments, its error on stderr.
pub fn worker_program() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match worker_main(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parser worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The protocol's output: the original stdout, after which stdout itself points at stderr,
/// so a parser's stray `println!` cannot corrupt a frame.
fn protocol_output() -> io::Result<BufWriter<std::fs::File>> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain descriptor calls; the duplicate is owned by the File made from it.
    unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(BufWriter::new(std::fs::File::from_raw_fd(fd)))
    }
}

/// Sets the soft limit of `resource` to `value`, or to the hard limit if that is lower (a
/// process may not raise its hard limit, and a container may have lowered it); the hard
/// limit is left as it is, so the next file can raise the soft one again.
fn set_limit(resource: libc::c_int, value: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct we own.
    unsafe {
        if libc::getrlimit(resource as _, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = (value as libc::rlim_t).min(limit.rlim_max);
        if libc::setrlimit(resource as _, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn cpu_seconds_used() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec).max(0) as u64 + 1
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests;
