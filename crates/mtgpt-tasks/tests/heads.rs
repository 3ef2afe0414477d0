//! Each head trains on a tiny synthetic task until its metric is near perfect, on a tiny
//! trunk; `freeze_trunk` leaves the trunk untouched.
use mtgpt_core::{Answer, Example, ModelConfig, Precision, Targets, TaskKind, TokenizerKind};
use mtgpt_model::{GenerateConfig, generate};
use mtgpt_tasks::{
    HeadSpec, MultiTaskModel, Target, TaskFormatter, best_span, predict_classes, predict_tags,
};
use mtgpt_text::{TextTokenizer, TrainOptions};
use rand::{Rng, SeedableRng};
use std::sync::LazyLock;
use tch::nn::OptimizerConfig;
use tch::{Device, nn};

/// Tests in this file seed libtorch's process-wide generator; run them one at a time so
/// their initialisations do not interleave.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

type Rng8 = rand_chacha::ChaCha8Rng;

const TASKS: [(&str, TaskKind); 5] = [
    ("lm", TaskKind::Lm),
    ("cls", TaskKind::Classify),
    ("qa", TaskKind::ExtractiveQa),
    ("tag", TaskKind::Tagging),
    ("gen", TaskKind::Generate),
];

static TOK: LazyLock<TextTokenizer> = LazyLock::new(|| {
    let alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ?";
    let opts = TrainOptions {
        kind: TokenizerKind::Char,
        vocab_size: 100,
        min_frequency: 1,
        tasks: TASKS.iter().map(|(n, _)| n.to_string()).collect(),
        presegment: None,
    };
    TextTokenizer::train([alphabet].into_iter(), &opts).unwrap()
});

/// The tiny trunk of these tests.
fn tiny_config() -> ModelConfig {
    ModelConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        d_ff: 64,
        block_size: 48,
        vocab_size: TOK.vocab_size(),
        dropout: 0.0,
        layer_norm_eps: 1e-5,
        precision: Precision::Fp32,
        layer_heads: Vec::new(),
        layer_d_ff: Vec::new(),
    }
}

fn model(task: &str, kind: TaskKind, labels: usize) -> MultiTaskModel {
    // Tagging reads two tokens of right context, as tagging tasks do by default.
    let context = if kind == TaskKind::Tagging {
        mtgpt_core::DEFAULT_TAG_CONTEXT
    } else {
        0
    };
    model_with_context(task, kind, labels, context)
}

fn model_with_context(task: &str, kind: TaskKind, labels: usize, context: usize) -> MultiTaskModel {
    tch::manual_seed(1);
    let config = tiny_config();
    let spec = HeadSpec {
        pool: Default::default(),
        name: task.into(),
        kind,
        num_labels: labels,
        tag_context: context,
        crf: false,
    };
    MultiTaskModel::new(&config, &[spec], Device::Cpu).unwrap()
}

fn letters(rng: &mut Rng8, n: usize, from: &[u8]) -> String {
    (0..n)
        .map(|_| from[rng.random_range(0..from.len())] as char)
        .collect()
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Trains `m` on batches of 16 fresh examples for `steps` AdamW steps.
fn train(
    m: &MultiTaskModel,
    f: &TaskFormatter,
    steps: usize,
    mut make: impl FnMut(&mut Rng8) -> Example,
) {
    let mut rng = Rng8::seed_from_u64(7);
    let mut opt = nn::AdamW::default().build(&m.vs, 3e-3).unwrap();
    for _ in 0..steps {
        let items: Vec<_> = (0..16)
            .flat_map(|i| f.format(&make(&mut rng), i).unwrap())
            .collect();
        let out = m.forward(&f.collate(&items).unwrap(), true).unwrap();
        opt.backward_step(&out.loss);
    }
}

#[test]
fn classify_head_learns_a_rule() {
    let _serial = serial();
    let labels = vec!["no".to_string(), "yes".to_string()];
    let f = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 32).unwrap();
    let m = model("cls", TaskKind::Classify, 2);
    learns_the_first_letter_rule(&m, &f);
}

/// Trains classifier `m` on "yes when the first of six letters is at most `m`" and checks
/// at least 60 of 64 fresh examples.
fn learns_the_first_letter_rule(m: &MultiTaskModel, f: &TaskFormatter) {
    let make = |rng: &mut Rng8| {
        let text = letters(rng, 6, LOWER);
        let label = if text.as_bytes()[0] <= b'm' {
            "yes"
        } else {
            "no"
        };
        Example::Classify {
            text,
            text_pair: None,
            label: label.into(),
        }
    };
    train(m, f, 250, make);
    let mut rng = Rng8::seed_from_u64(99);
    let test: Vec<Example> = (0..64).map(|_| make(&mut rng)).collect();
    let items: Vec<_> = test.iter().flat_map(|e| f.format(e, 0).unwrap()).collect();
    let out = tch::no_grad(|| m.forward(&f.collate(&items).unwrap(), false).unwrap());
    let pred = predict_classes(&out.logits);
    let correct = items
        .iter()
        .zip(&pred)
        .filter(|(it, p)| it.target == Target::Class(**p))
        .count();
    assert!(correct >= 60, "{correct}/64");
}

#[test]
fn a_mean_pooled_classifier_reads_every_real_token_and_learns_a_rule() {
    let _serial = serial();
    use mtgpt_tasks::Head;
    let labels = vec!["no".to_string(), "yes".to_string()];
    let f = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 32).unwrap();
    tch::manual_seed(1);
    let spec = HeadSpec {
        pool: mtgpt_core::Pool::Mean,
        name: "cls".into(),
        kind: TaskKind::Classify,
        num_labels: 2,
        tag_context: 0,
        crf: false,
    };
    let m = MultiTaskModel::new(&tiny_config(), &[spec], Device::Cpu).unwrap();
    // Rows of 2 to 20 letters: the logits of the padded batch, of the packed batch and of the
    // fast path are the head over the mean of each row's hidden states, computed alone.
    let mut rng = Rng8::seed_from_u64(5);
    let items: Vec<_> = (0..6)
        .flat_map(|i| {
            let ex = Example::Classify {
                text: letters(&mut rng, 2 + 3 * i, LOWER),
                text_pair: None,
                label: "no".into(),
            };
            f.format(&ex, i).unwrap()
        })
        .collect();
    let batch = f.collate(&items).unwrap();
    let Head::Classify { lin, .. } = &m.heads["cls"].1 else {
        panic!("not a classify head")
    };
    tch::no_grad(|| {
        let want = m.forward(&batch, false).unwrap().logits;
        for (r, item) in items.iter().enumerate() {
            let ids = tch::Tensor::from_slice(&item.ids).view([1, -1]);
            let h = m.gpt.forward(&ids, None, None, false).unwrap().hidden;
            let by_hand = lin.forward(&h.mean_dim(1, false, tch::Kind::Float), Precision::Fp32);
            let d = (by_hand.get(0) - want.get(r as i64))
                .abs()
                .max()
                .double_value(&[]);
            assert!(d < 1e-5, "row {r}: {d}");
        }
        let packed = m.pack(std::slice::from_ref(&batch), 48).unwrap();
        assert!(packed.rows < batch.batch_size);
        for p in [None, Some(&packed)] {
            let got = m.classify_logits(&batch, p).unwrap();
            let d = (&got - &want).abs().max().double_value(&[]);
            assert!(d < 1e-5, "packed {}: {d}", p.is_some());
        }
    });
    // It learns the rule of `classify_head_learns_a_rule`.
    learns_the_first_letter_rule(&m, &f);
}

