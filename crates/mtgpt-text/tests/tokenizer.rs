//! Tokenizer training, special tokens, offsets, save/load and round trips on mixed text.
use mtgpt_core::TokenizerKind;
use mtgpt_text::tokenizer::{ENDOFTEXT, PAD, SEP, task_token};
use mtgpt_text::{Segmenter, TextTokenizer, TrainOptions};
use proptest::prelude::*;
use std::sync::LazyLock;

const CORPUS: &[&str] = &[
    "我来到北京清华大学，学习自然语言处理。",
    "他来到了网易杭研大厦。今天天气很好，我们去公园散步。",
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer the slings and arrows.",
    "The quick brown fox jumps over the lazy dog 123 times.",
    "混合 text 也可以：iPhone 15 很贵，price is 999 dollars.",
];

fn corpus() -> impl Iterator<Item = &'static str> + Send {
    CORPUS.iter().copied().cycle().take(CORPUS.len() * 20)
}

fn opts(kind: TokenizerKind, presegment: bool, vocab: usize) -> TrainOptions {
    TrainOptions {
        kind,
        vocab_size: vocab,
        min_frequency: 2,
        tasks: vec!["lm_en".into(), "ner_zh".into()],
        presegment: presegment.then(Segmenter::default),
    }
}

static BPE: LazyLock<TextTokenizer> =
    LazyLock::new(|| TextTokenizer::train(corpus(), &opts(TokenizerKind::Bpe, true, 400)).unwrap());

static BPE_PLAIN: LazyLock<TextTokenizer> = LazyLock::new(|| {
    TextTokenizer::train(corpus(), &opts(TokenizerKind::Bpe, false, 400)).unwrap()
});

#[test]
fn fast_path_matches_on_the_shipped_corpora() {
    for rel in [
        "lm_en/valid.txt",
        "lm_zh/valid.txt",
        "sentiment_zh/valid.jsonl",
        "spam_en/valid.jsonl",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data")
            .join(rel);
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            assert_eq!(
                BPE.encode_ids(line).unwrap(),
                BPE.encode_ids_reference(line).unwrap(),
                "{line:?}"
            );
        }
    }
}

#[test]
fn bpe_has_special_and_task_tokens_first() {
    let t = &*BPE;
    assert_eq!(t.token_id(ENDOFTEXT), Some(0));
    assert_eq!(t.token_id(PAD), Some(1));
    assert_eq!(t.token_id(SEP), Some(2));
    assert!(t.task_id("lm_en").is_some() && t.task_id("ner_zh").is_some());
    assert!(
        t.vocab_size() <= 400 && t.vocab_size() > 300,
        "{}",
        t.vocab_size()
    );
    // A special token written in text is one token.
    let ids = t
        .encode_ids(&format!("{}问题{SEP}答案", task_token("ner_zh")))
        .unwrap();
    assert_eq!(ids[0], t.task_id("ner_zh").unwrap());
    assert!(ids.contains(&t.special().sep));
}

#[test]
fn presegmented_merges_respect_jieba_words() {
    // 北京 and 清华大学 are jieba words: no token may span 京清.
    let t = &*BPE;
    let text = "我来到北京清华大学";
    let enc = t.encode(text).unwrap();
    let chars: Vec<char> = text.chars().collect();
    let boundary = chars.iter().position(|&c| c == '清').unwrap();
    for &(s, e) in &enc.offsets {
        assert!(
            !(s < boundary && e > boundary),
            "token {s}..{e} crosses the word boundary"
        );
    }
}

#[test]
fn offsets_are_char_ranges_of_the_input() {
    let t = &*BPE;
    let text = "混合 text 也可以：iPhone 15";
    let enc = t.encode(text).unwrap();
    assert_eq!(enc.ids.len(), enc.offsets.len());
    let chars: Vec<char> = text.chars().collect();
    let mut rebuilt = String::new();
    let mut last_end = 0;
    for &(s, e) in &enc.offsets {
        assert!(s <= e && e <= chars.len());
        if s >= last_end {
            rebuilt.extend(&chars[s..e]);
            last_end = e;
        }
    }
    assert_eq!(rebuilt, text);
}

#[test]
fn save_load_gives_the_same_ids_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    BPE.save(&path).unwrap();
    assert!(TextTokenizer::meta_path(&path).exists());
    let loaded = TextTokenizer::load(&path).unwrap();
    assert_eq!(loaded.meta(), BPE.meta());
    for text in CORPUS {
        assert_eq!(
            loaded.encode_ids(text).unwrap(),
            BPE.encode_ids(text).unwrap()
        );
    }
}

#[test]
fn char_tokenizer_round_trips_known_characters() {
    let t = TextTokenizer::train(corpus(), &opts(TokenizerKind::Char, false, 1000)).unwrap();
    let text = "我来到北京，to be or not";
    let ids = t.encode_ids(text).unwrap();
    assert_eq!(ids.len(), text.chars().count());
    assert_eq!(t.decode(&ids, false).unwrap(), text);
    // Characters never seen map to <|unk|>.
    let ids = t.encode_ids("龘").unwrap();
    assert_eq!(ids, vec![t.token_id("<|unk|>").unwrap()]);
}

