//! `[model] init` from GPT-2 folders written by Python `transformers`: a tiny random
//! `GPT2LMHeadModel` saved with `save_pretrained`, once with a byte-level BPE (GPT-2's kind,
//! only `<|endoftext|>`) and once with a BERT-style WordPiece tokenizer (the Chinese GPT-2
//! checkpoints' kind), made by `tests/hf/gpt2_ref.py` in the venv of `scripts/setup-pyref.sh`.
//!
//! Each trains jointly (LM + classification) through `init`; the untouched trunk's logits
//! equal transformers' on the same ids, the LM loss falls when the trunk trains, the fine-tuned
//! trunk exports back and transformers' `GPT2LMHeadModel` reads it with our logits, and greedy
//! generation on the imported folder equals transformers' token for token.
use mtgpt_e2e::{lm_losses, mtgpt, mtgpt_ok, mtgpt_stdin, pyref, stderr, write_interchange_data};
use std::path::{Path, PathBuf};

/// `gpt2_ref.py ARGS` in the reference venv; its stdout, trimmed.
fn reference(args: &[&str]) -> String {
    pyref("gpt2_ref.py", args)
}

use mtgpt_e2e::path_str as s;

const PROBE: &str = "To be, or not to be 北京欢迎你，今天天气很好";

/// Writes the task data and a config whose trunk starts from `fixture`.
fn config(dir: &Path, fixture: &Path, steps: usize, trunk_lr_factor: f64) -> PathBuf {
    if !dir.join("lm.txt").exists() {
        write_interchange_data(dir);
    }
    let path = dir.join(format!("c{steps}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "hf-init"
seed = 5
[model]
init = "{fixture}"
dropout = 0.0
precision = "fp32"
[preprocess]
valid_fraction = 0.1
test_fraction = 0.0
[train]
steps = {steps}
batch_size = 4
lr = 3e-3
warmup_steps = 1
pretrain_steps = 0
eval_every = 0
checkpoint_every = 0
trunk_lr_factor = {trunk_lr_factor}
weighting = {{ strategy = "static" }}
[[task]]
name = "lm"
kind = "lm"
train = "{lm}"
[[task]]
name = "cls"
kind = "classify"
train = "{cls}"
labels = ["neg", "pos"]
"#,
            fixture = s(fixture),
            lm = s(&dir.join("lm.txt")),
            cls = s(&dir.join("cls.jsonl")),
        ),
    )
    .unwrap();
    path
}

/// Max |logit diff| of transformers' GPT2LMHeadModel in `hf` against `mtgpt logits` of
/// `model` on `ids`.
fn logit_diff(dir: &Path, model: &Path, hf: &Path, ids: &str) -> f64 {
    let ours = mtgpt_ok(&["-q", "logits", "--model", s(model), "--ids", ids]);
    let path = dir.join("ours.json");
    std::fs::write(&path, ours).unwrap();
    reference(&["logits", s(hf), ids, s(&path)])
        .parse()
        .expect("a number")
}

/// The LM task's mean loss at the first and the last log line of `metrics.jsonl`.
fn first_last_lm_loss(run: &Path) -> (f64, f64) {
    let losses = lm_losses(run);
    assert!(losses.len() >= 2, "too few LM loss lines: {losses:?}");
    (losses[0], *losses.last().unwrap())
}

fn check_kind(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fixture = dir.join("hf");
    reference(&["make", s(&fixture), kind]);
    let ids = reference(&["encode", s(&fixture), PROBE]);

    // The folder's tokenizer is used, with mtgpt's special and task tokens appended.
    let frozen = dir.join("frozen");
    let c = config(dir, &fixture, 3, 0.0);
    mtgpt_ok(&["-q", "train", "--config", s(&c), "--out", s(&frozen)]);
    let model = frozen.join("model");
    let tok = model.join("tokenizer.json");
    let o = mtgpt_stdin(
        &["-q", "tokenizer", "encode", "--tokenizer", s(&tok)],
        PROBE,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ours_ids = mtgpt_e2e::stdout(&o);
    assert_eq!(
        ours_ids.trim().replace(' ', ","),
        ids,
        "{kind}: token ids differ"
    );
    // trunk_lr_factor = 0: the trained trunk is the initial one, so these are the first
    // step's logits.
    let d = logit_diff(dir, &model, &fixture, &ids);
    assert!(
        d < 1e-4,
        "{kind}: first-step logits differ from transformers' by {d}"
    );

    // Trained jointly, the trunk moves and the LM loss falls.
    let trained = dir.join("trained");
    let c = config(dir, &fixture, 40, 1.0);
    mtgpt_ok(&[
        "-q",
        "train",
        "--config",
        s(&c),
        "--out",
        s(&trained),
        "--log-every",
        "1",
    ]);
    let (first, last) = first_last_lm_loss(&trained);
    assert!(
        last < first * 0.9,
        "{kind}: LM loss did not fall: {first} → {last}"
    );

    // It exports back to a folder transformers reads, with the same logits.
    let export = dir.join("export");
    mtgpt_ok(&[
        "-q",
        "export",
        "--model",
        s(&trained.join("model")),
        "--out",
        s(&export),
    ]);
    let d = logit_diff(dir, &trained.join("model"), &export, &ids);
    assert!(
        d < 1e-4,
        "{kind}: exported trunk: transformers' logits differ by {d}"
    );
    let d0 = logit_diff(dir, &trained.join("model"), &fixture, &ids);
    assert!(
        d0 > 1e-3,
        "{kind}: the trained trunk still equals the fixture ({d0})"
    );

    // Imported as is, it generates transformers' greedy continuation token for token.
    let imported = dir.join("imported");
    mtgpt_ok(&["-q", "import", "--hf", s(&fixture), "--out", s(&imported)]);
    let prompt = "To be, or not 北京";
    let theirs = reference(&["generate", s(&fixture), prompt, "16"]);
    let ours = mtgpt_ok(&[
        "-q",
        "generate",
        "--model",
        s(&imported),
        "--prompt",
        prompt,
        "--greedy",
        "--max-new-tokens",
        "16",
        "--print-ids",
    ]);
    assert_eq!(ours.trim(), theirs, "{kind}: greedy continuations differ");
}

#[test]
fn gpt2_with_byte_level_bpe_trains_through_init() {
    check_kind("bpe");
}

#[test]
fn gpt2_with_wordpiece_trains_through_init() {
    check_kind("wordpiece");
}

#[test]
fn a_pickle_only_folder_is_refused_with_how_to_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 16, "vocab_size": 50}"#).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"not unpickled").unwrap();
    let c = tmp.path().join("c.toml");
    std::fs::write(
        &c,
        format!(
            "name = \"x\"\n[model]\ninit = \"{}\"\n[[task]]\nname = \"lm\"\nkind = \"lm\"\ntrain = \"data/lm_en/valid.txt\"\n",
            s(&dir)
        ),
    )
    .unwrap();
    let o = mtgpt(&[
        "train",
        "--config",
        s(&c),
        "--out",
        s(&tmp.path().join("r")),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("model.init")
            && e.contains("pytorch_model.bin")
            && e.contains("save_pretrained"),
        "{e}"
    );
    let o = mtgpt(&["import", "--hf", s(&dir), "--out", s(&tmp.path().join("i"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("never unpickles"), "{}", stderr(&o));
}
