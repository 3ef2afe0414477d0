//! The text verbs of the `mtgpt` binary on real shipped data: segment, stem, normalize,
//! tokenizer train/encode/decode, augment and prep.
use mtgpt_e2e::{mtgpt_stdin as run_stdin, repo_root, stderr, stdout};
use std::process::Output;

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
}

#[test]
fn segment_stem_normalize_filters() {
    let out = ok(&run_stdin(
        &["segment", "--hmm"],
        "我来到北京清华大学\n他来到了网易杭研大厦\nIt's 3.14, ok?\n",
    ));
    assert_eq!(
        out,
        "我 来到 北京 清华大学\n他 来到 了 网易 杭研 大厦\nIt's 3.14 , ok ?\n"
    );
    let out = ok(&run_stdin(
        &["stem", "--lang", "english"],
        "running\nThe cats were jumping\n",
    ));
    assert_eq!(out, "run\nthe cat were jump\n");
    let out = ok(&run_stdin(&["normalize", "--lowercase"], "ＡＢＣ　Ｄ\n"));
    assert_eq!(out, "abc d\n");
    let o = run_stdin(&["stem", "--lang", "klingon"], "x\n");
    assert!(!o.status.success() && stderr(&o).contains("unknown stemmer language `klingon`"));
}

#[test]
fn tokenizer_train_encode_decode_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tok/tokenizer.json");
    let tok_s = tok.to_str().unwrap();
    ok(&run_stdin(
        &[
            "tokenizer",
            "train",
            "--input",
            "data/lm_en/valid.txt",
            "data/sentiment_zh/valid.jsonl",
            "--vocab-size",
            "1000",
            "--task",
            "demo",
            "--out",
            tok_s,
        ],
        "",
    ));
    assert!(tok.exists() && dir.path().join("tok/tokenizer.mtgpt.json").exists());
    let text =
        "我来到北京清华大学\nTo be, or not to be: 混合 text 123\n<|task:demo|>问题<|sep|>答案\n";
    let ids = ok(&run_stdin(
        &["tokenizer", "encode", "--tokenizer", tok_s],
        text,
    ));
    assert_eq!(ids.lines().count(), 3);
    assert!(
        ids.lines()
            .all(|l| l.split(' ').all(|t| t.parse::<u32>().is_ok())),
        "{ids}"
    );
    let back = ok(&run_stdin(
        &["tokenizer", "decode", "--tokenizer", tok_s],
        &ids,
    ));
    assert_eq!(back, text);
    let o = run_stdin(
        &["tokenizer", "decode", "--tokenizer", tok_s],
        "1 2 99999999\n",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("<stdin>:1") && stderr(&o).contains("99999999"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn augment_is_deterministic_and_reports_bad_lines() {
    let args = [
        "augment",
        "--input",
        "data/sentiment_zh/valid.jsonl",
        "--n-aug",
        "2",
        "--seed",
        "1",
        "--alpha",
        "0.2",
    ];
    let a = ok(&run_stdin(&args, ""));
    let b = ok(&run_stdin(&args, ""));
    assert_eq!(a, b);
    let n_in = std::fs::read_to_string(repo_root().join("data/sentiment_zh/valid.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(a.lines().count(), 2 * n_in);
    let mut other = args.to_vec();
    other[6] = "2";
    assert_ne!(ok(&run_stdin(&other, "")), a);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\":\"good film\",\"label\":\"pos\"}\n{\"text\":\"x\",\"label\":[1]}\n",
    )
    .unwrap();
    let o = run_stdin(
        &[
            "augment",
            "--input",
            bad.to_str().unwrap(),
            "--kind",
            "classify",
        ],
        "",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bad.jsonl:2: field `label`"),
        "{}",
        stderr(&o)
    );
    let o = run_stdin(
        &[
            "augment",
            "--input",
            bad.to_str().unwrap(),
            "--kind",
            "classify",
            "--skip-bad",
            "--n-aug",
            "1",
        ],
        "",
    );
    assert_eq!(ok(&o).lines().count(), 1);
    assert!(stderr(&o).contains("skipped 1 bad lines"), "{}", stderr(&o));
}

#[test]
fn prep_on_the_demo_config_writes_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prep");
    let o = run_stdin(
        &[
            "prep",
            "--config",
            "configs/demo.toml",
            "--set",
            "model.init=",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "tokenizer.vocab_size=2000",
        ],
        "",
    );
    let table = ok(&o);
    for task in [
        "lm_en",
        "lm_zh",
        "sentiment_zh",
        "spam_en",
        "ner_zh",
        "poem_zh",
    ] {
        assert!(table.contains(task), "{table}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prep.json")).unwrap()).unwrap();
    assert_eq!(manifest["vocab_size"], 2000);
    assert_eq!(
        manifest["tasks"]["spam_en"]["labels"],
        serde_json::json!(["ham", "spam"])
    );
    assert!(
        manifest["tasks"]["lm_en"]["splits"]["train"]["tokens"]
            .as_u64()
            .unwrap()
            > 100_000
    );
    assert!(out.join("ner_zh/test.jsonl").exists());
}
