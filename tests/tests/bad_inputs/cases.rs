//! The cases of the bad-input corpus, by what is broken.
use super::*;

pub(super) fn config_cases() -> Vec<Case> {
    let c = |f: &str| format!("{CORPUS}/config/{f}");
    let check = |name: &str, want: &[&str]| {
        let file = c(&format!("{name}.toml"));
        let mut w = vec![format!("{file}:")];
        w.extend(want.iter().map(|s| s.to_string()));
        Case {
            name: format!("config/{name}"),
            args: vec!["config".into(), "check".into(), file],
            stdin: None,
            want: w,
        }
    };
    vec![
        check("malformed", &[":14:7:", "unclosed table"]),
        check(
            "nan_lr",
            &[":16:", "key `train.lr` = NaN", "positive number"],
        ),
        check("negative_steps", &[":15:9:", "key `train.steps`", "`-5`"]),
        check(
            "wrong_type",
            &[":5:11:", "key `model.n_layer`", "string \"one\""],
        ),
        check("unknown_key", &[":5:1:", "unknown field `n_layers`"]),
        check("negative_dropout", &[":9:", "key `model.dropout` = -0.5"]),
        check(
            "inf_weight_decay",
            &[":16:", "key `train.weight_decay` = inf"],
        ),
        check(
            "heads_not_dividing",
            &[":6:", "key `model.n_head` = 2", "d_model = 15"],
        ),
        check("no_tasks", &["key `task` = []"]),
        check(
            "unknown_kind",
            &[":20:8:", "task[0].kind", "unknown variant `sentiment`"],
        ),
        check(
            "duplicate_task",
            &[":25:", "task[1].name", "another task has this name"],
        ),
        case(
            "config/missing_data_file (prep)",
            &[
                "prep",
                "--config",
                &c("missing_data_file.toml"),
                "--out",
                "/nonexistent-mtgpt-out/never-made",
            ],
            &["tests/bad_inputs/data/does_not_exist.jsonl", "No such file"],
        ),
    ]
}

