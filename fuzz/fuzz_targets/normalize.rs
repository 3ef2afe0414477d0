//! Normalization of any UTF-8: no panic, idempotent, and every offset maps back inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mtgpt_text::Normalizer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let n = Normalizer {
        lowercase: flags & 1 != 0,
        nfkc: flags & 2 != 0,
        halfwidth: flags & 4 != 0,
    };
    let once = n.normalize(text);
    let with = n.normalize_with_offsets(text);
    assert_eq!(with.text, once);
    let chars = once.chars().count();
    let input_chars = text.chars().count();
    assert_eq!(with.source.len(), chars + 1);
    for start in 0..=input_chars.min(64) {
        let (a, b) = with.normalized_range(start, input_chars);
        assert!(a <= b && b <= chars, "{start}: {a}..{b} of {chars}");
    }
    for start in 0..=chars.min(64) {
        let (a, b) = with.original_range(start, chars);
        assert!(
            a <= b && b <= input_chars,
            "{start}: {a}..{b} of {input_chars}"
        );
    }
});
