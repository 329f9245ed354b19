//! A missing or corrupt model file, or a missing OCR package, is a clear startup error,
//! never a panic.

use std::process::Command;

use zhiku_e2e::{MINILM_ENV, SMALL_LLM, binary, models_dir};

fn copy_models(to: &std::path::Path) {
    let from = models_dir();
    for entry in ["e5-small", "all-minilm-l6-v2", "smollm2", "onnxruntime"] {
        std::fs::create_dir_all(to.join(entry)).unwrap();
        for file in std::fs::read_dir(from.join(entry)).unwrap() {
            let file = file.unwrap();
            // Links keep this cheap; the tests only remove or replace links.
            std::fs::hard_link(file.path(), to.join(entry).join(file.file_name()))
                .or_else(|_| {
                    std::fs::copy(file.path(), to.join(entry).join(file.file_name())).map(|_| ())
                })
                .unwrap();
        }
    }
}

fn serve_with_models(models: &std::path::Path) -> (i32, String) {
    serve_with_env(models, &[])
}

fn serve_with_env(models: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .env("ZHIKU_LLM__MODEL", SMALL_LLM)
        .envs(zhiku_e2e::catalog_env(data.path()))
        .envs(env.iter().copied())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .arg("--models")
        .arg(models)
        .output()
        .expect("run zhiku");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn missing_onnx_runtime_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_models(dir.path());
    let lib = dir.path().join("onnxruntime/libonnxruntime.so.1.31.1");
    std::fs::remove_file(&lib).unwrap();
    let (code, stderr) = serve_with_env(dir.path(), &MINILM_ENV);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("libonnxruntime.so.1.31.1") && stderr.contains("deploy/setup.sh"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_and_corrupt_llm_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    copy_models(dir.path());
    let gguf = dir.path().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::remove_file(&gguf).unwrap();
    let (code, stderr) = serve_with_models(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("SmolLM2-135M-Instruct.Q4_1.gguf") && stderr.contains("deploy/setup.sh"),
        "{stderr}"
    );

    std::fs::write(&gguf, b"this is not a gguf file").unwrap();
    let (code, stderr) = serve_with_models(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn corrupt_embedding_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_models(dir.path());
    let onnx = dir.path().join("all-minilm-l6-v2/model.onnx");
    std::fs::remove_file(&onnx).unwrap();
    std::fs::write(&onnx, b"garbage").unwrap();
    let (code, stderr) = serve_with_env(dir.path(), &MINILM_ENV);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("model.onnx") && stderr.contains("deploy/setup.sh"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The default embedder: the converted e5 GGUF, missing and then corrupt.
    let gguf = dir.path().join("e5-small/e5-small-q4_0.gguf");
    std::fs::remove_file(&gguf).unwrap();
    let (code, stderr) = serve_with_models(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("e5-small-q4_0.gguf") && stderr.contains("deploy/setup.sh"),
        "{stderr}"
    );
    std::fs::write(&gguf, b"GGUF but nothing after the magic").unwrap();
    let (code, stderr) = serve_with_models(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("e5-small-q4_0.gguf") && stderr.contains("deploy/setup.sh"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zhiku.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let output = Command::new(binary())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listen"), "{stderr}");
}

#[test]
fn missing_ocr_language_or_command_is_a_clear_error() {
    let models = models_dir();
    let (code, stderr) = serve_with_env(&models, &[("ZHIKU_OCR__LANGUAGES", "chi_sim+xx_yy")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("tesseract-ocr-xx-yy") && stderr.contains("[ocr] languages"),
        "{stderr}"
    );
    // No tesseract on the PATH at all.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    let (code, stderr) = serve_with_env(&models, &[("PATH", path)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("tesseract-ocr") && stderr.contains("enabled = false"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unreachable_or_misconfigured_qdrant_store_is_a_clear_error() {
    // Nothing listens on a port just found free: the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, stderr) = serve_with_env(
        &models_dir(),
        &[
            ("ZHIKU_STORE__BACKEND", "qdrant"),
            ("ZHIKU_STORE__URL", &url),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach Qdrant at {url}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (code, stderr) = serve_with_env(
        &models_dir(),
        &[
            ("ZHIKU_STORE__BACKEND", "qdrant"),
            ("ZHIKU_STORE__WRITE_CONSISTENCY_FACTOR", "2"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("store.write_consistency_factor"),
        "{stderr}"
    );
    // The key is named by its variable, never shown.
    let (code, stderr) = serve_with_env(
        &models_dir(),
        &[
            ("ZHIKU_STORE__BACKEND", "qdrant"),
            ("ZHIKU_STORE__API_KEY_ENV", "ZHIKU_TEST_UNSET_QDRANT_KEY"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "store.api_key_env names the environment variable ZHIKU_TEST_UNSET_QDRANT_KEY"
        ),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_or_unmigrated_postgres_catalog_is_a_clear_error() {
    let models = models_dir();
    let postgres = [("ZHIKU_CATALOG__BACKEND", "postgres")];
    // Nothing listens on port 1.
    let (code, stderr) = serve_with_env(
        &models,
        &[
            postgres[0],
            ("ZHIKU_CATALOG__URL", "postgres://zhiku@127.0.0.1:1/zhiku"),
            ("ZHIKU_CATALOG__TIMEOUT_SECS", "5"),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot reach the PostgreSQL catalog at 127.0.0.1:1/zhiku"),
        "{stderr}"
    );

    // A database never migrated: refused, naming the command; `zhiku migrate` fixes it,
    // and running it again changes nothing.
    let db = zhiku_catalog::test_support::TestDatabase::bare();
    let (code, stderr) = serve_with_env(
        &models,
        &[postgres[0], ("ZHIKU_CATALOG__URL", db.url.as_str())],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("schema version 0") && stderr.contains("run `zhiku migrate`"),
        "{stderr}"
    );
    let migrate = |url: &str| {
        let output = Command::new(binary())
            .args(["migrate"])
            .env("ZHIKU_CATALOG__BACKEND", "postgres")
            .env("ZHIKU_CATALOG__URL", url)
            .output()
            .expect("run zhiku migrate");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let first = migrate(&db.url);
    assert!(
        first.contains("applied migration 1 (catalog)") && first.contains("schema version"),
        "{first}"
    );
    let again = migrate(&db.url);
    assert!(!again.contains("applied"), "{again}");
}
