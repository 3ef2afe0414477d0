//! `mtgpt compress` end to end: a briefly trained smoke model (every task kind) goes through
//! every method, and each compressed folder — sparse, smaller, int8, distilled — runs through
//! `generate`, `predict`, `eval` and `embed`, with a report that has the before/after figures.
use mtgpt_e2e::{mtgpt, mtgpt_ok as ok, stderr};
use serde_json::Value;
use std::path::Path;

fn trained_smoke_model(dir: &Path) -> String {
    let out = dir.join("run");
    ok(&[
        "-q",
        "train",
        "--config",
        "configs/smoke.toml",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.steps=12",
        "--set",
        "train.pretrain_steps=0",
        "--set",
        "train.eval_every=0",
    ]);
    out.join("model").to_str().unwrap().to_string()
}

fn compress(model: &str, method: &str, out: &Path) -> Value {
    let stdout = ok(&[
        "-q",
        "compress",
        "--model",
        model,
        "--config",
        "configs/smoke.toml",
        "--method",
        method,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "compress.finetune_steps=4",
        "--set",
        "compress.sparsity=0.5",
        "--eval-examples",
        "6",
        "--speed-runs",
        "1",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&stdout).expect("--json prints one JSON object");
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("compress.json")).expect("compress.json written"),
    )
    .unwrap();
    assert_eq!(report["method"], on_disk["method"]);
    assert_eq!(report["method"], method);
    for side in ["before", "after"] {
        let s = &report[side];
        assert!(s["parameters"].as_u64().unwrap() > 0);
        assert!(s["file_bytes"].as_u64().unwrap() > 0);
        assert!(s["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(s["predict_examples_per_s"].as_f64().unwrap() > 0.0);
        assert!(s["scores"].as_array().unwrap().len() >= 6, "{side}: {s}");
    }
    report
}

/// Every verb that reads a model folder works on `model`.
fn runs_through_every_verb(model: &str, dir: &Path) {
    let out = ok(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "To be",
        "--max-new-tokens",
        "5",
        "--greedy",
    ]);
    assert!(out.starts_with("To be"), "{out}");
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"free prize, call now\"}\n{\"text\": \"see you at lunch\"}\n",
    )
    .unwrap();
    let pred = ok(&[
        "predict",
        "--model",
        model,
        "--task",
        "spam_en",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(pred.lines().count(), 2);
    for line in pred.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            ["ham", "spam"].contains(&v["prediction"]["label"].as_str().unwrap()),
            "{v}"
        );
    }
    let emb = ok(&[
        "embed",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(emb.lines().count(), 2);
    let v: Value = serde_json::from_str(emb.lines().next().unwrap()).unwrap();
    assert!(!v["embedding"].as_array().unwrap().is_empty());
    let eval: Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        model,
        "--config",
        "configs/smoke.toml",
        "--json",
    ]))
    .unwrap();
    assert!(eval["aggregate"].as_f64().is_some(), "{eval}");
}

#[test]
fn every_method_writes_a_folder_that_every_verb_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_smoke_model(dir.path());

    // int8: int8 weights on disk, about a quarter of the file.
    let int8 = dir.path().join("int8");
    let r = compress(&model, "int8", &int8);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(int8.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["mtgpt"]["weights"], "int8");
    let (b, a) = (
        r["before"]["file_bytes"].as_f64().unwrap(),
        r["after"]["file_bytes"].as_f64().unwrap(),
    );
    assert!(a < 0.4 * b, "int8 file {a} vs {b}");
    runs_through_every_verb(int8.to_str().unwrap(), dir.path());

    // prune: the requested sparsity, stored sparse (smaller file).
    let pruned = dir.path().join("prune");
    let r = compress(&model, "prune", &pruned);
    let s = r["details"]["sparsity"].as_f64().unwrap();
    assert!((s - 0.5).abs() < 0.01, "sparsity {s}");
    assert!(r["after"]["nonzero_parameters"].as_u64() < r["before"]["nonzero_parameters"].as_u64());
    assert!(r["after"]["file_bytes"].as_u64() < r["before"]["file_bytes"].as_u64());
    runs_through_every_verb(pruned.to_str().unwrap(), dir.path());

    // prune-structured: fewer parameters, per-block shapes recorded in config.json.
    let small = dir.path().join("structured");
    let r = compress(&model, "prune-structured", &small);
    assert!(r["after"]["parameters"].as_u64() < r["before"]["parameters"].as_u64());
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(small.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["mtgpt"]["layer_d_ff"].as_array().unwrap().len(), 2);
    runs_through_every_verb(small.to_str().unwrap(), dir.path());

    // distill: a student with half the blocks.
    let student = dir.path().join("distill");
    let r = compress(&model, "distill", &student);
    assert_eq!(r["details"]["student_layers"], 1);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["n_layer"], 1);
    runs_through_every_verb(student.to_str().unwrap(), dir.path());

    // Bad input: an unknown method and writing over the input are refused with a message.
    let o = mtgpt(&[
        "compress",
        "--model",
        &model,
        "--config",
        "configs/smoke.toml",
        "--method",
        "zip",
        "--out",
        "x",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("zip"),
        "{}",
        stderr(&o)
    );
    let o = mtgpt(&[
        "compress",
        "--model",
        &model,
        "--config",
        "configs/smoke.toml",
        "--method",
        "int8",
        "--out",
        &model,
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("input model folder"),
        "{}",
        stderr(&o)
    );
}
