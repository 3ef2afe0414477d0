//! Augmentation of any text as every task kind: no panic, labels kept, QA answers found at
//! their (recomputed) start, tagging tokens and tags aligned.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mtgpt_core::{Answer, AugmentConfig, Example};
use mtgpt_text::Segmenter;
use mtgpt_text::augment::{Augmenter, Lexicon};
use std::sync::LazyLock;

static AUG: LazyLock<Augmenter> = LazyLock::new(|| {
    let lex = Lexicon::from_groups([
        vec!["good", "fine", "nice"],
        vec!["movie", "film"],
        vec!["喜欢", "喜爱"],
        vec!["北京", "首都"],
    ]);
    Augmenter::new(
        lex,
        Segmenter::default(),
        AugmentConfig {
            eda_alpha: 0.3,
            n_aug: 2,
            char_noise: 0.1,
            token_noise: 0.1,
        },
    )
});

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let seed = u64::from(seed);
    let _ = AUG.augment_copies(&Example::Lm { text: text.into() }, seed, "lm");
    for ex in AUG.augment_copies(
        &Example::Classify {
            text: text.into(),
            text_pair: Some(text.chars().rev().collect()),
            label: "pos".into(),
        },
        seed,
        "c",
    ) {
        assert!(matches!(ex, Example::Classify { ref label, .. } if label == "pos"));
    }
    // The answer is the middle third of the text (by chars), when there is one.
    let chars: Vec<char> = text.chars().collect();
    let (a, b) = (chars.len() / 3, 2 * chars.len() / 3);
    let answer: String = chars[a..b].iter().collect();
    if !answer.trim().is_empty() {
        let qa = Example::ExtractiveQa {
            context: text.into(),
            question: "what?".into(),
            answer: Answer {
                text: answer.clone(),
                start: a,
            },
        };
        for ex in AUG.augment_copies(&qa, seed, "qa") {
            let Example::ExtractiveQa {
                context,
                answer: got,
                ..
            } = ex
            else {
                panic!("kind changed");
            };
            assert_eq!(got.text, answer);
            let found: String = context
                .chars()
                .skip(got.start)
                .take(answer.chars().count())
                .collect();
            assert_eq!(found, answer, "context {context:?}");
        }
    }
    let tokens: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if !tokens.is_empty() {
        let tags: Vec<String> = (0..tokens.len())
            .map(|i| if i % 3 == 0 { "B-X".into() } else { "O".into() })
            .collect();
        for ex in AUG.augment_copies(&Example::Tagging { tokens, tags }, seed, "t") {
            let Example::Tagging { tokens, tags } = ex else {
                panic!("kind changed");
            };
            assert_eq!(tokens.len(), tags.len());
        }
    }
    let _ = AUG.augment_copies(
        &Example::Generate {
            source: text.into(),
            target: text.into(),
        },
        seed,
        "g",
    );
});
