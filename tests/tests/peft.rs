//! LoRA adapters against Python `peft`: a frozen GPT-2 (made by `transformers`, see
//! `tests/hf/gpt2_ref.py`) trains per-task adapters jointly through `[model] init`; only the
//! adapters and heads get optimizer state; the exported base plus a task's exported adapter,
//! loaded by `PeftModel.from_pretrained`, gives mtgpt's logits for that task; an adapter made by
//! `peft` imports into mtgpt with peft's logits; and merging and folding work on the folder.
use mtgpt_e2e::path_str as s;
use mtgpt_e2e::{lm_losses, mtgpt, mtgpt_ok, pyref, stderr, write_interchange_data};
use std::path::Path;

const IDS: &str = "5,17,42,9,100,3,77,250,12,8";

fn config(dir: &Path, fixture: &Path) -> std::path::PathBuf {
    write_interchange_data(dir);
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "peft"
seed = 3
[model]
init = "{fixture}"
dropout = 0.0
precision = "fp32"
[preprocess]
valid_fraction = 0.1
test_fraction = 0.0
[adapters]
mode = "per_task"
rank = 4
alpha = 8
[train]
trunk = "frozen"
steps = 30
batch_size = 4
lr = 1e-2
warmup_steps = 1
eval_every = 0
checkpoint_every = 0
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

fn logits(model: &Path, task: &str, out: &Path) {
    let text = mtgpt_ok(&[
        "-q",
        "logits",
        "--model",
        s(model),
        "--task",
        task,
        "--ids",
        IDS,
    ]);
    std::fs::write(out, text).unwrap();
}

fn max_diff(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| -> Vec<Vec<f64>> {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn adapters_interchange_with_python_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fixture = dir.join("hf");
    pyref("gpt2_ref.py", &["make", s(&fixture), "bpe"]);
    let run = dir.join("run");
    let c = config(dir, &fixture);
    mtgpt_ok(&[
        "-q",
        "train",
        "--config",
        s(&c),
        "--out",
        s(&run),
        "--log-every",
        "1",
    ]);
    let model = run.join("model");

    // Only adapters, heads and loss weights have optimizer state; the trunk has none.
    let ckpt = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .expect("a checkpoint");
    let bytes = std::fs::read(ckpt.join("optimizer.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("adam.m.adapters.task.h.0.attn.c_attn")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains(".transformer.")),
        "{names:?}"
    );

    // The LM loss falls although the trunk is frozen: the adapters learn.
    let lm = lm_losses(&run);
    assert!(lm.len() >= 2 && *lm.last().unwrap() < lm[0] * 0.9, "{lm:?}");

    // Without --task, a folder of per-task adapters asks for one.
    let o = mtgpt(&["logits", "--model", s(&model), "--ids", IDS]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--task"), "{}", stderr(&o));

    // peft reads every exported adapter onto the exported base, with mtgpt's logits.
    let export = dir.join("export");
    mtgpt_ok(&["-q", "export", "--model", s(&model), "--out", s(&export)]);
    let mut per_task = Vec::new();
    for task in ["lm", "cls"] {
        let ours = dir.join(format!("{task}.json"));
        logits(&model, task, &ours);
        let adapter = export.join("adapters").join(task);
        let d: f64 = pyref(
            "peft_ref.py",
            &["logits", s(&export), s(&adapter), IDS, s(&ours)],
        )
        .parse()
        .unwrap();
        assert!(d < 1e-5, "{task}: peft's logits differ from mtgpt's by {d}");
        per_task.push(ours);
    }
    // The two tasks' adapters really differ.
    assert!(max_diff(&per_task[0], &per_task[1]) > 1e-3);

    // An adapter made by peft imports into mtgpt with peft's logits.
    let made = dir.join("made");
    let theirs = dir.join("theirs.json");
    pyref(
        "peft_ref.py",
        &["make", s(&export), s(&made), IDS, s(&theirs)],
    );
    let imported = dir.join("imported");
    mtgpt_ok(&[
        "-q",
        "adapters",
        "import",
        "--model",
        s(&model),
        "--task",
        "cls",
        "--peft",
        s(&made),
        "--out",
        s(&imported),
    ]);
    let ours = dir.join("imported.json");
    logits(&imported, "cls", &ours);
    let d = max_diff(&ours, &theirs);
    assert!(d < 1e-5, "imported peft adapter: logits differ by {d}");
    // Its rank (4) and alpha (12) differ from nothing here, but its targets are a subset:
    // the other task's adapter is untouched.
    let lm_again = dir.join("lm-again.json");
    logits(&imported, "lm", &lm_again);
    assert_eq!(max_diff(&lm_again, &per_task[0]), 0.0);

    // Folding a task's adapter gives a plain folder with that task's logits.
    let folded = dir.join("folded");
    mtgpt_ok(&[
        "-q",
        "adapters",
        "fold",
        "--model",
        s(&model),
        "--task",
        "cls",
        "--out",
        s(&folded),
    ]);
    assert!(!folded.join("adapters").exists());
    let f = dir.join("folded.json");
    std::fs::write(
        &f,
        mtgpt_ok(&["-q", "logits", "--model", s(&folded), "--ids", IDS]),
    )
    .unwrap();
    let d = max_diff(&f, &per_task[1]);
    assert!(d < 1e-4, "folded: {d}");

    // A linear merge with weights (1, 0) is the first adapter (up to its rank-r SVD, exact
    // for a rank-r update).
    let merged = dir.join("merged");
    let out = mtgpt_ok(&[
        "-q",
        "adapters",
        "merge",
        "--model",
        s(&model),
        "--from",
        "cls,lm",
        "--weights",
        "1,0",
        "--into",
        "lm",
        "--out",
        s(&merged),
    ]);
    assert!(out.contains("merged cls + lm"), "{out}");
    let m = dir.join("merged.json");
    logits(&merged, "lm", &m);
    let d = max_diff(&m, &per_task[1]);
    assert!(d < 1e-4, "merge (1, 0): {d}");
    for method in ["ties", "dare"] {
        let o = mtgpt(&[
            "adapters",
            "merge",
            "--model",
            s(&model),
            "--from",
            "cls,lm",
            "--method",
            method,
            "--into",
            "lm",
            "--out",
            s(&dir.join(method)),
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        // The merged folder still predicts.
        let o = mtgpt(&[
            "logits",
            "--model",
            s(&dir.join(method)),
            "--task",
            "lm",
            "--ids",
            IDS,
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
    }
    // Every verb works on the adapter model: predict, eval, compress (int8 and pruning keep
    // the adapters on the compressed base).
    let input = dir.join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"今天天气很好，我们去公园 3\"}\n").unwrap();
    let out = mtgpt_ok(&[
        "-q",
        "predict",
        "--model",
        s(&run),
        "--task",
        "cls",
        "--input",
        s(&input),
    ]);
    assert!(out.contains("\"prediction\""), "{out}");
    // Served, each request goes through its task's adapter: the same answer as predict.
    let server = mtgpt_e2e::Server::start(&run, &[]);
    let curl = |path: &str, body: &str| -> serde_json::Value {
        let o = std::process::Command::new("curl")
            .args(["-s", &format!("http://{}{path}", server.addr), "-d", body])
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let want: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got = curl(
        "/v1/tasks/cls",
        std::fs::read_to_string(&input).unwrap().trim(),
    );
    assert_eq!(
        got["prediction"]["label"], want["prediction"]["label"],
        "{got} vs {want}"
    );
    let probs = |v: &serde_json::Value| -> Vec<f64> {
        v["prediction"]["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (p, q) in probs(&got).iter().zip(probs(&want)) {
        assert!((p - q).abs() < 1e-6, "{got} vs {want}");
    }
    let completion = curl(
        "/v1/completions",
        r#"{"model": "lm", "prompt": "To be, or not", "max_tokens": 4, "temperature": 0}"#,
    );
    assert_eq!(completion["object"], "text_completion", "{completion}");
    assert!(server.stop().success());
    let out = mtgpt_ok(&[
        "-q",
        "eval",
        "--model",
        s(&run),
        "--config",
        s(&c),
        "--split",
        "valid",
    ]);
    assert!(out.contains("cls"), "{out}");
    for method in ["int8", "prune"] {
        let small = dir.join(format!("small-{method}"));
        mtgpt_ok(&[
            "-q",
            "compress",
            "--model",
            s(&run),
            "--config",
            s(&c),
            "--method",
            method,
            "--split",
            "valid",
            "--speed-runs",
            "0",
            "--out",
            s(&small),
        ]);
        assert!(
            small
                .join("adapters/cls/adapter_model.safetensors")
                .exists(),
            "{method}"
        );
        let o = mtgpt(&["logits", "--model", s(&small), "--task", "lm", "--ids", IDS]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
    }

    // Bad requests name what is wrong.
    let refused = |args: &[&str], why: &str| {
        let o = mtgpt(args);
        assert!(
            !o.status.success() && stderr(&o).contains(why),
            "{}",
            stderr(&o)
        );
    };
    let (x, y) = (dir.join("x"), dir.join("y"));
    refused(
        &[
            "adapters",
            "merge",
            "--model",
            s(&model),
            "--from",
            "cls",
            "--into",
            "lm",
            "--out",
            s(&x),
        ],
        "at least two",
    );
    refused(
        &[
            "adapters",
            "import",
            "--model",
            s(&model),
            "--task",
            "nope",
            "--peft",
            s(&made),
            "--out",
            s(&y),
        ],
        "no such task",
    );
}
