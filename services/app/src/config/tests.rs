use super::*;

#[test]
fn unknown_keys_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zhiku.toml");
    std::fs::write(&path, "[server]\nadress = \"0.0.0.0:1\"\n").unwrap();
    let err = Config::load(Some(&path), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("adress"), "{err}");
}

#[test]
fn file_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zhiku.toml");
    std::fs::write(
        &path,
        "[server]\naddr = \"127.0.0.1:9999\"\n[search]\ntop_k = 7\n",
    )
    .unwrap();
    let config = Config::load(Some(&path), &Overrides::default()).unwrap();
    assert_eq!(config.server.addr, "127.0.0.1:9999");
    assert_eq!(config.search.top_k, 7);
    let overrides = Overrides {
        addr: Some("127.0.0.1:1".into()),
        ..Overrides::default()
    };
    assert_eq!(
        Config::load(Some(&path), &overrides).unwrap().server.addr,
        "127.0.0.1:1"
    );
}

#[test]
fn documented_example_is_valid_and_shows_the_defaults() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let example = Path::new(&manifest).join("../../deploy/zhiku.toml");
    // The file alone: ZHIKU_* variables of the environment (a suite run against Qdrant
    // sets some) are not the file's to show.
    let loaded: Config = toml::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    let defaults = Config::default();
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(&defaults).unwrap()
    );
}

#[test]
fn ocr_settings_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zhiku.toml");
    std::fs::write(&path, "[ocr]\nlanguages = \"eng\"\ndocx_images = true\n").unwrap();
    let config = Config::load(Some(&path), &Overrides::default()).unwrap();
    let ocr = config.ocr().unwrap();
    assert_eq!((ocr.languages.as_str(), ocr.dpi), ("eng", 300));
    assert!(config.pipeline().parse.docx_images);
    let mut disabled = config.clone();
    disabled.ocr.enabled = false;
    assert!(disabled.ocr().is_none());
    // No OCR, no pictures to read either.
    assert!(!disabled.pipeline().parse.docx_images);
    std::fs::write(&path, "[ocr]\ndpii = 200\n").unwrap();
    let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("dpii"), "{err}");
}

#[test]
fn prompt_fields_resolve_request_then_kb_then_default() {
    let fields = |persona: Option<&str>, tone: Option<&str>| zhiku_schemas::PromptFields {
        persona: persona.map(String::from),
        tone: tone.map(String::from),
        ..Default::default()
    };
    let mut section = PromptSection {
        default: fields(Some("librarian"), Some("neutral")),
        ..Default::default()
    };
    section
        .kb
        .insert("support".into(), fields(Some("support lead"), None));
    assert_eq!(
        section.resolve("other", None),
        fields(Some("librarian"), Some("neutral"))
    );
    assert_eq!(
        section.resolve("support", None),
        fields(Some("support lead"), Some("neutral"))
    );
    let request = fields(None, Some("warm"));
    assert_eq!(
        section.resolve("support", Some(&request)),
        fields(Some("support lead"), Some("warm"))
    );
}

#[test]
fn a_remote_llm_needs_url_and_model_and_names_a_missing_key_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zhiku.toml");
    std::fs::write(&path, "[llm]\nprovider = \"openai\"\n").unwrap();
    let mut config = Config::load(Some(&path), &Overrides::default()).unwrap();
    assert_eq!(config.llm.provider, LlmProvider::Openai);
    let err = config.remote_llm().unwrap_err().to_string();
    assert!(err.contains("llm.base_url"), "{err}");
    config.llm.base_url = "http://127.0.0.1:8081/v1".into();
    let err = config.remote_llm().unwrap_err().to_string();
    assert!(err.contains("llm.remote_model"), "{err}");
    config.llm.remote_model = "qwen2.5:7b".into();
    let remote = config.remote_llm().unwrap();
    assert_eq!(
        (remote.model.as_str(), remote.api_key),
        ("qwen2.5:7b", None)
    );
    assert_eq!(remote.n_ctx, 2048);

    config.llm.api_key_env = "ZHIKU_TEST_SURELY_UNSET_4711".into();
    let err = config.remote_llm().unwrap_err().to_string();
    assert!(err.contains("ZHIKU_TEST_SURELY_UNSET_4711"), "{err}");
    // PATH is always set: its value stands in for a key, and is never shown.
    config.llm.api_key_env = "PATH".into();
    let remote = config.remote_llm().unwrap();
    assert!(remote.api_key.is_some());
    let key = std::env::var("PATH").unwrap();
    assert!(!format!("{remote:?}").contains(&key));
    assert!(!config.show().unwrap().contains(&key));
}

#[test]
fn relative_model_paths_resolve_under_models_dir() {
    let mut config = Config::default();
    config.server.models_dir = "/m".into();
    assert_eq!(
        config.embedder().model,
        PathBuf::from("/m/e5-small/e5-small-q4_0.gguf")
    );
    assert_eq!(
        config.model_path(Path::new("/abs.gguf")),
        PathBuf::from("/abs.gguf")
    );
}

#[test]
fn the_postgres_catalog_takes_its_password_from_the_environment() {
    let mut config = Config::default();
    config.catalog.backend = CatalogBackendChoice::Postgres;
    config.catalog.url = "mysql://nope".into();
    let err = config.postgres().unwrap_err().to_string();
    assert!(err.contains("catalog.url"), "{err}");

    config.catalog.url = "postgres://zhiku@db:5432/zhiku".into();
    assert_eq!(
        config.postgres().unwrap().url,
        "postgres://zhiku@db:5432/zhiku"
    );
    config.catalog.password_env = "ZHIKU_TEST_SURELY_UNSET_4712".into();
    let err = config.postgres().unwrap_err().to_string();
    assert!(err.contains("ZHIKU_TEST_SURELY_UNSET_4712"), "{err}");
    // Any character survives, percent-encoded; a password in the URL is replaced.
    assert_eq!(
        with_password("postgres://u:old@db:5/z", "p@ss:/word"),
        "postgres://u:p%40ss%3A%2Fword@db:5/z"
    );
    assert_eq!(
        with_password("postgres://db:5/z", "pw"),
        "postgres://zhiku:pw@db:5/z"
    );
}