#[test]
fn bad_tokenizer_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{not json").unwrap();
    let e = TextTokenizer::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("not a valid tokenizer.json"),
        "{e}"
    );
    let e = TextTokenizer::load(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
    // A valid HF tokenizer without mtgpt's special tokens.
    let plain = serde_json::json!({"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"}});
    std::fs::write(&path, plain.to_string()).unwrap();
    let e = TextTokenizer::load(&path).unwrap_err().to_string();
    assert!(e.contains("has no `<|endoftext|>` token"), "{e}");
}

#[test]
fn vocab_too_small_is_rejected() {
    let e = TextTokenizer::train(corpus(), &opts(TokenizerKind::Bpe, false, 200)).unwrap_err();
    assert!(e.to_string().contains("vocab_size"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn bpe_round_trips_any_utf8(text in any::<String>()) {
        // Text that spells a special token decodes to it as well; skip_special = false.
        let ids = BPE.encode_ids(&text).unwrap();
        prop_assert_eq!(BPE.decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn fast_path_gives_the_reference_ids(text in any::<String>()) {
        prop_assert_eq!(BPE.encode_ids(&text).unwrap(), BPE.encode_ids_reference(&text).unwrap());
        prop_assert_eq!(BPE_PLAIN.encode_ids(&text).unwrap(), BPE_PLAIN.encode_ids_reference(&text).unwrap());
    }

    #[test]
    fn fast_path_gives_the_reference_ids_on_mixed_text(text in "([a-zA-Z0-9 \\t\\n',.!?\"<>|:]|我|来到|北京|清华大学|。|，|“|”|、|…|<\\|sep\\|>|<\\|task:lm_en\\|>|'s|'ll){0,60}") {
        prop_assert_eq!(BPE.encode_ids(&text).unwrap(), BPE.encode_ids_reference(&text).unwrap());
        prop_assert_eq!(BPE_PLAIN.encode_ids(&text).unwrap(), BPE_PLAIN.encode_ids_reference(&text).unwrap());
    }

    #[test]
    fn bpe_round_trips_mixed_chinese_english(text in "[a-zA-Z0-9 ,.!?，。！？我来到北京清华大学今天天气很好的是了在]{0,40}") {
        let ids = BPE.encode_ids(&text).unwrap();
        prop_assert_eq!(BPE.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn load_with_tokens_appends_only_what_is_missing_and_moves_no_id() {
    let dir = tempfile::tempdir().unwrap();
    // A GPT-2-style tokenizer.json from elsewhere: byte-level BPE, only <|endoftext|>.
    let bpe = tokenizers::models::bpe::BPE::default();
    let trainer = tokenizers::models::bpe::BpeTrainerBuilder::new()
        .vocab_size(300)
        .special_tokens(vec![tokenizers::AddedToken::from(ENDOFTEXT, true)])
        .initial_alphabet(
            tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
                .into_iter()
                .collect(),
        )
        .build();
    let mut hf = tokenizers::TokenizerBuilder::<
        tokenizers::models::bpe::BPE,
        tokenizers::NormalizerWrapper,
        tokenizers::pre_tokenizers::byte_level::ByteLevel,
        tokenizers::PostProcessorWrapper,
        tokenizers::decoders::byte_level::ByteLevel,
    >::new()
    .with_model(bpe)
    .with_pre_tokenizer(Some(
        tokenizers::pre_tokenizers::byte_level::ByteLevel::default(),
    ))
    .with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()))
    .build()
    .unwrap();
    let mut trainer = trainer;
    hf.train(
        &mut trainer,
        CORPUS.iter().map(|s| s.to_string()).cycle().take(120),
    )
    .unwrap();
    let path = dir.path().join("tokenizer.json");
    hf.save(&path, false).unwrap();
    let plain: tokenizers::Tokenizer = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let n = plain.get_vocab_size(true);
    // Loading it as is fails for want of mtgpt's tokens …
    let e = TextTokenizer::load(&path).unwrap_err().to_string();
    assert!(e.contains(PAD), "{e}");
    // … with them appended it loads; every id it had stays, the new ones come after.
    let tasks = vec!["cls".to_string()];
    let (tok, added) = TextTokenizer::load_with_tokens(&path, &tasks).unwrap();
    assert_eq!(
        added,
        vec![
            PAD.to_string(),
            SEP.into(),
            "<|mask|>".into(),
            task_token("cls")
        ]
    );
    assert_eq!(tok.vocab_size(), n + 4);
    assert_eq!(
        tok.special().endoftext,
        plain.token_to_id(ENDOFTEXT).unwrap()
    );
    assert_eq!(tok.special().pad as usize, n);
    assert_eq!(tok.task_id("cls"), Some(n as u32 + 3));
    let text = "To be, or not to be 北京";
    let ids = plain.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.encode_ids(text).unwrap(), ids);
    assert_eq!(
        tok.encode_ids(&format!("{text}{SEP}")).unwrap().last(),
        Some(&tok.special().sep)
    );
    // Saved and loaded with the same tasks again, nothing more is added.
    let again = dir.path().join("again.json");
    tok.save(&again).unwrap();
    let (tok2, added2) = TextTokenizer::load_with_tokens(&again, &tasks).unwrap();
    assert!(added2.is_empty(), "{added2:?}");
    assert_eq!(tok2.vocab_size(), tok.vocab_size());
    assert_eq!(tok2.meta().tasks, tasks);
}
