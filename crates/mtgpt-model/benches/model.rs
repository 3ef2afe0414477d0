//! Forward and forward + backward time of the trunk for each preset (tiny, small, base = the
//! GPT-2 124M shape), in fp32 and bf16, plus one cached decoding step.
//! `cargo bench -p mtgpt-model` (all), `cargo bench -p mtgpt-model -- tiny` (one preset).
//!
//! Shapes: tiny and small at 4 × 128 tokens with an 8000-token vocabulary (the demo's size),
//! base at 1 × 128 tokens with GPT-2's 50257. Throughput is in tokens.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtgpt_core::{ModelConfig, Precision};
use mtgpt_model::{Gpt, KvCache};
use std::hint::black_box;
use tch::{Device, Kind, Tensor, nn};

fn presets() -> Vec<(&'static str, ModelConfig, i64)> {
    let mut tiny = ModelConfig::tiny();
    tiny.vocab_size = 8000;
    let mut small = ModelConfig::small();
    small.vocab_size = 8000;
    vec![
        ("tiny", tiny, 4),
        ("small", small, 4),
        ("base", ModelConfig::base(), 1),
    ]
}

fn bench(c: &mut Criterion) {
    let seq = 128i64;
    for (name, mut config, batch) in presets() {
        config.dropout = 0.0;
        for precision in [Precision::Fp32, Precision::Bf16] {
            config.precision = precision;
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let gpt = Gpt::new(&vs.root(), &config).unwrap();
            let v = config.vocab_size as i64;
            let ids = Tensor::randint(v, [batch, seq + 1], (Kind::Int64, Device::Cpu));
            let (x, y) = (ids.narrow(1, 0, seq), ids.narrow(1, 1, seq));
            let p = precision.as_str();
            let mut g = c.benchmark_group(format!("{name}/{p}"));
            g.sample_size(10);
            g.throughput(Throughput::Elements((batch * seq) as u64));
            g.bench_function("forward", |b| {
                b.iter(|| {
                    tch::no_grad(|| {
                        let h = gpt.forward(&x, None, None, false).unwrap().hidden;
                        black_box(gpt.logits(&h))
                    })
                })
            });
            g.bench_function("forward_backward", |b| {
                b.iter(|| {
                    let h = gpt.forward(&x, None, None, true).unwrap().hidden;
                    let loss = gpt
                        .logits(&h)
                        .reshape([-1, v])
                        .cross_entropy_for_logits(&y.reshape([-1]));
                    loss.backward();
                    for (_, mut t) in vs.variables() {
                        t.zero_grad();
                    }
                })
            });
            g.throughput(Throughput::Elements(1));
            g.bench_function("decode_step_at_128", |b| {
                gpt.with_compute_copies(|| {
                    tch::no_grad(|| {
                        let head = gpt.decode_head();
                        let prefix = x.narrow(0, 0, 1);
                        let next = y.narrow(0, 0, 1).narrow(1, seq - 1, 1);
                        b.iter_batched(
                            || {
                                let mut cache = KvCache::with_capacity(seq as usize + 1);
                                gpt.forward(&prefix, None, Some(&mut cache), false).unwrap();
                                cache
                            },
                            |mut cache| {
                                let h = gpt.forward(&next, None, Some(&mut cache), false).unwrap();
                                black_box(head.logits(&h.hidden).argmax(-1, false))
                            },
                            criterion::BatchSize::PerIteration,
                        )
                    })
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
