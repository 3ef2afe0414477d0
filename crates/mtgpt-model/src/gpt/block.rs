//! The parts of one transformer block: causal self-attention and the MLP.
use super::cache::{KvSlot, append_kv};
use crate::layers::{LayerNorm, Linear};
use crate::lora::AdapterRows;
use mtgpt_core::Precision;
use tch::{Kind, Tensor};

/// Causal multi-head self-attention.
#[derive(Debug)]
pub struct CausalSelfAttention {
    /// Fused query/key/value projection `[d, 3·h·hd]` (`[d, 3d]` unless heads were pruned).
    pub c_attn: Linear,
    /// Output projection `[h·hd, d]`.
    pub c_proj: Linear,
    pub(super) n_head: i64,
    pub(super) head_dim: i64,
}

/// The position-wise feed-forward network.
#[derive(Debug)]
pub struct Mlp {
    /// `[d, d_ff]` (this layer's width, smaller when neurons were pruned).
    pub c_fc: Linear,
    /// `[d_ff, d]`.
    pub c_proj: Linear,
}

/// One pre-LN transformer block.
#[derive(Debug)]
pub struct Block {
    /// Norm before attention.
    pub ln_1: LayerNorm,
    /// Attention.
    pub attn: CausalSelfAttention,
    /// Norm before the MLP.
    pub ln_2: LayerNorm,
    /// MLP.
    pub mlp: Mlp,
}

/// What every layer of one forward pass shares.
#[derive(Clone, Copy)]
pub(super) struct Pass<'a> {
    /// Dropout probability (0 in evaluation).
    pub(super) dropout: f64,
    /// Compute precision.
    pub(super) precision: Precision,
    /// Which adapter each row goes through, one entry per adapter stack.
    pub(super) adapters: &'a [AdapterRows],
    /// Training (adapter dropout on).
    pub(super) train: bool,
}

/// How attention is masked for one forward pass.
pub(super) enum AttnMask {
    /// Plain causal attention over the new tokens only.
    Causal,
    /// Every query may see every key (one new token, no padding).
    None,
    /// Explicit `[batch, 1, q, k]` boolean mask (true = may attend).
    Explicit(Tensor),
}

/// Up to this many keys, bf16 attention over several queries runs as plain products and a
/// softmax instead of libtorch's CPU flash kernel: forward + backward of one 8-head layer,
/// head width 64, measured here 20 vs 33 ms at 256 keys (batch 8), 5 vs 14 ms at 128 keys
/// (batch 16), about even at 512 and 2× slower at 1024, where the score matrix grows too big.
pub const BF16_MATH_ATTENTION_MAX_KEYS: i64 = 256;

/// Attention as `softmax(q kᵀ / √d + mask) v` in the dtype of `q` (`allowed`: true = may
/// attend, broadcast to `[b, h, q, k]`; every query row must allow at least one key).
fn math_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    allowed: Option<&Tensor>,
    dropout: f64,
) -> Tensor {
    let hd = q.size().last().copied().unwrap_or(1);
    let scores = (q * (1.0 / (hd as f64).sqrt())).matmul(&k.transpose(-2, -1));
    let scores = match allowed {
        Some(m) => scores.masked_fill(&m.logical_not(), f64::NEG_INFINITY),
        None => scores,
    };
    let p = scores.softmax(-1, q.kind());
    let p = if dropout > 0.0 {
        p.dropout(dropout, true)
    } else {
        p
    };
    p.matmul(v)
}

impl CausalSelfAttention {
    pub(super) fn forward(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        cache: Option<(&mut KvSlot, i64, i64, i64)>,
        pass: &Pass<'_>,
    ) -> Tensor {
        let Pass {
            dropout,
            precision,
            adapters,
            train,
        } = *pass;
        let (b, t, _) = x.size3().unwrap_or((0, 0, 0));
        let hd = self.head_dim;
        let inner = self.n_head * hd;
        let qkv = self.c_attn.forward_adapted(x, precision, adapters, train);
        let heads = |z: Tensor| z.view([b, t, self.n_head, hd]).transpose(1, 2);
        let parts = qkv.split(inner, -1);
        let (q, mut k, mut v) = (
            heads(parts[0].shallow_clone()),
            heads(parts[1].shallow_clone()),
            heads(parts[2].shallow_clone()),
        );
        if let Some((slot, past, max_len, reserve)) = cache {
            (k, v) = append_kv(slot, &k, &v, past, max_len, reserve);
        }
        let y = attend(&q, &k, &v, mask, t > 1, dropout);
        let y = y.transpose(1, 2).contiguous().view([b, t, inner]);
        self.c_proj.forward_adapted(&y, precision, adapters, train)
    }

