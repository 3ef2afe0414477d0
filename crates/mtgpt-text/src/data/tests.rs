use super::*;

fn read(kind: TaskKind, text: &str, opts: ReadOptions) -> Result<Vec<Example>> {
    ExampleReader::new(text.as_bytes(), Path::new("t.jsonl"), kind, true, opts)
        .map(|r| r.map(|(_, e)| e))
        .collect()
}

fn err(kind: TaskKind, line: &str) -> String {
    // A blank first line, so the bad record is line 2.
    read(kind, &format!("\n{line}\n"), ReadOptions::default())
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn a_line_over_the_record_limit_is_a_bad_record_and_the_next_line_still_reads() {
    let long = format!("{{\"text\": \"{}\"}}", "a".repeat(MAX_RECORD_BYTES + 10));
    let text = format!("{{\"text\": \"one\"}}\n{long}\n{{\"text\": \"three\"}}\n");
    let e = read(TaskKind::Lm, &text, ReadOptions::default()).unwrap_err();
    let want = format!(
        "t.jsonl:2: field `-`: the line is {} bytes, over the limit of 4 MiB per record",
        long.len() + 1
    );
    assert_eq!(e.to_string(), want);
    let opts = ReadOptions {
        skip_bad: true,
        ..Default::default()
    };
    let mut r = ExampleReader::new(
        text.as_bytes(),
        Path::new("t.jsonl"),
        TaskKind::Lm,
        true,
        opts,
    );
    let lines: Vec<usize> = r.by_ref().map(|x| x.unwrap().0).collect();
    assert_eq!(lines, [1, 3]);
    assert_eq!(r.report().skipped, 1);
    // Exactly at the limit (newline not counted) is still a record.
    let fits = format!("{{\"text\": \"{}\"}}", "b".repeat(MAX_RECORD_BYTES - 12));
    assert_eq!(fits.len(), MAX_RECORD_BYTES);
    assert_eq!(
        read(TaskKind::Lm, &format!("{fits}\n"), ReadOptions::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_records_name_file_line_and_field() {
    use TaskKind::*;
    let cases = [
        (
            Classify,
            "{\"text\": 5, \"label\": \"a\"}",
            "t.jsonl:2: field `text`: expected a string, found a number",
        ),
        (
            Classify,
            "{\"text\": \"x\"}",
            "t.jsonl:2: field `label`: missing",
        ),
        (
            Classify,
            "{\"text\": \"  \", \"label\": \"a\"}",
            "t.jsonl:2: field `text`: empty",
        ),
        (
            Classify,
            "{\"text\": \"x\", \"label\": ",
            "t.jsonl:2: field `-`: not valid JSON",
        ),
        (
            Classify,
            "[1,2]",
            "t.jsonl:2: field `-`: expected a JSON object",
        ),
        (
            Tagging,
            "{\"tokens\": [\"a\",\"b\"], \"tags\": [\"O\"]}",
            "t.jsonl:2: field `tags`: 1 tags for 2 tokens",
        ),
        (
            Tagging,
            "{\"tokens\": [\"a\", 3], \"tags\": [\"O\",\"O\"]}",
            "field `tokens[1]`: expected a string",
        ),
        (
            Generate,
            "{\"source\": \"x\", \"target\": null}",
            "field `target`: expected a string, found null",
        ),
        (
            ExtractiveQa,
            "{\"context\": \"abc\", \"question\": \"q\", \"answer\": {\"text\": \"b\", \"start\": 0}}",
            "field `answer.start`: the context at char 0 is \"a\", not the answer \"b\" (it occurs at char 1)",
        ),
        (
            ExtractiveQa,
            "{\"context\": \"abc\", \"question\": \"q\", \"answer\": {\"text\": \"z\", \"start\": 0}}",
            "does not occur in the context",
        ),
        (
            ExtractiveQa,
            "{\"context\": \"abc\", \"question\": \"q\", \"answer\": {\"text\": \"a\", \"start\": -1}}",
            "field `answer.start`",
        ),
    ];
    for (kind, line, want) in cases {
        let got = err(kind, line);
        assert!(got.contains(want), "{line}: got {got:?}, want {want:?}");
    }
}

#[test]
fn invalid_utf8_is_a_bad_record() {
    let bytes: &[u8] = b"{\"text\":\"a\xff\"}\n";
    let e = ExampleReader::new(
        bytes,
        Path::new("x.jsonl"),
        TaskKind::Lm,
        true,
        ReadOptions::default(),
    )
    .next()
    .unwrap()
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("x.jsonl:1: field `-`: invalid UTF-8"),
        "{e}"
    );
}

#[test]
fn unknown_labels_are_rejected_or_skipped_and_counted() {
    let text = "{\"text\":\"a\",\"label\":\"pos\"}\n\n{\"text\":\"b\",\"label\":\"meh\"}\n{\"text\":\"c\",\"label\":\"neg\"}\n";
    let labels = Some(vec!["neg".to_string(), "pos".to_string()]);
    let e = read(
        TaskKind::Classify,
        text,
        ReadOptions {
            skip_bad: false,
            labels: labels.clone(),
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("t.jsonl:3: field `label`: unknown label `meh`"),
        "{e}"
    );
    let mut r = ExampleReader::new(
        text.as_bytes(),
        Path::new("t.jsonl"),
        TaskKind::Classify,
        true,
        ReadOptions {
            skip_bad: true,
            labels,
        },
    );
    let got: Vec<usize> = r.by_ref().map(|x| x.unwrap().0).collect();
    assert_eq!(got, vec![1, 4]);
    assert_eq!(
        (r.report().read, r.report().skipped, r.report().blank),
        (2, 1, 1)
    );
    assert!(r.report().first_errors[0].contains(":3:"));
}

#[test]
fn every_kind_reads_its_fields() {
    let ok = [
        (TaskKind::Lm, r#"{"text":"hello"}"#),
        (
            TaskKind::Classify,
            r#"{"text":"a","text_pair":"b","label":1}"#,
        ),
        (
            TaskKind::ExtractiveQa,
            r#"{"context":"北京是首都","question":"首都?","answer":{"text":"首都","start":3}}"#,
        ),
        (
            TaskKind::Tagging,
            r#"{"tokens":["小","明"],"tags":["B-PER","I-PER"]}"#,
        ),
        (TaskKind::Generate, r#"{"source":"s","target":"t"}"#),
    ];
    for (kind, line) in ok {
        let ex = read(kind, line, ReadOptions::default()).unwrap();
        assert_eq!(ex[0].kind(), kind);
    }
}

#[test]
fn split_is_seeded_and_complete() {
    let items: Vec<u32> = (0..100).collect();
    let (tr, va, te) = split(items.clone(), 0.1, 0.2, 7, "t");
    assert_eq!((tr.len(), va.len(), te.len()), (70, 10, 20));
    let mut all: Vec<u32> = tr.iter().chain(&va).chain(&te).copied().collect();
    all.sort();
    assert_eq!(all, items);
    assert_eq!(split(items.clone(), 0.1, 0.2, 7, "t").1, va);
    assert_ne!(split(items, 0.1, 0.2, 8, "t").1, va);
}

#[test]
fn a_byte_order_mark_reads_as_without() {
    // (file name, kind, contents): JSONL task data and a raw .txt LM corpus.
    let cases = [
        (
            "tr.jsonl",
            TaskKind::Classify,
            "{\"text\":\"a\",\"label\":\"pos\"}\n{\"text\":\"b\",\"label\":\"neg\"}\n",
        ),
        ("lm.jsonl", TaskKind::Lm, "{\"text\":\"hello\"}\n"),
        ("lm.txt", TaskKind::Lm, "first line\nsecond line\n"),
        ("blank.txt", TaskKind::Lm, "\n\nthird\n"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, kind, text) in cases {
        let path = dir.path().join(name);
        let mut got = Vec::new();
        for prefix in ["", "\u{feff}"] {
            std::fs::write(&path, format!("{prefix}{text}")).unwrap();
            let (examples, report) = read_examples(&path, kind, ReadOptions::default())
                .unwrap_or_else(|e| panic!("{name} {prefix:?}: {e}"));
            got.push((examples, report.blank));
        }
        assert_eq!(got[0], got[1], "{name}");
    }
    // Only line 1 may start with one.
    let e = read(
        TaskKind::Lm,
        "{\"text\":\"a\"}\n\u{feff}{\"text\":\"b\"}\n",
        ReadOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.jsonl:2: field `-`: not valid JSON"),
        "{e}"
    );
}

#[test]
fn guess_kind_reads_the_first_non_blank_line() {
    let cases = [
        (
            "{\"context\":\"c\",\"question\":\"q\"}",
            Some(TaskKind::ExtractiveQa),
        ),
        (
            "{\"tokens\":[\"a\"],\"tags\":[\"O\"]}",
            Some(TaskKind::Tagging),
        ),
        (
            "{\"source\":\"s\",\"target\":\"t\"}",
            Some(TaskKind::Generate),
        ),
        ("{\"text\":\"t\",\"label\":\"x\"}", Some(TaskKind::Classify)),
        ("{\"text\":\"t\"}", Some(TaskKind::Lm)),
        ("not json", None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    for (line, want) in cases {
        for prefix in ["", "\u{feff}", "\n  \n"] {
            std::fs::write(&path, format!("{prefix}{line}\n")).unwrap();
            let got = guess_kind(&path);
            match want {
                Some(k) => assert_eq!(got.unwrap(), k, "{line} {prefix:?}"),
                None => assert!(
                    got.unwrap_err()
                        .to_string()
                        .contains("field `-`: not valid JSON"),
                    "{line}"
                ),
            }
        }
    }
    std::fs::write(&path, "\n\n").unwrap();
    assert!(guess_kind(&path).is_err());
}