#[test]
fn tagging_head_learns_per_token_labels() {
    let _serial = serial();
    let labels = vec!["O".to_string(), "B-UP".to_string()];
    let f = TaskFormatter::new(&TOK, "tag", TaskKind::Tagging, &labels, 32).unwrap();
    let m = model("tag", TaskKind::Tagging, 2);
    let make = |rng: &mut Rng8| {
        let tokens: Vec<String> = (0..8)
            .map(|_| {
                let set = if rng.random_bool(0.3) { UPPER } else { LOWER };
                letters(rng, 1, set)
            })
            .collect();
        let tags = tokens
            .iter()
            .map(|t| {
                if t.chars().all(|c| c.is_uppercase()) {
                    "B-UP"
                } else {
                    "O"
                }
                .to_string()
            })
            .collect();
        Example::Tagging { tokens, tags }
    };
    train(&m, &f, 150, make);
    let mut rng = Rng8::seed_from_u64(98);
    let items: Vec<_> = (0..32)
        .flat_map(|i| f.format(&make(&mut rng), i).unwrap())
        .collect();
    let out = tch::no_grad(|| m.forward(&f.collate(&items).unwrap(), false).unwrap());
    let pred = predict_tags(&out.logits);
    let (mut right, mut total) = (0, 0);
    for (it, p) in items.iter().zip(&pred) {
        let Target::Tags(gold) = &it.target else {
            panic!()
        };
        for (g, q) in gold.iter().zip(p) {
            if *g >= 0 {
                total += 1;
                right += usize::from(g == q);
            }
        }
    }
    assert!(right as f64 >= 0.97 * total as f64, "{right}/{total}");
}

#[test]
fn span_head_finds_the_answer() {
    let _serial = serial();
    let f = TaskFormatter::new(&TOK, "qa", TaskKind::ExtractiveQa, &[], 40).unwrap();
    let m = model("qa", TaskKind::ExtractiveQa, 0);
    let make = |rng: &mut Rng8| {
        let n = rng.random_range(0..8);
        let before = letters(rng, n, LOWER);
        let n = rng.random_range(2..4);
        let answer = letters(rng, n, UPPER);
        let n = rng.random_range(0..8);
        let after = letters(rng, n, LOWER);
        let start = before.len();
        Example::ExtractiveQa {
            context: format!("{before}{answer}{after}"),
            question: "where?".into(),
            answer: Answer {
                text: answer,
                start,
            },
        }
    };
    train(&m, &f, 250, make);
    let mut rng = Rng8::seed_from_u64(97);
    let mut exact = 0;
    for i in 0..40 {
        let ex = make(&mut rng);
        let Example::ExtractiveQa {
            context, answer, ..
        } = &ex
        else {
            panic!()
        };
        let items = f.format(&ex, i).unwrap();
        let out = tch::no_grad(|| m.forward(&f.collate(&items).unwrap(), false).unwrap());
        let Target::Span { offsets, .. } = &items[0].target else {
            panic!()
        };
        let allowed: Vec<bool> = offsets.iter().map(Option::is_some).collect();
        let (s, e) = best_span(&out.logits.get(0), &allowed, 10).unwrap();
        exact += usize::from(
            mtgpt_tasks::span_text(context, offsets, s, e).as_deref() == Some(answer.text.as_str()),
        );
    }
    assert!(exact >= 36, "{exact}/40");

    // The Evaluator's QA path (windows, best span, text back) scores the same model.
    let head = task_head("qa", TaskKind::ExtractiveQa, vec![]);
    let eval = mtgpt_tasks::Evaluator::new(&m, &TOK, &head, 40).unwrap();
    let mut rng = Rng8::seed_from_u64(95);
    let test: Vec<Example> = (0..40).map(|_| make(&mut rng)).collect();
    let scores = eval.evaluate(&test).unwrap();
    assert!(scores.metrics["exact_match"] >= 0.9, "{:?}", scores.metrics);
    let preds = eval.predict(&test[..1]).unwrap();
    let (
        mtgpt_tasks::Prediction::Span {
            start: Some(s),
            text,
        },
        Example::ExtractiveQa { answer, .. },
    ) = (&preds[0], &test[0])
    else {
        panic!()
    };
    if *text == answer.text {
        assert_eq!(*s, answer.start, "the char offset in the context");
    }
}

/// A head description as a model folder's `tasks.json` holds it, with the defaults a task
/// of `kind` gets when its config sets nothing else.
fn task_head(name: &str, kind: TaskKind, labels: Vec<String>) -> mtgpt_tasks::TaskHead {
    mtgpt_tasks::TaskHead {
        pool: Default::default(),
        name: name.into(),
        kind,
        labels,
        attention: Default::default(),
        decode: None,
        tag_context: 0,
        tag_words: false,
        word_splits: Default::default(),
        crf: false,
    }
}

/// The `gen` task's prompt for `source`, as the formatter writes it: task token, source, sep.
fn generate_prompt(source: &str) -> Vec<i64> {
    let mut prompt = vec![TOK.task_id("gen").unwrap() as i64];
    prompt.extend(TOK.encode_ids(source).unwrap().iter().map(|&i| i as i64));
    prompt.push(TOK.special().sep as i64);
    prompt
}

