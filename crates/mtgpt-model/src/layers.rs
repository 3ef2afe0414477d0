//! The building blocks: `Linear` (GPT-2 Conv1D layout), `LayerNorm`, `Embedding`. Named
//! structs holding their tensors, so compression can find and replace every `Linear`.
use mtgpt_core::Precision;
use tch::{Kind, Tensor, nn};

/// Casts to the compute dtype of `precision` (no-op when already there).
pub(crate) fn compute(x: &Tensor, precision: Precision) -> Tensor {
    match precision {
        Precision::Bf16 if x.kind() != Kind::BFloat16 => x.to_kind(Kind::BFloat16),
        Precision::Fp32 if x.kind() != Kind::Float => x.to_kind(Kind::Float),
        _ => x.shallow_clone(),
    }
}

/// A dense layer `y = x W + b` with `W` stored `[in, out]`, as GPT-2's Conv1D (and HF
/// checkpoints) store it.
#[derive(Debug)]
pub struct Linear {
    /// `[in, out]` weight (fp32 master copy).
    pub weight: Tensor,
    /// `[out]` bias.
    pub bias: Tensor,
}

impl Linear {
    /// A layer under `p` with weights ~ N(0, std²) and zero bias.
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, std: f64) -> Self {
        Linear {
            weight: p.var(
                "weight",
                &[d_in, d_out],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ),
            bias: p.zeros("bias", &[d_out]),
        }
    }

    /// # Shapes: `[.., in]` → `[.., out]`, in the compute dtype of `precision`.
    pub fn forward(&self, x: &Tensor, precision: Precision) -> Tensor {
        // One fused op (and no casts in fp32): decoding runs many tiny layers, where the
        // per-op overhead is what costs.
        match precision {
            Precision::Fp32 if x.kind() == Kind::Float => {
                x.linear(&self.weight.tr(), Some(&self.bias))
            }
            _ => compute(x, precision).linear(
                &compute(&self.weight, precision).tr(),
                Some(&compute(&self.bias, precision)),
            ),
        }
    }
}

/// Layer normalization over the last dimension (computed in fp32 for stability).
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor,
    /// Shift.
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// A LayerNorm of width `d` under `p` (weight 1, bias 0).
    pub fn new(p: nn::Path, d: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.ones("weight", &[d]),
            bias: p.zeros("bias", &[d]),
            eps,
        }
    }

    /// # Shapes: `[.., d]` → `[.., d]` fp32.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x = if x.kind() == Kind::Float {
            x.shallow_clone()
        } else {
            x.to_kind(Kind::Float)
        };
        let d = *x.size().last().unwrap_or(&1);
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// A lookup table.
#[derive(Debug)]
pub struct Embedding {
    /// `[n, d]` table.
    pub weight: Tensor,
}

impl Embedding {
    /// A table of `n × d` entries ~ N(0, std²) under `p`.
    pub fn new(p: nn::Path, n: i64, d: i64, std: f64) -> Self {
        Embedding {
            weight: p.var(
                "weight",
                &[n, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ),
        }
    }

    /// # Shapes: `[..]` i64 → `[.., d]`. Ids outside the table are an error, not a panic.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor, tch::TchError> {
        Tensor::f_embedding(&self.weight, ids, -1, false, false)
    }
}
