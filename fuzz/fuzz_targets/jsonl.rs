//! The task-file readers on any bytes, as every task kind, JSONL or raw text, with and
//! without a label set and `skip_bad`: no panic, and every error names the file and a line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mtgpt_core::TaskKind;
use mtgpt_text::data::{ExampleReader, ReadOptions};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let kinds = [
        TaskKind::Lm,
        TaskKind::Classify,
        TaskKind::ExtractiveQa,
        TaskKind::Tagging,
        TaskKind::Generate,
    ];
    let kind = kinds[usize::from(flags % 5)];
    let jsonl = kind != TaskKind::Lm || flags & 8 != 0;
    let opts = ReadOptions {
        skip_bad: flags & 16 != 0,
        labels: (flags & 32 != 0)
            .then(|| vec!["pos".into(), "neg".into(), "O".into(), "B-X".into()]),
    };
    let mut reader = ExampleReader::new(rest, Path::new("fuzz.jsonl"), kind, jsonl, opts);
    let mut last = 0;
    while let Some(item) = reader.next_example() {
        match item {
            Ok((line, _)) => {
                assert!(line > last);
                last = line;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("fuzz.jsonl:"), "{e}");
                break;
            }
        }
    }
});
