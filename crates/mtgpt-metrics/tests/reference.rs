//! Checks every metric against the numbers its reference implementation produced for the same
//! inputs (`fixtures/reference.json`, written by `fixtures/make_fixtures.py`).

use std::sync::OnceLock;

use mtgpt_metrics::bleu::is_sacrebleu_zh_char;
use mtgpt_metrics::text::{is_python_space, python_split};
use mtgpt_metrics::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    versions: serde_json::Map<String, serde_json::Value>,
    python_whitespace: Vec<(u32, u32)>,
    sacrebleu_zh_ranges: Vec<(u32, u32)>,
    classification: Vec<ClassCase>,
    qa: Vec<QaCase>,
    bleu: Vec<BleuCase>,
    bleu_tokenize: Vec<BleuTokenizeCase>,
    rouge: Vec<RougeCase>,
    tagging: Vec<TagCase>,
}

#[derive(Deserialize)]
struct ClassCase {
    name: String,
    pred: Vec<String>,
    gold: Vec<String>,
    accuracy: f64,
    macro_precision: f64,
    macro_recall: f64,
    macro_f1: f64,
    weighted_f1: f64,
    classes: Vec<ClassExpect>,
    confusion_labels: Vec<String>,
    confusion_matrix: Vec<Vec<usize>>,
}

#[derive(Deserialize)]
struct ClassExpect {
    label: String,
    precision: f64,
    recall: f64,
    f1: f64,
    support: usize,
}

#[derive(Deserialize)]
struct QaCase {
    pred: String,
    golds: Vec<String>,
    exact_match: f64,
    f1: f64,
    cmrc_f1: Option<f64>,
}

#[derive(Deserialize)]
struct BleuCase {
    name: String,
    tokenize: String,
    hyps: Vec<String>,
    refs: Vec<Vec<String>>,
    score: f64,
    precisions: Vec<f64>,
    bp: f64,
    counts: Vec<usize>,
    totals: Vec<usize>,
    sys_len: usize,
    ref_len: usize,
}

#[derive(Deserialize)]
struct BleuTokenizeCase {
    tokenize: String,
    line: String,
    tokens: String,
}

#[derive(Deserialize)]
struct RougeCase {
    name: String,
    tokenize: String,
    preds: Vec<String>,
    golds: Vec<Vec<String>>,
    pairs: Vec<RougeExpect>,
    mean: RougeExpect,
}

#[derive(Deserialize)]
struct RougeExpect {
    rouge1: Prf,
    rouge2: Prf,
    #[serde(rename = "rougeL")]
    rouge_l: Prf,
}

#[derive(Deserialize)]
struct Prf {
    precision: f64,
    recall: f64,
    fmeasure: f64,
}

#[derive(Deserialize)]
struct TagCase {
    name: String,
    pred: Vec<Vec<String>>,
    gold: Vec<Vec<String>>,
    precision: f64,
    recall: f64,
    f1: f64,
    accuracy: f64,
    per_type: Vec<TypeExpect>,
    gold_spans: Vec<Vec<(String, usize, usize)>>,
}

#[derive(Deserialize)]
struct TypeExpect {
    label: String,
    precision: f64,
    recall: f64,
    f1: f64,
    support: usize,
    predicted: usize,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
        let text = std::fs::read_to_string(path).expect("read reference.json");
        serde_json::from_str(&text).expect("parse reference.json")
    })
}

/// Equal within 1e-9, relative for values above 1 (BLEU is on 0..=100).
#[track_caller]
fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}"
    );
}

#[test]
fn fixture_names_its_reference_versions() {
    let versions = &reference().versions;
    for package in ["sacrebleu", "rouge-score", "seqeval", "scikit-learn"] {
        assert!(
            versions.get(package).is_some_and(|v| v.is_string()),
            "no version for {package}"
        );
    }
}

fn in_ranges(ranges: &[(u32, u32)], cp: u32) -> bool {
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp))
}

