//! `mtgpt predict` and `mtgpt eval` on a freshly initialised multi-task model over the demo's
//! seven real tasks.
use mtgpt_e2e::{mtgpt, stderr};
use std::path::Path;

use mtgpt_e2e::mtgpt_ok as ok;

fn demo_model(dir: &Path) -> String {
    let prep = dir.join("prep");
    ok(&[
        "prep",
        "--config",
        "configs/demo.toml",
        "--set",
        "model.init=",
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
        "--set",
        "model.init=",
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
        "--set",
        "model.init=",
        // Greedy couplets: the demo's 8-beam search is slow in a debug build, and the
        // evaluator's beam path has its own test (mtgpt-tasks, heads.rs).
        "--set",
        "task.poem_zh.decode.num_beams=1",
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
            "ner_pd",
            "poem_zh"
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
        "--set",
        "model.init=",
        "--set",
        "task.poem_zh.decode.num_beams=1",
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

    // Generation flags of predict: the loop guards and the budget, checked at the door.
    std::fs::write(&input, "{\"source\":\"滿目江山四望幽\"}\n").unwrap();
    let poem = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--model",
            &model,
            "--task",
            "poem_zh",
            "--input",
            input.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mtgpt(&args)
    };
    let o = poem(&["--no-repeat-ngram-size", "1", "--max-new-tokens", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert!(row["prediction"].is_string(), "{row}");
    let o = poem(&["--repetition-penalty", "0.5"]);
    assert!(
        !o.status.success() && stderr(&o).contains("must be at least 1"),
        "{}",
        stderr(&o)
    );
}

/// What a new user runs into: a task file saved with a byte-order mark, a classify task whose
/// data holds one label, a run folder given as `--model`, and `--input -`.
#[test]
fn bom_files_single_labels_run_folders_and_stdin_work_as_a_user_expects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut spam = String::from("\u{feff}");
    let mut topic = String::from("\u{feff}");
    for i in 0..40 {
        let label = if i % 2 == 0 { "spam" } else { "ham" };
        spam += &format!("{{\"text\": \"message number {i} here\", \"label\": \"{label}\"}}\n");
        topic += &format!("{{\"text\": \"ticket {i} about billing\", \"label\": \"billing\"}}\n");
    }
    std::fs::write(d.join("spam.jsonl"), spam).unwrap();
    std::fs::write(d.join("topic.jsonl"), topic).unwrap();
    std::fs::write(
        d.join("lm.txt"),
        "\u{feff}the first line of text\nand a second one\n".repeat(20),
    )
    .unwrap();
    let config = d.join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "user"
[model]
n_layer = 1
n_head = 2
d_model = 16
block_size = 32
[tokenizer]
vocab_size = 300
[train]
steps = 4
batch_size = 4
warmup_steps = 1
eval_every = 2
[[task]]
name = "lm"
kind = "lm"
train = "{0}/lm.txt"
[[task]]
name = "spam"
kind = "classify"
train = "{0}/spam.jsonl"
[[task]]
name = "topic"
kind = "classify"
train = "{0}/topic.jsonl"
"#,
            d.display()
        ),
    )
    .unwrap();
    let run = d.join("run");
    let o = mtgpt(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // The byte-order marks were read as nothing: labels are clean, no line was lost.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("prep/prep.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["tasks"]["spam"]["labels"],
        serde_json::json!(["ham", "spam"])
    );
    let spam = &manifest["tasks"]["spam"]["splits"];
    let n: u64 = ["train", "valid", "test"]
        .iter()
        .map(|s| spam[s]["examples"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(n, 40, "{spam}");
    assert!(
        err.contains("task `topic`: every training example has the label \"billing\""),
        "{err}"
    );
    assert!(!err.contains("task `spam`: every"), "{err}");

    // A run folder as --model: its best/ model, and the user is told.
    let o = mtgpt(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is a run folder; using") && stderr(&o).contains("best"),
        "{}",
        stderr(&o)
    );
    let o = mtgpt(&[
        "eval",
        "--model",
        d.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a model folder"), "{}", stderr(&o));

    // `--input -` reads standard input, with a byte-order mark too; errors name <stdin>.
    let run_dir = run.to_str().unwrap();
    let predict = |input: &str| {
        mtgpt_e2e::mtgpt_stdin(
            &[
                "predict", "--model", run_dir, "--task", "spam", "--input", "-",
            ],
            input,
        )
    };
    let o = predict("\u{feff}{\"text\": \"message number 3 here\"}\n{\"text\": \"hello\"}\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let label = v["prediction"]["label"].as_str().unwrap();
        assert!(label == "ham" || label == "spam", "{v}");
    }
    let o = predict("{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("<stdin>:2: field `text`: missing"),
        "{}",
        stderr(&o)
    );
}
