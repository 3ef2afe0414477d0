//! The preprocessing stage end to end on small files: splits, normalization with aligned
//! spans, augmentation, the tokenizer and the LM token cache.
use mtgpt_core::{Config, Example};
use mtgpt_text::TextTokenizer;
use mtgpt_text::prep::{PrepOptions, prepare, read_token_file};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn setup() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lm: String = (0..60)
        .map(|i| format!("Ｌｉｎｅ {i}: to be or not to be 北京欢迎你\n"))
        .collect();
    write(d, "lm.txt", &lm);
    let cls: String = (0..40)
        .map(|i| {
            format!(
                "{{\"text\":\"Review {i} was great fun\",\"label\":\"{}\"}}\n",
                if i % 2 == 0 { "pos" } else { "neg" }
            )
        })
        .collect();
    write(d, "cls.jsonl", &cls);
    write(
        d,
        "qa.jsonl",
        "{\"context\":\"首都是  ＢＥＩＪＩＮＧ 城市\",\"question\":\"首都?\",\"answer\":{\"text\":\"ＢＥＩＪＩＮＧ\",\"start\":5}}\n",
    );
    write(
        d,
        "tag.jsonl",
        "{\"tokens\":[\"小\",\"明\",\" \",\"好\"],\"tags\":[\"B-PER\",\"I-PER\",\"O\",\"O\"]}\n",
    );
    let toml = format!(
        r#"name = "t"
[tokenizer]
vocab_size = 300
min_frequency = 1
[preprocess]
valid_fraction = 0.1
test_fraction = 0.1
[[task]]
name = "lm"
kind = "lm"
train = "{d}/lm.txt"
[[task]]
name = "cls"
kind = "classify"
train = "{d}/cls.jsonl"
augment = {{ eda_alpha = 0.2, n_aug = 2 }}
[[task]]
name = "qa"
kind = "extractive_qa"
train = "{d}/qa.jsonl"
valid = "{d}/qa.jsonl"
test = "{d}/qa.jsonl"
[[task]]
name = "tag"
kind = "tagging"
train = "{d}/tag.jsonl"
valid = "{d}/tag.jsonl"
test = "{d}/tag.jsonl"
"#,
        d = d.display()
    );
    let config = Config::from_toml_str(&toml, Path::new("t.toml"), &[]).unwrap();
    (dir, config)
}

fn read_jsonl(path: &Path) -> Vec<Example> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn prep_writes_every_split_tokenizer_and_manifest() {
    let (dir, config) = setup();
    let out = dir.path().join("out");
    let m = prepare(&config, &out, &PrepOptions::default()).unwrap();

    // LM: 60 lines split contiguously 48/6/6; the cache decodes to the normalized lines.
    let lm = &m.tasks["lm"];
    let counts: Vec<usize> = ["train", "valid", "test"]
        .iter()
        .map(|s| lm.splits[*s].examples)
        .collect();
    assert_eq!(counts, vec![48, 6, 6]);
    let tok = TextTokenizer::load(&out.join("tokenizer.json")).unwrap();
    let ids = read_token_file(&out.join("lm/valid.bin")).unwrap();
    assert_eq!(ids.len(), lm.splits["valid"].tokens);
    let text = tok.decode(&ids, false).unwrap();
    assert!(
        text.starts_with("Line 48: to be or not to be 北京欢迎你\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 6);

    // Classification: 32/4/4 seeded split, two augmented copies per training example.
    let cls = &m.tasks["cls"];
    assert_eq!(cls.labels, vec!["neg", "pos"]);
    assert_eq!(cls.splits["train"].examples, 32 * 3);
    assert_eq!(cls.splits["train"].augmented, 64);
    assert_eq!(cls.splits["valid"].examples, 4);

    // QA: the context is normalized and the answer still sits at its start.
    let qa = read_jsonl(&out.join("qa/train.jsonl"));
    let Example::ExtractiveQa {
        context, answer, ..
    } = &qa[0]
    else {
        panic!()
    };
    assert_eq!(context, "首都是 BEIJING 城市");
    assert_eq!(answer.text, "BEIJING");
    assert_eq!(
        context
            .chars()
            .skip(answer.start)
            .take(7)
            .collect::<String>(),
        "BEIJING"
    );

    // Tagging: a token that normalizes to nothing is dropped with its tag.
    let tag = read_jsonl(&out.join("tag/train.jsonl"));
    assert_eq!(
        tag[0],
        Example::Tagging {
            tokens: vec!["小".into(), "明".into(), "好".into()],
            tags: vec!["B-PER".into(), "I-PER".into(), "O".into()]
        }
    );

    // Every task has its prefix token.
    for t in ["lm", "cls", "qa", "tag"] {
        assert!(tok.task_id(t).is_some(), "{t}");
    }

    // Same seed, same output.
    let out2 = dir.path().join("out2");
    prepare(&config, &out2, &PrepOptions::default()).unwrap();
    for f in [
        "cls/train.jsonl",
        "cls/valid.jsonl",
        "lm/train.bin",
        "tokenizer.json",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(out2.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn bad_records_stop_prep_or_are_skipped_and_counted() {
    let (dir, mut config) = setup();
    let d = dir.path();
    let mut cls = std::fs::read_to_string(d.join("cls.jsonl")).unwrap();
    cls.push_str("{\"text\": \"no label\"}\n");
    write(d, "cls.jsonl", &cls);
    let e = prepare(&config, &d.join("o1"), &PrepOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cls.jsonl:41: field `label`: missing"), "{e}");
    config.preprocess.skip_bad = true;
    let m = prepare(&config, &d.join("o2"), &PrepOptions::default()).unwrap();
    assert_eq!(m.tasks["cls"].skipped, 1);
    assert!(m.tasks["cls"].skip_messages[0].contains(":41:"));
}

#[test]
fn a_task_stem_option_stems_its_text() {
    let (dir, mut config) = setup();
    let cls: String = (0..10)
        .map(|i| format!("{{\"text\":\"The cats were running {i}\",\"label\":\"pos\"}}\n"))
        .collect();
    write(dir.path(), "cls.jsonl", &cls);
    config.tasks[1].stem = Some("english".into());
    config.tasks[1].augment = None;
    let out = dir.path().join("stemmed");
    prepare(&config, &out, &PrepOptions::default()).unwrap();
    for ex in read_jsonl(&out.join("cls/train.jsonl")) {
        let Example::Classify { text, .. } = ex else {
            panic!()
        };
        assert!(text.starts_with("the cat were run "), "{text}");
    }
}

#[test]
fn truncated_token_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.bin");
    std::fs::write(&p, [1u8, 0, 0, 0, 7]).unwrap();
    let e = read_token_file(&p).unwrap_err().to_string();
    assert!(e.contains("x.bin") && e.contains("truncated"), "{e}");
}
