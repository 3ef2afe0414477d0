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

    /// Rows cached (0 before the first pass).
    pub fn rows(&self) -> i64 {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or(0, |(k, _)| k.size()[0])
    }

    /// Adds the rows of `other` below this cache's (continuous batching: sequences joining a
    /// batch that is already decoding). Both sides end at the same position afterwards: the
    /// shorter one is left-padded, its padding masked, so every row's next token sees exactly
    /// its own past. The buffers get room for `reserve` more positions. Both caches must come
    /// from the same model.
    pub fn join(&mut self, other: &KvCache, reserve: i64) {
        if self.rows() == 0 {
            *self = KvCache {
                layers: other.layers.clone_shallow(),
                mask: other.mask.as_ref().map(Tensor::shallow_clone),
                len: other.len,
                capacity: other.capacity,
            };
            return;
        }
        let (p, l) = (self.len, other.len);
        let n = p.max(l);
        let cap = n + reserve.max(0);
        let (b1, b2) = (self.rows(), other.rows());
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            let (Some((k1, v1)), Some((k2, v2))) = (mine.as_ref(), theirs.as_ref()) else {
                continue;
            };
            let mut size = k1.size();
            size[0] = b1 + b2;
            size[2] = cap;
            let kb = Tensor::zeros(&size, (k1.kind(), k1.device()));
            let vb = Tensor::zeros(&size, (v1.kind(), v1.device()));
            kb.narrow(0, 0, b1)
                .narrow(2, n - p, p)
                .copy_(&k1.narrow(2, 0, p));
            vb.narrow(0, 0, b1)
                .narrow(2, n - p, p)
                .copy_(&v1.narrow(2, 0, p));
            kb.narrow(0, b1, b2)
                .narrow(2, n - l, l)
                .copy_(&k2.narrow(2, 0, l));
            vb.narrow(0, b1, b2)
                .narrow(2, n - l, l)
                .copy_(&v2.narrow(2, 0, l));
            *mine = Some((kb, vb));
        }
        let dev = self
            .layers
            .iter()
            .flatten()
            .next()
            .map_or(tch::Device::Cpu, |(k, _)| k.device());
        let padded = |m: Option<&Tensor>, rows: i64, len: i64| {
            let m = m.map_or_else(
                || Tensor::ones([rows, len], (tch::Kind::Int64, dev)),
                Tensor::shallow_clone,
            );
            Tensor::cat(
                &[Tensor::zeros([rows, n - len], (tch::Kind::Int64, dev)), m],
                1,
            )
        };
        self.mask = Some(Tensor::cat(
            &[
                padded(self.mask.as_ref(), b1, p),
                padded(other.mask.as_ref(), b2, l),
            ],
            0,
        ));
        self.len = n;
        self.capacity = cap;
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

/// Shallow copies of a cache's buffers.
trait CloneShallow {
    fn clone_shallow(&self) -> Self;
}

impl CloneShallow for Vec<KvSlot> {
    fn clone_shallow(&self) -> Self {
        self.iter()
            .map(|s| {
                s.as_ref()
                    .map(|(k, v)| (k.shallow_clone(), v.shallow_clone()))
            })
            .collect()
    }
}