#[test]
fn generate_head_learns_to_copy() {
    let _serial = serial();
    let f = TaskFormatter::new(&TOK, "gen", TaskKind::Generate, &[], 32).unwrap();
    let m = model("gen", TaskKind::Generate, 0);
    let make = |rng: &mut Rng8| {
        let s = letters(rng, 3, b"abcde");
        Example::Generate {
            source: s.clone(),
            target: s.to_uppercase(),
        }
    };
    train(&m, &f, 400, make);
    let sp = TOK.special();
    let mut rng = Rng8::seed_from_u64(96);
    let mut exact = 0;
    for _ in 0..30 {
        let Example::Generate { source, target } = make(&mut rng) else {
            panic!()
        };
        let prompt = generate_prompt(&source);
        let cfg = GenerateConfig {
            max_new_tokens: 6,
            greedy: true,
            stop_tokens: vec![sp.endoftext as i64],
            ..Default::default()
        };
        let out = generate(&m.gpt, &[prompt], sp.pad as i64, &cfg).unwrap();
        let ids: Vec<u32> = out[0].iter().map(|&i| i as u32).collect();
        exact += usize::from(TOK.decode(&ids, true).unwrap() == target);
    }
    assert!(exact >= 27, "{exact}/30");

    let head = task_head("gen", TaskKind::Generate, vec![]);
    let mut eval = mtgpt_tasks::Evaluator::new(&m, &TOK, &head, 32).unwrap();
    eval.decode.max_new_tokens = 6;
    let mut rng = Rng8::seed_from_u64(94);
    let test: Vec<Example> = (0..30).map(|_| make(&mut rng)).collect();
    let scores = eval.evaluate(&test).unwrap();
    assert!(
        scores.metrics["exact_match"] >= 0.9 && scores.metrics["rouge_l"] >= 0.9,
        "{:?}",
        scores.metrics
    );
}

#[test]
fn evaluator_decodes_by_beam_search_when_decode_sets_num_beams() {
    let _serial = serial();
    // A trunk barely trained on copying: greedy and beam search part ways on some prompts.
    let m = model("gen", TaskKind::Generate, 0);
    let f = TaskFormatter::new(&TOK, "gen", TaskKind::Generate, &[], 32).unwrap();
    train(&m, &f, 15, |rng| {
        let s = letters(rng, 3, b"abcde");
        Example::Generate {
            source: s.clone(),
            target: s.to_uppercase(),
        }
    });
    let head = task_head("gen", TaskKind::Generate, vec![]);
    let mut eval = mtgpt_tasks::Evaluator::new(&m, &TOK, &head, 32).unwrap();
    eval.decode.max_new_tokens = 6;
    let mut rng = Rng8::seed_from_u64(5);
    let test: Vec<Example> = (0..40)
        .map(|_| Example::Generate {
            source: letters(&mut rng, 3, b"abcde"),
            target: String::new(),
        })
        .collect();
    let sp = TOK.special();
    let decode_with = |beams: usize| -> Vec<mtgpt_tasks::Prediction> {
        test.iter()
            .map(|ex| {
                let Example::Generate { source, .. } = ex else {
                    panic!()
                };
                let cfg = GenerateConfig {
                    max_new_tokens: 6,
                    greedy: true,
                    num_beams: beams,
                    stop_tokens: vec![sp.endoftext as i64],
                    no_repeat_ngram_size: eval.decode.no_repeat_ngram_size,
                    prefix_prompt: head.attention == mtgpt_core::Attention::Prefix,
                    ..Default::default()
                };
                let out =
                    generate(&m.gpt, &[generate_prompt(source)], sp.pad as i64, &cfg).unwrap();
                let ids: Vec<u32> = out[0].iter().map(|&i| i as u32).collect();
                mtgpt_tasks::Prediction::Text(TOK.decode(&ids, true).unwrap().trim().to_string())
            })
            .collect()
    };
    let (greedy, beam) = (decode_with(1), decode_with(4));
    assert_ne!(greedy, beam, "the fixture must tell the two decoders apart");
    assert_eq!(eval.predict(&test).unwrap(), greedy);
    eval.decode.num_beams = 4;
    assert_eq!(eval.predict(&test).unwrap(), beam);
}

#[test]
fn lm_head_lowers_perplexity_and_frozen_trunk_stays_put() {
    let _serial = serial();
    let f = TaskFormatter::new(&TOK, "lm", TaskKind::Lm, &[], 32).unwrap();
    let m = model("lm", TaskKind::Lm, 0);
    let make = |rng: &mut Rng8| Example::Lm {
        text: "abcd".repeat(rng.random_range(3..6)),
    };
    let items: Vec<_> = (0..4)
        .flat_map(|i| f.format(&make(&mut Rng8::seed_from_u64(i)), 0).unwrap())
        .collect();
    let batch = f.collate(&items).unwrap();
    let before = tch::no_grad(|| m.forward(&batch, false).unwrap().loss.double_value(&[]));
    train(&m, &f, 100, make);
    let after = tch::no_grad(|| m.forward(&batch, false).unwrap().loss.double_value(&[]));
    assert!(
        after.exp() < 1.5 && before.exp() > 20.0,
        "perplexity {} -> {}",
        before.exp(),
        after.exp()
    );

    // Linear probe: with the trunk frozen only the head moves.
    let labels = vec!["no".to_string(), "yes".to_string()];
    let fc = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 32).unwrap();
    let mc = model("cls", TaskKind::Classify, 2);
    mc.freeze_trunk(true);
    let snapshot: Vec<(String, tch::Tensor)> = mc
        .vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    train(&mc, &fc, 5, |rng| Example::Classify {
        text: letters(rng, 4, LOWER),
        text_pair: None,
        label: "yes".into(),
    });
    let now = mc.vs.variables();
    for (name, old) in snapshot {
        let same = now[&name].equal(&old);
        assert_eq!(same, name.starts_with("transformer."), "{name}");
    }
}

#[test]
fn model_folders_round_trip_heads_and_tasks() {
    let _serial = serial();
    let m = model("cls", TaskKind::Classify, 2);
    let tasks = vec![task_head(
        "cls",
        TaskKind::Classify,
        vec!["no".into(), "yes".into()],
    )];
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path(), &tasks, Some("name = \"x\"\n")).unwrap();
    let (back, t2) = MultiTaskModel::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(t2, tasks);
    let old = m.vs.variables();
    for (name, t) in back.vs.variables() {
        assert!(t.equal(&old[&name]), "{name}");
    }
    // The trunk alone still loads as a plain GPT-2 folder.
    mtgpt_model::Model::load(dir.path(), Device::Cpu).unwrap();
    // A head file from another label count is refused with the tensor named.
    let three = vec![mtgpt_tasks::TaskHead {
        pool: Default::default(),
        labels: vec!["a".into(), "b".into(), "c".into()],
        ..tasks[0].clone()
    }];
    std::fs::write(
        dir.path().join("tasks.json"),
        serde_json::to_string(&three).unwrap(),
    )
    .unwrap();
    let e = MultiTaskModel::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("heads.cls.score"), "{e}");
}