#[test]
fn character_classes_match_python_on_every_code_point() {
    let r = reference();
    assert!(!r.python_whitespace.is_empty() && !r.sacrebleu_zh_ranges.is_empty());
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let cp = c as u32;
        assert_eq!(
            is_python_space(c),
            in_ranges(&r.python_whitespace, cp),
            "str.isspace U+{cp:04X}"
        );
        assert_eq!(
            is_sacrebleu_zh_char(c),
            in_ranges(&r.sacrebleu_zh_ranges, cp),
            "zh char U+{cp:04X}"
        );
    }
}

#[test]
fn classification_matches_scikit_learn() {
    let cases = &reference().classification;
    assert!(cases.len() >= 5);
    for case in cases {
        let name = &case.name;
        close(
            accuracy(&case.pred, &case.gold).unwrap(),
            case.accuracy,
            &format!("{name}: accuracy"),
        );
        close(
            macro_f1(&case.pred, &case.gold).unwrap(),
            case.macro_f1,
            &format!("{name}: macro F1"),
        );
        let report = class_report(&case.pred, &case.gold).unwrap();
        close(
            report.macro_precision,
            case.macro_precision,
            &format!("{name}: macro P"),
        );
        close(
            report.macro_recall,
            case.macro_recall,
            &format!("{name}: macro R"),
        );
        close(
            report.weighted_f1,
            case.weighted_f1,
            &format!("{name}: weighted F1"),
        );
        assert_eq!(report.classes.len(), case.classes.len(), "{name}: classes");
        for (got, want) in report.classes.iter().zip(&case.classes) {
            let what = format!("{name}: class {}", want.label);
            assert_eq!(
                (&got.label, got.support),
                (&want.label, want.support),
                "{what}"
            );
            close(got.precision, want.precision, &format!("{what} precision"));
            close(got.recall, want.recall, &format!("{what} recall"));
            close(got.f1, want.f1, &format!("{what} F1"));
        }
        let matrix = confusion_matrix(&case.pred, &case.gold, &case.confusion_labels).unwrap();
        assert_eq!(matrix, case.confusion_matrix, "{name}: confusion matrix");
    }
}

#[test]
fn qa_matches_squad_and_cmrc_rules() {
    let cases = &reference().qa;
    assert!(cases.len() >= 10);
    for case in cases {
        let what = format!("{:?} vs {:?}", case.pred, case.golds);
        assert_eq!(
            max_exact_match(&case.pred, &case.golds),
            case.exact_match,
            "{what}: EM"
        );
        close(
            max_token_f1(&case.pred, &case.golds),
            case.f1,
            &format!("{what}: F1"),
        );
        if let Some(want) = case.cmrc_f1 {
            let got = case
                .golds
                .iter()
                .map(|g| cmrc_f1(&case.pred, g))
                .fold(0.0, f64::max);
            close(got, want, &format!("{what}: CMRC F1"));
        }
    }
    assert!(
        cases.iter().any(|c| c.cmrc_f1.is_some()),
        "no Chinese QA case"
    );
}

fn bleu_tokenize(name: &str) -> BleuTokenize {
    match name {
        "13a" => BleuTokenize::Mteval13a,
        "zh" => BleuTokenize::Zh,
        "none" => BleuTokenize::Whitespace,
        other => panic!("unknown tokenizer {other}"),
    }
}

#[test]
fn bleu_tokenizers_match_sacrebleu() {
    let cases = &reference().bleu_tokenize;
    assert!(cases.len() >= 10);
    for case in cases {
        let got = tokenize_bleu(&case.line, bleu_tokenize(&case.tokenize));
        let want: Vec<&str> = python_split(&case.tokens).collect();
        assert_eq!(
            python_split(&got).collect::<Vec<_>>(),
            want,
            "{} {:?}",
            case.tokenize,
            case.line
        );
    }
}

