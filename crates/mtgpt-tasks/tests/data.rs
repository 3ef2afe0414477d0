//! The task-data and scoring service on a small prepared config: the `max_len` rule, training
//! splits with and without augmented copies, streams, reuse of a run's preprocessing folder
//! against a self-cleaning work folder, scoring, and model-folder resolution.
use mtgpt_core::{Config, ModelConfig, Precision, TaskKind};
use mtgpt_tasks::{
    HeadSpec, MultiTaskModel, ScoreLimits, TaskData, TaskHead, max_len, resolve_model_dir,
};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{PrepOptions, prepare};
use std::path::Path;

fn setup() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lm: String = (0..80)
        .map(|i| format!("line {i}: the cat sat on the mat\n"))
        .collect();
    std::fs::write(d.join("lm.txt"), lm).unwrap();
    let cls: String = (0..40)
        .map(|i| {
            format!(
                "{{\"text\":\"review {i} was really great fun to read\",\"label\":\"{}\"}}\n",
                if i % 2 == 0 { "pos" } else { "neg" }
            )
        })
        .collect();
    std::fs::write(d.join("cls.jsonl"), cls).unwrap();
    let toml = format!(
        r#"name = "t"
seed = 3
[model]
n_layer = 1
n_head = 2
d_model = 16
block_size = 32
dropout = 0.0
[tokenizer]
kind = "char"
vocab_size = 200
min_frequency = 1
[preprocess]
valid_fraction = 0.2
test_fraction = 0.2
[[task]]
name = "lm"
kind = "lm"
train = "{d}/lm.txt"
[[task]]
name = "cls"
kind = "classify"
train = "{d}/cls.jsonl"
max_len = 100
augment = {{ eda_alpha = 0.2, n_aug = 1 }}
"#,
        d = d.display()
    );
    let config = Config::from_toml_str(&toml, Path::new("t.toml"), &[]).unwrap();
    (dir, config)
}

fn model(config: &Config, tok: &TextTokenizer, heads: &[TaskHead]) -> MultiTaskModel {
    tch::manual_seed(5);
    let cfg = ModelConfig {
        vocab_size: tok.vocab_size(),
        precision: Precision::Fp32,
        ..config.model.clone()
    };
    let specs: Vec<HeadSpec> = heads.iter().map(TaskHead::spec).collect();
    MultiTaskModel::new(&cfg, &specs, tch::Device::Cpu).unwrap()
}

#[test]
fn max_len_is_the_tasks_own_capped_by_the_context() {
    let (_dir, config) = setup();
    assert_eq!(max_len(&config.tasks[0], 32), 32);
    // `max_len = 100` in a 32-token context: the context wins.
    assert_eq!(max_len(&config.tasks[1], 32), 32);
    assert_eq!(max_len(&config.tasks[1], 200), 100);
}

#[test]
fn one_service_reads_prepared_splits_streams_and_scores() {
    let (dir, config) = setup();
    let prep = dir.path().join("prep");
    let opts = PrepOptions::default();
    let manifest = prepare(&config, &prep, &opts).unwrap();
    let data = TaskData::from_manifest(&config, &prep, manifest).unwrap();
    assert!(data.reused());
    assert_eq!(data.heads[1].labels, ["neg", "pos"]);

    // The training split holds the originals followed by their augmented copies.
    let info = &data.manifest.tasks["cls"].splits["train"];
    assert!(info.augmented > 0, "{info:?}");
    let all = data.examples(1, "train", true).unwrap().unwrap();
    let originals = data.examples(1, "train", false).unwrap().unwrap();
    assert_eq!(all.len(), info.examples);
    assert_eq!(originals.len(), info.examples - info.augmented);
    assert_eq!(all[..originals.len()], originals[..]);
    assert!(data.examples(0, "nope", false).unwrap().is_none());

    let tok = TextTokenizer::load(&prep.join("tokenizer.json")).unwrap();
    let fmts = data.formatters(&tok, 32).unwrap();
    assert_eq!(fmts[1].max_len(), 32);
    let with = data.train_streams(&tok, &fmts, "data", true).unwrap();
    let without = data.train_streams(&tok, &fmts, "data", false).unwrap();
    assert_eq!(with[1].len(), all.len());
    assert_eq!(without[1].len(), originals.len());

    let m = model(&config, &tok, &data.heads);
    let limits = ScoreLimits {
        max_examples: Some(3),
        lm_tokens: 200,
        samples: 2,
    };
    let scored = data.score(&m, &tok, "test", &limits).unwrap();
    assert_eq!(scored.scores.len(), 2);
    assert_eq!(scored.scores[0].kind, TaskKind::Lm);
    assert_eq!(scored.scores[1].examples, 3);
    assert_eq!(scored.samples.len(), 2);
    assert!(scored.samples.iter().all(|s| s.task == "cls"));
    assert!(scored.missing.is_empty());

    // Only the tasks kept are scored.
    let mut only = TaskData::from_manifest(&config, &prep, data.manifest.clone()).unwrap();
    only.retain_tasks(|n| n == "cls");
    let s = only.score(&m, &tok, "valid", &limits).unwrap();
    assert_eq!(s.scores.len(), 1);
    assert_eq!(s.scores[0].task, "cls");
}