/// Token accuracy of a tagging model whose tag of each letter is whether the *next* letter is
/// an `a` (right context only), with the tag head reading `context` following tokens.
fn right_context_accuracy(attention: mtgpt_core::Attention, context: usize) -> f64 {
    let labels = vec!["P".to_string(), "Q".to_string()];
    let f = TaskFormatter::new(&TOK, "tag", TaskKind::Tagging, &labels, 48)
        .unwrap()
        .with_options(attention, 0.0);
    let m = model_with_context("tag", TaskKind::Tagging, 2, context);
    let make = |rng: &mut Rng8| {
        let s = letters(rng, 8, b"ab");
        let tokens: Vec<String> = s.chars().map(String::from).collect();
        let tags = (0..tokens.len())
            .map(|i| {
                if tokens.get(i + 1).is_some_and(|t| t == "a") {
                    "P".to_string()
                } else {
                    "Q".to_string()
                }
            })
            .collect();
        Example::Tagging { tokens, tags }
    };
    train(&m, &f, 300, make);
    let head = mtgpt_tasks::TaskHead {
        pool: Default::default(),
        attention,
        tag_context: context,
        ..task_head("tag", TaskKind::Tagging, labels)
    };
    let eval = mtgpt_tasks::Evaluator::new(&m, &TOK, &head, 48).unwrap();
    let mut rng = Rng8::seed_from_u64(95);
    let test: Vec<Example> = (0..40).map(|_| make(&mut rng)).collect();
    eval.evaluate(&test).unwrap().metrics["token_accuracy"]
}

#[test]
fn prefix_attention_a_repeated_input_and_a_right_context_head_let_a_tag_read_the_next_word() {
    let _serial = serial();
    let prefix = right_context_accuracy(mtgpt_core::Attention::Prefix, 0);
    let repeat = right_context_accuracy(mtgpt_core::Attention::Repeat, 0);
    // Letters after letters are read with their space (` b`): the next letter is two
    // tokens on.
    let window = right_context_accuracy(mtgpt_core::Attention::Causal, 2);
    let causal = right_context_accuracy(mtgpt_core::Attention::Causal, 0);
    assert!(prefix >= 0.97, "prefix: {prefix}");
    assert!(repeat >= 0.97, "repeat: {repeat}");
    assert!(window >= 0.97, "causal with tag_context 2: {window}");
    // Causal attention alone cannot see the next letter: a coin flip on every tag but the
    // last.
    assert!(causal <= 0.75, "causal: {causal}");
}

/// On a causal trunk, a tag head with right context `c` reads exactly the `c` tokens after
/// each position: changing token `i + c` moves position `i`'s tag logits, changing a later
/// one does not; padding after the row does not matter.
#[test]
fn a_tag_head_reads_exactly_its_right_context() {
    let _serial = serial();
    let labels = vec!["P".to_string(), "Q".to_string()];
    let f = TaskFormatter::new(&TOK, "tag", TaskKind::Tagging, &labels, 48).unwrap();
    let tokens: Vec<String> = "abababab".chars().map(String::from).collect();
    let tags = vec!["P".to_string(); tokens.len()];
    let items = f.format(&Example::Tagging { tokens, tags }, 0).unwrap();
    let batch = f.collate(&items).unwrap();
    let t = batch.seq_len;
    // Token `at` replaced by another id, and `pad` masked positions appended.
    let edit = |at: Option<usize>, pad: usize| {
        let mut b = batch.clone();
        if let Some(k) = at {
            // The task token's id: a valid id no letter has.
            b.input_ids[k] = batch.input_ids[0];
            assert_ne!(b.input_ids[k], batch.input_ids[k]);
        }
        let last = *b.input_ids.last().unwrap();
        b.input_ids.extend(std::iter::repeat_n(last, pad));
        b.attention_mask.extend(std::iter::repeat_n(0, pad));
        if let Targets::Tags(tg) = &mut b.targets {
            tg.extend(std::iter::repeat_n(mtgpt_core::IGNORE_INDEX, pad));
        }
        b.seq_len = t + pad;
        b
    };
    for context in [0usize, 2] {
        let m = model_with_context("tag", TaskKind::Tagging, 2, context);
        // Position 1's tag logits (position 0 is the task token).
        let at1 = |b: &mtgpt_core::Batch| m.forward(b, false).unwrap().logits.get(0).get(1);
        let base = at1(&batch);
        let moved = |b: mtgpt_core::Batch| f64::try_from((at1(&b) - &base).abs().max()).unwrap();
        // Token 1 + context is read (for context 0, that is the token itself)...
        assert!(
            moved(edit(Some(1 + context), 0)) > 1e-6,
            "context {context}"
        );
        // ...the one after it is not, nor is padding.
        assert!(
            moved(edit(Some(2 + context), 0)) < 1e-6,
            "context {context}"
        );
        assert!(moved(edit(None, 5)) < 1e-5, "padding, context {context}");
    }
}

#[test]
fn formatters_mark_the_input_part_and_the_aux_lm_loss_is_exact() {
    let _serial = serial();
    let labels = vec!["no".to_string(), "yes".to_string()];
    let m = model("cls", TaskKind::Classify, 2);
    let items: Vec<_> = ["abc", "abcdefg"]
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let ex = Example::Classify {
                text: t.to_string(),
                text_pair: None,
                label: "yes".into(),
            };
            TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 32)
                .unwrap()
                .format(&ex, i)
                .unwrap()
        })
        .collect();
    // A classify input is the whole sequence: task token, text, end.
    assert_eq!(
        items.iter().map(|f| f.input_len).collect::<Vec<_>>(),
        [5, 9]
    );
    for attention in [mtgpt_core::Attention::Causal, mtgpt_core::Attention::Prefix] {
        let plain = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 32)
            .unwrap()
            .with_options(attention, 0.0);
        let aux = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 32)
            .unwrap()
            .with_options(attention, 0.5);
        let (b0, b1) = (plain.collate(&items).unwrap(), aux.collate(&items).unwrap());
        assert_eq!(
            b1.prefix_attention,
            attention == mtgpt_core::Attention::Prefix
        );
        let task = m.forward(&b0, false).unwrap();
        let with = m.forward(&b1, false).unwrap();
        assert!(task.aux_loss.is_none());
        // The auxiliary loss is the causal LM loss of the (right-padded) inputs.
        let ids = tch::Tensor::from_slice(&b1.input_ids).view([2, b1.seq_len as i64]);
        let mask: Vec<i64> = b1.attention_mask.iter().map(|&x| x as i64).collect();
        let mask = tch::Tensor::from_slice(&mask).view([2, b1.seq_len as i64]);
        let lm = m.gpt.lm_loss(&ids, Some(&mask), false).unwrap();
        let aux = with.aux_loss.unwrap();
        assert!((aux.double_value(&[]) - lm.double_value(&[])).abs() < 1e-5);
        let total = with.loss.double_value(&[]);
        let want = task.loss.double_value(&[]) + 0.5 * lm.double_value(&[]);
        assert!((total - want).abs() < 1e-5, "{total} vs {want}");
    }
    // Generate: the input is task token, source and separator; lm has none.
    let g = TaskFormatter::new(&TOK, "gen", TaskKind::Generate, &[], 32).unwrap();
    let ex = Example::Generate {
        source: "abc".into(),
        target: "de".into(),
    };
    assert_eq!(g.format(&ex, 0).unwrap()[0].input_len, 5);
    let l = TaskFormatter::new(&TOK, "lm", TaskKind::Lm, &[], 32)
        .unwrap()
        .with_options(mtgpt_core::Attention::Prefix, 0.0);
    assert_eq!(l.attention(), mtgpt_core::Attention::Causal);
}

