//! The training loop on a tiny model: it learns, writes its artefacts (report, curves),
//! resuming from a checkpoint continues bit for bit (also with mixed batches, PCGrad and
//! generated examples), the divergence guard recovers from an injected NaN, and early
//! stopping stops.
use mtgpt_core::Config;
use mtgpt_train::trainer::{TrainOptions, latest_checkpoint, train};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Training seeds libtorch's global generator: tests in this file run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(dir: &Path, steps: usize) -> Config {
    config_with(dir, steps, "", "")
}

/// The tiny two-task config; `train_extra` goes into `[train]`, `cls_extra` into the
/// classification task.
fn config_with(dir: &Path, steps: usize, train_extra: &str, cls_extra: &str) -> Config {
    config_set(dir, steps, train_extra, cls_extra, &[])
}

/// [`config_with`] with `--set` overrides.
fn config_set(
    dir: &Path,
    steps: usize,
    train_extra: &str,
    cls_extra: &str,
    overrides: &[String],
) -> Config {
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
{train_extra}
[[task]]
name = "lm"
kind = "lm"
train = "{d}/lm.txt"
[[task]]
name = "cls"
kind = "classify"
train = "{d}/cls.jsonl"
{cls_extra}
"#
    );
    Config::from_toml_str(&toml, Path::new("resume.toml"), overrides).unwrap()
}

#[test]
fn training_learns_and_resume_is_bit_exact() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        60,
        r#"weighting = { strategy = "uncertainty" }"#,
        "",
    );
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
        "report.md",
        "curves/cls-accuracy.png",
        "curves/cls-loss.png",
        "curves/lm-loss.png",
    ] {
        assert!(a.join(f).exists(), "{f}");
    }
    assert_cls_learned(&summary);
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().any(|l| l.contains("\"eval\"")));
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(report.contains("| cls | classify |"), "{report}");
    assert!(report.contains("![curves/cls-accuracy.png]"), "{report}");
    let png = std::fs::read(a.join("curves/cls-loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_resume_is_exact(&cfg, &a, &dir.path().join("b"));

    // --resume without a checkpoint is a clear error.
    let mut none = TrainOptions::new(dir.path().join("c"));
    none.resume = true;
    let e = train(&cfg, &none).unwrap_err().to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}

/// The classification task's final accuracy is at least 0.9.
fn assert_cls_learned(summary: &mtgpt_train::trainer::TrainSummary) {
    let cls = summary
        .final_scores
        .iter()
        .find(|s| s.task == "cls")
        .unwrap();
    assert!(cls.metrics["accuracy"] >= 0.9, "{:?}", cls.metrics);
}

/// Copies `a`'s step-32 checkpoint (and generated examples) into a fresh folder `b`, resumes
/// there, and compares the final weights with `a`'s byte for byte.
fn assert_resume_is_exact(cfg: &Config, a: &Path, b: &Path) {
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
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    if a.join("augment").exists() {
        std::fs::create_dir_all(b.join("augment")).unwrap();
        for e in std::fs::read_dir(a.join("augment")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), b.join("augment").join(e.file_name())).unwrap();
        }
    }
    let mut opts = TrainOptions::new(b);
    opts.resume = true;
    let resumed = train(cfg, &opts).unwrap();
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
    let model = |d: &Path| std::fs::read(d.join("model/model.safetensors")).unwrap();
    assert!(model(a) == model(b), "resumed model/ differs");
}

