//! The llama.cpp runtime shared by every stage that runs a GGUF model.
//!
//! llama.cpp may be initialised only once per process (`LlamaBackend::init` fails the
//! second time), yet both the embedder and the generator need it; this crate owns that
//! one backend so neither stage depends on the other. It also owns the one thread that
//! runs every llama.cpp computation of the process ([`compute`]).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

pub use llama_cpp_2;
use llama_cpp_2::llama_backend::LlamaBackend;

/// The process-wide llama.cpp backend, initialised on first use.
///
/// # Errors
/// The reason llama.cpp could not be initialised (the same message on every call).
pub fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp writes a dozen lines to stderr per context, i.e. per request; our
            // errors carry what callers need, so its chatter is dropped.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| format!("cannot initialise llama.cpp: {e}"))
}

/// Runs `f` on the thread that runs every llama.cpp computation (decode) of the process,
/// and returns its result; concurrent callers take turns, one call at a time.
///
/// llama.cpp's CPU backend is built with OpenMP (GNU libgomp). Each thread that runs a
/// decode keeps its own team of OpenMP worker threads for as long as it lives, and once the
/// process holds more OpenMP threads than there are cores, libgomp stops spinning at its
/// barriers and puts the waiting thread to sleep instead. A single-token decode passes
/// hundreds of barriers, so generation ran at half speed as soon as a second thread had
/// ever decoded (the embedder's probe at startup, a search, another request): 20 against
/// 43 tokens/s for llama.cpp's own loop on 2 cores (`zhiku bench generate`). Decoding on
/// one thread keeps one team, as llama.cpp's own server and benchmark do, and concurrent
/// generations share the cores one decode at a time instead of oversubscribing them.
///
/// Callers keep everything else (sampling, detokenizing, callbacks) on their own thread;
/// `f` should be a decode or a few, so that others do not wait long for their turn.
pub fn compute<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "llama.cpp".to_string())
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(f),
        // The thread could not be started: decoding on the caller's thread still works.
        None => f(),
    }
}

/// Why a path is not a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufProblem {
    /// Nothing at the path.
    Missing,
    /// Something is there but it is not a readable GGUF file; the text says what.
    Invalid(String),
}

/// Checks the file is there and starts with the GGUF magic, so that a wrong path or a
/// truncated download is reported as such instead of reaching the C++ loader.
///
/// # Errors
/// [`GgufProblem`] naming what is wrong.
pub fn check_gguf(path: &Path) -> Result<(), GgufProblem> {
    if !path.exists() {
        return Err(GgufProblem::Missing);
    }
    if !path.is_file() {
        return Err(GgufProblem::Invalid("not a regular file".into()));
    }
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| GgufProblem::Invalid(format!("cannot read the GGUF header: {e}")))?;
    if &magic != b"GGUF" {
        return Err(GgufProblem::Invalid(format!(
            "does not start with the GGUF magic bytes (found {magic:02x?})"
        )));
    }
    Ok(())
}

/// Tokens `model` splits `text` into, without special tokens. Texts over `max_bytes`
/// return their byte count instead: every token covers at least one byte, so that bounds
/// the count from above, and the caller's limit keeps llama.cpp's `i32` lengths (whose
/// overflow the bindings turn into a panic) out of reach.
pub fn count_tokens(model: &llama_cpp_2::model::LlamaModel, text: &str, max_bytes: usize) -> usize {
    if text.len() > max_bytes {
        return text.len();
    }
    model.vocab().tokenize(text.as_bytes(), false, false).len()
}

/// The quantization a GGUF model declares (`general.file_type`), by llama.cpp's name for
/// it, e.g. `Q4_1`; `None` if the file does not say or the number is unknown.
pub fn quantization(model: &llama_cpp_2::model::LlamaModel) -> Option<String> {
    let file_type: u32 = model.meta_val_str("general.file_type").ok()?.parse().ok()?;
    file_type_name(file_type).map(str::to_string)
}

/// llama.cpp's `llama_ftype` numbers and names (`general.file_type` in GGUF).
fn file_type_name(file_type: u32) -> Option<&'static str> {
    const NAMES: [(u32, &str); 32] = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (7, "Q8_0"),
        (8, "Q5_0"),
        (9, "Q5_1"),
        (10, "Q2_K"),
        (11, "Q3_K_S"),
        (12, "Q3_K_M"),
        (13, "Q3_K_L"),
        (14, "Q4_K_S"),
        (15, "Q4_K_M"),
        (16, "Q5_K_S"),
        (17, "Q5_K_M"),
        (18, "Q6_K"),
        (19, "IQ2_XXS"),
        (20, "IQ2_XS"),
        (21, "Q2_K_S"),
        (22, "IQ3_XS"),
        (23, "IQ3_XXS"),
        (24, "IQ1_S"),
        (25, "IQ4_NL"),
        (26, "IQ3_S"),
        (27, "IQ3_M"),
        (28, "IQ2_S"),
        (29, "IQ2_M"),
        (30, "IQ4_XS"),
        (31, "IQ1_M"),
        (32, "BF16"),
        (36, "TQ1_0"),
        (37, "TQ2_0"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == file_type)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn compute_runs_on_one_thread() {
        let here = std::thread::current().id();
        let there = super::compute(|| std::thread::current().id());
        assert_ne!(here, there);
        let names: Vec<Option<String>> = std::thread::scope(|s| {
            let spawned: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| super::compute(|| std::thread::current().name().map(str::to_string)))
                })
                .collect();
            spawned.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(names.iter().all(|n| n.as_deref() == Some("llama.cpp")));
        // Borrowing from the caller and calling it again from inside both work.
        let mut v = vec![1];
        super::compute(|| v.push(super::compute(|| 2)));
        assert_eq!(v, [1, 2]);
    }

    #[test]
    fn file_types_have_llama_cpp_names() {
        assert_eq!(super::file_type_name(2), Some("Q4_0"));
        assert_eq!(super::file_type_name(3), Some("Q4_1"));
        assert_eq!(super::file_type_name(15), Some("Q4_K_M"));
        assert_eq!(super::file_type_name(4), None);
    }

    use super::*;

    #[test]
    fn check_gguf_names_the_problem() {
        let dir = std::env::temp_dir().join(format!("zhiku-llama-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            check_gguf(&dir.join("absent.gguf")),
            Err(GgufProblem::Missing)
        );
        assert!(matches!(check_gguf(&dir), Err(GgufProblem::Invalid(m)) if m.contains("regular")));
        let bad = dir.join("bad.gguf");
        std::fs::write(&bad, b"ONNX....").unwrap();
        assert!(matches!(check_gguf(&bad), Err(GgufProblem::Invalid(m)) if m.contains("magic")));
        let short = dir.join("short.gguf");
        std::fs::write(&short, b"GG").unwrap();
        assert!(matches!(check_gguf(&short), Err(GgufProblem::Invalid(m)) if m.contains("header")));
        let good = dir.join("good.gguf");
        std::fs::write(&good, b"GGUF\x03\0\0\0").unwrap();
        assert_eq!(check_gguf(&good), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
