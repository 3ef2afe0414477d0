//! Throughput of the text hot paths on the shipped real data: segmentation, normalization +
//! BPE encoding, and augmentation. `cargo bench -p mtgpt-text`.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtgpt_core::{AugmentConfig, Example, TokenizerKind};
use mtgpt_text::augment::{Augmenter, load_lexicons};
use mtgpt_text::{Normalizer, Segmenter, TextTokenizer, TrainOptions};
use std::hint::black_box;
use std::path::Path;

fn data(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data")
            .join(rel),
    )
    .unwrap()
}

fn corpus() -> Vec<String> {
    let mut lines: Vec<String> = data("lm_zh/valid.txt")
        .lines()
        .map(str::to_string)
        .collect();
    lines.extend(data("lm_en/valid.txt").lines().map(str::to_string));
    lines
}

fn bench(c: &mut Criterion) {
    let lines = corpus();
    let bytes: usize = lines.iter().map(String::len).sum();
    let seg = Segmenter::new(true);
    let norm = Normalizer::default();

    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("segment", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| seg.words(black_box(l)).len())
                .sum::<usize>()
        })
    });
    g.bench_function("normalize", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| norm.normalize(black_box(l)).len())
                .sum::<usize>()
        })
    });
    let train: Vec<String> = data("lm_zh/train.txt")
        .lines()
        .chain(data("lm_en/train.txt").lines())
        .map(str::to_string)
        .collect();
    let tok = TextTokenizer::train(
        train.iter(),
        &TrainOptions {
            kind: TokenizerKind::Bpe,
            vocab_size: 8000,
            min_frequency: 2,
            tasks: vec![],
            presegment: Some(seg.clone()),
        },
    )
    .unwrap();
    g.bench_function("normalize+bpe_encode", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| tok.encode_ids(&norm.normalize(black_box(l))).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/lexicon");
    let lex =
        load_lexicons(&[&root.join("en_synonyms.txt"), &root.join("zh_synonyms.txt")]).unwrap();
    let aug = Augmenter::new(
        lex,
        seg,
        AugmentConfig {
            eda_alpha: 0.1,
            n_aug: 1,
            char_noise: 0.01,
            token_noise: 0.0,
        },
    );
    let examples: Vec<Example> = data("sentiment_zh/valid.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut g = c.benchmark_group("augment");
    g.throughput(Throughput::Elements(examples.len() as u64));
    g.sample_size(10);
    g.bench_function("eda_sentiment_zh", |b| {
        b.iter(|| {
            examples
                .iter()
                .enumerate()
                .map(|(i, e)| aug.augment_copies(e, 1, &i.to_string()).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
