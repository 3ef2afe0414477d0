//! Measured ceilings for the benchmarks: how many floating-point operations a training step
//! does, how fast this machine multiplies matrices, the least time a step's matrix products
//! alone take, the memory read bandwidth that bounds decoding, and decode-step latencies with and
//! without the KV cache at a given context length.
//!
//! `mtgpt bench train` and `mtgpt bench generate` print these beside their throughput, so a
//! speed figure always comes with the hardware limit it is measured against.
use crate::error::Result;
use crate::gpt::{Gpt, KvCache};
use mtgpt_core::ModelConfig;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The median of `v` (the mean of the middle two for an even count; NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `reps` (at least one) timings in seconds of `f`, after one untimed warm-up call.
fn timings(reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect()
}

/// Median of `reps` timings (seconds) of `f`, after one untimed warm-up call.
pub fn median_secs(reps: usize, f: impl FnMut()) -> f64 {
    median(timings(reps, f))
}

/// The fastest of `reps` timings (seconds) of `f`, after one untimed warm-up call: the
/// estimate for a ceiling (what the machine can do), which other load only ever slows.
pub fn best_secs(reps: usize, f: impl FnMut()) -> f64 {
    timings(reps, f).into_iter().fold(f64::INFINITY, f64::min)
}

/// `(in, out)` of every matrix product weight of a forward pass: the four `Linear`s of each
/// block, then the tied LM head `(d_model, vocab)`.
pub fn matmul_shapes(c: &ModelConfig) -> Vec<(i64, i64)> {
    let d = c.d_model as i64;
    let hd = c.head_dim() as i64;
    let mut out = Vec::new();
    for i in 0..c.n_layer {
        let (a, f) = (c.heads_in(i) as i64 * hd, c.d_ff_in(i) as i64);
        out.extend([(d, 3 * a), (a, d), (d, f), (f, d)]);
    }
    out.push((d, c.vocab_size as i64));
    out
}

/// Floating-point operations of one training step (forward + backward) over `batch × seq`
/// tokens: 6 per token per matrix weight (2 forward, 4 backward) plus attention's
/// `12 · n_layer · heads·head_dim · seq` per token (scores and weighted sum, full square,
/// the PaLM convention; causal kernels skip part of it, so utilization is not overstated).
pub fn training_flops(c: &ModelConfig, batch: usize, seq: usize) -> f64 {
    let tokens = (batch * seq) as f64;
    let weights: f64 = matmul_shapes(c).iter().map(|&(i, o)| (i * o) as f64).sum();
    let attn: f64 = (0..c.n_layer)
        .map(|i| 12.0 * (c.heads_in(i) * c.head_dim()) as f64 * seq as f64)
        .sum();
    tokens * (6.0 * weights + attn)
}

/// Measured matrix-multiply rate in GFLOP/s: the fastest of `reps` products of two `n × n`
/// matrices of `kind` on `device`.
pub fn matmul_gflops(n: i64, kind: Kind, device: Device, reps: usize) -> f64 {
    let a = Tensor::randn([n, n], (Kind::Float, device)).to_kind(kind);
    let b = Tensor::randn([n, n], (Kind::Float, device)).to_kind(kind);
    let secs = tch::no_grad(|| best_secs(reps, || sync(device, &a.matmul(&b))));
    2.0 * (n as f64).powi(3) / secs / 1e9
}

/// Waits for `device` to finish (CUDA runs asynchronously) by reading one value of `t`.
fn sync(device: Device, t: &Tensor) {
    if device.is_cuda() {
        let _ = t.flatten(0, -1).get(0).double_value(&[]);
    }
}

/// The least time (seconds) one training step's matrix products take on their own: for every
/// weight `W [in, out]` over `m = batch × seq` rows, the forward `X W`, and the backward
/// `dY Wᵀ` and `Xᵀ dY`, each timed alone in `kind` (fastest of `reps`) with the layouts the
/// step uses, summed over the step. Attention, norms, activations, the loss and the optimizer
/// come on top, so no implementation of the step can be faster than this.
pub fn gemm_floor_secs(
    c: &ModelConfig,
    batch: usize,
    seq: usize,
    kind: Kind,
    device: Device,
    reps: usize,
) -> f64 {
    let m = (batch * seq) as i64;
    let mut cache: Vec<((i64, i64), f64)> = Vec::new();
    let mut total = 0.0;
    tch::no_grad(|| {
        for shape in matmul_shapes(c) {
            if let Some((_, t)) = cache.iter().find(|(s, _)| *s == shape) {
                total += t;
                continue;
            }
            let (i, o) = shape;
            let opts = (Kind::Float, device);
            let x = Tensor::randn([m, i], opts).to_kind(kind);
            let w = Tensor::randn([i, o], opts).to_kind(kind);
            let dy = Tensor::randn([m, o], opts).to_kind(kind);
            let t = best_secs(reps, || sync(device, &x.matmul(&w)))
                + best_secs(reps, || sync(device, &dy.matmul(&w.tr())))
                + best_secs(reps, || sync(device, &x.tr().matmul(&dy)));
            cache.push((shape, t));
            total += t;
        }
    });
    total
}

/// Memory read bandwidth in GB/s: the fastest of `reps` sums over a 256 MiB fp32 buffer
/// (far bigger than any cache), the way a decoding step streams its weights.
pub fn memory_bandwidth_gbs(device: Device, reps: usize) -> f64 {
    let n = 64 << 20; // 64 Mi floats = 256 MiB
    let src = Tensor::ones([n], (Kind::Float, device));
    let secs = tch::no_grad(|| best_secs(reps, || sync(device, &src.sum(Kind::Float))));
    4.0 * n as f64 / secs / 1e9
}

/// Bytes of weights one decoding step reads (every matrix of [`matmul_shapes`] once, in the
/// model's compute dtype).
pub fn decode_weight_bytes(c: &ModelConfig) -> f64 {
    let bytes = crate::layers::compute_kind(c.precision).elt_size_in_bytes() as f64;
    matmul_shapes(c)
        .iter()
        .map(|&(i, o)| (i * o) as f64 * bytes)
        .sum()
}

/// The latency (seconds, median of `reps`) of producing the next token of one sequence that
/// already holds `context` tokens: `(cached, recompute)` = one step on a KV cache filled with
/// `context` positions, and one forward pass over all `context + 1` tokens without a cache,
/// both ending in the LM head and the greedy choice.
pub fn decode_step_secs(gpt: &Gpt, context: usize, reps: usize) -> Result<(f64, f64)> {
    let dev = gpt.device();
    let context = context.clamp(1, gpt.config.block_size.saturating_sub(1).max(1));
    let v = gpt.config.vocab_size as i64;
    let ids = Tensor::randint(v, [1, context as i64 + 1], (Kind::Int64, dev));
    let prefix = ids.narrow(1, 0, context as i64);
    let last = ids.narrow(1, context as i64, 1);
    gpt.with_compute_copies(|| {
        tch::no_grad(|| -> Result<(f64, f64)> {
            let head = gpt.decode_head();
            let mut cached = Vec::new();
            for _ in 0..reps.max(1) + 1 {
                let mut cache = KvCache::with_capacity(context + 1);
                gpt.forward(&prefix, None, Some(&mut cache), false)?;
                let start = Instant::now();
                let h = gpt.forward(&last, None, Some(&mut cache), false)?.hidden;
                let _ = head.logits(&h).argmax(-1, false).int64_value(&[0, 0]);
                cached.push(start.elapsed().as_secs_f64());
            }
            cached.remove(0); // warm-up
            let mut err = None;
            let recompute = median_secs(reps, || {
                match gpt.forward(&ids, None, None, false) {
                    Ok(out) => {
                        let h = out.hidden.narrow(1, context as i64, 1);
                        let _ = head.logits(&h).argmax(-1, false).int64_value(&[0, 0]);
                    }
                    Err(e) => err = Some(e),
                };
            });
            if let Some(e) = err {
                return Err(e);
            }
            Ok((median(cached), recompute))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_flops_follow_the_closed_form() {
        let mut c = ModelConfig::tiny(); // 4 layers, 256 wide
        c.vocab_size = 1000;
        let n = 4 * 12 * 256 * 256 + 256 * 1000;
        let per_token = 6.0 * n as f64 + 4.0 * 12.0 * 256.0 * 64.0;
        assert_eq!(training_flops(&c, 2, 64), 128.0 * per_token);
        // Pruned blocks count their own widths.
        c.layer_d_ff = vec![1024, 512, 1024, 1024];
        assert_eq!(
            training_flops(&c, 2, 64),
            128.0 * (per_token - 6.0 * 2.0 * 256.0 * 512.0)
        );
        assert_eq!(decode_weight_bytes(&c), 4.0 * (n - 2 * 256 * 512) as f64);
    }

    #[test]
    fn decode_step_latencies_are_measured_at_the_asked_context() {
        tch::manual_seed(0);
        let mut c = ModelConfig::tiny();
        c.n_layer = 1;
        c.d_model = 32;
        c.n_head = 2;
        c.d_ff = 64;
        c.vocab_size = 50;
        c.block_size = 64;
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let gpt = Gpt::new(&vs.root(), &c).unwrap();
        let (cached, recompute) = decode_step_secs(&gpt, 1000, 3).unwrap();
        assert!(cached > 0.0 && recompute > 0.0);
        assert!(matmul_gflops(32, Kind::Float, Device::Cpu, 3) > 0.0);
        assert!(gemm_floor_secs(&c, 1, 8, Kind::Float, Device::Cpu, 1) > 0.0);
    }
}
