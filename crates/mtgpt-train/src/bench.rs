//! Speed of the trainer's step and of decoding on random data (`mtgpt bench`): full training
//! steps (forward, backward, clipping, the trainer's AdamW) and KV-cache decoding, with the
//! ceilings of this machine (`mtgpt_model::perf`) to read them against.
use crate::error::Result;
use crate::optim::AdamW;
use mtgpt_core::ModelConfig;
use mtgpt_model::{Model, perf};
use std::fmt;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Figures of [`bench_train`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBench {
    /// Parameters of the model.
    pub params: usize,
    /// Tokens per second over the timed steps.
    pub tokens_per_s: f64,
    /// Milliseconds per step.
    pub step_ms: f64,
    /// Milliseconds per step in clipping and the optimizer update.
    pub optimizer_ms: f64,
    /// Loss of the first and the last timed step.
    pub loss_first: f64,
    /// See `loss_first`.
    pub loss_last: f64,
    /// libtorch intra-op threads.
    pub threads: i32,
    /// `fp32` or `bf16`.
    pub precision: String,
    /// Model FLOP per step (PaLM convention), in GFLOP.
    pub model_gflop: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
    /// The ceilings, when measured.
    pub ceiling: Option<TrainCeiling>,
}

/// This machine's ceilings for a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainCeiling {
    /// Fastest 2048³ matrix product, GFLOP/s.
    pub peak_gflops: f64,
    /// Achieved over peak.
    pub mfu: f64,
    /// Sum of the step's matrix products timed alone, milliseconds.
    pub gemm_floor_ms: f64,
    /// That floor over the step time.
    pub gemm_share: f64,
}

impl fmt::Display for TrainBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "params={} tokens_per_s={:.0} step_ms={:.1} optimizer_ms={:.1} loss_first={:.4} loss_last={:.4} threads={} precision={} model_gflop={:.1} gflops={:.1}",
            self.params,
            self.tokens_per_s,
            self.step_ms,
            self.optimizer_ms,
            self.loss_first,
            self.loss_last,
            self.threads,
            self.precision,
            self.model_gflop,
            self.gflops,
        )?;
        if let Some(c) = &self.ceiling {
            write!(
                f,
                " peak_gflops={:.1} mfu={:.3} gemm_floor_ms={:.1} gemm_share={:.3}",
                c.peak_gflops, c.mfu, c.gemm_floor_ms, c.gemm_share
            )?;
        }
        Ok(())
    }
}

/// Times `steps` full training steps of a fresh model of shape `cfg` on `batch` random
/// sequences of `cfg.block_size + 1` tokens (two untimed warm-up steps first), with the
/// optimizer `mtgpt train` uses; then, with `ceiling`, this machine's ceilings for the step.
pub fn bench_train(
    cfg: &ModelConfig,
    batch: usize,
    steps: usize,
    ceiling: bool,
    device: Device,
) -> Result<TrainBench> {
    tch::manual_seed(0);
    let m = Model::new(cfg, device)?;
    let dev = m.gpt.device();
    let (block, vocab) = (cfg.block_size as i64, cfg.vocab_size as i64);
    // Decay / no-decay groups, β = (0.9, 0.95), as in training.
    let mut opt = AdamW::new(&m.vs, 0.9, 0.95, 1e-8, 0.1);
    let data = Tensor::randint(vocab, [batch as i64, block + 1], (Kind::Int64, dev));
    let opt_secs = std::cell::Cell::new(0.0);
    let step = |opt: &mut AdamW| -> Result<f64> {
        let x = data.narrow(1, 0, block);
        let y = data.narrow(1, 1, block);
        let h = m.gpt.forward(&x, None, None, true)?.hidden;
        let loss = m
            .gpt
            .logits(&h)
            .reshape([-1, vocab])
            .cross_entropy_for_logits(&y.reshape([-1]));
        opt.zero_grad();
        loss.backward();
        let start = Instant::now();
        opt.clip_grad_norm(1.0);
        opt.step(3e-4);
        opt_secs.set(opt_secs.get() + start.elapsed().as_secs_f64());
        Ok(loss.double_value(&[]))
    };
    for _ in 0..2 {
        step(&mut opt)?; // warm-up, not timed
    }
    opt_secs.set(0.0);
    let mut losses = Vec::new();
    let start = Instant::now();
    for _ in 0..steps {
        losses.push(step(&mut opt)?);
    }
    let secs = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    let tokens = (batch * cfg.block_size) as f64;
    let flop = perf::training_flops(cfg, batch, cfg.block_size);
    let mut out = TrainBench {
        params: cfg.num_parameters(),
        tokens_per_s: tokens / secs,
        step_ms: 1000.0 * secs,
        optimizer_ms: 1000.0 * opt_secs.get() / steps.max(1) as f64,
        loss_first: losses.first().copied().unwrap_or(f64::NAN),
        loss_last: losses.last().copied().unwrap_or(f64::NAN),
        threads: tch::get_num_threads(),
        precision: precision_name(cfg),
        model_gflop: flop / 1e9,
        gflops: flop / secs / 1e9,
        ceiling: None,
    };
    if ceiling {
        drop(m);
        let kind = mtgpt_model::layers::compute_kind(cfg.precision);
        let peak = perf::matmul_gflops(2048, kind, dev, 8);
        let floor = perf::gemm_floor_secs(cfg, batch, cfg.block_size, kind, dev, 5);
        out.ceiling = Some(TrainCeiling {
            peak_gflops: peak,
            mfu: flop / secs / 1e9 / peak,
            gemm_floor_ms: 1000.0 * floor,
            gemm_share: floor / secs,
        });
    }
    Ok(out)
}

