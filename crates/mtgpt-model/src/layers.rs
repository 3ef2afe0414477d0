//! The building blocks: `Linear` (GPT-2 Conv1D layout), `LayerNorm`, `Embedding`. Named
//! structs holding their tensors, so compression can find and replace every `Linear`.
//!
//! A `Linear` or `Embedding` may also carry an [`Int8Weight`] (per-output-channel symmetric
//! int8, set by [`Linear::quantize_int8`]); its forward pass then runs on libtorch's int8
//! kernels instead of the fp32 weight: for a few rows (decoding) the weight-only kernel
//! `_weight_int8pack_mm` on bf16 activations, for many rows (prompts, batches) `_int_mm`
//! (int8 × int8 → int32, VNNI on x86) on activations quantized per row on the fly.
use mtgpt_core::Precision;
use tch::{Kind, Tensor, nn};

pub(crate) use crate::dtype::compute;
pub use crate::dtype::compute_kind;

/// Per-row symmetric int8 weights: row `r` of the real matrix is `weight[r] × scales[r]`.
#[derive(Debug)]
pub struct Int8Weight {
    /// `[rows, cols]` int8, every value in `[-127, 127]`.
    pub weight: Tensor,
    /// `[rows]` fp32 scales (`max |row| / 127`).
    pub scales: Tensor,
    /// The scales in bf16, for the weight-only kernel.
    scales_bf16: Tensor,
    /// `weight` transposed `[cols, rows]`, contiguous, for `_int_mm`.
    weight_t: Tensor,
}

/// Up to this many rows, [`Int8Weight`] runs the weight-only kernel (memory-bound regime);
/// above, dynamic activation quantization and `_int_mm` (compute-bound regime). Measured with
/// `cargo run --release -p mtgpt-compress --example int8_kernels`.
pub const INT8_WEIGHT_ONLY_MAX_ROWS: i64 = 8;

impl Int8Weight {
    /// Quantizes a `[rows, cols]` float matrix row by row: `scale = max|row| / 127`,
    /// `q = round(w / scale)`. A zero row gets scale 1 (and zeros).
    pub fn quantize(w: &Tensor) -> Self {
        tch::no_grad(|| {
            let w = w.to_kind(Kind::Float).contiguous();
            let amax = w.abs().amax([1i64].as_slice(), true);
            let scales = (amax / 127.0).clamp_min(1e-12);
            let scales = scales.where_self(&scales.gt(1e-12), &scales.ones_like());
            let q = (&w / &scales)
                .round()
                .clamp(-127.0, 127.0)
                .to_kind(Kind::Int8);
            Self::from_parts(q, scales.squeeze_dim(1))
        })
    }

    /// From stored parts: `weight` `[rows, cols]` int8 and `scales` `[rows]` (any float kind).
    pub fn from_parts(weight: Tensor, scales: Tensor) -> Self {
        let scales = scales.to_kind(Kind::Float).contiguous();
        Int8Weight {
            weight_t: weight.tr().contiguous(),
            weight: weight.contiguous(),
            scales_bf16: scales.to_kind(Kind::BFloat16),
            scales,
        }
    }

    /// The float matrix it stands for, `[rows, cols]` fp32.
    pub fn dequantize(&self) -> Tensor {
        self.weight.to_kind(Kind::Float) * self.scales.unsqueeze(1)
    }

    /// `x Wᵀ` for `x` `[m, cols]` (fp32 or bf16) → `[m, rows]` in the kind of `x`.
    ///
    /// Few rows: `_weight_int8pack_mm` with bf16 activations (its fp32 path is a slow
    /// fallback). Many rows: each row of `x` quantized to int8 with its own scale,
    /// `_int_mm` (int32 accumulation), rescaled by both scales.
    pub fn matmul_t(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        if x.size()[0] <= INT8_WEIGHT_ONLY_MAX_ROWS {
            let xb = if kind == Kind::BFloat16 {
                x.shallow_clone()
            } else {
                x.to_kind(Kind::BFloat16)
            };
            let y = xb.internal_weight_int8pack_mm(&self.weight, &self.scales_bf16);
            return if kind == Kind::BFloat16 {
                y
            } else {
                y.to_kind(kind)
            };
        }
        let xf = x.to_kind(Kind::Float);
        let sx = xf.abs().amax([1i64].as_slice(), true).clamp_min(1e-12) / 127.0;
        let xq = (&xf / &sx).round().to_kind(Kind::Int8);
        let y = xq.internal_int_mm(&self.weight_t).to_kind(Kind::Float) * sx * &self.scales;
        if kind == Kind::Float {
            y
        } else {
            y.to_kind(kind)
        }
    }
}