#[test]
fn the_weight_average_goes_into_the_saved_models_not_into_training_and_resumes_exactly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let plain = config(dir.path(), 60);
    let avg = config_with(dir.path(), 60, "ema_decay = 0.9", "");
    let (p, a) = (dir.path().join("plain"), dir.path().join("a"));
    train(&plain, &TrainOptions::new(&p)).unwrap();
    let summary = train(&avg, &TrainOptions::new(&a)).unwrap();
    assert_cls_learned(&summary);
    let last = |d: &Path, f: &str| {
        std::fs::read(latest_checkpoint(&d.join("checkpoints")).unwrap().join(f)).unwrap()
    };
    // The optimizer trains the raw weights: the same with and without the average.
    assert!(last(&p, "weights.safetensors") == last(&a, "weights.safetensors"));
    assert!(!last(&a, "ema.safetensors").is_empty());
    // model/ holds the average, which is not the last step's weights.
    let model = |d: &Path| std::fs::read(d.join("model/model.safetensors")).unwrap();
    assert!(
        model(&p) != model(&a),
        "model/ should hold the averaged weights"
    );
    assert_resume_is_exact(&avg, &a, &dir.path().join("b"));
    // A checkpoint without the average cannot resume a run that keeps one.
    let c = dir.path().join("c");
    std::fs::create_dir_all(c.join("checkpoints")).unwrap();
    let src = p.join("checkpoints/step-00000032");
    let dst = c.join("checkpoints/step-00000032");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut opts = TrainOptions::new(&c);
    opts.resume = true;
    let e = train(&avg, &opts).unwrap_err().to_string();
    assert!(
        e.contains("ema.safetensors") && e.contains("ema_decay"),
        "{e}"
    );
}

#[test]
fn mixed_batches_pcgrad_and_generated_examples_resume_exactly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        60,
        r#"sampling = { mixed_batches = true }
weighting = { strategy = "pcgrad" }"#,
        "generate_augment = { n = 12, min_confidence = 0.0, at_fraction = 0.3, finetune_steps = 4, max_new_tokens = 8 }",
    );
    let a = dir.path().join("a");
    let summary = train(&cfg, &TrainOptions::new(&a)).unwrap();
    assert_eq!(summary.steps, 64);
    assert_eq!(summary.augmented.len(), 1);
    assert_eq!(summary.augmented[0].generated, 12);
    let kept = std::fs::read_to_string(a.join("augment/cls.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), summary.augmented[0].kept);
    // Mixed batches: log lines name several tasks in one step.
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"task\":\"lm+cls\""), "{metrics}");
    assert!(metrics.contains("\"augment\""));
    assert_resume_is_exact(&cfg, &a, &dir.path().join("b"));
}

#[test]
fn the_guard_restores_after_an_injected_nan_and_training_goes_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 60);
    // Snapshots every 5 steps: the restore at step 30 goes back to step 30's state.
    cfg.train.guard_snapshot_every = 5;
    let mut opts = TrainOptions::new(dir.path().join("g"));
    opts.inject_nan_at = vec![30, 31];
    let s = train(&cfg, &opts).unwrap();
    assert_eq!(s.steps, 64);
    assert_eq!(s.guard_events, 2);
    assert_eq!(s.lr_scale, 0.25);
    let metrics = std::fs::read_to_string(dir.path().join("g/metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("guard_event").count(), 2);
    // Nothing non-finite reached the weights and the classifier still learned.
    let cls = s.final_scores.iter().find(|x| x.task == "cls").unwrap();
    assert!(cls.metrics["accuracy"] >= 0.9, "{:?}", cls.metrics);
    let lm = s.final_scores.iter().find(|x| x.task == "lm").unwrap();
    assert!(lm.metrics["perplexity"].is_finite());

    // More events than allowed is an error that says what to do.
    let strict = config_with(dir.path(), 60, "guard_max_events = 1", "");
    let mut opts = TrainOptions::new(dir.path().join("h"));
    opts.inject_nan_at = vec![10, 11];
    let e = train(&strict, &opts).unwrap_err().to_string();
    assert!(
        e.contains("diverged 2 times") && e.contains("train.lr"),
        "{e}"
    );
}

#[test]
fn early_stopping_stops_when_validation_stops_improving() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A learning rate of almost nothing: the score cannot improve after the first evaluation.
    let mut cfg = config(dir.path(), 60);
    cfg.train.patience = 2;
    cfg.train.lr = 1e-12;
    let s = train(&cfg, &TrainOptions::new(dir.path().join("e"))).unwrap();
    assert!(s.stopped_early);
    // Evaluations every 10 steps: the first sets the best, two more without improvement stop.
    assert_eq!(s.steps, 30);
}

