//! `mtgpt pretrain` and `[model] init` on its base: the base folder, its record, exact resume,
//! a fine-tuning run that starts from exactly the base's weights, and the shape checks.
use mtgpt_e2e::{mtgpt, mtgpt_ok, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mtgpt_e2e::path_str as s;

/// Named tensors of a safetensors file as (shape, raw little-endian bytes).
fn tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn base_config(dir: &Path) -> PathBuf {
    let path = dir.join("base.toml");
    std::fs::write(
        &path,
        r#"name = "tiny-base"
seed = 3
[model]
precision = "fp32"
n_layer = 2
n_head = 2
d_model = 32
block_size = 32
dropout = 0.0
[tokenizer]
vocab_size = 400
[preprocess]
valid_fraction = 0.05
test_fraction = 0.0
[train]
steps = 20
batch_size = 4
eval_every = 10
checkpoint_every = 10
pretrain_steps = 0
[[task]]
name = "en"
kind = "lm"
train = "data/lm_en/valid.txt"
[[task]]
name = "zh"
kind = "lm"
train = "data/lm_zh/valid.txt"
"#,
    )
    .unwrap();
    path
}

#[test]
fn pretrain_writes_a_base_that_resumes_exactly_and_init_starts_from() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = base_config(dir);
    let (base, work) = (dir.join("base"), dir.join("work"));
    let out = mtgpt_ok(&[
        "-q",
        "pretrain",
        "--config",
        s(&config),
        "--out",
        s(&base),
        "--work",
        s(&work),
    ]);
    assert!(out.contains("steps=20"), "{out}");
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "pretrain.json",
    ] {
        assert!(base.join(f).exists(), "base lacks {f}");
    }
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("pretrain.json")).unwrap())
            .unwrap();
    assert_eq!(record["steps"], 20);
    assert_eq!(record["tokens_seen"], 20 * 4 * 32);
    assert_eq!(record["corpora"].as_array().unwrap().len(), 2);
    assert!(record["corpora"][0]["train_tokens"].as_u64().unwrap() > 1000);
    let ppl = record["valid_perplexity"]["en"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{record}");
    assert!(!record["loss_curve"].as_array().unwrap().is_empty());

    // Interrupted after step 10 and resumed: the same base, bit for bit.
    let ckpts = work.join("checkpoints");
    let mut steps: Vec<PathBuf> = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    steps.sort();
    assert!(steps.len() >= 2, "{steps:?}");
    for later in &steps[1..] {
        std::fs::remove_dir_all(later).unwrap();
    }
    let resumed = dir.join("base-resumed");
    mtgpt_ok(&[
        "-q",
        "pretrain",
        "--config",
        s(&config),
        "--out",
        s(&resumed),
        "--work",
        s(&work),
        "--resume",
    ]);
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        std::fs::read(resumed.join("model.safetensors")).unwrap(),
        "a resumed pretraining run differs from the uninterrupted one"
    );

    // A fine-tuning run through init whose trunk does not move (trunk_lr_factor = 0) holds
    // exactly the base's weights; the task tokens' new embedding rows are the rows' mean.
    let jsonl = dir.join("cls.jsonl");
    let mut lines = String::new();
    for i in 0..30 {
        let (t, l) = if i % 2 == 0 {
            ("good fine day", "pos")
        } else {
            ("bad cold night", "neg")
        };
        lines.push_str(&format!("{{\"text\": \"{t} {i}\", \"label\": \"{l}\"}}\n"));
    }
    std::fs::write(&jsonl, lines).unwrap();
    let fine = dir.join("fine.toml");
    std::fs::write(
        &fine,
        format!(
            "name = \"fine\"\n[model]\ninit = \"{}\"\nprecision = \"fp32\"\n[train]\nsteps = 3\nbatch_size = 4\npretrain_steps = 0\neval_every = 0\ntrunk_lr_factor = 0.0\n[[task]]\nname = \"en\"\nkind = \"lm\"\ntrain = \"data/lm_en/valid.txt\"\n[[task]]\nname = \"cls\"\nkind = \"classify\"\ntrain = \"{}\"\nlabels = [\"neg\", \"pos\"]\n",
            s(&base),
            s(&jsonl)
        ),
    )
    .unwrap();
    let run = dir.join("run");
    mtgpt_ok(&["-q", "train", "--config", s(&fine), "--out", s(&run)]);
    let before = tensors(&base.join("model.safetensors"));
    let after = tensors(&run.join("model/model.safetensors"));
    assert_eq!(before.len(), after.len());
    for (name, (shape, bytes)) in &before {
        let (shape2, bytes2) = &after[name];
        if name == "transformer.wte.weight" {
            // One new row: the task token `cls` (`en` was in the base's tokenizer already).
            assert_eq!(shape2[0], shape[0] + 1, "{name}: {shape:?} → {shape2:?}");
            assert_eq!(
                &bytes2[..bytes.len()],
                &bytes[..],
                "{name}: base rows changed"
            );
            let old = f32s(bytes);
            let new = f32s(&bytes2[bytes.len()..]);
            let d = shape[1];
            for (j, v) in new.iter().enumerate() {
                let mean = old
                    .iter()
                    .skip(j)
                    .step_by(d)
                    .map(|&x| x as f64)
                    .sum::<f64>()
                    / shape[0] as f64;
                assert!(
                    (*v as f64 - mean).abs() < 1e-5,
                    "new row {j}: {v} vs mean {mean}"
                );
            }
        } else {
            assert_eq!(
                (shape, bytes),
                (shape2, bytes2),
                "{name} differs from the base"
            );
        }
    }

    // Every verb that trains or compresses works from the base.
    let out = mtgpt_ok(&[
        "-q",
        "lr-find",
        "--config",
        s(&fine),
        "--out",
        s(&dir.join("lr")),
        "--steps",
        "8",
    ]);
    assert!(out.contains("suggested_lr="), "{out}");
    let out = mtgpt_ok(&[
        "-q",
        "transfer",
        "--config",
        s(&fine),
        "--out",
        s(&dir.join("tr")),
    ]);
    assert!(out.contains("cls"), "{out}");
    let out = mtgpt_ok(&[
        "-q",
        "compress",
        "--model",
        s(&run),
        "--config",
        s(&fine),
        "--method",
        "int8",
        "--out",
        s(&dir.join("int8")),
        "--split",
        "valid",
    ]);
    assert!(out.contains("int8"), "{out}");

    // `run --scratch`: the same budget from a random trunk beside the pretrained start, and
    // the report says where each trunk came from.
    let pipeline = dir.join("pipeline");
    let out = mtgpt_ok(&[
        "-q",
        "run",
        "--config",
        s(&fine),
        "--out",
        s(&pipeline),
        "--scratch",
        "--no-compress",
    ]);
    assert!(out.contains("from_scratch="), "{out}");
    let report = std::fs::read_to_string(pipeline.join("report.md")).unwrap();
    assert!(report.contains("| from scratch |"), "{report}");
    assert!(report.contains("Trunk: **pretrained**, from"), "{report}");
    assert!(report.contains("tiny-base"), "names the base: {report}");
    let scratch = std::fs::read_to_string(pipeline.join("scratch/report.md")).unwrap();
    assert!(
        scratch.contains("Trunk: **random initialisation**"),
        "{scratch}"
    );
    let o = mtgpt(&[
        "run",
        "--config",
        s(&fine),
        "--out",
        s(&dir.join("y")),
        "--scratch",
        "--set",
        "model.init=",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no model.init"), "{}", stderr(&o));

    // The shape comes from the folder: a config that says otherwise is told both values.
    let o = mtgpt(&[
        "train",
        "--config",
        s(&fine),
        "--out",
        s(&dir.join("x")),
        "--set",
        "model.n_layer=3",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("model.n_layer") && e.contains('3') && e.contains("n_layer = 2"),
        "{e}"
    );
    let o = mtgpt(&[
        "train",
        "--config",
        s(&fine),
        "--out",
        s(&dir.join("x")),
        "--set",
        "tokenizer.path=\"data/other.json\"",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("brings its own tokenizer"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pretrain_refuses_non_lm_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c.toml");
    std::fs::write(
        &c,
        "name = \"x\"\n[[task]]\nname = \"ner\"\nkind = \"tagging\"\ntrain = \"data/ner_zh/train.jsonl\"\n",
    )
    .unwrap();
    let o = mtgpt(&[
        "pretrain",
        "--config",
        s(&c),
        "--out",
        s(&tmp.path().join("b")),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("language models only") && e.contains("`ner`"),
        "{e}"
    );
}