/// Batches of every task kind, of different lengths, some with prefix attention and the
/// auxiliary LM loss.
fn mixed_batches() -> Vec<mtgpt_core::Batch> {
    use mtgpt_core::Attention;
    let mut rng = Rng8::seed_from_u64(7);
    let labels = vec!["no".to_string(), "yes".to_string()];
    let tags = vec!["O".to_string(), "B-UP".to_string()];
    let cls = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 40)
        .unwrap()
        .with_options(Attention::Prefix, 0.5);
    let tag = TaskFormatter::new(&TOK, "tag", TaskKind::Tagging, &tags, 40).unwrap();
    let lm = TaskFormatter::new(&TOK, "lm", TaskKind::Lm, &[], 40).unwrap();
    let gen_f = TaskFormatter::new(&TOK, "gen", TaskKind::Generate, &[], 40)
        .unwrap()
        .with_options(Attention::Prefix, 0.0);
    let mut batches = Vec::new();
    let items: Vec<_> = (0..3)
        .flat_map(|i| {
            let n = 3 + 4 * i;
            let ex = Example::Classify {
                text: letters(&mut rng, n, LOWER),
                text_pair: None,
                label: "yes".into(),
            };
            cls.format(&ex, i).unwrap()
        })
        .collect();
    batches.push(cls.collate(&items).unwrap());
    let items: Vec<_> = (0..2)
        .flat_map(|i| {
            let tokens: Vec<String> = (0..5 + i).map(|_| letters(&mut rng, 1, UPPER)).collect();
            let t = vec!["B-UP".to_string(); tokens.len()];
            tag.format(&Example::Tagging { tokens, tags: t }, i)
                .unwrap()
        })
        .collect();
    batches.push(tag.collate(&items).unwrap());
    let text = letters(&mut rng, 30, LOWER);
    let items: Vec<_> = lm
        .format(&Example::Lm { text }, 0)
        .unwrap()
        .into_iter()
        .take(2)
        .collect();
    batches.push(lm.collate(&items).unwrap());
    let items: Vec<_> = (0..2)
        .flat_map(|i| {
            let ex = Example::Generate {
                source: letters(&mut rng, 4 + i, LOWER),
                target: letters(&mut rng, 3, LOWER),
            };
            gen_f.format(&ex, i).unwrap()
        })
        .collect();
    batches.push(gen_f.collate(&items).unwrap());
    // Extractive QA, causal, with the auxiliary loss.
    let qa = TaskFormatter::new(&TOK, "qa", TaskKind::ExtractiveQa, &[], 40)
        .unwrap()
        .with_options(Attention::Causal, 0.5);
    let items: Vec<_> = (0..3)
        .flat_map(|i| {
            let context = format!("{} Paris {}", letters(&mut rng, 3 + i, LOWER), "abc");
            let ex = Example::ExtractiveQa {
                question: format!("where {}", letters(&mut rng, 2, LOWER)),
                answer: Answer {
                    text: "Paris".into(),
                    start: context.find("Paris").unwrap(),
                },
                context,
            };
            qa.format(&ex, i).unwrap()
        })
        .collect();
    batches.push(qa.collate(&items).unwrap());
    assert!(
        batches
            .iter()
            .map(|b| b.seq_len)
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );
    batches
}

/// The tiny trunk with heads for [`mixed_batches`], optionally with adapters of `mode`
/// whose `B` is random (so they change the outputs).
fn mixed_model(adapters: Option<mtgpt_core::AdapterMode>) -> MultiTaskModel {
    tch::manual_seed(3);
    let config = tiny_config();
    let specs: Vec<HeadSpec> = [
        ("cls", TaskKind::Classify, 2),
        ("tag", TaskKind::Tagging, 2),
        ("lm", TaskKind::Lm, 0),
        ("gen", TaskKind::Generate, 0),
        ("qa", TaskKind::ExtractiveQa, 0),
    ]
    .iter()
    .map(|&(n, k, l)| HeadSpec {
        pool: Default::default(),
        name: n.into(),
        kind: k,
        num_labels: l,
        tag_context: if k == TaskKind::Tagging { 2 } else { 0 },
        crf: false,
    })
    .collect();
    let mut m = MultiTaskModel::new(&config, &specs, Device::Cpu).unwrap();
    if let Some(mode) = adapters {
        let c = mtgpt_core::AdapterConfig {
            mode,
            rank: 2,
            ..Default::default()
        };
        m.add_adapters(&c).unwrap();
        tch::no_grad(|| {
            for (_, sets) in m.gpt.adapter_layers() {
                for s in sets {
                    s.b.shallow_clone().copy_(&s.b.randn_like());
                }
            }
        });
    }
    m
}

#[test]
fn one_pass_over_a_mixed_batch_equals_one_pass_per_task() {
    let _serial = serial();
    let batches = mixed_batches();
    for adapters in [None, Some(mtgpt_core::AdapterMode::Both)] {
        let m = mixed_model(adapters);
        let mixed = tch::no_grad(|| m.forward_mixed(&batches, false).unwrap());
        for (b, got) in batches.iter().zip(&mixed) {
            let alone = tch::no_grad(|| m.forward(b, false).unwrap());
            let dl = (got.loss.double_value(&[]) - alone.loss.double_value(&[])).abs();
            let dx = (&got.logits - &alone.logits).abs().max().double_value(&[]);
            assert!(
                dl < 1e-5 && dx < 1e-4,
                "{} (adapters {adapters:?}): loss {dl}, logits {dx}",
                b.task
            );
        }
    }
}

