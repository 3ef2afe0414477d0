//! Config loading: the shipped configs, error messages that name file, line and key,
//! overrides, presets and the resolved round trip.
use mtgpt_core::{Config, Error, ModelConfig, Precision};
use std::path::{Path, PathBuf};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

const MINI: &str = r#"name = "mini"
seed = 7

[model]
preset = "tiny"
n_layer = 2

[train]
steps = 10
sampling = { strategy = "uniform" }

[[task]]
name = "a"
kind = "lm"
train = "a.txt"

[[task]]
name = "b"
kind = "classify"
train = "b.jsonl"
labels = ["x", "y"]
"#;

fn load(text: &str) -> Result<Config, Error> {
    Config::from_toml_str(text, Path::new("cfg.toml"), &[])
}

#[test]
fn shipped_configs_validate() {
    // Paths in the shipped configs (`model.init` is read at load time) are relative to the
    // repository root, where the README runs them.
    std::env::set_current_dir(repo_file(".")).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_file("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = Config::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.tasks.is_empty());
            checked += 1;
        }
    }
    assert!(checked >= 2, "configs/demo.toml and base.toml at least");
}

#[test]
fn presets_fill_what_the_file_leaves_out() {
    let c = load(MINI).unwrap();
    assert_eq!(c.model.n_layer, 2);
    assert_eq!(c.model.n_head, 4);
    assert_eq!(c.model.d_model, 256);
    assert_eq!(c.model.d_ff, 1024);
    assert_eq!(c.seed, 7);
    assert_eq!(c.train.batch_size, 16, "default");
    let base = ModelConfig::base();
    assert_eq!(
        (base.n_layer, base.n_head, base.d_model, base.block_size),
        (12, 12, 768, 1024)
    );
    // GPT-2 124M with tied embeddings has 124,439,808 parameters.
    assert_eq!(base.num_parameters(), 124_439_808);
}

#[test]
fn widening_the_model_widens_the_mlp_unless_d_ff_is_given() {
    let c = load(&MINI.replace("n_layer = 2", "d_model = 64\nn_head = 2")).unwrap();
    assert_eq!(c.model.d_ff, 256);
    let c = load(&MINI.replace("n_layer = 2", "d_model = 64\nn_head = 2\nd_ff = 100")).unwrap();
    assert_eq!(c.model.d_ff, 100);
}

#[test]
fn resolved_config_round_trips_through_toml() {
    let c = load(MINI).unwrap();
    let text = c.to_toml_string();
    let again = Config::from_toml_str(&text, Path::new("resolved.toml"), &[]).unwrap();
    assert_eq!(again.to_file(), c.to_file());
    assert!(text.contains("n_layer = 2"), "{text}");
}

fn message(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let m = message(&MINI.replace("n_layer = 2", "n_layer = 2\nn_layers = 3"));
    assert!(m.starts_with("cfg.toml:7:"), "{m}");
    assert!(m.contains("model.n_layers"), "{m}");
    assert!(m.contains("unknown field"), "{m}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let m = message(&MINI.replace("steps = 10", "steps = \"ten\""));
    assert!(m.starts_with("cfg.toml:9:"), "{m}");
    assert!(m.contains("train.steps"), "{m}");
    let m = message(&MINI.replace("kind = \"classify\"", "kind = \"regression\""));
    assert!(m.contains("task[1].kind"), "{m}");
    assert!(m.contains("regression"), "{m}");
}

#[test]
fn bad_values_name_file_line_key_and_value() {
    let cases = [
        (
            "steps = 10",
            "steps = 10\nlr = nan",
            "cfg.toml:10: key `train.lr` = NaN",
        ),
        (
            "steps = 10",
            "steps = 10\nlr = -0.1",
            "key `train.lr` = -0.1",
        ),
        (
            "n_layer = 2",
            "n_layer = 2\nn_head = 3",
            "cfg.toml:7: key `model.n_head` = 3: must divide",
        ),
        (
            "n_layer = 2",
            "n_layer = 2\ndropout = 1.5",
            "key `model.dropout` = 1.5",
        ),
        (
            "n_layer = 2",
            "n_layer = 0",
            "cfg.toml:6: key `model.n_layer` = 0",
        ),
        (
            "name = \"b\"",
            "name = \"a\"",
            "key `task[1].name` = \"a\": another task",
        ),
        (
            "labels = [\"x\", \"y\"]",
            "labels = [\"x\", \"x\"]",
            "task[1].labels",
        ),
        (
            "strategy = \"uniform\"",
            "strategy = \"uniform\", temperature = -1.0",
            "cfg.toml:10: key `train.sampling.temperature` = -1",
        ),
        (
            "train = \"a.txt\"",
            "train = \"a.txt\"\nlabels = [\"q\"]",
            "only classify and tagging",
        ),
        (
            "train = \"a.txt\"",
            "train = \"a.txt\"\nstem = \"klingon\"",
            "key `task[0].stem`",
        ),
        (
            "kind = \"classify\"",
            "kind = \"tagging\"\nstem = \"english\"",
            "stemming would break the tagging spans",
        ),
        (
            "train = \"a.txt\"",
            "train = \"a.txt\"\ntag_context = 2",
            "key `task[0].tag_context` = 2: only tagging tasks take it",
        ),
        (
            "train = \"a.txt\"",
            "train = \"a.txt\"\ncrf = true",
            "key `task[0].crf` = true: only tagging tasks take it",
        ),
        (
            "kind = \"classify\"",
            "kind = \"tagging\"\ntag_context = 17",
            "key `task[1].tag_context` = 17: must be in 0..=16",
        ),
        (
            "train = \"a.txt\"",
            "train = \"a.txt\"\nsample_weight = 0.0",
            "key `task[0].sample_weight` = 0: must be a number in (0, 1000]",
        ),
        (
            "kind = \"classify\"\ntrain = \"b.jsonl\"\nlabels = [\"x\", \"y\"]",
            "kind = \"generate\"\ntrain = \"b.jsonl\"\ndecode = { num_beams = 0 }",
            "cfg.toml:21: key `task[1].decode.num_beams` = 0: must be at least 1",
        ),
    ];
    for (from, to, want) in cases {
        let text = MINI.replacen(from, to, 1);
        let m = message(&text);
        assert!(m.contains(want), "{to:?}: got {m:?}, want {want:?}");
    }
}