pub(super) fn data_cases(dir: &Path) -> Vec<Case> {
    let out = s(&dir.join("prep-out"));
    let labels = "labels = [\"ham\", \"spam\"]";
    let prep = |name: &str, kind: &str, file: &str, extra: &str, want: &[&str]| {
        let config = task_config(dir, name, kind, file, extra);
        Case {
            name: format!("data/{name}"),
            args: ["prep", "--config", &config, "--out", &out]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            stdin: None,
            want: want.iter().map(|w| format!("{file}{w}")).collect(),
        }
    };
    let d = |f: &str| format!("{CORPUS}/data/{f}");
    // 10 MB on one line, made here rather than committed.
    let big = dir.join("ten_mb_line.jsonl");
    let line = format!("{{\"text\": \"{}\"}}", "x".repeat(10 << 20));
    std::fs::write(
        &big,
        format!("{{\"text\": \"short\"}}\n{line}\n{{\"text\": \"after\"}}\n"),
    )
    .unwrap();
    let big_want = format!(
        ":2: field `-`: the line is {} bytes, over the limit of 4 MiB per record",
        line.len() + 1
    );
    vec![
        prep(
            "classify_malformed_json",
            "classify",
            &d("classify_malformed_json.jsonl"),
            labels,
            &[":2: field `-`: not valid JSON"],
        ),
        prep(
            "classify_text_not_string",
            "classify",
            &d("classify_text_not_string.jsonl"),
            labels,
            &[":3: field `text`: expected a string, found a number"],
        ),
        prep(
            "classify_label_wrong_type",
            "classify",
            &d("classify_label_wrong_type.jsonl"),
            labels,
            &[":2: field `label`: expected a string, found an array"],
        ),
        prep(
            "classify_unknown_label",
            "classify",
            &d("classify_unknown_label.jsonl"),
            labels,
            &[":2: field `label`: unknown label `meh`; the config allows [\"ham\", \"spam\"]"],
        ),
        prep(
            "classify_empty_text",
            "classify",
            &d("classify_empty_text.jsonl"),
            labels,
            &[":2: field `text`: empty"],
        ),
        prep(
            "classify_missing_text",
            "classify",
            &d("classify_missing_text.jsonl"),
            labels,
            &[":2: field `text`: missing"],
        ),
        prep(
            "classify_not_object",
            "classify",
            &d("classify_not_object.jsonl"),
            labels,
            &[":2: field `-`: expected a JSON object"],
        ),
        prep(
            "classify_invalid_utf8",
            "classify",
            &d("classify_invalid_utf8.jsonl"),
            labels,
            &[":3: field `-`: invalid UTF-8 at byte 13 of the line"],
        ),
        prep(
            "lm_invalid_utf8",
            "lm",
            &d("lm_invalid_utf8.txt"),
            "",
            &[":2: field `-`: invalid UTF-8 at byte 8 of the line"],
        ),
        prep(
            "lm_text_null",
            "lm",
            &d("lm_text_null.jsonl"),
            "",
            &[":2: field `text`: expected a string, found null"],
        ),
        prep(
            "tagging_length_mismatch",
            "tagging",
            &d("tagging_length_mismatch.jsonl"),
            "",
            &[":2: field `tags`: 2 tags for 3 tokens"],
        ),
        prep(
            "tagging_tag_not_string",
            "tagging",
            &d("tagging_tag_not_string.jsonl"),
            "",
            &[":2: field `tags[1]`: expected a string, found a number"],
        ),
        prep(
            "qa_answer_not_in_context",
            "extractive_qa",
            &d("qa_answer_not_in_context.jsonl"),
            "",
            &[
                ":2: field `answer.start`: the context at char 0 is \"北京\", not the answer \"上海\" (it does not occur in the context at all)",
            ],
        ),
        prep(
            "qa_answer_wrong_start",
            "extractive_qa",
            &d("qa_answer_wrong_start.jsonl"),
            "",
            &[
                ":1: field `answer.start`: the context at char 2 is \"是中\", not the answer \"首都\" (it occurs at char 6)",
            ],
        ),
        prep(
            "qa_negative_start",
            "extractive_qa",
            &d("qa_negative_start.jsonl"),
            "",
            &[":1: field `answer.start`: missing or not a whole number ≥ 0"],
        ),
        prep(
            "qa_answer_not_object",
            "extractive_qa",
            &d("qa_answer_not_object.jsonl"),
            "",
            &[":1: field `answer`: expected an object {text, start}, found a string"],
        ),
        prep(
            "generate_missing_target",
            "generate",
            &d("generate_missing_target.jsonl"),
            "",
            &[":2: field `target`: missing (a generate example needs it)"],
        ),
        prep("ten_mb_line", "lm", &s(&big), "", &[&big_want]),
    ]
}

pub(super) fn tokenizer_cases(dir: &Path, tok: &Path) -> Vec<Case> {
    let t = |f: &str| format!("{CORPUS}/tokenizer/{f}");
    let config = {
        let path = dir.join("tokenizer_path.toml");
        let text = BASE.replace(
            "vocab_size = 200\n",
            &format!("vocab_size = 200\npath = \"{}\"\n", t("truncated.json")),
        ) + "\n[[task]]\nname = \"spam\"\nkind = \"classify\"\ntrain = \"data/spam_en/valid.jsonl\"\n";
        std::fs::write(&path, text).unwrap();
        s(&path)
    };
    let mut decode = case(
        "tokenizer/decode_id_out_of_range",
        &["tokenizer", "decode", "--tokenizer", &s(tok)],
        &["<stdin>:2", "`9999999` is not a token id below"],
    );
    decode.stdin = Some(b"5 6\n5 9999999\n".to_vec());
    let mut decode_text = case(
        "tokenizer/decode_not_a_number",
        &["tokenizer", "decode", "--tokenizer", &s(tok)],
        &["<stdin>:1"],
    );
    decode_text.stdin = Some(b"5 six\n".to_vec());
    let encode = |name: &str, file: &str, want: &[&str]| {
        let mut c = case(
            &format!("tokenizer/{name}"),
            &["tokenizer", "encode", "--tokenizer", &t(file)],
            want,
        );
        c.stdin = Some(b"hello\n".to_vec());
        c
    };
    vec![
        encode(
            "truncated",
            "truncated.json",
            &[
                "tests/bad_inputs/tokenizer/truncated.json:",
                "not a valid tokenizer.json",
                "line 1 column 49",
            ],
        ),
        encode(
            "not_a_tokenizer",
            "not_a_tokenizer.json",
            &[
                "tests/bad_inputs/tokenizer/not_a_tokenizer.json:",
                "not a valid tokenizer.json",
                "line 1",
            ],
        ),
        case(
            "tokenizer/config_path_truncated (prep)",
            &["prep", "--config", &config, "--out", &s(&dir.join("tp"))],
            &[
                "tests/bad_inputs/tokenizer/truncated.json:",
                "not a valid tokenizer.json",
            ],
        ),
        decode,
        decode_text,
    ]
}

