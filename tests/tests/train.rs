//! `mtgpt train` on the smoke config, then `mtgpt eval` on what it trained; `mtgpt run` on the
//! smoke config end to end, twice (the second run reuses every stage).
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
        "report.md",
        "curves/spam_en-accuracy.png",
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
    assert_eq!(tasks.len(), 6);
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
        !o.status.success() && stderr(&o).contains("mixed_batches = true"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_does_the_whole_pipeline_and_reuses_finished_stages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = [
        "run",
        "--config",
        "configs/smoke.toml",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = mtgpt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "prep/prep.json",
        "model/model.safetensors",
        "best/tasks.json",
        "train_summary.json",
        "test_scores.json",
        "stages.json",
        "report.md",
        "curves/lm_en-loss.png",
        "curves/qa_ner_zh-f1.png",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for kind in ["lm", "classify", "tagging", "generate", "extractive_qa"] {
        assert!(
            report.contains(&format!(" | {kind} | ")),
            "{kind}: {report}"
        );
    }
    assert!(report.contains("## Sample predictions"), "{report}");
    assert!(report.contains("## Stages"), "{report}");
    // The classic baselines of every kind that has them, beside the model and in their table.
    assert!(
        report.contains("## Classic baselines (test split)"),
        "{report}"
    );
    for (task, method) in [
        ("lm_en", "trigram"),
        ("sentiment_zh", "tfidf+logreg"),
        ("spam_en", "tfidf+logreg"),
        ("ner_zh", "most-frequent-tag"),
        ("ner_zh", "crf"),
        ("qa_gen", "nearest-source"),
    ] {
        assert!(
            report.contains(&format!("| {task} | {method} | ")),
            "{task} {method}: {report}"
        );
    }
    let classic: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("classic_baselines.json")).unwrap())
            .unwrap();
    for b in classic.as_array().unwrap() {
        let s = &b["scores"];
        let v = s["metrics"][s["primary"].as_str().unwrap()]
            .as_f64()
            .unwrap();
        assert!(v.is_finite() && v >= 0.0, "{b}");
    }
    // A row of the scores table names the best baseline and whether the model beats it.
    let row = report
        .lines()
        .find(|l| l.starts_with("| ner_zh | tagging |"))
        .unwrap();
    assert!(
        (row.contains("(crf)") || row.contains("(most-frequent-tag)"))
            && (row.contains('✓') || row.contains('✗')),
        "{row}"
    );
    // Preprocessing happens once, in its own stage; every later stage reads prep/.
    let timings = |out: &std::path::Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(out.join("stage_timings.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let stage = |t: &[serde_json::Value], name: &str| -> serde_json::Value {
        t.iter()
            .find(|s| s["stage"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("no stage {name}: {t:?}"))
            .clone()
    };
    let first = timings(&out);
    let prep = stage(&first, "preprocessing");
    assert_eq!(prep["reused"], false, "{prep}");
    assert!(
        prep["note"].as_str().unwrap().starts_with("preprocessed"),
        "{prep}"
    );
    assert!(prep["seconds"].as_f64().unwrap() > 0.0, "{prep}");
    assert_eq!(
        stage(&first, "test-split")["note"],
        "read prep/ (no preprocessing)"
    );
    // Above chance: a uniform guess over the 1000-token vocabulary has perplexity 1000.
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("test_scores.json")).unwrap())
            .unwrap();
    let lm = scores["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "lm_en")
        .unwrap();
    let ppl = lm["metrics"]["perplexity"].as_f64().unwrap();
    assert!(ppl < 500.0, "{lm}");

    // Unchanged inputs: nothing is trained or scored again.
    let before = std::fs::metadata(out.join("model/model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let o = mtgpt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("inputs unchanged; reusing"), "{err}");
    assert!(
        err.contains("reusing") && err.contains("test_scores.json"),
        "{err}"
    );
    let after = std::fs::metadata(out.join("model/model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
    let second = timings(&out);
    for name in ["preprocessing", "LM pretraining", "test-split", "classic"] {
        assert_eq!(stage(&second, name)["reused"], true, "{name}: {second:?}");
    }

    // A changed config retrains; with two compression methods, the uncompressed model is
    // scored once and both compressed models land in the report.
    let o = mtgpt(&[
        "run",
        "--config",
        "configs/smoke.toml",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.steps=5",
        "--set",
        r#"compress.methods=["int8", "prune"]"#,
        "--set",
        "compress.finetune_steps=2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("inputs unchanged; reusing"), "{err}");
    assert!(
        err.contains("prune: reusing the uncompressed model's test scores"),
        "{err}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 15);
    let read = |m: &str| -> serde_json::Value {
        let path = out.join("compressed").join(m).join("compress.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (int8, prune) = (read("int8"), read("prune"));
    assert_eq!(int8["before"]["scores"], prune["before"]["scores"]);
    // Only training settings changed: preprocessing is reused, compression reads prep/.
    assert_eq!(stage(&timings(&out), "preprocessing")["reused"], true);
    assert_eq!(int8["prep_reused"], true, "{int8}");
    assert_eq!(prune["prep_reused"], true, "{prune}");
    assert!(int8["after"]["file_bytes"].as_u64() < int8["before"]["file_bytes"].as_u64());
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("int8") && report.contains("prune"),
        "{report}"
    );
}

/// A new dataset needs only a config: two task files written here (a classifier whose labels
/// come from the data, a tagger) and a config naming them; `mtgpt run` does the rest.
#[test]
fn bring_your_own_data_needs_only_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut tickets = String::new();
    let mut tags = String::new();
    for i in 0..120 {
        let (text, label) = match i % 3 {
            0 => ("my invoice was charged twice", "billing"),
            1 => ("the app crashes when I log in", "bug"),
            _ => ("please add a dark mode", "feature"),
        };
        tickets += &format!("{{\"text\": \"{text} #{i}\", \"label\": \"{label}\"}}\n");
        tags += "{\"tokens\": [\"Ada\", \"visited\", \"Paris\"], \"tags\": [\"B-PER\", \"O\", \"B-LOC\"]}\n";
    }
    std::fs::write(d.join("tickets.jsonl"), tickets).unwrap();
    std::fs::write(d.join("ner.jsonl"), tags).unwrap();
    let config = format!(
        r#"name = "support"
[model]
n_layer = 1
n_head = 2
d_model = 32
block_size = 32
[tokenizer]
vocab_size = 400
[train]
steps = 40
batch_size = 8
lr = 5e-3
warmup_steps = 4
eval_every = 20
[[task]]
name = "ticket_topic"
kind = "classify"
train = "{0}/tickets.jsonl"
[[task]]
name = "names"
kind = "tagging"
train = "{0}/ner.jsonl"
"#,
        d.display()
    );
    std::fs::write(d.join("support.toml"), config).unwrap();
    let out = d.join("out");
    let o = mtgpt(&[
        "run",
        "--config",
        d.join("support.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| ticket_topic | classify | accuracy |"),
        "{report}"
    );
    assert!(report.contains("| names | tagging | span_f1 |"), "{report}");
    // The topic is in the words: 40 steps learn it.
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("test_scores.json")).unwrap())
            .unwrap();
    let topic = scores["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "ticket_topic")
        .unwrap();
    assert!(
        topic["metrics"]["accuracy"].as_f64().unwrap() > 0.6,
        "{topic}"
    );
}

#[test]
fn the_pytorch_replay_of_dumped_batches_trains_to_mtgpt_s_losses() {
    // `--dump-batches` writes every step's batches; scripts/bench_joint_torch.py replays them
    // on the same model in PyTorch (transformers' GPT2Model): with fp32 and no dropout its
    // step losses are mtgpt's, every task kind included (the benchmark compares like with
    // like).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let dump = dir.path().join("batches.jsonl");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (out_s, dump_s) = (s(&out), s(&dump));
    let o = mtgpt(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--out",
        &out_s,
        "--log-every",
        "1",
        "--dump-batches",
        &dump_s,
        "--set",
        "train.steps=10",
        "--set",
        "train.pretrain_steps=2",
        "--set",
        "model.precision=fp32",
        "--set",
        "train.weighting.strategy=static",
        "--set",
        "train.eval_every=0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("useful_fraction="), "{}", stdout(&o));
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let ours: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["task"].as_str()?.to_string(), v["loss"].as_f64()?)))
        .collect();
    assert_eq!(ours.len(), 12);
    let result = dir.path().join("torch.json");
    let py = mtgpt_e2e::pyref_python();
    let o = std::process::Command::new(py)
        .arg(mtgpt_e2e::repo_root().join("scripts/bench_joint_torch.py"))
        .args([&dump_s, "--warmup", "0", "--out", &s(&result)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let theirs: Vec<f64> = v["step_losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(theirs.len(), ours.len());
    let kinds: std::collections::HashSet<&str> = ours.iter().map(|x| x.0.as_str()).collect();
    assert!(kinds.len() >= 3, "steps over several tasks: {kinds:?}");
    for ((task, a), b) in ours.iter().zip(&theirs) {
        assert!(
            (a - b).abs() < 2e-3 * a.abs().max(1.0),
            "{task}: mtgpt {a} vs PyTorch {b} ({ours:?} vs {theirs:?})"
        );
    }
}
