//! The key/value cache of incremental decoding.
use tch::Tensor;

/// One layer's `(keys, values)` cache buffers, once allocated.
pub(super) type KvSlot = Option<(Tensor, Tensor)>;

/// Key/value cache for incremental decoding: per layer the keys and values of every position
/// seen so far (in buffers that grow by doubling, so a step writes only its new positions),
/// plus the padding mask when any cached row has padding.
#[derive(Debug, Default)]
pub struct KvCache {
    /// Per layer `(keys, values)` buffers `[batch, heads, capacity, head_dim]`.
    pub(super) layers: Vec<KvSlot>,
    /// `[batch, len]` 1 = real token, 0 = padding; `None` while nothing is padded.
    pub(super) mask: Option<Tensor>,
    pub(super) len: i64,
    /// Positions to allocate at once when the buffers are first made (0 = grow by doubling).
    pub(super) capacity: i64,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache whose buffers are allocated for `positions` at once, so decoding up to
    /// that length never copies the cache into bigger buffers.
    pub fn with_capacity(positions: usize) -> Self {
        KvCache {
            capacity: positions as i64,
            ..Self::default()
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the rows `index` (beam search reorders hypotheses).
    pub fn select_rows(&mut self, index: &Tensor) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(0, index);
            *v = v.index_select(0, index);
        }
        if let Some(m) = &mut self.mask {
            *m = m.index_select(0, index);
        }
    }
}

/// Appends `k`/`v` (`[b, h, t, hd]`) at position `past` of a cache slot; returns views of
/// all `past + t` cached positions.
pub(super) fn append_kv(
    slot: &mut Option<(Tensor, Tensor)>,
    k: &Tensor,
    v: &Tensor,
    past: i64,
    max_len: i64,
    reserve: i64,
) -> (Tensor, Tensor) {
    let t = k.size()[2];
    let total = past + t;
    let cap = slot.as_ref().map_or(0, |(kb, _)| kb.size()[2]);
    if total > cap {
        let new_cap = (2 * cap)
            .max(total)
            .max(16)
            .max(reserve)
            .min(max_len.max(total));
        let mut size = k.size();
        size[2] = new_cap;
        let (kb, vb) = (
            Tensor::zeros(&size, (k.kind(), k.device())),
            Tensor::zeros(&size, (v.kind(), v.device())),
        );
        if let Some((ok, ov)) = slot.as_ref() {
            kb.narrow(2, 0, past).copy_(&ok.narrow(2, 0, past));
            vb.narrow(2, 0, past).copy_(&ov.narrow(2, 0, past));
        }
        *slot = Some((kb, vb));
    }
    let (kb, vb) = slot.as_ref().expect("allocated above");
    kb.narrow(2, past, t).copy_(k);
    vb.narrow(2, past, t).copy_(v);
    (kb.narrow(2, 0, total), vb.narrow(2, 0, total))
}