#[test]
fn malformed_toml_names_the_line() {
    let m = message(&MINI.replace("seed = 7", "seed = = 7"));
    assert!(m.starts_with("cfg.toml:2:"), "{m}");
}

#[test]
fn missing_tasks_is_an_error() {
    let m = message("name = \"x\"\n");
    assert!(m.contains("key `task`"), "{m}");
}

#[test]
fn overrides_apply_and_are_validated() {
    let sets = |s: &[&str]| -> Vec<String> { s.iter().map(|x| x.to_string()).collect() };
    let p = Path::new("cfg.toml");
    let c = Config::from_toml_str(
        MINI,
        p,
        &sets(&[
            "train.steps=50",
            "model.precision=bf16",
            "task.b.weight=2.5",
            "train.sampling.cap=9",
        ]),
    )
    .unwrap();
    assert_eq!(c.train.steps, 50);
    assert_eq!(c.model.precision, Precision::Bf16);
    assert_eq!(c.task("b").unwrap().weight, 2.5);
    assert_eq!(c.train.sampling.cap, 9);

    let m = Config::from_toml_str(MINI, p, &sets(&["train.lr=-1"]))
        .unwrap_err()
        .to_string();
    assert!(m.starts_with("--set: key `train.lr` = -1"), "{m}");
    let m = Config::from_toml_str(MINI, p, &sets(&["train.stepz=5"]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("stepz"), "{m}");
    let m = Config::from_toml_str(MINI, p, &sets(&["task.zzz.weight=1"]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("no task is named `zzz`"), "{m}");
    let m = Config::from_toml_str(MINI, p, &sets(&["train.steps"]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("KEY=VALUE"), "{m}");
}

#[test]
fn missing_file_names_the_path() {
    let m = Config::load("no/such/config.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(m.contains("no/such/config.toml"), "{m}");
}

#[test]
fn model_init_takes_shape_and_tokenizer_from_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let folder = run.join("best");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("config.json"),
        r#"{"model_type": "gpt2", "n_embd": 64, "n_layer": 3, "n_head": 4, "n_positions": 32,
            "vocab_size": 100, "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.2}"#,
    )
    .unwrap();
    std::fs::write(folder.join("model.safetensors"), b"").unwrap();
    std::fs::write(folder.join("tokenizer.json"), b"{}").unwrap();
    let text = |model: &str| {
        format!(
            "name = \"x\"\n[model]\ninit = \"{}\"\n{model}\n[[task]]\nname = \"a\"\nkind = \"lm\"\ntrain = \"a.txt\"\n",
            run.display()
        )
    };
    // A run folder stands for its best/ model; the shape and tokenizer are the folder's.
    let c = load(&text("")).unwrap();
    assert_eq!(c.init.as_deref(), Some(folder.as_path()));
    assert_eq!(
        (c.model.n_layer, c.model.d_model, c.model.block_size),
        (3, 64, 32)
    );
    assert_eq!(c.model.d_ff, 256);
    assert_eq!(c.model.dropout, 0.2);
    assert_eq!(
        c.tokenizer.existing(),
        Some(folder.join("tokenizer.json").as_path())
    );
    // Keys that agree are fine; dropout may differ; a different shape names both values.
    let c = load(&text("n_layer = 3\ndropout = 0.0")).unwrap();
    assert_eq!(c.model.dropout, 0.0);
    let e = load(&text("d_model = 128")).unwrap_err().to_string();
    assert!(
        e.contains("model.d_model") && e.contains("128") && e.contains("d_model = 64"),
        "{e}"
    );
    // The resolved config round-trips, and without init it is the same shape from scratch.
    let again = load(&c.to_toml_string()).unwrap();
    assert_eq!(again.model, c.model);
    let scratch = c.without_init();
    assert!(scratch.init.is_none() && scratch.tokenizer.existing().is_none());
    assert_eq!(scratch.model.n_layer, 3);
    // `init = ""` means none; a missing folder or one without weights is an error.
    let none = load(&text("").replace(&run.display().to_string(), "")).unwrap();
    assert!(none.init.is_none());
    std::fs::remove_file(folder.join("model.safetensors")).unwrap();
    std::fs::write(folder.join("pytorch_model.bin"), b"").unwrap();
    let e = load(&text("")).unwrap_err().to_string();
    assert!(
        e.contains("pytorch_model.bin") && e.contains("safe_serialization"),
        "{e}"
    );
}
