//! The GPT trunk: token + learned position embeddings, pre-LN blocks of causal self-attention
//! (libtorch's `scaled_dot_product_attention`) and a GELU MLP, a final LayerNorm and an LM
//! head tied to the token embedding. Parameter names follow Hugging Face GPT-2
//! (`transformer.h.{i}.attn.c_attn.weight`, ...), with Conv1D's `[in, out]` weight layout.
mod block;
mod cache;

pub use block::{BF16_MATH_ATTENTION_MAX_KEYS, Block, CausalSelfAttention, Mlp};
pub use cache::KvCache;

use crate::error::{Error, Result};
use crate::layers::{Embedding, LayerNorm, Linear};
use crate::lora::{AdapterLayout, AdapterRows, LoraSet};
use block::{AttnMask, dropout};
use mtgpt_core::{ModelConfig, Precision};
use tch::{Device, Kind, Tensor, nn};

/// Output of [`Gpt::forward`].
#[derive(Debug)]
pub struct GptOutput {
    /// Final hidden states after `ln_f`: `[batch, seq, d_model]` fp32.
    pub hidden: Tensor,
    /// With `keep_layers`: the residual stream after the embeddings and after each block
    /// (`n_layer + 1` tensors, `[batch, seq, d_model]` fp32).
    pub layers: Vec<Tensor>,
}

/// The GPT trunk with its tied LM head.
#[derive(Debug)]
pub struct Gpt {
    /// The shape it was built with.
    pub config: ModelConfig,
    /// Token embedding `[vocab, d]` (also the LM head).
    pub wte: Embedding,
    /// Position embedding `[block_size, d]`.
    pub wpe: Embedding,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Final norm.
    pub ln_f: LayerNorm,
    /// The adapters on the block layers, when there are any ([`Gpt::add_adapters`]).
    pub adapters: Option<AdapterLayout>,
    /// Which adapter each row of the next passes goes through ([`Gpt::select_adapters`]).
    active: std::sync::Mutex<Vec<AdapterRows>>,
}

/// The tied LM head for decoding: a `[d_model, vocab]` contiguous copy of the token embedding
/// (in the compute dtype), because a matrix–vector product over that layout streams the
/// weights about twice as fast as over the `[vocab, d_model]` table (measured here: 14 vs
/// 7 GB/s), and one decoding step is bound by reading its weights. Gives the same logits as
/// [`Gpt::logits`] up to float rounding. An int8 model keeps its own kernel.
#[derive(Debug)]
pub struct DecodeHead<'a> {
    gpt: &'a Gpt,
    transposed: Option<Tensor>,
}

impl DecodeHead<'_> {
    /// Next-token logits, as [`Gpt::logits`].
    ///
    /// # Shapes: `[batch, seq, d_model]` → `[batch, seq, vocab]` fp32
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        match &self.transposed {
            Some(wt) => crate::layers::compute(hidden, self.gpt.config.precision)
                .matmul(wt)
                .to_kind(Kind::Float),
            None => self.gpt.logits(hidden),
        }
    }
}