/// A dense layer `y = x W + b` with `W` stored `[in, out]`, as GPT-2's Conv1D (and HF
/// checkpoints) store it.
#[derive(Debug)]
pub struct Linear {
    /// `[in, out]` weight (fp32 master copy; the dequantized values once quantized).
    pub weight: Tensor,
    /// `[out]` bias.
    pub bias: Tensor,
    /// The int8 form `[out, in]` the forward pass uses when set.
    pub int8: Option<Int8Weight>,
    /// Low-rank adapter stacks on this layer (shared first, then per task), see
    /// [`crate::lora`]; empty when it has none.
    pub lora: Vec<crate::lora::LoraSet>,
    /// Weight and bias already cast to the compute dtype, while a
    /// [`crate::Gpt::with_compute_copies`] scope runs (decoding in bf16 then reads 2 bytes per
    /// weight instead of casting 4-byte masters every step).
    copies: std::sync::Mutex<Option<(Tensor, Tensor)>>,
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
            int8: None,
            lora: Vec::new(),
            copies: std::sync::Mutex::new(None),
        }
    }

    /// Whether [`Linear::set_compute_copies`] copies are held.
    pub(crate) fn has_compute_copies(&self) -> bool {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Keeps copies of the weight and bias in the compute dtype of `precision` for the
    /// forward pass (`true`), or drops them (`false`). Only for inference: the copies are
    /// detached from the masters and do not follow later changes to them.
    pub(crate) fn set_compute_copies(&self, precision: Precision, on: bool) {
        let copies = on.then(|| {
            tch::no_grad(|| {
                (
                    compute(&self.weight, precision).detach(),
                    compute(&self.bias, precision).detach(),
                )
            })
        });
        *self.copies.lock().unwrap_or_else(|p| p.into_inner()) = copies;
    }

    /// Quantizes the weight to per-output-channel symmetric int8 and makes the forward pass
    /// use it; the fp32 weight is overwritten with the dequantized values, so both agree.
    pub fn quantize_int8(&mut self) {
        let q = Int8Weight::quantize(&self.weight.tr());
        tch::no_grad(|| self.weight.copy_(&q.dequantize().tr()));
        self.int8 = Some(q);
    }

    /// [`Linear::forward`] plus the update of each adapter stack for the rows `rows` selects
    /// (one entry per stack in [`Linear::lora`]); `train` turns adapter dropout on.
    ///
    /// # Shapes: `[batch, .., in]` → `[batch, .., out]`, in the compute dtype of `precision`.
    pub fn forward_adapted(
        &self,
        x: &Tensor,
        precision: Precision,
        rows: &[crate::lora::AdapterRows],
        train: bool,
    ) -> Tensor {
        let y = self.forward(x, precision);
        self.lora
            .iter()
            .zip(rows)
            .fold(y, |y, (set, r)| y + set.delta(x, r, precision, train))
    }

    /// # Shapes: `[.., in]` → `[.., out]`, in the compute dtype of `precision`.
    pub fn forward(&self, x: &Tensor, precision: Precision) -> Tensor {
        if let Some(q) = &self.int8 {
            let mut shape = x.size();
            let d_in = shape.last().copied().unwrap_or(1);
            let x2 = compute(x, precision).reshape([-1, d_in]);
            let y = q.matmul_t(&x2) + compute(&self.bias, precision);
            if let Some(last) = shape.last_mut() {
                *last = y.size()[1];
            }
            return y.view(shape.as_slice());
        }
        if crate::invariant::is_batch_invariant()
            && self.weight.size()[0] > crate::invariant::INVARIANT_CHUNK
        {
            let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
            let (w, b) = match copies.as_ref() {
                Some((w, b)) => (w.shallow_clone(), b.shallow_clone()),
                None => (
                    compute(&self.weight, precision),
                    compute(&self.bias, precision),
                ),
            };
            return crate::invariant::matmul(&compute(x, precision), &w) + b;
        }
        // One fused op (and no casts in fp32): decoding runs many tiny layers, where the
        // per-op overhead is what costs.
        match precision {
            Precision::Fp32 if x.kind() == Kind::Float => {
                x.linear(&self.weight.tr(), Some(&self.bias))
            }
            _ => {
                let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
                match copies.as_ref() {
                    Some((w, b)) => compute(x, precision).linear(&w.tr(), Some(b)),
                    None => compute(x, precision).linear(
                        &compute(&self.weight, precision).tr(),
                        Some(&compute(&self.bias, precision)),
                    ),
                }
            }
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
    /// `[n, d]` table (the dequantized values once quantized).
    pub weight: Tensor,
    /// The int8 form `[n, d]` lookups (and a tied LM head) use when set.
    pub int8: Option<Int8Weight>,
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
            int8: None,
        }
    }

    /// Quantizes the table row by row to symmetric int8 (see [`Linear::quantize_int8`]).
    pub fn quantize_int8(&mut self) {
        let q = Int8Weight::quantize(&self.weight);
        tch::no_grad(|| self.weight.copy_(&q.dequantize()));
        self.int8 = Some(q);
    }

    /// # Shapes: `[..]` i64 → `[.., d]` fp32. Ids outside the table are an error, not a panic.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor, tch::TchError> {
        match &self.int8 {
            Some(q) => {
                let rows = Tensor::f_embedding(&q.weight, ids, -1, false, false)?;
                let scales = Tensor::f_embedding(&q.scales.unsqueeze(1), ids, -1, false, false)?;
                rows.f_to_kind(Kind::Float)?.f_mul(&scales)
            }
            None => Tensor::f_embedding(&self.weight, ids, -1, false, false),
        }
    }

    /// `x Wᵀ` against the table (a tied LM head), int8 when quantized.
    ///
    /// # Shapes: `[.., d]` → `[.., n]` fp32
    pub fn project(&self, x: &Tensor, precision: Precision) -> Tensor {
        match &self.int8 {
            Some(q) => {
                let mut shape = x.size();
                let d = shape.last().copied().unwrap_or(1);
                let y = q.matmul_t(&compute(x, precision).reshape([-1, d]));
                if let Some(last) = shape.last_mut() {
                    *last = y.size()[1];
                }
                y.view(shape.as_slice()).to_kind(Kind::Float)
            }
            None => compute(x, precision)
                .matmul(&compute(&self.weight, precision).tr())
                .to_kind(Kind::Float),
        }
    }
}