#[test]
fn lr_find_suggests_a_rate_inside_its_range_and_plots_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 60);
    let out = dir.path().join("lr");
    let r = mtgpt_train::lr_find::lr_find(
        &cfg,
        &TrainOptions::new(&out),
        &mtgpt_train::lr_find::LrFindOptions {
            min_lr: 1e-6,
            max_lr: 10.0,
            steps: 40,
            stop_factor: 4.0,
        },
    )
    .unwrap();
    assert!(r.points.len() >= 5);
    assert!(
        r.suggested >= 1e-6 && r.suggested <= 10.0,
        "{}",
        r.suggested
    );
    // The loss at the suggestion is below where the ramp started.
    let at = r.points.iter().find(|p| p.lr >= r.suggested).unwrap();
    assert!(at.smoothed <= r.points[0].smoothed, "{:?}", r.points);
    let csv = std::fs::read_to_string(&r.csv).unwrap();
    assert_eq!(csv.lines().count(), r.points.len() + 1);
    assert_eq!(&std::fs::read(&r.plot).unwrap()[1..4], b"PNG");
}

#[test]
fn transfer_trains_each_task_alone_and_jointly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 30);
    let out = dir.path().join("t");
    let r = mtgpt_train::transfer::transfer(&cfg, &TrainOptions::new(&out)).unwrap();
    assert_eq!(r.rows.len(), 2);
    for row in &r.rows {
        assert!(row.joint.is_some() && row.single.is_some(), "{row:?}");
    }
    assert_eq!(r.rows[0].metric, "perplexity");
    assert!(!r.rows[0].higher_is_better);
    let md = std::fs::read_to_string(out.join("transfer.md")).unwrap();
    assert!(md.contains("| cls | classify | accuracy |"), "{md}");
    for sub in [
        "joint/model",
        "single-lm/model",
        "single-cls/model",
        "prep/prep.json",
    ] {
        assert!(out.join(sub).exists(), "{sub}");
    }
    // The single-task run sampled only its task in the joint phase.
    let log = std::fs::read_to_string(out.join("single-cls/metrics.jsonl")).unwrap();
    let joint_tasks: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["phase"] == "joint")
        .map(|v| v["task"].as_str().unwrap().to_string())
        .collect();
    assert!(!joint_tasks.is_empty());
    assert!(joint_tasks.iter().all(|t| t == "cls"), "{joint_tasks:?}");
}

