//! `mtgpt predict` and `mtgpt eval` on a freshly initialised multi-task model over the demo's
//! six real tasks.
use mtgpt_e2e::{mtgpt, stderr};
use std::path::Path;

use mtgpt_e2e::mtgpt_ok as ok;

fn demo_model(dir: &Path) -> String {
    let prep = dir.join("prep");
    ok(&[
        "prep",
        "--config",
        "configs/demo.toml",
        "--out",
        prep.to_str().unwrap(),
        "--set",
        "tokenizer.vocab_size=1000",
    ]);
    let model = dir.join("model");
    let tok = prep.join("tokenizer.json");
    ok(&[
        "model",
        "init",
        "--config",
        "configs/demo.toml",
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--set",
        "model.n_layer=1",
        "--set",
        "model.d_model=32",
        "--set",
        "model.n_head=2",
        "--set",
        "model.block_size=96",
    ]);
    model.to_str().unwrap().to_string()
}

#[test]
fn eval_scores_every_task_and_predict_answers_each_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = demo_model(dir.path());
    let out = ok(&[
        "eval",
        "--model",
        &model,
        "--config",
        "configs/demo.toml",
        "--split",
        "test",
        "--json",
        "--lm-tokens",
        "500",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "lm_en",
            "lm_zh",
            "sentiment_zh",
            "spam_en",
            "ner_zh",
            "qa_gen"
        ]
    );
    for t in tasks {
        let primary = t["primary"].as_str().unwrap();
        let x = t["metrics"][primary].as_f64().unwrap();
        assert!(x.is_finite() && x >= 0.0, "{t}");
    }
    assert_eq!(tasks[2]["examples"], 400, "sentiment_zh test split");
    let agg = v["aggregate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agg));
    let table = ok(&[
        "eval",
        "--model",
        &model,
        "--config",
        "configs/demo.toml",
        "--lm-tokens",
        "500",
    ]);
    assert!(
        table.contains("spam_en") && table.contains("accuracy="),
        "{table}"
    );

    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\":\"Free entry! Win a prize now\"}\n\n{\"text\":\"see you at lunch\",\"label\":\"ham\"}\n").unwrap();
    let out = ok(&[
        "predict",
        "--model",
        &model,
        "--task",
        "spam_en",
        "--input",
        input.to_str().unwrap(),
    ]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let label = r["prediction"]["label"].as_str().unwrap();
        assert!(label == "ham" || label == "spam");
        let p: f64 = r["prediction"]["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-6);
    }
    assert_eq!(rows[1]["label"], "ham", "input fields are kept");

    std::fs::write(&input, "{\"tokens\":[\"小\",\"明\"]}\n{\"tokenz\":[]}\n").unwrap();
    let o = mtgpt(&[
        "predict",
        "--model",
        &model,
        "--task",
        "ner_zh",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("in.jsonl:2: field `tokens`"),
        "{}",
        stderr(&o)
    );
    let o = mtgpt(&[
        "predict",
        "--model",
        &model,
        "--task",
        "nope",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("no task `nope`"), "{}", stderr(&o));
}