impl Gpt {
    /// Builds the trunk under `p` (normally `vs.root()`), GPT-2 initialisation: N(0, 0.02²)
    /// weights and embeddings, residual projections scaled by 1/√(2·n_layer), zero biases.
    pub fn new(p: &nn::Path, config: &ModelConfig) -> Result<Self> {
        let c = config;
        if c.vocab_size == 0
            || c.n_head == 0
            || c.d_model % c.n_head != 0
            || c.n_layer == 0
            || c.block_size == 0
        {
            return Err(Error::Invalid(format!(
                "model shape: vocab_size {} (must be set), d_model {} must be a multiple of n_head {}, n_layer {} and block_size {} at least 1",
                c.vocab_size, c.d_model, c.n_head, c.n_layer, c.block_size
            )));
        }
        c.check_layer_shapes().map_err(Error::Invalid)?;
        let d = c.d_model as i64;
        let hd = c.head_dim() as i64;
        let std = 0.02;
        let proj_std = std / (2.0 * c.n_layer as f64).sqrt();
        let t = p / "transformer";
        let blocks = (0..c.n_layer)
            .map(|i| {
                let h = &t / "h" / i;
                let (nh, f) = (c.heads_in(i) as i64, c.d_ff_in(i) as i64);
                Block {
                    ln_1: LayerNorm::new(&h / "ln_1", d, c.layer_norm_eps),
                    attn: CausalSelfAttention {
                        c_attn: Linear::new(&h / "attn" / "c_attn", d, 3 * nh * hd, std),
                        c_proj: Linear::new(&h / "attn" / "c_proj", nh * hd, d, proj_std),
                        n_head: nh,
                        head_dim: hd,
                    },
                    ln_2: LayerNorm::new(&h / "ln_2", d, c.layer_norm_eps),
                    mlp: Mlp {
                        c_fc: Linear::new(&h / "mlp" / "c_fc", d, f, std),
                        c_proj: Linear::new(&h / "mlp" / "c_proj", f, d, proj_std),
                    },
                }
            })
            .collect();
        Ok(Gpt {
            config: config.clone(),
            wte: Embedding::new(&t / "wte", c.vocab_size as i64, d, std),
            wpe: Embedding::new(&t / "wpe", c.block_size as i64, d, std),
            blocks,
            ln_f: LayerNorm::new(&t / "ln_f", d, c.layer_norm_eps),
            adapters: None,
            active: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Puts fresh adapters (`B = 0`: the model is unchanged until they train) on the layers
    /// `layout.targets` names, their weights under `p / "adapters" / <stack>`
    /// (`adapters.task.h.0.attn.c_attn.lora_a`, `[n, in, r]`). A trunk has one layout.
    pub fn add_adapters(&mut self, p: &nn::Path, layout: &AdapterLayout) -> Result<()> {
        if self.adapters.is_some() {
            return Err(Error::Invalid("the trunk has adapters already".into()));
        }
        let cfg = layout.config();
        cfg.check()
            .map_err(|(k, why)| Error::Invalid(format!("{k}: {why}")))?;
        if layout.mode.per_task() && layout.tasks.is_empty() {
            return Err(Error::Invalid(
                "per-task adapters need at least one task".into(),
            ));
        }
        let stacks = layout.stacks();
        let (r, scale, drop) = (layout.rank as i64, layout.scale(), layout.dropout);
        for (name, lin) in self.linears_mut() {
            if !cfg.targets_layer(&name) {
                continue;
            }
            let (d_in, d_out) = (lin.weight.size()[0], lin.weight.size()[1]);
            let rest = name.trim_start_matches("transformer.");
            for &(stack, n) in &stacks {
                let mut q = p / "adapters" / stack;
                for part in rest.split('.') {
                    q = &q / part;
                }
                lin.lora
                    .push(LoraSet::new(q, n, d_in, d_out, r, scale, drop));
            }
        }
        self.adapters = Some(layout.clone());
        self.select_adapters(Vec::new());
        Ok(())
    }

    /// Sets which adapter of each stack the rows of the following passes use (one entry per
    /// stack of [`AdapterLayout::stacks`]; see [`AdapterLayout::rows_for`]).
    pub fn select_adapters(&self, rows: Vec<AdapterRows>) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = rows;
    }

    /// Selects task `name`'s adapters for every row (no-op for a trunk without adapters).
    pub fn select_task(&self, name: &str) -> Result<()> {
        if let Some(layout) = &self.adapters {
            self.select_adapters(layout.rows_for(name).map_err(Error::Invalid)?);
        }
        Ok(())
    }

    /// Adds task `name`'s adapter updates into the layers' weights and drops every adapter:
    /// the trunk then computes what it computed with that task's adapters selected, at the
    /// cost of a plain trunk (PEFT's `merge_and_unload`).
    pub fn fold_adapters(&mut self, name: &str) -> Result<()> {
        let Some(layout) = self.adapters.clone() else {
            return Err(Error::Invalid("the trunk has no adapters to fold".into()));
        };
        let rows = layout.rows_for(name).map_err(Error::Invalid)?;
        if self.is_int8() {
            return Err(Error::Invalid(
                "cannot fold adapters into an int8 trunk; fold first, then quantize".into(),
            ));
        }
        for (_, lin) in self.linears_mut() {
            let sets = std::mem::take(&mut lin.lora);
            for (set, r) in sets.iter().zip(&rows) {
                let AdapterRows::All(k) = r else { continue };
                let delta = set.delta_weight(*k);
                tch::no_grad(|| {
                    let _ = lin.weight.g_add_(&delta);
                });
            }
        }
        self.adapters = None;
        self.select_adapters(Vec::new());
        Ok(())
    }

    /// The adapter stacks of every layer that has them: `(layer name, stacks)`.
    pub fn adapter_layers(&self) -> Vec<(String, &[LoraSet])> {
        self.linears()
            .into_iter()
            .filter(|(_, l)| !l.lora.is_empty())
            .map(|(n, l)| (n, l.lora.as_slice()))
            .collect()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.wte.weight.device()
    }

    /// Runs the trunk.
    ///
    /// `attention_mask` (`[batch, seq]`, 1 = real token, 0 = padding; left or right padding)
    /// keeps padding out of attention, and positions count real tokens only, so padding never
    /// changes the outputs at real tokens. With `cache`, `input_ids` continue the cached
    /// sequence and the cache grows by `seq`. `train` turns dropout on.
    ///
    /// # Shapes: `input_ids` `[batch, seq]` i64 → `hidden` `[batch, seq, d_model]` fp32
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<GptOutput> {
        self.forward_t(input_ids, attention_mask, cache, train, false)
    }

    /// [`Gpt::forward`], optionally keeping every layer's residual stream (`keep_layers`).
    pub fn forward_t(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
        keep_layers: bool,
    ) -> Result<GptOutput> {
        self.forward_full(input_ids, attention_mask, None, cache, train, keep_layers)
    }

    /// [`Gpt::forward_t`] with prefix attention: `prefix` (`[batch]` i64) gives, per row, the
    /// end of a bidirectional block counted in positions of the whole sequence (cached and
    /// new, padding included): positions before it see each other both ways, later positions
    /// stay causal and see the whole block. Padding stays invisible. With a cache the block
    /// must be in one call (it may not reach past the cached length unless nothing is cached).
    pub fn forward_full(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        prefix: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
        keep_layers: bool,
    ) -> Result<GptOutput> {
        self.forward_full_at(
            input_ids,
            attention_mask,
            prefix,
            cache,
            train,
            keep_layers,
            None,
        )
    }

    /// The final hidden states at a few positions only: `at` (`[n]` i64) indexes the
    /// flattened `[batch · seq]` positions of `input_ids`, and the output is `hidden`
    /// `[n, d_model]` fp32, equal to [`Gpt::forward_full`]'s at those positions up to float
    /// rounding. The last block runs its queries, projection and MLP at those positions
    /// alone (its keys and values everywhere), so a head that reads one position per
    /// sequence (classification) skips most of that block. Without a cache, in evaluation.
    pub fn hidden_at(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        prefix: Option<&Tensor>,
        at: &Tensor,
    ) -> Result<Tensor> {
        self.forward_full_at(
            input_ids,
            attention_mask,
            prefix,
            None,
            false,
            false,
            Some(at),
        )
        .map(|o| o.hidden)
    }

    /// [`Gpt::forward_full`]; with `at`, only those flat positions come out of the last
    /// block ([`Gpt::hidden_at`]).
    #[allow(clippy::too_many_arguments)]
    fn forward_full_at(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        prefix: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
        keep_layers: bool,
        at: Option<&Tensor>,
    ) -> Result<GptOutput> {
        let c = &self.config;
        let (b, t) = input_ids.size2().map_err(|_| {
            Error::Invalid(format!(
                "input_ids must be [batch, seq], got {:?}",
                input_ids.size()
            ))
        })?;
        let dev = self.device();
        if input_ids.kind() != Kind::Int64 {
            return Err(Error::Invalid(format!(
                "input_ids must be int64, got {:?}",
                input_ids.kind()
            )));
        }
        if t == 0 {
            return Err(Error::Invalid("input_ids is empty".into()));
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        // Checked up front for a clear message; single decoding steps skip the two reductions
        // (the embedding lookup still rejects a bad id with an error).
        if !(past > 0 && t == 1) {
            self.check_ids(input_ids)?;
        }
        if past + t > c.block_size as i64 {
            return Err(Error::Invalid(format!(
                "sequence of {} tokens exceeds block_size {}",
                past + t,
                c.block_size
            )));
        }
        if let Some(m) = attention_mask
            && m.size() != [b, t]
        {
            return Err(Error::Invalid(format!(
                "attention_mask is {:?}, input_ids [{b}, {t}]",
                m.size()
            )));
        }
        let prefix = match prefix {
            Some(p) if p.size() != [b] => {
                return Err(Error::Invalid(format!(
                    "prefix is {:?}, expected [{b}]",
                    p.size()
                )));
            }
            Some(p) if past > 0 && p.max().int64_value(&[]) > past => {
                return Err(Error::Invalid(format!(
                    "a bidirectional prefix must be run in one call: it ends at {} but {past} \
                     positions are cached already",
                    p.max().int64_value(&[])
                )));
            }
            // With a cache, a block that ended before the new positions changes nothing.
            Some(_) if past > 0 => None,
            Some(p) => Some(p.to_kind(Kind::Int64).to_device(dev)),
            None => None,
        };
        let new_mask = attention_mask.map(|m| m.to_kind(Kind::Int64).to_device(dev));
        // The mask over all positions (cached + new), only when something is padded.
        let past_mask = cache
            .as_ref()
            .and_then(|c| c.mask.as_ref().map(|m| m.shallow_clone()));
        let new_padded = new_mask
            .as_ref()
            .is_some_and(|m| m.min().int64_value(&[]) == 0);
        let full_mask = if new_padded || past_mask.is_some() {
            let pm = past_mask.unwrap_or_else(|| Tensor::ones([b, past], (Kind::Int64, dev)));
            let nm = new_mask.unwrap_or_else(|| Tensor::ones([b, t], (Kind::Int64, dev)));
            Some(Tensor::cat(&[pm, nm], 1))
        } else {
            None
        };
        let has_padding = full_mask.is_some();
        let positions = match (&full_mask, has_padding) {
            (Some(m), true) => (m.cumsum(1, Kind::Int64) - 1)
                .clamp_min(0)
                .narrow(1, past, t),
            _ => Tensor::arange_start(past, past + t, (Kind::Int64, dev))
                .unsqueeze(0)
                .expand([b, t], false),
        };
        let mask = if has_padding || prefix.is_some() {
            let total = past + t;
            let q_idx = Tensor::arange_start(past, total, (Kind::Int64, dev)).view([t, 1]);
            let k_idx = Tensor::arange(total, (Kind::Int64, dev)).view([1, total]);
            let mut allowed = k_idx.le_tensor(&q_idx).view([1, 1, t, total]);
            if let Some(p) = &prefix {
                // Keys inside a row's block are visible to every query of that row (queries
                // after the block see them causally anyway).
                let in_block = k_idx.lt_tensor(&p.view([b, 1])).view([b, 1, 1, total]);
                allowed = allowed.logical_or(&in_block);
            }
            if let Some(m) = &full_mask {
                let keys = m.gt(0).view([b, 1, 1, total]);
                // A query always sees itself, so rows of padding queries are never empty (NaN).
                let own = k_idx.eq_tensor(&q_idx);
                allowed = allowed.logical_and(&keys).logical_or(&own);
            }
            AttnMask::Explicit(allowed)
        } else if past == 0 {
            AttnMask::Causal
        } else if t == 1 {
            AttnMask::None
        } else {
            let total = past + t;
            let q_idx = Tensor::arange_start(past, total, (Kind::Int64, dev)).view([t, 1]);
            let k_idx = Tensor::arange(total, (Kind::Int64, dev)).view([1, total]);
            AttnMask::Explicit(k_idx.le_tensor(&q_idx).view([1, 1, t, total]))
        };
        if let Some(cache) = cache.as_deref_mut() {
            if cache.layers.len() != self.blocks.len() {
                cache.layers = (0..self.blocks.len()).map(|_| None).collect();
            }
            cache.mask = full_mask;
            cache.len = past + t;
        }
        self.run_blocks(
            input_ids,
            &positions,
            &mask,
            cache,
            past,
            train,
            keep_layers,
            at,
        )
    }

    /// Runs several sequences packed into each row: `segment` (`[rows, cols]` i64) numbers
    /// the sequences of a row from 1 (0 = padding), `position` gives each token's position
    /// inside its own sequence, and `prefix_end` (optional, `[rows, cols]`) ends, per query
    /// token, the bidirectional block of its sequence (keys of the same sequence at positions
    /// before it are visible both ways; 0 = causal). A token attends only to tokens of its
    /// own sequence, so every sequence gets what it would get alone in a row of its own, up
    /// to float rounding.
    ///
    /// # Shapes: `input_ids` `[rows, cols]` i64 → `hidden` `[rows, cols, d_model]` fp32
    pub fn forward_packed(
        &self,
        input_ids: &Tensor,
        segment: &Tensor,
        position: &Tensor,
        prefix_end: Option<&Tensor>,
        train: bool,
    ) -> Result<GptOutput> {
        self.forward_packed_at(input_ids, segment, position, prefix_end, train, None)
    }

    /// [`Gpt::forward_packed`]'s final hidden states at the flat positions `at` (`[n]` i64
    /// into `[rows · cols]`) only, `[n, d_model]` fp32, as [`Gpt::hidden_at`] does for
    /// unpacked rows. In evaluation.
    pub fn packed_hidden_at(
        &self,
        input_ids: &Tensor,
        segment: &Tensor,
        position: &Tensor,
        prefix_end: Option<&Tensor>,
        at: &Tensor,
    ) -> Result<Tensor> {
        self.forward_packed_at(input_ids, segment, position, prefix_end, false, Some(at))
            .map(|o| o.hidden)
    }

    fn forward_packed_at(
        &self,
        input_ids: &Tensor,
        segment: &Tensor,
        position: &Tensor,
        prefix_end: Option<&Tensor>,
        train: bool,
        at: Option<&Tensor>,
    ) -> Result<GptOutput> {
        let (b, t) = input_ids.size2().map_err(|_| {
            Error::Invalid(format!(
                "input_ids must be [rows, cols], got {:?}",
                input_ids.size()
            ))
        })?;
        let shape_ok = |x: &Tensor| x.size() == [b, t];
        if !shape_ok(segment) || !shape_ok(position) || prefix_end.is_some_and(|p| !shape_ok(p)) {
            return Err(Error::Invalid(format!(
                "segment, position and prefix_end must be [{b}, {t}] like input_ids"
            )));
        }
        let c = &self.config;
        if t == 0 || t > c.block_size as i64 {
            return Err(Error::Invalid(format!(
                "packed rows of {t} tokens: must be 1 to block_size {}",
                c.block_size
            )));
        }
        self.check_ids(input_ids)?;
        let dev = self.device();
        let seg = segment.to_kind(Kind::Int64).to_device(dev);
        let pos = position.to_kind(Kind::Int64).to_device(dev);
        let (sq, sk) = (seg.view([b, 1, t, 1]), seg.view([b, 1, 1, t]));
        let (pq, pk) = (pos.view([b, 1, t, 1]), pos.view([b, 1, 1, t]));
        let mut seen = pk.le_tensor(&pq);
        if let Some(p) = prefix_end {
            let p = p.to_kind(Kind::Int64).to_device(dev).view([b, 1, t, 1]);
            seen = seen.logical_or(&pk.lt_tensor(&p));
        }
        // A padding query sees itself only, so no row of the softmax is empty.
        let own = Tensor::eye(t, (Kind::Bool, dev)).view([1, 1, t, t]);
        let allowed = sq
            .eq_tensor(&sk)
            .logical_and(&sk.gt(0))
            .logical_and(&seen)
            .logical_or(&own);
        // A position outside the table is the embedding lookup's error.
        self.run_blocks(
            input_ids,
            &pos,
            &AttnMask::Explicit(allowed),
            None,
            0,
            train,
            false,
            at,
        )
    }

    /// Every id of `input_ids` inside the vocabulary, or an error naming the first bad one.
    fn check_ids(&self, input_ids: &Tensor) -> Result<()> {
        let (lo, hi) = (
            input_ids.min().int64_value(&[]),
            input_ids.max().int64_value(&[]),
        );
        let v = self.config.vocab_size as i64;
        if lo < 0 || hi >= v {
            return Err(Error::Invalid(format!(
                "token id {} outside the vocabulary [0, {v})",
                if lo < 0 { lo } else { hi },
            )));
        }
        Ok(())
    }

    /// Embeddings, the blocks and the final norm, for the positions and mask a caller built.
    #[allow(clippy::too_many_arguments)]
    fn run_blocks(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        mask: &AttnMask,
        mut cache: Option<&mut KvCache>,
        past: i64,
        train: bool,
        keep_layers: bool,
        at: Option<&Tensor>,
    ) -> Result<GptOutput> {
        let c = &self.config;
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let at = match at {
            None => None,
            Some(_) if cache.is_some() || keep_layers => {
                return Err(Error::Invalid(
                    "hidden states at chosen positions are computed without a cache".into(),
                ));
            }
            Some(a) => {
                let a = a.to_kind(Kind::Int64).to_device(self.device());
                if a.dim() != 1 || a.size()[0] == 0 {
                    return Err(Error::Invalid(format!(
                        "positions must be a non-empty [n] list, got {:?}",
                        a.size()
                    )));
                }
                let (lo, hi) = (a.min().int64_value(&[]), a.max().int64_value(&[]));
                if lo < 0 || hi >= b * t {
                    return Err(Error::Invalid(format!(
                        "position {} outside the {b} × {t} input",
                        if lo < 0 { lo } else { hi }
                    )));
                }
                Some(a)
            }
        };
        let p = c.precision;
        let drop = if train { c.dropout } else { 0.0 };
        let adapters: Vec<AdapterRows> = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(AdapterRows::shallow_clone)
            .collect();
        if let Some(layout) = &self.adapters
            && adapters.len() != layout.stacks().len()
        {
            return Err(Error::Invalid(
                "the trunk has adapters but none is selected (select the task's first)".into(),
            ));
        }
        for a in &adapters {
            match a {
                AdapterRows::Rows(r) if r.size() != [b] => {
                    return Err(Error::Invalid(format!(
                        "adapter rows are {:?}, the batch has {b} rows",
                        r.size()
                    )));
                }
                AdapterRows::Tokens(r) if cache.is_some() || r.size() != [b, t] => {
                    return Err(Error::Invalid(format!(
                        "adapter tokens are {:?}, the batch is {b} × {t} (and per-token \
                         adapters run without a cache)",
                        r.size()
                    )));
                }
                _ => {}
            }
        }
        let mut x = dropout(
            self.wte.forward(input_ids)? + self.wpe.forward(positions)?,
            drop,
        );
        let mut layers = Vec::new();
        if keep_layers {
            layers.push(x.shallow_clone());
        }
        let pass = block::Pass {
            dropout: drop,
            precision: p,
            adapters: &adapters,
            train,
        };
        let n_blocks = self.blocks.len();
        for (i, block) in self.blocks.iter().enumerate() {
            if let (Some(at), true) = (&at, i + 1 == n_blocks) {
                // The last block at the chosen positions only.
                let x_at = block.forward_at(&x, mask, at, &pass);
                return Ok(GptOutput {
                    hidden: self.ln_f.forward(&x_at).squeeze_dim(1),
                    layers,
                });
            }
            let max_len = c.block_size as i64;
            let slot = cache
                .as_deref_mut()
                .map(|c| (&mut c.layers[i], past, max_len, c.capacity));
            let a = block
                .attn
                .forward(&block.ln_1.forward(&x), mask, slot, &pass);
            x = block.finish(&x, a, &pass);
            if keep_layers {
                layers.push(x.shallow_clone());
            }
        }
        let hidden = self.ln_f.forward(&x);
        Ok(GptOutput {
            // No blocks at all: the embeddings' positions.
            hidden: match &at {
                Some(at) => hidden.reshape([b * t, -1]).index_select(0, at),
                None => hidden,
            },
            layers,
        })
    }

    /// Next-token logits from hidden states through the tied LM head.
    ///
    /// # Shapes: `[batch, seq, d_model]` → `[batch, seq, vocab]` fp32
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        self.wte.project(hidden, self.config.precision)
    }

    /// The LM head laid out for decoding (see [`DecodeHead`]); make one per generation call,
    /// after the weights last changed.
    pub fn decode_head(&self) -> DecodeHead<'_> {
        let transposed = self.wte.int8.is_none().then(|| {
            tch::no_grad(|| {
                crate::layers::compute(&self.wte.weight, self.config.precision)
                    .tr()
                    .contiguous()
            })
        });
        DecodeHead {
            gpt: self,
            transposed,
        }
    }

    /// Runs `f` with every block `Linear` holding its weights already cast to the compute
    /// dtype (bf16 models; fp32 needs no copies), so inference inside `f` does not re-cast
    /// the fp32 masters at every call: a bf16 decoding step then reads half the bytes of an
    /// fp32 one. For inference only: the weights must not change inside `f`. The copies are
    /// dropped when `f` returns (or unwinds); an inner scope inside `f` reuses them.
    pub fn with_compute_copies<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Drop_<'a>(&'a Gpt, bool);
        impl Drop for Drop_<'_> {
            fn drop(&mut self) {
                if self.1 {
                    for (_, l) in self.0.linears() {
                        l.set_compute_copies(self.0.config.precision, false);
                    }
                }
            }
        }
        // Nested scopes leave the copies to the outermost one.
        let on = self.config.precision != Precision::Fp32
            && !self.linears().iter().any(|(_, l)| l.has_compute_copies());
        if on {
            for (_, l) in self.linears() {
                if l.int8.is_none() {
                    l.set_compute_copies(self.config.precision, true);
                }
            }
        }
        let _drop = Drop_(self, on);
        f()
    }

    /// Every `Linear` of the blocks with its checkpoint name (`transformer.h.0.attn.c_attn`).
    pub fn linears(&self) -> Vec<(String, &Linear)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let h = format!("transformer.h.{i}");
            out.push((format!("{h}.attn.c_attn"), &b.attn.c_attn));
            out.push((format!("{h}.attn.c_proj"), &b.attn.c_proj));
            out.push((format!("{h}.mlp.c_fc"), &b.mlp.c_fc));
            out.push((format!("{h}.mlp.c_proj"), &b.mlp.c_proj));
        }
        out
    }

    /// [`Gpt::linears`], mutable.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let h = format!("transformer.h.{i}");
            out.push((format!("{h}.attn.c_attn"), &mut b.attn.c_attn));
            out.push((format!("{h}.attn.c_proj"), &mut b.attn.c_proj));
            out.push((format!("{h}.mlp.c_fc"), &mut b.mlp.c_fc));
            out.push((format!("{h}.mlp.c_proj"), &mut b.mlp.c_proj));
        }
        out
    }

    /// Quantizes every `Linear` of the blocks and the token embedding (lookups and the tied
    /// LM head) to per-channel symmetric int8; inference then runs on int8 kernels.
    pub fn quantize_int8(&mut self) {
        for (_, l) in self.linears_mut() {
            l.quantize_int8();
        }
        self.wte.quantize_int8();
    }

    /// Whether [`Gpt::quantize_int8`] (or an int8 folder) made this model int8.
    pub fn is_int8(&self) -> bool {
        self.wte.int8.is_some()
    }

    /// Mean next-token cross-entropy of `input_ids` (targets are the inputs shifted by one;
    /// padding positions are ignored).
    pub fn lm_loss(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let out = self.forward(input_ids, attention_mask, None, train)?;
        let t = input_ids.size()[1];
        let logits = self.logits(&out.hidden.narrow(1, 0, t - 1));
        let mut targets = input_ids.narrow(1, 1, t - 1);
        if let Some(m) = attention_mask {
            let keep = m.narrow(1, 1, t - 1).gt(0);
            targets = targets.where_self(
                &keep,
                &Tensor::full_like(&targets, mtgpt_core::IGNORE_INDEX),
            );
        }
        let v = self.config.vocab_size as i64;
        Ok(logits.reshape([-1, v]).cross_entropy_loss::<Tensor>(
            &targets.reshape([-1]),
            None,
            tch::Reduction::Mean,
            mtgpt_core::IGNORE_INDEX,
            0.0,
        ))
    }
}
