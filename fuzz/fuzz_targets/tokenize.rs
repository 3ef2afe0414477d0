//! Byte-level BPE on any UTF-8: the fast path gives the reference ids, decoding gives the
//! text back exactly, and decoding arbitrary ids never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mtgpt_core::TokenizerKind;
use mtgpt_text::{Segmenter, TextTokenizer, TrainOptions};
use std::sync::LazyLock;

/// Trained once per process on the shipped English and Chinese samples.
static BPE: LazyLock<TextTokenizer> = LazyLock::new(|| {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let mut texts = Vec::new();
    for f in ["lm_en/valid.txt", "lm_zh/valid.txt"] {
        let text = std::fs::read_to_string(data.join(f)).expect("shipped sample");
        texts.extend(text.lines().map(str::to_string));
    }
    let opts = TrainOptions {
        kind: TokenizerKind::Bpe,
        vocab_size: 1000,
        min_frequency: 2,
        tasks: vec!["t".into()],
        presegment: Some(Segmenter::default()),
    };
    TextTokenizer::train(texts.iter(), &opts).expect("tokenizer trains")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let ids = BPE.encode_ids(text).expect("any UTF-8 encodes");
        assert_eq!(
            ids,
            BPE.encode_ids_reference(text).expect("reference encodes")
        );
        assert_eq!(BPE.decode(&ids, false).expect("own ids decode"), text);
        let enc = BPE.encode(text).expect("offsets");
        assert_eq!(enc.ids.len(), enc.offsets.len());
    }
    // Any ids: decoding may refuse, never panic.
    let ids: Vec<u32> = data
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .collect();
    let _ = BPE.decode(&ids, data.first().is_some_and(|b| b & 1 != 0));
});