#[test]
fn packed_rows_give_the_losses_and_gradients_of_the_unpacked_batches() {
    let _serial = serial();
    use mtgpt_core::AdapterMode;
    let batches = mixed_batches();
    let tokens: usize = batches
        .iter()
        .map(|b| b.attention_mask.iter().filter(|&&m| m == 1).count())
        .sum();
    let mut plain_rows = 0;
    for adapters in [None, Some(AdapterMode::Both), Some(AdapterMode::PerTask)] {
        let m = mixed_model(adapters);
        let params: Vec<(String, tch::Tensor)> =
            m.vs.variables()
                .into_iter()
                .filter(|(_, t)| t.requires_grad())
                .collect();
        let grads = |loss: tch::Tensor| -> Vec<tch::Tensor> {
            for (_, p) in &params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            loss.backward();
            params
                .iter()
                .map(|(_, p)| {
                    let g = p.grad();
                    if g.defined() {
                        g.copy()
                    } else {
                        p.zeros_like()
                    }
                })
                .collect()
        };
        // Unpacked: every batch alone; packed: all of them in rows of 40 tokens.
        let alone: Vec<f64> = batches
            .iter()
            .map(|b| m.forward(b, false).unwrap().loss.double_value(&[]))
            .collect();
        let sum_alone = batches
            .iter()
            .map(|b| m.forward(b, false).unwrap().loss)
            .fold(tch::Tensor::from(0f32), |a, l| a + l);
        let g_alone = grads(sum_alone);
        let (outs, packed) = m.forward_packed(&batches, 40, false).unwrap();
        assert_eq!(packed.tokens, tokens, "every real token packed once");
        let rows: usize = batches.iter().map(|b| b.batch_size).sum();
        assert!(packed.rows < rows, "{} packed rows for {rows}", packed.rows);
        // Per-task adapters are chosen per token: tasks share rows as without adapters.
        if adapters.is_none() {
            plain_rows = packed.rows;
        }
        assert_eq!(packed.rows, plain_rows, "adapters {adapters:?}");
        let shared_row = (0..packed.rows).any(|row| {
            packed
                .place
                .iter()
                .filter(|p| p.iter().any(|&(r, _)| r == row))
                .count()
                > 1
        });
        assert!(shared_row, "adapters {adapters:?}: no row holds two tasks");
        for ((b, got), want) in batches.iter().zip(&outs).zip(&alone) {
            let l = got.loss.double_value(&[]);
            assert!(
                (l - want).abs() < 1e-5 * want.abs().max(1.0),
                "{} (adapters {adapters:?}): packed loss {l} vs unpacked {want}",
                b.task
            );
            assert_eq!(got.aux_loss.is_some(), b.lm_aux_weight > 0.0, "{}", b.task);
        }
        let sum_packed = outs
            .into_iter()
            .map(|o| o.loss)
            .fold(tch::Tensor::from(0f32), |a, l| a + l);
        let g_packed = grads(sum_packed);
        for (((name, _), a), p) in params.iter().zip(&g_alone).zip(&g_packed) {
            let scale = a.abs().max().double_value(&[]).max(1e-3);
            let diff = (a - p).abs().max().double_value(&[]);
            assert!(
                diff < 1e-4 * scale,
                "{name} (adapters {adapters:?}): gradient differs by {diff} (scale {scale})"
            );
        }
    }
}

#[test]
fn packed_sequences_do_not_see_each_other() {
    let _serial = serial();
    // Changing one sequence of a packed row changes none of its neighbours' outputs.
    let m = mixed_model(None);
    let batches = mixed_batches();
    let cls = batches.iter().find(|b| b.task == "cls").unwrap().clone();
    let (first, _) = tch::no_grad(|| m.forward_packed(&batches, 48, false).unwrap());
    let mut changed = batches.clone();
    let c = changed.iter_mut().find(|b| b.task == "cls").unwrap();
    c.input_ids[1] = if c.input_ids[1] == 5 { 6 } else { 5 };
    let (second, packed) = tch::no_grad(|| m.forward_packed(&changed, 48, false).unwrap());
    assert!(packed.rows < batches.iter().map(|b| b.batch_size).sum::<usize>());
    for ((b, x), y) in batches.iter().zip(&first).zip(&second) {
        let d = (x.loss.double_value(&[]) - y.loss.double_value(&[])).abs();
        if b.task == cls.task {
            assert!(d > 0.0, "the changed task's loss moves");
        } else {
            assert!(d < 1e-6, "{} moved by {d}", b.task);
        }
    }
}

#[test]
fn tag_words_tags_jieba_words_and_spreads_the_tags_back_over_their_tokens() {
    use mtgpt_tasks::format::{expand_group_tags, word_groups};
    use mtgpt_text::segment::Segmenter;
    let _serial = serial();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let chars = |s: &str| s.chars().map(String::from).collect::<Vec<_>>();
    let seg = Segmenter::new(true);
    // 我 来到 北京 清华大学, then two non-Chinese tokens on their own.
    let mut tokens = chars("我来到北京清华大学");
    tokens.extend(strings(&["NBA", "2008"]));
    assert_eq!(
        word_groups(&seg, &tokens, &Default::default()),
        vec![1, 2, 2, 4, 1, 1]
    );
    // A group never splits a token: 来到北 as one token keeps 来到 and 北京 together.
    let merged = strings(&["我", "来到北", "京"]);
    assert_eq!(word_groups(&seg, &merged, &Default::default()), vec![1, 2]);
    assert_eq!(
        expand_group_tags(&[1, 2, 3], &strings(&["O", "B-LOC", "I-ORG"])),
        strings(&["O", "B-LOC", "I-LOC", "I-ORG", "I-ORG", "I-ORG"])
    );

    // The formatter labels one position per word; the evaluator answers per token.
    let opts = TrainOptions {
        kind: TokenizerKind::Char,
        vocab_size: 100,
        min_frequency: 1,
        tasks: vec!["tag".into()],
        presegment: Some(seg.clone()),
    };
    let zh = TextTokenizer::train(["我来到北京清华大学"].into_iter(), &opts).unwrap();
    let labels = strings(&["B-LOC", "I-LOC", "O"]);
    let f = TaskFormatter::new(&zh, "tag", TaskKind::Tagging, &labels, 48)
        .unwrap()
        .with_word_groups(true, &Default::default())
        .unwrap();
    let ex = Example::Tagging {
        tokens: chars("我来到北京清华大学"),
        tags: strings(&[
            "O", "O", "O", "B-LOC", "I-LOC", "B-LOC", "I-LOC", "I-LOC", "I-LOC",
        ]),
    };
    let items = f.format(&ex, 0).unwrap();
    let Target::Tags(tg) = &items[0].target else {
        panic!("tagging target")
    };
    let labelled: Vec<i64> = tg
        .iter()
        .copied()
        .filter(|&t| t != mtgpt_core::IGNORE_INDEX)
        .collect();
    // O O B-LOC B-LOC: each word's first tag.
    assert_eq!(labelled, vec![2, 2, 0, 0]);
    let bioes = strings(&["S-LOC", "O"]);
    let e = TaskFormatter::new(&zh, "tag", TaskKind::Tagging, &bioes, 48)
        .unwrap()
        .with_word_groups(true, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("BIO"), "{e}");

    let mut config = tiny_config();
    config.vocab_size = zh.vocab_size();
    let spec = HeadSpec {
        pool: Default::default(),
        name: "tag".into(),
        kind: TaskKind::Tagging,
        num_labels: 3,
        tag_context: 2,
        crf: false,
    };
    let m = MultiTaskModel::new(&config, &[spec], Device::Cpu).unwrap();
    let head = mtgpt_tasks::TaskHead {
        pool: Default::default(),
        tag_context: 2,
        tag_words: true,
        ..task_head("tag", TaskKind::Tagging, labels)
    };
    let eval = mtgpt_tasks::Evaluator::new(&m, &zh, &head, 48).unwrap();
    let mtgpt_tasks::Prediction::Tags(tags) = &eval.predict(std::slice::from_ref(&ex)).unwrap()[0]
    else {
        panic!("tags")
    };
    assert_eq!(tags.len(), 9);
    // Within each word, the tokens after the first continue its tag.
    let mut i = 0;
    for n in [1usize, 2, 2, 4] {
        let want = expand_group_tags(&[n], &tags[i..i + 1]);
        assert_eq!(&tags[i..i + n], &want[..], "word at {i}: {tags:?}");
        i += n;
    }
}