#[test]
fn a_models_task_data_reuses_a_matching_prep_folder_else_cleans_up_after_itself() {
    let (dir, config) = setup();
    let prep = dir.path().join("prep");
    let opts = PrepOptions::default();
    let manifest = prepare(&config, &prep, &opts).unwrap();
    let heads = TaskData::from_manifest(&config, &prep, manifest)
        .unwrap()
        .heads;
    let tok_path = prep.join("tokenizer.json");

    let reused = TaskData::for_model(&config, &heads, &tok_path, Some((&prep, &opts))).unwrap();
    assert!(reused.reused());
    assert_eq!(reused.dir, prep);

    // Another tokenizer file (same content is fine, other content is not).
    let other = dir.path().join("other.json");
    let mut text = std::fs::read_to_string(&tok_path).unwrap();
    text.push(' ');
    std::fs::write(&other, text).unwrap();
    let fresh = TaskData::for_model(&config, &heads, &other, Some((&prep, &opts))).unwrap();
    assert!(!fresh.reused());
    let work = fresh.dir.clone();
    assert!(work.join("prep.json").exists());
    // Augmentation is off in a fresh preparation: its training split equals the originals.
    let a = fresh.examples(1, "train", true).unwrap().unwrap();
    let b = reused.examples(1, "train", false).unwrap().unwrap();
    assert_eq!(a, b);
    drop(fresh);
    assert!(!work.exists(), "the work folder outlives its data");

    // A model serving only one of the tasks gets only that one.
    let one = TaskData::for_model(&config, &heads[1..], &tok_path, Some((&prep, &opts))).unwrap();
    assert!(one.reused());
    assert_eq!(one.config.tasks.len(), 1);
    assert_eq!(one.heads[0].name, "cls");
    let none = TaskData::for_model(&config, &[], &tok_path, None).unwrap_err();
    assert!(none.to_string().contains("serves none"), "{none}");
}

#[test]
fn a_run_folder_stands_for_its_best_model_else_its_last() {
    let (dir, config) = setup();
    let prep = dir.path().join("prep");
    let manifest = prepare(&config, &prep, &PrepOptions::default()).unwrap();
    let data = TaskData::from_manifest(&config, &prep, manifest).unwrap();
    let tok = TextTokenizer::load(&prep.join("tokenizer.json")).unwrap();
    let m = model(&config, &tok, &data.heads);
    let run = dir.path().join("run");
    m.save(&run.join("model"), &data.heads, None).unwrap();
    tok.save(&run.join("model/tokenizer.json")).unwrap();

    let r = resolve_model_dir(&run).unwrap();
    assert_eq!(r.dir, run.join("model"));
    assert!(r.picked.unwrap().contains("run folder"));
    m.save(&run.join("best"), &data.heads, None).unwrap();
    assert_eq!(resolve_model_dir(&run).unwrap().dir, run.join("best"));
    let direct = resolve_model_dir(&run.join("model")).unwrap();
    assert_eq!(direct.dir, run.join("model"));
    assert!(direct.picked.is_none());
    let err = resolve_model_dir(&dir.path().join("nothing")).unwrap_err();
    assert!(err.to_string().contains("not a model folder"), "{err}");

    let (_, heads, t) =
        MultiTaskModel::load_with_tokenizer(&run.join("model"), tch::Device::Cpu).unwrap();
    assert_eq!(heads, data.heads);
    assert_eq!(t.vocab_size(), tok.vocab_size());
    // No tokenizer in best/: said so, naming the folder.
    let err = MultiTaskModel::load_with_tokenizer(&run.join("best"), tch::Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no tokenizer.json"), "{err}");
}
