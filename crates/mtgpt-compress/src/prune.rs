//! Unstructured magnitude pruning of the trunk's block `Linear` weights: the smallest weights
//! by magnitude are zeroed, with one threshold over all of them (`scope = global`) or the same
//! sparsity in every layer (`scope = layer`), reached gradually on the cubic schedule of Zhu &
//! Gupta (2017) while fine-tuning; the masks are re-applied after every optimizer step, so
//! pruned weights stay exactly zero.
use mtgpt_core::PruneScope;
use mtgpt_model::Gpt;
use tch::{Kind, Tensor};

/// The sparsity the cubic schedule asks for after `step` of `steps` pruning steps:
/// `s_f · (1 − (1 − step/steps)³)`, from 0 at step 0 to `final_sparsity` at `steps`.
pub fn cubic_sparsity(final_sparsity: f64, step: usize, steps: usize) -> f64 {
    if steps == 0 || step >= steps {
        return final_sparsity;
    }
    let left = 1.0 - step as f64 / steps as f64;
    final_sparsity * (1.0 - left.powi(3))
}

/// Pruning masks (1 = kept, 0 = pruned) for a fixed list of weights.
#[derive(Debug)]
pub struct Pruner {
    /// The weights pruned (shallow clones of the model's variables) with their names.
    weights: Vec<(String, Tensor)>,
    /// One float mask per weight, same shape.
    masks: Vec<Tensor>,
    scope: PruneScope,
}

impl Pruner {
    /// A pruner over every block `Linear` weight of `gpt` (embeddings, norms, biases and task
    /// heads are left dense), all kept.
    pub fn new(gpt: &Gpt, scope: PruneScope) -> Self {
        let weights: Vec<(String, Tensor)> = gpt
            .linears()
            .into_iter()
            .map(|(n, l)| (format!("{n}.weight"), l.weight.shallow_clone()))
            .collect();
        let masks = weights.iter().map(|(_, w)| w.ones_like()).collect();
        Pruner {
            weights,
            masks,
            scope,
        }
    }

    /// Recomputes the masks so that a share `sparsity` of the weights (overall, or in each
    /// layer) is pruned — the smallest by magnitude; weights pruned before stay pruned, as they
    /// are zero — and applies them.
    pub fn prune_to(&mut self, sparsity: f64) {
        tch::no_grad(|| {
            let sparsity = sparsity.clamp(0.0, 1.0);
            match self.scope {
                PruneScope::Layer => {
                    for (i, (_, w)) in self.weights.iter().enumerate() {
                        self.masks[i] = keep_largest(&[w.shallow_clone()], sparsity).remove(0);
                    }
                }
                PruneScope::Global => {
                    let ws: Vec<Tensor> = self
                        .weights
                        .iter()
                        .map(|(_, w)| w.shallow_clone())
                        .collect();
                    self.masks = keep_largest(&ws, sparsity);
                }
            }
        });
        self.apply();
    }

    /// Zeroes the pruned weights (call after every optimizer step).
    pub fn apply(&self) {
        tch::no_grad(|| {
            for ((_, w), m) in self.weights.iter().zip(&self.masks) {
                let _ = w.shallow_clone().g_mul_(m);
            }
        });
    }

    /// Zeroes the gradients of pruned weights (call before an optimizer step, so Adam's
    /// moments of pruned weights stay at rest).
    pub fn mask_grads(&self) {
        tch::no_grad(|| {
            for ((_, w), m) in self.weights.iter().zip(&self.masks) {
                let g = w.grad();
                if g.defined() {
                    let _ = g.shallow_clone().g_mul_(m);
                }
            }
        });
    }

    /// Share of zero weights over all pruned tensors.
    pub fn sparsity(&self) -> f64 {
        let (zeros, total) = self.weights.iter().fold((0i64, 0i64), |(z, t), (_, w)| {
            (
                z + w.eq(0.0).sum(Kind::Int64).int64_value(&[]),
                t + w.numel() as i64,
            )
        });
        zeros as f64 / total.max(1) as f64
    }

    /// Share of zero weights per pruned tensor, by name.
    pub fn layer_sparsity(&self) -> Vec<(String, f64)> {
        self.weights
            .iter()
            .map(|(n, w)| {
                let z = w.eq(0.0).sum(Kind::Int64).int64_value(&[]) as f64;
                (n.clone(), z / w.numel().max(1) as f64)
            })
            .collect()
    }

    /// Weights pruned (zero) and total, over all pruned tensors.
    pub fn counts(&self) -> (usize, usize) {
        let zeros: usize = self
            .masks
            .iter()
            .map(|m| m.eq(0.0).sum(Kind::Int64).int64_value(&[]) as usize)
            .sum();
        (zeros, self.weights.iter().map(|(_, w)| w.numel()).sum())
    }
}

/// Masks keeping all but the `sparsity` share of the smallest-magnitude entries of `ws`, with
/// one threshold over all of them. Exactly `round(sparsity · n)` entries are pruned (ties are
/// broken by position).
fn keep_largest(ws: &[Tensor], sparsity: f64) -> Vec<Tensor> {
    let flat: Vec<Tensor> = ws.iter().map(|w| w.abs().reshape([-1])).collect();
    let all = Tensor::cat(&flat, 0);
    let n = all.numel() as i64;
    let k = ((sparsity * n as f64).round() as i64).clamp(0, n);
    let mut mask = Tensor::ones([n], (Kind::Float, all.device()));
    if k > 0 {
        let (_, idx) = all.topk(k, 0, false, false);
        let _ = mask.index_fill_(0, &idx, 0.0);
    }
    let mut out = Vec::with_capacity(ws.len());
    let mut at = 0;
    for w in ws {
        let len = w.numel() as i64;
        out.push(
            mask.narrow(0, at, len)
                .view(w.size().as_slice())
                .to_kind(w.kind()),
        );
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_schedule_starts_at_zero_rises_fast_and_ends_at_the_target() {
        assert_eq!(cubic_sparsity(0.5, 0, 10), 0.0);
        assert!((cubic_sparsity(0.5, 10, 10) - 0.5).abs() < 1e-12);
        assert!((cubic_sparsity(0.5, 5, 10) - 0.5 * 0.875).abs() < 1e-12);
        let s: Vec<f64> = (0..=10).map(|t| cubic_sparsity(0.8, t, 10)).collect();
        assert!(s.windows(2).all(|w| w[1] >= w[0]));
        // Most of the pruning happens early (the cubic front-loads it).
        assert!(s[3] > 0.5 * 0.8);
        assert_eq!(cubic_sparsity(0.3, 0, 0), 0.3);
    }
}
