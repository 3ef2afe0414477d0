use super::*;

fn augmenter(alpha: f64) -> Augmenter {
    let lex = Lexicon::from_groups([
        vec!["good", "fine", "nice"],
        vec!["movie", "film"],
        vec!["喜欢", "喜爱"],
    ]);
    Augmenter::new(
        lex,
        Segmenter::default(),
        AugmentConfig {
            eda_alpha: alpha,
            n_aug: 4,
            char_noise: 0.05,
            token_noise: 0.05,
        },
    )
}

#[test]
fn out_of_range_probabilities_are_clamped_not_panics() {
    for p in [2.0, -1.0, f64::NAN, f64::INFINITY] {
        let lex = Lexicon::from_groups([vec!["good", "fine"]]);
        let config = AugmentConfig {
            eda_alpha: p,
            n_aug: 3,
            char_noise: p,
            token_noise: p,
        };
        let a = Augmenter::new(lex, Segmenter::default(), config);
        let c = a.config();
        for q in [c.eda_alpha, c.char_noise, c.token_noise] {
            assert!((0.0..=1.0).contains(&q), "{p} became {q}");
        }
        let ex = Example::Classify {
            text: "a good movie, 我很喜欢".into(),
            text_pair: None,
            label: "pos".into(),
        };
        assert_eq!(a.augment_copies(&ex, 1, "k").len(), 3);
    }
}

#[test]
fn lexicon_finds_synonyms_both_ways() {
    let lex = Lexicon::from_groups([vec!["good", "fine"], vec!["good", "well"], vec!["x"]]);
    assert_eq!(lex.len(), 2);
    assert_eq!(lex.synonyms("Good"), vec!["fine", "well"]);
    assert_eq!(lex.synonyms("fine"), vec!["good"]);
    assert!(lex.synonyms("x").is_empty());
}

#[test]
fn synonym_replacement_uses_the_lexicon() {
    let a = augmenter(1.0);
    let words: Vec<String> = ["a", "good", "movie"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rng = mtgpt_core::seed::rng_for(1, "t");
    let (out, origin) = a.eda(&words, &[true; 3], EdaOp::SynonymReplacement, &mut rng);
    assert_eq!(out[0], "a");
    assert!(["fine", "nice"].contains(&out[1].as_str()), "{out:?}");
    assert_eq!(out[2], "film");
    assert_eq!(origin, vec![Some(0), Some(1), Some(2)]);
}

#[test]
fn join_words_spaces_latin_and_glues_chinese_and_punctuation() {
    assert_eq!(
        join_words(&["I", "like", "it", ",", "ok", "!"]),
        "I like it, ok!"
    );
    assert_eq!(
        join_words(&["我", "喜欢", "iPhone", "手机", "。"]),
        "我喜欢iPhone手机。"
    );
}

#[test]
fn copies_are_deterministic_per_seed_and_key() {
    let a = augmenter(0.3);
    let ex = Example::Classify {
        text: "a good movie that I really liked".into(),
        text_pair: None,
        label: "pos".into(),
    };
    let one = a.augment_copies(&ex, 5, "task/0");
    assert_eq!(one.len(), 4);
    assert_eq!(one, a.augment_copies(&ex, 5, "task/0"));
    assert_ne!(one, a.augment_copies(&ex, 6, "task/0"));
    for e in &one {
        let Example::Classify { label, .. } = e else {
            panic!()
        };
        assert_eq!(label, "pos");
    }
}

#[test]
fn char_noise_zero_is_identity_and_one_changes_text() {
    let mut rng = mtgpt_core::seed::rng_for(3, "n");
    assert_eq!(char_noise("hello world", 0.0, &mut rng), "hello world");
    assert_ne!(char_noise("hello world", 1.0, &mut rng), "hello world");
}
