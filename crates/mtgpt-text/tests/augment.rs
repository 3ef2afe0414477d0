//! Augmentation keeps supervision aligned (labels, QA spans, tags) and is deterministic,
//! on real lexicons shipped in data/lexicon.
use mtgpt_core::{Answer, AugmentConfig, Example};
use mtgpt_text::Segmenter;
use mtgpt_text::augment::{Augmenter, Lexicon, load_lexicons};
use proptest::prelude::*;
use std::path::Path;
use std::sync::LazyLock;

static LEXICON: LazyLock<std::sync::Arc<Lexicon>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/lexicon");
    std::sync::Arc::new(
        load_lexicons(&[&root.join("en_synonyms.txt"), &root.join("zh_synonyms.txt")]).unwrap(),
    )
});

fn augmenter(alpha: f64, char_noise: f64, token_noise: f64) -> Augmenter {
    Augmenter::new(
        LEXICON.clone(),
        Segmenter::default(),
        AugmentConfig {
            eda_alpha: alpha,
            n_aug: 3,
            char_noise,
            token_noise,
        },
    )
}

#[test]
fn shipped_lexicons_have_real_synonyms() {
    assert!(LEXICON.len() > 10_000, "{}", LEXICON.len());
    assert!(!LEXICON.synonyms("good").is_empty());
    assert!(!LEXICON.synonyms("喜欢").is_empty());
}

#[test]
fn english_and_chinese_text_change_but_keep_their_label() {
    let a = augmenter(0.3, 0.0, 0.0);
    for text in [
        "this movie was really good and the actors were great",
        "这个酒店的服务很好，房间也很干净，下次还会再来",
    ] {
        let ex = Example::Classify {
            text: text.into(),
            text_pair: None,
            label: "pos".into(),
        };
        let copies = a.augment_copies(&ex, 1, "k");
        assert!(copies.iter().any(|c| c != &ex), "{text}: no copy differs");
        for c in copies {
            let Example::Classify { label, .. } = c else {
                panic!()
            };
            assert_eq!(label, "pos");
        }
    }
}

fn qa_strategy() -> impl Strategy<Value = (String, String, String)> {
    let words = "(the|a|good|big|city|river|北京|首都|很|好|美丽|城市|,|。|run|fast)";
    (
        proptest::string::string_regex(&format!("({words} ){{0,12}}")).unwrap(),
        proptest::string::string_regex("(Paris|清华大学|the capital|42)").unwrap(),
        proptest::string::string_regex(&format!("( {words}){{0,12}}")).unwrap(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn qa_answers_stay_at_their_start((before, answer, after) in qa_strategy(), seed in 0u64..1000) {
        let a = augmenter(0.3, 0.1, 0.1);
        let context = format!("{before}{answer}{after}");
        let ex = Example::ExtractiveQa {
            context,
            question: "where is it?".into(),
            answer: Answer { text: answer.clone(), start: before.chars().count() },
        };
        for c in a.augment_copies(&ex, seed, "qa") {
            let Example::ExtractiveQa { context, answer: got, .. } = c else { panic!() };
            prop_assert_eq!(&got.text, &answer);
            let at: String = context.chars().skip(got.start).take(answer.chars().count()).collect();
            prop_assert_eq!(at, answer.clone());
        }
    }

    #[test]
    fn tags_stay_aligned_and_entities_untouched(n in 1usize..20, seed in 0u64..1000) {
        let a = augmenter(0.5, 0.2, 0.2);
        let words = ["我", "在", "北京", "的", "清华大学", "学习", "good", "city"];
        let tokens: Vec<String> = (0..n).map(|i| words[i % words.len()].to_string()).collect();
        let tags: Vec<String> = tokens.iter().map(|t| match t.as_str() {
            "北京" => "B-LOC".to_string(),
            "清华大学" => "B-ORG".to_string(),
            _ => "O".to_string(),
        }).collect();
        let ex = Example::Tagging { tokens: tokens.clone(), tags: tags.clone() };
        for c in a.augment_copies(&ex, seed, "tag") {
            let Example::Tagging { tokens: t2, tags: g2 } = c else { panic!() };
            prop_assert_eq!(t2.len(), g2.len());
            // Entities survive, in order, with their tags.
            let ents = |t: &[String], g: &[String]| -> Vec<(String, String)> {
                t.iter().zip(g).filter(|(_, g)| *g != "O").map(|(a, b)| (a.clone(), b.clone())).collect()
            };
            prop_assert_eq!(ents(&t2, &g2), ents(&tokens, &tags));
        }
    }
}
