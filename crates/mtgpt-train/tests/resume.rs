//! The training loop on a tiny model: it learns, writes its artefacts, and resuming from a
//! checkpoint continues bit for bit.
use mtgpt_core::Config;
use mtgpt_train::trainer::{TrainOptions, latest_checkpoint, train};
use std::path::Path;

fn config(dir: &Path, steps: usize) -> Config {
    let d = dir.display();
    let lm: String = (0..80)
        .map(|i| format!("the cat sat on the mat number {i}\n"))
        .collect();
    std::fs::write(dir.join("lm.txt"), lm).unwrap();
    let cls: String = (0..60)
        .map(|i| {
            let (t, l) = if i % 2 == 0 {
                ("good fun great", "pos")
            } else {
                ("bad sad awful", "neg")
            };
            format!("{{\"text\":\"{t} {i}\",\"label\":\"{l}\"}}\n")
        })
        .collect();
    std::fs::write(dir.join("cls.jsonl"), cls).unwrap();
    let toml = format!(
        r#"name = "resume"
seed = 3
[model]
n_layer = 1
n_head = 2
d_model = 16
block_size = 32
dropout = 0.1
[tokenizer]
vocab_size = 300
min_frequency = 1
[train]
steps = {steps}
pretrain_steps = 4
batch_size = 4
lr = 5e-3
warmup_steps = 2
eval_every = 10
checkpoint_every = 32
keep_checkpoints = 2
weighting = {{ strategy = "uncertainty" }}
[[task]]
name = "lm"
kind = "lm"
train = "{d}/lm.txt"
[[task]]
name = "cls"
kind = "classify"
train = "{d}/cls.jsonl"
"#
    );
    Config::from_toml_str(&toml, Path::new("resume.toml"), &[]).unwrap()
}

#[test]
fn training_learns_and_resume_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 60);
    let a = dir.path().join("a");
    let summary = train(&cfg, &TrainOptions::new(&a)).unwrap();
    assert_eq!(summary.steps, 64);
    for f in [
        "model/model.safetensors",
        "model/heads.safetensors",
        "model/tasks.json",
        "model/tokenizer.json",
        "best/config.json",
        "metrics.jsonl",
        "prep/prep.json",
    ] {
        assert!(a.join(f).exists(), "{f}");
    }
    let cls = summary
        .final_scores
        .iter()
        .find(|s| s.task == "cls")
        .unwrap();
    assert!(cls.metrics["accuracy"] >= 0.9, "{:?}", cls.metrics);
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().any(|l| l.contains("\"eval\"")));

    // Resume from the step-32 checkpoint into a fresh folder: the end state must be identical.
    let b = dir.path().join("b");
    std::fs::create_dir_all(b.join("checkpoints")).unwrap();
    let src = a.join("checkpoints/step-00000032");
    assert!(
        src.exists(),
        "checkpoints kept: {:?}",
        std::fs::read_dir(a.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    let dst = b.join("checkpoints/step-00000032");
    std::fs::create_dir_all(&dst).unwrap();
    for f in [
        "weights.safetensors",
        "optimizer.safetensors",
        "trainer.json",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut opts = TrainOptions::new(&b);
    opts.resume = true;
    let resumed = train(&cfg, &opts).unwrap();
    assert_eq!(resumed.steps, 64);
    let end_a = std::fs::read(
        latest_checkpoint(&a.join("checkpoints"))
            .unwrap()
            .join("weights.safetensors"),
    )
    .unwrap();
    let end_b = std::fs::read(
        latest_checkpoint(&b.join("checkpoints"))
            .unwrap()
            .join("weights.safetensors"),
    )
    .unwrap();
    assert!(end_a == end_b, "resumed weights differ");

    // --resume without a checkpoint is a clear error.
    let mut none = TrainOptions::new(dir.path().join("c"));
    none.resume = true;
    let e = train(&cfg, &none).unwrap_err().to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}