#[test]
fn bleu_matches_sacrebleu() {
    let cases = &reference().bleu;
    assert!(cases.len() >= 10);
    for case in cases {
        let name = &case.name;
        let got = corpus_bleu_multi(&case.hyps, &case.refs, bleu_tokenize(&case.tokenize)).unwrap();
        assert_eq!(got.matches.as_slice(), case.counts, "{name}: matches");
        assert_eq!(got.totals.as_slice(), case.totals, "{name}: totals");
        assert_eq!(
            (got.hyp_len, got.ref_len),
            (case.sys_len, case.ref_len),
            "{name}: lengths"
        );
        close(got.score, case.score, &format!("{name}: BLEU"));
        close(got.brevity_penalty, case.bp, &format!("{name}: BP"));
        for (n, (g, w)) in got.precisions.iter().zip(&case.precisions).enumerate() {
            close(*g, *w, &format!("{name}: precision {}", n + 1));
        }
        if case.refs.iter().all(|r| r.len() == 1) {
            let single: Vec<&str> = case.refs.iter().map(|r| r[0].as_str()).collect();
            let again = corpus_bleu(&case.hyps, &single, bleu_tokenize(&case.tokenize)).unwrap();
            assert_eq!(again, got, "{name}: single-reference entry point");
        }
    }
}

fn check_rouge(got: &RougeScores, want: &RougeExpect, what: &str) {
    for (variant, g, w) in [
        ("1", got.rouge1, &want.rouge1),
        ("2", got.rouge2, &want.rouge2),
        ("L", got.rouge_l, &want.rouge_l),
    ] {
        close(
            g.precision,
            w.precision,
            &format!("{what}: ROUGE-{variant} P"),
        );
        close(g.recall, w.recall, &format!("{what}: ROUGE-{variant} R"));
        close(
            g.fmeasure,
            w.fmeasure,
            &format!("{what}: ROUGE-{variant} F"),
        );
    }
}

#[test]
fn rouge_matches_rouge_score() {
    let cases = &reference().rouge;
    assert!(cases.len() >= 5);
    for case in cases {
        let tokenize = match case.tokenize.as_str() {
            "default" => RougeTokenize::Default,
            "chars" => RougeTokenize::Chars,
            other => panic!("unknown tokenizer {other}"),
        };
        for ((pred, golds), want) in case.preds.iter().zip(&case.golds).zip(&case.pairs) {
            let got = rouge_multi(pred, golds, tokenize).unwrap();
            check_rouge(&got, want, &format!("{}: {pred:?} vs {golds:?}", case.name));
            if let [gold] = golds.as_slice() {
                assert_eq!(
                    rouge(pred, gold, tokenize),
                    got,
                    "{}: single-reference entry point",
                    case.name
                );
            }
        }
        if case.golds.iter().all(|g| g.len() == 1) {
            let golds: Vec<&str> = case.golds.iter().map(|g| g[0].as_str()).collect();
            let mean = rouge_corpus(&case.preds, &golds, tokenize).unwrap();
            check_rouge(&mean, &case.mean, &format!("{}: corpus mean", case.name));
        }
    }
}

#[test]
fn tagging_matches_seqeval() {
    let cases = &reference().tagging;
    assert!(cases.len() >= 5);
    for case in cases {
        let name = &case.name;
        let report = span_report(&case.pred, &case.gold).unwrap();
        close(
            report.precision,
            case.precision,
            &format!("{name}: precision"),
        );
        close(report.recall, case.recall, &format!("{name}: recall"));
        close(report.f1, case.f1, &format!("{name}: F1"));
        close(
            report.token_accuracy,
            case.accuracy,
            &format!("{name}: token accuracy"),
        );
        assert_eq!(
            report.per_type.len(),
            case.per_type.len(),
            "{name}: entity types"
        );
        for (got, want) in report.per_type.iter().zip(&case.per_type) {
            let what = format!("{name}: type {}", want.label);
            assert_eq!(
                (&got.label, got.gold, got.predicted),
                (&want.label, want.support, want.predicted),
                "{what}"
            );
            close(
                got.precision(),
                want.precision,
                &format!("{what} precision"),
            );
            close(got.recall(), want.recall, &format!("{what} recall"));
            close(got.f1(), want.f1, &format!("{what} F1"));
        }
        for (tags, want) in case.gold.iter().zip(&case.gold_spans) {
            let got: Vec<(String, usize, usize)> = extract_spans(tags)
                .into_iter()
                .map(|s| (s.label, s.start, s.end))
                .collect();
            assert_eq!(&got, want, "{name}: spans of {tags:?}");
        }
    }
}
