//! The model verbs of the `mtgpt` binary: init, generate, export/import, embed, bench.
use mtgpt_e2e::{mtgpt, repo_root, stderr};
use std::path::Path;

use mtgpt_e2e::mtgpt_ok as ok;

/// A tiny random model folder with a real tokenizer.
fn tiny_model(dir: &Path) -> String {
    let tok = dir.join("tok/tokenizer.json");
    ok(&[
        "tokenizer",
        "train",
        "--input",
        "data/lm_en/valid.txt",
        "--vocab-size",
        "400",
        "--out",
        tok.to_str().unwrap(),
    ]);
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        "name = \"tiny\"\n[model]\nn_layer = 1\nn_head = 2\nd_model = 16\nblock_size = 48\nprecision = \"fp32\"\n[[task]]\nname = \"lm\"\nkind = \"lm\"\ntrain = \"x.txt\"\n",
    )
    .unwrap();
    let model = dir.join("model");
    ok(&[
        "model",
        "init",
        "--config",
        config.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    model.to_str().unwrap().to_string()
}

#[test]
fn generate_greedy_is_deterministic_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let args = [
        "generate",
        "--model",
        &model,
        "--prompt",
        "To be",
        "--max-new-tokens",
        "8",
        "--greedy",
    ];
    let a = ok(&args);
    assert!(a.starts_with("To be"), "{a}");
    assert_eq!(a, ok(&args));
    let two = ok(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "To be",
        "--prompt",
        "Hello there, friend",
        "--max-new-tokens",
        "8",
        "--greedy",
    ]);
    assert_eq!(
        two.lines().next(),
        a.lines().next(),
        "batching with left padding changes nothing"
    );
    let sampled = [
        "generate",
        "--model",
        &model,
        "--prompt",
        "To be",
        "--max-new-tokens",
        "8",
        "--temperature",
        "0.8",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--seed",
        "3",
    ];
    assert_eq!(ok(&sampled), ok(&sampled), "seeded sampling repeats");
    ok(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "To be",
        "--max-new-tokens",
        "4",
        "--num-beams",
        "2",
    ]);
}

#[test]
fn export_import_round_trip_and_bad_folders() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let hf = dir.path().join("hf");
    ok(&[
        "export",
        "--model",
        &model,
        "--format",
        "hf-gpt2",
        "--out",
        hf.to_str().unwrap(),
    ]);
    let back = dir.path().join("back");
    ok(&[
        "import",
        "--hf",
        hf.to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    let a = std::fs::read(Path::new(&model).join("model.safetensors")).unwrap();
    let b = std::fs::read(back.join("model.safetensors")).unwrap();
    assert_eq!(a, b);
    let o = mtgpt(&["generate", "--model", "no/such/model", "--prompt", "x"]);
    assert!(
        !o.status.success() && stderr(&o).contains("no/such/model: not a model folder"),
        "{}",
        stderr(&o)
    );
    std::fs::write(back.join("model.safetensors"), b"garbage").unwrap();
    let o = mtgpt(&[
        "generate",
        "--model",
        back.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(
        stderr(&o).contains("not a readable safetensors file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn embed_writes_one_vector_per_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\":\"hello world\"}\n{\"text\":\"to be or not to be, that is the question\"}\n",
    )
    .unwrap();
    let out = ok(&[
        "embed",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
        "--pool",
        "mean",
        "--layer",
        "1",
    ]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["embedding"].as_array().unwrap().len(), 16);
    assert_ne!(rows[0]["embedding"], rows[1]["embedding"]);
    // A text embedded alone gets the same vector as in a padded batch.
    std::fs::write(&input, "{\"text\":\"hello world\"}\n").unwrap();
    let alone: serde_json::Value = serde_json::from_str(
        ok(&[
            "embed",
            "--model",
            &model,
            "--input",
            input.to_str().unwrap(),
            "--pool",
            "mean",
            "--layer",
            "1",
        ])
        .trim(),
    )
    .unwrap();
    let (x, y) = (
        alone["embedding"].as_array().unwrap(),
        rows[0]["embedding"].as_array().unwrap(),
    );
    for (a, b) in x.iter().zip(y) {
        assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-4);
    }
    std::fs::write(&input, "{\"txt\":\"oops\"}\n").unwrap();
    let o = mtgpt(&[
        "embed",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("in.jsonl:1: field `text`"),
        "{}",
        stderr(&o)
    );
    let _ = repo_root();
}

#[test]
fn bench_verbs_print_their_figures() {
    let out = ok(&[
        "bench", "train", "--layers", "1", "--heads", "2", "--dim", "32", "--block", "16",
        "--batch", "2", "--vocab", "100", "--steps", "2",
    ]);
    assert!(
        out.contains("tokens_per_s=") && out.contains("step_ms="),
        "{out}"
    );
    let out = ok(&[
        "bench", "generate", "--layers", "1", "--heads", "2", "--dim", "32", "--block", "32",
        "--vocab", "100", "--steps", "8",
    ]);
    assert!(
        out.contains("cached_tokens_per_s=") && out.contains("recompute_tokens_per_s="),
        "{out}"
    );
}