    /// The attention output `[n, 1, h·hd]` at the flat positions `at` (`[n]` into
    /// `[b · t]`) of `x` `[b, t, d]` (no cache): queries there, keys and values everywhere
    /// in their rows, each query masked as it is in the full pass. `rows` is the row of each
    /// position and `at_pass` the pass with adapters chosen per position.
    fn forward_at(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        at: &Tensor,
        rows: &Tensor,
        pass: &Pass<'_>,
        at_pass: &Pass<'_>,
    ) -> Tensor {
        let (b, t, _) = x.size3().unwrap_or((0, 0, 0));
        let (hd, h) = (self.head_dim, self.n_head);
        let inner = h * hd;
        let n = at.size()[0];
        let qkv = self
            .c_attn
            .forward_adapted(x, pass.precision, pass.adapters, pass.train);
        let parts = qkv.split(inner, -1);
        let q = parts[0]
            .reshape([b * t, h, hd])
            .index_select(0, at)
            .view([n, h, 1, hd]);
        let kv = |z: &Tensor| z.view([b, t, h, hd]).transpose(1, 2).index_select(0, rows);
        let (k, v) = (kv(&parts[1]), kv(&parts[2]));
        let dev = x.device();
        let allowed = match mask {
            AttnMask::Causal => {
                let col = at.remainder(t).view([n, 1]);
                Tensor::arange(t, (Kind::Int64, dev))
                    .view([1, t])
                    .le_tensor(&col)
                    .view([n, 1, 1, t])
            }
            AttnMask::None => Tensor::ones([n, 1, 1, t], (Kind::Bool, dev)),
            AttnMask::Explicit(m) => {
                let keys = m.size()[3];
                m.expand([b, 1, t, keys], false)
                    .reshape([b * t, keys])
                    .index_select(0, at)
                    .view([n, 1, 1, keys])
            }
        };
        let y = attend(
            &q,
            &k,
            &v,
            &AttnMask::Explicit(allowed),
            t > 1,
            pass.dropout,
        );
        let y = y.view([n, 1, inner]);
        self.c_proj
            .forward_adapted(&y, at_pass.precision, at_pass.adapters, at_pass.train)
    }
}

/// Masked attention of `q` over `k`, `v` (`[b, h, q, hd]`, `[b, h, k, hd]`): bf16 runs as
/// plain products and a softmax up to [`BF16_MATH_ATTENTION_MAX_KEYS`] keys when the pass
/// has several queries per row (`multi`), otherwise libtorch's fused kernel.
fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttnMask,
    multi: bool,
    dropout: f64,
) -> Tensor {
    let t = q.size()[2];
    let keys = k.size()[2];
    if q.kind() == Kind::BFloat16 && multi && keys <= BF16_MATH_ATTENTION_MAX_KEYS {
        let allowed = match mask {
            AttnMask::Causal => Some(Tensor::ones([t, t], (Kind::Bool, q.device())).tril(0)),
            AttnMask::None => None,
            AttnMask::Explicit(m) => Some(m.shallow_clone()),
        };
        math_attention(q, k, v, allowed.as_ref(), dropout)
    } else {
        let (m, causal) = match mask {
            AttnMask::Causal => (None, true),
            AttnMask::None => (None, false),
            AttnMask::Explicit(m) => (Some(m), false),
        };
        Tensor::scaled_dot_product_attention(q, k, v, m, dropout, causal, None, false)
    }
}

impl Block {
    /// The block's output `[n, 1, d]` at the flat positions `at` (`[n]` i64 into `[b · t]`)
    /// of its input `x` `[b, t, d]`: attention with queries there only, then the projection,
    /// the MLP and both residuals at those positions alone. Per-row adapters follow each
    /// position's row.
    pub(super) fn forward_at(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        at: &Tensor,
        pass: &Pass<'_>,
    ) -> Tensor {
        let (_, t, d) = x.size3().unwrap_or((0, 0, 0));
        let n = at.size()[0];
        let rows = at.divide_scalar_mode(t, "floor");
        let adapters: Vec<AdapterRows> = pass
            .adapters
            .iter()
            .map(|a| match a {
                AdapterRows::All(k) => AdapterRows::All(*k),
                AdapterRows::Rows(r) => {
                    AdapterRows::Rows(r.to_device(rows.device()).index_select(0, &rows))
                }
                AdapterRows::Tokens(r) => AdapterRows::Tokens(
                    r.to_device(at.device())
                        .reshape([-1])
                        .index_select(0, at)
                        .view([n, 1]),
                ),
            })
            .collect();
        let at_pass = Pass {
            adapters: &adapters,
            ..*pass
        };
        let a = self
            .attn
            .forward_at(&self.ln_1.forward(x), mask, at, &rows, pass, &at_pass);
        let x_at = x.reshape([-1, d]).index_select(0, at).view([n, 1, d]);
        self.finish(&x_at, a, &at_pass)
    }

    /// The rest of the block once attention gave `a` for the residual stream `x`: the
    /// attention residual, then the MLP and its residual.
    pub(super) fn finish(&self, x: &Tensor, a: Tensor, pass: &Pass<'_>) -> Tensor {
        // Not `+=`: LayerNorm saved `x` for backward, so it must not change in place.
        let x = x + dropout(float(a), pass.dropout);
        let m = self.mlp.forward(&self.ln_2.forward(&x), pass);
        &x + dropout(float(m), pass.dropout)
    }
}

impl CausalSelfAttention {
    /// Attention heads of this layer.
    pub fn n_head(&self) -> i64 {
        self.n_head
    }

    /// Width of one head.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
    }
}

impl Mlp {
    pub(super) fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Tensor {
        let Pass {
            precision,
            adapters,
            train,
            ..
        } = *pass;
        // GPT-2's tanh approximation of GELU ("gelu_new").
        let h = self
            .c_fc
            .forward_adapted(x, precision, adapters, train)
            .gelu("tanh");
        self.c_proj.forward_adapted(&h, precision, adapters, train)
    }
}

/// `x` in fp32 (no op when it already is).
fn float(x: Tensor) -> Tensor {
    if x.kind() == Kind::Float {
        x
    } else {
        x.to_kind(Kind::Float)
    }
}

/// Dropout with probability `p` (no op at all when `p` is 0, as in evaluation).
pub(super) fn dropout(x: Tensor, p: f64) -> Tensor {
    if p > 0.0 { x.dropout(p, true) } else { x }
}