/// Figures of [`bench_generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeBench {
    /// New tokens decoded.
    pub new_tokens: usize,
    /// Tokens per second with the KV cache.
    pub cached_tokens_per_s: f64,
    /// Tokens per second recomputing the whole prefix every step.
    pub recompute_tokens_per_s: f64,
    /// The ceilings, when measured.
    pub ceiling: Option<DecodeCeiling>,
}

/// One decoding step at full context, and the memory-bandwidth floor.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeCeiling {
    /// Context of the timed step.
    pub context: usize,
    /// Milliseconds of one cached step.
    pub cached_step_ms: f64,
    /// Milliseconds of one recomputing step.
    pub recompute_step_ms: f64,
    /// Megabytes of weights read per step.
    pub weight_mb: f64,
    /// Measured read bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    /// Tokens per second if a step cost only reading the weights once.
    pub floor_tokens_per_s: f64,
}

impl fmt::Display for DecodeBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "new_tokens={} cached_tokens_per_s={:.1} recompute_tokens_per_s={:.1} speedup={:.1}",
            self.new_tokens,
            self.cached_tokens_per_s,
            self.recompute_tokens_per_s,
            self.cached_tokens_per_s / self.recompute_tokens_per_s
        )?;
        if let Some(c) = &self.ceiling {
            write!(
                f,
                " context={} cached_step_ms={:.3} recompute_step_ms={:.2} step_speedup={:.1} weight_mb={:.1} bandwidth_gbs={:.1} floor_tokens_per_s={:.0}",
                c.context,
                c.cached_step_ms,
                c.recompute_step_ms,
                c.recompute_step_ms / c.cached_step_ms,
                c.weight_mb,
                c.bandwidth_gbs,
                c.floor_tokens_per_s
            )?;
        }
        Ok(())
    }
}

/// Decodes `steps` new tokens with a fresh model of shape `cfg`, with and without the KV
/// cache; then, with `ceiling`, one step at full context both ways and the bandwidth floor.
pub fn bench_generate(
    cfg: &ModelConfig,
    steps: usize,
    ceiling: bool,
    device: Device,
) -> Result<DecodeBench> {
    tch::manual_seed(0);
    let m = Model::new(cfg, device)?;
    let (cached, recompute) = mtgpt_model::generate::decode_speed(&m.gpt, steps)?;
    let n = steps.min(cfg.block_size - 1);
    let mut out = DecodeBench {
        new_tokens: n,
        cached_tokens_per_s: cached,
        recompute_tokens_per_s: recompute,
        ceiling: None,
    };
    if ceiling {
        let (c_step, r_step) = perf::decode_step_secs(&m.gpt, n, 9)?;
        let bytes = perf::decode_weight_bytes(cfg);
        let bw = perf::memory_bandwidth_gbs(m.gpt.device(), 5);
        out.ceiling = Some(DecodeCeiling {
            context: n,
            cached_step_ms: 1000.0 * c_step,
            recompute_step_ms: 1000.0 * r_step,
            weight_mb: bytes / 1e6,
            bandwidth_gbs: bw,
            floor_tokens_per_s: bw * 1e9 / bytes,
        });
    }
    Ok(out)
}

fn precision_name(cfg: &ModelConfig) -> String {
    match cfg.precision {
        mtgpt_core::Precision::Bf16 => "bf16".into(),
        _ => "fp32".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            n_layer: 1,
            n_head: 2,
            d_model: 16,
            d_ff: 32,
            block_size: 8,
            vocab_size: 50,
            ..ModelConfig::tiny()
        }
    }

    #[test]
    fn a_training_bench_trains_and_reports_every_figure() {
        let b = bench_train(&tiny(), 2, 3, false, Device::Cpu).unwrap();
        assert_eq!(b.params, tiny().num_parameters());
        assert!(b.tokens_per_s > 0.0 && b.step_ms > 0.0, "{b:?}");
        assert!(b.optimizer_ms > 0.0 && b.optimizer_ms < b.step_ms, "{b:?}");
        // Random labels over 50 tokens: the loss starts near ln 50.
        assert!((b.loss_first - 50f64.ln()).abs() < 1.0, "{b:?}");
        assert!(b.ceiling.is_none());
        let line = b.to_string();
        for key in [
            "params=",
            "tokens_per_s=",
            "optimizer_ms=",
            "model_gflop=",
            "gflops=",
        ] {
            assert!(line.contains(key), "{line}");
        }
        assert!(!line.contains("mfu="), "{line}");
    }

    #[test]
    fn a_decoding_bench_decodes_both_ways_and_reports_them() {
        let b = bench_generate(&tiny(), 5, false, Device::Cpu).unwrap();
        assert_eq!(b.new_tokens, 5);
        assert!(b.cached_tokens_per_s > 0.0 && b.recompute_tokens_per_s > 0.0);
        assert!(
            b.to_string()
                .starts_with("new_tokens=5 cached_tokens_per_s=")
        );
    }
}