#[test]
fn word_splits_learnt_from_the_training_tags_make_the_word_tags_exact() {
    use mtgpt_tasks::format::{expand_group_tags, learn_word_splits, word_groups};
    use mtgpt_text::segment::Segmenter;
    let _serial = serial();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let chars = |s: &str| s.chars().map(String::from).collect::<Vec<_>>();
    let seg = Segmenter::new(true);
    // jieba keeps 访华 ("visit China") and 中国政府 whole; the tags cut both.
    let a = chars("他访华");
    let a_tags = strings(&["O", "O", "B-LOC"]);
    let b = chars("中国政府");
    let b_tags = strings(&["B-LOC", "I-LOC", "O", "O"]);
    let c = chars("北京大学");
    let c_tags = strings(&["B-ORG", "I-ORG", "I-ORG", "I-ORG"]);
    let none = Default::default();
    assert_eq!(word_groups(&seg, &a, &none), vec![1, 2]);
    assert_eq!(word_groups(&seg, &b, &none), vec![4]);
    assert_eq!(word_groups(&seg, &c, &none), vec![4]);
    let train = [(&a, &a_tags), (&b, &b_tags), (&c, &c_tags)];
    let splits = learn_word_splits(
        &seg,
        train.iter().map(|(t, g)| (t.as_slice(), g.as_slice())),
    );
    // Byte offsets inside the word's text where a new group starts; 北京大学 is one entity.
    let want: mtgpt_tasks::format::WordSplits = [
        ("访华".to_string(), vec![3]),
        ("中国政府".to_string(), vec![6]),
    ]
    .into_iter()
    .collect();
    assert_eq!(splits, want);
    for (tokens, tags) in train {
        let groups = word_groups(&seg, tokens, &splits);
        assert_eq!(groups.iter().sum::<usize>(), tokens.len());
        let mut first = Vec::new();
        let mut i = 0;
        for &n in &groups {
            first.push(tags[i].clone());
            i += n;
        }
        // Each group's first tag, spread back, gives the gold tags again.
        assert_eq!(&expand_group_tags(&groups, &first), tags, "{tokens:?}");
    }
    // Elsewhere the same word is cut the same way; other words are untouched.
    assert_eq!(
        word_groups(&seg, &chars("总理访华"), &splits),
        vec![2, 1, 1]
    );
    // A cut inside a token is not made (groups never split tokens).
    assert_eq!(
        word_groups(&seg, &strings(&["他", "访华"]), &splits),
        vec![1, 1]
    );
}

