//! The bad-input corpus (`tests/bad_inputs/`, issue #9): every broken config, task file,
//! tokenizer, model folder, checkpoint and command line gets a non-zero exit (never a panic)
//! and a message naming the file, line and field — or, with `--skip-bad`, a counted skip.
//! Big inputs (the 10 MB line) and broken model folders and checkpoints are made at run time.
use mtgpt_e2e::{mtgpt_bin, repo_root};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const CORPUS: &str = "tests/bad_inputs";

/// A tiny model and a two-step training run; every case finishes in about a second.
const BASE: &str = r#"name = "bad"
seed = 1

[model]
n_layer = 1
n_head = 2
d_model = 16
block_size = 32

[tokenizer]
kind = "char"
vocab_size = 200

[train]
steps = 4
batch_size = 2
eval_every = 0
checkpoint_every = 2
"#;

/// One bad input: the command line, optional stdin, and what its stderr must say.
struct Case {
    name: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    want: Vec<String>,
}

fn case(name: &str, args: &[&str], want: &[&str]) -> Case {
    Case {
        name: name.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        want: want.iter().map(|s| s.to_string()).collect(),
    }
}

fn run(args: &[String], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(mtgpt_bin())
        .args(args)
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mtgpt starts");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        // The tool may stop reading early when it fails; a broken pipe is fine then.
        let _ = pipe.write_all(bytes);
    }
    child.wait_with_output().expect("mtgpt runs")
}

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

/// A config with `BASE` and one task of `kind` reading `train`.
fn task_config(dir: &Path, name: &str, kind: &str, train: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "{BASE}\n[[task]]\nname = \"t\"\nkind = \"{kind}\"\ntrain = \"{train}\"\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    s(&path)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{}: no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn ok(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let o = run(&args, None);
    assert!(
        o.status.success(),
        "mtgpt {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[path = "bad_inputs/cases.rs"]
mod cases;
use cases::{checkpoint_cases, cli_cases, config_cases, data_cases, model_cases, tokenizer_cases};

#[test]
fn every_bad_input_fails_with_a_message_naming_where() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The real things the broken copies are made from: a tokenizer, a model folder and a
    // two-checkpoint training run, all tiny.
    let tok = dir.join("tok/tokenizer.json");
    ok(&[
        "tokenizer",
        "train",
        "--input",
        "data/spam_en/valid.jsonl",
        "--vocab-size",
        "200",
        "--kind",
        "char",
        "--task",
        "t",
        "--out",
        &s(&tok),
    ]);
    let tok_other = dir.join("tok-zh/tokenizer.json");
    ok(&[
        "tokenizer",
        "train",
        "--input",
        "data/lm_zh/valid.txt",
        "--vocab-size",
        "300",
        "--kind",
        "char",
        "--task",
        "t",
        "--out",
        &s(&tok_other),
    ]);
    let config = task_config(
        dir,
        "good",
        "classify",
        "data/spam_en/valid.jsonl",
        "labels = [\"ham\", \"spam\"]",
    );
    let model = dir.join("model");
    ok(&[
        "model",
        "init",
        "--config",
        &config,
        "--tokenizer",
        &s(&tok),
        "--out",
        &s(&model),
    ]);
    let run_dir = dir.join("run");
    ok(&["train", "--config", &config, "--out", &s(&run_dir)]);

    let mut cases = config_cases();
    cases.extend(data_cases(dir));
    cases.extend(tokenizer_cases(dir, &tok));
    cases.extend(model_cases(dir, &model, &tok_other));
    cases.extend(checkpoint_cases(dir, &config, &run_dir));
    cases.extend(cli_cases(dir, &config, &model));
    assert!(cases.len() >= 30, "{} cases", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let o = run(&c.args, c.stdin.as_deref());
        let err = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        let mut problems = Vec::new();
        if o.status.success() {
            problems.push("exit status 0".to_string());
        }
        // 101 is Rust's panic exit; None is a signal (abort, segfault).
        if code.is_none() || code == Some(101) || err.contains("panicked") {
            problems.push(format!("crashed ({code:?})"));
        }
        for w in &c.want {
            if !err.contains(w.as_str()) {
                problems.push(format!("stderr lacks {w:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {}",
                c.name,
                problems.join("; "),
                err.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `--skip-bad` turns the same bad records into a counted skip: exit 0, each skip reported
/// with its file and line, the count in `prep.json`.
#[test]
fn skip_bad_counts_bad_records_instead_of_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = format!("{CORPUS}/data/classify_mixed_for_skip.jsonl");
    let config = task_config(
        dir,
        "skip",
        "classify",
        &file,
        "labels = [\"ham\", \"spam\"]",
    );
    let out = dir.join("prep");
    let args: Vec<String> = ["prep", "--config", &config, "--out", &s(&out), "--skip-bad"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let o = run(&args, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for w in [
        format!("{file}:2: field `label`: unknown label `meh`"),
        format!("{file}:4: field `-`: not valid JSON"),
        format!("{file}:5: field `text`: empty"),
    ] {
        assert!(err.contains(&w), "{w}\n{err}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prep.json")).unwrap()).unwrap();
    let skipped = manifest.to_string().matches("\"skipped\":3").count();
    assert_eq!(skipped, 1, "{manifest}");

    // The 10 MB line is skipped and counted the same way, and the lines around it still read.
    let big = dir.join("big.txt");
    let line = "y".repeat(10 << 20);
    std::fs::write(
        &big,
        format!("first line of text\n{line}\nthird line of text\n"),
    )
    .unwrap();
    let config = task_config(dir, "big", "lm", &s(&big), "");
    let out = dir.join("prep-big");
    let args: Vec<String> = ["prep", "--config", &config, "--out", &s(&out), "--skip-bad"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let o = run(&args, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2: field `-`: the line is {} bytes",
            s(&big),
            line.len() + 1
        )),
        "{err}"
    );
    let manifest = std::fs::read_to_string(out.join("prep.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        v.to_string().matches("\"skipped\":1").count(),
        1,
        "{manifest}"
    );
}
