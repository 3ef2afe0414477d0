//! `mtgpt train` on the smoke config, then `mtgpt eval` on what it trained.
use mtgpt_e2e::{mtgpt, stderr, stdout};

#[test]
fn smoke_config_trains_every_task_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke");
    let o = mtgpt(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--out",
        out.to_str().unwrap(),
        "--log-every",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    assert!(summary.contains("steps=70"), "{summary}");
    for f in [
        "model/model.safetensors",
        "model/heads.safetensors",
        "model/mtgpt.toml",
        "best/tasks.json",
        "metrics.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let model = out.join("model");
    let o = mtgpt(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--config",
        "configs/smoke.toml",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 5);
    // SMS spam is ~87 % ham: even 70 tiny steps reach the majority rate.
    let spam = tasks.iter().find(|t| t["task"] == "spam_en").unwrap();
    assert!(
        spam["metrics"]["accuracy"].as_f64().unwrap() > 0.8,
        "{spam}"
    );
    let o = mtgpt(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--set",
        "train.weighting.strategy=pcgrad",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("pcgrad"),
        "{}",
        stderr(&o)
    );
}