#[test]
fn classify_logits_read_at_the_last_tokens_equal_the_full_pass() {
    let _serial = serial();
    use mtgpt_core::{AdapterMode, Attention};
    let prefix = mixed_batches().remove(0);
    assert!(prefix.prefix_attention && prefix.attention_mask.contains(&0));
    // The same task read causally.
    let labels = vec!["no".to_string(), "yes".to_string()];
    let causal_fmt = TaskFormatter::new(&TOK, "cls", TaskKind::Classify, &labels, 40)
        .unwrap()
        .with_options(Attention::Causal, 0.0);
    let mut rng = Rng8::seed_from_u64(11);
    let items: Vec<_> = (0..4)
        .flat_map(|i| {
            let ex = Example::Classify {
                text: letters(&mut rng, 2 + 5 * i, LOWER),
                text_pair: None,
                label: "no".into(),
            };
            causal_fmt.format(&ex, i).unwrap()
        })
        .collect();
    let causal = causal_fmt.collate(&items).unwrap();
    for adapters in [None, Some(AdapterMode::Both), Some(AdapterMode::PerTask)] {
        let m = mixed_model(adapters);
        for batch in [&prefix, &causal] {
            tch::no_grad(|| {
                let want = m.forward(batch, false).unwrap().logits;
                let packed = m.pack(std::slice::from_ref(batch), 48).unwrap();
                assert!(packed.rows < batch.batch_size, "rows share a packed row");
                for p in [None, Some(&packed)] {
                    let got = m.classify_logits(batch, p).unwrap();
                    assert_eq!(got.size(), want.size());
                    let d = (&got - &want).abs().max().double_value(&[]);
                    assert!(
                        d < 1e-5,
                        "adapters {adapters:?}, prefix {}, packed {}: logits differ by {d}",
                        batch.prefix_attention,
                        p.is_some()
                    );
                }
            });
        }
    }
    // Positions outside the input are refused, and other heads are not classify.
    let m = mixed_model(None);
    let ids = tch::Tensor::from_slice(&prefix.input_ids)
        .view([prefix.batch_size as i64, prefix.seq_len as i64]);
    let past_end = (prefix.batch_size * prefix.seq_len) as i64;
    let err = m
        .gpt
        .hidden_at(
            &ids,
            None,
            None,
            &tch::Tensor::from_slice(&[0i64, past_end]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let tag = mixed_batches().remove(1);
    let err = m.classify_logits(&tag, None).unwrap_err();
    assert!(err.to_string().contains("not classify"), "{err}");
}

/// Uppercase runs are entities: `B-UP` opens a run, `I-UP` continues it, lowercase is `O`.
fn upper_runs(rng: &mut Rng8) -> Example {
    let tokens: Vec<String> = (0..8)
        .map(|_| {
            let set = if rng.random_bool(0.4) { UPPER } else { LOWER };
            letters(rng, 1, set)
        })
        .collect();
    let upper = |i: usize| tokens[i].chars().all(|c| c.is_uppercase());
    let tags = (0..tokens.len())
        .map(|i| match (upper(i), i > 0 && upper(i - 1)) {
            (false, _) => "O",
            (true, false) => "B-UP",
            (true, true) => "I-UP",
        })
        .map(String::from)
        .collect();
    Example::Tagging { tokens, tags }
}

#[test]
fn a_crf_head_learns_the_tag_transitions_and_round_trips_through_a_folder() {
    let _serial = serial();
    tch::manual_seed(1);
    let labels: Vec<String> = ["O", "B-UP", "I-UP"].map(String::from).to_vec();
    let spec = HeadSpec {
        pool: Default::default(),
        name: "tag".into(),
        kind: TaskKind::Tagging,
        num_labels: 3,
        tag_context: 0,
        crf: true,
    };
    let m = MultiTaskModel::new(&tiny_config(), &[spec], Device::Cpu).unwrap();
    // A fresh CRF adds nothing.
    let fresh = m.tag_transitions("tag").unwrap();
    assert!(fresh.trans.iter().flatten().all(|&x| x == 0.0));
    let f = TaskFormatter::new(&TOK, "tag", TaskKind::Tagging, &labels, 32).unwrap();
    train(&m, &f, 300, upper_runs);
    let head = mtgpt_tasks::TaskHead {
        pool: Default::default(),
        crf: true,
        ..task_head("tag", TaskKind::Tagging, labels)
    };
    let mut rng = Rng8::seed_from_u64(98);
    let test: Vec<Example> = (0..40).map(|_| upper_runs(&mut rng)).collect();
    let eval = mtgpt_tasks::Evaluator::new(&m, &TOK, &head, 32).unwrap();
    let f1 = eval.evaluate(&test).unwrap().metrics["span_f1"];
    assert!(f1 >= 0.95, "span F1 {f1}");
    // The learnt scores prefer I-UP after B-UP or I-UP to I-UP after O (which the data never
    // shows), and O or B-UP to I-UP at the start.
    let t = m.tag_transitions("tag").unwrap();
    assert!(t.trans[1][2] > t.trans[0][2] + 0.5, "{:?}", t.trans);
    assert!(t.trans[2][2] > t.trans[0][2] + 0.5, "{:?}", t.trans);
    assert!(t.start[0].min(t.start[1]) > t.start[2], "{:?}", t.start);
    // Saved and loaded, the CRF is the same and so are the predictions.
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path(), std::slice::from_ref(&head), None)
        .unwrap();
    let (back, heads) = MultiTaskModel::load(dir.path(), Device::Cpu).unwrap();
    assert!(heads[0].crf);
    assert_eq!(back.tag_transitions("tag").unwrap(), t);
    let again = mtgpt_tasks::Evaluator::new(&back, &TOK, &heads[0], 32).unwrap();
    assert_eq!(again.predict(&test).unwrap(), eval.predict(&test).unwrap());
}

#[test]
fn invariant_predictions_do_not_depend_on_the_other_examples_of_a_call() {
    let _serial = serial();
    let mut rng = Rng8::seed_from_u64(41);
    for precision in [Precision::Bf16, Precision::Fp32] {
        for (task, kind, labels) in [
            ("cls", TaskKind::Classify, vec!["x", "y", "z"]),
            ("tag", TaskKind::Tagging, vec!["O", "B-X", "I-X"]),
        ] {
            tch::manual_seed(3);
            // The demo's widths: products reducing over d_ff = 1024 (the MLP's output) and
            // 3 × 256 (a tag head with two tokens of right context) are the ones libtorch
            // splits across threads for a few rows but not for many.
            let config = ModelConfig {
                precision,
                n_head: 4,
                d_model: 256,
                d_ff: 1024,
                block_size: 128,
                ..tiny_config()
            };
            let context = if kind == TaskKind::Tagging { 2 } else { 0 };
            let spec = HeadSpec {
                pool: Default::default(),
                name: task.into(),
                kind,
                num_labels: labels.len(),
                tag_context: context,
                crf: false,
            };
            let m = MultiTaskModel::new(&config, &[spec], Device::Cpu).unwrap();
            let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
            let head = mtgpt_tasks::TaskHead {
                pool: Default::default(),
                tag_context: context,
                ..task_head(task, kind, labels.clone())
            };
            // Lengths from 1 to 110 tokens: many padding buckets in one call, some rows
            // filling their bucket exactly.
            let examples: Vec<Example> = (0..120)
                .map(|_| {
                    let n = rng.random_range(1..=110);
                    let text = letters(&mut rng, n, LOWER);
                    match kind {
                        TaskKind::Classify => Example::Classify {
                            text,
                            text_pair: None,
                            label: labels[0].clone(),
                        },
                        _ => Example::Tagging {
                            tokens: text.chars().map(String::from).collect(),
                            tags: vec![labels[0].clone(); n],
                        },
                    }
                })
                .collect();
            let mut eval = mtgpt_tasks::Evaluator::new(&m, &TOK, &head, 128).unwrap();
            eval.invariant = true;
            let run = |eval: &mtgpt_tasks::Evaluator, order: &[usize], batch: usize| {
                let mut eval_b = Vec::new();
                for chunk in order.chunks(batch) {
                    let exs: Vec<Example> = chunk.iter().map(|&i| examples[i].clone()).collect();
                    eval_b.extend(chunk.iter().copied().zip(eval.predict(&exs).unwrap()));
                }
                eval_b.sort_by_key(|(i, _)| *i);
                eval_b.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
            };
            let forward: Vec<usize> = (0..examples.len()).collect();
            let alone = run(&eval, &forward, 1);
            let mut shuffled = forward.clone();
            shuffled.reverse();
            shuffled.rotate_left(7);
            for (order, batch) in [(&forward, 32), (&shuffled, 7)] {
                let got = run(&eval, order, batch);
                for (i, (a, g)) in alone.iter().zip(&got).enumerate() {
                    match (precision, a, g) {
                        // bf16 (the demo's precision here): bit for bit.
                        (Precision::Bf16, _, _) => assert_eq!(a, g, "{task} bf16 example {i}"),
                        // fp32 is not made batch-invariant: within 1e-6.
                        (
                            _,
                            mtgpt_tasks::Prediction::Class { label, probs },
                            mtgpt_tasks::Prediction::Class {
                                label: l2,
                                probs: p2,
                            },
                        ) => {
                            assert_eq!(label, l2, "{task} fp32 example {i}");
                            for (x, y) in probs.iter().zip(p2) {
                                assert!((x - y).abs() < 1e-6, "{task} fp32 example {i}: {x} {y}");
                            }
                        }
                        _ => assert_eq!(a, g, "{task} fp32 example {i}"),
                    }
                }
            }
        }
    }
}