/// Broken copies of a real model folder, each read by `mtgpt predict`.
pub(super) fn model_cases(dir: &Path, model: &Path, tok_other: &Path) -> Vec<Case> {
    let broken = |name: &str, damage: &dyn Fn(&Path), want: &[&str]| {
        let m = dir.join(format!("model-{name}"));
        copy_dir(model, &m);
        damage(&m);
        let want: Vec<String> = want.iter().map(|w| w.replace("{m}", &s(&m))).collect();
        Case {
            name: format!("model/{name}"),
            args: [
                "predict",
                "--model",
                &s(&m),
                "--task",
                "t",
                "--input",
                "data/spam_en/test.jsonl",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            stdin: None,
            want,
        }
    };
    vec![
        broken(
            "truncated_weights",
            &|m| truncate(&m.join("model.safetensors"), 10_000),
            &["{m}/model.safetensors: not a readable safetensors file"],
        ),
        broken(
            "empty_weights",
            &|m| truncate(&m.join("model.safetensors"), 0),
            &["{m}/model.safetensors: not a readable safetensors file"],
        ),
        broken(
            "truncated_heads",
            &|m| truncate(&m.join("heads.safetensors"), 100),
            &["{m}/heads.safetensors: not a readable safetensors file"],
        ),
        broken(
            "shape_mismatch",
            &|m| {
                let c = m.join("config.json");
                edit(&c, "\"n_embd\": 16", "\"n_embd\": 32");
                edit(&c, "\"n_inner\": 64", "\"n_inner\": 128");
            },
            &[
                "{m}/model.safetensors: tensor `transformer.",
                "the config needs",
            ],
        ),
        broken(
            "negative_layers",
            &|m| edit(&m.join("config.json"), "\"n_layer\": 1", "\"n_layer\": -1"),
            &["{m}/config.json: key `n_layer`: missing or not a whole number"],
        ),
        broken(
            "vocabulary_mismatch",
            &|m| {
                std::fs::copy(tok_other, m.join("tokenizer.json")).unwrap();
            },
            &[
                "{m}/tokenizer.json:",
                "tokens but the model's vocabulary is",
            ],
        ),
        broken(
            "tasks_malformed",
            &|m| std::fs::write(m.join("tasks.json"), "{\"tasks\": [").unwrap(),
            &["{m}/tasks.json: not a valid task list"],
        ),
    ]
}

/// Broken copies of a finished run, each resumed with `mtgpt train --resume`.
pub(super) fn checkpoint_cases(dir: &Path, config: &str, run: &Path) -> Vec<Case> {
    let ckpt = run.join("checkpoints/step-00000004");
    assert!(ckpt.join("trainer.json").exists(), "{}", ckpt.display());
    let broken = |name: &str, damage: &dyn Fn(&Path), extra: &[&str], want: &[&str]| {
        let out = dir.join(format!("run-{name}"));
        copy_dir(run, &out);
        damage(&out.join("checkpoints/step-00000004"));
        let c = s(&out.join("checkpoints/step-00000004"));
        let mut args: Vec<String> = ["train", "--config", config, "--out", &s(&out), "--resume"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        Case {
            name: format!("checkpoint/{name}"),
            args,
            stdin: None,
            want: want.iter().map(|w| w.replace("{c}", &c)).collect(),
        }
    };
    let mut cases = vec![
        broken(
            "truncated_weights",
            &|c| truncate(&c.join("weights.safetensors"), 5_000),
            &[],
            &["{c}/weights.safetensors: not a readable safetensors file"],
        ),
        broken(
            "truncated_trainer_state",
            &|c| std::fs::write(c.join("trainer.json"), "{\"step\": 4,\n").unwrap(),
            &[],
            &["{c}/trainer.json:", "line 2"],
        ),
        broken(
            "optimizer_without_moments",
            &|c| {
                std::fs::copy(
                    c.join("weights.safetensors"),
                    c.join("optimizer.safetensors"),
                )
                .unwrap();
            },
            &[],
            &["{c}/optimizer.safetensors: missing adam.step"],
        ),
        broken(
            "shape_mismatch",
            &|_| {},
            &["--set", "model.d_model=32"],
            &["{c}/weights.safetensors: tensor `", "the config needs"],
        ),
    ];
    let empty = dir.join("run-none");
    cases.push(case(
        "checkpoint/none_to_resume",
        &["train", "--config", config, "--out", &s(&empty), "--resume"],
        &["--resume: no checkpoint in", "run-none/checkpoints"],
    ));
    cases
}

pub(super) fn cli_cases(dir: &Path, config: &str, model: &Path) -> Vec<Case> {
    let out = s(&dir.join("cli-out"));
    // A regular file where a folder must go: refused even when running as root.
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let under_file = s(&file.join("sub"));
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--config", config, "--out", &out];
        a.extend_from_slice(extra);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let with = |name: &str, args: Vec<String>, want: &[&str]| Case {
        name: name.into(),
        args,
        stdin: None,
        want: want.iter().map(|w| w.to_string()).collect(),
    };
    vec![
        with(
            "cli/unknown_flag",
            train(&["--bogus"]),
            &["unexpected argument '--bogus'"],
        ),
        with(
            "cli/set_wrong_type",
            train(&["--set", "train.steps=abc"]),
            &["--set train.steps=abc:", "invalid type: string \"abc\""],
        ),
        with(
            "cli/set_unknown_key",
            train(&["--set", "train.nosuch=1"]),
            &["--set train.nosuch=1:", "unknown field `nosuch`"],
        ),
        with(
            "cli/set_negative_lr",
            train(&["--set", "train.lr=-1"]),
            &["key `train.lr` = -1", "positive number"],
        ),
        with(
            "cli/set_without_value",
            train(&["--set", "nokey"]),
            &["--set nokey: expected KEY=VALUE"],
        ),
        case(
            "cli/zero_threads",
            &["--threads", "0", "info"],
            &["--threads", "at least 1"],
        ),
        case(
            "cli/missing_config",
            &[
                "train",
                "--config",
                "tests/bad_inputs/config/nope.toml",
                "--out",
                &out,
            ],
            &["tests/bad_inputs/config/nope.toml: No such file"],
        ),
        case(
            "cli/augment_nan_alpha",
            &[
                "augment",
                "--input",
                "data/spam_en/test.jsonl",
                "--alpha",
                "nan",
            ],
            &["--alpha NaN: must be a probability in [0, 1]"],
        ),
        case(
            "cli/augment_alpha_above_one",
            &[
                "augment",
                "--input",
                "data/spam_en/test.jsonl",
                "--alpha",
                "2",
            ],
            &["--alpha 2: must be a probability in [0, 1]"],
        ),
        case(
            "cli/generate_top_p",
            &[
                "generate",
                "--model",
                &s(model),
                "--prompt",
                "hi",
                "--top-p",
                "1.5",
            ],
            &["top_p must be in (0, 1], got 1.5"],
        ),
        case(
            "cli/predict_unknown_task",
            &[
                "predict",
                "--model",
                &s(model),
                "--task",
                "nosuch",
                "--input",
                "data/spam_en/test.jsonl",
            ],
            &["no task `nosuch`; it serves [\"t\"]"],
        ),
        case(
            "cli/predict_input_invalid_utf8",
            &[
                "predict",
                "--model",
                &s(model),
                "--task",
                "t",
                "--input",
                "tests/bad_inputs/data/classify_invalid_utf8.jsonl",
            ],
            &["tests/bad_inputs/data/classify_invalid_utf8.jsonl:3: field `-`: not valid UTF-8"],
        ),
        case(
            "output/prep_out_is_a_file",
            &["prep", "--config", config, "--out", &s(&file)],
            &[&format!("{}: File exists", s(&file))],
        ),
        case(
            "output/train_out_under_a_file",
            &["train", "--config", config, "--out", &under_file],
            &[&format!("{under_file}: Not a directory")],
        ),
    ]
}
