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
        let keys = k.size()[2];
        let y = if q.kind() == Kind::BFloat16 && t > 1 && keys <= BF16_MATH_ATTENTION_MAX_KEYS {
            let allowed = match mask {
                AttnMask::Causal => Some(Tensor::ones([t, t], (Kind::Bool, q.device())).tril(0)),
                AttnMask::None => None,
                AttnMask::Explicit(m) => Some(m.shallow_clone()),
            };
            math_attention(&q, &k, &v, allowed.as_ref(), dropout)
        } else {
            let (m, causal) = match mask {
                AttnMask::Causal => (None, true),
                AttnMask::None => (None, false),
                AttnMask::Explicit(m) => (Some(m), false),
            };
            Tensor::scaled_dot_product_attention(&q, &k, &v, m, dropout, causal, None, false)
        };
        let y = y.transpose(1, 2).contiguous().view([b, t, inner]);
        self.c_proj.forward_adapted(&y, precision, adapters, train)
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