/// Per-step task losses of a run's `metrics.jsonl`.
fn step_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("losses").cloned())
        .flat_map(|l| {
            l.as_object()
                .unwrap()
                .values()
                .filter_map(|x| x.as_f64())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn frozen_trunk_with_per_task_adapters_learns_in_one_pass_and_resumes_exactly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"trunk = "frozen"
sampling = { mixed_batches = true, one_pass = true }
weighting = { strategy = "static" }
[adapters]
mode = "both"
rank = 4
alpha = 8"#;
    let cfg = config_with(dir.path(), 60, extra, "");
    let a = dir.path().join("a");
    let summary = train(&cfg, &TrainOptions::new(&a)).unwrap();
    assert_cls_learned(&summary);
    // The trunk did not move; the adapters did.
    let read = |p: &Path| -> std::collections::HashMap<String, tch::Tensor> {
        tch::Tensor::read_safetensors(p)
            .unwrap()
            .into_iter()
            .collect()
    };
    let first = read(&a.join("checkpoints/step-00000032/weights.safetensors"));
    let last = read(
        &latest_checkpoint(&a.join("checkpoints"))
            .unwrap()
            .join("weights.safetensors"),
    );
    let (mut trunk, mut moved) = (0, 0);
    for (name, t) in &first {
        let same = t.equal(&last[name]);
        if name.starts_with("transformer.") {
            assert!(same, "{name} moved although the trunk is frozen");
            trunk += 1;
        } else if name.starts_with("adapters.") && !same {
            moved += 1;
        }
    }
    assert!(
        trunk > 0 && moved > 0,
        "{trunk} trunk tensors, {moved} adapters moved"
    );
    assert!(
        a.join("model/adapters/cls/adapter_model.safetensors")
            .exists()
    );
    assert_resume_is_exact(&cfg, &a, &dir.path().join("b"));

    // One pass over the mixed batch trains as one pass per task (no dropout: same draws).
    let no_drop = ["model.dropout=0.0".to_string()];
    let one = config_set(dir.path(), 12, extra, "", &no_drop);
    let per_task = config_set(
        dir.path(),
        12,
        &extra.replace("one_pass = true", "one_pass = false"),
        "",
        &no_drop,
    );
    let (x, y) = (dir.path().join("x"), dir.path().join("y"));
    train(&one, &TrainOptions::new(&x)).unwrap();
    train(&per_task, &TrainOptions::new(&y)).unwrap();
    let (lx, ly) = (step_losses(&x), step_losses(&y));
    assert!(!lx.is_empty() && lx.len() == ly.len());
    for (p, q) in lx.iter().zip(&ly) {
        assert!((p - q).abs() < 1e-3 * q.abs().max(1.0), "{lx:?} vs {ly:?}");
    }
}

#[test]
fn packed_training_learns_matches_unpacked_losses_and_resumes_exactly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Packing with a token budget per step, mixed batches in one packed pass, in fp32.
    let extra = r#"packing = true
batch_tokens = 48
sampling = { mixed_batches = true }
weighting = { strategy = "static" }"#;
    let fp32 = ["model.precision=fp32".to_string()];
    let cfg = config_set(dir.path(), 60, extra, "", &fp32);
    let a = dir.path().join("a");
    let summary = train(&cfg, &TrainOptions::new(&a)).unwrap();
    assert_cls_learned(&summary);
    // (Rows of 32 tokens here: a 32-token LM window fills one alone.)
    assert!(
        summary.useful_fraction > 0.6,
        "useful fraction {}",
        summary.useful_fraction
    );
    // The budget, not batch_size = 4, sets a step's size: no step holds more than 48 real
    // tokens (every sequence here is shorter), and steps are filled.
    let per_step = summary.tokens as f64 / summary.steps as f64;
    assert!(
        per_step > 24.0 && per_step <= 48.0,
        "{per_step} tokens per step"
    );
    assert_resume_is_exact(&cfg, &a, &dir.path().join("b"));

    // Packed and unpacked steps over the same examples give the same losses (no dropout).
    let same = ["model.dropout=0.0".to_string(), fp32[0].clone()];
    let plain = "weighting = { strategy = \"static\" }";
    let packed = config_set(
        dir.path(),
        12,
        &format!("packing = true\n{plain}"),
        "",
        &same,
    );
    let padded = config_set(dir.path(), 12, plain, "", &same);
    let (x, y) = (dir.path().join("x"), dir.path().join("y"));
    let sx = train(&packed, &TrainOptions::new(&x)).unwrap();
    let sy = train(&padded, &TrainOptions::new(&y)).unwrap();
    assert!(sx.useful_fraction > sy.useful_fraction);
    let (lx, ly) = (step_losses(&x), step_losses(&y));
    assert!(!lx.is_empty() && lx.len() == ly.len());
    for (p, q) in lx.iter().zip(&ly) {
        assert!((p - q).abs() < 1e-4 * q.abs().max(1.0), "{lx:?} vs {ly:?}");
    }
}

/// Per task, the epochs trained so far in the last logged step of a run.
fn last_epochs(run: &Path) -> serde_json::Map<String, serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("epochs").and_then(|e| e.as_object().cloned()))
        .next_back()
        .expect("a logged step with epochs")
}

#[test]
fn sample_weight_draws_a_task_more_often() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Epochs of cls per epoch of lm.
    let ratio = |cls_extra: &str, out: &str| {
        let mut cfg = config_with(dir.path(), 200, "", cls_extra);
        cfg.train.eval_every = 0;
        let run = dir.path().join(out);
        train(&cfg, &TrainOptions::new(run.clone())).unwrap();
        let e = last_epochs(&run);
        e["cls"].as_f64().unwrap() / e["lm"].as_f64().unwrap()
    };
    let plain = ratio("", "plain");
    // At the default temperature 2, eight times the size is √8 ≈ 2.8 times the odds.
    let weighted = ratio("sample_weight = 8.0", "weighted");
    assert!(
        weighted > 2.0 * plain,
        "cls epochs per lm epoch: {plain:.3} plain, {weighted:.3} with sample_weight 8"
    );
}
