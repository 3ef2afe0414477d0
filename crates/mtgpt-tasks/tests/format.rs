//! Formatting and collation for every task kind on a real (small) tokenizer.
use mtgpt_core::{Answer, Example, IGNORE_INDEX, Targets, TaskKind, TokenizerKind};
use mtgpt_tasks::{Target, TaskFormatter, span_text};
use mtgpt_text::{Segmenter, TextTokenizer, TrainOptions};
use std::sync::LazyLock;

static TOK: LazyLock<TextTokenizer> = LazyLock::new(|| {
    let corpus = [
        "北京是中国的首都，也是一座历史悠久的城市。",
        "The capital of France is Paris, a city on the Seine.",
        "小明在清华大学学习自然语言处理。",
        "To be, or not to be, that is the question.",
    ];
    let texts = corpus.iter().cycle().take(80);
    let tasks = ["lm", "cls", "qa", "tag", "gen"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let opts = TrainOptions {
        kind: TokenizerKind::Bpe,
        vocab_size: 400,
        min_frequency: 2,
        tasks,
        presegment: Some(Segmenter::default()),
    };
    TextTokenizer::train(texts, &opts).unwrap()
});

fn fmt(task: &str, kind: TaskKind, labels: &[&str], max_len: usize) -> TaskFormatter<'static> {
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    TaskFormatter::new(&TOK, task, kind, &labels, max_len).unwrap()
}

fn decode(ids: &[i64]) -> String {
    TOK.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false)
        .unwrap()
}

#[test]
fn lm_sequences_predict_the_next_token() {
    let f = fmt("lm", TaskKind::Lm, &[], 64);
    let out = f
        .format(
            &Example::Lm {
                text: "To be, or not to be".into(),
            },
            0,
        )
        .unwrap();
    let Target::Tokens(t) = &out[0].target else {
        panic!()
    };
    let ids = &out[0].ids;
    assert_eq!(decode(ids), "<|task:lm|>To be, or not to be<|endoftext|>");
    assert_eq!(&t[..ids.len() - 1], &ids[1..]);
    assert_eq!(*t.last().unwrap(), IGNORE_INDEX);
    let long = f
        .format(
            &Example::Lm {
                text: "to be ".repeat(100),
            },
            0,
        )
        .unwrap();
    assert_eq!(long[0].ids.len(), 64);
    assert_eq!(*long[0].ids.last().unwrap(), TOK.special().endoftext as i64);
}

#[test]
fn classify_pairs_are_separated_and_truncated() {
    let f = fmt("cls", TaskKind::Classify, &["neg", "pos"], 24);
    let ex = Example::Classify {
        text: "北京是中国的首都".into(),
        text_pair: Some("Paris is the capital of France".into()),
        label: "pos".into(),
    };
    let out = f.format(&ex, 0).unwrap();
    assert_eq!(out[0].target, Target::Class(1));
    assert!(out[0].ids.contains(&(TOK.special().sep as i64)));
    assert!(out[0].ids.len() <= 24);
    let bad = Example::Classify {
        text: "x".into(),
        text_pair: None,
        label: "meh".into(),
    };
    assert!(
        f.format(&bad, 0)
            .unwrap_err()
            .to_string()
            .contains("unknown label `meh`")
    );
}

#[test]
fn generate_has_loss_on_the_target_only() {
    let f = fmt("gen", TaskKind::Generate, &[], 64);
    let out = f
        .format(
            &Example::Generate {
                source: "首都是哪里?".into(),
                target: "北京".into(),
            },
            0,
        )
        .unwrap();
    let Target::Tokens(t) = &out[0].target else {
        panic!()
    };
    let predicted: Vec<i64> = t.iter().copied().filter(|&x| x != IGNORE_INDEX).collect();
    assert_eq!(decode(&predicted), "北京<|endoftext|>");
    assert!(decode(&out[0].ids).starts_with("<|task:gen|>首都是哪里?<|sep|>北京"));
}

