//! Segmentation of any UTF-8: no panic; pieces cover the text exactly; every word is the
//! slice of the input its offset says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mtgpt_text::Segmenter;
use std::sync::LazyLock;

static PLAIN: LazyLock<Segmenter> = LazyLock::new(Segmenter::default);
static HMM: LazyLock<Segmenter> = LazyLock::new(|| Segmenter::new(true));

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let seg: &Segmenter = if flags & 1 != 0 { &HMM } else { &PLAIN };
    assert_eq!(seg.pieces(text).concat(), text);
    for w in seg.words(text) {
        assert_eq!(text.get(w.start..w.end()), Some(w.text));
    }
    let _ = seg.segment_line(text);
});