#[test]
fn tagging_labels_the_first_sub_token_of_each_word() {
    let f = fmt(
        "tag",
        TaskKind::Tagging,
        &["O", "B-PER", "I-PER", "B-LOC"],
        64,
    );
    let tokens: Vec<String> = ["Xiaoming", "lives", "in", "Beijing"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let tags: Vec<String> = ["B-PER", "O", "O", "B-LOC"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = f.format(&Example::Tagging { tokens, tags }, 0).unwrap();
    let Target::Tags(t) = &out[0].target else {
        panic!()
    };
    let labelled: Vec<i64> = t.iter().copied().filter(|&x| x != IGNORE_INDEX).collect();
    assert_eq!(labelled, vec![1, 0, 0, 3]);
    assert_eq!(
        decode(&out[0].ids),
        "<|task:tag|>Xiaoming lives in Beijing<|endoftext|>"
    );
}

#[test]
fn repeated_tagging_input_labels_the_second_copy() {
    let f = fmt(
        "tag",
        TaskKind::Tagging,
        &["O", "B-PER", "I-PER", "B-LOC"],
        64,
    )
    .with_options(mtgpt_core::Attention::Repeat, 0.0);
    let tokens: Vec<String> = ["Xiaoming", "lives", "in", "Beijing"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let tags: Vec<String> = ["B-PER", "O", "O", "B-LOC"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = f.format(&Example::Tagging { tokens, tags }, 0).unwrap();
    assert_eq!(
        decode(&out[0].ids),
        "<|task:tag|>Xiaoming lives in Beijing<|sep|>Xiaoming lives in Beijing<|endoftext|>"
    );
    let Target::Tags(t) = &out[0].target else {
        panic!()
    };
    let sep = out[0]
        .ids
        .iter()
        .position(|&i| i == TOK.special().sep as i64)
        .unwrap();
    assert!(
        t[..=sep].iter().all(|&x| x == IGNORE_INDEX),
        "first copy unlabelled"
    );
    let labelled: Vec<i64> = t.iter().copied().filter(|&x| x != IGNORE_INDEX).collect();
    assert_eq!(labelled, vec![1, 0, 0, 3]);
    // Both copies fit in half the room each: a long sentence is cut the same in both.
    let long: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let f =
        fmt("tag", TaskKind::Tagging, &["O"], 32).with_options(mtgpt_core::Attention::Repeat, 0.0);
    let out = f
        .format(
            &Example::Tagging {
                tags: vec!["O".into(); long.len()],
                tokens: long,
            },
            0,
        )
        .unwrap();
    assert!(out[0].ids.len() <= 32);
    let sep = out[0]
        .ids
        .iter()
        .position(|&i| i == TOK.special().sep as i64)
        .unwrap();
    assert_eq!(
        out[0].ids[1..sep],
        out[0].ids[sep + 1..out[0].ids.len() - 1]
    );
}

#[test]
fn long_qa_contexts_are_windowed_and_answers_map_back() {
    for (context, answer) in [
        (
            "北京是中国的首都，也是一座历史悠久的城市。".repeat(3)
                + "小明在清华大学学习自然语言处理。",
            "清华大学",
        ),
        (
            "The capital of France is Paris, a city on the Seine. ".repeat(3)
                + "To be, or not to be, that is the question.",
            "the question",
        ),
    ] {
        let start = context
            .find(answer)
            .map(|b| context[..b].chars().count())
            .unwrap();
        let ex = Example::ExtractiveQa {
            context: context.clone(),
            question: "where?".into(),
            answer: Answer {
                text: answer.into(),
                start,
            },
        };
        let mut f = fmt("qa", TaskKind::ExtractiveQa, &[], 24);
        f.qa_stride = 4;
        let windows = f.format(&ex, 7).unwrap();
        assert!(windows.len() >= 3, "{} windows", windows.len());
        let mut found = 0;
        for w in &windows {
            assert!(w.ids.len() <= 24);
            let Target::Span {
                start,
                end,
                offsets,
                example,
            } = &w.target
            else {
                panic!()
            };
            assert_eq!(*example, 7);
            if *start > 0 {
                found += 1;
                assert_eq!(
                    span_text(&context, offsets, *start as usize, *end as usize).as_deref(),
                    Some(answer)
                );
            }
        }
        assert!(found >= 1, "{context}");
        let batch = f.collate(&windows).unwrap();
        assert!(matches!(batch.targets, Targets::Spans { .. }));
    }
}

#[test]
fn collate_pads_right_and_masks_padding() {
    let f = fmt("lm", TaskKind::Lm, &[], 64);
    let items: Vec<_> = ["To be", "To be, or not to be, that is the question."]
        .iter()
        .flat_map(|t| {
            f.format(
                &Example::Lm {
                    text: t.to_string(),
                },
                0,
            )
            .unwrap()
        })
        .collect();
    let b = f.collate(&items).unwrap();
    assert_eq!(b.batch_size, 2);
    assert_eq!(b.seq_len, items[1].ids.len());
    let n0 = items[0].ids.len();
    assert_eq!(
        b.attention_mask[..b.seq_len]
            .iter()
            .filter(|&&m| m == 1)
            .count(),
        n0
    );
    assert_eq!(b.input_ids[n0], TOK.special().pad as i64);
    let Targets::Tokens(t) = &b.targets else {
        panic!()
    };
    assert!(t[n0..b.seq_len].iter().all(|&x| x == IGNORE_INDEX));
}

#[test]
fn wrong_kinds_and_missing_task_tokens_are_errors() {
    let f = fmt("lm", TaskKind::Lm, &[], 64);
    let e = f
        .format(
            &Example::Generate {
                source: "a".into(),
                target: "b".into(),
            },
            0,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("task `lm` is lm, got a generate example"),
        "{e}"
    );
    let e = TaskFormatter::new(&TOK, "nope", TaskKind::Lm, &[], 64).unwrap_err();
    assert!(e.to_string().contains("<|task:nope|>"), "{e}");
}
